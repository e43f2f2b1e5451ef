"""A paced, lossy serial link between two real pseudo-terminals, for the serial carrier's tests.

    end A (pty) ==socat== relay pty  <- relay thread ->  relay pty ==socat== end B (pty)

Two `socat -d -d pty,raw,echo=0 pty,raw,echo=0` processes each make a pair
of pseudo-terminals joined back to back; a relay thread in the test
process holds one pty of each pair and moves bytes between them the way a
slow radio or a long cable would:

- **pacing** to a bit rate, 8N1 (10 bits a byte): a byte leaves the relay
  only once its ten bit times have passed since the previous byte, so a
  reader sees the line rate, not the host's;
- **frame loss and corruption** at set rates with a seeded RNG per
  direction: bytes are judged per FEND-ended segment (KISS and serial
  frames both end in 0xC0), and a corrupted frame gets one byte changed
  to anything but FEND, so it stays one frame and the counts line up;
- **half duplex**: one direction at a time; the other waits until the
  line is idle plus a turn-around delay, as a radio must switch from
  transmit to receive;
- **pulling the cable**: bytes in flight and bytes written meanwhile are
  lost; plugging it back passes bytes again;
- **a byte budget** (`cut_after_bytes`): the cable is pulled for good
  once that many bytes have come from end A (the first of them still
  arrive), the serial form of a connection reset mid-stream.

Tests open `link.a_path` and `link.b_path` with pyserial (or os.open) like
any serial port. The relay uses the clock to pace; tests must assert only
generous lower bounds from the pacing (a byte cannot arrive early), never
how fast something arrived: the machine is shared. Bytes with no FEND for
`max_segment_bytes` pass unjudged, so raw traffic still flows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import select
import subprocess
import tempfile
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

FEND = 0xC0
BITS_PER_BYTE = 10  # 8N1: start bit, eight data bits, stop bit
START_DEADLINE_SECONDS = 10.0  # socat prints its ptys within milliseconds; 10 s on a loaded box
POLL_SECONDS = 0.01  # how often a start-up poll looks again, until its deadline
MIN_WAKE_SECONDS = 0.004  # the relay writes in slices of at least this much line time
READ_BYTES = 4096
PTY_LINE = re.compile(rb"PTY is (\S+)")


class LinkError(Exception):
    """socat could not make the ptys in time; the message says what it printed."""


@dataclasses.dataclass(frozen=True, slots=True)
class LinkProfile:
    bits_per_second: int = 9600
    drop_rate: float = 0.0  # fraction of frames lost, each direction
    corrupt_rate: float = 0.0  # fraction of the frames not lost that get one byte changed
    half_duplex: bool = False
    turnaround_seconds: float = 0.0  # idle line time before the other side may send
    seed: int = 0
    max_segment_bytes: int = 8192  # bytes without a FEND pass on unjudged beyond this
    cut_after_bytes: int | None = None  # pull the cable once A has sent this many bytes
    max_write_bytes: int = READ_BYTES  # 1: each byte reaches the far pty in its own write

    @property
    def bytes_per_second(self) -> float:
        return self.bits_per_second / BITS_PER_BYTE


@dataclasses.dataclass(slots=True)
class DirectionStats:
    frames_passed: int = 0
    frames_dropped: int = 0
    frames_corrupted: int = 0  # passed, with one byte changed
    bytes_passed: int = 0
    bytes_lost_to_cable: int = 0
    writes: int = 0  # os.write calls toward the far end


class Direction:
    """One way across the link: judges whole segments, then paces them out."""

    def __init__(self, name: str, profile: LinkProfile, source: int, sink: int) -> None:
        self.name, self.profile, self.source, self.sink = name, profile, source, sink
        self.rng = random.Random(f"{profile.seed}:{name}")
        self.stats = DirectionStats()
        self.segment = bytearray()  # received, not yet ended by a FEND
        self.queue = bytearray()  # judged, waiting for the line
        self.burst_start: float | None = None  # when the current transmission began
        self.burst_sent = 0
        self.idle_from = 0.0  # when the line went quiet after our last byte

    def take(self, data: bytes) -> None:
        for byte in data:
            self.segment.append(byte)
            if byte == FEND or len(self.segment) >= self.profile.max_segment_bytes:
                self._judge(bytes(self.segment))
                self.segment.clear()

    def _judge(self, segment: bytes) -> None:
        if segment[-1] != FEND or len(segment) == 1:  # unframed overflow, or idle FEND
            self.queue += segment
            return
        if self.rng.random() < self.profile.drop_rate:
            self.stats.frames_dropped += 1
            return
        self.stats.frames_passed += 1
        if self.rng.random() < self.profile.corrupt_rate:
            damaged = bytearray(segment)
            position = self.rng.randrange(len(damaged) - 1)  # never the closing FEND
            value = damaged[position]
            while value in (damaged[position], FEND):
                value = self.rng.randrange(256)
            damaged[position] = value
            segment = bytes(damaged)
            self.stats.frames_corrupted += 1
        self.queue += segment

    def lose_everything(self) -> None:
        self.stats.bytes_lost_to_cable += len(self.queue) + len(self.segment)
        self.queue.clear()
        self.segment.clear()
        if self.burst_start is not None:
            self.idle_from = time.monotonic()
        self.burst_start = None

    def due(self, now: float) -> int:
        """How many queued bytes have had their line time by `now`."""
        assert self.burst_start is not None
        line_bytes = int((now - self.burst_start) * self.profile.bytes_per_second)
        return min(len(self.queue), line_bytes - self.burst_sent)

    def next_wake(self) -> float | None:
        if self.burst_start is None:
            return None
        return self.burst_start + (self.burst_sent + 1) / self.profile.bytes_per_second

    def send_due(self, now: float) -> None:
        count = min(self.due(now), self.profile.max_write_bytes)
        if count > 0:
            try:
                written = os.write(self.sink, bytes(self.queue[:count]))
            except BlockingIOError:  # the far end is not reading: the line waits
                written = 0
            del self.queue[:written]
            self.stats.writes += 1 if written else 0
            self.burst_sent += written
            self.stats.bytes_passed += written
        if not self.queue:
            assert self.burst_start is not None
            self.idle_from = self.burst_start + self.burst_sent / self.profile.bytes_per_second
            self.burst_start = None


class Relay(threading.Thread):
    """Moves bytes both ways between the two relay ptys until stopped."""

    def __init__(self, profile: LinkProfile, end_a: int, end_b: int) -> None:
        super().__init__(name="radiolink-relay", daemon=True)
        self.profile = profile
        self.a_to_b = Direction("a->b", profile, source=end_a, sink=end_b)
        self.b_to_a = Direction("b->a", profile, source=end_b, sink=end_a)
        self.plugged = True
        self.lock = threading.Lock()
        self.wake_read, self.wake_write = os.pipe()
        self.stopping = False
        self.failure: BaseException | None = None
        self.holder: Direction | None = None  # half duplex: who has the line
        self.last_holder: Direction | None = None
        self.budget = profile.cut_after_bytes  # bytes A may still send, None: no limit

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # reported by PacedLink.close()
            self.failure = error

    def _loop(self) -> None:
        directions = (self.a_to_b, self.b_to_a)
        while not self.stopping:
            now = time.monotonic()
            wakes = [wake for wake in (d.next_wake() for d in directions) if wake is not None]
            if any(d.queue and d.burst_start is None for d in directions):
                wakes.append(now)  # a side waits for the line: look again soon, not never
            timeout = max(min(wakes) - now, MIN_WAKE_SECONDS) if wakes else None
            readable, _, _ = select.select(
                [self.a_to_b.source, self.b_to_a.source, self.wake_read], [], [], timeout
            )
            if self.wake_read in readable:
                os.read(self.wake_read, READ_BYTES)
            with self.lock:
                for direction in directions:
                    if direction.source in readable:
                        self._receive(direction)
                now = time.monotonic()
                # Twice: the side that waited takes the line the other released.
                for direction in directions + directions:
                    self._transmit(direction, now)

    def _receive(self, direction: Direction) -> None:
        try:
            data = os.read(direction.source, READ_BYTES)
        except (BlockingIOError, OSError):  # EIO while socat's far pty has no reader
            return
        if self.plugged and direction is self.a_to_b and self.budget is not None:
            passed, data = data[: self.budget], data[self.budget :]
            direction.take(passed)
            self.budget -= len(passed)
            if not self.budget:
                self.plugged = False  # for good: what was judged still drains
        if self.plugged:
            direction.take(data)
        else:
            direction.stats.bytes_lost_to_cable += len(data)

    def _transmit(self, direction: Direction, now: float) -> None:
        if direction.burst_start is None:
            if not direction.queue or not self._may_start(direction, now):
                return
            direction.burst_start = max(now, self._line_free_at(direction))
            direction.burst_sent = 0
            self.holder = direction
        direction.send_due(now)
        if direction.burst_start is None and self.holder is direction:
            self.holder, self.last_holder = None, direction

    def _line_free_at(self, direction: Direction) -> float:
        if not self.profile.half_duplex:
            return direction.idle_from
        other = self.b_to_a if direction is self.a_to_b else self.a_to_b
        turned = self.last_holder is not None and self.last_holder is not direction
        return max(
            direction.idle_from,
            other.idle_from + (self.profile.turnaround_seconds if turned else 0.0),
        )

    def _may_start(self, direction: Direction, now: float) -> bool:
        if not self.profile.half_duplex:
            return True
        if self.holder is not None and self.holder is not direction:
            return False
        # Both waiting: the side that did not send last goes first, so neither starves.
        other = self.b_to_a if direction is self.a_to_b else self.a_to_b
        return not (other.queue and self.last_holder is direction)

    def wake(self) -> None:
        os.write(self.wake_write, b"x")


@dataclasses.dataclass
class PacedLink:
    a_path: str
    b_path: str
    relay: Relay

    @property
    def stats(self) -> dict[str, DirectionStats]:
        with self.relay.lock:
            return {
                "a->b": dataclasses.replace(self.relay.a_to_b.stats),
                "b->a": dataclasses.replace(self.relay.b_to_a.stats),
            }

    def pull_cable(self) -> None:
        """From now on nothing passes; what was on the way is lost."""
        with self.relay.lock:
            self.relay.plugged = False
            self.relay.a_to_b.lose_everything()
            self.relay.b_to_a.lose_everything()
            self.relay.holder = None
        self.relay.wake()

    def plug_cable(self) -> None:
        """Plug the cable back (and forget the byte budget, if it pulled it)."""
        with self.relay.lock:
            self.relay.plugged = True
            self.relay.budget = None
        self.relay.wake()

    def inject_toward_b(self, data: bytes) -> None:
        """Put `data` on the line toward B, as a third transmitter (or noise) would:
        paced, judged like A's bytes, outside A's byte budget."""
        with self.relay.lock:
            self.relay.a_to_b.take(data)
        self.relay.wake()


def start_pty_pair(log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """A socat joining two new ptys, and their paths, read from its log with a deadline."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        paths = [match.decode() for match in PTY_LINE.findall(log.read_bytes())]
        if len(paths) == 2 and "starting data transfer loop" in log.read_text(errors="replace"):
            return process, paths[0], paths[1]
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise LinkError(f"socat made no pty pair: {log.read_text(errors='replace')}")
        time.sleep(POLL_SECONDS)  # a poll with a deadline, not a synchronisation guess


def open_raw(path: str) -> int:
    descriptor = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(descriptor)
    return descriptor


@contextlib.contextmanager
def paced_link(profile: LinkProfile | None = None) -> Iterator[PacedLink]:
    """Two ptys joined by the relay for the duration of the block; everything stopped after."""
    profile = profile or LinkProfile()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rise-radiolink-")))
        ends: list[str] = []
        relay_ends: list[int] = []
        for side in "ab":
            process, user_end, relay_end = start_pty_pair(workdir / f"socat-{side}.log")
            stack.callback(_stop, process)
            descriptor = open_raw(relay_end)
            stack.callback(os.close, descriptor)
            ends.append(user_end)
            relay_ends.append(descriptor)
        relay = Relay(profile, relay_ends[0], relay_ends[1])
        stack.callback(os.close, relay.wake_read)
        stack.callback(os.close, relay.wake_write)
        relay.start()
        try:
            yield PacedLink(ends[0], ends[1], relay)
        finally:
            relay.stopping = True
            relay.wake()
            relay.join(timeout=10)
            if relay.failure is not None:  # the cause of whatever the test saw
                raise RuntimeError("the radiolink relay failed") from relay.failure


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
