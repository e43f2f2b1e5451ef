"""Link encryption for live carriers: a Noise IK handshake keyed by the nodes' own keys.

Noise_IK_25519_ChaChaPoly_BLAKE2b through the maintained `noiseprotocol`
package (never hand-rolled). The caller (initiator) knows the neighbour's
X25519 key from its card; the answering node learns the caller's key from
the first message and refuses it, before any bundle moves, unless it is a
peer (default deny). Both statics are the nodes' X25519 exchange keys, so a
card is all either side needs. Pure: takes and returns bytes, no I/O
(docs/protocol.md, "Session").

Each side's handshake payload says which session features it takes
(FEATURES): encrypted and authenticated with the handshake, and ignored by
a node that predates it, so a feature is used only between two nodes that
both announced it.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import (
    NoiseHandshakeError,
    NoiseInvalidMessage,
    NoiseMaxNonceError,
    NoiseValidationError,
    NoiseValueError,
)

from rise_dtn.core.errors import PeerError
from rise_dtn.core.identity import Identity

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2b"
PROLOGUE = b"rise-dtn session v1"
MAX_MESSAGE_BYTES = 65535  # the Noise limit
TAG_BYTES = 16
MAX_PLAINTEXT_BYTES = MAX_MESSAGE_BYTES - TAG_BYTES
# Session features a node takes, one bit each, in its handshake payload.
FEATURE_PUSH = 0x01  # PUSH frames: a small bundle offered with its bytes (section 17)
# Short PUSH frames: a pushed bundle for the receiver itself without the bytes it knows
# (section 17.5); taken together with FEATURE_PUSH.
FEATURE_SHORT_PUSH = 0x02
FEATURES = bytes([FEATURE_PUSH | FEATURE_SHORT_PUSH])
_NOISE_ERRORS = (
    InvalidTag,
    NoiseHandshakeError,
    NoiseInvalidMessage,
    NoiseMaxNonceError,
    NoiseValidationError,
    NoiseValueError,
    ValueError,
)


class Cipher:
    """The transport phase: each call seals or opens one Noise message, in order."""

    def __init__(self, connection: NoiseConnection) -> None:
        self._connection = connection

    def encrypt(self, plaintext: bytes) -> bytes:
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise ValueError("a Noise message carries at most 65,519 bytes")
        return bytes(self._connection.encrypt(plaintext))

    def decrypt(self, message: bytes) -> bytes:
        try:
            return bytes(self._connection.decrypt(message))
        except _NOISE_ERRORS:
            raise PeerError(
                "link message fails authentication (tampered or out of order)"
            ) from None


def features_of(payload: bytes) -> int:
    """The feature bits of a peer's handshake payload: its first byte; an empty payload
    (a node that predates features) takes none, and later bytes are for later features."""
    return payload[0] if payload else 0


def takes_short_push(features: int) -> bool:
    """A peer with these feature bits takes short pushes: it announced them and PUSH."""
    both = FEATURE_PUSH | FEATURE_SHORT_PUSH
    return features & both == both


def _connection(identity: Identity) -> NoiseConnection:
    connection = NoiseConnection.from_name(PROTOCOL_NAME)
    connection.set_keypair_from_private_bytes(Keypair.STATIC, identity.exchange_secret)
    connection.set_prologue(PROLOGUE)
    return connection


class Initiator:
    """The calling side: knows whom it calls."""

    def __init__(self, identity: Identity, responder_exchange_public: bytes) -> None:
        self._connection = _connection(identity)
        self._connection.set_as_initiator()
        self._connection.set_keypair_from_public_bytes(
            Keypair.REMOTE_STATIC, responder_exchange_public
        )
        self._connection.start_handshake()
        self.peer_features = 0  # known once `finish` has read the reply

    def first_message(self) -> bytes:
        return bytes(self._connection.write_message(FEATURES))

    def finish(self, reply: bytes) -> Cipher:
        try:
            payload = self._connection.read_message(reply)
        except _NOISE_ERRORS:
            raise PeerError("handshake failed: the node did not prove its key") from None
        self.peer_features = features_of(bytes(payload))
        return Cipher(self._connection)


class Responder:
    """The answering side: learns who calls, and decides whether to answer."""

    def __init__(self, identity: Identity) -> None:
        self._connection = _connection(identity)
        self._connection.set_as_responder()
        self._connection.start_handshake()
        self.peer_features = 0  # known once `read_first` has read the first message

    def read_first(self, message: bytes) -> bytes:
        """Check the caller's first message; return the caller's X25519 key."""
        try:
            payload = self._connection.read_message(message)
            remote = self._connection.noise_protocol.handshake_state.rs
        except (*_NOISE_ERRORS, AttributeError):
            raise PeerError("handshake failed: malformed or tampered first message") from None
        self.peer_features = features_of(bytes(payload))
        return bytes(remote.public_bytes)

    def accept(self) -> tuple[bytes, Cipher]:
        """Answer a caller we trust: the reply to send, and the transport cipher."""
        return bytes(self._connection.write_message(FEATURES)), Cipher(self._connection)
