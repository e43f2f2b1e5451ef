"""Faults on the live relay chain a -> r1 -> r2 -> b: nothing lost, nothing twice.

Every node runs `rise-daemon` with a kept link to its next neighbour
(tests/e2e/test_online_relays.py). Here the chain is hurt while a 24 MiB
file crosses it: a daemon killed with SIGKILL at a chosen moment and started
again on the same port, TCP connections cut (FIN or RST) at random byte
offsets, a relay stopped while messages are sent. The daemon to kill stops
itself at the moment's step (tests/e2e/pausing/sitecustomize.py: a partial
copy past an offset, a forward or a delivery being written, a DATA frame
past an offset, a STORED heard, a receipt about to be queued) and is
killed there, however loaded the machine is; the spools then show that the
kill landed in the moment.

Whatever happened, the file must reach b exactly once (no "big.1.bin"),
intact, a must learn so from b's receipt, every spool must empty and
`rise-check` must find every node clean.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.relay_network import MIB, Network, digest
from tests.e2e.test_online_relays import (
    CHAIN,
    Daemons,
    _quiet,
    chain,
    delivered_status,
    wait_for,
)

FILE_BYTES = 24 * MIB
CHECKPOINT = 16 * MIB  # rise_dtn.carriers.live.link.CHECKPOINT_BYTES: a partial copy's fsync step
PHASE_SECONDS = 30.0  # how long a kill waits for its moment
POLL_SECONDS = 0.01  # how often it looks; the daemon waits there, stopped, until killed
PAUSING = Path(__file__).resolve().parent / "pausing"  # sitecustomize.py, on the daemon's path
SETTLE_SECONDS = 60.0  # delivery, receipt and quiet spools after the fault
# Who keeps a link to whom, as `chain()` starts them.
LINKS = {"a": ("r1",), "r1": ("r2",), "r2": ("b",), "b": ()}

# -- what the spools show ---------------------------------------------------------------


def _sizes(paths: Iterator[Path]) -> list[int]:
    """Sizes of files that may vanish (renamed into place) while we look."""
    sizes = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            sizes.append(path.stat().st_size)
    return sizes


def partial_bytes(net: Network, name: str) -> int:
    """The largest partial copy `name` is receiving (spool/tmp/partial/<peer>/*.part)."""
    return max(_sizes((net[name].spool / "tmp" / "partial").glob("*/*.part")), default=0)


def checkpointed(net: Network, name: str) -> bool:
    """Has a partial copy of `name`'s been fsynced at least once (a *.part.ok beside it)?"""
    return any((net[name].spool / "tmp" / "partial").glob("*/*.part.ok"))


def forward_bytes(net: Network, name: str) -> int:
    """The largest forward a relay's toss is writing (spool/tmp/.rise-tmp-*)."""
    return max(_sizes((net[name].spool / "tmp").glob(".rise-tmp-*")), default=0)


def delivery_bytes(net: Network) -> int:
    """How much of big.bin b's toss has written to its tmp file in incoming/a/."""
    return max(_sizes((net["b"].incoming / "a").glob(".rise-tmp-big.bin-*")), default=0)


def delivered_file(net: Network) -> bool:
    return (net["b"].incoming / "a" / "big.bin").exists()


def queued_by_b(net: Network) -> int:
    """Bundles b ever queued for its neighbour: waiting in tx/ or released (its receipts)."""
    path = net["b"].spool / "index.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        (count,) = db.execute(
            "select (select count(*) from release)"
            " + (select count(*) from spool_entry where direction = 'tx')"
        ).fetchone()
    return int(count)


def leftovers(net: Network, name: str) -> list[str]:
    """Partial copies, checkpoints and tmp files left in `name`'s spool/tmp/."""
    tmp = net[name].spool / "tmp"
    return sorted(str(path.relative_to(tmp)) for path in tmp.rglob("*") if path.is_file())


# -- the moments to strike ----------------------------------------------------------------


