"""Bundle format v1: the cleartext hop header and the sealed, signed body.

Layout (docs/protocol.md, "Bundle"):

    magic "RSB" | version 0x01 | hop header (CBOR) | E (32) | sealed chunks

The hop header is what a carrier or relay may read: recipient, expiry,
priority and body length. The first sealed chunk starts with the sender's
id, the sender's signature and the metadata; only the recipient learns who
sent it. Pure logic: callers feed bytes and `now`, this module never reads
files, the clock or the random generator.
"""

from __future__ import annotations

import dataclasses
import enum

from rise_dtn.core import sealing
from rise_dtn.core.encoding import canonical, split_item, strict_loads
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import (
    NODE_ID_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    BundleId,
    Identity,
    NodeId,
    PublicIdentity,
    exchange_public_for,
    hash16,
    x25519,
)
from rise_dtn.core.parts import PartHeader

MAGIC = b"RSB"
VERSION = 1
ONION_VERSION = 2  # a Sphinx-style relay packet (core/onion.py, protocol.md section 20)
# version -> status; see protocol.md "Versions"
SUPPORTED_VERSIONS = {1: "current (direct bundle)", 2: "current (onion packet)"}
PREFIX_BYTES = len(MAGIC) + 1
# recipient (17) + expiry (<= 9) + priority (<= 2) + length (<= 9) + array (1)
# is at most 38 bytes; 64 leaves room without letting a header grow.
MAX_HOP_HEADER_BYTES = 64
MAX_CLEAR_BYTES = PREFIX_BYTES + MAX_HOP_HEADER_BYTES + PUBLIC_KEY_BYTES
# An onion packet's routing header has at most this many slots: 8 relays and
# the destination (protocol.md section 20).
MAX_ROUTE_SLOTS = 9
# One routing slot: kind (1), next hop (16), next expiry (8), next priority
# (1), payload tag (16), cancel commitment (16), next MAC (16).
SLOT_BYTES = 74
# The payload key stream is ChaCha20 with a 32-bit block counter: 2**38 bytes.
MAX_ONION_PAYLOAD_BYTES = 1 << 38
MAC_BYTES = 16
# A file name is at most 255 bytes on every common filesystem; the rest of
# the metadata is a few integers.
MAX_META_BYTES = 512
MAX_NAME_BYTES = 255
MAX_PRIORITY = 255
MAX_BODY_BYTES = 1 << 50  # 1 PiB: refuses absurd claims before any I/O
# Seconds since the epoch as a signed 64-bit integer: what the spool index
# (an SQLite INTEGER) and every time_t can hold.
MAX_EXPIRY = (1 << 63) - 1
INNER_FIXED_BYTES = NODE_ID_BYTES + SIGNATURE_BYTES
# Unicode bidirectional formatting characters (UAX #9): they can make a name
# display as something else.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
BUNDLE_ID_PERSON = b"rise-bundle-id-1"
SIGNATURE_CONTEXT = b"rise-dtn bundle signature v1\x00"


class ContentKind(enum.IntEnum):
    """What the sealed payload is (protocol.md section 7 and 21)."""

    MESSAGE = 1
    FILE = 2
    RECEIPT = 3  # end to end: "I delivered bundle X" (core/receipt.py)
    MAP = 4  # to a neighbour: some of the links this relay knows (core/routemap.py)
    PART = 5  # one part of a split file (core/parts.py, protocol.md section 25)


