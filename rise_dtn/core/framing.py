"""Byte stuffing and a streaming deframer, shared by KISS and the serial frame format.

A serial line or a TNC delivers a stream of bytes in chunks of any size,
with garbage where a cable was plugged in mid-frame and with flipped bits.
The deframer turns that stream into frame bodies: it finds the FEND
delimiters, undoes the FESC escapes of the KISS specification, and drops
what cannot be a frame, counting why (`DropReason`). It never raises on
what it is fed and never holds more than twice its frame limit, so a peer
that never sends a FEND cannot make it grow. It does no I/O and keeps no
clock (STYLE.md section 1); docs/protocol.md section 23 is the spec.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping

from rise_dtn.core.errors import FrameError

FEND = 0xC0  # frame end: starts and ends every frame
FESC = 0xDB  # frame escape: the next byte is TFEND or TFESC
TFEND = 0xDC  # FESC TFEND stands for a FEND in the data
TFESC = 0xDD  # FESC TFESC stands for a FESC in the data

_FEND = bytes([FEND])
_FESC = bytes([FESC])
_ESCAPED_FEND = bytes([FESC, TFEND])
_ESCAPED_FESC = bytes([FESC, TFESC])


class DropReason(enum.Enum):
    """Why a decoder threw bytes away; each is counted, none is raised."""

    UNFRAMED = "bytes before the first FEND"  # joined mid-frame: cannot tell where it began
    BAD_ESCAPE = "FESC not followed by TFEND or TFESC"
    OVERSIZE = "frame longer than the limit"
    TOO_SHORT = "frame shorter than its header and check"
    BAD_CHECKSUM = "CRC-32 does not match"  # line noise: the usual reason on a cable
    UNKNOWN_VERSION = "unknown serial frame version"


def escape(data: bytes) -> bytes:
    """FESC first, so that the FESC of an escaped FEND is not escaped again."""
    return data.replace(_FESC, _ESCAPED_FESC).replace(_FEND, _ESCAPED_FEND)


def unescape(data: bytes) -> bytes:
    """The bytes between two FENDs, unescaped; FrameError if they cannot be a frame.

    Stricter than the KISS spec, which says to ignore a stray FESC: without a
    checksum in KISS, a frame with a broken escape is better dropped than
    guessed at.
    """
    if _FEND in data:
        raise FrameError("FEND inside a frame body")
    escapes = data.count(_FESC)
    if escapes != data.count(_ESCAPED_FEND) + data.count(_ESCAPED_FESC):
        raise FrameError("FESC not followed by TFEND or TFESC")
    # Every FESC is now known to start a pair; pairs cannot overlap, so two
    # replaces undo exactly what escape() did.
    return data.replace(_ESCAPED_FEND, _FEND).replace(_ESCAPED_FESC, _FESC)


def delimited_body(data: bytes) -> bytes:
    """The unescaped body of exactly one frame `FEND body FEND`, for one-shot decoders."""
    if len(data) < 2 or data[0] != FEND or data[-1] != FEND:
        raise FrameError("a frame starts and ends with FEND")
    return unescape(data[1:-1])


class Deframer:
    """Frame bodies out of a byte stream fed in chunks of any size, even one byte.

    Empty frames (FEND FEND) are idle fill, not drops: KISS senders may put
    a FEND before and after every frame.
    """

    def __init__(self, *, max_body_bytes: int) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self.max_body_bytes = max_body_bytes
        # Every byte escapes to at most two, so a legal body never needs more.
        self._max_escaped_bytes = 2 * max_body_bytes
        self._buffer = bytearray()
        self._synced = False  # no FEND seen yet: we may have joined mid-frame
        self._skipping = False  # inside an oversized frame: wait for its FEND
        self._unframed = False  # bytes arrived before the first FEND
        self._drops: collections.Counter[DropReason] = collections.Counter()

    @property
    def drops(self) -> Mapping[DropReason, int]:
        """How many frames (or runs of unframed bytes) were dropped, by reason."""
        return dict(self._drops)

    @property
    def buffered_bytes(self) -> int:
        """What is held for the frame in progress: at most twice max_body_bytes."""
        return len(self._buffer)

    def drop(self, reason: DropReason) -> None:
        """Count a drop the caller found in a body (checksum, version)."""
        self._drops[reason] += 1

    def feed(self, data: bytes) -> list[bytes]:
        """The bodies of the frames `data` completes, in order."""
        bodies: list[bytes] = []
        start = 0
        while start < len(data):
            end = data.find(_FEND, start)
            piece = data[start:] if end < 0 else data[start:end]
            self._take(piece)
            if end < 0:
                break
            body = self._frame_ended()
            if body is not None:
                bodies.append(body)
            start = end + 1
        return bodies

    def _take(self, piece: bytes) -> None:
        if not piece or self._skipping:
            return
        if not self._synced:
            self._unframed = True  # thrown away now, counted once at the first FEND
            return
        self._buffer += piece
        if len(self._buffer) > self._max_escaped_bytes:
            self._buffer.clear()
            self._skipping = True
            self._drops[DropReason.OVERSIZE] += 1

    def _frame_ended(self) -> bytes | None:
        escaped = bytes(self._buffer)
        self._buffer.clear()
        if not self._synced:
            self._synced = True
            if self._unframed:
                self._drops[DropReason.UNFRAMED] += 1
            return None
        if self._skipping:
            self._skipping = False
            return None
        if not escaped:
            return None
        try:
            body = unescape(escaped)
        except FrameError:
            self._drops[DropReason.BAD_ESCAPE] += 1
            return None
        if len(body) > self.max_body_bytes:
            self._drops[DropReason.OVERSIZE] += 1
            return None
        return body
