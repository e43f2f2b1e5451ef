"""rise-send hands its work to the running daemon's warm worker (rise_dtn/node/warm.py).

To tell which process did the work, the rise-send under test runs with a
PYTHONPATH where `click` cannot be imported: done in the command's own
process, the send would fail (its command line is click's); done by the
worker (started before, with a clean environment), it succeeds. (Not
SQLAlchemy: a direct send no longer imports it, store/plain_index.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, Node, befriend, command_env, make_node


@pytest.fixture
def short_base() -> Iterator[Path]:
    """Unix socket paths must stay under 108 bytes: pytest's tmp_path can be longer."""
    base = Path(tempfile.mkdtemp(prefix="rw-", dir="/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nodes(short_base: Path) -> tuple[Node, Node]:
    alice, bob = make_node(short_base, "alice"), make_node(short_base, "bob")
    befriend(alice, bob)
    return alice, bob


def start_daemon(
    node: Node, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(BIN / "rise-daemon"), "--listen", "127.0.0.1:0", *args],
        env=env or command_env(node.home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    assert b" INFO listening on " in process.stderr.readline()
    deadline = time.monotonic() + 30
    while not (node.home / "send.sock").exists():
        assert time.monotonic() < deadline, "the worker never listened"
        time.sleep(0.02)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def poisoned_env(node: Node, base: Path) -> dict[str, str]:
    poison = base / "poison" / "click"
    poison.mkdir(parents=True, exist_ok=True)
    (poison / "__init__.py").write_text("raise ImportError('not in this process')\n")
    return command_env(node.home, PYTHONPATH=str(base / "poison"))


def test_the_worker_sends_for_rise_send(nodes: tuple[Node, Node], short_base: Path) -> None:
    alice, _bob = nodes
    daemon = start_daemon(alice)
    try:
        env = poisoned_env(alice, short_base)
        (short_base / "note.txt").write_bytes(b"from a relative path")
        for args, stdin in ((["-", "bob"], b"hello via the worker"), (["note.txt", "bob"], None)):
            result = subprocess.run(
                [str(BIN / "rise-send"), *args],
                input=stdin,
                env=env,
                cwd=short_base,
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert len(result.stdout.split()[0]) == 26  # the bundle id, printed to our stdout
        # Errors come back as from any rise-send: one line, the usual status.
        result = subprocess.run(
            [str(BIN / "rise-send"), "-", "nobody"],
            input=b"x",
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert result.stderr.decode().count("\n") == 1
        assert result.stderr.startswith(b"rise-send: ")
    finally:
        stop(daemon)
    assert len(list((alice.spool / "tx").rglob("*.rsb"))) == 2
    assert not (alice.home / "send.sock").exists()  # the daemon tidied up


def test_without_a_worker_rise_send_works_alone(nodes: tuple[Node, Node], short_base: Path) -> None:
    """A daemon killed with -9 takes its worker along; rise-send then does the work itself."""
    alice, _bob = nodes
    daemon = start_daemon(alice)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=20)
    deadline = time.monotonic() + 20
    while True:  # the worker follows its parent (PR_SET_PDEATHSIG)
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(alice.home / "send.sock"))
            except OSError:
                break
        assert time.monotonic() < deadline, "the worker outlived its daemon"
        time.sleep(0.05)
    alice.run("rise-send", "-q", "-", "bob", input=b"alone")
    with_flag = command_env(alice.home, RISE_NO_DAEMON="1")
    subprocess.run(
        [str(BIN / "rise-send"), "-q", "-", "bob"], input=b"flag", env=with_flag, check=True
    )
    assert len(list((alice.spool / "tx").rglob("*.rsb"))) == 2


def test_a_garbage_request_is_ignored(nodes: tuple[Node, Node]) -> None:
    alice, _bob = nodes
    daemon = start_daemon(alice)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(alice.home / "send.sock"))
            client.sendall(b"\x00\x00\x00\x05hello")  # no file descriptors, no JSON
            client.settimeout(10)
            assert client.recv(16) == b""  # closed without running anything
        alice.run("rise-send", "-q", "-", "bob", input=b"still served")
    finally:
        stop(daemon)
    assert len(list((alice.spool / "tx").rglob("*.rsb"))) == 1
    assert os.stat(alice.home).st_mode & 0o077 == 0


def test_a_silent_client_holds_up_no_send(nodes: tuple[Node, Node]) -> None:
    """A caller that connects and says nothing costs only its own forked child."""
    alice, _bob = nodes
    daemon = start_daemon(alice)
    try:
        with socket.socket(socket.AF_UNIX) as silent:
            silent.connect(str(alice.home / "send.sock"))
            # While it sits there saying nothing, sends go through the worker.
            for number in range(3):
                alice.run(
                    "rise-send", "-q", "-", "bob", input=f"past {number}".encode(), timeout=30
                )
            silent.setblocking(False)
            with pytest.raises(BlockingIOError):
                silent.recv(16)  # its own child still waits for it, and answers nothing
    finally:
        stop(daemon)
    assert len(list((alice.spool / "tx").rglob("*.rsb"))) == 3


def test_the_worker_serves_the_default_home(short_base: Path) -> None:
    """No --home and no RISE_HOME: rise-send finds the platform default, as the node does."""
    data = short_base / "data"
    env = command_env(None, XDG_DATA_HOME=str(data))
    subprocess.run([str(BIN / "rise"), "init", "--name", "alice"], env=env, check=True)
    home = data / "rise-dtn"
    alice = Node("alice", home, "")
    bob = make_node(short_base, "bob")
    subprocess.run([str(BIN / "rise"), "peer", "add", "-"], input=bob.card(), env=env, check=True)
    daemon = start_daemon(alice, env=env)
    try:
        poisoned = poisoned_env(alice, short_base)
        del poisoned["RISE_HOME"]
        poisoned["XDG_DATA_HOME"] = str(data)
        result = subprocess.run(
            [str(BIN / "rise-send"), "-", "bob"],
            input=b"default home",
            env=poisoned,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr  # done by the worker: no click here
    finally:
        stop(daemon)
    assert len(list((home / "spool" / "tx").rglob("*.rsb"))) == 1
