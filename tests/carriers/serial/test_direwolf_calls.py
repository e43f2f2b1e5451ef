"""Two real nodes over the air: rise-serial and rise-call through two real Direwolf TNCs.

The installed rise-serial answers on station B's KISS TCP port and
rise-call calls from station A's (tests/direwolf.py: Direwolf 1.6 on a
simulated channel, no sound card), at AFSK 1200 and G3RUH 9600. A link of
their own, not the frame tests' (test_direwolf.py): a TNC transmits what
it queued even after its client is gone, and such a late frame must not
reach another test's KISS client. Waits are polls with a deadline;
nothing is asserted about how fast (bench/radio.py measures that).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import BIN, Node, command_env
from tests.direwolf import DirewolfLink

FRAME_DEADLINE_SECONDS = 60.0  # a frame's air time many times over, on a loaded machine


# A session over the air: a message and a small file, sized so that 1200 baud
# takes about fifteen seconds of air and 9600 a few.
FILE_BYTES = {1200: 1024, 9600: 8192}
PROFILES = {1200: "tnc1200", 9600: "tnc9600"}
CALL_TIMEOUT_SECONDS = 300.0


def test_a_message_and_a_small_file_cross_the_air_between_two_nodes(
    link: DirewolfLink, pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, bob = pair
    baud = link.modem.baud
    data = os.urandom(FILE_BYTES[baud])
    (tmp_path / "small.bin").write_bytes(data)
    alice.run("rise-send", "-q", str(tmp_path / "small.bin"), "bob")
    alice.run("rise-send", "-q", "-", "bob", input=b"over the air to bob")
    bob.run("rise-send", "-q", "-", "alice", input=b"and back to alice")
    a, b = link.stations
    address = "kiss+tcp://127.0.0.1:{}?profile=" + PROFILES[baud]
    log = tmp_path / "rise-serial.log"
    with log.open("wb") as stderr:
        answering = subprocess.Popen(
            [str(BIN / "rise-serial"), address.format(b.kiss_port)],
            env=command_env(bob.home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        called = alice.run(
            "rise-call",
            "--toss",
            "bob",
            "--address",
            address.format(a.kiss_port),
            check=False,
            timeout=CALL_TIMEOUT_SECONDS,
        )
        assert called.returncode == 0, called.stderr.decode()
        deadline = time.monotonic() + FRAME_DEADLINE_SECONDS
        while not (bob.incoming / "alice" / "small.bin").is_file():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # rise-serial tosses as the bundle lands: a poll with a deadline
    finally:
        answering.send_signal(signal.SIGTERM)
        answering.wait(timeout=30)
    assert (bob.incoming / "alice" / "small.bin").read_bytes() == data
    inbox = b"".join(path.read_bytes() for path in (bob.home / "inbox").iterdir())
    assert b"over the air to bob" in inbox
    back = b"".join(path.read_bytes() for path in (alice.home / "inbox").iterdir())
    assert b"and back to alice" in back
    assert "Traceback" not in log.read_text(errors="replace")
