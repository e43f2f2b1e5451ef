"""Onion packet vectors (tests/vectors/onions.json), checked both ways and from the spec alone.

Encode: the vector's inputs (identities, hops, ephemeral secret, filler,
payload) are sealed again with core/onion.py and compared byte for byte.
Decode: every hop peels the stored packet it receives and must get the
stored slot and the stored next packet. The spec tests then do both again
with raw primitives only (PyNaCl's X25519 and BLAKE2b, cryptography's
ChaCha20 and Poly1305, cbor2), following docs/protocol.md section 20 and
nothing else: if they agree with the vectors, the section is complete.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import cbor2
import nacl.encoding
import nacl.hash
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

from rise_dtn.core.bundle import MAC_BYTES, SLOT_BYTES, parse_clear
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import Identity
from rise_dtn.core.onion import (
    Hop,
    OnionPeeler,
    OnionSealer,
    SlotKind,
    commitment_for,
    padded_payload_bytes,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


@cache
def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


ONIONS = load("onions.json")
VECTOR_NAMES = [vector["name"] for vector in ONIONS["onions"]]
HOP_CASES = [
    (vector, position) for vector in ONIONS["onions"] for position in range(len(vector["packets"]))
]
HOP_IDS = [f"{vector['name']}-{vector['route'][position]}" for vector, position in HOP_CASES]


def people() -> dict[str, Identity]:
    return {
        who: Identity.from_seeds(
            bytes.fromhex(record["signing_seed_hex"]), bytes.fromhex(record["exchange_secret_hex"])
        )
        for who, record in ONIONS["identities"].items()
    }


def hops_of(vector: dict[str, Any]) -> list[Hop]:
    who = people()
    return [
        Hop(
            who[hop["node"]].node_id,
            who[hop["node"]].public.exchange_public,
            SlotKind(hop["kind"]),
            hop["expiry"],
            hop["priority"],
            bytes.fromhex(hop["commitment_hex"]),
        )
        for hop in vector["hops"]
    ]


def padded_payload(vector: dict[str, Any]) -> bytes:
    payload = bytes.fromhex(vector["payload_hex"])
    return payload + bytes(vector["padded_payload_bytes"] - len(payload))


def peel(identity: Identity, packet: bytes) -> tuple[OnionPeeler, bytes]:
    """What a relay does with one packet (node/toss/relay.py), minus the spool."""
    clear = parse_clear(packet)
    if len(packet) != clear.total_bytes:
        raise BundleError("packet size does not match its header")
    routing_end = clear.size + clear.slots * SLOT_BYTES + MAC_BYTES
    peeler = OnionPeeler(identity, clear, packet[clear.size : routing_end])
    peeled = peeler.transform(packet[routing_end:])
    peeler.check_payload()
    return peeler, peeled


# -- with the rise-dtn code ---------------------------------------------------------------


@pytest.mark.parametrize("vector", ONIONS["onions"], ids=VECTOR_NAMES)
def test_onion_encodes(vector: dict[str, Any]) -> None:
    sealer = OnionSealer(
        hops_of(vector),
        slots=vector["slots"],
        payload_bytes=padded_payload_bytes(vector["payload_bytes"]),
        ephemeral_secret=bytes.fromhex(vector["ephemeral_secret_hex"]),
        filler=bytes.fromhex(vector["filler_hex"]),
    )
    assert sealer.body_length == vector["packets"][0]["body_length"]
    body = sealer.transform(padded_payload(vector))
    packet = sealer.clear() + body
    assert packet.hex() == vector["packets"][0]["packet_hex"]
    assert sealer.bundle_id.raw.hex() == vector["packets"][0]["bundle_id_hex"]
    assert sealer.first_expiry == vector["hops"][0]["expiry"]


@pytest.mark.parametrize(("vector", "position"), HOP_CASES, ids=HOP_IDS)
def test_onion_decodes(vector: dict[str, Any], position: int) -> None:
    record = vector["packets"][position]
    identity = people()[record["node"]]
    packet = bytes.fromhex(record["packet_hex"])
    peeler, peeled = peel(identity, packet)
    clear = peeler.clear
    assert len(packet) == record["packet_bytes"]
    assert clear.header.recipient == identity.node_id
    assert (clear.header.expiry, clear.header.priority) == (record["expiry"], record["priority"])
    assert (clear.header.body_length, clear.slots) == (record["body_length"], vector["slots"])
    assert clear.ephemeral_public.hex() == record["alpha_hex"]
    assert peeler.bundle_id.raw.hex() == record["bundle_id_hex"]
    assert str(peeler.bundle_id) == record["bundle_id"]
    slot, expected = peeler.slot, record["slot"]
    assert slot.encode().hex() == record["slot_hex"]
    assert slot.kind == expected["kind"] and slot.kind.name == expected["kind_name"]
    assert slot.kind == vector["hops"][position]["kind"]
    assert (slot.next_hop.raw.hex() if slot.next_hop else None) == expected["next_hop_hex"]
    assert (slot.next_expiry, slot.next_priority) == (
        expected["next_expiry"],
        expected["next_priority"],
    )
    assert slot.payload_tag.hex() == expected["payload_tag_hex"]
    assert (
        slot.commitment.hex()
        == expected["commitment_hex"]
        == vector["hops"][position]["commitment_hex"]
    )
    assert slot.next_mac.hex() == expected["next_mac_hex"]
    if position + 1 < len(vector["packets"]):
        following = vector["packets"][position + 1]
        assert (peeler.next_clear() + peeled).hex() == following["packet_hex"]
        assert peeler.next_bundle_id.raw.hex() == following["bundle_id_hex"]
        assert slot.next_hop == people()[following["node"]].node_id
        assert (slot.next_expiry, slot.next_priority) == (
            following["expiry"],
            following["priority"],
        )
        assert slot.next_mac.hex() == following["mac_hex"]
    else:
        assert slot.next_hop is None
        assert peeled.hex() == vector["final_payload_hex"]
        assert peeled == padded_payload(vector)


@pytest.mark.parametrize("vector", ONIONS["onions"], ids=VECTOR_NAMES)
def test_a_replayed_packet_peels_the_same(vector: dict[str, Any]) -> None:
    """Peeling is deterministic: the same packet gives the same next packet and ids."""
    record = vector["packets"][0]
    identity = people()[record["node"]]
    packet = bytes.fromhex(record["packet_hex"])
    first, second = peel(identity, packet), peel(identity, packet)
    assert first[1] == second[1]
    assert first[0].next_clear() == second[0].next_clear()
    assert first[0].bundle_id == second[0].bundle_id
    ids = [hop["bundle_id"] for hop in vector["packets"]]
    assert len(set(ids)) == len(ids)
    assert len({hop["packet_bytes"] for hop in vector["packets"]}) == 1


def test_the_destination_gets_the_direct_bundle_then_zeros() -> None:
    vector = ONIONS["onions"][0]
    direct = next(b for b in load("bundles.json")["bundles"] if b["name"] == "message-100")
    final = bytes.fromhex(vector["final_payload_hex"])
    assert final[: direct["bundle_bytes"]].hex() == direct["bundle_hex"] == vector["payload_hex"]
    assert final[direct["bundle_bytes"] :] == bytes(512 - 260)
    inner = parse_clear(final)
    assert not inner.onion and inner.total_bytes == 260
    assert inner.header.recipient == people()["bob"].node_id


def test_the_cancel_carries_the_tokens_the_data_packet_committed_to() -> None:
    data, cancel = ONIONS["onions"]
    assert cancel["route"] == data["route"][:-1]
    for relay, (held, cancelling) in enumerate(
        zip(data["packets"], cancel["packets"], strict=False)
    ):
        token = bytes.fromhex(cancelling["slot"]["commitment_hex"])
        assert token.hex() == data["cancel_tokens_hex"][cancel["route"][relay]]
        assert commitment_for(token).hex() == held["slot"]["commitment_hex"]
    # Nothing else ties the two packets together on any hop.
    assert not {hop["bundle_id"] for hop in data["packets"]} & {
        hop["bundle_id"] for hop in cancel["packets"]
    }


def test_the_size_arithmetic_of_section_20() -> None:
    """A 100-byte message: 260 bytes direct; over 2 relays 64 + 3 * 74 + 16 + 512 = 814."""
    vector = ONIONS["onions"][0]
    assert vector["direct_bundle_bytes"] == 260
    clear_bytes = len(bytes.fromhex(vector["packets"][0]["hop_header_hex"])) + 4 + 32
    assert clear_bytes == 64
    assert vector["packets"][0]["packet_bytes"] == clear_bytes + 3 * 74 + 16 + 512 == 814


@pytest.mark.parametrize("vector", ONIONS["invalid"], ids=lambda vector: vector["name"])
def test_invalid_onions_are_refused(vector: dict[str, str]) -> None:
    with pytest.raises(BundleError, match=vector["error"]):
        peel(people()[vector["node"]], bytes.fromhex(vector["packet_hex"]))


# -- from docs/protocol.md section 20 alone ----------------------------------------------

TERMINAL_KINDS = (1, 3)  # DELIVER, CANCEL_END


def blake2b(data: bytes, *, size: int, person: bytes = b"", key: bytes = b"") -> bytes:
    return nacl.hash.blake2b(
        data, digest_size=size, person=person, key=key, encoder=nacl.encoding.RawEncoder
    )


def derive(secret: bytes, person: bytes) -> bytes:
    return blake2b(secret, size=32, person=person)


def chacha20(key: bytes, data: bytes) -> bytes:
    """data XOR the ChaCha20 key stream (RFC 8439, zero nonce, block counter from 0)."""
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(data)


def xor(left: bytes, right: bytes) -> bytes:
    assert len(left) == len(right)
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def spec_keys(shared: bytes) -> dict[str, bytes]:
    return {
        "header": derive(shared, b"rise-onion-hdr"),
        "mac": derive(shared, b"rise-onion-mac"),
        "payload": derive(shared, b"rise-onion-pay"),
        "tag": derive(shared, b"rise-onion-tag"),
    }


def spec_header(
    recipient: bytes, expiry: int, priority: int, body_length: int, slots: int
) -> bytes:
    fields = [recipient, expiry, priority, body_length, slots]
    return b"RSB\x02" + cbor2.dumps(fields, canonical=True)


def spec_slot(  # noqa: PLR0917 - the seven fields of section 20.2, in order
    kind: int,
    next_hop: bytes,
    next_expiry: int,
    next_priority: int,
    tag: bytes,
    commitment: bytes,
    next_mac: bytes,
) -> bytes:
    slot = (
        bytes([kind])
        + next_hop
        + next_expiry.to_bytes(8, "big")
        + bytes([next_priority])
        + tag
        + commitment
        + next_mac
    )
    assert len(slot) == 74
    return slot


def spec_process(exchange_secret: bytes, packet: bytes) -> tuple[dict[str, Any], bytes]:
    """One hop, by the spec: returns the opened slot and the next packet (or final payload)."""
    assert packet[:4] == b"RSB\x02"
    stream = io.BytesIO(packet[4:])
    recipient, expiry, priority, body_length, slots = cbor2.CBORDecoder(stream).decode()
    del recipient, expiry, priority  # this hop's own fields: covered by the MAC below
    alpha_at = 4 + stream.tell()
    alpha = packet[alpha_at : alpha_at + 32]
    beta = packet[alpha_at + 32 : alpha_at + 32 + 74 * slots]
    gamma = packet[alpha_at + 32 + 74 * slots : alpha_at + 32 + 74 * slots + 16]
    payload = packet[alpha_at + 32 + 74 * slots + 16 :]
    assert len(packet) == alpha_at + body_length
    shared = crypto_scalarmult(exchange_secret, alpha)
    assert shared != bytes(32)
    keys = spec_keys(shared)
    assert blake2b(packet[:alpha_at] + alpha + beta, size=16, key=keys["mac"]) == gamma
    opened = chacha20(keys["header"], beta + bytes(74))
    slot = opened[:74]
    fields = {
        "kind": slot[0],
        "next_hop": slot[1:17],
        "next_expiry": int.from_bytes(slot[17:25], "big"),
        "next_priority": slot[25],
        "payload_tag": slot[26:42],
        "commitment": slot[42:58],
        "next_mac": slot[58:74],
    }
    assert Poly1305.generate_tag(keys["tag"], payload) == fields["payload_tag"]
    peeled = chacha20(keys["payload"], payload)
    if fields["kind"] in TERMINAL_KINDS:
        return fields, peeled
    blinding = derive(alpha + shared, b"rise-onion-blind")
    next_alpha = crypto_scalarmult(blinding, alpha)
    header = spec_header(
        fields["next_hop"], fields["next_expiry"], fields["next_priority"], body_length, slots
    )
    return fields, header + next_alpha + opened[74:] + fields["next_mac"] + peeled


@pytest.mark.parametrize(("vector", "position"), HOP_CASES, ids=HOP_IDS)
def test_each_hop_from_the_spec_alone(vector: dict[str, Any], position: int) -> None:
    record = vector["packets"][position]
    identity = ONIONS["identities"][record["node"]]
    fields, result = spec_process(
        bytes.fromhex(identity["exchange_secret_hex"]), bytes.fromhex(record["packet_hex"])
    )
    assert fields["kind"] == record["slot"]["kind"]
    assert fields["commitment"].hex() == record["slot"]["commitment_hex"]
    if position + 1 < len(vector["packets"]):
        assert result.hex() == vector["packets"][position + 1]["packet_hex"]
        assert fields["next_hop"].hex() == record["slot"]["next_hop_hex"]
    else:
        assert result.hex() == vector["final_payload_hex"]


def spec_seal(vector: dict[str, Any]) -> bytes:
    """The sender, by the spec: the first hop's packet."""
    ids = ONIONS["identities"]
    hops = vector["hops"]
    count, slots = len(hops), vector["slots"]
    size = 74 * slots
    ephemeral = bytes.fromhex(vector["ephemeral_secret_hex"])
    # Blinding: alpha_0 = X25519(x, 9); each hop's secret takes all the scalars so far.
    alphas, secrets, scalars = [], [], [ephemeral]
    alpha = crypto_scalarmult_base(ephemeral)
    for hop in hops:
        shared = bytes.fromhex(ids[hop["node"]]["exchange_public_hex"])
        for scalar in scalars:
            shared = crypto_scalarmult(scalar, shared)
        alphas.append(alpha)
        secrets.append(shared)
        blinding = derive(alpha + shared, b"rise-onion-blind")
        scalars.append(blinding)
        alpha = crypto_scalarmult(blinding, alpha)
    keys = [spec_keys(shared) for shared in secrets]
    # Payload: the destination's layer first; each hop's tag is over what it receives.
    payload = padded_payload(vector)
    tags = [b""] * count
    for index in reversed(range(count)):
        payload = chacha20(keys[index]["payload"], payload)
        tags[index] = Poly1305.generate_tag(keys[index]["tag"], payload)
    body_length = 32 + size + 16 + len(payload)
    headers = [
        spec_header(
            bytes.fromhex(ids[hop["node"]]["node_id_hex"]),
            hop["expiry"],
            hop["priority"],
            body_length,
            slots,
        )
        for hop in hops
    ]
    streams = [chacha20(key["header"], bytes(size + 74)) for key in keys]
    filler = b""
    for index in range(1, count):
        filler = xor(filler + bytes(74), streams[index - 1][size - 74 * (index - 1) :])
    pad = bytes.fromhex(vector["filler_hex"])[: size - 74 * count]
    next_mac = bytes(16)
    beta = b""
    for index in reversed(range(count)):
        following = hops[index + 1] if index + 1 < count else None
        slot = spec_slot(
            hops[index]["kind"],
            bytes.fromhex(ids[following["node"]]["node_id_hex"]) if following else bytes(16),
            following["expiry"] if following else 0,
            following["priority"] if following else 0,
            tags[index],
            bytes.fromhex(hops[index]["commitment_hex"]),
            next_mac,
        )
        if following is None:
            plain = slot + pad
            beta = xor(plain, streams[index][: len(plain)]) + filler
        else:
            beta = xor(slot + beta[: size - 74], streams[index][:size])
        next_mac = blake2b(headers[index] + alphas[index] + beta, size=16, key=keys[index]["mac"])
    return headers[0] + alphas[0] + beta + next_mac + payload


