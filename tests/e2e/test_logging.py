"""rise-daemon's log: a time and a level on each line, a log file, the journal's priorities,
and the systemd units shipped in contrib/ (issue 11)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, Node, command_env

ROOT = Path(__file__).resolve().parents[2]
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (INFO|VERBOSE|WARNING|ERROR) \S")
DEADLINE = 30.0


def wait_for(path: Path, text: str) -> list[str]:
    deadline = time.monotonic() + DEADLINE
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"never logged {text!r}"
        time.sleep(0.02)
    return path.read_text().splitlines()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=DEADLINE) == 0


def test_a_log_file_gets_stamped_lines_and_stderr_stays_empty(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    _alice, bob = pair
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(BIN / "rise-daemon"), "--listen", "127.0.0.1:0", "--log-file", str(log)],
        env=command_env(bob.home),
        stderr=subprocess.PIPE,
    )
    try:
        lines = wait_for(log, "listening on 127.0.0.1:")
        assert lines and all(STAMPED.match(line) for line in lines), lines
    finally:
        stop(daemon)
    assert daemon.stderr is not None and daemon.stderr.read() == b""


def test_under_systemd_each_line_carries_its_syslog_priority(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """JOURNAL_STREAM names the daemon's stderr, as systemd sets it for the journal."""
    _alice, bob = pair
    journal = tmp_path / "journal"
    with open(journal, "wb") as stream:
        info = os.fstat(stream.fileno())
        daemon = subprocess.Popen(
            [str(BIN / "rise-daemon"), "--listen", "127.0.0.1:0", "--no-send-worker"],
            env=command_env(bob.home, JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}"),
            stderr=stream,
        )
    try:
        (first,) = wait_for(journal, "listening on")[:1]
        assert re.fullmatch(r"<6>listening on 127\.0\.0\.1:\d+", first), first
    finally:
        stop(daemon)


def test_a_log_file_that_cannot_be_written_is_one_line(pair: tuple[Node, Node]) -> None:
    _alice, bob = pair
    result = bob.run(
        "rise-daemon",
        "--log-file",
        "/nonexistent/dir/daemon.log",
        "--listen",
        "127.0.0.1:0",
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "rise-daemon: cannot write the log file /nonexistent/dir/daemon.log: "
        "No such file or directory"
    ]


@pytest.mark.parametrize("unit", sorted((ROOT / "contrib" / "systemd").glob("*.service")))
def test_the_shipped_systemd_units_verify(unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (.ci/run installs systemd)")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()  # not even a warning
