"""Two tosses, or a toss and an xfer, at once: every bundle is delivered exactly once."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.conftest import BIN, Node, command_env


def start(node: Node, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / args[0]), *args[1:]],
        env=command_env(node.home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def queue_messages(sender: Node, count: int) -> dict[str, bytes]:
    sent = {}
    for number in range(count):
        body = f"message {number}\n".encode() * (1 + number * 3000)
        name = f"m{number:03}.txt"
        sender.run("rise-send", "-q", "-", "bob", "--name", name, input=body)
        sent[name] = hashlib.sha256(body).digest()
    return sent


def test_two_tosses_at_once_deliver_each_bundle_once(pair: tuple[Node, Node], stick: Path) -> None:
    alice, bob = pair
    sent = queue_messages(alice, 10)
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    first, second = start(bob, "rise-toss", "-q"), start(bob, "rise-toss", "-q")
    for process in (first, second):
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    got = {
        path.name: hashlib.sha256(path.read_bytes()).digest()
        for path in (bob.incoming / "alice").iterdir()
    }
    assert got == sent
    bob.run("rise-check")


def test_toss_while_xfer_takes_bundles(pair: tuple[Node, Node], stick: Path) -> None:
    alice, bob = pair
    sent = queue_messages(alice, 6)
    alice.run("rise-xfer", "-q", str(stick))
    xfer, toss = start(bob, "rise-xfer", "-q", str(stick)), start(bob, "rise-toss", "-q")
    for process in (xfer, toss):
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    bob.run("rise-toss", "-q")
    got = {
        path.name: hashlib.sha256(path.read_bytes()).digest()
        for path in (bob.incoming / "alice").iterdir()
    }
    assert got == sent
    bob.run("rise-xfer", "-q", str(stick))
    alice.run("rise-xfer", "-q", str(stick))
    assert not list((alice.spool / "tx").rglob("*.rsb"))
    for node in (alice, bob):
        node.run("rise-check")
