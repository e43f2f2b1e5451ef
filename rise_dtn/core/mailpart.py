"""Bundles as ordinary-looking mail: one bundle in one or more MIME messages, and back.

The mailbox carrier puts each bundle into mail as a base64 attachment,
split over several messages above a size a provider takes. A censor or a
provider reading the mailbox must see ordinary mail: no header, subject,
file name, boundary or attachment byte names rise-dtn or either node. So
the attachment is masked (a ChaCha20 key stream from the two neighbours'
shared key), its Message-ID carries a keyed tag that only they can check,
and a keyed MAC closes each part (docs/protocol.md section 23, draft).

Sans-I/O: the caller passes the shared key material, `now`, a source of
random bytes and file objects; this module never opens sockets or files
and never reads the clock. A bundle of any size streams through in
constant memory: messages are produced and read as iterators of chunks.
Decoding untrusted mail raises only `MailError` (a `BundleError`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import email.errors
import email.message
import email.parser
import email.policy
import email.utils
import enum
import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

from rise_dtn.core.errors import BundleError, UsageError

VERSION = 1
KEY_BYTES = 32  # the shared key material the caller derives for a pair of neighbours
SALT_BYTES = 12  # per message: the ChaCha20 nonce, and the random half of the Message-ID
TAG_BYTES = 8  # a foreign Message-ID passes the tag check with probability 2^-64
MAC_BYTES = 16
TRANSFER_ID_BYTES = 16
# version (1) | transfer id (16) | index (4) | count (4) | total bytes (8) | part bytes (8)
PART_HEADER = struct.Struct(">B16sIIQQ")
OVERHEAD_BYTES = SALT_BYTES + PART_HEADER.size + MAC_BYTES
MAX_BUNDLE_BYTES = 1 << 50  # as bundle.MAX_BODY_BYTES: refuses absurd claims early
MAX_PART_BYTES = 1 << 30  # no provider takes a 1 GiB mail; a larger claim is garbage
MAX_PARTS = 1 << 20
# A provider's limit on a whole message, 25 MB at the strictest (decimal, encoded).
DEFAULT_MAX_MESSAGE_BYTES = 25_000_000
# Room in each message for our headers and for the Received, DKIM and other
# headers servers add on the way: 64 KiB is far more than they ever take.
MIME_ROOM_BYTES = 64 * 1024
# base64 lines as every mail client writes them: 57 bytes -> 76 characters + CRLF.
LINE_INPUT_BYTES = 57
LINE_OUTPUT_BYTES = 78
READ_BYTES = LINE_INPUT_BYTES * 1024  # one source read, and one output chunk of ~78 KiB
MAX_LINE_BYTES = 8192  # RFC 5322 says 998; a longer line is not mail we wrote
MAX_HEADER_BYTES = 256 * 1024  # a header block with a long chain of Received lines
MAX_TEXT_CHARS = 4096
PERSON_TAG = b"rise-mail-tag"
PERSON_MASK = b"rise-mail-mask"
PERSON_MAC = b"rise-mail-mac"
ZERO_COUNTER = bytes(4)  # ChaCha20's 32-bit block counter, starting at 0, then the nonce
PLACEHOLDER = "QUJDRA=="  # a base64 line that stands for the attachment while headers are built
# CRLF line endings, RFC 2047 and 2231 encoding, and 7-bit text (quoted-printable when
# needed) as clients write it, so the mail passes any server unchanged.
POLICY = email.policy.SMTP.clone(cte_type="7bit")


class MailFault(enum.Enum):
    """Why a mail was refused; the carrier logs one line and leaves or drops the mail."""

    MALFORMED = "malformed"  # not a MIME message with a part we could have written
    TRUNCATED = "truncated"  # ended before its part did
    FOREIGN = "foreign"  # the keyed MAC does not verify: someone else's mail, or altered
    DUPLICATE = "duplicate"  # a part of a transfer that has already arrived


class MailError(BundleError):
    """A mail is not a sound part of one of our bundles; `fault` says which way."""

    def __init__(self, fault: MailFault, message: str) -> None:
        super().__init__(f"{fault.value} mail: {message}")
        self.fault = fault


@dataclasses.dataclass(frozen=True, slots=True)
class MailKeys:
    """The three keys derived from the neighbours' shared key material."""

    tag: bytes
    mask: bytes
    mac: bytes

    @classmethod
    def derive(cls, shared: bytes) -> MailKeys:
        if len(shared) != KEY_BYTES:
            raise UsageError(f"mail key material must be {KEY_BYTES} bytes")
        return cls(*(_kdf(shared, person) for person in (PERSON_TAG, PERSON_MASK, PERSON_MAC)))


