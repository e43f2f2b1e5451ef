"""SIGTERM and SIGHUP (a service stopping, an ssh session dropping) clean up as Ctrl-C does.

By default either signal kills a Python process on the spot: a rise-send cut
that way left hundreds of MB of a half-sealed bundle in spool/tmp/ that
nothing showed (issue 11). The signal is sent while rise-send is blocked
reading a pipe that the test holds open, so it lands mid-seal every time.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, Node, command_env

DEADLINE = 30.0


def tmp_files(node: Node) -> list[Path]:
    return [path for path in (node.spool / "tmp").rglob("*") if path.is_file()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
@pytest.mark.parametrize("named", [False, True], ids=["message", "file"])
def test_a_send_stopped_by_a_signal_leaves_nothing(
    pair: tuple[Node, Node], signum: signal.Signals, named: bool
) -> None:
    alice, _bob = pair
    args = ["--name", "backup.tar"] if named else []
    sender = subprocess.Popen(
        [str(BIN / "rise-send"), *args, "-", "bob"],
        env=command_env(alice.home, RISE_NO_DAEMON="1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert sender.stdin is not None
    block = b"\x5a" * (1 << 20)
    deadline = time.monotonic() + DEADLINE
    while not tmp_files(alice):  # sealing has begun: its file is in spool/tmp/
        assert time.monotonic() < deadline, "rise-send never started writing"
        sender.stdin.write(block)
        sender.stdin.flush()
    sender.send_signal(signum)
    _out, err = sender.communicate(timeout=DEADLINE)  # closes stdin too: the pipe ends
    assert sender.returncode == 128 + signum
    assert err.decode().splitlines() == [f"rise-send: stopped by {signum.name}"]
    assert tmp_files(alice) == []
    assert list((alice.spool / "tx").rglob("*.rsb")) == []
    alice.run("rise-check")
