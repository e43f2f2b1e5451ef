"""The AX.25 UI header that licensed radio use puts before a rise-dtn frame, sans I/O.

Amateur radio rules in many countries ask every transmission to carry the
station's callsign; an AX.25 UI frame (AX.25 2.2, sections 3.12 and 6.2)
does that and lets other stations' TNCs and monitors show who sent it.
rise-dtn sends 16 bytes: destination and source address, control 0x03
(UI), PID 0xF0 (no layer 3), then its own bytes as the information field.
On receipt a digipeater path is skipped. docs/protocol.md section 23.3.
"""

from __future__ import annotations

import dataclasses
import re

from rise_dtn.core.errors import FrameError, UsageError

ADDRESS_BYTES = 7
UI_CONTROL = 0x03
NO_LAYER3_PID = 0xF0
UI_HEADER_BYTES = 2 * ADDRESS_BYTES + 2
MAX_REPEATERS = 8  # AX.25 2.2 allows up to 8 digipeater addresses
MAX_SSID = 15
_CALL = re.compile(r"[A-Z0-9]{1,6}")
_COMMAND_BIT = 0x80  # the C bit: set in the destination of a command frame (AX.25 2.x)
_RESERVED_BITS = 0x60  # the two R bits, sent as 1
_LAST_ADDRESS_BIT = 0x01  # the HDLC extension bit: set in the last address
# Destinations Direwolf acts on when it sees them in a UI frame (speech, Morse, DTMF).
RESERVED_DESTINATIONS = frozenset({"SPEECH", "MORSE", "DTMF"})


@dataclasses.dataclass(frozen=True, slots=True)
class Callsign:
    """A station: up to six letters and digits, and an SSID 0-15 (`N0CALL-1`)."""

    call: str
    ssid: int = 0

    def __post_init__(self) -> None:
        if not _CALL.fullmatch(self.call):
            raise UsageError(f"callsign {self.call!r} is not 1-6 capital letters and digits")
        if not 0 <= self.ssid <= MAX_SSID:
            raise UsageError(f"SSID {self.ssid} is not 0-{MAX_SSID}")

    @classmethod
    def parse(cls, text: str) -> Callsign:
        """`N0CALL` or `N0CALL-7`, as an operator writes it in the config."""
        call, dash, ssid = text.strip().upper().partition("-")
        if dash and not ssid.isdigit():
            raise UsageError(f"callsign {text!r}: the SSID after '-' is not a number")
        return cls(call, int(ssid) if dash else 0)

    def __str__(self) -> str:
        return f"{self.call}-{self.ssid}" if self.ssid else self.call


@dataclasses.dataclass(frozen=True, slots=True)
class UiHeader:
    destination: Callsign
    source: Callsign


def _address(station: Callsign, *, command_bit: bool, last: bool) -> bytes:
    shifted = bytes(ord(character) << 1 for character in station.call.ljust(6))
    ssid_byte = _RESERVED_BITS | (station.ssid << 1)
    ssid_byte |= _COMMAND_BIT if command_bit else 0
    ssid_byte |= _LAST_ADDRESS_BIT if last else 0
    return shifted + bytes([ssid_byte])


def ui_header(*, destination: Callsign, source: Callsign) -> bytes:
    """The 16 bytes before the information field; a command frame (C bits 1, 0)."""
    if destination.call in RESERVED_DESTINATIONS:
        raise UsageError(f"destination {destination.call} makes Direwolf speak or key Morse")
    return (
        _address(destination, command_bit=True, last=False)
        + _address(source, command_bit=False, last=True)
        + bytes([UI_CONTROL, NO_LAYER3_PID])
    )


def _callsign(address: bytes) -> Callsign:
    if any(byte & 1 for byte in address[:6]):
        raise FrameError("AX.25 address has a low bit set in its callsign")
    call = bytes(byte >> 1 for byte in address[:6]).decode("ascii").rstrip(" ")
    try:
        return Callsign(call, (address[6] >> 1) & 0x0F)
    except UsageError as error:
        raise FrameError(f"AX.25 address: {error.message}") from None


def split_ui(frame: bytes) -> tuple[UiHeader, bytes]:
    """The header and information field of a UI frame; FrameError if it is not one.

    C and R bits are not checked: AX.25 1.x stations and some libraries
    leave them clear.
    """
    addresses: list[bytes] = []
    offset = 0
    while True:
        address = frame[offset : offset + ADDRESS_BYTES]
        if len(address) < ADDRESS_BYTES:
            raise FrameError("AX.25 frame ends inside its address field")
        addresses.append(address)
        offset += ADDRESS_BYTES
        if address[6] & _LAST_ADDRESS_BIT:
            break
        if len(addresses) == 2 + MAX_REPEATERS:
            raise FrameError("AX.25 address field longer than 8 digipeaters")
    if len(addresses) < 2:
        raise FrameError("AX.25 address field has no source")
    if frame[offset : offset + 2] != bytes([UI_CONTROL, NO_LAYER3_PID]):
        raise FrameError("not an AX.25 UI frame with PID 0xF0")
    header = UiHeader(destination=_callsign(addresses[0]), source=_callsign(addresses[1]))
    return header, frame[offset + 2 :]