@dataclasses.dataclass(frozen=True, slots=True)
class HopHeader:
    """The cleartext header every hop can read."""

    recipient: NodeId
    expiry: int  # seconds since the Unix epoch
    priority: int  # 0 is most urgent, 255 least ("nice")
    body_length: int  # bytes after the hop header: E plus sealed chunks
    slots: int = 0  # onion packets only: routing slots; 0 marks a direct bundle

    def encode(self) -> bytes:
        fields = [self.recipient.raw, self.expiry, self.priority, self.body_length]
        if self.slots:
            return MAGIC + bytes([ONION_VERSION]) + canonical([*fields, self.slots])
        return MAGIC + bytes([VERSION]) + canonical(fields)

    def binding(self, ephemeral_public: bytes) -> bytes:
        """Associated data of chunk 0: every header field but the body length.

        The length is left out so that a stream of unknown size can be sealed
        before its size is known; the chunk framing and the last-chunk flag
        already detect any change of length.
        """
        return canonical([MAGIC, VERSION, self.recipient.raw, self.expiry, self.priority]) + (
            ephemeral_public
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ClearPart:
    """The parsed cleartext part of a bundle."""

    header: HopHeader
    ephemeral_public: bytes  # E of a direct bundle, alpha of an onion packet
    size: int  # bytes of magic, header and E: where the sealed chunks start
    version: int = VERSION
    slots: int = 0  # routing slots of an onion packet; 0 for a direct bundle
    # The id, hashed once: a relay asks for it several times per packet.
    _id: list[BundleId] = dataclasses.field(
        default_factory=list, init=False, compare=False, repr=False
    )

    @property
    def onion(self) -> bool:
        return self.version == ONION_VERSION

    @property
    def bundle_id(self) -> BundleId:
        if not self._id:
            self._id.append(bundle_id_for(self.ephemeral_public))
        return self._id[0]

    @property
    def payload_offset(self) -> int:
        """Where the payload starts: past an onion packet's routing slots and MAC too."""
        return self.size + (self.slots * SLOT_BYTES + MAC_BYTES if self.onion else 0)

    @property
    def total_bytes(self) -> int:
        return self.size - PUBLIC_KEY_BYTES + self.header.body_length

    def expired(self, now: int) -> bool:
        return self.header.expiry <= now


@dataclasses.dataclass(frozen=True, slots=True)
class Meta:
    """Signed metadata: what the payload is and, for files, its name and size."""

    kind: ContentKind
    name: str | None = None
    size: int | None = None
    part: PartHeader | None = None  # kind PART only: which piece of which file

    def encode(self) -> bytes:
        fields: list[object] = [int(self.kind)]
        if self.kind is ContentKind.FILE:
            fields.append(self.name)
            if self.size is not None:
                fields.append(self.size)
        if self.kind is ContentKind.PART:
            assert self.part is not None
            fields += [self.name, *self.part.fields()]
        return canonical(fields)

    @classmethod
    def decode(cls, data: bytes) -> Meta:
        value = strict_loads(
            data, max_bytes=MAX_META_BYTES, error=BundleError, what="bundle metadata"
        )
        if (
            not isinstance(value, list)
            or not value
            or not isinstance(value[0], int)
            or isinstance(value[0], bool)
        ):
            raise BundleError("bundle metadata is malformed")
        try:
            kind = ContentKind(value[0])
        except ValueError:
            raise BundleError(f"unknown content kind {value[0]}") from None
        if kind is ContentKind.PART:
            if len(value) != 7 or not isinstance(value[1], str):
                raise BundleError("bundle metadata is malformed")
            part = PartHeader.from_fields(value[2:])
            return cls(kind, check_file_name(value[1]), part.length, part)
        if kind is not ContentKind.FILE:
            if len(value) != 1:
                raise BundleError("bundle metadata is malformed")
            return cls(kind)
        if len(value) not in (2, 3) or not isinstance(value[1], str):
            raise BundleError("bundle metadata is malformed")
        size = value[2] if len(value) == 3 else None
        if len(value) == 3 and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise BundleError("bundle metadata is malformed")
        return cls(kind, check_file_name(value[1]), size)


@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    """What the first sealed chunk reveals to the recipient."""

    sender: NodeId
    signature: bytes
    meta: Meta
    meta_bytes: bytes


def check_file_name(name: str) -> str:
    """Refuse names that could escape the incoming directory or confuse a shell user."""
    if not name or name in {".", ".."}:
        raise BundleError("unsafe file name: empty, '.' or '..'")
    if "/" in name or "\\" in name or "\x00" in name:
        raise BundleError(f"unsafe file name {name[:40]!r}: contains '/', '\\\\' or NUL")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in name):  # C0, DEL, C1
        raise BundleError(f"unsafe file name {name[:40]!r}: contains control characters")
    if any(char in BIDI_CONTROLS for char in name):
        # "invoice\u202efdp.exe" shows as "invoiceexe.pdf": refuse the disguise.
        raise BundleError(f"unsafe file name {name[:40]!r}: contains bidirectional controls")
    if name.startswith(".rise-") or name.startswith("-"):
        raise BundleError(f"unsafe file name {name[:40]!r}: reserved prefix")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        # A name of bytes that are not UTF-8 (an old Latin-1 disk's), as Python decodes
        # it (surrogateescape): metadata holds text, so it cannot travel as it is.
        raise BundleError(f"unsafe file name {name[:40]!r}: not UTF-8 text") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise BundleError("unsafe file name: longer than 255 bytes")
    return name