@dataclasses.dataclass(frozen=True, slots=True)
class MailStyle:
    """What the mail looks like: bland by default, configurable per mailbox."""

    subject: str = "Files"
    filename: str = "data.bin"
    text: str = ""  # the body above the attachment
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    part_bytes: int | None = None  # bundle bytes per message; None fits max_message_bytes

    def __post_init__(self) -> None:
        # Header values are one printable line; a control character or a line
        # separator would break the header or show the mail up as odd.
        if not (self.subject.isprintable() and self.filename.isprintable() and self.filename):
            raise UsageError("a mail subject and attachment name are printable, on one line")
        if len(self.text) > MAX_TEXT_CHARS:
            raise UsageError(f"a mail text is at most {MAX_TEXT_CHARS} characters")

    def bundle_bytes_per_part(self) -> int:
        if self.part_bytes is not None:
            size = self.part_bytes
        else:
            lines = (self.max_message_bytes - MIME_ROOM_BYTES) // LINE_OUTPUT_BYTES
            size = lines * LINE_INPUT_BYTES - OVERHEAD_BYTES
        if not 1 <= size <= MAX_PART_BYTES:
            raise UsageError(f"a mail part of {size} bundle bytes is out of range")
        return size


@dataclasses.dataclass(frozen=True, slots=True)
class PartHeader:
    """Which slice of which bundle one mail carries (authenticated by the part's MAC)."""

    transfer_id: bytes
    index: int
    count: int
    total_bytes: int
    part_bytes: int

    @property
    def offset(self) -> int:
        return self.index * self.part_bytes

    @property
    def length(self) -> int:
        return min(self.part_bytes, self.total_bytes - self.offset)

    def encode(self) -> bytes:
        return PART_HEADER.pack(
            VERSION, self.transfer_id, self.index, self.count, self.total_bytes, self.part_bytes
        )

    @classmethod
    def decode(cls, data: bytes) -> PartHeader:
        version, transfer_id, index, count, total, part = PART_HEADER.unpack(data)
        if version != VERSION:
            raise MailError(MailFault.FOREIGN, f"unknown part version {version}")
        if not (1 <= part <= MAX_PART_BYTES and total <= MAX_BUNDLE_BYTES):
            raise MailError(MailFault.FOREIGN, "part sizes out of range")
        if count != part_count(total, part) or index >= count:
            raise MailError(MailFault.FOREIGN, "part numbers do not add up")
        return cls(transfer_id, index, count, total, part)


@dataclasses.dataclass(slots=True)
class OutgoingMail:
    """One message to APPEND or submit; `chunks` must be read to the end before the next."""

    message_id: str  # with angle brackets, as in the header
    header: PartHeader
    size_bytes: int  # exactly what `chunks` yields (an IMAP APPEND literal needs it first)
    chunks: Iterator[bytes]


def _kdf(shared: bytes, person: bytes) -> bytes:
    return hashlib.blake2b(shared, digest_size=32, person=person).digest()


