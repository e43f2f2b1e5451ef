"""Nothing lost: kill -9 of rise-send, rise-xfer and rise-toss at random moments.

Each command is started as a real subprocess and SIGKILLed after a random
delay (a fixed seed; some kills land in interpreter start-up, most while the
command works), at least 50 times per command. Afterwards the commands run
to completion, and every bundle that was queued arrives exactly once, byte
for byte, and `rise-check` reports a clean spool after `--repair`.

Two lanes (independent node pairs) run side by side, so that the start-up
of the commands, where many kills land and which dominates a run, is paid
twice as fast. Setting up and refilling a lane happens in-process
(rise_dtn.node.*); only the command under test runs, and dies, as a
subprocess.

The second half kills an in-process operation (in a forked child) just
before each of its write steps in turn (os.write, fsync, replace, link,
unlink, copy_file_range, sendfile as rise_dtn.store.atomic, the medium's
folder.py and toss see them), so that no step is left to chance. The same
operations meet a full disk at each step in test_disk_full.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from rise_dtn.carriers.directory import folder, xfer
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.identity import NodeId
from rise_dtn.node.check import check
from rise_dtn.node.home import Home
from rise_dtn.node.send import send
from rise_dtn.node.toss import toss
from rise_dtn.node.toss.toss_events import Source
from rise_dtn.store import atomic
from rise_dtn.store.atomic import TMP_PREFIX
from rise_dtn.store.spool import read_clear
from tests.conftest import BIN, command_env, run

SEED = 20240611
LANES = 2
KILLS_PER_LANE = 25  # LANES * KILLS_PER_LANE = 50 kill points per command
EARLY_SHARE = 0.2  # of the kills aimed at interpreter start-up and imports
MIB = 1 << 20

T = TypeVar("T")


def now() -> int:
    return int(time.time())


def digest(data: bytes) -> str:
    """Compare payloads by digest: a failed assertion must not print megabytes."""
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=16).hexdigest()}"


# -- two nodes and a stick, driven in-process -------------------------------------------


@dataclasses.dataclass
class World:
    """Alice sends to Bob over a stick; `files` and `messages` are what Bob must end up with."""

    base: Path
    alice: Path
    bob: Path
    stick: Path
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> digest
    messages: list[str] = dataclasses.field(default_factory=list)  # digests

    @classmethod
    def create(
        cls,
        base: Path,
        *,
        alice: Path | None = None,
        bob: Path | None = None,
        stick: Path | None = None,
    ) -> World:
        world = cls(base, alice or base / "alice", bob or base / "bob", stick or base / "stick")
        for path in (base / "sources", world.stick):
            path.mkdir(parents=True, exist_ok=True)
        homes = [Home.create(world.alice, name="alice"), Home.create(world.bob, name="bob")]
        for home in homes:
            for other in homes:
                if other is not home:
                    card = other.card(now=now())
                    home.peers.add(card, name=None, self_id=home.identity.node_id, replace=False)
        return world

    @contextlib.contextmanager
    def open(self, path: Path) -> Iterator[Home]:
        home = Home.open(path)
        try:
            yield home
        finally:
            home.close()

    def send(self, payload: bytes, *, name: str | None = None) -> None:
        """Queue a file (`name`) or a message (a pipe: size unknown) for Bob, in-process."""
        with self.open(self.alice) as alice, contextlib.ExitStack() as stack:
            peer = alice.peers.find("bob")
            if name is None:
                source: Any = io.BytesIO(payload)
            else:
                path = self.base / "sources" / name
                path.write_bytes(payload)
                source = stack.enter_context(open(path, "rb"))
                stack.callback(path.unlink)
            send.queue(alice, peer, source, options=send.SendOptions(name=name), now=now())

    def expect(self, payload: bytes, *, name: str | None = None) -> None:
        if name is None:
            self.messages.append(digest(payload))
        else:
            assert name not in self.files
            self.files[name] = digest(payload)

    def xfer(self, path: Path) -> xfer.XferReport:
        with self.open(path) as home:
            return xfer.exchange(home, self.stick, move=False, now=now())

    def xfer_toss(self) -> xfer.XferReport:
        """Bob's `rise-xfer --toss`: bundles for him delivered as they are read off the stick."""
        with self.open(self.bob) as bob:

            def stream(clear: ClearPart, neighbour: NodeId, source: Source) -> toss.Streamed:
                return toss.deliver_streamed(
                    bob, clear, neighbour, source, now=now(), on_event=lambda _event: None
                )

            return xfer.exchange(
                bob,
                self.stick,
                move=False,
                now=now(),
                toss=lambda: toss.toss(bob, now=now()),
                stream=stream,
            )

    def toss(self) -> list[toss.TossEvent]:
        with self.open(self.bob) as bob:
            return toss.toss(bob, now=now())

    def carry(self) -> None:
        """Alice's bundles onto the stick and into Bob's rx/."""
        self.xfer(self.alice)
        self.xfer(self.bob)

    def complete(self) -> None:
        """Exchange and toss until nothing waits anywhere, as cron on both sides would.

        Bob acks a bundle only once it is tossed, so one round is: Alice
        writes, Bob takes, tosses and leaves acks, Alice takes the acks.
        """
        for _round in range(3):
            self.carry()
            self.toss()
            self.xfer(self.bob)
            self.xfer(self.alice)
            if not self.tx_bundles() and not self.rx_bundles():
                return
        raise AssertionError(
            f"still waiting after 3 rounds: tx {self.tx_bundles()}, rx {self.rx_bundles()}"
        )

    def tx_bundles(self) -> list[Path]:
        return sorted((self.alice / "spool" / "tx").glob("*/*.rsb"))

    def rx_bundles(self) -> list[Path]:
        return sorted((self.bob / "spool" / "rx").glob("*/*.rsb"))

    def repair_and_check(self) -> None:
        """`rise-check --repair` then `rise-check` on both nodes, in-process: must be clean."""
        for path in (self.alice, self.bob):
            with self.open(path) as home:
                check(home, repair=True, now=now())
                report = check(home, repair=False, now=now())
                assert report.clean, report.problems

    def assert_delivered_exactly_once(self) -> None:
        incoming = self.bob / "incoming" / "alice"
        got = {path.name: digest(path.read_bytes()) for path in _listing(incoming)}
        assert got == self.files
        inbox = sorted(digest(path.read_bytes()) for path in _listing(self.bob / "inbox"))
        assert inbox == sorted(self.messages)
        # The journal and the inbox table, read as any SQLite client would.
        with contextlib.closing(sqlite3.connect(self.bob / "spool" / "index.sqlite")) as db:
            journal = dict(db.execute("select state, count(*) from seen group by state"))
            (inbox_rows,) = db.execute("select count(*) from inbox").fetchone()
        assert journal == ({"delivered": len(got) + len(inbox)} if got or inbox else {})
        assert inbox_rows == len(self.messages)