class Moment:
    """A phase of the transfer: `step` is where the daemon stops itself for the kill
    (tests/e2e/pausing/sitecustomize.py), `held(net)` says the kill landed in the
    phase (checked once the daemon is dead)."""

    def __init__(
        self,
        step: dict[str, object],
        held: Callable[[Network], bool],
        *,
        receipt_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.step = step
        self.held = held
        self.receipt_seconds = receipt_seconds


R1_MOMENTS = {
    # Receiving from a, before its first 16 MiB checkpoint: a resumes from 0.
    "r1-receiving-early": Moment(
        {"step": "partial", "bytes": 4 * MIB},
        lambda net: net.rx("r1") == [] and 0 < partial_bytes(net, "r1") < FILE_BYTES,
    ),
    # Receiving from a, past the checkpoint: a resumes from 16 MiB.
    "r1-receiving-late": Moment(
        {"step": "partial", "bytes": CHECKPOINT + 2 * MIB},
        lambda net: (
            net.rx("r1") == []
            and checkpointed(net, "r1")
            and partial_bytes(net, "r1") >= CHECKPOINT
        ),
    ),
    # The packet durable in rx/ (a has its STORED), the toss writing the forward.
    "r1-forwarding": Moment(
        {"step": "tmp", "path": "spool/tmp/.rise-tmp-*", "bytes": MIB},
        lambda net: (
            net.rx("r1") != [] and forward_bytes(net, "r1") >= MIB and net.tx("r1", "r2") == []
        ),
    ),
    # The forward in tx/r2/, r2's partial copy growing.
    "r1-sending": Moment(
        {"step": "data", "bytes": 4 * MIB},
        lambda net: net.tx("r1", "r2") != [] and net.rx("r2") == [] and net.tx("r2", "b") == [],
    ),
    # r2 has the whole packet in rx/ and confirms it; r1 has not released its copy.
    "r1-confirming": Moment(
        {"step": "stored", "bytes": FILE_BYTES},
        lambda net: net.tx("r1", "r2") != [],
        receipt_seconds=20.0,  # when r2 tosses it, the receipt is back in a few seconds
    ),
}
R1_MOMENT_NAMES = list(R1_MOMENTS)


B_STEPS: dict[str, dict[str, object]] = {
    "b-receiving": {"step": "partial", "bytes": CHECKPOINT + 2 * MIB},
    "b-delivering": {"step": "tmp", "path": "incoming/a/.rise-tmp-big.bin-*", "bytes": MIB},
    "b-receipting": {"step": "receipt", "after": "incoming/a/big.bin"},
}
B_MOMENT_NAMES = list(B_STEPS)


def b_moments(queued_before: int) -> dict[str, Moment]:
    """`queued_before`: what b had queued before the file (so its receipt is the next)."""
    return {
        # Receiving from r2, past the checkpoint.
        "b-receiving": Moment(
            B_STEPS["b-receiving"],
            lambda net: net.rx("b") == [] and partial_bytes(net, "b") >= CHECKPOINT,
        ),
        # The packet in rx/, the toss decrypting big.bin into a tmp file in incoming/a/.
        "b-delivering": Moment(
            B_STEPS["b-delivering"],
            lambda net: (
                net.rx("b") != [] and delivery_bytes(net) >= MIB and not delivered_file(net)
            ),
        ),
        # big.bin delivered and recorded (the packet gone from rx/), the receipt
        # for a not queued yet: a window of a few tens of milliseconds, once.
        "b-receipting": Moment(
            B_STEPS["b-receipting"],
            lambda net: (
                delivered_file(net) and net.rx("b") == [] and queued_by_b(net) == queued_before
            ),
            receipt_seconds=20.0,  # with the receipt queued, it is back in a few seconds
        ),
    }


def pausing(step: dict[str, object], marker: Path) -> dict[str, str]:
    """The environment of a daemon that stops itself at `step`, once it has
    written `marker`."""
    return {
        "PYTHONPATH": str(PAUSING),
        "E2E_PAUSE_AT": json.dumps(step),
        "E2E_PAUSED": str(marker),
    }


def kill_at(
    net: Network, daemons: Daemons, name: str, moment: Moment, what: str, *, marker: Path
) -> None:
    """SIGKILL `name`'s daemon, started with `pausing`, once it has stopped at the
    moment's step; check that the kill landed in the moment."""
    process = daemons.processes[name]
    deadline = time.monotonic() + PHASE_SECONDS
    while not marker.exists():
        assert process.poll() is None, daemons.log(name)
        if time.monotonic() > deadline:
            raise AssertionError(f"the transfer never reached {what}")
        time.sleep(POLL_SECONDS)  # a poll with a deadline, for a state that stays
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert moment.held(net), f"the kill of {name} missed {what}"


def restart(daemons: Daemons, name: str) -> None:
    """`name`'s daemon again, on its old port: its neighbours' kept links find it there."""
    daemons.run(name, f"127.0.0.1:{daemons.ports[name]}", LINKS[name])


# -- what must hold afterwards ----------------------------------------------------------


def send_big_file(net: Network, tmp_path: Path) -> tuple[str, bytes]:
    payload = os.urandom(FILE_BYTES)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    return net.send("a", "b", source).stdout.split()[0].decode(), payload


def assert_settled(
    net: Network, daemons: Daemons, bundle_ids: list[str], *, seconds: float = SETTLE_SECONDS
) -> None:
    """Every bundle's receipt is back at a, and nothing waits anywhere."""
    for bundle_id in bundle_ids:
        wait_for(
            f"b's receipt for {bundle_id}",
            lambda b=bundle_id: delivered_status(net, b),
            seconds=seconds,
        )
    wait_for("every spool to empty", lambda: _quiet(net), seconds=SETTLE_SECONDS)
    wait_for(
        "no partial copy or tmp file left",
        lambda: not any(leftovers(net, name) for name in net.nodes),
        seconds=SETTLE_SECONDS,
    )
    for name in net.nodes:
        log = daemons.log(name)
        for sign in ("Traceback", "Task exception", "Task was destroyed"):
            assert sign not in log, f"{name}'s log:\n{log}"


def assert_file_once(net: Network, payload: bytes) -> None:
    """big.bin at b exactly once and intact: no big.1.bin, no tmp file, nothing in the inbox."""
    assert net.incoming("b", "a") == {"big.bin": digest(payload)}
    assert net.inbox("b") == []


def assert_checks_clean(net: Network) -> None:
    """`rise-check` finds every node clean: no problem at all is let through."""
    for name, node in net.nodes.items():
        check = node.run("rise-check", check=False)
        assert check.returncode == 0, f"{name}: {check.stdout.decode()}{check.stderr.decode()}"


# -- SIGKILL at chosen moments ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("what", R1_MOMENT_NAMES)
def test_a_relay_killed_mid_file_delivers_it_once(tmp_path: Path, what: str) -> None:
    """SIGKILL r1 while it receives the file, forwards it, or sends it on; restart it."""
    moment, marker = R1_MOMENTS[what], tmp_path / "paused"
    with chain(tmp_path, env={"r1": pausing(moment.step, marker)}) as (net, daemons):
        file_id, payload = send_big_file(net, tmp_path)
        kill_at(net, daemons, "r1", moment, what, marker=marker)
        restart(daemons, "r1")
        assert_settled(net, daemons, [file_id], seconds=moment.receipt_seconds)
        assert_file_once(net, payload)
    assert_checks_clean(net)


@pytest.mark.slow
@pytest.mark.parametrize("what", B_MOMENT_NAMES)
def test_the_recipient_killed_mid_file_delivers_it_once(tmp_path: Path, what: str) -> None:
    """SIGKILL b while its partial copy grows, its toss writes big.bin, or it is about to
    send the receipt; restart it."""
    marker = tmp_path / "paused"
    with chain(tmp_path, env={"b": pausing(B_STEPS[what], marker)}) as (net, daemons):
        moment = b_moments(queued_by_b(net))[what]
        file_id, payload = send_big_file(net, tmp_path)
        kill_at(net, daemons, "b", moment, what, marker=marker)
        restart(daemons, "b")
        assert_settled(net, daemons, [file_id], seconds=moment.receipt_seconds)
        assert_file_once(net, payload)
    assert_checks_clean(net)


# -- connections cut at random bytes ------------------------------------------------------


class Splice:
    """One proxied connection: bytes copied both ways until EOF, or until `left` runs out.

    The cut ends both sides with FIN (shutdown), or with `reset` with RST
    (SO_LINGER 0), as a crashed peer or a middlebox would.
    """

    def __init__(
        self, client: socket.socket, server: socket.socket | None, left: int | None, reset: bool
    ) -> None:
        self.sockets = [sock for sock in (client, server) if sock is not None]
        self.left = left  # None: never cut
        self.reset = reset
        self.cut = False

    def copy(self, src: socket.socket, dst: socket.socket, lock: threading.Lock) -> None:
        """Copy one direction until EOF or the cut; then end both."""
        try:
            while data := src.recv(1 << 16):
                with lock:
                    if self.left is not None and len(data) >= self.left:
                        data, self.left, self.cut = data[: self.left], 0, True
                    elif self.left is not None:
                        self.left -= len(data)
                dst.sendall(data)
                if self.cut:
                    break
        except OSError:
            pass
        finally:
            self.shut()

    def shut(self) -> None:
        """Both sockets down: the other direction's recv() returns at once."""
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                if self.cut and self.reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)  # wakes the reader, sends nothing
                else:
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shut()
        for sock in self.sockets:
            sock.close()  # RST for a reset cut


