"""rise-daemon and rise-call as real processes on 127.0.0.1 (groundwork of [online])."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import BIN, Node, command_env


def test_call_delivers_both_ways_and_daemon_tosses(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    alice, bob = pair
    _process, port = daemon
    payload = os.urandom(5 * (1 << 20) + 3)
    (tmp_path / "data.bin").write_bytes(payload)
    alice.run("rise-send", "-q", str(tmp_path / "data.bin"), "bob")
    bob.run("rise-send", "-q", "-", "alice", input=b"hello alice")
    alice.run("rise-call", "-q", "--toss", "bob", "--address", f"127.0.0.1:{port}")
    assert alice.run("rise", "inbox", "--json").stdout.count(b'"sender": "bob"') == 1
    target = bob.incoming / "alice" / "data.bin"
    for _attempt in range(200):  # the daemon tosses right after the session; poll, bounded
        if target.exists():
            break
        time.sleep(0.05)
    assert target.read_bytes() == payload
    assert not list((alice.spool / "tx").rglob("*.rsb"))


def test_large_bundles_both_ways_at_once_do_not_deadlock(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    """Each side pumps DATA until the socket is full: a receiver that waited for its own
    DATA to leave before reading again made both wait for the other for ever."""
    alice, bob = pair
    _process, port = daemon
    to_bob, to_alice = os.urandom(24 << 20), os.urandom(24 << 20)
    (tmp_path / "to-bob.bin").write_bytes(to_bob)
    (tmp_path / "to-alice.bin").write_bytes(to_alice)
    alice.run("rise-send", "-q", str(tmp_path / "to-bob.bin"), "bob")
    bob.run("rise-send", "-q", str(tmp_path / "to-alice.bin"), "alice")
    alice.run("rise-call", "-q", "--toss", "bob", "--address", f"127.0.0.1:{port}", timeout=90)
    assert (alice.incoming / "bob" / "to-alice.bin").read_bytes() == to_alice
    target = bob.incoming / "alice" / "to-bob.bin"
    for _attempt in range(200):  # the daemon tosses right after the session; poll, bounded
        if target.exists():
            break
        time.sleep(0.05)
    assert target.read_bytes() == to_bob


def test_unknown_key_and_garbage_are_refused_good_peer_still_served(
    pair: tuple[Node, Node], node_factory: object, daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    alice, bob = pair
    process, port = daemon
    eve = node_factory("eve")  # type: ignore[operator]
    eve.run("rise", "peer", "add", "-", input=bob.card())
    result = eve.run("rise-call", "bob", "--address", f"127.0.0.1:{port}", check=False)
    assert result.returncode == 4
    assert result.stderr.decode().count("\n") == 1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x00\x60" + os.urandom(96))  # a garbage handshake
        sock.settimeout(10)
        assert sock.recv(100) == b""  # cut off
    alice.run("rise-send", "-q", "-", "bob", input=b"still here")
    alice.run("rise-call", "-q", "bob", "--address", f"127.0.0.1:{port}")
    assert process.poll() is None  # the daemon survived both
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert process.stderr is not None
    log = process.stderr.read().decode()
    assert "not in the peer book" in log
    assert "Traceback" not in log


def test_call_over_a_pipe_to_a_stdio_daemon(pair: tuple[Node, Node]) -> None:
    """The SSH-style transport, with a local subprocess pipe standing in for ssh."""
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"through the pipe")
    bob.run("rise-send", "-q", "-", "alice", input=b"and back")
    command = f"RISE_HOME={bob.home} {BIN / 'rise-daemon'} --stdio"
    called = alice.run("rise-call", "-q", "--toss", "bob", "--command", command)
    assert (called.stdout, called.stderr) == (b"", b"")  # cron mails nothing: not the far side's
    assert b'"sender": "alice"' in bob.run("rise", "inbox", "--json").stdout
    assert b'"sender": "bob"' in alice.run("rise", "inbox", "--json").stdout
    assert not list((alice.spool / "tx").rglob("*.rsb"))
    assert not list((bob.spool / "tx").rglob("*.rsb"))


def test_a_quiet_call_that_fails_shows_what_its_command_said(pair: tuple[Node, Node]) -> None:
    alice, _bob = pair
    command = "echo 'Permission denied (publickey).' >&2; exit 255"
    failed = alice.run("rise-call", "-q", "bob", "--command", command, check=False)
    assert failed.returncode != 0
    lines = failed.stderr.decode().splitlines()
    assert lines[0] == "Permission denied (publickey)."
    assert len(lines) == 2 and lines[1].startswith("rise-call: "), lines


def test_a_quiet_stdio_daemon_prints_nothing(pair: tuple[Node, Node]) -> None:
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"quietly")
    command = f"RISE_HOME={bob.home} {BIN / 'rise-daemon'} --stdio -q 2>{bob.home / 'far.log'}"
    alice.run("rise-call", "bob", "--command", command)
    assert (bob.home / "far.log").read_bytes() == b""
    assert b'"sender": "alice"' in bob.run("rise", "inbox", "--json").stdout


def test_caller_makes_the_configured_calls_and_calls_never_overlap(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    alice, bob = pair
    _process, port = daemon
    config = alice.home / "config.toml"
    config.write_text(
        config.read_text()
        + f'\n[[calls]]\nnode = "bob"\ncron = "*/5 * * * *"\naddress = "127.0.0.1:{port}"\n'
    )
    alice.run("rise-send", "-q", "-", "bob", input=b"scheduled")
    alice.run("rise-caller", "--now")
    assert not list((alice.spool / "tx").rglob("*.rsb"))
    # While a call to bob holds the lock (cron, rise-caller), another waits its turn.
    bob_id = bob.node_id
    lock_path = alice.spool / "locks" / f"call-{bob_id}.lock"
    with open(lock_path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = alice.run("rise-call", "bob", "--address", f"127.0.0.1:{port}", check=False)
    assert result.returncode == 6
    assert b"a call to bob" in result.stderr


def test_call_finds_an_announcing_daemon_without_an_address(pair: tuple[Node, Node]) -> None:
    """LAN discovery, with the beacons sent to 127.0.0.1 instead of a multicast group."""
    alice, bob = pair
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        beacon_port = probe.getsockname()[1]
    target = f"127.0.0.1:{beacon_port}"
    process = subprocess.Popen(
        [
            str(BIN / "rise-daemon"),
            "--listen",
            "127.0.0.1:0",
            "--announce",
            "--announce-to",
            target,
        ],
        env=command_env(bob.home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        assert b" INFO listening on " in process.stderr.readline()
        alice.run("rise-send", "-q", "-", "bob", input=b"found you")
        alice.run("rise-call", "-q", "--toss", "bob", "--discover-on", target)
        assert not list((alice.spool / "tx").rglob("*.rsb"))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_a_malformed_address_is_an_error_not_a_reason_to_listen(pair: tuple[Node, Node]) -> None:
    alice, _bob = pair
    started = time.monotonic()
    result = alice.run("rise-call", "bob", "--address", "bob:notaport", check=False)
    assert result.returncode == 2
    assert "not an address" in result.stderr.decode()
    assert time.monotonic() - started < 10  # no 12 s wait for a LAN beacon


def test_link_is_refused_with_stdio(pair: tuple[Node, Node]) -> None:
    _alice, bob = pair
    result = bob.run("rise-daemon", "--stdio", "--link", "alice=127.0.0.1:1", check=False)
    assert result.returncode == 2
    assert "--link" in result.stderr.decode()
    assert result.stderr.decode().count("\n") == 1


def test_stdio_on_a_device_or_file_is_one_line(pair: tuple[Node, Node], tmp_path: Path) -> None:
    _alice, bob = pair
    (tmp_path / "frames").write_bytes(b"\0" * 100)
    for source in ("/dev/null", str(tmp_path / "frames")):
        with open(source, "rb") as stdin:
            result = subprocess.run(
                [str(BIN / "rise-daemon"), "--stdio"],
                env=command_env(bob.home),
                stdin=stdin,
                capture_output=True,
                timeout=60,
                check=False,
            )
        assert result.returncode == 2
        assert result.stderr.decode().splitlines() == [
            "rise-daemon: --stdio needs a pipe or socket on standard input (as `rise-call "
            "--command` or ssh gives it), not a terminal, file or device"
        ]


def test_a_taken_port_is_one_line_and_exit_6(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    alice, _bob = pair
    _process, port = daemon
    result = alice.run("rise-daemon", "--listen", f"127.0.0.1:{port}", check=False)
    assert result.returncode == 6
    assert result.stderr.decode().splitlines() == [
        f"rise-daemon: cannot listen on 127.0.0.1:{port}: the port is taken "
        "(another rise-daemon? give --listen HOST:PORT)"
    ]


def listening_sockets(pid: int) -> set[str]:
    """Inodes of the TCP sockets in LISTEN state that process `pid` holds open."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                held.add(target[len("socket:[") : -1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(fields[9])
    return held & listening


def test_a_daemon_that_only_keeps_links_answers_no_calls(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    """--link without --listen binds nothing (it used to take 127.0.0.1:5454), and delivers."""
    alice, bob = pair
    answering, port = daemon  # bob answers
    assert listening_sockets(answering.pid)  # what the check below would see if it listened
    keeper = subprocess.Popen(
        [str(BIN / "rise-daemon"), "--link", f"bob=127.0.0.1:{port}"],
        env=command_env(alice.home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert keeper.stderr is not None
        assert keeper.stderr.readline().endswith(
            b" INFO keeping links to bob; answering no calls\n"
        )
        assert listening_sockets(keeper.pid) == set()
        alice.run("rise-send", "-q", "-", "bob", input=b"over a kept link")
        deadline = time.monotonic() + 60
        while b"over a kept link" not in b"".join(
            path.read_bytes() for path in (bob.home / "inbox").glob("*")
        ):
            assert time.monotonic() < deadline, "not delivered over the kept link"
            time.sleep(0.05)
    finally:
        keeper.send_signal(signal.SIGTERM)
        assert keeper.wait(timeout=20) == 0