def part_count(total_bytes: int, part_bytes: int) -> int:
    """Parts for a bundle: an empty one still takes one (every transfer is seen to end)."""
    return max(1, -(-total_bytes // part_bytes))


def message_id_for(salt: bytes, keys: MailKeys, domain: str) -> str:
    tag = hashlib.blake2b(salt, digest_size=TAG_BYTES, key=keys.tag).digest()
    return f"<{base64.b32encode(salt + tag).decode().lower()}@{domain}>"


def is_ours(message_id: str, keys: MailKeys) -> bool:
    """Whether a Message-ID header carries our tag: the check a carrier makes on headers
    alone, before it reads (or touches) a mail. Never raises on garbage."""
    local = message_id.strip().removeprefix("<").split("@", 1)[0]
    if len(local) != 32:  # base32 of salt (12) + tag (8)
        return False
    try:
        raw = base64.b32decode(local.upper())
    except (binascii.Error, ValueError):
        return False
    salt, tag = raw[:SALT_BYTES], raw[SALT_BYTES:]
    expected = hashlib.blake2b(salt, digest_size=TAG_BYTES, key=keys.tag).digest()
    return hmac.compare_digest(tag, expected)


def _mask(keys: MailKeys, salt: bytes) -> CipherContext:
    return Cipher(algorithms.ChaCha20(keys.mask, ZERO_COUNTER + salt), mode=None).encryptor()


def _mac(keys: MailKeys, salt: bytes) -> hashlib.blake2b:
    mac = hashlib.blake2b(digest_size=MAC_BYTES, key=keys.mac)
    mac.update(salt)
    return mac


def encode(
    source: BinaryIO,
    total_bytes: int,
    *,
    keys: MailKeys,
    style: MailStyle,
    sender: str,
    recipient: str,
    now: int,
    random_bytes: Callable[[int], bytes],
) -> Iterator[OutgoingMail]:
    """The messages that carry `total_bytes` of `source`, lazily, in order."""
    if not 0 <= total_bytes <= MAX_BUNDLE_BYTES:
        raise UsageError(f"a bundle of {total_bytes} bytes cannot go by mail")
    part_bytes = style.bundle_bytes_per_part()
    transfer_id = random_bytes(TRANSFER_ID_BYTES)
    count = part_count(total_bytes, part_bytes)
    for index in range(count):
        header = PartHeader(transfer_id, index, count, total_bytes, part_bytes)
        salt = random_bytes(SALT_BYTES)
        domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        message_id = message_id_for(salt, keys, domain)
        boundary = "=" * 15 + f"{int.from_bytes(random_bytes(8), 'big') % 10**19:019d}" + "=="
        prefix, suffix = _frame(
            style=style, sender=sender, recipient=recipient, now=now,
            message_id=message_id, boundary=boundary,
        )  # fmt: skip
        content_bytes = OVERHEAD_BYTES + header.length
        size = len(prefix) + _base64_bytes(content_bytes) + len(suffix)
        chunks = _message_chunks(
            source=source, header=header, salt=salt, keys=keys, prefix=prefix, suffix=suffix
        )
        mail = OutgoingMail(message_id, header, size, chunks)
        yield mail
        if next(mail.chunks, None) is not None:
            raise UsageError("a mail's chunks were not read to the end before the next mail")


def _base64_bytes(content_bytes: int) -> int:
    full, rest = divmod(content_bytes, LINE_INPUT_BYTES)
    return full * LINE_OUTPUT_BYTES + ((-(-rest // 3) * 4 + 2) if rest else 0)


def _frame(
    *, style: MailStyle, sender: str, recipient: str, now: int, message_id: str, boundary: str
) -> tuple[bytes, bytes]:
    """The message's bytes before and after the attachment's base64 lines.

    Built by the standard library's generator around a placeholder line, so
    headers are folded and encoded exactly as an ordinary client's would be."""
    message = email.message.EmailMessage(policy=POLICY)
    try:
        message["From"] = sender
        message["To"] = recipient
    except ValueError as exc:  # a line break in an address
        raise UsageError(f"not a mail address: {sender!r} or {recipient!r}") from exc
    message["Subject"] = style.subject
    message["Date"] = email.utils.format_datetime(
        datetime.datetime.fromtimestamp(now, datetime.UTC)
    )
    message["Message-ID"] = message_id
    plain = style.text.isascii() and all(len(line) <= 76 for line in style.text.splitlines())
    # Never base64 for the text: the reader takes the base64 part that is not text.
    message.set_content(style.text, cte="7bit" if plain else "quoted-printable")
    message.add_attachment(
        b"",
        maintype="application",
        subtype="octet-stream",
        filename=style.filename,
    )
    attachment = message.get_payload()[-1]  # type: ignore[index]
    assert isinstance(attachment, email.message.Message)
    attachment.set_param("name", style.filename)  # as mail clients write it, for old readers
    for name in ("Content-Type", "Content-Disposition", "Content-Transfer-Encoding"):
        value = str(attachment[name])
        del attachment[name]
        attachment[name] = value  # in the order mail clients write them
    del attachment["MIME-Version"]  # the standard library's own habit; clients do not repeat it
    attachment.set_payload(PLACEHOLDER)
    message.set_boundary(boundary)
    raw = message.as_bytes(policy=POLICY)
    line = PLACEHOLDER.encode() + b"\r\n"
    if raw.count(line) != 1:
        raise UsageError("the mail text must not contain the line " + PLACEHOLDER)
    prefix, suffix = raw.split(line)
    return prefix, suffix


def _message_chunks(
    *,
    source: BinaryIO,
    header: PartHeader,
    salt: bytes,
    keys: MailKeys,
    prefix: bytes,
    suffix: bytes,
) -> Iterator[bytes]:
    yield prefix
    mask, mac = _mask(keys, salt), _mac(keys, salt)
    pending = bytearray(salt)  # the salt goes in clear: it is random, and the reader needs it
    plain = header.encode()
    mac.update(plain)
    pending += mask.update(plain)
    remaining = header.length
    while remaining:
        data = source.read(min(READ_BYTES, remaining))
        if not data:
            raise UsageError("the bundle ended before its length")
        remaining -= len(data)
        mac.update(data)
        pending += mask.update(data)
        if len(pending) >= READ_BYTES:
            cut = len(pending) - len(pending) % LINE_INPUT_BYTES
            yield _base64_lines(bytes(pending[:cut]))
            del pending[:cut]
    pending += mask.update(mac.digest())
    yield _base64_lines(bytes(pending))
    yield suffix


def _base64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


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
            self._mask, self._mac = _mask(self._keys, salt), _mac(self._keys, salt)
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
