"""Selective-repeat ARQ for slow, lossy, half-duplex links (serial cables, KISS TNCs), sans I/O.

The live session (carriers/live) needs a reliable byte stream; a radio or a
cable gives frames that get lost or damaged (the framing layer drops a
damaged frame, so damage is loss here). This module turns one into the other:

- the sender numbers frames (16-bit, wrapping) and keeps up to `window` of
  them in flight; the last frame of each burst carries POLL;
- the receiver answers a POLL with one ACK for the whole window: the
  next frame it expects and a bitmap of what it holds beyond it. It
  acknowledges windows, not frames, so a half-duplex channel turns round
  once per window rather than once per frame. It holds the ACK for the
  ACK's own line time (half a turn-around on a radio): when it has DATA
  to send by then (a reply) and holds nothing out of order, the ACK rides
  on that DATA in two bytes;
- every transmission gets an ordinal; an ACK that shows a frame received
  which left after a frame still missing proves the missing one lost on a
  first-in first-out line, so it is resent at once, selectively, and only
  once per such proof (no timer involved);
- only when no ACK comes at all (the POLL or the ACK itself was lost) does
  the sender wait out a time-out sized from the line rate (on a
  half-duplex channel each frame it hears from the peer meanwhile pushes it
  back by that frame's line time: the peer cannot answer while it
  transmits) and then resend
  the oldest missing frame as a probe, doubling the time-out while the
  peer stays silent. On a half-duplex channel a random share (up to
  JITTER of it) is added to each time-out, so that two radios whose frames
  collided (both keyed up at once) do not resend at the same moment and
  collide again; a full-duplex line has no collisions to break up.
- on a half-duplex channel a POLL hands the turn to the peer: new DATA
  waits until a frame of the peer's is heard (its answer) or the time-out
  fires. The peer answers at once, so sending meanwhile would key up with
  it, and two radios that key up together lose both transmissions (a
  message written the moment the last one was delivered met that one's
  STORED on the air).

A frame's first byte is its kind and flags, the second the epoch (the
caller's random session number: a frame of another epoch belongs to an
older call and is ignored), then the 16-bit sequence number (big-endian).
docs/protocol.md section 23.4 is the spec. `now` is always given (seconds,
monotonic); nothing here reads a clock, sleeps or does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

from rise_dtn.core.errors import FrameError

HEADER_BYTES = 4  # kind|flags, epoch, sequence number (2)
SEQ_MODULUS = 1 << 16
DEFAULT_WINDOW = 32
MAX_WINDOW = 256  # the ACK bitmap is at most 32 bytes; sequence space stays far larger
# Up to this share of a time-out is added at random: two stations that keyed up
# at once differ by up to half a time-out (seconds on a radio) when they resend,
# far more than the moment it takes one to hear the other's carrier.
JITTER = 0.5


class Kind(enum.IntEnum):
    DATA = 1
    ACK = 2


FLAG_POLL = 0x80  # DATA: answer with an ACK now (the last frame of a burst)
FLAG_FIN = 0x40  # DATA: the sender's stream ends after this frame's payload
FLAG_PAD = 0x20  # DATA: the frame ends in padding; its last byte is the padding's length
FLAG_ACK = 0x10  # DATA: an ACK with no frames held beyond it rides along (2 bytes: expected)
ACK_FIELD_BYTES = 2
KIND_MASK = 0x0F


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    epoch: int
    seq: int
    payload: bytes
    poll: bool = False
    fin: bool = False
    ack: int | None = None  # a piggybacked ACK: the next sequence number expected, none held


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    epoch: int
    expected: int  # the next sequence number the receiver waits for
    held: frozenset[int]  # offsets beyond `expected` (1 = expected+1) already held


def encode_data(frame: Data, *, min_bytes: int = 0) -> bytes:
    """A DATA frame, padded to `min_bytes` when the medium refuses shorter frames."""
    flags = (FLAG_POLL if frame.poll else 0) | (FLAG_FIN if frame.fin else 0)
    flags |= FLAG_ACK if frame.ack is not None else 0
    ack = b"" if frame.ack is None else frame.ack.to_bytes(ACK_FIELD_BYTES, "big")
    body = bytes([Kind.DATA | flags, frame.epoch]) + frame.seq.to_bytes(2, "big") + ack
    body += frame.payload
    if len(body) < min_bytes:
        pad = min_bytes - len(body)
        if pad > 255:
            raise ValueError("padding over 255 bytes")
        body = bytes([body[0] | FLAG_PAD]) + body[1:] + bytes(pad - 1) + bytes([pad])
    return body


def encode_ack(frame: Ack, *, window: int, min_bytes: int = 0) -> bytes:
    """An ACK; its bitmap has one bit per frame of the window after `expected` (MSB
    first), and may be padded with zero bytes (frames not held) to `min_bytes`."""
    bitmap = bytearray((window - 1 + 7) // 8)
    for offset in frame.held:
        index = offset - 1
        bitmap[index // 8] |= 0x80 >> (index % 8)
    body = bytes([Kind.ACK, frame.epoch]) + frame.expected.to_bytes(2, "big") + bytes(bitmap)
    return body + bytes(max(0, min_bytes - len(body)))


def decode(frame: bytes) -> Data | Ack:
    """One ARQ frame; FrameError with the reason for anything else."""
    if len(frame) < HEADER_BYTES:
        raise FrameError(f"ARQ frame of {len(frame)} bytes is shorter than its header")
    kind, flags = frame[0] & KIND_MASK, frame[0] & ~KIND_MASK
    epoch, seq = frame[1], int.from_bytes(frame[2:4], "big")
    if kind == Kind.DATA:
        if flags & ~(FLAG_POLL | FLAG_FIN | FLAG_PAD | FLAG_ACK):
            raise FrameError(f"ARQ DATA frame with unknown flags 0x{flags:02x}")
        payload = frame[HEADER_BYTES:]
        if flags & FLAG_PAD:
            if not payload or payload[-1] < 1 or payload[-1] > len(payload):
                raise FrameError("ARQ frame padding longer than the frame")
            payload = payload[: -payload[-1]]
        ack = None
        if flags & FLAG_ACK:
            if len(payload) < ACK_FIELD_BYTES:
                raise FrameError("ARQ DATA frame too short for its ACK field")
            ack, payload = int.from_bytes(payload[:ACK_FIELD_BYTES], "big"), payload[2:]
        poll, fin = bool(flags & FLAG_POLL), bool(flags & FLAG_FIN)
        return Data(epoch, seq, payload, poll=poll, fin=fin, ack=ack)
    if kind == Kind.ACK:
        if flags:
            raise FrameError(f"ARQ ACK frame with unknown flags 0x{flags:02x}")
        held = frozenset(
            index * 8 + bit + 1
            for index, byte in enumerate(frame[HEADER_BYTES : HEADER_BYTES + MAX_WINDOW // 8])
            for bit in range(8)
            if byte & (0x80 >> bit)
        )
        return Ack(epoch, seq, held)
    raise FrameError(f"ARQ frame of unknown kind {kind}")


def _after(a: int, b: int) -> int:
    """How far sequence number `a` is after `b` (0 to 65535, wrapping)."""
    return (a - b) % SEQ_MODULUS


@dataclasses.dataclass(frozen=True, slots=True)
class LinkTiming:
    """What the ARQ must know of the line to size its time-outs (a link profile's part).

    `bytes_per_second`: the line's rate one way; `turnaround`: seconds a
    half-duplex radio needs to switch from sending to receiving (TXDELAY and
    the like, plus the TNC's queue); `frame_overhead`: framing bytes a frame
    costs on the line beyond its ARQ bytes (flags, escapes, CRC, headers);
    `half_duplex`: one side at a time (a radio), so while the peer is heard
    sending, its answer to us cannot be on the way.
    """

    bytes_per_second: float = 960.0
    turnaround: float = 0.0
    frame_overhead: int = 8
    slack: float = 0.3  # scheduling and OS buffering beyond the computed line time
    half_duplex: bool = False


@dataclasses.dataclass(slots=True)
class _Outgoing:
    seq: int
    payload: bytes
    fin: bool
    ordinal: int = -1  # of its last transmission; -1: never sent
    resend: bool = False


@dataclasses.dataclass(slots=True)
class ArqStats:
    frames_sent: int = 0
    frames_resent: int = 0
    acks_sent: int = 0
    acks_piggybacked: int = 0
    timeouts: int = 0
    frames_received: int = 0
    duplicates: int = 0
    foreign: int = 0  # frames of another epoch


class Arq:
    """One end of one ARQ session: `write`/`close` the stream out, `receive` frames,
    `transmit` what to send now, `deadline` when to look again, `take` the stream in."""

    def __init__(
        self,
        epoch: int,
        *,
        payload_bytes: int,
        window: int = DEFAULT_WINDOW,
        timing: LinkTiming | None = None,
        min_frame_bytes: int = 0,
        give_up: float = 120.0,
        draw: Callable[[], float] | None = None,
    ) -> None:
        """`draw` gives a random number in [0, 1) for each time-out's jitter (JITTER, on
        a half-duplex channel); without it, time-outs have none (deterministic tests)."""
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"ARQ window {window} is not 1-{MAX_WINDOW}")
        if payload_bytes < 1:
            raise ValueError("an ARQ frame must carry at least one byte")
        self.epoch = epoch
        self.window = window
        self.payload_bytes = payload_bytes
        self.timing = timing or LinkTiming()
        self.min_frame_bytes = min_frame_bytes
        self.give_up = give_up
        self._draw = draw
        self.stats = ArqStats()
        # sending
        self._outbox = bytearray()
        self._closing = False
        self._fin_queued = False
        self._unacked: dict[int, _Outgoing] = {}
        self._base = 0  # oldest unacknowledged sequence number
        self._next = 0  # next new sequence number
        self._ordinal = 0
        self._sent_ordinal: dict[int, int] = {}  # seq -> ordinal of its last transmission
        self._line_free = 0.0  # when what we have written will have left the line
        self._timeout_at: float | None = None
        self._extended = 0.0  # how far frames heard since our last burst pushed the time-out
        self._burst_payload = payload_bytes  # the largest payload of our last burst
        self._backoff = 1.0
        self._heard_at: float | None = None
        self._poll_unanswered = False  # half duplex: our POLL went out, nothing heard since
        # receiving
        self._expected = 0
        self._held: dict[int, Data] = {}
        self._inbox = bytearray()
        self._eof = False
        self._ack_at: float | None = None  # when the ACK we owe goes out on its own
        self._polled = False  # the ACK owed answers a POLL (not only a silence)

    # -- the stream
    def write(self, data: bytes) -> None:
        if self._closing:
            raise ValueError("write after close")
        self._outbox += data

    def close(self) -> None:
        """No more bytes: a FIN follows the last of them."""
        self._closing = True

    @property
    def buffered(self) -> int:
        """Bytes written and not yet acknowledged by the peer (flow control)."""
        return len(self._outbox) + sum(len(item.payload) for item in self._unacked.values())

    @property
    def flushed(self) -> bool:
        """Everything written (and the FIN, once closed) is acknowledged."""
        return not self._outbox and not self._unacked and (self._fin_queued or not self._closing)

    @property
    def owes_ack(self) -> bool:
        """An ACK is held back (to ride on DATA) or waiting: do not hang up before it."""
        return self._ack_at is not None

    @property
    def eof(self) -> bool:
        """The peer's FIN arrived and everything before it was taken."""
        return self._eof and not self._inbox

    def take(self) -> bytes:
        data = bytes(self._inbox)
        self._inbox.clear()
        return data

    def dead(self, now: float) -> bool:
        """Nothing heard from the peer for `give_up` seconds while we wait on it."""
        if not self._unacked:
            return False
        since = self._heard_at if self._heard_at is not None else self._started(now)
        return now - since > self.give_up

    def _started(self, now: float) -> float:
        if self._heard_at is None:
            self._heard_at = now
        return self._heard_at

    # -- frames in
    def receive(self, frame: bytes, now: float) -> None:
        """One frame's bytes from the framing layer; FrameError if it is not an ARQ frame."""
        parsed = decode(frame)
        if parsed.epoch != self.epoch:
            self.stats.foreign += 1
            return
        self._heard_at = now
        self._poll_unanswered = False
        self.stats.frames_received += 1
        self._push_back_timeout(len(frame))
        if isinstance(parsed, Ack):
            self._on_ack(parsed, now)
        else:
            if parsed.ack is not None:
                self._on_ack(Ack(parsed.epoch, parsed.ack, frozenset()), now)
            self._on_data(parsed, now)

    def _push_back_timeout(self, frame_bytes: int) -> None:
        """On a half-duplex channel the peer held the channel to send this frame, so its
        answer to our last burst comes that much later: push the time-out back by the
        frame's line time, at most a window of full frames per burst. Without it, a
        peer's own burst outlasts our time-out and we resend what is not lost (on a
        full-duplex line both send at once, and a lost frame is found sooner without)."""
        if self._timeout_at is None or not self.timing.half_duplex:
            return
        cap = self.window * self._frame_time(self.payload_bytes)
        step = min(self._line_time(frame_bytes), cap - self._extended)
        if step > 0:
            self._timeout_at += step
            self._extended += step

    def _on_data(self, frame: Data, now: float) -> None:
        offset = _after(frame.seq, self._expected)
        if offset < self.window:
            if frame.seq in self._held or self._eof:
                self.stats.duplicates += 1
            self._held.setdefault(frame.seq, frame)
            while self._expected in self._held and not self._eof:
                item = self._held.pop(self._expected)
                self._inbox += item.payload
                self._expected = (self._expected + 1) % SEQ_MODULUS
                self._eof = item.fin
        else:
            self.stats.duplicates += 1  # old: our ACK for it was lost
        if frame.poll:
            # Held for an ACK frame's own line time: if our side writes within it
            # (a reply), the ACK rides on that DATA and the line carries one frame.
            # On a half-duplex radio a frame of its own costs a key-up (the
            # turn-around), so wait up to half of one for the reply there.
            ack_time = self._line_time(HEADER_BYTES + self._bitmap_bytes())
            hold = now + max(ack_time, self.timing.turnaround / 2)
            self._ack_at = hold if self._ack_at is None else min(self._ack_at, hold)
            self._polled = True
        elif not self._polled:
            # A burst whose POLL is lost still gets an answer, after about two
            # frame times of silence: each frame of the burst pushes it back, so
            # a long burst on a slow line gets one ACK at its end, not one every
            # few frames (each a turn-around on a half-duplex radio).
            self._ack_at = now + 2 * self._frame_time(len(frame.payload)) + self.timing.slack

    def _on_ack(self, ack: Ack, now: float) -> None:
        progressed = False
        for seq in list(self._unacked):
            if _after(seq, self._base) < _after(ack.expected, self._base):
                del self._unacked[seq]
                progressed = True
        received_ordinals = [
            self._sent_ordinal.get((ack.expected + offset) % SEQ_MODULUS, -1) for offset in ack.held
        ]
        previous = (ack.expected - 1) % SEQ_MODULUS
        received_ordinals.append(self._sent_ordinal.get(previous, -1))
        for offset in ack.held:
            seq = (ack.expected + offset) % SEQ_MODULUS
            if self._unacked.pop(seq, None) is not None:
                progressed = True
        if _after(ack.expected, self._base) <= _after(self._next, self._base):
            self._base = ack.expected
        # Proven lost: sent before something the peer holds, and not held itself.
        latest = max(received_ordinals)
        for item in self._unacked.values():
            if 0 <= item.ordinal < latest:
                item.resend = True
        if progressed:
            self._backoff = 1.0
        self._timeout_at = None if not self._unacked else self._timeout_from(now)
        self._prune_ordinals()

    # -- frames out
    def transmit(self, now: float) -> list[bytes]:
        """The frames to put on the line now, in order (may be empty)."""
        frames: list[bytes] = []
        owed = self._ack_at is not None
        due = self._ack_at is not None and now >= self._ack_at
        if self._timeout_at is not None and now >= self._timeout_at and self._unacked:
            self.stats.timeouts += 1
            self._backoff = min(self._backoff * 2, 16.0)
            oldest = min(self._unacked.values(), key=lambda item: _after(item.seq, self._base))
            oldest.resend = True
            self._timeout_at = None
            self._poll_unanswered = False  # the answer is lost: our turn again
        if self._peer_mid_burst(due):
            return frames  # nothing can go yet: our DATA waits, the ACK state grows fresher
        burst: list[_Outgoing] = sorted(
            (item for item in self._unacked.values() if item.resend),
            key=lambda item: _after(item.seq, self._base),
        )
        self.stats.frames_resent += len(burst)
        new_frames = self._may_send_new() and not self._poll_unanswered
        while (
            new_frames
            and _after(self._next, self._base) < self.window
            and (self._outbox or (self._closing and not self._fin_queued))
        ):
            payload = bytes(self._outbox[: self.payload_bytes])
            del self._outbox[: self.payload_bytes]
            fin = self._closing and not self._outbox
            item = _Outgoing(self._next, payload, fin)
            self._fin_queued = self._fin_queued or fin
            self._unacked[item.seq] = item
            self._next = (self._next + 1) % SEQ_MODULUS
            burst.append(item)
        piggyback: int | None = None
        if owed and burst and not self._holes():
            piggyback = self._expected
            self._ack_at, self._polled = None, False
            self.stats.acks_piggybacked += 1
        elif due:
            frames.append(self._ack())
        for index, item in enumerate(burst):
            item.resend = False
            item.ordinal = self._ordinal
            self._sent_ordinal[item.seq] = self._ordinal
            self._ordinal += 1
            frame = Data(
                self.epoch,
                item.seq,
                item.payload,
                poll=index == len(burst) - 1,
                fin=item.fin,
                ack=piggyback if index == 0 else None,
            )
            frames.append(encode_data(frame, min_bytes=self.min_frame_bytes))
        self.stats.frames_sent += len(burst)
        for frame_bytes in frames:
            self._line_free = max(self._line_free, now) + self._line_time(len(frame_bytes))
        if burst:
            self._poll_unanswered = self.timing.half_duplex
            self._started(now)
            self._burst_payload = max(len(item.payload) for item in burst)
            self._timeout_at = self._timeout_from(now)
            self._extended = 0.0
        return frames

    def _peer_mid_burst(self, ack_due: bool) -> bool:
        """On a half-duplex channel, the peer is heard in the middle of a burst (DATA with
        no POLL yet, so its silence-ACK is pending): it holds the channel, and what we
        would send now could only wait in the TNC's queue, carrying an ACK that is stale
        by the time it is on the air. Worse, that stale ACK frees part of the peer's
        window and draws a short burst from it, an extra turn-around. So DATA waits
        until the burst's POLL (or the silence after it); the ACK then rides on it."""
        return (
            self.timing.half_duplex
            and self._ack_at is not None
            and not self._polled
            and not ack_due
        )

    def _may_send_new(self) -> bool:
        """Room in the window for a new frame, and either room for half a window or for
        all that is left. Without the second rule, each ACK that frees a few slots
        starts a burst of a few frames whose POLL draws another ACK, and a long
        transfer settles into several ACKs (turn-arounds, on a radio) per window."""
        free = self.window - _after(self._next, self._base)
        if free <= 0:
            return False
        if free >= max(1, self.window // 2):
            return True
        pending = -(-len(self._outbox) // self.payload_bytes)
        return max(pending, 1) <= free

    def _holes(self) -> bool:
        """Frames held beyond the next expected one: only a full ACK's bitmap says which."""
        return any(0 < _after(seq, self._expected) < self.window for seq in self._held)

    def _bitmap_bytes(self) -> int:
        return (self.window - 1 + 7) // 8

    def _ack(self) -> bytes:
        self._ack_at, self._polled = None, False
        self.stats.acks_sent += 1
        held = frozenset(
            _after(seq, self._expected)
            for seq in self._held
            if 0 < _after(seq, self._expected) < self.window
        )
        return encode_ack(
            Ack(self.epoch, self._expected, held),
            window=self.window,
            min_bytes=self.min_frame_bytes,
        )

    def deadline(self) -> float | None:
        """When `transmit` next has something to do without a new frame or write."""
        times = [t for t in (self._timeout_at, self._ack_at) if t is not None]
        return min(times) if times else None

    # -- timing
    def _line_time(self, frame_bytes: int) -> float:
        return (frame_bytes + self.timing.frame_overhead) / self.timing.bytes_per_second

    def _frame_time(self, payload: int) -> float:
        return self._line_time(HEADER_BYTES + payload)

    def _timeout_from(self, now: float) -> float:
        """Once our frames have left the line: the peer's turn-around, its ACK's line
        time and slack, each doubled while the peer stays silent."""
        answer = 2 * self.timing.turnaround + self._line_time(HEADER_BYTES + self.window // 8)
        # Two of our burst's largest frames: the receiver's wait for silence when
        # our POLL is lost (sized by what it received, so small exchanges, such
        # as a short message's, recover in a fraction of a full frame's wait).
        wait = (answer + self.timing.slack + 2 * self._frame_time(self._burst_payload)) * (
            self._backoff
        )
        if self._draw is not None and self.timing.half_duplex:
            wait *= 1 + JITTER * self._draw()  # only a shared channel has collisions
        return max(self._line_free, now) + wait

    def _prune_ordinals(self) -> None:
        for seq in list(self._sent_ordinal):
            if seq not in self._unacked and self.window < _after(self._base, seq):
                del self._sent_ordinal[seq]
