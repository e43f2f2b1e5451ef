"""Bundles: seal/open round trips, the hop header, metadata and file names."""

from __future__ import annotations

import pytest
from test_codec_support import (
    ALICE,
    BOB,
    CAROL,
    EPHEMERAL,
    EXPIRY,
    MALLORY,
    MESSAGE,
    NOW,
    OTHER_EPHEMERAL,
    make_sealer,
    open_all,
    pattern,
    receive,
    rewrite_header,
    seal_bundle,
    seal_inner,
)

from rise_dtn.core import sealing
from rise_dtn.core.bundle import (
    INNER_FIXED_BYTES,
    MAGIC,
    MAX_BODY_BYTES,
    MAX_CLEAR_BYTES,
    MAX_META_BYTES,
    MAX_NAME_BYTES,
    PREFIX_BYTES,
    VERSION,
    ContentKind,
    HopHeader,
    Meta,
    Opener,
    bundle_id_for,
    check_file_name,
    parse_clear,
    signed_message,
)
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import PUBLIC_KEY_BYTES, BundleId, NodeId, exchange_public_for

FILE_META = Meta(ContentKind.FILE, "report.pdf", 12345)
SIZES = {
    "empty": lambda first: 0,
    "one": lambda first: 1,
    "first-1": lambda first: first - 1,
    "first": lambda first: first,
    "first+1": lambda first: first + 1,
    "two chunks+5": lambda first: sealing.CHUNK_BYTES * 2 + 5,
}


def clear_bytes(fields: list[object], *, prefix: bytes = MAGIC + bytes([VERSION])) -> bytes:
    """A clear part with an arbitrary header value and a valid-looking E."""
    return prefix + canonical(fields) + exchange_public_for(EPHEMERAL)  # type: ignore[arg-type]


def body_length_for(payload_bytes: int, meta: Meta = MESSAGE) -> int:
    return make_sealer(meta=meta).body_length(payload_bytes)


# Round trips


@pytest.mark.parametrize("meta", [MESSAGE, FILE_META], ids=["message", "file"])
@pytest.mark.parametrize("size_name", list(SIZES))
def test_seal_and_open_round_trip(meta: Meta, size_name: str) -> None:
    first = make_sealer(meta=meta).first_payload_bytes
    payload = pattern(SIZES[size_name](first))
    data = seal_bundle(payload, meta=meta)
    inner, opened = receive(BOB, ALICE.public, data)
    assert opened == payload
    assert inner.sender == ALICE.node_id
    assert inner.meta == meta
    clear = parse_clear(data)
    assert clear.total_bytes == len(data)
    expected_chunks = sealing.chunk_count(clear.header.body_length - PUBLIC_KEY_BYTES)
    assert Opener(BOB, clear).chunk_count == expected_chunks
    inner_bytes = INNER_FIXED_BYTES + len(meta.encode()) + len(payload)
    assert len(data) == clear.size + sealing.sealed_size(inner_bytes)


def test_chunk_counts_at_the_boundaries() -> None:
    first = make_sealer().first_payload_bytes
    for size, chunks in [
        (0, 1),
        (first, 1),
        (first + 1, 2),
        (first + sealing.CHUNK_BYTES, 2),
        (first + sealing.CHUNK_BYTES + 1, 3),
    ]:
        clear = parse_clear(make_sealer().clear_part(size))
        assert Opener(BOB, clear).chunk_count == chunks, size


def test_first_payload_bytes_leaves_room_for_sender_signature_and_meta() -> None:
    assert make_sealer().first_payload_bytes == sealing.CHUNK_BYTES - INNER_FIXED_BYTES - 2
    long_meta = Meta(ContentKind.FILE, "x" * 200, 7)
    assert make_sealer(meta=long_meta).first_payload_bytes == (
        sealing.CHUNK_BYTES - INNER_FIXED_BYTES - len(long_meta.encode())
    )


def test_clear_part_carries_the_hop_fields() -> None:
    data = seal_bundle(b"hello", expiry=EXPIRY, priority=7)
    clear = parse_clear(data)
    assert clear.header.recipient == BOB.node_id
    assert clear.header.expiry == EXPIRY
    assert clear.header.priority == 7
    assert clear.ephemeral_public == exchange_public_for(EPHEMERAL)
    assert clear.bundle_id == make_sealer().bundle_id == bundle_id_for(clear.ephemeral_public)
    assert isinstance(clear.bundle_id, BundleId)


