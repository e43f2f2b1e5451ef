"""Bundles as ordinary-looking mail: one bundle in one or more MIME messages, and back.

The mailbox carrier puts each bundle into mail as a base64 attachment,
split over several messages above a size a provider takes. A censor or a
provider reading the mailbox must see ordinary mail: no header, subject,
file name, boundary or attachment byte names rise-dtn or either node. So
the attachment is masked (a ChaCha20 key stream from the two neighbours'
shared key), its Message-ID carries a keyed tag that only they can check,
and a keyed MAC closes each part (docs/protocol.md section 24).

This module holds the format and writes mails; core/mailreader.py reads
them. Sans-I/O: the caller passes the shared key material, `now`, a source
of random bytes and file objects; this module never opens sockets or files
and never reads the clock. A bundle of any size streams through in
constant memory: messages are produced as iterators of chunks.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import email.message
import email.policy
import email.utils
import enum
import hashlib
import hmac
import struct
from collections.abc import Callable, Iterator
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
MAX_PARTS = (1 << 32) - 1  # the part header's 32-bit count
# A provider's limit on a whole message, 25 MB at the strictest (decimal, encoded).
DEFAULT_MAX_MESSAGE_BYTES = 25_000_000
# Room in each message for our headers and for the Received, DKIM and other
# headers servers add on the way: 64 KiB is far more than they ever take.
MIME_ROOM_BYTES = 64 * 1024
# base64 lines as every mail client writes them: 57 bytes -> 76 characters + CRLF.
LINE_INPUT_BYTES = 57
LINE_OUTPUT_BYTES = 78
READ_BYTES = LINE_INPUT_BYTES * 1024  # one source read, and one output chunk of ~78 KiB
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


def mask_stream(keys: MailKeys, salt: bytes) -> CipherContext:
    """The key stream that hides a part (protocol.md 24.3)."""
    return Cipher(algorithms.ChaCha20(keys.mask, ZERO_COUNTER + salt), mode=None).encryptor()


def part_mac(keys: MailKeys, salt: bytes) -> hashlib.blake2b:
    """The MAC that closes a part, started with its salt (protocol.md 24.3)."""
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
    if count > MAX_PARTS:
        raise UsageError(f"a bundle of {total_bytes} bytes needs more than {MAX_PARTS} mails")
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
    mask, mac = mask_stream(keys, salt), part_mac(keys, salt)
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
    """base64 in lines of 76 characters, each ending in CRLF: base64.encodebytes's
    lines, but encoded in one call and cut by slices (encodebytes calls the encoder
    once per line, which was most of the cost of mailing a large bundle)."""
    encoded = binascii.b2a_base64(data, newline=False)
    if not encoded:
        return b""
    count = -(-len(encoded) // LINE_CHARS)
    cuts = _LINE_SLICES if count == len(_LINE_SLICES) else _line_slices(count)
    return b"\r\n".join(map(encoded.__getitem__, cuts)) + b"\r\n"


LINE_CHARS = LINE_OUTPUT_BYTES - 2


def _line_slices(count: int) -> list[slice]:
    return [slice(start, start + LINE_CHARS) for start in range(0, count * LINE_CHARS, LINE_CHARS)]


_LINE_SLICES = _line_slices(READ_BYTES // LINE_INPUT_BYTES)  # a full chunk's lines
