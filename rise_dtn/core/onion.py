"""Onion packets: a Sphinx-style routing header and a length-preserving payload.

A relay learns only its previous hop (who handed it the packet) and its next
hop (from its routing slot). Every hop sees a packet of the same size: the
routing header has a fixed number of slots and each hop shifts its own slot
out and a pseudo-random filler in (Danezis and Goldberg, "Sphinx", 2009);
the payload is XORed with a per-hop ChaCha20 key stream, so its size never
changes and it streams in constant memory. A Poly1305 tag per hop over the
payload that hop receives stops a relay from tagging a payload for a later
accomplice: the next honest hop refuses it. Byte layout and the derivation of
every key: docs/protocol.md section 20.

Pure logic: callers feed bytes, the ephemeral secret and the random filler;
this module never reads files, the clock or the random generator.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305

from rise_dtn.core.bundle import (
    MAC_BYTES,
    MAX_EXPIRY,
    MAX_ROUTE_SLOTS,
    SLOT_BYTES,
    ClearPart,
    HopHeader,
    bundle_id_for,
    onion_header_bytes,
)
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import (
    NODE_ID_BYTES,
    BundleId,
    Identity,
    NodeId,
    exchange_public_for,
    x25519,
)

TAG_BYTES = 16  # Poly1305
COMMITMENT_BYTES = 16
EXPIRY_BYTES = 8
# Smallest payload on the wire: every message, ack-sized map or cancel looks
# the same. 512 bytes holds a 250-byte message with its end-to-end layer.
MIN_PAYLOAD_BYTES = 512
PERSON_BLIND = b"rise-onion-blind"
PERSON_HEADER = b"rise-onion-hdr"
PERSON_MAC = b"rise-onion-mac"
PERSON_PAYLOAD = b"rise-onion-pay"
PERSON_TAG = b"rise-onion-tag"
PERSON_CANCEL = b"rise-cancel"
ZERO_NONCE = bytes(16)  # every key below is used for one stream only


class SlotKind(enum.IntEnum):
    """What a hop does with the packet (its routing slot says)."""

    FORWARD = 0  # peel and queue for the next hop
    DELIVER = 1  # this node is the destination: the payload is a direct bundle
    CANCEL_FORWARD = 2  # drop the held copy matching the token, else pass the cancel on
    CANCEL_END = 3  # as CANCEL_FORWARD, and the cancel ends here


@dataclasses.dataclass(frozen=True, slots=True)
class Hop:
    """What the sender decides for one node on the route."""

    node_id: NodeId
    exchange_public: bytes
    kind: SlotKind
    expiry: int  # the cleartext expiry of the packet this node receives
    priority: int
    commitment: bytes  # cancel commitment (data) or cancel token (cancels)


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """A decrypted routing slot."""

    kind: SlotKind
    next_hop: NodeId | None
    next_expiry: int
    next_priority: int
    payload_tag: bytes
    commitment: bytes
    next_mac: bytes

    def encode(self) -> bytes:
        next_hop = self.next_hop.raw if self.next_hop is not None else bytes(NODE_ID_BYTES)
        return (
            bytes([self.kind])
            + next_hop
            + self.next_expiry.to_bytes(EXPIRY_BYTES, "big")
            + bytes([self.next_priority])
            + self.payload_tag
            + self.commitment
            + self.next_mac
        )

    @classmethod
    def decode(cls, data: bytes) -> Slot:
        try:
            kind = SlotKind(data[0])
        except ValueError:
            raise BundleError(f"onion packet has an unknown slot kind {data[0]}") from None
        position = 1
        next_hop_raw = data[position : position + NODE_ID_BYTES]
        position += NODE_ID_BYTES
        next_expiry = int.from_bytes(data[position : position + EXPIRY_BYTES], "big")
        position += EXPIRY_BYTES
        next_priority = data[position]
        position += 1
        tag = data[position : position + TAG_BYTES]
        position += TAG_BYTES
        commitment = data[position : position + COMMITMENT_BYTES]
        position += COMMITMENT_BYTES
        next_mac = data[position : position + MAC_BYTES]
        terminal = kind in (SlotKind.DELIVER, SlotKind.CANCEL_END)
        if next_expiry > MAX_EXPIRY:
            raise BundleError("onion slot has an out-of-range expiry")
        next_hop = None if terminal else NodeId(next_hop_raw)
        return cls(kind, next_hop, next_expiry, next_priority, tag, commitment, next_mac)


@dataclasses.dataclass(frozen=True, slots=True)
class _HopKeys:
    header: bytes
    mac: bytes
    payload: bytes
    tag: bytes


def _derive(secret: bytes, person: bytes) -> bytes:
    # hashlib's BLAKE2b: libsodium's bit for bit, without PyNaCl's per-call checks.
    return hashlib.blake2b(secret, digest_size=32, person=person).digest()


def _hop_keys(shared: bytes) -> _HopKeys:
    return _HopKeys(
        _derive(shared, PERSON_HEADER),
        _derive(shared, PERSON_MAC),
        _derive(shared, PERSON_PAYLOAD),
        _derive(shared, PERSON_TAG),
    )


def _blinding(alpha: bytes, shared: bytes) -> bytes:
    return _derive(alpha + shared, PERSON_BLIND)


def _stream(key: bytes, size: int) -> bytes:
    return Cipher(algorithms.ChaCha20(key, ZERO_NONCE), mode=None).encryptor().update(bytes(size))


def _xor(left: bytes, right: bytes) -> bytes:
    size = len(left)
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(size, "big")


def _mac(key: bytes, header: HopHeader, alpha: bytes, beta: bytes) -> bytes:
    """gamma: binds the cleartext hop header, alpha and the routing slots."""
    return hashlib.blake2b(header.encode() + alpha + beta, digest_size=MAC_BYTES, key=key).digest()


def commitment_for(token: bytes) -> bytes:
    """What a relay stores for a copy: the hash of the cancel token that may drop it."""
    return hashlib.blake2b(token, digest_size=COMMITMENT_BYTES, person=PERSON_CANCEL).digest()


def padded_payload_bytes(inner_bytes: int) -> int:
    """The bucket for a payload: Padmé padding (Nikitin et al., PETS 2019) above a floor.

    Padmé leaves only O(log log n) bits of the size visible and costs at most
    12 % (protocol.md section 20.5).
    """
    size = max(inner_bytes, MIN_PAYLOAD_BYTES)
    exponent = size.bit_length() - 1
    significant = exponent.bit_length()
    mask = (1 << (exponent - significant)) - 1
    return (size + mask) & ~mask


class _PayloadLayer:
    """One hop's key stream and tag over the payload, fed block by block."""

    def __init__(self, keys: _HopKeys) -> None:
        self._stream = Cipher(algorithms.ChaCha20(keys.payload, ZERO_NONCE), mode=None).encryptor()
        self._tag = Poly1305(keys.tag)

    def xor(self, block: bytes) -> bytes:
        return self._stream.update(block)

    def absorb(self, block: bytes) -> None:
        self._tag.update(block)

    def tag(self) -> bytes:
        return self._tag.finalize()


