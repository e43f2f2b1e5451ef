"""Known-answer vectors (tests/vectors/*.json), checked both ways.

Decode: the golden bytes are parsed and opened and every field compared.
Encode: the same inputs (seeds, ephemeral secret, meta, expiry, priority) are
sealed again and compared byte for byte. A third check rebuilds the bundles
from docs/protocol.md alone, with cbor2, hashlib and raw libsodium calls, so
the spec and the code cannot drift apart unnoticed.

Bundles of a megabyte or more are described, not inlined (tests/vectors/
generate.py): their golden bytes are the ones whose SHA-256 the vector gives.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import cbor2
import nacl.signing
import pytest
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)

from rise_dtn.core import sealing
from rise_dtn.core.ack import Ack
from rise_dtn.core.bundle import (
    ClearPart,
    ContentKind,
    Meta,
    Opener,
    Sealer,
    parse_clear,
    signed_message,
)
from rise_dtn.core.card import Card
from rise_dtn.core.errors import BundleError, PeerError
from rise_dtn.core.identity import BundleId, Identity, NodeId, exchange_public_for, x25519

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


@cache
def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


def identity(record: dict[str, str]) -> Identity:
    return Identity.from_seeds(
        bytes.fromhex(record["signing_seed_hex"]), bytes.fromhex(record["exchange_secret_hex"])
    )


def people(name: str) -> dict[str, Identity]:
    return {who: identity(record) for who, record in load(name)["identities"].items()}


BUNDLES = load("bundles.json")["bundles"]
BUNDLE_NAMES = [vector["name"] for vector in BUNDLES]


def payload_of(vector: dict[str, Any]) -> bytes:
    if "payload_hex" in vector:
        return bytes.fromhex(vector["payload_hex"])
    return bytes.fromhex(vector["payload_repeat"]) * vector["payload_bytes"]


def meta_of(vector: dict[str, Any]) -> Meta:
    fields = vector["meta"]
    return Meta(ContentKind(fields["kind"]), fields["name"], fields["size"])


def seal_all(sealer: Sealer, payload: bytes) -> bytes:
    parts = [sealer.clear_part(len(payload))]
    first = sealer.first_payload_bytes
    pieces = [payload[:first]] + [
        payload[start : start + sealing.CHUNK_BYTES]
        for start in range(first, len(payload), sealing.CHUNK_BYTES)
    ]
    for number, piece in enumerate(pieces):
        parts.append(sealer.seal(piece, final=number == len(pieces) - 1))
    return b"".join(parts)


def reseal(vector: dict[str, Any]) -> bytes:
    """Seal the vector's inputs again with the rise-dtn code."""
    who = people("bundles.json")
    sealer = Sealer(
        sender=who[vector["sender"]],
        recipient=who[vector["recipient"]].public,
        meta=meta_of(vector),
        expiry=vector["expiry"],
        priority=vector["priority"],
        ephemeral_secret=bytes.fromhex(vector["ephemeral_secret_hex"]),
    )
    return seal_all(sealer, payload_of(vector))


def golden_bytes(vector: dict[str, Any]) -> bytes:
    """The golden bundle: inline hex, or the bytes whose SHA-256 the vector names."""
    if "bundle_hex" in vector:
        return bytes.fromhex(vector["bundle_hex"])
    data = reseal(vector)
    assert hashlib.sha256(data).hexdigest() == vector["bundle_sha256"]
    return data


def open_bundle(data: bytes, recipient: Identity, senders: dict[str, Identity]) -> dict[str, Any]:
    """What `rise-toss` does with a bundle file, minus the spool: return what it found."""
    clear = parse_clear(data[:4096])
    if len(data) != clear.total_bytes:
        raise BundleError(
            f"bundle is truncated or has trailing bytes ({len(data)} != {clear.total_bytes})"
        )
    opener = Opener(recipient, clear)
    position = clear.size + opener.first_chunk_bytes
    inner, first_payload = opener.open_first(data[clear.size : position])
    by_id = {person.node_id: (name, person) for name, person in senders.items()}
    if inner.sender not in by_id:
        raise BundleError("unknown sender")
    sender_name, sender = by_id[inner.sender]
    opener.verify_sender(inner, sender.public)
    parts = [first_payload]
    for index, size in opener.chunk_sizes():
        parts.append(opener.open(index, data[position : position + size]))
        position += size
    return {
        "clear": clear,
        "inner": inner,
        "sender": sender_name,
        "payload": b"".join(parts),
        "chunk_count": opener.chunk_count,
    }


