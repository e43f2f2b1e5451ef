"""Reading bundles back out of mail: one raw message at a time, in constant memory.

The far side of core/mailpart.py (docs/protocol.md section 24). A
mail is fed in chunks of any size; the bundle bytes come out as they are
decoded, to be written somewhere provisional until the part's MAC has
been checked. Which parts of a transfer have arrived is an `Assembly`.
Decoding untrusted mail raises only `MailError` (a `BundleError`), never
anything else: the fuzz tests hold that line. No I/O but the file object
the caller hands to `read_part`.
"""

from __future__ import annotations

import binascii
import email.errors
import email.message
import email.parser
import email.policy
import enum
import hashlib
import hmac
from collections.abc import Iterable
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers import CipherContext

from rise_dtn.core.mailpart import (
    MAC_BYTES,
    PART_HEADER,
    SALT_BYTES,
    MailError,
    MailFault,
    MailKeys,
    PartHeader,
    mask_stream,
    part_mac,
)

MAX_LINE_BYTES = 8192  # RFC 5322 says 998; a longer line is not mail we wrote
MAX_HEADER_BYTES = 256 * 1024  # a header block with a long chain of Received lines


class _State(enum.Enum):
    HEADERS = enum.auto()  # the message's header block
    PREAMBLE = enum.auto()  # before the first boundary
    PART_HEADERS = enum.auto()
    SKIP = enum.auto()  # a part that is not the base64 attachment (the text)
    BASE64 = enum.auto()  # the attachment's lines
    DONE = enum.auto()  # after the attachment: the rest is ignored


class MailReader:
    """Reads one raw message, fed in chunks of any size, in constant memory.

    `feed` returns the bundle bytes decoded so far; they are not trusted
    until `finish` has checked the part's MAC, so the caller writes them
    somewhere provisional (at `header.offset`, known before the first
    bundle byte comes out) and throws them away on a `MailError`."""

    def __init__(self, keys: MailKeys) -> None:
        self._keys = keys
        self._state = _State.HEADERS
        self._line = bytearray()
        self._lines: list[bytes] = []  # the header block being collected
        self._lines_bytes = 0
        self._boundary = b""
        self._base64 = bytearray()  # base64 characters not yet a multiple of 4
        self._content = bytearray()  # decoded bytes before the salt and header are complete
        self._mask: CipherContext | None = None
        self._mac: hashlib.blake2b | None = None
        self._expected_mac = bytearray()
        self._remaining = 0  # bundle bytes still to come in this part
        self.header: PartHeader | None = None

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        position = 0
        while position < len(data) and self._state is not _State.DONE:
            if self._state is _State.BASE64 and not self._line:
                # The bulk of a mail: whole lines up to the next boundary, at once.
                end = data.rfind(b"\n", position) + 1
                stop = _boundary_line(data, position, end, self._boundary)
                if stop > position:
                    out += self._decode_base64(data[position:stop])
                    position = stop
                    continue
            newline = data.find(b"\n", position)
            end = len(data) if newline < 0 else newline + 1
            self._line += data[position:end]
            position = end
            if len(self._line) > MAX_LINE_BYTES:
                raise MailError(MailFault.MALFORMED, "a line is too long")
            if newline >= 0:
                out += self._take_line(bytes(self._line).rstrip(b"\r\n"))
                self._line.clear()
        return bytes(out)

    def finish(self) -> PartHeader:
        """The verified part, or a MailError if it is short, foreign or altered."""
        if self._line:
            self.feed(b"\n")
        if self.header is None or self._remaining or len(self._expected_mac) < MAC_BYTES:
            raise MailError(MailFault.TRUNCATED, "the attachment ended early")
        if self._base64:
            raise MailError(MailFault.TRUNCATED, "the attachment's base64 ends mid-group")
        assert self._mac is not None
        if not hmac.compare_digest(self._mac.digest(), bytes(self._expected_mac)):
            raise MailError(MailFault.FOREIGN, "the part's MAC does not verify")
        return self.header

    def _take_line(self, line: bytes) -> bytes:
        state = self._state
        if state in (_State.HEADERS, _State.PART_HEADERS):
            if line:
                self._lines_bytes += len(line) + 2
                if self._lines_bytes > MAX_HEADER_BYTES:
                    raise MailError(MailFault.MALFORMED, "the header block is too long")
                self._lines.append(line)
                return b""
            headers = _parse_headers(self._lines)
            self._lines, self._lines_bytes = [], 0
            if state is _State.HEADERS:
                self._boundary = b"--" + _boundary_of(headers)
                self._state = _State.PREAMBLE
            else:
                encoding = str(headers.get("Content-Transfer-Encoding", "")).strip().lower()
                ours = encoding == "base64" and headers.get_content_maintype() != "text"
                self._state = _State.BASE64 if ours else _State.SKIP
            return b""
        if state is _State.DONE:
            return b""
        if line.rstrip().startswith(self._boundary):
            closing = line.rstrip() == self._boundary + b"--"
            if state is _State.BASE64 or closing:
                self._state = _State.DONE
            else:
                self._state = _State.PART_HEADERS
            return b""
        return self._decode_base64(line) if state is _State.BASE64 else b""

    def _decode_base64(self, lines: bytes) -> bytes:
        self._base64 += lines.translate(None, b" \t\r\n")
        cut = len(self._base64) - len(self._base64) % 4
        if not cut:
            return b""
        try:
            decoded = binascii.a2b_base64(bytes(self._base64[:cut]), strict_mode=True)
        except binascii.Error as exc:
            raise MailError(MailFault.MALFORMED, "the attachment is not base64") from exc
        del self._base64[:cut]
        return self._take_content(decoded)

    def _take_content(self, data: bytes) -> bytes:
        if self.header is None:
            self._content += data
            prelude = SALT_BYTES + PART_HEADER.size
            if len(self._content) < prelude:
                return b""
            salt = bytes(self._content[:SALT_BYTES])
            self._mask, self._mac = mask_stream(self._keys, salt), part_mac(self._keys, salt)
            plain = self._mask.update(bytes(self._content[SALT_BYTES:prelude]))
            self.header = PartHeader.decode(plain)
            self._mac.update(plain)
            self._remaining = self.header.length
            data = bytes(self._content[prelude:])
            self._content.clear()
        assert self._mask is not None and self._mac is not None
        plain = self._mask.update(data)
        body, tail = plain[: self._remaining], plain[self._remaining :]
        self._remaining -= len(body)
        self._mac.update(body)
        if len(self._expected_mac) + len(tail) > MAC_BYTES:
            raise MailError(MailFault.MALFORMED, "the attachment is longer than its part")
        self._expected_mac += tail
        return body


