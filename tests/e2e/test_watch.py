"""--watch modes as background processes: they act on what appears, and stop cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, Node, command_env

BOUND_SECONDS = 20


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Poll `condition` until it holds, for at most BOUND_SECONDS."""
    deadline = time.monotonic() + BOUND_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def background(node: Node, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run an installed command in the background, stderr into `log`; kill it if left running."""
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=command_env(node.home),
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen[bytes], log: Path) -> str:
    """SIGTERM, then expect exit status 0 and no traceback."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=BOUND_SECONDS) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text
    return text


def test_toss_watch_delivers_what_lands_later(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    log = tmp_path / "toss.log"
    with background(bob, log, "rise-toss", "--watch", "--poll", "0.5") as process:
        wait_for(lambda: "watching" in log.read_text(), "rise-toss --watch to start")
        (tmp_path / "late.txt").write_bytes(b"arrived later")
        alice.run("rise-send", "-q", str(tmp_path / "late.txt"), "bob")
        alice.run("rise-send", "-q", "-", "bob", input=b"and a message")
        alice.run("rise-xfer", "-q", str(stick))
        bob.run("rise-xfer", "-q", str(stick))  # no --toss: the watcher delivers
        delivered = bob.incoming / "alice" / "late.txt"
        wait_for(delivered.exists, "the watcher to deliver the file")
        wait_for(lambda: list((bob.home / "inbox").glob("*.msg")), "the message")
        assert process.poll() is None  # still watching
        text = stop(process, log)
    assert delivered.read_bytes() == b"arrived later"
    assert "delivered file from alice" in text
    assert not list((bob.spool / "rx").rglob("*.rsb"))


def test_xfer_watch_waits_for_the_medium(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, _bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"for the stick")
    stick = tmp_path / "usb"
    stick.mkdir()  # an empty mount point: no medium yet
    log = tmp_path / "xfer.log"
    with background(alice, log, "rise-xfer", "--watch", "--poll", "0.5", str(stick)) as process:
        wait_for(lambda: "waiting for a medium" in log.read_text(), "rise-xfer --watch to start")
        assert not (stick / "rise-dtn").exists()  # it did not write to a bare mount point
        (stick / "rise-dtn").mkdir()  # a stick is plugged in
        wait_for(lambda: "safe to remove" in log.read_text(), "the exchange")
        assert len(list((stick / "rise-dtn").rglob("*.rsb"))) == 1
        assert process.poll() is None
        text = stop(process, log)
    assert f"done: it is safe to remove {stick}" in text
    assert "sent 1 (" in text


def test_xfer_watch_sees_a_mounted_filesystem(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, _bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"for the tmpfs stick")
    mount_point = tmp_path / "media"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "rise-test", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {mounted.stderr.decode().strip()}")
    subprocess.run(["umount", str(mount_point)], check=True)
    log = tmp_path / "xfer.log"
    try:
        with background(
            alice, log, "rise-xfer", "--watch", "--poll", "0.5", str(mount_point)
        ) as process:
            wait_for(lambda: "waiting for a medium" in log.read_text(), "rise-xfer --watch")
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=16m", "rise-test", str(mount_point)],
                check=True,
            )
            wait_for(lambda: "safe to remove" in log.read_text(), "the exchange")
            assert len(list((mount_point / "rise-dtn").rglob("*.rsb"))) == 1
            stop(process, log)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)