def chunk_tags(data: bytes, clear: ClearPart) -> list[str]:
    body = data[clear.size :]
    starts = range(0, len(body), sealing.SEALED_CHUNK_BYTES)
    return [
        body[start : start + sealing.SEALED_CHUNK_BYTES][-sealing.TAG_BYTES :].hex()
        for start in starts
    ]


# -- identities, node ids, bundle ids, key files ------------------------------------------


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_identity_vectors(name: str) -> None:
    record = load("ids.json")["identities"][name]
    person = identity(record)
    assert person.public.signing_public.hex() == record["signing_public_hex"]
    assert person.public.exchange_public.hex() == record["exchange_public_hex"]
    assert person.node_id.raw.hex() == record["node_id_hex"]
    assert str(person.node_id) == record["node_id"]
    assert NodeId.parse(record["node_id"]).raw.hex() == record["node_id_hex"]
    # Spec: BLAKE2b-128, no key, personalisation "rise-node-id-v1" zero-padded to 16 bytes.
    keys = bytes.fromhex(record["signing_public_hex"] + record["exchange_public_hex"])
    digest = hashlib.blake2b(keys, digest_size=16, person=b"rise-node-id-v1\0").digest()
    assert digest.hex() == record["node_id_hex"]


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_keyfile_vectors(name: str) -> None:
    record = load("ids.json")["identities"][name]
    keyfile = bytes.fromhex(record["keyfile_hex"])
    decoded = Identity.from_keyfile(keyfile)
    assert decoded.signing_seed.hex() == record["signing_seed_hex"]
    assert decoded.exchange_secret.hex() == record["exchange_secret_hex"]
    assert identity(record).to_keyfile() == keyfile
    assert cbor2.loads(keyfile) == [
        "rise-dtn secret key",
        1,
        bytes.fromhex(record["signing_seed_hex"]),
        bytes.fromhex(record["exchange_secret_hex"]),
    ]


@pytest.mark.parametrize("index", [0, 1])
def test_bundle_id_vectors(index: int) -> None:
    record = load("ids.json")["bundle_ids"][index]
    ephemeral_public = exchange_public_for(bytes.fromhex(record["ephemeral_secret_hex"]))
    assert ephemeral_public.hex() == record["ephemeral_public_hex"]
    digest = hashlib.blake2b(ephemeral_public, digest_size=16, person=b"rise-bundle-id-1").digest()
    assert digest.hex() == record["bundle_id_hex"]
    assert str(BundleId(digest)) == record["bundle_id"]
    assert BundleId.parse(record["bundle_id"]).raw == digest


# -- bundles ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", BUNDLES, ids=BUNDLE_NAMES)
def test_bundle_decodes(vector: dict[str, Any]) -> None:
    who = people("bundles.json")
    data = golden_bytes(vector)
    found = open_bundle(data, who[vector["recipient"]], who)
    clear, inner = found["clear"], found["inner"]
    assert clear.header.recipient == who[vector["recipient"]].node_id
    assert clear.header.expiry == vector["expiry"]
    assert clear.header.priority == vector["priority"]
    assert clear.header.body_length == vector["body_length"]
    assert clear.ephemeral_public.hex() == vector["ephemeral_public_hex"]
    assert clear.bundle_id.raw.hex() == vector["bundle_id_hex"]
    assert str(clear.bundle_id) == vector["bundle_id"]
    assert data[: clear.size].hex() == vector["clear_hex"]
    assert found["sender"] == vector["sender"]
    assert inner.signature.hex() == vector["signature_hex"]
    assert inner.meta == meta_of(vector)
    assert inner.meta_bytes.hex() == vector["meta_hex"]
    assert found["chunk_count"] == vector["chunk_count"]
    assert found["payload"] == payload_of(vector)
    assert chunk_tags(data, clear) == [chunk["tag_hex"] for chunk in vector["chunks"]]
    assert len(data) == vector["bundle_bytes"]
    assert not clear.expired(vector["now"])
    assert clear.expired(vector["expiry"])