def test_parse_clear_reads_only_the_clear_part_of_a_longer_buffer() -> None:
    data = seal_bundle(pattern(5000))
    assert parse_clear(data[:MAX_CLEAR_BYTES]) == parse_clear(data)
    assert parse_clear(data[: parse_clear(data).size]) == parse_clear(data)


def test_expired_is_inclusive_of_the_expiry_second() -> None:
    clear = parse_clear(seal_bundle(b"", expiry=NOW))
    assert clear.expired(NOW)
    assert clear.expired(NOW + 1)
    assert not clear.expired(NOW - 1)


def test_each_bundle_has_its_own_id_and_ciphertext() -> None:
    one = seal_bundle(b"same")
    two = seal_bundle(b"same", ephemeral_secret=OTHER_EPHEMERAL)
    assert parse_clear(one).bundle_id != parse_clear(two).bundle_id
    assert one[-20:] != two[-20:]
    assert open_all(BOB, ALICE.public, one) == open_all(BOB, ALICE.public, two) == b"same"


def test_sealing_is_deterministic_given_the_ephemeral_secret() -> None:
    assert seal_bundle(pattern(300)) == seal_bundle(pattern(300))


def test_sealer_refuses_bad_priority_and_wrong_chunk_sizes() -> None:
    with pytest.raises(ValueError):
        make_sealer(priority=256)
    with pytest.raises(ValueError):
        make_sealer(priority=-1)
    sealer = make_sealer()
    with pytest.raises(ValueError):
        sealer.seal(b"short", final=False)
    with pytest.raises(ValueError):
        sealer.seal(bytes(sealer.first_payload_bytes + 1), final=True)


# Signatures and recipients


def test_wrong_sender_key_is_refused() -> None:
    data = seal_bundle(b"hello")
    with pytest.raises(BundleError, match="sender key does not match"):
        receive(BOB, CAROL.public, data)


def test_sender_id_with_someone_elses_signature_is_refused() -> None:
    # Mallory claims to be Alice: Alice's id, Mallory's signature.
    meta_bytes = MESSAGE.encode()
    ephemeral_public = exchange_public_for(EPHEMERAL)
    message = signed_message(BOB.node_id, EXPIRY, ephemeral_public, meta_bytes)
    forged = seal_inner(ALICE.node_id.raw + MALLORY.sign(message) + meta_bytes + b"pay up")
    with pytest.raises(BundleError, match="bad signature"):
        receive(BOB, ALICE.public, forged)
    with pytest.raises(BundleError, match="sender key does not match"):
        receive(BOB, MALLORY.public, forged)


@pytest.mark.parametrize(
    "field", ["recipient", "expiry", "ephemeral key", "metadata"], ids=lambda name: name
)
def test_signature_covers_each_signed_field(field: str) -> None:
    meta_bytes = MESSAGE.encode()
    recipient, expiry, ephemeral = BOB.node_id, EXPIRY, exchange_public_for(EPHEMERAL)
    if field == "recipient":
        recipient = CAROL.node_id
    elif field == "expiry":
        expiry += 1
    elif field == "ephemeral key":
        ephemeral = exchange_public_for(OTHER_EPHEMERAL)
    signed_meta = Meta(ContentKind.FILE, "a", 1).encode() if field == "metadata" else meta_bytes
    signature = ALICE.sign(signed_message(recipient, expiry, ephemeral, signed_meta))
    forged = seal_inner(ALICE.node_id.raw + signature + meta_bytes)
    with pytest.raises(BundleError, match="bad signature"):
        receive(BOB, ALICE.public, forged)


def test_signature_from_another_bundle_does_not_transplant() -> None:
    inner, _payload = receive(BOB, ALICE.public, seal_bundle(b"original"))
    moved = seal_inner(
        ALICE.node_id.raw + inner.signature + inner.meta_bytes + b"replaced",
        ephemeral_secret=OTHER_EPHEMERAL,
    )
    with pytest.raises(BundleError, match="bad signature"):
        receive(BOB, ALICE.public, moved)


