"""Tampering with a bundle in transit: every change must end in a BundleError.

`rejected` runs the whole receive path (see test_codec_support.receive) and
lets any exception other than BundleError fail the test, so these tests also
hold the decoding invariant of STYLE.md section 4.
"""

from __future__ import annotations

import pytest
from test_codec_support import (
    ALICE,
    BOB,
    CAROL,
    EXPIRY,
    OTHER_EPHEMERAL,
    flip,
    make_sealer,
    open_all,
    pattern,
    receive,
    rejected,
    rewrite_header,
    seal_bundle,
)

from rise_dtn.core import sealing
from rise_dtn.core.bundle import ContentKind, Meta, parse_clear
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import PUBLIC_KEY_BYTES

MASKS = (0x01, 0x80, 0xFF)


@pytest.fixture(scope="module")
def small() -> bytes:
    data = seal_bundle(b"meet at the bridge at noon", meta=Meta(ContentKind.FILE, "plan.txt", 26))
    assert open_all(BOB, ALICE.public, data) == b"meet at the bridge at noon"
    return data


@pytest.fixture(scope="module")
def two_chunks() -> tuple[bytes, bytes]:
    """A bundle whose second (last) chunk is short, and its payload."""
    payload = pattern(make_sealer().first_payload_bytes + 1000)
    data = seal_bundle(payload)
    assert open_all(BOB, ALICE.public, data) == payload
    return data, payload


def undetected(data: bytes, positions: list[int] | range) -> list[tuple[int, int]]:
    return [
        (position, mask)
        for position in positions
        for mask in MASKS
        if not rejected(BOB, ALICE.public, flip(data, position, mask))
    ]


def test_every_byte_flip_of_a_small_bundle_is_detected(small: bytes) -> None:
    assert undetected(small, range(len(small))) == []


def test_header_and_ciphertext_flips_of_a_two_chunk_bundle_are_detected(
    two_chunks: tuple[bytes, bytes],
) -> None:
    data, _payload = two_chunks
    clear = parse_clear(data)
    chunk_1 = clear.size + sealing.SEALED_CHUNK_BYTES
    positions = [
        *range(clear.size),  # magic, version, hop header, E
        clear.size,  # first ciphertext byte
        clear.size + 100,
        clear.size + sealing.SEALED_CHUNK_BYTES // 2,
        chunk_1 - sealing.TAG_BYTES - 1,  # last ciphertext byte of chunk 0
        chunk_1 - sealing.TAG_BYTES,  # chunk 0 tag
        chunk_1 - 1,
        chunk_1,  # first ciphertext byte of chunk 1
        chunk_1 + 500,
        len(data) - sealing.TAG_BYTES - 1,  # last ciphertext byte
        len(data) - sealing.TAG_BYTES,
        len(data) - 1,  # last tag byte
    ]
    assert undetected(data, positions) == []


def test_truncation_at_every_length_of_a_small_bundle(small: bytes) -> None:
    assert [
        size for size in range(len(small)) if not rejected(BOB, ALICE.public, small[:size])
    ] == []


def test_truncation_of_a_two_chunk_bundle(two_chunks: tuple[bytes, bytes]) -> None:
    data, _payload = two_chunks
    clear = parse_clear(data)
    boundary = clear.size + sealing.SEALED_CHUNK_BYTES
    for size in (clear.size, clear.size + 1, boundary - 1, boundary, boundary + 1, len(data) - 1):
        assert rejected(BOB, ALICE.public, data[:size]), size


def test_truncation_at_the_chunk_boundary_with_a_matching_header() -> None:
    # The attacker also fixes the header length, so only the STREAM last-chunk
    # flag can notice that chunk 0 was not the last one.
    payload = pattern(make_sealer().first_payload_bytes + 1000)
    data = seal_bundle(payload)
    clear = parse_clear(data)
    cut = data[: clear.size + sealing.SEALED_CHUNK_BYTES]
    cut = rewrite_header(cut, body_length=PUBLIC_KEY_BYTES + sealing.SEALED_CHUNK_BYTES)
    assert len(cut) == parse_clear(cut).total_bytes
    with pytest.raises(BundleError, match="chunk 0 fails authentication"):
        receive(BOB, ALICE.public, cut)


def test_dropping_a_middle_chunk_with_a_matching_header() -> None:
    first = make_sealer().first_payload_bytes
    data = seal_bundle(pattern(first + 2 * sealing.CHUNK_BYTES))
    clear = parse_clear(data)
    start = clear.size + sealing.SEALED_CHUNK_BYTES
    dropped = data[:start] + data[start + sealing.SEALED_CHUNK_BYTES :]
    dropped = rewrite_header(dropped, body_length=PUBLIC_KEY_BYTES + 2 * sealing.SEALED_CHUNK_BYTES)
    with pytest.raises(BundleError, match="chunk 1 fails authentication"):
        receive(BOB, ALICE.public, dropped)