@pytest.mark.parametrize("vector", BUNDLES, ids=BUNDLE_NAMES)
def test_bundle_encodes(vector: dict[str, Any]) -> None:
    data = reseal(vector)
    if "bundle_hex" in vector:
        assert data.hex() == vector["bundle_hex"]
    assert hashlib.sha256(data).hexdigest() == vector["bundle_sha256"]
    assert len(data) == vector["bundle_bytes"]
    assert data[: len(bytes.fromhex(vector["clear_hex"]))].hex() == vector["clear_hex"]


@pytest.mark.parametrize("vector", BUNDLES, ids=BUNDLE_NAMES)
def test_bundle_intermediate_values(vector: dict[str, Any]) -> None:
    who = people("bundles.json")
    recipient = who[vector["recipient"]]
    ephemeral_secret = bytes.fromhex(vector["ephemeral_secret_hex"])
    ephemeral_public = bytes.fromhex(vector["ephemeral_public_hex"])
    recipient_public = recipient.public.exchange_public
    shared = x25519(ephemeral_secret, recipient_public)
    assert shared.hex() == vector["shared_secret_hex"]
    assert recipient.exchange(ephemeral_public) == shared
    key = sealing.derive_key(shared, ephemeral_public, recipient_public)
    assert key.hex() == vector["body_key_hex"]
    meta_bytes = meta_of(vector).encode()
    assert meta_bytes.hex() == vector["meta_hex"]
    signed = signed_message(recipient.node_id, vector["expiry"], ephemeral_public, meta_bytes)
    assert signed.hex() == vector["signed_message_hex"]
    assert who[vector["sender"]].sign(signed).hex() == vector["signature_hex"]
    clear = parse_clear(bytes.fromhex(vector["clear_hex"]))
    assert clear.header.binding(ephemeral_public).hex() == vector["chunk0_aad_hex"]


@pytest.mark.parametrize("vector", BUNDLES, ids=BUNDLE_NAMES)
def test_bundle_from_the_spec_alone(vector: dict[str, Any]) -> None:
    """Rebuild the bundle following docs/protocol.md with no rise_dtn code at all."""
    ids = load("bundles.json")["identities"]
    sender, recipient = ids[vector["sender"]], ids[vector["recipient"]]
    recipient_id = bytes.fromhex(recipient["node_id_hex"])
    recipient_public = bytes.fromhex(recipient["exchange_public_hex"])
    ephemeral_secret = bytes.fromhex(vector["ephemeral_secret_hex"])
    big_e = crypto_scalarmult_base(ephemeral_secret)  # "E" in the spec
    shared = crypto_scalarmult(ephemeral_secret, recipient_public)
    key = hashlib.blake2b(
        shared + big_e + recipient_public, digest_size=32, person=b"rise-seal-key-v1"
    ).digest()
    fields = vector["meta"]
    meta = [fields["kind"]] + [
        value for value in (fields["name"], fields["size"]) if value is not None
    ]
    meta_bytes = cbor2.dumps(meta, canonical=True)
    to_sign = b"rise-dtn bundle signature v1\0" + cbor2.dumps(
        [recipient_id, vector["expiry"], big_e, meta_bytes], canonical=True
    )
    signature = (
        nacl.signing.SigningKey(bytes.fromhex(sender["signing_seed_hex"])).sign(to_sign).signature
    )
    plaintext = bytes.fromhex(sender["node_id_hex"]) + signature + meta_bytes + payload_of(vector)
    chunk_bytes = 1 << 20
    pieces = [
        plaintext[start : start + chunk_bytes] for start in range(0, len(plaintext), chunk_bytes)
    ]
    aad = cbor2.dumps(
        [b"RSB", 1, recipient_id, vector["expiry"], vector["priority"]], canonical=True
    )
    sealed = b"".join(
        crypto_aead_chacha20poly1305_ietf_encrypt(
            piece,
            aad + big_e if index == 0 else None,
            index.to_bytes(11, "big") + bytes([index == len(pieces) - 1]),
            key,
        )
        for index, piece in enumerate(pieces)
    )
    header = cbor2.dumps(
        [recipient_id, vector["expiry"], vector["priority"], len(big_e) + len(sealed)],
        canonical=True,
    )
    data = b"RSB\x01" + header + big_e + sealed
    assert hashlib.sha256(data).hexdigest() == vector["bundle_sha256"]