def test_bundle_for_another_node_is_refused() -> None:
    data = seal_bundle(b"for bob")
    with pytest.raises(BundleError, match="another node"):
        receive(CAROL, ALICE.public, data)


def test_recipient_rewritten_in_the_header_does_not_open() -> None:
    data = rewrite_header(seal_bundle(b"for bob"), recipient=CAROL.node_id)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="fails authentication"):
        receive(CAROL, ALICE.public, data)


@pytest.mark.parametrize("ephemeral", [bytes(32), b"\x01" + bytes(31)], ids=["zero", "one"])
def test_low_order_ephemeral_key_is_refused(ephemeral: bytes) -> None:
    data = seal_bundle(b"x")
    clear = parse_clear(data)
    data = data[: clear.size - PUBLIC_KEY_BYTES] + ephemeral + data[clear.size :]
    with pytest.raises(BundleError, match="invalid public key"):
        receive(BOB, ALICE.public, data)


# The clear part


@pytest.mark.parametrize("magic", [b"RSA", b"rsb", b"XSB", b"\x00\x00\x00"])
def test_bad_magic(magic: bytes) -> None:
    data = seal_bundle(b"x")
    with pytest.raises(BundleError, match="bad magic"):
        parse_clear(magic + data[3:])


@pytest.mark.parametrize("version", [0, 3, 0x7F, 0xFF])
def test_unknown_version_byte(version: int) -> None:
    data = seal_bundle(b"x")
    with pytest.raises(BundleError, match=f"unsupported bundle version {version}"):
        parse_clear(data[:3] + bytes([version]) + data[4:])


@pytest.mark.parametrize("size", range(PREFIX_BYTES))
def test_no_room_for_a_prefix(size: int) -> None:
    with pytest.raises(BundleError):
        parse_clear(seal_bundle(b"x")[:size])


def test_missing_ephemeral_key() -> None:
    data = seal_bundle(b"x")
    clear = parse_clear(data)
    for size in range(clear.size - PUBLIC_KEY_BYTES, clear.size):
        with pytest.raises(BundleError, match="no ephemeral key"):
            parse_clear(data[:size])


def test_valid_header_fields_at_their_limits() -> None:
    length = body_length_for(0)
    for priority in (0, 255):
        clear = parse_clear(clear_bytes([BOB.node_id.raw, 0, priority, length]))
        assert clear.header == HopHeader(BOB.node_id, 0, priority, length)


@pytest.mark.parametrize("priority", [256, 1000, -1, 2**64 - 1])
def test_out_of_range_priority(priority: int) -> None:
    with pytest.raises(BundleError, match="out-of-range"):
        parse_clear(clear_bytes([BOB.node_id.raw, EXPIRY, priority, body_length_for(0)]))


def test_negative_expiry() -> None:
    with pytest.raises(BundleError, match="out-of-range"):
        parse_clear(clear_bytes([BOB.node_id.raw, -1, 0, body_length_for(0)]))


def test_expiry_beyond_a_signed_64_bit_time_is_refused() -> None:
    # The spool index stores the expiry in an SQLite INTEGER (signed 64-bit).
    for expiry in (2**63, 2**64 - 1):
        with pytest.raises(BundleError, match="out-of-range"):
            parse_clear(clear_bytes([BOB.node_id.raw, expiry, 0, body_length_for(0)]))
    clear = parse_clear(clear_bytes([BOB.node_id.raw, 2**63 - 1, 0, body_length_for(0)]))
    assert clear.header.expiry == 2**63 - 1


@pytest.mark.parametrize(
    "body_length",
    [
        0,
        PUBLIC_KEY_BYTES,
        PUBLIC_KEY_BYTES + 1,
        PUBLIC_KEY_BYTES + sealing.TAG_BYTES,
        PUBLIC_KEY_BYTES + sealing.SEALED_CHUNK_BYTES + 1,
        PUBLIC_KEY_BYTES + sealing.SEALED_CHUNK_BYTES + sealing.TAG_BYTES,
        PUBLIC_KEY_BYTES + 7 * sealing.SEALED_CHUNK_BYTES + sealing.TAG_BYTES,
        MAX_BODY_BYTES + 1,
        2**64 - 1,
        -5,
    ],
)
def test_body_length_that_does_not_fit_the_chunk_framing(body_length: int) -> None:
    with pytest.raises(BundleError, match="body length"):
        parse_clear(clear_bytes([BOB.node_id.raw, EXPIRY, 0, body_length]))


