"""Fixtures for the end-to-end tests of the live carriers."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import BIN, Node, command_env
from tests.mailserver import dovecot, postfix  # noqa: F401 - fixtures for the mailbox e2e tests


@pytest.fixture
def daemon(pair: tuple[Node, Node]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """bob's daemon on a free port; yields the process and the port."""
    _alice, bob = pair
    process = subprocess.Popen(
        [str(BIN / "rise-daemon"), "--listen", "127.0.0.1:0"],
        env=command_env(bob.home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    line = process.stderr.readline().decode()  # bounded: the daemon prints this first
    assert " INFO listening on 127.0.0.1:" in line, line  # after the log line's time
    port = int(line.strip().rsplit(":", 1)[1])
    yield process, port
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