class LinkCutter:
    """A TCP proxy on 127.0.0.1 in front of port `target`.

    Each of the first `cuts` connections is cut, both sides, once a random
    number of bytes in `budget` (both directions together) has crossed it,
    with FIN or RST at random; later connections pass untouched, so that the
    redial backoff of the kept link (1 s, doubling) stays bounded.
    """

    def __init__(self, target: int, *, cuts: int, budget: tuple[int, int], seed: int) -> None:
        self.target = target
        self.cuts = cuts
        self.budget = budget
        self.random = random.Random(seed)
        self.cut_at: list[tuple[int, str]] = []  # (bytes, "FIN" or "RST") per cut connection
        self.lock = threading.Lock()
        self.armed = 0  # connections given a budget that have not ended yet
        self.splices: set[Splice] = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        # Every thread is joined in close(): one left running would make the
        # rest of the test process look threaded (toss then will not fork).
        self.threads: list[threading.Thread] = []
        self._start(self._serve)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                budget, reset = None, False
                if len(self.cut_at) + self.armed < self.cuts:
                    self.armed += 1
                    budget = self.random.randint(*self.budget)
                    reset = self.random.random() < 0.5
            self._start(self._join, client, budget, reset)

    def _join(self, client: socket.socket, budget: int | None, reset: bool) -> None:
        try:
            server: socket.socket | None = socket.create_connection(
                ("127.0.0.1", self.target), timeout=10
            )
        except OSError:
            server = None
        splice = Splice(client, server, budget, reset)
        with self.lock:
            self.splices.add(splice)
        if server is not None:
            server.settimeout(None)
            threads = [
                threading.Thread(target=splice.copy, args=(src, dst, self.lock), daemon=True)
                for src, dst in ((client, server), (server, client))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        splice.close()
        with self.lock:
            self.splices.discard(splice)
            if budget is not None:
                self.armed -= 1
                if splice.cut:
                    self.cut_at.append((budget, "RST" if reset else "FIN"))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.listener.close()
        with self.lock:
            splices = list(self.splices)
        for splice in splices:
            splice.shut()
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in threads), "a proxy thread hung"