def _listing(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []


def leftover_tmp(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob(f"{TMP_PREFIX}*"))


def assert_complete_bundles(paths: list[Path]) -> None:
    """Every bundle file that is visible is whole (its size matches its header)."""
    for path in paths:
        read_clear(path)


# -- counting write steps ------------------------------------------------------------------

DISK_STEPS = frozenset({"write", "fsync", "replace", "link", "copy_file_range", "sendfile"})
CRASH_STEPS = DISK_STEPS | {"unlink"}


class WriteSteps:
    """`os` as the modules that write see it: every write step is counted, and step `at` fails.

    AtomicFile writes through a file object from os.fdopen; the file handed
    back here sends its writes through the counted os.write.
    """

    def __init__(self, at: int | None, fail: Callable[[str], NoReturn], names: frozenset[str]):
        self.at = at
        self.fail = fail
        self.names = names
        self.count = 0
        self.hit: str | None = None

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.names:
            return real

        def step(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if self.count == self.at:
                self.hit = name
                self.fail(name)
            return real(*args, **kwargs)

        return step

    def fdopen(self, fd: int, *args: Any, **kwargs: Any) -> _SteppedFile:
        return _SteppedFile(self, os.fdopen(fd, *args, **kwargs))


class _SteppedFile:
    def __init__(self, steps: WriteSteps, raw: Any) -> None:
        self._steps = steps
        self._raw = raw

    def write(self, data: bytes | memoryview) -> int:
        return self._steps.write(self._raw.fileno(), data)  # type: ignore[no-any-return]

    def fileno(self) -> int:
        return self._raw.fileno()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed  # type: ignore[no-any-return]


@contextlib.contextmanager
def stepping(steps: WriteSteps) -> Iterator[WriteSteps]:
    """Route the write steps of the spool, the carrier (its medium side too) and toss
    through `steps`."""
    saved = atomic.os, folder.os, toss.os
    atomic.os = folder.os = toss.os = steps  # type: ignore[assignment]
    try:
        yield steps
    finally:
        atomic.os, folder.os, toss.os = saved


# -- operations, each on a freshly prepared world (shared with test_disk_full.py) --------

FILE_PAYLOAD_BYTES = MIB + 4321  # two sealed chunks: several writes per bundle


def payload(tag: str, size: int) -> bytes:
    return random.Random(tag).randbytes(size)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """An operation that writes, and how to prepare a world for it."""

    name: str
    prepare: Callable[[Path, Path], World]  # (base, stick)
    operation: Callable[[World], object]
    steps: frozenset[str]  # the write steps it takes; a full disk must be met at each
    steps_across: frozenset[str] | None = None  # with the stick on another filesystem

    @property
    def uses_stick(self) -> bool:
        return self.steps_across is not None


def _prepare_empty(base: Path, stick: Path) -> World:
    return World.create(base, stick=stick)


def _prepare_queued(base: Path, stick: Path) -> World:
    world = World.create(base, stick=stick)
    for name in ("report.bin", None):
        data = payload(f"queued-{name}", FILE_PAYLOAD_BYTES if name else 700)
        world.send(data, name=name)
        world.expect(data, name=name)
    return world


def _prepare_on_stick(base: Path, stick: Path) -> World:
    world = _prepare_queued(base, stick)
    world.xfer(world.alice)
    return world


def _prepare_tossed(base: Path, stick: Path) -> World:
    world = _prepare_on_stick(base, stick)
    world.xfer(world.bob)
    world.toss()
    return world


def _prepare_acked(base: Path, stick: Path) -> World:
    world = _prepare_tossed(base, stick)
    world.xfer(world.bob)
    return world


def _prepare_in_rx(base: Path, stick: Path) -> World:
    """Bob holds two bundles in rx/, one of them a file whose name is taken already."""
    world = World.create(base, stick=stick)
    first = payload("clash-first", 3000)
    world.send(first, name="clash.txt")
    world.complete()
    world.expect(first, name="clash.txt")
    second = payload("clash-second", FILE_PAYLOAD_BYTES)
    world.send(second, name="clash.txt")
    world.expect(second, name="clash.1.txt")  # never over the first one
    message = payload("rx-message", 900)
    world.send(message)
    world.expect(message)
    world.carry()
    return world


def _send_file(world: World) -> None:
    world.send(payload("sent-file", FILE_PAYLOAD_BYTES), name="sent.bin")


def _send_pipe(world: World) -> None:
    world.send(payload("sent-pipe", FILE_PAYLOAD_BYTES))


def expect_what_was_queued(world: World, scenario: Scenario) -> None:
    """After a send failed or crashed, its bundle is queued whole or not at all."""
    tx = world.tx_bundles()
    if scenario.operation not in {_send_file, _send_pipe}:
        return
    assert len(tx) <= 1, tx
    assert_complete_bundles(tx)
    if tx and scenario.operation is _send_file:
        world.expect(payload("sent-file", FILE_PAYLOAD_BYTES), name="sent.bin")
    elif tx:
        world.expect(payload("sent-pipe", FILE_PAYLOAD_BYTES))


SCENARIOS = [
    Scenario("send a file", _prepare_empty, _send_file, frozenset({"write", "fsync", "replace"})),
    Scenario(
        "send from a pipe",
        _prepare_empty,
        _send_pipe,
        frozenset({"write", "fsync", "replace", "copy_file_range"}),
    ),
    # A bundle is copied both ways (a reflink where the filesystem can), never
    # hard-linked: onto the stick it is renamed into place, into rx/ linked
    # from tmp/ (which never replaces a copy another xfer just took).
    Scenario(
        "xfer onto the stick",
        _prepare_queued,
        lambda world: world.xfer(world.alice),
        frozenset({"copy_file_range", "fsync", "replace"}),
        frozenset({"copy_file_range", "sendfile", "fsync", "replace"}),
    ),
    Scenario(
        "xfer from the stick",
        _prepare_on_stick,
        lambda world: world.xfer(world.bob),
        frozenset({"copy_file_range", "fsync", "link"}),
        frozenset({"copy_file_range", "sendfile", "fsync", "link"}),
    ),
    # With --toss, a bundle for Bob goes from the stick straight into his
    # incoming/ (no copy in rx/), then his ack onto the stick.
    Scenario(
        "xfer from the stick with --toss",
        _prepare_on_stick,
        lambda world: world.xfer_toss(),
        frozenset({"write", "fsync", "link", "replace"}),
        frozenset({"write", "fsync", "link", "replace"}),
    ),
    Scenario(
        "xfer leaving acks",
        _prepare_tossed,
        lambda world: world.xfer(world.bob),
        frozenset({"write", "fsync", "replace"}),
        frozenset({"write", "fsync", "replace"}),
    ),
    Scenario(
        "xfer taking acks",
        _prepare_acked,
        lambda world: world.xfer(world.alice),
        frozenset({"fsync"}),
        frozenset({"fsync"}),
    ),
    Scenario(
        "toss", _prepare_in_rx, lambda world: world.toss(), frozenset({"write", "fsync", "link"})
    ),
]

SAME, ACROSS = "stick on this filesystem", "stick on another filesystem"
ACROSS_IF_POSSIBLE = "stick on another filesystem if one can be mounted"
PLACED_SCENARIOS = [
    pytest.param(
        scenario, place, id=f"{scenario.name}, {place}" if scenario.uses_stick else scenario.name
    )
    for scenario in SCENARIOS
    for place in ((SAME, ACROSS) if scenario.uses_stick else (SAME,))
]


def mount_tmpfs(path: Path, *, size: str) -> str | None:
    """Mount a tmpfs of `size` at `path`; None if it worked, else why not."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mount.returncode == 0:
        return None
    return mount.stderr.decode(errors="replace").strip() or f"mount exited {mount.returncode}"


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, *, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (a small disk, or a stick on another filesystem)."""
    failure = mount_tmpfs(path, size=size)
    if failure is not None:
        pytest.skip(f"cannot mount a tmpfs here ({failure}); needs root or CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        unmount(path)


@contextlib.contextmanager
def stick_for(base: Path, place: str) -> Iterator[Path]:
    """Where the stick goes: beside the spools (copy_file_range), or on a tmpfs (another
    filesystem: copy_file_range refused, sendfile copies)."""
    if place == SAME:
        yield base
    elif place == ACROSS:
        with mounted_tmpfs(base / "usb", size="1g") as usb:
            yield usb
    elif mount_tmpfs(base / "usb", size="1g") is None:
        try:
            yield base / "usb"
        finally:
            unmount(base / "usb")
    else:
        yield base  # cannot mount: copies on one filesystem, still a valid run


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: int | None  # None: killed
    stdout: bytes
    stderr: bytes


@dataclasses.dataclass
class Killer:
    """Starts a command and SIGKILLs it after a random delay, unless it finished first.

    The delays follow what a run costs here and now: the median of the last
    runs that finished (start-up dominates, and it varies with the machine's
    load), plus `work_seconds` for a command that has more to do than those.
    """

    rng: random.Random
    run_seconds: float  # a first estimate, from `timed`
    work_seconds: float
    kills: int = 0
    completed: int = 0
    durations: list[float] = dataclasses.field(default_factory=list)

    def delay(self) -> float:
        typical = statistics.median(self.durations[-7:] or [self.run_seconds])
        if self.rng.random() < EARLY_SHARE:
            return self.rng.uniform(0.0, typical * 0.6)
        return self.rng.uniform(typical * 0.6, typical + self.work_seconds)

    def run(self, *args: str, home: Path, stdin: bytes | None = None) -> Outcome:
        started = time.monotonic()
        process = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=command_env(home),
        )
        try:
            # A bounded wait that places the kill; it returns at once if the command ends.
            out, err = process.communicate(stdin, timeout=self.delay())
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate(timeout=120)
        if process.returncode == -signal.SIGKILL:
            self.kills += 1
            return Outcome(None, out, err)
        self.completed += 1
        self.durations.append(time.monotonic() - started)
        return Outcome(process.returncode, out, err)


def timed(*args: str, home: Path, stdin: bytes | None = None) -> float:
    """Run a command that has next to nothing to do: what start-up costs here, now."""
    started = time.monotonic()
    run(*args, home=home, input=stdin)
    return time.monotonic() - started


def in_lanes(lane: Callable[[int], T]) -> list[T]:
    with ThreadPoolExecutor(LANES) as pool:
        return list(pool.map(lane, range(LANES)))


def finish(*args: str, home: Path) -> None:
    """Run a command to completion; it must succeed."""
    run(*args, home=home)


def repair_then_check(home: Path) -> None:
    """`rise-check --repair` tidies what the kills left (index rows, tmp files); then clean."""
    repaired = run("rise-check", "--repair", home=home, check=False)
    assert repaired.returncode in {0, 3}, repaired.stderr
    run("rise-check", home=home)
    assert leftover_tmp(home) == []


def waiting(home: Path) -> int:
    stat = json.loads(run("rise-stat", "--json", home=home).stdout)
    return sum(neighbour["waiting"] for neighbour in stat["neighbours"])


# Small ones, chunk edges, and big ones: sealing and writing run at hundreds of
# MiB/s here, so only bundles of tens of MiB keep a command writing long
# enough for a fair share of the kills to land mid-write.
SMALL_SIZES = [0, 1, 777, 64 * 1024 + 5, MIB - 60, MIB + 1]
SIZES = [*SMALL_SIZES, 3 * MIB + 333, 16 * MIB + 1, 40 * MIB - 1]


def random_payload(rng: random.Random, size: int) -> bytes:
    """`size` bytes, distinct from any other payload (a random MiB repeated: cheap)."""
    block = rng.randbytes(min(size, MIB))
    return (block * (size // MIB + 1))[:size]


def queue_batch(world: World, rng: random.Random, tag: str, *, count: int) -> None:
    """Queue `count` bundles of mixed sizes at Alice (in-process): files and messages."""
    for number in range(count):
        if rng.random() < 0.3:
            world.send(data := random_payload(rng, rng.choice(SMALL_SIZES)))
            world.expect(data)
        else:
            name = f"{tag}-{number}.bin"
            world.send(data := random_payload(rng, rng.choice(SIZES)), name=name)
            world.expect(data, name=name)


@dataclasses.dataclass
class LaneReport:
    kills: int
    completed: int  # runs that ended before their kill
    seconds: float  # in the lane, all told
    notes: dict[str, int]


def report(command: str, lanes: list[LaneReport]) -> None:
    """Print what happened (visible with -s): how many kills, and where they landed."""
    kills = sum(lane.kills for lane in lanes)
    assert kills >= LANES * KILLS_PER_LANE
    print(
        f"\n{command}: {kills} kills, {sum(lane.completed for lane in lanes)} runs completed; "
        + "; ".join(
            f"lane {number}: {lane.seconds:.1f} s {lane.notes}" for number, lane in enumerate(lanes)
        )
    )


@pytest.mark.slow
def test_kill_send(tmp_path: Path) -> None:
    """Each killed rise-send queued one whole bundle or nothing; what was queued arrives once."""

    def lane(number: int) -> LaneReport:
        started = time.monotonic()
        rng = random.Random(SEED + number)
        world = World.create(tmp_path / f"lane{number}")
        startup = timed("rise-send", "-q", "-", "bob", home=world.alice, stdin=b"first")
        world.expect(b"first")
        killer = Killer(rng, startup, work_seconds=0.1)
        notes = {"queued": 0, "killed and queued": 0, "killed mid-write": 0}
        for attempt in range(1000):
            if killer.kills >= KILLS_PER_LANE:
                break
            data = random_payload(rng, rng.choice(SIZES) + rng.randrange(100))
            before = set(world.tx_bundles())
            debris = len(leftover_tmp(world.alice / "spool"))
            if rng.random() < 0.3:
                name = None
                outcome = killer.run("rise-send", "-", "bob", home=world.alice, stdin=data)
            else:
                name = f"attempt-{attempt}.bin"
                source = world.base / "sources" / name
                source.write_bytes(data)
                outcome = killer.run("rise-send", str(source), "bob", home=world.alice)
                source.unlink()
            new = sorted(set(world.tx_bundles()) - before)
            assert len(new) <= 1, f"one send queued {len(new)} bundles"
            assert_complete_bundles(new)
            if outcome.status is not None:
                assert outcome.status == 0, outcome.stderr
                assert [path.stem for path in new] == [outcome.stdout.decode().strip()]
            else:
                notes["killed mid-write"] += len(leftover_tmp(world.alice / "spool")) > debris
                notes["killed and queued"] += len(new)
            if new:
                notes["queued"] += 1
                world.expect(data, name=name)
        repair_then_check(world.alice)
        finish("rise-xfer", "-q", str(world.stick), home=world.alice)
        finish("rise-xfer", "-q", "--toss", str(world.stick), home=world.bob)
        finish("rise-xfer", "-q", str(world.stick), home=world.alice)
        assert waiting(world.alice) == 0
        for home in (world.alice, world.bob):
            repair_then_check(home)
        world.assert_delivered_exactly_once()
        shutil.rmtree(world.base)  # hundreds of MiB
        return LaneReport(killer.kills, killer.completed, time.monotonic() - started, notes)

    report("rise-send", in_lanes(lane))


@pytest.mark.slow
def test_kill_xfer(tmp_path: Path) -> None:
    """Kill Alice writing to the stick and Bob taking from it, by turns; nothing is lost."""

    def lane(number: int) -> LaneReport:
        started = time.monotonic()
        rng = random.Random(SEED + 100 + number)
        with stick_for(tmp_path / f"lane{number}", ACROSS_IF_POSSIBLE) as stick:
            world = World.create(tmp_path / f"lane{number}", stick=stick / "stick")
            startup = timed("rise-xfer", "-q", str(world.stick), home=world.alice)
            killer = Killer(rng, startup, work_seconds=0.2)
            notes = {"batches": 0, "killed mid-write": 0}
            for turn in range(1000):
                if killer.kills >= KILLS_PER_LANE:
                    break
                if not world.tx_bundles():
                    notes["batches"] += 1
                    queue_batch(world, rng, f"batch{notes['batches']}", count=6)
                # Alice writes bundles and takes acks; Bob takes bundles, tosses, leaves acks.
                args = ("-q",) if turn % 2 == 0 else ("-q", "--toss")
                home = world.alice if turn % 2 == 0 else world.bob
                debris = set(leftover_tmp(world.alice, world.bob, world.stick))
                outcome = killer.run("rise-xfer", *args, str(world.stick), home=home)
                assert outcome.status in {None, 0}, outcome.stderr
                if outcome.status is None:
                    after = set(leftover_tmp(world.alice, world.bob, world.stick))
                    notes["killed mid-write"] += bool(after - debris)
            finish("rise-xfer", "-q", str(world.stick), home=world.alice)
            finish("rise-xfer", "-q", "--toss", str(world.stick), home=world.bob)
            finish("rise-xfer", "-q", str(world.stick), home=world.alice)
            assert waiting(world.alice) == 0  # every bundle acked: Alice's spool drained
            assert [path for path in world.stick.rglob("*") if path.is_file()] == []
            finish("rise-toss", "-q", home=world.bob)  # nothing left to do
            for home in (world.alice, world.bob):
                repair_then_check(home)
            world.assert_delivered_exactly_once()
            shutil.rmtree(world.alice)
            shutil.rmtree(world.bob)
        return LaneReport(killer.kills, killer.completed, time.monotonic() - started, notes)

    report("rise-xfer", in_lanes(lane))


@pytest.mark.slow
def test_kill_toss(tmp_path: Path) -> None:
    """Kill rise-toss again and again; then every payload is delivered once, byte for byte."""

    def lane(number: int) -> LaneReport:
        started = time.monotonic()
        rng = random.Random(SEED + 200 + number)
        world = World.create(tmp_path / f"lane{number}")
        killer = Killer(rng, timed("rise-toss", "-q", home=world.bob), work_seconds=0.25)
        notes = {"batches": 0, "killed mid-write": 0}
        for _run in range(1000):
            if killer.kills >= KILLS_PER_LANE:
                break
            if not world.rx_bundles():
                notes["batches"] += 1
                queue_batch(world, rng, f"batch{notes['batches']}", count=10)
                world.carry()
            debris = set(leftover_tmp(world.bob))
            outcome = killer.run("rise-toss", "-q", home=world.bob)
            assert outcome.status in {None, 0}, outcome.stderr
            if outcome.status is None:
                notes["killed mid-write"] += bool(set(leftover_tmp(world.bob)) - debris)
        finish("rise-toss", "-q", home=world.bob)
        assert world.rx_bundles() == []
        repair_then_check(world.bob)
        world.assert_delivered_exactly_once()
        shutil.rmtree(world.base)
        return LaneReport(killer.kills, killer.completed, time.monotonic() - started, notes)

    report("rise-toss", in_lanes(lane))


# -- a crash just before each write step -----------------------------------------------


def _die(_step: str) -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")  # pragma: no cover


def crash_before_step(world: World, operation: Callable[[World], object], at: int) -> bool:
    """Run `operation` in a forked child that is SIGKILLed just before write step `at`.

    True if it was killed; False if it finished first (it has fewer steps).
    """
    return crash_in_child(lambda: operation(world), at)


def crash_in_child(
    run: Callable[[], object],
    at: int,
    *,
    route: Callable[[WriteSteps], contextlib.AbstractContextManager[WriteSteps]] = stepping,
) -> bool:
    """`run` in a forked child whose write steps go through `route`, SIGKILLed just before
    step `at`; True if killed, False if it finished first."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            with route(WriteSteps(at, _die, CRASH_STEPS)):
                run()
            code = 0
        except BaseException:  # the exit status reports it; the traceback says what
            traceback.print_exc()
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the operation failed without a crash"
    return False


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "place"), PLACED_SCENARIOS)
def test_crash_before_every_write_step(tmp_path: Path, scenario: Scenario, place: str) -> None:
    with stick_for(tmp_path, place) as stick_root:
        for at in range(1, 200):
            world = scenario.prepare(tmp_path / f"step{at}", stick_root / f"stick{at}")
            crashed = crash_before_step(world, scenario.operation, at)
            expect_what_was_queued(world, scenario)
            world.complete()
            world.repair_and_check()
            world.assert_delivered_exactly_once()
            shutil.rmtree(world.base)
            shutil.rmtree(world.stick)
            if not crashed:
                assert at > 2, "the operation took no write step at all"
                return
    raise AssertionError("the operation never finished")


def _prepare_damaged_on_stick(base: Path, stick: Path) -> World:
    """On the stick: a message, and a two-chunk file whose last chunk a holder changed."""
    world = _prepare_on_stick(base, stick)
    damaged = max(world.stick.rglob("*.rsb"), key=lambda path: path.stat().st_size)
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0x01  # found bad only at the end of the one-pass toss
    damaged.write_bytes(bytes(data))
    return world


@pytest.mark.slow
def test_crash_before_every_write_step_of_a_bad_bundle_off_the_stick(tmp_path: Path) -> None:
    """`rise-xfer --toss` proves a bundle on the stick bad as it reads it, quarantines its
    first MiB and takes it off the stick. Killed before any write step of that (or of the
    message's delivery beside it), nothing good is lost or delivered twice, and what
    quarantine keeps stays bounded."""
    for at in range(1, 200):
        world = _prepare_damaged_on_stick(tmp_path / f"step{at}", tmp_path / f"stick{at}")
        crashed = crash_before_step(world, lambda world: world.xfer_toss(), at)
        quarantined = list((world.bob / "spool" / "quarantine").glob("*.rsb"))
        assert all(path.stat().st_size <= MIB for path in quarantined)
        assert world.rx_bundles() == [] or crashed  # a clean run copies nothing whole
        world.complete()  # Alice's good copy goes again; both arrive, once
        world.repair_and_check()
        world.assert_delivered_exactly_once()
        shutil.rmtree(world.base)
        shutil.rmtree(world.stick)
        if not crashed:
            assert at > 2, "the operation took no write step at all"
            return
    raise AssertionError("the operation never finished")