@pytest.mark.parametrize(
    "body_length",
    [
        PUBLIC_KEY_BYTES + sealing.TAG_BYTES + 1,
        PUBLIC_KEY_BYTES + sealing.SEALED_CHUNK_BYTES,
        PUBLIC_KEY_BYTES + sealing.SEALED_CHUNK_BYTES + sealing.TAG_BYTES + 1,
    ],
)
def test_body_length_that_fits_the_chunk_framing(body_length: int) -> None:
    clear = parse_clear(clear_bytes([BOB.node_id.raw, EXPIRY, 0, body_length]))
    assert clear.total_bytes == clear.size + body_length - PUBLIC_KEY_BYTES


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [b"\x00" * 16, 1, 2],
        [b"\x00" * 16, 1, 2, 200, 5],
        [b"\x00" * 15, 1, 2, 200],
        [b"\x00" * 17, 1, 2, 200],
        ["0" * 16, 1, 2, 200],
        [b"\x00" * 16, True, 2, 200],
        [b"\x00" * 16, 1, False, 200],
        [b"\x00" * 16, 1, 2, None],
        [b"\x00" * 16, "1", 2, 200],
        [b"\x00" * 16, [1], 2, 200],
        {"recipient": b"\x00" * 16},
        b"\x00" * 16,
        7,
    ],
    ids=repr,
)
def test_malformed_header(fields: object) -> None:
    data = MAGIC + bytes([VERSION]) + canonical(fields) + bytes(32)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="header"):
        parse_clear(data)


@pytest.mark.parametrize(
    "encoded",
    [
        # non-canonical: 200 with a 4-byte argument
        bytes([0x84, 0x50]) + bytes(16) + bytes([0x01, 0x02, 0x1A, 0, 0, 0, 200]),
        # indefinite-length array
        bytes([0x9F, 0x50]) + bytes(16) + bytes([0x01, 0x02, 0x18, 200, 0xFF]),
        # a float expiry
        bytes([0x84, 0x50]) + bytes(16) + bytes([0xF9, 0x3C, 0x00, 0x02, 0x18, 200]),
        # a tagged expiry
        bytes([0x84, 0x50]) + bytes(16) + bytes([0xC1, 0x01, 0x02, 0x18, 200]),
        # a bignum expiry (tag 2), larger than any 64-bit integer
        bytes([0x84, 0x50]) + bytes(16) + bytes([0xC2, 0x49, 1]) + bytes(8) + b"\x02\x18\xc8",
        # truncated
        bytes([0x84, 0x50]) + bytes(10),
        # a header that claims to be larger than the header limit
        bytes([0x84, 0x58, 0xFF]) + bytes(100),
        # a break code
        bytes([0xFF]),
    ],
    ids=["long-int", "indefinite", "float", "tag", "bignum", "truncated", "huge", "break"],
)
def test_header_that_is_not_canonical_cbor(encoded: bytes) -> None:
    with pytest.raises(BundleError):
        parse_clear(MAGIC + bytes([VERSION]) + encoded + bytes(32))


# Metadata


@pytest.mark.parametrize(
    "meta",
    [
        MESSAGE,
        Meta(ContentKind.FILE, "a"),
        Meta(ContentKind.FILE, "report.pdf", 0),
        Meta(ContentKind.FILE, "ünïcødé 文件.txt", 2**63),
        Meta(ContentKind.FILE, "x" * MAX_NAME_BYTES, 2**64 - 1),
    ],
    ids=repr,
)
def test_meta_round_trip(meta: Meta) -> None:
    assert Meta.decode(meta.encode()) == meta


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        "message",
        [0],
        [9],
        [3, "extra"],
        [-1],
        [True],
        [1, "extra"],
        [2],
        [2, None],
        [2, b"name"],
        [2, 5],
        [2, "a", -1],
        [2, "a", "5"],
        [2, "a", True],
        [2, "a", None],
        [2, "a", 1, 2],
        [[1]],
    ],
    ids=repr,
)
def test_malformed_meta(value: object) -> None:
    with pytest.raises(BundleError):
        Meta.decode(canonical(value))  # type: ignore[arg-type]