def test_swapping_two_chunks_is_detected() -> None:
    first = make_sealer().first_payload_bytes
    data = seal_bundle(pattern(first + 2 * sealing.CHUNK_BYTES))
    clear = parse_clear(data)
    one = clear.size + sealing.SEALED_CHUNK_BYTES
    two = one + sealing.SEALED_CHUNK_BYTES
    swapped = data[:one] + data[two:] + data[one:two]
    assert len(swapped) == len(data)
    with pytest.raises(BundleError, match="chunk 1 fails authentication"):
        receive(BOB, ALICE.public, swapped)


def test_appended_bytes_are_detected(small: bytes, two_chunks: tuple[bytes, bytes]) -> None:
    for data in (small, two_chunks[0]):
        for extra in (b"\x00", bytes(sealing.TAG_BYTES), bytes(sealing.TAG_BYTES + 1)):
            assert rejected(BOB, ALICE.public, data + extra)


def test_appended_bytes_with_a_matching_header_are_detected(small: bytes) -> None:
    clear = parse_clear(small)
    for extra in (1, sealing.TAG_BYTES + 1, 1000):
        longer = rewrite_header(small + bytes(extra), body_length=clear.header.body_length + extra)
        with pytest.raises(BundleError, match="chunk 0 fails authentication"):
            receive(BOB, ALICE.public, longer)


def test_appended_chunk_with_a_matching_header_is_detected(two_chunks: tuple[bytes, bytes]) -> None:
    # Pad the short last chunk to full size and add a third chunk.
    data, _payload = two_chunks
    clear = parse_clear(data)
    last = len(data) - clear.size - sealing.SEALED_CHUNK_BYTES
    padding = bytes(sealing.SEALED_CHUNK_BYTES - last)
    longer = data + padding + bytes(100)
    longer = rewrite_header(
        longer, body_length=PUBLIC_KEY_BYTES + 2 * sealing.SEALED_CHUNK_BYTES + 100
    )
    with pytest.raises(BundleError, match="chunk 1 fails authentication"):
        receive(BOB, ALICE.public, longer)
    # A chunk that was last in another bundle under another key does not fit either.
    other = seal_bundle(pattern(100), ephemeral_secret=OTHER_EPHEMERAL)
    spliced = data + other[parse_clear(other).size :]
    spliced = rewrite_header(
        spliced, body_length=clear.header.body_length + len(other) - parse_clear(other).size
    )
    with pytest.raises(BundleError, match="chunk 1 fails authentication"):
        receive(BOB, ALICE.public, spliced)


@pytest.mark.parametrize(
    "changes",
    [
        {"expiry": EXPIRY + 1},
        {"expiry": EXPIRY - 1},
        {"expiry": 2**62},
        {"priority": 0},
        {"priority": 255},
    ],
    ids=repr,
)
def test_rewritten_hop_fields_are_detected(small: bytes, changes: dict[str, int]) -> None:
    # The size still matches: only the associated data of chunk 0 can notice.
    with pytest.raises(BundleError, match="chunk 0 fails authentication"):
        receive(BOB, ALICE.public, rewrite_header(small, **changes))


def test_bundle_readdressed_to_another_node_does_not_open(small: bytes) -> None:
    readdressed = rewrite_header(small, recipient=CAROL.node_id)  # type: ignore[arg-type]
    assert rejected(CAROL, ALICE.public, readdressed)
    assert rejected(BOB, ALICE.public, readdressed)


def test_ephemeral_key_swapped_for_another_bundles(small: bytes) -> None:
    clear = parse_clear(small)
    other = parse_clear(seal_bundle(b"other", ephemeral_secret=OTHER_EPHEMERAL))
    start = clear.size - PUBLIC_KEY_BYTES
    swapped = small[:start] + other.ephemeral_public + small[clear.size :]
    assert rejected(BOB, ALICE.public, swapped)


def test_high_bit_of_the_ephemeral_key_is_bound(small: bytes) -> None:
    # X25519 ignores the top bit of a public key; the KDF and the AAD must not.
    clear = parse_clear(small)
    assert rejected(BOB, ALICE.public, flip(small, clear.size - 1, 0x80))


def test_body_of_one_bundle_under_the_header_of_another(small: bytes) -> None:
    other = seal_bundle(b"meet at the bridge at noon", ephemeral_secret=OTHER_EPHEMERAL)
    clear, other_clear = parse_clear(small), parse_clear(other)
    assert rejected(BOB, ALICE.public, small[: clear.size] + other[other_clear.size :])
