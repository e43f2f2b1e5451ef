"""Node identities: typed keys, node ids, and the secret key file format.

Only this module and `sealing.py` import PyNaCl. A node id is a hash of the
node's two public keys (docs/protocol.md, "Node ids"), so a card cannot claim
an id that its keys do not produce. Secret material never appears in a repr.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from typing import Self

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.signing
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

from rise_dtn.core.encoding import canonical, strict_loads
from rise_dtn.core.errors import BundleError, PeerError, UsageError

NODE_ID_BYTES = 16  # 128 bits: second preimages cost 2**128; see protocol.md
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NODE_ID_PERSON = b"rise-node-id-v1"  # BLAKE2b personalisation, 16 bytes max
KEYFILE_MAGIC = "rise-dtn secret key"
KEYFILE_VERSION = 1


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Digest16:
    """A 16-byte name derived by hashing, shown as 26 lower-case base32 letters."""

    raw: bytes
    # The base32 text, made once: ids are index keys, printed many times per packet.
    _text: list[str] = dataclasses.field(
        default_factory=list, init=False, compare=False, repr=False, hash=False
    )

    def __post_init__(self) -> None:
        if len(self.raw) != NODE_ID_BYTES:
            raise ValueError(f"a {type(self).__name__} is 16 bytes")

    def __str__(self) -> str:
        if not self._text:
            self._text.append(base64.b32encode(self.raw).decode("ascii").rstrip("=").lower())
        return self._text[0]

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the base32 form; raise UsageError if it is not one."""
        cleaned = text.strip().upper()
        try:
            raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
            return cls(raw)
        except (ValueError, binascii.Error):
            raise UsageError(f"not a valid id: {text!r}") from None


class NodeId(Digest16):
    """The canonical name of a node (hash of its public keys)."""

    __slots__ = ()


class BundleId(Digest16):
    """The name of one bundle on one hop (hash of its ephemeral key)."""

    __slots__ = ()


def node_id_for(signing_public: bytes, exchange_public: bytes) -> NodeId:
    """Derive the node id from the two public keys."""
    return NodeId(hash16(signing_public + exchange_public, person=NODE_ID_PERSON))


@dataclasses.dataclass(frozen=True, slots=True)
class PublicIdentity:
    """What everyone may know of a node: its keys, and the id they make."""

    signing_public: bytes
    exchange_public: bytes

    @property
    def node_id(self) -> NodeId:
        return node_id_for(self.signing_public, self.exchange_public)

    def verify(self, message: bytes, signature: bytes, *, error: type[Exception]) -> None:
        """Check an Ed25519 signature by this node, raising `error` if it fails."""
        try:
            nacl.signing.VerifyKey(self.signing_public).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
            raise error("bad signature") from None


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Identity:
    """A node's secret keys. repr() never shows them."""

    signing_seed: bytes
    exchange_secret: bytes
    _public: list[PublicIdentity] = dataclasses.field(
        default_factory=list, init=False, compare=False, repr=False
    )

    def __repr__(self) -> str:
        return f"Identity({self.node_id})"

    @classmethod
    def from_seeds(cls, signing_seed: bytes, exchange_secret: bytes) -> Identity:
        if len(signing_seed) != 32 or len(exchange_secret) != 32:
            raise ValueError("secret keys are 32 bytes")
        return cls(signing_seed, exchange_secret)

    @property
    def public(self) -> PublicIdentity:
        # Derived once: a relay asks for its own id for every packet it peels.
        if not self._public:
            signing_public = bytes(nacl.signing.SigningKey(self.signing_seed).verify_key)
            public = PublicIdentity(signing_public, crypto_scalarmult_base(self.exchange_secret))
            self._public.append(public)
        return self._public[0]

    @property
    def node_id(self) -> NodeId:
        return self.public.node_id

    def sign(self, message: bytes) -> bytes:
        return nacl.signing.SigningKey(self.signing_seed).sign(message).signature

    def exchange(self, their_public: bytes) -> bytes:
        """X25519 with our secret key; raise BundleError on a degenerate point."""
        return x25519(self.exchange_secret, their_public)

    def to_keyfile(self) -> bytes:
        """Serialise for the 0600 key file."""
        return canonical([KEYFILE_MAGIC, KEYFILE_VERSION, self.signing_seed, self.exchange_secret])

    @classmethod
    def from_keyfile(cls, data: bytes) -> Identity:
        value = strict_loads(data, max_bytes=256, error=UsageError, what="key file")
        if (
            not isinstance(value, list)
            or len(value) != 4
            or value[0] != KEYFILE_MAGIC
            or not isinstance(value[2], bytes)
            or not isinstance(value[3], bytes)
        ):
            raise UsageError("the key file is not a rise-dtn secret key")
        if value[1] != KEYFILE_VERSION or isinstance(value[1], bool):
            raise UsageError(f"unsupported key file version {value[1]!r}")
        try:
            return cls.from_seeds(value[2], value[3])
        except ValueError:
            raise UsageError("the key file is damaged") from None


def exchange_public_for(secret: bytes) -> bytes:
    """The X25519 public key of `secret` (used for ephemeral keys)."""
    return crypto_scalarmult_base(secret)


def hash16(data: bytes, *, person: bytes) -> bytes:
    """BLAKE2b-128 with a domain-separating personalisation.

    hashlib's BLAKE2b is the reference C code, bit for bit libsodium's, and
    a tenth of the call cost of PyNaCl's wrapper: ids are hashed per packet.
    """
    return hashlib.blake2b(data, digest_size=16, person=person).digest()


def x25519(secret: bytes, public: bytes) -> bytes:
    """X25519; a low-order public key (all-zero result) is refused."""
    # PyNaCl does not check lengths here: libsodium would read 32 bytes past a short key.
    if len(public) != PUBLIC_KEY_BYTES:
        raise BundleError("invalid public key in bundle")
    try:
        shared = crypto_scalarmult(secret, public)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.TypeError, ValueError):
        raise BundleError("invalid public key in bundle") from None
    if shared == bytes(32):
        raise BundleError("invalid public key in bundle")
    return shared


def check_public_keys(signing_public: bytes, exchange_public: bytes) -> None:
    """Raise PeerError unless both public keys have the right shape."""
    if len(signing_public) != PUBLIC_KEY_BYTES or len(exchange_public) != PUBLIC_KEY_BYTES:
        raise PeerError("card has malformed public keys")
    # A low-order X25519 key makes every shared secret zero: nobody could send to it.
    try:
        x25519(bytes([9]) * 32, exchange_public)
    except BundleError:
        raise PeerError("card has an invalid (low-order) exchange key") from None
