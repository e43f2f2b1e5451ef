"""Identities, node ids and the secret key file: rise_dtn.core.identity."""

from __future__ import annotations

import pytest
from test_codec_support import ALICE, BOB

from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError, PeerError, UsageError
from rise_dtn.core.identity import (
    KEYFILE_MAGIC,
    KEYFILE_VERSION,
    BundleId,
    Identity,
    NodeId,
    PublicIdentity,
    check_public_keys,
    exchange_public_for,
    node_id_for,
    x25519,
)


def test_node_id_is_the_hash_of_both_public_keys() -> None:
    public = ALICE.public
    assert ALICE.node_id == public.node_id
    assert public.node_id == node_id_for(public.signing_public, public.exchange_public)
    assert node_id_for(public.exchange_public, public.signing_public) != public.node_id
    assert len(ALICE.node_id.raw) == 16
    assert ALICE.node_id != BOB.node_id


def test_node_id_text_round_trip() -> None:
    text = str(ALICE.node_id)
    assert len(text) == 26
    assert text == text.lower()
    assert "=" not in text
    assert NodeId.parse(text) == ALICE.node_id
    assert NodeId.parse(text.upper()) == ALICE.node_id
    assert NodeId.parse(f"  {text}\n") == ALICE.node_id
    assert BundleId.parse(text) == BundleId(ALICE.node_id.raw)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a",
        "aaaaaaaaaaaaaaaaaaaaaaaaa",  # 25 letters: 15 bytes and a fraction
        "aaaaaaaaaaaaaaaaaaaaaaaa",  # 24 letters: 15 bytes
        "a" * 27,
        "a" * 32,  # 20 bytes
        "0" * 26,  # not in the base32 alphabet
        "1" * 26,
        "!" * 26,
        "é" * 26,
        "aaaaaaaaaaaaa aaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaaaaaaaaaa=",
        "=" * 26,
    ],
    ids=repr,
)
def test_node_id_parse_errors(text: str) -> None:
    with pytest.raises(UsageError, match="not a valid id"):
        NodeId.parse(text)


def test_digest_of_wrong_length_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        NodeId(b"short")


def test_node_id_and_bundle_id_never_compare_equal() -> None:
    raw = ALICE.node_id.raw
    assert NodeId(raw) == ALICE.node_id
    assert BundleId(raw) != NodeId(raw)


def test_repr_shows_no_secret() -> None:
    text = repr(ALICE)
    assert str(ALICE.node_id) in text
    assert ALICE.signing_seed.hex() not in text
    assert ALICE.exchange_secret.hex() not in text


def test_from_seeds_checks_lengths() -> None:
    with pytest.raises(ValueError):
        Identity.from_seeds(bytes(31), bytes(32))
    with pytest.raises(ValueError):
        Identity.from_seeds(bytes(32), bytes(33))


def test_signatures_verify_only_for_the_signer_and_message() -> None:
    signature = ALICE.sign(b"message")
    ALICE.public.verify(b"message", signature, error=BundleError)
    with pytest.raises(BundleError, match="bad signature"):
        ALICE.public.verify(b"messagE", signature, error=BundleError)
    with pytest.raises(PeerError, match="bad signature"):
        BOB.public.verify(b"message", signature, error=PeerError)
    for bad in (b"", signature[:-1], signature + b"\x00", bytes(64)):
        with pytest.raises(BundleError, match="bad signature"):
            ALICE.public.verify(b"message", bad, error=BundleError)


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)], ids=len)
def test_verify_with_a_malformed_key_raises_the_named_error(key: bytes) -> None:
    public = PublicIdentity(key, ALICE.public.exchange_public)
    with pytest.raises(PeerError):
        public.verify(b"message", ALICE.sign(b"message"), error=PeerError)


def test_exchange_agrees_both_ways() -> None:
    assert ALICE.exchange(BOB.public.exchange_public) == BOB.exchange(ALICE.public.exchange_public)
    ephemeral = bytes([42]) * 32
    assert x25519(ephemeral, BOB.public.exchange_public) == BOB.exchange(
        exchange_public_for(ephemeral)
    )


# The points of order 1, 2, 4 and 8 on Curve25519 and their non-reduced aliases
# (the list libsodium and Bernstein's "Curve25519 for dummies" give).
LOW_ORDER_POINTS = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("public", LOW_ORDER_POINTS, ids=lambda text: text[:8])
def test_low_order_points_are_refused_as_bundle_errors(public: str) -> None:
    with pytest.raises(BundleError, match="invalid public key"):
        BOB.exchange(bytes.fromhex(public))


@pytest.mark.parametrize("public", [b"", bytes(31), bytes(33)], ids=len)
def test_exchange_with_a_key_of_the_wrong_size_is_a_bundle_error(public: bytes) -> None:
    with pytest.raises(BundleError, match="invalid public key"):
        BOB.exchange(public)


def test_check_public_keys() -> None:
    check_public_keys(bytes(32), ALICE.public.exchange_public)
    with pytest.raises(PeerError, match="low-order"):
        check_public_keys(bytes(32), bytes(32))  # the all-zero X25519 key
    for signing, exchange in [(bytes(31), bytes(32)), (bytes(32), bytes(33)), (b"", b"")]:
        with pytest.raises(PeerError, match="malformed public keys"):
            check_public_keys(signing, exchange)


# The key file


def test_keyfile_round_trip() -> None:
    data = ALICE.to_keyfile()
    restored = Identity.from_keyfile(data)
    assert restored == ALICE
    assert restored.node_id == ALICE.node_id
    assert restored.to_keyfile() == data


def keyfile(*fields: object) -> bytes:
    return canonical(list(fields))  # type: ignore[arg-type]


SEED = bytes([1]) * 32
SECRET = bytes([2]) * 32


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"not cbor at all",
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, SEED, SECRET) + b"\x00",
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, SEED),
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, SEED, SECRET, b""),
        keyfile("rise-dtn public key", KEYFILE_VERSION, SEED, SECRET),
        keyfile(KEYFILE_MAGIC, 2, SEED, SECRET),
        keyfile(KEYFILE_MAGIC, 0, SEED, SECRET),
        keyfile(KEYFILE_MAGIC, True, SEED, SECRET),
        keyfile(KEYFILE_MAGIC, "1", SEED, SECRET),
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, SEED[:31], SECRET),
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, SEED, SECRET + b"\x00"),
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, "seed", SECRET),
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, SEED, None),
        keyfile(KEYFILE_MAGIC, KEYFILE_VERSION, SEED, b"x" * 300),
        canonical({"magic": KEYFILE_MAGIC}),
        canonical(KEYFILE_MAGIC),
        b"\x84" * 300,
    ],
    ids=lambda data: data[:12].hex() or "empty",
)
def test_keyfile_errors_are_usage_errors(data: bytes) -> None:
    with pytest.raises(UsageError):
        Identity.from_keyfile(data)