def test_message_of_100_bytes_costs_160_bytes() -> None:
    vector = next(v for v in BUNDLES if v["name"] == "message-100")
    data = golden_bytes(vector)
    assert vector["payload_bytes"] == 100
    assert len(data) - 100 == 160 == vector["overhead_bytes"]
    magic_and_version = 3 + 1
    # [recipient bstr(16), expiry uint32, priority 0..23, body_length 24..255]
    hop_header = 1 + (1 + 16) + (1 + 4) + 1 + (1 + 1)
    ephemeral_key = 32
    inner_header = 16 + 64 + 2  # sender id, Ed25519 signature, meta [1]
    poly1305_tag = 16
    assert magic_and_version + hop_header + ephemeral_key + inner_header + poly1305_tag == 160
    clear = parse_clear(data)
    assert clear.size == magic_and_version + hop_header + ephemeral_key
    assert clear.header.body_length == ephemeral_key + inner_header + 100 + poly1305_tag == 230


@pytest.mark.parametrize(
    "vector", load("bundles.json")["invalid"], ids=lambda vector: vector["name"]
)
def test_invalid_bundles_are_rejected(vector: dict[str, str]) -> None:
    who = people("bundles.json")
    with pytest.raises(BundleError, match=vector["error"]):
        open_bundle(bytes.fromhex(vector["bundle_hex"]), who["bob"], who)


def test_cutting_off_the_last_chunk_is_detected() -> None:
    """STREAM: drop chunk 1 and fix body_length; chunk 0 then lacks the final flag."""
    vector = next(v for v in BUNDLES if v["name"] == "two-chunks")
    data = golden_bytes(vector)
    clear = parse_clear(data)
    short_length = 32 + sealing.SEALED_CHUNK_BYTES
    old = cbor2.dumps(clear.header.body_length)
    new = cbor2.dumps(short_length)
    assert len(old) == len(new)
    cut = data[: clear.size + sealing.SEALED_CHUNK_BYTES].replace(old, new, 1)
    who = people("bundles.json")
    with pytest.raises(BundleError, match="chunk 0 fails authentication"):
        open_bundle(cut, who["bob"], who)


def test_a_relay_cannot_open_a_bundle_for_another_node() -> None:
    who = people("bundles.json")
    data = bytes.fromhex(BUNDLES[0]["bundle_hex"])
    with pytest.raises(BundleError, match="for another node"):
        open_bundle(data, who["alice"], who)


# -- cards --------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", load("cards.json")["cards"], ids=lambda v: v["name"])
def test_card_decodes(vector: dict[str, Any]) -> None:
    person = people("cards.json")[vector["identity"]]
    decoded = Card.from_bytes(bytes.fromhex(vector["card_hex"]))
    assert decoded.name == vector["name"]
    assert decoded.public == person.public
    assert str(decoded.node_id) == vector["node_id"]
    assert [list(pair) for pair in decoded.addresses] == vector["addresses"]
    assert decoded.created == vector["created"]
    assert decoded.signature.hex() == vector["signature_hex"]
    assert Card.from_text(vector["armor"]) == decoded
    assert Card.from_text("Hi, my card:\n\n" + vector["armor"] + "\nBye\n") == decoded
    signed = b"rise-dtn card signature v1\0" + bytes.fromhex(vector["signed_part_hex"])
    nacl.signing.VerifyKey(person.public.signing_public).verify(
        signed, bytes.fromhex(vector["signature_hex"])
    )