# Cuts per link, and the budget range (bytes per cut connection). The kept
# link's redial waits 0.5-1 s, then doubles after every cut (it resets only
# after a session up for 5 minutes), so k cuts on one link cost up to
# 2**k - 1 seconds of waiting: more than ~5 on one link would not fit a
# minute. Every budget ends within the 24 MiB (k * max < 24 MiB), so every
# cut falls inside the file's transfer on that link, not in the receipts.
CUTS = {
    ("a", "r1"): (3, (1 * MIB, 6 * MIB)),
    ("r1", "r2"): (5, (1 * MIB, 4 * MIB)),
    ("r2", "b"): (3, (1 * MIB, 6 * MIB)),
}


@contextlib.contextmanager
def cut_chain(tmp_path: Path) -> Iterator[tuple[Network, Daemons, dict[str, LinkCutter]]]:
    """The chain with a LinkCutter in front of every node a kept link dials."""
    net = Network.build(tmp_path, **CHAIN)  # type: ignore[arg-type]
    daemons = Daemons(net, tmp_path)
    cutters: dict[str, LinkCutter] = {}
    try:
        daemons.start("b")
        for seed, ((name, peer), (cuts, budget)) in enumerate(reversed(CUTS.items())):
            cutter = cutters[f"{name}-{peer}"] = LinkCutter(
                daemons.ports[peer], cuts=cuts, budget=budget, seed=seed
            )
            port, daemons.ports[peer] = daemons.ports[peer], cutter.port
            try:
                daemons.start(name, peer)  # its --link goes to the cutter
            finally:
                daemons.ports[peer] = port
        yield net, daemons, cutters
    finally:
        daemons.stop()
        for cutter in cutters.values():
            cutter.close()