def bundle_id_for(ephemeral_public: bytes) -> BundleId:
    return BundleId(hash16(ephemeral_public, person=BUNDLE_ID_PERSON))


def parse_clear(data: bytes) -> ClearPart:
    """Parse magic, version, hop header and E from the first bytes of a bundle.

    `data` may hold more than the clear part (a carrier reads MAX_CLEAR_BYTES).
    """
    if len(data) < PREFIX_BYTES:
        raise BundleError("bundle is truncated (no header)")
    if data[: len(MAGIC)] != MAGIC:
        raise BundleError("not a rise-dtn bundle (bad magic)")
    version = data[len(MAGIC)]
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(
            f"unsupported bundle version {version} (this node reads versions 1 and 2)"
        )
    value, header_bytes = split_item(
        data[PREFIX_BYTES:], max_bytes=MAX_HOP_HEADER_BYTES, error=BundleError, what="bundle header"
    )
    fields = 5 if version == ONION_VERSION else 4
    if (
        not isinstance(value, list)
        or len(value) != fields
        or not isinstance(value[0], bytes)
        or len(value[0]) != NODE_ID_BYTES
        or not all(isinstance(field, int) and not isinstance(field, bool) for field in value[1:])
    ):
        raise BundleError("bundle header is malformed")
    expiry, priority, body_length = value[1:4]
    if not 0 <= expiry <= MAX_EXPIRY or not 0 <= priority <= MAX_PRIORITY:
        raise BundleError("bundle header has out-of-range fields")
    if not PUBLIC_KEY_BYTES < body_length <= MAX_BODY_BYTES:
        raise BundleError(f"bundle header claims an impossible body length {body_length}")
    slots = value[4] if version == ONION_VERSION else 0
    if version == ONION_VERSION:
        if not 1 <= slots <= MAX_ROUTE_SLOTS:
            raise BundleError(f"onion packet claims {slots} routing slots (1 to 9 allowed)")
        if body_length <= onion_header_bytes(slots):
            raise BundleError("onion packet is too short for its routing header")
        if body_length - onion_header_bytes(slots) > MAX_ONION_PAYLOAD_BYTES:
            raise BundleError("onion packet claims a payload over 256 GiB")
    elif sealing.chunk_count(body_length - PUBLIC_KEY_BYTES) is None:
        raise BundleError("bundle body length does not match the chunk framing")
    start = PREFIX_BYTES + header_bytes
    ephemeral = data[start : start + PUBLIC_KEY_BYTES]
    if len(ephemeral) != PUBLIC_KEY_BYTES:
        raise BundleError("bundle is truncated (no ephemeral key)")
    header = HopHeader(NodeId(value[0]), expiry, priority, body_length, slots)
    return ClearPart(header, ephemeral, start + PUBLIC_KEY_BYTES, version, slots)


def onion_header_bytes(slots: int) -> int:
    """alpha, the routing slots and the MAC: the fixed part of an onion body."""
    return PUBLIC_KEY_BYTES + slots * SLOT_BYTES + MAC_BYTES


def signed_message(
    recipient: NodeId, expiry: int, ephemeral_public: bytes, meta_bytes: bytes
) -> bytes:
    """The bytes the sender signs: binds the body key (via E) to sender and recipient."""
    return SIGNATURE_CONTEXT + canonical([recipient.raw, expiry, ephemeral_public, meta_bytes])


