"""The serial frame format for plain cables: KISS-style byte stuffing plus a CRC-32, sans I/O.

A null-modem cable, a USB serial adapter or a transparent radio modem
flips and loses bytes with nothing underneath to notice, and KISS carries
no checksum. A serial frame is

    FEND  escape(VERSION || payload || CRC-32(VERSION || payload))  FEND

with the FEND/FESC escapes of KISS (framing.py), the CRC-32 of IEEE 802.3
(zlib.crc32) big-endian. Seven bytes of overhead, plus the escapes. The
decoder resynchronises at the next FEND after garbage and drops, with a
counted reason, every frame whose check fails: retransmission is the
session's business, not this layer's. docs/protocol.md section 23.1 is
the spec and has a test vector. No I/O, no clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from rise_dtn.core.errors import FrameError
from rise_dtn.core.framing import FEND, Deframer, DropReason, delimited_body, escape

VERSION = 1  # the first body byte; a later format takes another value
CHECK_BYTES = 4
OVERHEAD_BYTES = 2 + 1 + CHECK_BYTES  # two FENDs, the version, the CRC; escapes extra
# 4 KiB of payload: several times a useful frame at 300-9600 bit/s (where
# a lost 4 KiB frame already costs seconds to resend), and a bound on what
# a decoder holds for a peer that never sends a FEND.
DEFAULT_MAX_PAYLOAD_BYTES = 4096


def _check(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(CHECK_BYTES, "big")


def encode(payload: bytes) -> bytes:
    """One serial frame around `payload` (which may be empty)."""
    body = bytes([VERSION]) + payload
    return bytes([FEND]) + escape(body + _check(body)) + bytes([FEND])


def _payload(body: bytes) -> bytes | DropReason:
    if len(body) < 1 + CHECK_BYTES:
        return DropReason.TOO_SHORT
    covered, check = body[:-CHECK_BYTES], body[-CHECK_BYTES:]
    if _check(covered) != check:
        return DropReason.BAD_CHECKSUM
    if covered[0] != VERSION:
        return DropReason.UNKNOWN_VERSION
    return covered[1:]


def decode(data: bytes, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """The payload of exactly one frame; FrameError (with the drop reason) otherwise."""
    body = delimited_body(data)
    if len(body) > max_payload_bytes + 1 + CHECK_BYTES:
        raise FrameError(f"serial frame over {max_payload_bytes} bytes")
    result = _payload(body)
    if isinstance(result, DropReason):
        raise FrameError(f"serial frame dropped: {result.value}")
    return result


class SerialFrameDecoder:
    """Payloads out of a byte stream fed in chunks of any size; never raises on input.

    Garbage before or between frames costs at most the frame it touches:
    the next FEND starts afresh. `drops` says how many frames were lost and
    why, for the link's statistics and the operator's log.
    """

    def __init__(self, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self._deframer = Deframer(max_body_bytes=max_payload_bytes + 1 + CHECK_BYTES)

    @property
    def drops(self) -> Mapping[DropReason, int]:
        return self._deframer.drops

    @property
    def buffered_bytes(self) -> int:
        return self._deframer.buffered_bytes

    def feed(self, data: bytes) -> list[bytes]:
        payloads: list[bytes] = []
        for body in self._deframer.feed(data):
            result = _payload(body)
            if isinstance(result, DropReason):
                self._deframer.drop(result)
            else:
                payloads.append(result)
        return payloads
