"""`rise demo`: a small network on this machine, built and driven step by step.

It uses the same services as the commands (init, peer add, send, xfer,
toss, stat), so a demo that works is a smoke test of the real thing. Its
last part runs the installed commands themselves: a `rise-daemon` per node
with kept links over 127.0.0.1, and `rise-send`, the network live over TCP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rise_dtn.carriers.directory import xfer
from rise_dtn.carriers.directory.audience import Audience
from rise_dtn.core.errors import RiseError, UsageError
from rise_dtn.node import inbox, status
from rise_dtn.node.home import CONFIG_FILE, Home
from rise_dtn.node.send import routed, send
from rise_dtn.node.toss import toss

Say = Callable[[str], None]
DEMO_MARKER = ".rise-demo"
DEMO_FILE_BYTES = 3 * (1 << 20) + 12345  # spans several chunks


def default_directory(cwd: Path) -> Path | None:
    """spool/demo/ when run from a checkout (its contents are git-ignored)."""
    if (cwd / "spool" / "README.md").is_file() and (cwd / "pyproject.toml").is_file():
        return cwd / "spool" / "demo"
    return None


def _exchange_cards(first: Home, second: Home, *, now: int) -> None:
    first.peers.add(second.card(now=now), name=None, self_id=first.identity.node_id, replace=True)
    second.peers.add(first.card(now=now), name=None, self_id=second.identity.node_id, replace=True)


def _neighbours(first: Home, second: Home, *, now: int) -> None:
    """Two nodes that meet: swap cards and mark each other as relays where they relay."""
    _exchange_cards(first, second, now=now)
    for home, other in ((first, second), (second, first)):
        if other.config.relay.enabled:
            home.peers.set_relay(other.config.name, relay=True)


def _make_relay(home: Home) -> Home:
    config = home.path / CONFIG_FILE
    config.write_text(config.read_text().replace("# enabled = true", "enabled = true"))
    return Home.open(home.path)


def _carry(origin: Home, destination: Home, stick: Path, *, now: int, say: Say) -> None:
    """One trip of a stick: origin writes, destination takes and tosses, origin reads the acks."""
    # Each stick serves one link: a relay writes onto it only what is for the node at its other end.
    for_destination = Audience(names=(str(destination.identity.node_id),))
    for_origin = Audience(names=(str(origin.identity.node_id),))
    report = xfer.exchange(origin, stick, move=False, now=now, serving=for_destination)
    say(f"  {origin.config.name}: rise-xfer {stick.name}  -> wrote {report.sent} bundle(s)")
    events: list[toss.TossEvent] = []
    report = xfer.exchange(
        destination,
        stick,
        move=False,
        now=now,
        toss=lambda: events.extend(toss.toss(destination, now=now)),
        serving=for_origin,
    )
    say(f"  {destination.config.name}: rise-xfer --toss {stick.name}  -> took {report.received}")
    for event in events:
        if isinstance(event, toss.Delivered):
            say(f"    delivered {event.kind.name.lower()} from {event.sender}: {event.path}")
        else:
            say(f"    {event.action}: {event.reason}")
    report = xfer.exchange(origin, stick, move=False, now=now, serving=for_destination)
    if report.released:
        say(f"  {origin.config.name}: rise-xfer {stick.name}  -> {report.released} confirmed")


def _prepare(directory: Path) -> None:
    marker = directory / DEMO_MARKER
    if directory.exists() and any(directory.iterdir()):
        if not marker.exists():
            raise UsageError(
                f"{directory} is not empty and not a rise demo; give an empty or new --dir"
            )
        shutil.rmtree(directory)  # our own previous demo network
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("built by `rise demo`; the next demo run replaces this directory\n")


def _where_to_look(directory: Path, logs: list[Path], *, say: Say) -> None:
    say(f"Done. Try: RISE_HOME={directory / 'bob'} rise inbox")
    say(f"     and: RISE_HOME={directory / 'alice'} rise map")
    say(f"The daemons' logs: {logs[0]}")
    for log in logs[1:]:
        say(f"                   {log}")


def run(directory: Path, *, now: int, say: Say) -> None:
    """Build alice, two relays and bob; send a message and a file over the relays by stick,
    then another message over the same network live (a rise-daemon per node)."""
    _prepare(directory)
    rng = random.SystemRandom()
    say(f"1. Four nodes in {directory} (rise init): alice, relay1, relay2, bob")
    alice = Home.create(directory / "alice", name="alice")
    relay1 = _make_relay(Home.create(directory / "relay1", name="relay1"))
    relay2 = _make_relay(Home.create(directory / "relay2", name="relay2"))
    bob = Home.create(directory / "bob", name="bob")
    chain = [alice, relay1, relay2, bob]
    for home in chain:
        say(f"  {home.config.name:<7} = {home.identity.node_id}")
    say("2. Neighbours swap cards (rise card | rise peer add --relay -):")
    say("   alice -- relay1 -- relay2 -- bob; relays have [relay] enabled = true")
    sticks = []
    for first, second in itertools.pairwise(chain):
        _neighbours(first, second, now=now)
        stick = directory / f"stick-{first.config.name}-{second.config.name}"
        stick.mkdir()
        sticks.append(stick)
    say("   alice and bob swap cards too; bob's card names relay2 as its relay (via)")
    bob_card = bob.card(now=now, via=[relay2.identity.node_id])
    alice.peers.add(bob_card, name=None, self_id=alice.identity.node_id, replace=True)
    bob.peers.add(alice.card(now=now), name=None, self_id=bob.identity.node_id, replace=True)
    say("3. relay1 tells alice which relays it knows (a map bundle, on the first stick)")
    _carry(relay1, alice, sticks[0], now=now, say=say)
    say("4. alice sends bob a message and a 3 MiB file over 2 relays (rise-send --hops 2)")
    bob_peer = alice.peers.find("bob")
    two_hops = routed.RouteOptions(hops=2)
    queued = routed.queue_routed(
        alice,
        bob_peer,
        io.BytesIO(b"Hello Bob, the meeting is at six.\n"),
        options=send.SendOptions(),
        route=two_hops,
        now=now,
        rng=rng,
    )
    names = {home.identity.node_id: home.config.name for home in chain}
    path = " -> ".join(names[relay] for relay in queued.copies[0].relays)
    say(f"  message {queued.bundle_id}: a route drawn for it alone: alice -> {path} -> bob")
    payload = os.urandom(DEMO_FILE_BYTES)
    source = directory / "photo.jpg"
    source.write_bytes(payload)
    with open(source, "rb") as handle:
        routed.queue_routed(
            alice,
            bob_peer,
            handle,
            options=send.SendOptions(name="photo.jpg"),
            route=two_hops,
            now=now,
            rng=rng,
        )
    say("5. The sticks travel hop by hop; each relay peels one layer (rise-xfer --toss)")
    for (origin, destination), stick in zip(itertools.pairwise(chain), sticks, strict=True):
        _carry(origin, destination, stick, now=now, say=say)
    delivered = bob.incoming_dir("alice") / "photo.jpg"
    same = hashlib.sha256(delivered.read_bytes()).digest() == hashlib.sha256(payload).digest()
    say(f"  bob's copy of photo.jpg is {'identical' if same else 'DIFFERENT'} (sha256)")
    for message in inbox.messages(bob):
        say(f"  bob's inbox: from {message.sender_name}: {message.path.read_text().strip()!r}")
    say("6. bob's signed receipts travel back over the relays")
    backwards = list(zip(itertools.pairwise(reversed(chain)), reversed(sticks), strict=True))
    for (origin, destination), stick in backwards:
        _carry(origin, destination, stick, now=now, say=say)
    say("7. alice sees both delivered (rise status):")
    for row in status.sent_status(alice, now=now):
        say(f"  {row.bundle_id}  {row.state}  via {' -> '.join(row.routes[0])}")
    _where_to_look(directory, _live(directory, chain, sticks, say=say), say=say)
    if not same:
        raise RuntimeError("the demo file arrived damaged")


# -- the same network live over TCP (rise-daemon with kept links) -------------------

LIVE_MESSAGE = b"Hello again Bob, this one took the live links.\n"
LIVE_WAIT_SECONDS = 30.0  # for the message, then for its receipt
START_SECONDS = 15.0  # for a daemon's "listening on" line
STOP_SECONDS = 15.0  # a stopping daemon gives its sessions up to 10 s to wind down
POLL_SECONDS = 0.002


def find_command(name: str) -> Path:
    """An installed rise-dtn command: beside this interpreter's scripts, else on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        raise RiseError(f"cannot find the {name} command; is rise-dtn installed (./dev setup)?")
    return Path(found)