def _boundary_line(data: bytes, start: int, end: int, boundary: bytes) -> int:
    """Where, in data[start:end], the first line that starts with `boundary` begins
    (`end` if none does)."""
    if data.startswith(boundary, start, end):
        return start
    found = data.find(b"\n" + boundary, start, end)
    return end if found < 0 else found + 1


def _parse_headers(lines: list[bytes]) -> email.message.Message:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    try:
        headers: email.message.Message = parser.parsebytes(b"\r\n".join(lines) + b"\r\n\r\n")
    except (email.errors.MessageError, ValueError, LookupError, TypeError) as exc:
        raise MailError(MailFault.MALFORMED, "unreadable headers") from exc
    return headers


def _boundary_of(headers: email.message.Message) -> bytes:
    try:
        boundary = headers.get_boundary() if headers.get_content_maintype() == "multipart" else None
        encoded = boundary.encode("ascii") if boundary else b""
    except (email.errors.MessageError, ValueError, LookupError, TypeError) as exc:
        raise MailError(MailFault.MALFORMED, "unreadable Content-Type") from exc
    if not encoded or len(encoded) > 70:  # RFC 2046: 1 to 70 characters
        raise MailError(MailFault.MALFORMED, "not a multipart mail")
    return encoded


def read_part(chunks: Iterable[bytes], keys: MailKeys, sink: BinaryIO) -> PartHeader:
    """Read one raw message and write its slice of the bundle into `sink` at its offset.

    The bytes written are the part's only once this returns: on a MailError
    the region may hold garbage, which a sound copy of the part overwrites."""
    reader = MailReader(keys)
    position: int | None = None
    for chunk in chunks:
        body = reader.feed(chunk)
        if body:
            if position is None:
                assert reader.header is not None
                position = reader.header.offset
                sink.seek(position)
            sink.write(body)
    return reader.finish()


class Assembly:
    """The parts of one transfer seen so far: which are missing, which are duplicates."""

    def __init__(self, first: PartHeader) -> None:
        self.first = first
        self.arrived: set[int] = set()

    def add(self, header: PartHeader) -> None:
        """Record a verified part; a duplicate or one from another transfer is refused."""
        first = self.first
        if (header.transfer_id, header.count, header.total_bytes, header.part_bytes) != (
            first.transfer_id, first.count, first.total_bytes, first.part_bytes,
        ):  # fmt: skip
            raise MailError(MailFault.MALFORMED, "a part that disagrees with its transfer")
        if header.index in self.arrived:
            raise MailError(MailFault.DUPLICATE, f"part {header.index + 1} already arrived")
        self.arrived.add(header.index)

    @property
    def missing(self) -> list[int]:
        return sorted(set(range(self.first.count)) - self.arrived)

    @property
    def complete(self) -> bool:
        return len(self.arrived) == self.first.count
