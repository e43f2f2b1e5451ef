"""Progress bars: drawn on a real pseudo-terminal, never with -q or when stderr is not one.

Each command runs as installed, its stderr on the slave side of a pty
(os.openpty, with a window size as a terminal has), and what it drew is read
back from the master. The bars' last state (100%, the totals) is what is
checked: tqdm always draws it when a bar closes, so nothing here depends on
timing.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
from pathlib import Path

from tests.conftest import BIN, Node, command_env
from tests.e2e.test_mailbox_e2e import share
from tests.e2e.test_send_worker import nodes, short_base, start_daemon, stop  # noqa: F401
from tests.mailserver import Dovecot

SIZE = 3 << 20  # over cli/bars.py's MIN_BAR_BYTES: bars at once, whatever the speed


def on_pty(
    node: Node,
    *args: str,
    extra_env: dict[str, str] | None = None,
    python: bool = False,
    worker: bool = False,
) -> tuple[int, str, bytes]:
    """Run an installed command with stderr on a pty: (exit status, the pty's text, stdout)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    command = [str(BIN / args[0]), *args[1:]]
    if python:
        command = [str(BIN / "python"), "-X", "importtime", *command]
    env = command_env(node.home, TERM="xterm", **(extra_env or {}))
    if not worker:
        env["RISE_NO_DAEMON"] = "1"
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the slave side has closed it
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert process.stdout is not None
    out = process.stdout.read()
    process.stdout.close()
    return process.wait(timeout=120), drawn.decode(errors="replace"), out


def payload(path: Path, size: int = SIZE) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def test_rise_send_draws_a_bar_on_a_terminal_and_nothing_with_q(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, _bob = pair
    big = payload(tmp_path / "big.bin")
    status, drawn, out = on_pty(alice, "rise-send", str(big), "bob")
    assert status == 0, drawn
    assert "sealing for bob: 100%|" in drawn
    assert "3.0 MiB / 3.0 MiB" in drawn and "ETA" in drawn
    assert out.strip()  # the bundle id, on stdout as ever

    status, drawn, out = on_pty(alice, "rise-send", "-q", str(big), "bob")
    assert status == 0
    assert drawn == ""  # -q: nothing at all on the terminal
    assert out.strip()

    piped = alice.run("rise-send", str(big), "bob")  # stderr a pipe: talk, no bar
    assert b"queued file for bob" in piped.stderr
    assert b"%|" not in piped.stderr and b"\r" not in piped.stderr


def test_a_small_message_draws_nothing_and_never_imports_tqdm(pair: tuple[Node, Node]) -> None:
    alice, _bob = pair
    status, drawn, _out = on_pty(alice, "rise-send", "/etc/hostname", "bob", python=True)
    assert status == 0, drawn
    assert "queued file for bob" in drawn
    assert "%|" not in drawn
    assert "| tqdm" not in drawn  # -X importtime lists every module imported


def test_xfer_and_toss_draw_per_lane_and_per_bundle(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    for number in range(2):
        alice.run("rise-send", str(payload(tmp_path / f"file{number}.bin")), "bob")
    status, drawn, _out = on_pty(alice, "rise-xfer", str(stick))
    assert status == 0, drawn
    assert "to bob (2/2): 100%|" in drawn  # the overall line, left when done
    assert "6.0 MiB / 6.0 MiB" in drawn
    assert "  " + os.listdir(stick / "rise-dtn" / bob.node_id / alice.node_id)[0][:8] in drawn

    piped = bob.run("rise-xfer", str(stick))  # taken into rx/, no terminal: no bars
    assert b"%|" not in piped.stderr and b"received 2 (6.0 MiB)" in piped.stderr
    status, drawn, _out = on_pty(bob, "rise-toss")
    assert status == 0, drawn
    assert "tossing (2/2): 100%|" in drawn
    assert "delivered file from alice" in drawn

    status, drawn, _out = on_pty(bob, "rise-toss", "-q")  # nothing left, and quiet
    assert status == 0 and drawn == ""


def test_xfer_toss_streams_from_the_medium_with_a_bar(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    alice.run("rise-send", str(payload(tmp_path / "one.bin")), "bob")
    alice.run("rise-xfer", str(stick))
    status, drawn, _out = on_pty(bob, "rise-xfer", "--toss", str(stick))
    assert status == 0, drawn
    assert "from alice: 100%|" in drawn and "3.0 MiB / 3.0 MiB" in drawn
    assert (bob.incoming / "alice" / "one.bin").stat().st_size == SIZE

    status, drawn, _out = on_pty(alice, "rise-xfer", "-q", str(stick))
    assert status == 0 and drawn == ""


def test_rise_call_draws_the_bundle_it_sends(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    alice, _bob = pair
    _process, port = daemon
    alice.run("rise-send", str(payload(tmp_path / "call.bin")), "bob")
    status, drawn, _out = on_pty(alice, "rise-call", "bob", f"tcp://127.0.0.1:{port}")
    assert status == 0, drawn
    assert "to bob: 100%|" in drawn and "3.0 MiB / 3.0 MiB" in drawn
    assert "bob: received 0 (0 B), sent 1 (3.0 MiB), confirmed 1" in drawn

    alice.run("rise-send", str(payload(tmp_path / "again.bin")), "bob")
    status, drawn, _out = on_pty(alice, "rise-call", "-q", "bob", f"tcp://127.0.0.1:{port}")
    assert status == 0 and drawn == ""
    assert not list((alice.spool / "tx").glob("*/*"))  # it went all the same


def test_rise_bundle_draws_both_ways(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, bob = pair
    alice.run("rise-send", str(payload(tmp_path / "tape.bin")), "bob")
    stream = tmp_path / "out.rss"
    status, drawn, _out = on_pty(alice, "rise-bundle", "--out", str(stream))
    assert status == 0, drawn
    assert "to bob: 100%|" in drawn
    status, drawn, _out = on_pty(bob, "rise-bundle", "--in", str(stream), "--toss")
    assert status == 0, drawn
    assert "reading: 100%|" in drawn and "tossing: 100%|" in drawn
    assert (bob.incoming / "alice" / "tape.bin").stat().st_size == SIZE


def test_rise_imap_draws_the_bundles_it_mails_and_the_mails_it_takes(
    dovecot: Dovecot, pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, bob = pair
    share(dovecot, pair)
    password = {"RISE_TEST_MAIL_PASSWORD": dovecot.users["alice"].password}
    alice.run("rise-send", str(payload(tmp_path / "mailed.bin")), "bob")
    status, drawn, _out = on_pty(alice, "rise-imap", extra_env=password)
    assert status == 0, drawn
    assert "to bob: 100%|" in drawn and "3.0 MiB / 3.0 MiB" in drawn
    assert "bob: received 0 (0 B), sent 1 (3.0 MiB)" in drawn
    # The taking side counts the mail's own bytes (base64: a third more than the bundle).
    status, drawn, _out = on_pty(bob, "rise-imap", "--toss", extra_env=password)
    assert status == 0, drawn
    assert "from alice: 100%|" in drawn
    assert "alice: received 1 (3.0 MiB)" in drawn
    assert (bob.incoming / "alice" / "mailed.bin").stat().st_size == SIZE


def test_a_send_through_the_daemons_warm_worker_draws_on_the_callers_terminal(
    nodes: tuple[Node, Node],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    alice, _bob = nodes
    daemon = start_daemon(alice)
    try:
        status, drawn, out = on_pty(
            alice, "rise-send", str(payload(tmp_path / "warm.bin")), "bob", worker=True
        )
    finally:
        stop(daemon)
    assert status == 0, drawn
    assert "sealing for bob: 100%|" in drawn
    # Talk as a rise-send run here would: not in the daemon's log format.
    assert "\nqueued file for bob: 3.0 MiB in a 3.0 MiB bundle" in drawn.replace("\r", "")
    assert " INFO " not in drawn and out.strip()


def test_a_hostile_name_on_the_stick_draws_no_terminal_control_sequence(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    """The bar of the bundle in hand shows its name on the stick, which whoever held the
    stick chose: an escape sequence there (set the window title, clear the screen, move
    the cursor over earlier lines) reached the user's terminal as it was. Lines already
    escape odd bytes (folder.shown); the bars do too."""
    alice, bob = pair
    for number in range(2):
        alice.run("rise-send", str(payload(tmp_path / f"file{number}.bin")), "bob")
    alice.run("rise-xfer", "-q", str(stick))
    folder = stick / "rise-dtn" / bob.node_id / alice.node_id
    first = sorted(folder.iterdir())[0]
    first.rename(folder / f"\x1b]2;owned\x07\x1b[2J{first.name}")
    status, drawn, _out = on_pty(bob, "rise-xfer", str(stick))
    assert status == 0, drawn
    assert "from alice (2/2): 100%|" in drawn
    assert "\x1b]2;owned" not in drawn and "\x1b[2J" not in drawn
    assert "\x07" not in drawn
