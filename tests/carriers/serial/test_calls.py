"""Two real nodes over a serial line: the installed rise-serial answering, rise-call calling.

Each test joins the two nodes by real socat pseudo-terminals through the
paced relay of tests/radiolink.py (a rate, frame loss, a pulled cable), and
runs the commands as a user would. Waits are polls with a deadline; nothing
is asserted about how fast (bench/radio.py measures that).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rise_dtn.core.errors import ExitCode
from tests.conftest import BIN, Node, befriend, command_env, make_node
from tests.radiolink import LinkProfile, paced_link

pytestmark = pytest.mark.slow  # ten to twenty seconds each: started first

DEADLINE_SECONDS = 120.0  # for anything here on a loaded machine; the slowest takes ~15 s
CALL_TIMEOUT_SECONDS = 300.0


@contextlib.contextmanager
def answering(node: Node, port: str, log: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """The installed rise-serial on `port` (answering, unless `--link NODE` is among
    `options`), stopped (SIGTERM) after the block: it must stop within 30 s."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / "rise-serial"), port, *options],
            env=command_env(node.home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(
                f"rise-serial did not stop on SIGTERM: {log.read_text()}"
            ) from None
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text()


def call(node: Node, peer: str, port: str) -> subprocess.CompletedProcess[bytes]:
    return node.run("rise-call", peer, "--address", port, check=False, timeout=CALL_TIMEOUT_SECONDS)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"no {what} before the deadline"
        time.sleep(0.05)  # a poll with a deadline


def inbox_text(node: Node) -> bytes:
    inbox = node.home / "inbox"
    return b"".join(path.read_bytes() for path in inbox.iterdir()) if inbox.is_dir() else b""


def delivered(node: Node, sender: str, name: str) -> bytes | None:
    path = node.incoming / sender / name
    return path.read_bytes() if path.is_file() else None


def tx_empty(node: Node) -> bool:
    return not any(node.spool.joinpath("tx").rglob("*.rsb"))


def file_of(tmp_path: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def test_a_message_both_ways_at_1200_baud_read_a_byte_at_a_time(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """The slow line, fed to each side one byte per write (a UART with a one-byte FIFO)."""
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"hello bob, over the wire")
    bob.run("rise-send", "-q", "-", "alice", input=b"hello alice, back the same way")
    profile = LinkProfile(bits_per_second=1200, max_write_bytes=1)
    with (
        paced_link(profile) as link,
        answering(bob, f"serial:{link.b_path}?baud=1200", tmp_path / "bob.log"),
    ):
        result = alice.run(
            "rise-call",
            "--toss",
            "bob",
            "--address",
            f"serial:{link.a_path}?baud=1200",
            check=False,
            timeout=CALL_TIMEOUT_SECONDS,
        )
        assert result.returncode == 0, result.stderr.decode()
        wait_for(lambda: b"hello bob" in inbox_text(bob), "message in bob's inbox")
        stats = link.stats
    assert b"hello alice, back the same way" in inbox_text(alice)
    assert tx_empty(alice)  # with --toss, its receipt to bob left before it hung up
    # Every byte crossed in a write of its own, both ways.
    for direction in stats.values():
        assert direction.writes == direction.bytes_passed > 0


def test_a_256_kib_file_byte_for_byte_at_5_percent_frame_loss(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """5% of frames lost each way and 1% of the rest damaged (the CRC drops those)."""
    alice, bob = pair
    path, data = file_of(tmp_path, "big.bin", 256 * 1024)
    alice.run("rise-send", "-q", str(path), "bob")
    profile = LinkProfile(bits_per_second=230_400, drop_rate=0.05, corrupt_rate=0.01, seed=5)
    port = "serial:{}?baud=230400"
    with paced_link(profile) as link, answering(bob, port.format(link.b_path), tmp_path / "b.log"):
        result = call(alice, "bob", port.format(link.a_path))
        assert result.returncode == 0, result.stderr.decode()
        wait_for(lambda: delivered(bob, "alice", "big.bin") is not None, "file delivered")
        stats = link.stats
    assert hashlib.sha256(delivered(bob, "alice", "big.bin") or b"").digest() == (
        hashlib.sha256(data).digest()
    )
    assert tx_empty(alice)
    # The loss really happened, both ways. Deterministic: the relay draws its fates per
    # frame from the seed, whatever the timing, and with seed 5 the first loss back is
    # frame 14 and the first damage forth is frame 205, while 256 KiB takes over 500
    # frames forth and a window's ACK every 32 of them back.
    assert stats["a->b"].frames_dropped > 0 and stats["b->a"].frames_dropped > 0
    assert stats["a->b"].frames_corrupted > 0


def test_a_cable_pulled_mid_bundle_and_plugged_back_the_call_goes_on(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """Out for a while (the caller resends into nothing), then back: the same call
    finishes the bundle, whole, once."""
    alice, bob = pair
    path, data = file_of(tmp_path, "pulled.bin", 96 * 1024)
    alice.run("rise-send", "-q", str(path), "bob")
    profile = LinkProfile(bits_per_second=115_200)
    port = "serial:{}?baud=115200&giveup=600"
    with paced_link(profile) as link, answering(bob, port.format(link.b_path), tmp_path / "b.log"):
        calling = subprocess.Popen(
            [str(BIN / "rise-call"), "bob", "--address", port.format(link.a_path)],
            env=command_env(alice.home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: link.stats["a->b"].bytes_passed > 32 * 1024, "bundle under way")
            link.pull_cable()
            lost = link.stats["a->b"].bytes_lost_to_cable
            # The caller waited out its time-out twice and resent into the pulled
            # cable (a probe is one frame of at most about 500 bytes).
            wait_for(lambda: link.stats["a->b"].bytes_lost_to_cable > lost + 600, "resends")
            link.plug_cable()
            _out, err = calling.communicate(timeout=CALL_TIMEOUT_SECONDS)
        finally:
            if calling.poll() is None:
                calling.kill()
                calling.wait()
        assert calling.returncode == 0, err.decode()
        wait_for(lambda: delivered(bob, "alice", "pulled.bin") is not None, "file delivered")
    assert delivered(bob, "alice", "pulled.bin") == data
    assert tx_empty(alice)


def test_a_call_that_gives_up_then_a_call_that_resumes(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """The cable pulled for good mid-bundle: the call gives up (status 4) and the bundle
    stays queued; the next call, cable back, sends only the rest."""
    alice, bob = pair
    size = 128 * 1024
    path, data = file_of(tmp_path, "resumed.bin", size)
    alice.run("rise-send", "-q", str(path), "bob")
    cut = 64 * 1024
    profile = LinkProfile(bits_per_second=115_200, cut_after_bytes=cut)
    port = "serial:{}?baud=115200&giveup=3"
    with paced_link(profile) as link, answering(bob, port.format(link.b_path), tmp_path / "b.log"):
        first = call(alice, "bob", port.format(link.a_path))
        assert first.returncode == ExitCode.PEER, first.stderr.decode()
        assert first.stderr.decode().count("\n") == 1, first.stderr.decode()
        assert not tx_empty(alice) and delivered(bob, "alice", "resumed.bin") is None
        link.plug_cable()
        before = link.stats["a->b"].bytes_passed
        second = call(alice, "bob", port.format(link.a_path))
        assert second.returncode == 0, second.stderr.decode()
        wait_for(lambda: delivered(bob, "alice", "resumed.bin") is not None, "file delivered")
        resent = link.stats["a->b"].bytes_passed - before
    assert delivered(bob, "alice", "resumed.bin") == data
    assert tx_empty(alice)
    # The second call carried the rest, not the whole bundle again.
    assert resent < size - cut // 2, resent


def test_a_kept_link_carries_what_is_queued_while_it_is_up_and_stops_on_sigterm(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """rise-serial --link: bundles queued after the link came up go out on it, both
    ways, and SIGTERM ends it (the helper fails if it does not stop)."""
    alice, bob = pair
    port = "serial:{}?baud=115200"
    with (
        paced_link(LinkProfile(bits_per_second=115_200)) as link,
        answering(bob, port.format(link.b_path), tmp_path / "bob.log"),
        answering(alice, port.format(link.a_path), tmp_path / "alice.log", "--link", "bob"),
    ):
        for text in (b"kept link, message 0", b"kept link, message 1"):
            alice.run("rise-send", "-q", "-", "bob", input=text)
            wait_for(lambda text=text: text in inbox_text(bob), "message over the link")
        bob.run("rise-send", "-q", "-", "alice", input=b"and one back")
        wait_for(lambda: b"and one back" in inbox_text(alice), "message back over the link")
    assert "link down" not in (tmp_path / "alice.log").read_text()


def test_rise_serial_keeps_a_warm_worker_that_sends_for_rise_send() -> None:
    """rise-serial keeps rise-send's warm worker (rise_dtn/node/warm.py), as rise-daemon
    does: a rise-send whose own process cannot import click (its command line) still
    sends, so the worker did it, and the message crosses the kept link. The worker's
    socket goes when rise-serial stops; `--no-send-worker` keeps none."""
    base = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # a Unix socket path is short
    try:
        alice, bob = make_node(base, "alice"), make_node(base, "bob")
        befriend(alice, bob)
        poison = base / "poison" / "click"
        poison.mkdir(parents=True)
        (poison / "__init__.py").write_text("raise ImportError('not in this process')\n")
        port = "serial:{}?baud=115200"
        with (
            paced_link(LinkProfile(bits_per_second=115_200)) as link,
            answering(bob, port.format(link.b_path), base / "bob.log", "--no-send-worker"),
            answering(alice, port.format(link.a_path), base / "alice.log", "--link", "bob"),
        ):
            wait_for((alice.home / "send.sock").exists, "alice's worker")
            result = subprocess.run(
                [str(BIN / "rise-send"), "-q", "-", "bob"],
                input=b"sent by the worker",
                env=command_env(alice.home, PYTHONPATH=str(base / "poison")),
                capture_output=True,
                timeout=CALL_TIMEOUT_SECONDS,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            wait_for(lambda: b"sent by the worker" in inbox_text(bob), "the message")
            assert not (bob.home / "send.sock").exists()
        assert not (alice.home / "send.sock").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