@pytest.mark.slow
def test_a_file_through_links_cut_at_random_bytes_arrives_once(tmp_path: Path) -> None:
    """Every link cut mid-file (r1 -> r2 five times, 11 cuts in all); kept links redial."""
    with cut_chain(tmp_path) as (net, daemons, cutters):
        file_id, payload = send_big_file(net, tmp_path)
        wait_for("big.bin at b", lambda: delivered_file(net), seconds=SETTLE_SECONDS)
        assert_settled(net, daemons, [file_id])
        assert_file_once(net, payload)
        made = {link: len(cutter.cut_at) for link, cutter in cutters.items()}
        assert made == {f"{one}-{other}": cuts for (one, other), (cuts, _b) in CUTS.items()}
        assert sum(made.values()) >= 10
    assert_checks_clean(net)


# -- a relay down while messages are sent --------------------------------------------------


@pytest.mark.slow
def test_twenty_messages_sent_while_a_relay_is_down_arrive_once(tmp_path: Path) -> None:
    """r2 stopped (SIGTERM); twenty messages wait at r1; r2 back: each arrives once."""
    with chain(tmp_path) as (net, daemons):
        daemons.processes["r2"].send_signal(signal.SIGTERM)
        assert daemons.processes["r2"].wait(timeout=30) == 0, daemons.log("r2")
        texts = [f"message {number} while r2 was down\n".encode() for number in range(20)]
        ids = [net.send("a", "b", text).stdout.split()[0].decode() for text in texts]
        # They got as far as they could: all of them wait at r1 for r2.
        wait_for(
            "twenty forwards waiting at r1",
            lambda: net.tx("a") == [] and net.rx("r1") == [] and len(net.tx("r1", "r2")) >= 20,
            seconds=SETTLE_SECONDS,
        )
        assert net.inbox("b") == []
        restart(daemons, "r2")
        wait_for("twenty messages at b", lambda: len(net.inbox("b")) >= 20, seconds=SETTLE_SECONDS)
        assert_settled(net, daemons, ids)
        assert net.inbox("b") == sorted(texts)
    assert_checks_clean(net)


@pytest.mark.slow
def test_messages_through_daemons_killed_at_random_moments_arrive_once(tmp_path: Path) -> None:
    """SIGKILL r1, r2 or b at random moments while messages cross: each is pushed whole,
    a relay forwards it and b delivers it at once (no rx/ in between), STORED only after.
    Restarted, the chain delivers each message once and every receipt comes back."""
    rng = random.Random(12)
    with chain(tmp_path) as (net, daemons):
        texts = [f"message {number} among the kills\n".encode() for number in range(30)]
        ids = []
        for number, text in enumerate(texts):
            ids.append(net.send("a", "b", text).stdout.split()[0].decode())
            if number % 3 == 2:
                victim = rng.choice(("r1", "r2", "b"))
                time.sleep(rng.uniform(0, 0.03))  # somewhere along the message's way
                daemons.processes[victim].send_signal(signal.SIGKILL)
                assert daemons.processes[victim].wait(timeout=10) == -signal.SIGKILL
                restart(daemons, victim)
        wait_for("every message at b", lambda: len(net.inbox("b")) >= len(texts), seconds=120)
        assert_settled(net, daemons, ids)
        assert net.inbox("b") == sorted(texts)
    assert_checks_clean(net)
