"""KISS framing for TNCs (Direwolf, hardware TNCs, LoRa KISS modems), sans I/O.

KISS (Chepponis and Karn, 1987) wraps each frame as `FEND cmd data FEND`,
where the command byte holds the TNC port in its high nibble and the
command in its low nibble, and FEND/FESC in the data are escaped. KISS
has no checksum: the radio's own FCS protects the air, the serial line or
TCP socket to the TNC is trusted. For plain cables use serial_frame.py,
which adds a CRC. docs/protocol.md section 23.2 says how rise-dtn uses
KISS; this module never does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from rise_dtn.core.errors import FrameError
from rise_dtn.core.framing import FEND, Deframer, DropReason, delimited_body, escape

# Direwolf 1.6 passes any data frame of 15 to 2123 bytes and refuses
# shorter ones; beyond 2046 *escaped* bytes it truncates silently, so 1023
# raw bytes is the largest frame that is safe whatever its content
# (../shared/notes/direwolf-link.md, measured).
DIREWOLF_MIN_FRAME_BYTES = 15
DIREWOLF_SAFE_FRAME_BYTES = 1023
# What a decoder holds at most: above Direwolf's 2123-byte ceiling, with
# room for TNCs that take larger frames, and still only a few KiB per link.
DEFAULT_MAX_FRAME_BYTES = 4096
MAX_PORT = 15  # the port is the command byte's high nibble
RETURN_BYTE = 0xFF  # "leave KISS mode": the whole byte, no port


class KissCommand(enum.IntEnum):
    """The low nibble of the command byte (KISS spec, "Command codes")."""

    DATA = 0
    TX_DELAY = 1
    PERSISTENCE = 2
    SLOT_TIME = 3
    TX_TAIL = 4
    FULL_DUPLEX = 5
    SET_HARDWARE = 6


@dataclasses.dataclass(frozen=True, slots=True)
class KissFrame:
    """One KISS frame: `port` 0-15, `command` 0-15 (KissCommand for the known ones)."""

    payload: bytes
    port: int = 0
    command: int = KissCommand.DATA


def encode(payload: bytes, *, port: int = 0, command: int = KissCommand.DATA) -> bytes:
    """`FEND cmd escaped-payload FEND`: a FEND on both sides, so a TNC that joined
    mid-stream (or saw noise) starts the frame cleanly."""
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"KISS port {port} is not 0-{MAX_PORT}")
    if not 0 <= command <= MAX_PORT:
        raise ValueError(f"KISS command {command} is not 0-{MAX_PORT}")
    command_byte = (port << 4) | command
    if command_byte == RETURN_BYTE:
        raise ValueError("port 15 command 15 is RETURN, which leaves KISS mode: not a frame")
    return bytes([FEND]) + escape(bytes([command_byte]) + payload) + bytes([FEND])


def _frame(body: bytes) -> KissFrame:
    command_byte = body[0]
    return KissFrame(payload=body[1:], port=command_byte >> 4, command=command_byte & 0x0F)


def decode(data: bytes, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> KissFrame:
    """Exactly one frame as `encode` makes it; FrameError for anything else.

    RETURN (0xFF) is refused too: it is a host-to-TNC command with no port,
    never a frame we receive.
    """
    body = delimited_body(data)
    if not body:
        raise FrameError("empty KISS frame")
    if len(body) - 1 > max_frame_bytes:
        raise FrameError(f"KISS frame over {max_frame_bytes} bytes")
    if body[0] == RETURN_BYTE:
        raise FrameError("KISS RETURN is not a frame")
    return _frame(body)


class KissDecoder:
    """KISS frames out of a TNC's byte stream, fed in chunks of any size.

    Never raises on what it is fed: frames it cannot use are counted in
    `drops` (a bad escape, an oversized frame, bytes before the first
    FEND). RETURN bytes are dropped silently as idle noise would be.
    """

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._deframer = Deframer(max_body_bytes=max_frame_bytes + 1)  # + the command byte

    @property
    def drops(self) -> Mapping[DropReason, int]:
        return self._deframer.drops

    @property
    def buffered_bytes(self) -> int:
        return self._deframer.buffered_bytes

    def feed(self, data: bytes) -> list[KissFrame]:
        return [_frame(body) for body in self._deframer.feed(data) if body[0] != RETURN_BYTE]
