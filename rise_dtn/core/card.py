"""Contact cards: a node's public keys, name and addresses, self-signed.

Cards travel out of band (file, mail, QR). Decoding one is decoding untrusted
input: every failure is a `PeerError` with a one-line reason.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

from rise_dtn.core.encoding import canonical, strict_loads
from rise_dtn.core.errors import PeerError
from rise_dtn.core.identity import Identity, NodeId, PublicIdentity, check_public_keys

CARD_MAGIC = "rise-dtn card"
CARD_VERSION = 1
CARD_SIGNATURE_CONTEXT = b"rise-dtn card signature v1\x00"
ARMOR_BEGIN = "-----BEGIN RISE CARD-----"
ARMOR_END = "-----END RISE CARD-----"
# A card is a few hundred bytes; 8 KiB leaves room for many addresses while
# keeping a hostile card from costing memory.
MAX_CARD_BYTES = 8192
MAX_NAME_CHARS = 64
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str, *, error: type[Exception]) -> str:
    """A node name or local alias: letters, digits, '.', '_', '-'; safe as a path part."""
    # fullmatch: with match(), "$" also matches before a trailing newline ("alice\n").
    if not NAME_PATTERN.fullmatch(name) or name in {".", ".."}:
        raise error(
            f"invalid name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


MAX_CHECKED_CARDS = 4096  # remembered by Card.from_bytes; a few hundred KiB at most
_CHECKED: dict[bytes, Card] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class Card:
    """A verified contact card."""

    name: str
    public: PublicIdentity
    addresses: tuple[tuple[str, str], ...]  # (carrier, address), e.g. ("tcp", "host:5454")
    created: int  # seconds since the Unix epoch
    signature: bytes

    @property
    def node_id(self) -> NodeId:
        return self.public.node_id

    @staticmethod
    def signed_part(
        name: str, public: PublicIdentity, addresses: tuple[tuple[str, str], ...], created: int
    ) -> list[object]:
        return [
            CARD_MAGIC,
            CARD_VERSION,
            name,
            public.signing_public,
            public.exchange_public,
            [list(pair) for pair in addresses],
            created,
        ]

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        name: str,
        addresses: tuple[tuple[str, str], ...] = (),
        now: int,
    ) -> Card:
        public = identity.public
        body = canonical(cls.signed_part(name, public, addresses, now))
        signature = identity.sign(CARD_SIGNATURE_CONTEXT + body)
        return cls(name, public, addresses, now, signature)

    def to_bytes(self) -> bytes:
        part = self.signed_part(self.name, self.public, self.addresses, self.created)
        return canonical([*part, self.signature])

    @classmethod
    def from_bytes(cls, data: bytes) -> Card:
        """The card these bytes are, checked (PeerError if they are not one).

        Cards checked once are remembered by their exact bytes: a check is
        an Ed25519 verification, and every route drawn and every map and
        receipt handled read the same few cards again. The bytes are all a
        card is, so the same bytes are the same card.
        """
        if type(data) is bytes and (known := _CHECKED.get(data)) is not None:
            return known
        card = cls._check(data)
        if type(data) is bytes:
            if len(_CHECKED) >= MAX_CHECKED_CARDS:
                _CHECKED.clear()
            _CHECKED[data] = card
        return card

    @classmethod
    def _check(cls, data: bytes) -> Card:
        value = strict_loads(data, max_bytes=MAX_CARD_BYTES, error=PeerError, what="card")
        if not isinstance(value, list) or len(value) != 8 or value[0] != CARD_MAGIC:
            raise PeerError("not a rise-dtn card")
        if value[1] != CARD_VERSION or isinstance(value[1], bool):
            raise PeerError(f"unsupported card version {value[1]!r}")
        _magic, _version, name, signing, exchange, addresses, created, signature = value
        if (
            not isinstance(name, str)
            or not isinstance(created, int)
            or isinstance(created, bool)
            or created < 0
        ):
            raise PeerError("card has malformed fields")
        check_name(name, error=PeerError)
        if not isinstance(signing, bytes) or not isinstance(exchange, bytes):
            raise PeerError("card has malformed public keys")
        check_public_keys(signing, exchange)
        pairs = _addresses(addresses)
        if not isinstance(signature, bytes):
            raise PeerError("card has a malformed signature")
        public = PublicIdentity(signing, exchange)
        body = canonical(cls.signed_part(name, public, pairs, created))
        public.verify(CARD_SIGNATURE_CONTEXT + body, signature, error=PeerError)
        return cls(name, public, pairs, created, signature)

    def armor(self) -> str:
        """The card as text: the form people paste into mail and files."""
        encoded = base64.b64encode(self.to_bytes()).decode("ascii")
        lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
        return (
            "\n".join(
                [ARMOR_BEGIN, f"Name: {self.name}", f"Node: {self.node_id}", "", *lines, ARMOR_END]
            )
            + "\n"
        )

    @classmethod
    def from_text(cls, text: str) -> Card:
        """Read an armored card (surrounding text, e.g. a mail, is ignored)."""
        start = text.find(ARMOR_BEGIN)
        end = text.find(ARMOR_END, start + 1)
        if start < 0 or end < 0:
            raise PeerError("no rise-dtn card found (missing BEGIN/END lines)")
        lines = text[start + len(ARMOR_BEGIN) : end].strip().splitlines()
        # Lines with a colon are informational headers; the card itself is signed.
        payload = "".join(line.strip() for line in lines if line.strip() and ":" not in line)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise PeerError("card armor is corrupt (bad base64)") from None
        card = cls.from_bytes(data)
        # The headers are not signed, but people compare them by eye: refuse any that lie.
        shown = {"Name": card.name, "Node": str(card.node_id)}
        for line in lines:
            key, colon, value = line.partition(":")
            if colon and shown.get(key.strip(), value.strip()) != value.strip():
                raise PeerError(f"card armor header {key.strip()!r} does not match the card")
        return card


def _addresses(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or len(value) > 32:
        raise PeerError("card has malformed addresses")
    pairs: list[tuple[str, str]] = []
    for pair in value:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(part, str) and 0 < len(part) <= 256 for part in pair)
        ):
            raise PeerError("card has malformed addresses")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)