class OnionSealer:
    """Builds one onion packet: feed the payload through `transform`, then ask for `clear()`.

    The header depends on every hop's payload tag, so it is known only once
    the whole payload has gone through; its size is known at once, so the
    caller reserves `clear_bytes` and writes the header last.
    """

    def __init__(
        self,
        hops: Sequence[Hop],
        *,
        slots: int,
        payload_bytes: int,
        ephemeral_secret: bytes,
        filler: bytes,
    ) -> None:
        if not 1 <= len(hops) <= slots <= MAX_ROUTE_SLOTS:
            raise ValueError("a route has 1 to `slots` hops, and at most 9 slots")
        if len(filler) != slots * SLOT_BYTES:
            raise ValueError("filler must be slots * SLOT_BYTES random bytes")
        self._hops = list(hops)
        self._slots = slots
        self._payload_bytes = payload_bytes
        self._filler = filler
        self._alphas: list[bytes] = []
        self._keys: list[_HopKeys] = []
        scalars: list[bytes] = [ephemeral_secret]
        alpha = exchange_public_for(ephemeral_secret)
        for hop in self._hops:
            shared = hop.exchange_public
            for scalar in scalars:
                shared = x25519(scalar, shared)
            self._alphas.append(alpha)
            self._keys.append(_hop_keys(shared))
            blind = _blinding(alpha, shared)
            scalars.append(blind)
            alpha = x25519(blind, alpha)
        self._layers = [_PayloadLayer(keys) for keys in self._keys]
        self._fed = 0

    @property
    def body_length(self) -> int:
        return onion_header_bytes(self._slots) + self._payload_bytes

    @property
    def clear_bytes(self) -> int:
        return len(self._header(0).encode()) + onion_header_bytes(self._slots)

    @property
    def first_expiry(self) -> int:
        return self._hops[0].expiry

    @property
    def bundle_id(self) -> BundleId:
        """The id of the packet as the first hop receives it."""
        return bundle_id_for(self._alphas[0])

    def _header(self, index: int) -> HopHeader:
        hop = self._hops[index]
        return HopHeader(hop.node_id, hop.expiry, hop.priority, self.body_length, self._slots)

    def transform(self, block: bytes) -> bytes:
        """Turn the next block of the destination's payload into the first hop's."""
        self._fed += len(block)
        if self._fed > self._payload_bytes:
            raise ValueError("more payload than announced")
        for layer in reversed(self._layers):
            block = layer.xor(block)
            layer.absorb(block)
        return block

    def clear(self) -> bytes:
        """Magic, hop header, alpha, routing slots and MAC of the first hop's packet."""
        if self._fed != self._payload_bytes:
            raise ValueError("the payload is not complete")
        tags = [layer.tag() for layer in self._layers]
        size = self._slots * SLOT_BYTES
        streams = [_stream(keys.header, size + SLOT_BYTES) for keys in self._keys]
        filler = b""
        for index in range(1, len(self._hops)):
            window = streams[index - 1][size - (index - 1) * SLOT_BYTES :]
            filler = _xor(filler + bytes(SLOT_BYTES), window)
        last = len(self._hops) - 1
        beta = b""
        next_mac = bytes(MAC_BYTES)
        for index in range(last, -1, -1):
            hop = self._hops[index]
            following = self._hops[index + 1] if index < last else None
            slot = Slot(
                hop.kind,
                following.node_id if following else None,
                following.expiry if following else 0,
                following.priority if following else 0,
                tags[index],
                hop.commitment,
                next_mac,
            ).encode()
            if index == last:
                plain = slot + self._filler[: size - SLOT_BYTES - len(filler)]
                beta = _xor(plain, streams[index][: len(plain)]) + filler
            else:
                beta = _xor(slot + beta[: size - SLOT_BYTES], streams[index][:size])
            next_mac = _mac(self._keys[index].mac, self._header(index), self._alphas[index], beta)
        return self._header(0).encode() + self._alphas[0] + beta + next_mac