class Sealer:
    """Seals one bundle chunk by chunk. The caller supplies the ephemeral secret."""

    def __init__(
        self,
        *,
        sender: Identity,
        recipient: PublicIdentity,
        meta: Meta,
        expiry: int,
        priority: int,
        ephemeral_secret: bytes,
    ) -> None:
        if not 0 <= priority <= MAX_PRIORITY:
            raise ValueError("priority is 0..255")
        self._recipient_id = recipient.node_id
        self._expiry = expiry
        self._priority = priority
        self.ephemeral_public = exchange_public_for(ephemeral_secret)
        shared = x25519(ephemeral_secret, recipient.exchange_public)
        self._key = sealing.derive_key(shared, self.ephemeral_public, recipient.exchange_public)
        meta_bytes = meta.encode()
        signature = sender.sign(
            signed_message(self._recipient_id, expiry, self.ephemeral_public, meta_bytes)
        )
        self._inner_prefix = sender.node_id.raw + signature + meta_bytes
        self._next_index = 0

    @property
    def bundle_id(self) -> BundleId:
        return bundle_id_for(self.ephemeral_public)

    @property
    def first_payload_bytes(self) -> int:
        """How much payload fits in chunk 0 beside the inner prefix."""
        return sealing.CHUNK_BYTES - len(self._inner_prefix)

    def body_length(self, payload_bytes: int) -> int:
        return PUBLIC_KEY_BYTES + sealing.sealed_size(len(self._inner_prefix) + payload_bytes)

    def clear_part(self, payload_bytes: int) -> bytes:
        """Magic, hop header and E, once the payload size is known."""
        header = HopHeader(
            self._recipient_id, self._expiry, self._priority, self.body_length(payload_bytes)
        )
        return header.encode() + self.ephemeral_public

    def seal(self, payload: bytes, *, final: bool) -> bytes:
        """Seal the next chunk: `first_payload_bytes` then CHUNK_BYTES of payload each."""
        index = self._next_index
        expected = self.first_payload_bytes if index == 0 else sealing.CHUNK_BYTES
        if len(payload) > expected or (not final and len(payload) != expected):
            raise ValueError(f"chunk {index} must hold {expected} payload bytes")
        self._next_index += 1
        if index == 0:
            aad = HopHeader(self._recipient_id, self._expiry, self._priority, 0).binding(
                self.ephemeral_public
            )
            return sealing.seal_chunk(
                self._key, 0, self._inner_prefix + payload, final=final, aad=aad
            )
        return sealing.seal_chunk(self._key, index, payload, final=final, aad=b"")


class Opener:
    """Opens one bundle addressed to `identity`, chunk by chunk."""

    def __init__(self, identity: Identity, clear: ClearPart) -> None:
        if clear.header.recipient != identity.node_id:
            raise BundleError(f"bundle is for another node ({clear.header.recipient})")
        self.clear = clear
        our_public = identity.public.exchange_public
        shared = identity.exchange(clear.ephemeral_public)
        self._key = sealing.derive_key(shared, clear.ephemeral_public, our_public)
        count = sealing.chunk_count(clear.header.body_length - PUBLIC_KEY_BYTES)
        assert count is not None  # parse_clear checked the framing
        self.chunk_count = count

    def chunk_sizes(self) -> list[tuple[int, int]]:
        """(index, sealed size) of every chunk after chunk 0, for the reader."""
        body = self.clear.header.body_length - PUBLIC_KEY_BYTES
        sizes = []
        for index in range(1, self.chunk_count):
            start = index * sealing.SEALED_CHUNK_BYTES
            sizes.append((index, min(sealing.SEALED_CHUNK_BYTES, body - start)))
        return sizes

    @property
    def first_chunk_bytes(self) -> int:
        return min(sealing.SEALED_CHUNK_BYTES, self.clear.header.body_length - PUBLIC_KEY_BYTES)

    def open_first(self, sealed: bytes) -> tuple[Inner, bytes]:
        """Open chunk 0: the sender, its signature, the metadata and the first payload."""
        aad = dataclasses.replace(self.clear.header, body_length=0).binding(
            self.clear.ephemeral_public
        )
        plain = sealing.open_chunk(self._key, 0, sealed, final=self.chunk_count == 1, aad=aad)
        if len(plain) < INNER_FIXED_BYTES + 1:
            raise BundleError("bundle body is too short to hold a sender and signature")
        sender = NodeId(plain[:NODE_ID_BYTES])
        signature = plain[NODE_ID_BYTES:INNER_FIXED_BYTES]
        meta_value, meta_len = split_item(
            plain[INNER_FIXED_BYTES:],
            max_bytes=MAX_META_BYTES,
            error=BundleError,
            what="bundle metadata",
        )
        del meta_value  # decoded again, strictly, by Meta.decode
        meta_bytes = plain[INNER_FIXED_BYTES : INNER_FIXED_BYTES + meta_len]
        meta = Meta.decode(meta_bytes)
        payload = plain[INNER_FIXED_BYTES + meta_len :]
        return Inner(sender, signature, meta, meta_bytes), payload

    def verify_sender(self, inner: Inner, sender: PublicIdentity) -> None:
        """Check the sender's signature over recipient, expiry, E and metadata."""
        if sender.node_id != inner.sender:
            raise BundleError("sender key does not match the sender id")
        message = signed_message(
            self.clear.header.recipient,
            self.clear.header.expiry,
            self.clear.ephemeral_public,
            inner.meta_bytes,
        )
        sender.verify(message, inner.signature, error=BundleError)

    def open(self, index: int, sealed: bytes) -> bytes:
        return sealing.open_chunk(
            self._key, index, sealed, final=index == self.chunk_count - 1, aad=b""
        )
