"""Hop acks: rise_dtn.core.ack. A forged or damaged ack is always a BundleError."""

from __future__ import annotations

import pytest
from test_codec_support import ALICE, BOB, CAROL, MALLORY, NOW

from rise_dtn.core.ack import MAGIC, MAX_ACK_BYTES, MAX_IDS, SIGNATURE_CONTEXT, VERSION, Ack
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import SIGNATURE_BYTES, BundleId, Identity

BUNDLE_IDS = tuple(BundleId(bytes([n]) * 16) for n in range(3))


def bob_ack(bundle_ids: tuple[BundleId, ...] = BUNDLE_IDS) -> Ack:
    """Bob stored these bundles from Alice and tells her so."""
    return Ack(BOB.node_id, ALICE.node_id, NOW, bundle_ids)


def decode(data: bytes) -> Ack:
    return Ack.decode(data, sender=BOB.public, recipient=ALICE.node_id)


def signed(body_value: object, identity: Identity = BOB) -> bytes:
    body = canonical(body_value)  # type: ignore[arg-type]
    return MAGIC + bytes([VERSION]) + body + identity.sign(SIGNATURE_CONTEXT + body)


def test_round_trip() -> None:
    ack = bob_ack()
    data = ack.encode(BOB)
    assert data.startswith(MAGIC + bytes([VERSION]))
    assert decode(data) == ack


def test_round_trip_at_the_id_limits() -> None:
    for count in (1, MAX_IDS):
        ids = tuple(BundleId(n.to_bytes(16, "big")) for n in range(count))
        data = bob_ack(ids).encode(BOB)
        assert len(data) <= MAX_ACK_BYTES
        assert decode(data).bundle_ids == ids


def test_encode_refuses_caller_mistakes() -> None:
    with pytest.raises(ValueError, match="signed by its sender"):
        bob_ack().encode(ALICE)
    with pytest.raises(ValueError, match="names 1"):
        bob_ack(()).encode(BOB)
    too_many = tuple(BundleId(n.to_bytes(16, "big")) for n in range(MAX_IDS + 1))
    with pytest.raises(ValueError, match="names 1"):
        bob_ack(too_many).encode(BOB)


def test_ack_from_the_wrong_sender() -> None:
    data = bob_ack().encode(BOB)
    with pytest.raises(BundleError, match="wrong sender or recipient"):
        Ack.decode(data, sender=CAROL.public, recipient=ALICE.node_id)


def test_ack_for_the_wrong_recipient() -> None:
    data = bob_ack().encode(BOB)
    with pytest.raises(BundleError, match="wrong sender or recipient"):
        Ack.decode(data, sender=BOB.public, recipient=CAROL.node_id)


def test_ack_forged_in_bobs_name() -> None:
    # Mallory writes an ack that names Bob as its sender and signs it herself.
    body = [BOB.node_id.raw, ALICE.node_id.raw, NOW, [bid.raw for bid in BUNDLE_IDS]]
    with pytest.raises(BundleError, match="bad signature"):
        decode(signed(body, MALLORY))


def test_signature_over_the_body_without_context() -> None:
    body = canonical([BOB.node_id.raw, ALICE.node_id.raw, NOW, [bid.raw for bid in BUNDLE_IDS]])
    with pytest.raises(BundleError, match="bad signature"):
        decode(MAGIC + bytes([VERSION]) + body + BOB.sign(body))


def test_every_single_byte_flip_is_refused() -> None:
    data = bob_ack().encode(BOB)
    for position in range(len(data)):
        for mask in (0x01, 0x80):
            changed = bytearray(data)
            changed[position] ^= mask
            with pytest.raises(BundleError):
                decode(bytes(changed))


def test_truncated_and_extended_acks_are_refused() -> None:
    data = bob_ack().encode(BOB)
    for size in range(len(data)):
        with pytest.raises(BundleError):
            decode(data[:size])
    for extra in (b"\x00", bytes(SIGNATURE_BYTES)):
        with pytest.raises(BundleError):
            decode(data + extra)


def test_bad_magic_and_version() -> None:
    data = bob_ack().encode(BOB)
    with pytest.raises(BundleError, match="bad magic"):
        decode(b"RSB" + data[3:])
    for version in (0, 2, 255):
        with pytest.raises(BundleError, match="unsupported ack version"):
            decode(data[:3] + bytes([version]) + data[4:])


def test_too_large() -> None:
    with pytest.raises(BundleError, match="too large"):
        decode(MAGIC + bytes([VERSION]) + bytes(MAX_ACK_BYTES))


IDS = [bid.raw for bid in BUNDLE_IDS]


@pytest.mark.parametrize(
    "body",
    [
        [],
        [BOB.node_id.raw, ALICE.node_id.raw, NOW],
        [BOB.node_id.raw, ALICE.node_id.raw, NOW, IDS, 0],
        [BOB.node_id.raw[:15], ALICE.node_id.raw, NOW, IDS],
        [BOB.node_id.raw, ALICE.node_id.raw + b"\x00", NOW, IDS],
        [str(BOB.node_id), ALICE.node_id.raw, NOW, IDS],
        [BOB.node_id.raw, ALICE.node_id.raw, "now", IDS],
        [BOB.node_id.raw, ALICE.node_id.raw, True, IDS],
        [BOB.node_id.raw, ALICE.node_id.raw, -1, IDS],
        [BOB.node_id.raw, ALICE.node_id.raw, NOW, []],
        [BOB.node_id.raw, ALICE.node_id.raw, NOW, IDS[0]],
        [BOB.node_id.raw, ALICE.node_id.raw, NOW, [*IDS, b"short"]],
        [BOB.node_id.raw, ALICE.node_id.raw, NOW, [*IDS, [IDS[0]]]],
        {"sender": BOB.node_id.raw},
        "ack",
    ],
    ids=[
        "empty",
        "three-fields",
        "five-fields",
        "short-sender",
        "long-recipient",
        "text-sender",
        "text-created",
        "bool-created",
        "negative-created",
        "no-ids",
        "ids-not-a-list",
        "short-id",
        "nested-id",
        "map",
        "text",
    ],
)
def test_malformed_body_with_a_valid_signature(body: object) -> None:
    with pytest.raises(BundleError, match="malformed"):
        decode(signed(body))


@pytest.mark.parametrize(
    "body",
    [
        b"\xff",
        b"\x84",
        b"\x9f\x01\xff",
        b"\xf9\x3c\x00",
        b"\xc2\x49\x01" + bytes(8),
        b"\x81" * 1000 + b"\x00",
        b"\x9b" + b"\xff" * 8,
        canonical([1]) + b"\x00",
    ],
    ids=["break", "truncated", "indefinite", "float", "bignum", "deep", "huge", "trailing"],
)
def test_body_that_is_not_strict_cbor(body: bytes) -> None:
    data = MAGIC + bytes([VERSION]) + body + BOB.sign(SIGNATURE_CONTEXT + body)
    with pytest.raises(BundleError):
        decode(data)