def test_meta_too_large() -> None:
    with pytest.raises(BundleError, match="too large"):
        Meta.decode(canonical([2, "a" * MAX_META_BYTES]))


def test_meta_refuses_trailing_and_non_canonical_bytes() -> None:
    with pytest.raises(BundleError):
        Meta.decode(MESSAGE.encode() + b"\x00")
    with pytest.raises(BundleError):
        Meta.decode(bytes([0x9F, 0x01, 0xFF]))  # [1], indefinite length


# File names

UNSAFE_NAMES = [
    "",
    ".",
    "..",
    "../x",
    "../../etc/passwd",
    "a/../b",
    "/",
    "/etc/passwd",
    "a/b",
    "dir/",
    "a\\b",
    "..\\x",
    "a\x00b",
    "\x00",
    "a\nb",
    "name\n",
    "\r",
    "\t",
    "\x1b[31mred",
    "\x7f",
    "a\x85b",  # C1 NEL
    "\x9b31m",  # C1 CSI: some terminals act on it
    ".rise-tmp",
    ".rise-12345.part",
    "-rf",
    "--help",
    "x" * (MAX_NAME_BYTES + 1),
    "é" * 128,  # 256 bytes in UTF-8
]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(BundleError, match="unsafe file name"):
        check_file_name(name)


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_unsafe_file_names_are_refused_in_metadata(name: str) -> None:
    with pytest.raises(BundleError, match="unsafe file name"):
        Meta.decode(canonical([int(ContentKind.FILE), name, 1]))


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_unsafe_file_names_are_refused_in_a_signed_bundle(name: str) -> None:
    meta_bytes = canonical([int(ContentKind.FILE), name])
    ephemeral = exchange_public_for(EPHEMERAL)
    signature = ALICE.sign(signed_message(BOB.node_id, EXPIRY, ephemeral, meta_bytes))
    data = seal_inner(ALICE.node_id.raw + signature + meta_bytes + b"payload")
    with pytest.raises(BundleError, match="unsafe file name"):
        receive(BOB, ALICE.public, data)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "report.pdf",
        ".hidden",
        "x..y",
        "...",
        "a b",
        "ünïcødé.txt",
        "文件",
        "x" * 255,
        "é" * 127,
    ],
    ids=repr,
)
def test_safe_file_names_pass(name: str) -> None:
    assert check_file_name(name) == name


# Chunk 0 contents a hostile sender controls


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        bytes(INNER_FIXED_BYTES),
        bytes(INNER_FIXED_BYTES) + b"\xff",  # break code as metadata
        bytes(INNER_FIXED_BYTES) + b"\x81",  # truncated metadata
        bytes(INNER_FIXED_BYTES) + b"\x82\x02",  # truncated metadata
        bytes(INNER_FIXED_BYTES) + b"\xf6",  # null metadata
        bytes(INNER_FIXED_BYTES) + b"\x9f\x01\xff",  # indefinite metadata
        bytes(INNER_FIXED_BYTES) + b"\x81" * 1000 + b"\x01",  # deep metadata
        bytes(INNER_FIXED_BYTES) + b"\x82\x02\x7a\xff\xff\xff\xff",  # huge name length
        bytes(INNER_FIXED_BYTES) + canonical([2, "x" * 600]),  # oversized metadata
        bytes(INNER_FIXED_BYTES) + canonical([1]),  # well formed but unsigned
    ],
    ids=[
        "empty",
        "no-meta",
        "break",
        "truncated-1",
        "truncated-2",
        "null",
        "indefinite",
        "deep",
        "huge-name",
        "oversized",
        "unsigned",
    ],
)
def test_hostile_chunk_zero_raises_only_bundle_error(plaintext: bytes) -> None:
    with pytest.raises(BundleError):
        receive(BOB, ALICE.public, seal_inner(plaintext))


def test_node_id_and_bundle_id_types_do_not_mix() -> None:
    raw = bytes(range(16))
    assert NodeId(raw) != BundleId(raw)