@pytest.mark.parametrize("vector", load("cards.json")["cards"], ids=lambda v: v["name"])
def test_card_encodes(vector: dict[str, Any]) -> None:
    person = people("cards.json")[vector["identity"]]
    made = Card.create(
        person,
        name=vector["name"],
        addresses=tuple((carrier, address) for carrier, address in vector["addresses"]),
        now=vector["created"],
    )
    assert made.to_bytes().hex() == vector["card_hex"]
    assert made.armor() == vector["armor"]
    signed_part = cbor2.loads(bytes.fromhex(vector["signed_part_hex"]))
    assert cbor2.loads(made.to_bytes()) == [*signed_part, made.signature]


@pytest.mark.parametrize("vector", load("cards.json")["invalid"], ids=lambda v: v["name"])
def test_invalid_cards_are_refused(vector: dict[str, str]) -> None:
    with pytest.raises(PeerError, match=vector["error"]):
        Card.from_bytes(bytes.fromhex(vector["card_hex"]))


@pytest.mark.parametrize("vector", load("cards.json")["invalid_armor"], ids=lambda v: v["name"])
def test_invalid_armor_is_refused(vector: dict[str, str]) -> None:
    with pytest.raises(PeerError, match=vector["error"]):
        Card.from_text(vector["armor"])


# -- hop acks -----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", load("acks.json")["acks"], ids=lambda v: v["name"])
def test_ack_decodes(vector: dict[str, Any]) -> None:
    who = people("acks.json")
    sender, recipient = who[vector["sender"]], who[vector["recipient"]]
    decoded = Ack.decode(
        bytes.fromhex(vector["ack_hex"]), sender=sender.public, recipient=recipient.node_id
    )
    assert decoded.sender == sender.node_id
    assert decoded.recipient == recipient.node_id
    assert decoded.created == vector["created"]
    assert [bid.raw.hex() for bid in decoded.bundle_ids] == vector["bundle_ids_hex"]
    data = bytes.fromhex(vector["ack_hex"])
    assert data == b"RSA\x01" + bytes.fromhex(vector["body_hex"]) + bytes.fromhex(
        vector["signature_hex"]
    )
    assert bytes.fromhex(vector["signed_message_hex"]) == b"rise-dtn hop ack v1\0" + bytes.fromhex(
        vector["body_hex"]
    )


@pytest.mark.parametrize("vector", load("acks.json")["acks"], ids=lambda v: v["name"])
def test_ack_encodes(vector: dict[str, Any]) -> None:
    who = people("acks.json")
    sender, recipient = who[vector["sender"]], who[vector["recipient"]]
    made = Ack(
        sender=sender.node_id,
        recipient=recipient.node_id,
        created=vector["created"],
        bundle_ids=tuple(BundleId(bytes.fromhex(bid)) for bid in vector["bundle_ids_hex"]),
    )
    assert made.encode(sender).hex() == vector["ack_hex"]


@pytest.mark.parametrize("vector", load("acks.json")["invalid"], ids=lambda v: v["name"])
def test_invalid_acks_are_rejected(vector: dict[str, str]) -> None:
    who = people("acks.json")
    with pytest.raises(BundleError, match=vector["error"]):
        Ack.decode(
            bytes.fromhex(vector["ack_hex"]),
            sender=who["bob"].public,
            recipient=who["alice"].node_id,
        )


def test_acks_bundle_ids_are_those_of_the_bundle_vectors() -> None:
    named = load("acks.json")["acks"][0]["bundle_ids_hex"]
    assert named == [vector["bundle_id_hex"] for vector in BUNDLES[:2]]