class _Interrupts:
    """While daemons run, Ctrl-C and SIGTERM only take note; the demo checks between steps.

    So a signal never lands between a daemon's start and its bookkeeping (a
    daemon nobody would stop), nor halfway through stopping them.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt


@dataclasses.dataclass
class _Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def last_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(nothing logged)"

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RiseError(
                f"{self.name}'s rise-daemon exited with status {code}: {self.last_line()}"
                f" (see {self.log})"
            )


def _environment(home: Home) -> dict[str, str]:
    env = dict(os.environ)
    env["RISE_HOME"] = str(home.path)
    return env


def _start_daemon(
    command: Path,
    home: Home,
    link: tuple[str, int] | None,
    *,
    log: Path,
    daemons: list[_Daemon],
    interrupts: _Interrupts,
) -> _Daemon:
    """`rise-daemon --listen 127.0.0.1:0 [--link NODE=127.0.0.1:PORT]`, logging to `log`.

    The port is on the daemon's first line ("listening on HOST:PORT"), read
    from the log; every later line stays there too.
    """
    name = home.config.name
    args = [str(command), "--listen", "127.0.0.1:0"]
    if link is not None:
        args += ["--link", f"{link[0]}=127.0.0.1:{link[1]}"]
    try:
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                args,
                env=_environment(home),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=handle,
                start_new_session=True,  # a Ctrl-C reaches only the demo, which stops them
            )
    except OSError as exc:
        raise RiseError(f"cannot start {command}: {exc.strerror or exc}") from None
    daemon = _Daemon(name, process, log)
    daemons.append(daemon)  # from here on, stopped on every path
    deadline = time.monotonic() + START_SECONDS
    while True:
        text = log.read_bytes()
        if b"\n" in text:
            break
        daemon.check_running()
        if time.monotonic() > deadline:
            raise RiseError(f"{name}'s rise-daemon did not start in {START_SECONDS:.0f} s ({log})")
        interrupts.check()
        time.sleep(POLL_SECONDS)
    first = text.split(b"\n", 1)[0].decode(errors="replace").strip()
    # After the log line's time and level: "... INFO listening on 127.0.0.1:PORT".
    _before, said, where = first.partition("listening on ")
    host, _colon, port = where.rpartition(":")
    if not said or host != "127.0.0.1" or not port.isdigit():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)  # failing (a traceback, say): let it finish its last line
        daemon.check_running()
        raise RiseError(
            f"{name}'s rise-daemon said {first!r}, not 'listening on 127.0.0.1:PORT' (see {log})"
        )
    daemon.port = int(port)
    return daemon


def _stop(daemons: list[_Daemon], *, failing: bool = False) -> list[str]:
    """SIGTERM to all, a bounded wait, SIGKILL for any left; what went wrong, if anything.

    `failing`: the demo stops on an error, which already told of a daemon
    that exited on its own; only stopping them cleanly is left to report.
    """
    stopping, problems = [], []
    for daemon in daemons:
        code = daemon.process.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                daemon.process.send_signal(signal.SIGTERM)
            stopping.append(daemon)
        elif not failing:
            problems.append(f"{daemon.name}'s rise-daemon exited with status {code} by itself")
    deadline = time.monotonic() + STOP_SECONDS
    for daemon in stopping:
        try:
            code = daemon.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.process.wait(timeout=5)
            problems.append(f"{daemon.name}'s rise-daemon did not stop in time; killed it")
            continue
        if code not in (0, -signal.SIGTERM):  # -SIGTERM: stopped before it set its handlers
            problems.append(f"{daemon.name}'s rise-daemon exited with status {code}")
    return problems


def _wait_for(
    check: Callable[[], bool],
    *,
    started: float,
    what: str,
    daemons: list[_Daemon],
    interrupts: _Interrupts,
    pause: float = POLL_SECONDS,
) -> float:
    """Poll `check` (bounded); the seconds from `started` to the moment it held."""
    deadline = started + LIVE_WAIT_SECONDS
    while not check():
        now_ = time.monotonic()
        if now_ > deadline:
            logs = daemons[0].log.parent / "daemon-*.log"
            raise RiseError(f"no {what} {LIVE_WAIT_SECONDS:.0f} s after rise-send (see {logs})")
        for daemon in daemons:
            daemon.check_running()
        interrupts.check()
        time.sleep(pause)
    return time.monotonic() - started


def _files(sticks: list[Path]) -> dict[Path, tuple[int, int]]:
    return {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for stick in sticks
        for path in stick.rglob("*")
        if path.is_file()
    }


def _rise_send(
    command: Path, sender: Home, recipient: Home, *, interrupts: _Interrupts
) -> tuple[str, str]:
    """`echo ... | rise-send --hops 2 - bob` as alice: the bundle id, and what it said."""
    try:
        sent = subprocess.run(
            [str(command), "--hops", "2", "-", recipient.config.name],
            input=LIVE_MESSAGE,
            capture_output=True,
            env=_environment(sender),
            timeout=LIVE_WAIT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        interrupts.check()
        raise RiseError(f"rise-send took over {LIVE_WAIT_SECONDS:.0f} s") from None
    interrupts.check()  # a Ctrl-C stops rise-send too: say so, not its status 130
    said = sent.stderr.decode(errors="replace").strip().splitlines()
    if sent.returncode != 0:
        raise RiseError(
            f"rise-send exited with status {sent.returncode}: "
            f"{said[-1] if said else '(no message)'}"
        )
    bundle_id = sent.stdout.decode().strip()
    return bundle_id, said[-1] if said else bundle_id


def _live(directory: Path, chain: list[Home], sticks: list[Path], *, say: Say) -> list[Path]:
    """Steps 8 to 11: a daemon per node, links kept open, a message and its receipt.

    Returns the daemons' log files.
    """
    alice, _relay1, _relay2, bob = chain
    rise_daemon, rise_send = find_command("rise-daemon"), find_command("rise-send")
    say("8. The same network live over TCP: a rise-daemon per node, each keeping a link")
    say("   open to the next one (--link); daemons toss at once and forward on their links")
    untouched = _files(sticks)
    daemons: list[_Daemon] = []
    with _Interrupts() as interrupts:
        try:
            link: tuple[str, int] | None = None
            for home in reversed(chain):  # bob first: each dials one that already listens
                log = directory / f"daemon-{home.config.name}.log"
                daemon = _start_daemon(
                    rise_daemon, home, link, log=log, daemons=daemons, interrupts=interrupts
                )
                linked = f" --link {link[0]}=127.0.0.1:{link[1]}" if link else ""
                say(
                    f"  {daemon.name + ':':<7} rise-daemon --listen 127.0.0.1:0{linked}"
                    f"  -> listening on 127.0.0.1:{daemon.port}"
                )
                link = (daemon.name, daemon.port)
            say("9. alice sends bob another message over 2 relays (rise-send --hops 2)")
            started = time.monotonic()
            bundle_id, said = _rise_send(rise_send, alice, bob, interrupts=interrupts)
            say(f"  alice: rise-send --hops 2 - bob  -> {said}")
            delivered = bob.inbox_dir / f"{bundle_id}.msg"
            arrived = _wait_for(
                delivered.exists,
                started=started,
                what="message in bob's inbox",
                daemons=daemons,
                interrupts=interrupts,
            )
            text = delivered.read_text(errors="replace").strip()
            say(f"  bob's inbox, {arrived:.2f} s after rise-send started: from alice: {text!r}")
            if _files(sticks) == untouched:
                say("  nobody carried anything: the sticks are as step 6 left them;")
                say("  relay1 and relay2 forwarded it on their live links")
            say("10. bob's receipt comes back over the same links; alice sees it (rise status):")

            def receipted() -> bool:
                rows = status.sent_status(alice, now=int(time.time()), bundle_id=bundle_id)
                return any(row.state == "delivered" for row in rows)

            back = _wait_for(
                receipted,
                started=started,
                what="receipt from bob",
                daemons=daemons,
                interrupts=interrupts,
                pause=0.01,
            )
            for row in status.sent_status(alice, now=int(time.time()), bundle_id=bundle_id):
                say(
                    f"  {row.bundle_id}  {row.state}  via {' -> '.join(row.routes[0])}"
                    f"  ({back:.2f} s after rise-send started)"
                )
        except BaseException:
            for problem in _stop(daemons, failing=True):
                say(f"  {problem}")
            raise
        problems = _stop(daemons)
    interrupts.check()  # Ctrl-C while they stopped
    if problems:
        raise RiseError("; ".join(problems))
    say("11. The four daemons stop (SIGTERM); the relays' logs show what they forwarded:")
    by_name = {daemon.name: daemon for daemon in daemons}
    for daemon in (by_name[home.config.name] for home in chain[1:3]):
        forwarded = [
            line.split(": ", 1)[1]
            for line in daemon.log.read_text(errors="replace").splitlines()
            if ": forwarded: " in line
        ]
        say(f"  {daemon.name}: {', '.join(forwarded) or 'nothing forwarded'}")
    return [daemon.log for daemon in reversed(daemons)]