class OnionPeeler:
    """Processes one onion packet addressed to `identity`: check, read the slot, re-wrap.

    Raises BundleError (one line) for a packet that is not for us, fails its
    MAC or has a malformed slot. `transform` then turns the payload as it came
    into the payload for the next hop; `check_payload` must pass before the
    result is used.
    """

    def __init__(self, identity: Identity, clear: ClearPart, routing: bytes) -> None:
        if not clear.onion:
            raise BundleError("not an onion packet")
        header = clear.header
        if header.recipient != identity.node_id:
            raise BundleError(f"onion packet is for another node ({header.recipient})")
        size = clear.slots * SLOT_BYTES
        if len(routing) != size + MAC_BYTES:
            raise BundleError("onion packet is truncated (routing header)")
        beta, gamma = routing[:size], routing[size:]
        alpha = clear.ephemeral_public
        shared = identity.exchange(alpha)
        keys = _hop_keys(shared)
        if not hmac.compare_digest(_mac(keys.mac, header, alpha, beta), gamma):
            raise BundleError("onion packet is corrupt or tampered (routing header MAC)")
        opened = _xor(beta + bytes(SLOT_BYTES), _stream(keys.header, size + SLOT_BYTES))
        self.slot = Slot.decode(opened[:SLOT_BYTES])
        self.clear = clear
        self._next_beta = opened[SLOT_BYTES:]
        self._next_alpha = x25519(_blinding(alpha, shared), alpha)
        self._layer = _PayloadLayer(keys)
        self.payload_bytes = header.body_length - onion_header_bytes(clear.slots)

    @property
    def bundle_id(self) -> BundleId:
        return self.clear.bundle_id

    @property
    def next_bundle_id(self) -> BundleId:
        return bundle_id_for(self._next_alpha)

    def next_clear(self) -> bytes:
        """The clear part of the packet for the next hop (FORWARD and CANCEL_FORWARD)."""
        slot = self.slot
        if slot.next_hop is None:
            raise ValueError("this packet ends here")
        header = HopHeader(
            slot.next_hop,
            slot.next_expiry,
            slot.next_priority,
            self.clear.header.body_length,
            self.clear.slots,
        )
        return header.encode() + self._next_alpha + self._next_beta + slot.next_mac

    def transform(self, block: bytes) -> bytes:
        self._layer.absorb(block)
        return self._layer.xor(block)

    def check_payload(self) -> None:
        """Raise BundleError unless the payload is exactly what the sender tagged."""
        if not hmac.compare_digest(self._layer.tag(), self.slot.payload_tag):
            raise BundleError("onion payload is corrupt or tampered (payload tag)")
