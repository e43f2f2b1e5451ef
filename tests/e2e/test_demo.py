"""`rise demo` as a user runs it: the stick part, then the same network live over TCP.

The live part starts four real `rise-daemon` processes with kept links on
127.0.0.1 and sends with the real `rise-send`; these tests hold that the
message arrives, the receipt comes back, and every daemon is gone afterwards
(its port and its warm worker's socket answer no more), also when the demo
is interrupted while daemons run.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, command_env, run

NODES = ("alice", "relay1", "relay2", "bob")
LISTENING = re.compile(r" INFO listening on 127\.0\.0\.1:(\d+)$")  # after the log line's time


def logged_ports(demo: Path) -> dict[str, int]:
    """Each daemon's port, from the first line of its log (daemons not started have none)."""
    ports = {}
    for name in NODES:
        log = demo / f"daemon-{name}.log"
        if log.exists():
            lines = log.read_text().splitlines()
            found = LISTENING.search(lines[0]) if lines else None
            if found:
                ports[name] = int(found.group(1))
    return ports


def assert_daemons_gone(demo: Path) -> None:
    """Nothing answers on a daemon's port, nor on a node's warm-worker socket."""
    for name, port in logged_ports(demo).items():
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
            pytest.fail(f"{name}'s daemon still listens on {port}")
    for name in NODES:
        with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
            probe.connect(str(demo / name / "send.sock"))
            pytest.fail(f"{name}'s warm worker still answers")


@pytest.mark.timeout(60)
def test_demo_by_stick_then_live_over_tcp(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    result = run("rise", "demo", "--dir", str(demo), timeout=55)
    said = result.stderr.decode()
    assert "Traceback" not in said + result.stdout.decode(), said

    # The stick part, as before.
    stick_part, live_part = said.split("\n8. ", 1)
    assert "bob's copy of photo.jpg is identical (sha256)" in stick_part
    assert stick_part.count("  delivered  via relay1 -> relay2") == 2, said

    # Four daemons, bob first, each linked to the one started before it.
    ports = logged_ports(demo)
    assert set(ports) == set(NODES), ports
    places = []
    for name, link in (("bob", None), ("relay2", "bob"), ("relay1", "relay2"), ("alice", "relay1")):
        linked = f" --link {link}=127.0.0.1:{ports[link]}" if link else ""
        line = (
            f"\n  {name + ':':<7} rise-daemon --listen 127.0.0.1:0{linked}"
            f"  -> listening on 127.0.0.1:{ports[name]}\n"
        )
        assert line in live_part, f"no {line!r} in:\n{live_part}"
        places.append(live_part.index(line))
    assert places == sorted(places)

    # The message, live over both relays, and its receipt.
    arrived = re.search(
        r"^  bob's inbox, (\d+\.\d\d) s after rise-send started: from alice: '(.*)'$",
        live_part,
        re.M,
    )
    assert arrived, live_part
    assert float(arrived.group(1)) < 30
    assert "nobody carried anything" in live_part
    receipt = re.search(
        r"^  ([a-z2-7]{26})  delivered  via relay1 -> relay2  \((\d+\.\d\d) s after",
        live_part,
        re.M,
    )
    assert receipt, live_part
    message = demo / "bob" / "inbox" / f"{receipt.group(1)}.msg"
    assert message.read_text().strip() == arrived.group(2)
    assert "  relay1: forwarded: to relay2, forwarded: to alice" in live_part
    assert "  relay2: forwarded: to bob, forwarded: to relay1" in live_part

    # Every daemon stopped cleanly; the logs are where the demo says.
    assert "11. The four daemons stop (SIGTERM)" in live_part
    for name in NODES:
        log = demo / f"daemon-{name}.log"
        assert str(log) in live_part
        assert "Traceback" not in log.read_text(), log.read_text()
    assert "did not stop" not in said and "exited with status" not in said
    assert_daemons_gone(demo)


def read_until(process: subprocess.Popen[bytes], marker: bytes, seconds: float) -> bytes:
    """The process's stderr up to and including `marker` (bounded)."""
    assert process.stderr is not None
    seen = b""
    deadline = time.monotonic() + seconds
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or process.poll() is not None:
            raise AssertionError(f"no {marker!r} in:\n{seen.decode(errors='replace')}")
        ready, _, _ = select.select([process.stderr], [], [], left)
        if ready:
            seen += os.read(process.stderr.fileno(), 1 << 16)
    return seen


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_interrupted_while_daemons_run_stops_them(tmp_path: Path, signum: int) -> None:
    demo = tmp_path / "demo"
    process = subprocess.Popen(
        [str(BIN / "rise"), "demo", "--dir", str(demo)],
        env=command_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # bob's and relay2's daemons run; relay1's and alice's are yet to start.
        said = read_until(process, b"\n  relay2: rise-daemon", 45)
        process.send_signal(signum)
        rest = process.communicate(timeout=30)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said += rest
    text = said.decode(errors="replace")
    assert process.returncode == 130, text
    assert text.rstrip().endswith("rise: interrupted"), text
    assert "Traceback" not in text
    assert {"bob", "relay2"} <= set(logged_ports(demo)), text
    assert_daemons_gone(demo)