@pytest.mark.parametrize("vector", ONIONS["onions"], ids=VECTOR_NAMES)
def test_the_sender_from_the_spec_alone(vector: dict[str, Any]) -> None:
    assert spec_seal(vector).hex() == vector["packets"][0]["packet_hex"]


@pytest.mark.parametrize(("vector", "position"), HOP_CASES, ids=HOP_IDS)
def test_intermediate_values_from_the_spec(vector: dict[str, Any], position: int) -> None:
    record = vector["packets"][position]
    secret_key = bytes.fromhex(ONIONS["identities"][record["node"]]["exchange_secret_hex"])
    alpha = bytes.fromhex(record["alpha_hex"])
    shared = crypto_scalarmult(secret_key, alpha)
    assert shared.hex() == record["shared_secret_hex"]
    keys = spec_keys(shared)
    assert keys["header"].hex() == record["header_key_hex"]
    assert keys["mac"].hex() == record["mac_key_hex"]
    assert keys["payload"].hex() == record["payload_key_hex"]
    assert keys["tag"].hex() == record["tag_key_hex"]
    assert derive(alpha + shared, b"rise-onion-blind").hex() == record["blinding_hex"]
    bundle_id = blake2b(alpha, size=16, person=b"rise-bundle-id-1")
    assert bundle_id.hex() == record["bundle_id_hex"]
    if "next_alpha_hex" in record:
        blinding = bytes.fromhex(record["blinding_hex"])
        assert crypto_scalarmult(blinding, alpha).hex() == record["next_alpha_hex"]
