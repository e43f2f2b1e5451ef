"""Fuzzing the decoders of untrusted bytes, and round trips of every codec.

The invariant (STYLE.md section 4): decoding untrusted bytes raises only
BundleError (bundles, acks, metadata) or PeerError (cards); the key file, which
is the user's own, raises only UsageError. Any other exception escapes
`only()` and fails the test with Hypothesis's shrunk example.

In CI every test is deterministic (the `ci` profile, tests/properties.py)
and the whole module runs in a few seconds; `./dev fuzz` runs it with random
seeds and 100 times the examples.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import cbor2
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from test_codec_support import (
    ALICE,
    BOB,
    EPHEMERAL,
    EXPIRY,
    NOW,
    receive,
    seal_bundle,
    seal_inner,
)

from rise_dtn.core import ack as ack_module
from rise_dtn.core.bundle import (
    INNER_FIXED_BYTES,
    MAGIC,
    MAX_EXPIRY,
    MAX_PRIORITY,
    VERSION,
    ContentKind,
    Meta,
    check_file_name,
    parse_clear,
    signed_message,
)
from rise_dtn.core.card import ARMOR_BEGIN, ARMOR_END, CARD_SIGNATURE_CONTEXT, Card
from rise_dtn.core.encoding import canonical, split_item, strict_loads
from rise_dtn.core.errors import BundleError, PeerError, UsageError
from rise_dtn.core.identity import BundleId, Identity, NodeId, exchange_public_for
from tests.properties import examples, mutations, untrusted

FUZZ = settings(
    max_examples=examples(150),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(FUZZ, max_examples=examples(60))


def only(error: type[Exception], decode: Callable[[], object]) -> object:
    """Run `decode`; swallow `error` (the documented one), let anything else fail the test."""
    return untrusted(decode, error)


# Valid encodings to mutate

CARD = Card.create(ALICE, name="alice", addresses=(("tcp", "alice.example:5454"),), now=NOW)
CARD_BYTES = CARD.to_bytes()
ACK = ack_module.Ack(BOB.node_id, ALICE.node_id, NOW, (BundleId(bytes(16)), BundleId(b"1" * 16)))
ACK_BYTES = ACK.encode(BOB)
FILE_META = Meta(ContentKind.FILE, "plan.txt", 5)
SMALL_BUNDLE = seal_bundle(b"hello", meta=FILE_META)
EPHEMERAL_PUBLIC = exchange_public_for(EPHEMERAL)
SIGNATURE_PLACEHOLDER = bytes(64)

HEADER_FIELDS: list[object] = [
    BOB.node_id.raw,
    EXPIRY,
    7,
    parse_clear(SMALL_BUNDLE).header.body_length,
]
META_FIELDS: list[object] = [int(ContentKind.FILE), "plan.txt", 5]
CARD_FIELDS: list[object] = strict_loads(CARD_BYTES, max_bytes=9000, error=PeerError, what="card")  # type: ignore[assignment]
ACK_FIELDS: list[object] = [BOB.node_id.raw, ALICE.node_id.raw, NOW, [bytes(16)]]
KEYFILE_FIELDS: list[object] = strict_loads(
    ALICE.to_keyfile(), max_bytes=256, error=UsageError, what="key file"
)  # type: ignore[assignment]


# Decoders, each fed one untrusted byte string in the place it would arrive


def decode_clear(data: bytes) -> object:
    return only(BundleError, lambda: parse_clear(data))


def decode_header_item(item: bytes) -> object:
    return decode_clear(MAGIC + bytes([VERSION]) + item + EPHEMERAL_PUBLIC + bytes(100))


def decode_meta(data: bytes) -> object:
    return only(BundleError, lambda: Meta.decode(data))


def decode_bundle(data: bytes) -> object:
    return only(BundleError, lambda: receive(BOB, ALICE.public, data))


def decode_inner(plaintext: bytes) -> object:
    """Chunk 0 as a hostile sender may write it: it passes authentication."""
    return decode_bundle(seal_inner(plaintext))


def decode_signed_meta(meta_bytes: bytes) -> object:
    """Metadata that even carries a valid signature by the sender."""
    message = signed_message(BOB.node_id, EXPIRY, EPHEMERAL_PUBLIC, meta_bytes)
    return decode_inner(ALICE.node_id.raw + ALICE.sign(message) + meta_bytes + b"payload")


def decode_card(data: bytes) -> object:
    return only(PeerError, lambda: Card.from_bytes(data))


def decode_card_text(text: str) -> object:
    return only(PeerError, lambda: Card.from_text(text))


def armor(data: bytes) -> str:
    return "\n".join([ARMOR_BEGIN, "", base64.b64encode(data).decode("ascii"), ARMOR_END])


def decode_ack(data: bytes) -> object:
    return only(
        BundleError, lambda: ack_module.Ack.decode(data, sender=BOB.public, recipient=ALICE.node_id)
    )


def ack_around(body: bytes) -> bytes:
    """An ack with `body`, validly signed by its claimed sender."""
    signature = BOB.sign(ack_module.SIGNATURE_CONTEXT + body)
    return ack_module.MAGIC + bytes([ack_module.VERSION]) + body + signature


def decode_strict(data: bytes) -> object:
    return only(
        BundleError, lambda: strict_loads(data, max_bytes=1 << 20, error=BundleError, what="item")
    )


def decode_split(data: bytes) -> object:
    return only(
        BundleError, lambda: split_item(data, max_bytes=512, error=BundleError, what="item")
    )


def decode_keyfile(data: bytes) -> object:
    return only(UsageError, lambda: Identity.from_keyfile(data))


def card_signed(signed_part: bytes) -> bytes:
    """A card from the encoding of its 7-item signed part, with Alice's valid signature."""
    signature = ALICE.sign(CARD_SIGNATURE_CONTEXT + signed_part)
    return bytes([0x88]) + signed_part[1:] + canonical(signature)


BYTE_DECODERS: dict[str, Callable[[bytes], object]] = {
    "strict_loads": decode_strict,
    "split_item": decode_split,
    "parse_clear": decode_clear,
    "hop header": decode_header_item,
    "Meta.decode": decode_meta,
    "bundle": decode_bundle,
    "chunk 0": decode_inner,
    "chunk 0 metadata": lambda item: decode_inner(bytes(INNER_FIXED_BYTES) + item + b"payload"),
    "signed metadata": decode_signed_meta,
    "Card.from_bytes": decode_card,
    "Card.from_text": lambda item: decode_card_text(armor(item)),
    "Ack.decode": decode_ack,
    "ack body": lambda item: decode_ack(ack_around(item)),
    "key file": decode_keyfile,
}


# Raw CBOR, written head by head so that it can be anything a hostile peer sends


def head(major: int, argument: int, width: int | None = None) -> bytes:
    """A CBOR head; `width` forces a non-shortest argument (0 = in the initial byte)."""
    if width is None:
        limits = [(0, 24), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32), (8, 1 << 64)]
        width = next(size for size, limit in limits if argument < limit)
    if width == 0:
        return bytes([major << 5 | argument])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + argument.to_bytes(width, "big")


widths = st.sampled_from([None, None, None, 1, 2, 4, 8])  # mostly shortest form


@st.composite
def raw_scalar(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 11))
    if kind <= 1:  # unsigned or negative integer
        value = draw(st.integers(0, 2**64 - 1) | st.integers(0, 30))
        width = draw(widths)
        if width is not None and value >= 1 << (8 * width):
            width = None
        return head(kind, value, width)
    if kind <= 3:  # byte or text string, maybe invalid UTF-8
        content = draw(st.binary(max_size=40))
        if kind == 3 and draw(st.booleans()):
            content = draw(st.text(max_size=20)).encode("utf-8")
        return head(kind, len(content), draw(widths)) + content
    if kind == 4:  # a huge claimed length or count
        major = draw(st.sampled_from([2, 3, 4, 5]))
        return head(major, draw(st.integers(2**16, 2**64 - 1)), 8) + draw(st.binary(max_size=8))
    if kind == 5:  # floats
        size = draw(st.sampled_from([2, 4, 8]))
        return bytes([0xF9 + {2: 0, 4: 1, 8: 2}[size]]) + draw(
            st.binary(min_size=size, max_size=size)
        )
    if kind == 6:  # simple values, true, false, null, undefined, break, reserved
        return draw(
            st.sampled_from(
                [
                    b"\xf4",
                    b"\xf5",
                    b"\xf6",
                    b"\xf7",
                    b"\xff",
                    b"\xf8\x20",
                    b"\xf8\x00",
                    b"\x1c",
                    b"\x5f",
                    b"\xfc",
                ]
            )
        )
    if kind == 7:  # bignums
        magnitude = draw(st.binary(max_size=12))
        return head(6, draw(st.sampled_from([2, 3]))) + head(2, len(magnitude)) + magnitude
    if kind == 8:  # a tag on a small item
        tag = draw(
            st.sampled_from([0, 1, 4, 5, 21, 24, 25, 28, 29, 30, 32, 35, 256, 258, 55799, 2**32])
        )
        return head(6, tag) + draw(
            st.sampled_from([b"\x00", b"\x60", b"\x81\x00", b"\x40", b"\xc1\x00", b"\x82\x01\x02"])
        )
    if kind == 9:  # the encodings of rise-dtn's own magic strings and ids
        return canonical(
            draw(st.sampled_from(["rise-dtn card", "rise-dtn secret key", BOB.node_id.raw, 1, 2]))
        )
    if kind == 10:  # an indefinite-length string made of chunks
        major = draw(st.sampled_from([2, 3]))
        chunks = draw(st.lists(st.binary(max_size=4), max_size=3))
        return (
            bytes([major << 5 | 31]) + b"".join(head(major, len(c)) + c for c in chunks) + b"\xff"
        )
    return draw(st.binary(min_size=1, max_size=3))  # anything at all


def raw_containers(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def container(draw: st.DrawFn) -> bytes:
        items = draw(st.lists(children, max_size=5))
        kind = draw(st.integers(0, 4))
        if kind == 0:  # definite array, maybe with a wrong count
            count = len(items) + draw(st.sampled_from([0, 0, 0, 1, -1]))
            return head(4, max(count, 0)) + b"".join(items)
        if kind == 1:  # indefinite array, maybe without its break
            return b"\x9f" + b"".join(items) + draw(st.sampled_from([b"\xff", b"\xff", b""]))
        if kind == 2:  # definite map (odd item counts are malformed)
            return head(5, len(items) // 2 + draw(st.sampled_from([0, 0, 1]))) + b"".join(items)
        if kind == 3:  # indefinite map
            return b"\xbf" + b"".join(items) + b"\xff"
        return head(6, draw(st.sampled_from([2, 24, 28, 258, 260]))) + (
            items[0] if items else b"\x80"
        )

    return container()


raw_cbor = st.recursive(raw_scalar(), raw_containers, max_leaves=12)


def nested(opener: bytes, depth: int, leaf: bytes = b"\x00", closer: bytes = b"") -> bytes:
    return opener * depth + leaf + closer * depth


HOSTILE_ITEMS = {
    "deep array 1000": nested(b"\x81", 1000),
    "deep array 5000": nested(b"\x81", 5000),
    "deep indefinite 1000": nested(b"\x9f", 1000, closer=b"\xff"),
    "deep indefinite unclosed": nested(b"\x9f", 3000),
    "deep map 1000": nested(b"\xa1\x00", 1000),
    "deep tags 1000": nested(b"\xd8\x18", 1000),
    "deep shared 500": nested(b"\xd8\x1c\x81", 500),
    "huge array": head(4, 2**64 - 1, 8),
    "huge map": head(5, 2**63, 8),
    "huge bytes": head(2, 2**64 - 1, 8) + b"abc",
    "huge text": head(3, 2**32, 8) + b"abc",
    "huge array of huge arrays": head(4, 2**32, 8) + head(4, 2**32, 8) * 100,
    "wide array": head(4, 3000) + b"\x00" * 3000,
    "bignum 2**64": b"\xc2\x49\x01" + bytes(8),
    "bignum huge": b"\xc2\x58\x40" + b"\xff" * 64,
    "negative bignum": b"\xc3\x49\x01" + bytes(8),
    "half float": b"\xf9\x7e\x00",
    "double nan": b"\xfb\x7f\xf8" + bytes(6),
    "epoch tag": b"\xc1\x1a\xff\xff\xff\xff",
    "epoch tag float": b"\xc1\xfb\x7f\xf0" + bytes(6),
    "date tag garbage": b"\xc0\x63abc",
    "decimal fraction": b"\xc4\x82\x21\x19\x6a\xb3",
    "regex tag": b"\xd8\x23\x61(",
    "uuid tag short": b"\xd8\x25\x41\x00",
    "ipaddress tag": b"\xd9\x01\x04\x41\x00",
    "mime tag": b"\xd8\x24\x61x",
    "set tag": b"\xd9\x01\x02\x81\x00",
    "shared ref undefined": b"\xd8\x1d\x05",
    "stringref without namespace": b"\xd8\x19\x00",
    "self-describe": b"\xd9\xd9\xf7\x80",
    "unknown tag": b"\xdb" + b"\xff" * 8 + b"\x00",
    "simple 255": b"\xf8\xff",
    "undefined": b"\xf7",
    "break": b"\xff",
    "reserved": b"\x1d",
    "indefinite uint": b"\x1f",
    "indefinite bytes with text chunk": b"\x5f\x61a\xff",
    "nested indefinite strings": b"\x5f\x5f\xff\xff",
    "invalid utf-8": b"\x63\xff\xfe\xfd",
    "encoded surrogate": b"\x63\xed\xb0\x80",
    "array map key": b"\xa1\x81\x00\x00",
    "map map key": b"\xa1\xa1\x00\x00\x00",
    "float map key": b"\xa1\xf9\x00\x00\x00",
    "duplicate map keys": b"\xa2\x00\x00\x00\x00",
    "trailing bytes": b"\x80\x00",
    "empty": b"",
}


@pytest.mark.parametrize("item", HOSTILE_ITEMS.values(), ids=HOSTILE_ITEMS.keys())
@pytest.mark.parametrize("decoder", BYTE_DECODERS.values(), ids=BYTE_DECODERS.keys())
def test_hostile_cbor_in_every_decoder(decoder: Callable[[bytes], object], item: bytes) -> None:
    decoder(item)  # a plain "wide array" is valid CBOR; the rest fail, but only as documented


def splice(fields: list[object], index: int, item: bytes) -> bytes:
    """The canonical array of `fields` with field `index` replaced by raw CBOR `item`."""
    parts = [item if n == index else canonical(field) for n, field in enumerate(fields)]  # type: ignore[arg-type]
    return head(4, len(fields)) + b"".join(parts)


STRUCTURES: dict[str, tuple[list[object], Callable[[bytes], object]]] = {
    "hop header": (HEADER_FIELDS, decode_header_item),
    "metadata": (META_FIELDS, decode_meta),
    "signed metadata": (META_FIELDS, decode_signed_meta),
    "card": (CARD_FIELDS, decode_card),
    "signed card": (CARD_FIELDS[:7], lambda signed_part: decode_card(card_signed(signed_part))),
    "ack": (ACK_FIELDS, lambda body: decode_ack(ack_around(body))),
    "key file": (KEYFILE_FIELDS, decode_keyfile),
}


@pytest.mark.parametrize("item", HOSTILE_ITEMS.values(), ids=HOSTILE_ITEMS.keys())
@pytest.mark.parametrize("structure", STRUCTURES.values(), ids=STRUCTURES.keys())
def test_hostile_cbor_in_every_field(
    structure: tuple[list[object], Callable[[bytes], object]], item: bytes
) -> None:
    fields, decoder = structure
    for index in range(len(fields)):
        assert decoder(splice(fields, index, item)) is None, index


# Arbitrary bytes and raw CBOR


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=SMALL_BUNDLE[:80])
@example(data=CARD_BYTES)
@example(data=ACK_BYTES)
def test_arbitrary_bytes(data: bytes) -> None:
    for decoder in BYTE_DECODERS.values():
        decoder(data)


@FUZZ
@given(item=raw_cbor, trailing=st.sampled_from([b"", b"", b"\x00", b"\xff"]))
def test_raw_cbor(item: bytes, trailing: bytes) -> None:
    for decoder in BYTE_DECODERS.values():
        decoder(item + trailing)


@FUZZ
@given(
    value=st.recursive(
        st.one_of(
            st.integers(-(2**70), 2**70),
            st.binary(max_size=20),
            st.text(max_size=10),
            st.booleans(),
            st.none(),
            st.floats(),
            st.just(cbor2.undefined),
            st.builds(cbor2.CBORTag, st.integers(0, 2**20), st.integers(0, 100)),
        ),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.integers(0, 5) | st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=10,
    ),
    canonical_form=st.booleans(),
)
def test_cbor2_encoded_values(value: object, canonical_form: bool) -> None:
    try:
        data = cbor2.dumps(value, canonical=canonical_form)
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        assume(False)
    for decoder in BYTE_DECODERS.values():
        decoder(data)


# Plain but wrongly typed values in each field, canonically encoded

plain = st.recursive(
    st.one_of(
        st.integers(-(2**64), 2**64 - 1),
        st.sampled_from([0, 1, 2, 255, 256, -1, 2**63, 2**63 - 1, True, False, None]),
        st.binary(max_size=40),
        st.sampled_from([bytes(16), bytes(32), bytes(64), b"\x00" * 15, b"\x00" * 17]),
        st.text(max_size=20),
        st.sampled_from(["", ".", "..", "../x", "a/b", "x\x00", "rise-dtn card", "alice\n"]),
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.integers(0, 3) | st.text(max_size=2), children, max_size=2)
    ),
    max_leaves=8,
)


@FUZZ
@given(
    structure=st.sampled_from(list(STRUCTURES)),
    data=st.data(),
)
def test_wrong_types_in_fields(structure: str, data: st.DataObject) -> None:
    fields, decoder = STRUCTURES[structure]
    index = data.draw(st.integers(0, len(fields) - 1))
    changed = list(fields)
    changed[index] = data.draw(plain)
    if data.draw(st.booleans()):  # drop or add a field too
        changed = changed[:-1] if data.draw(st.booleans()) else [*changed, data.draw(plain)]
    decoder(canonical(changed))  # type: ignore[arg-type]


@FUZZ
@given(structure=st.sampled_from(list(STRUCTURES)), data=st.data())
def test_raw_cbor_in_fields(structure: str, data: st.DataObject) -> None:
    fields, decoder = STRUCTURES[structure]
    index = data.draw(st.integers(0, len(fields) - 1))
    decoder(splice(fields, index, data.draw(raw_cbor)))


# Byte-level mutations of valid encodings


@FUZZ
@given(data=mutations(SMALL_BUNDLE))
def test_mutated_bundle(data: bytes) -> None:
    decode_bundle(data)
    decode_clear(data)


@FUZZ
@given(data=mutations(CARD_BYTES))
def test_mutated_card(data: bytes) -> None:
    assert decode_card(data) is None
    decode_card_text(armor(data))


@FUZZ
@given(data=mutations(ACK_BYTES))
def test_mutated_ack(data: bytes) -> None:
    assert decode_ack(data) is None


@FUZZ
@given(data=mutations(ALICE.to_keyfile()))
def test_mutated_keyfile(data: bytes) -> None:
    decode_keyfile(data)


@FUZZ
@given(data=mutations(FILE_META.encode()))
def test_mutated_meta(data: bytes) -> None:
    decode_meta(data)
    decode_signed_meta(data)


@FUZZ
@given(
    text=st.text(max_size=200)
    | st.builds(
        lambda body, header: "\n".join([ARMOR_BEGIN, header, body, ARMOR_END]),
        st.text(alphabet=st.characters(codec="ascii"), max_size=200),
        st.text(max_size=30),
    )
    | mutations(CARD.armor().encode()).map(lambda data: data.decode("utf-8", "replace"))
)
def test_card_text(text: str) -> None:
    decode_card_text(text)


@FUZZ
@given(plaintext=st.binary(max_size=200), meta=raw_cbor)
def test_authenticated_chunk_zero(plaintext: bytes, meta: bytes) -> None:
    decode_inner(plaintext)
    decode_inner(ALICE.node_id.raw + bytes(64) + meta + plaintext)
    decode_signed_meta(meta)


# Round trips


def is_safe_name(name: str) -> bool:
    try:
        check_file_name(name)
    except BundleError:
        return False
    return True


file_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80).filter(
    is_safe_name
)
metas = st.just(Meta(ContentKind.MESSAGE)) | st.builds(
    Meta, st.just(ContentKind.FILE), file_names, st.none() | st.integers(0, 2**64 - 1)
)
identities = st.builds(
    Identity.from_seeds, st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32)
)


@ROUND_TRIP
@given(meta=metas)
def test_meta_round_trip(meta: Meta) -> None:
    assert Meta.decode(meta.encode()) == meta


@ROUND_TRIP
@given(value=plain)
def test_strict_loads_round_trip(value: object) -> None:
    encoded = canonical(value)  # type: ignore[arg-type]
    decoded = decode_strict(encoded)
    if decoded is not None or value is None:
        assert canonical(decoded) == encoded  # type: ignore[arg-type]


@ROUND_TRIP
@given(
    identity=identities,
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    addresses=st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=60)),
        max_size=4,
    ).map(tuple),
    created=st.integers(0, 2**64 - 1),
)
def test_card_round_trip(
    identity: Identity, name: str, addresses: tuple[tuple[str, str], ...], created: int
) -> None:
    card = Card.create(identity, name=name, addresses=addresses, now=created)
    assert Card.from_bytes(card.to_bytes()) == card
    assert Card.from_text(card.armor()) == card
    assert card.node_id == identity.node_id


@ROUND_TRIP
@given(
    ids=st.lists(st.binary(min_size=16, max_size=16).map(BundleId), min_size=1, max_size=20),
    created=st.integers(0, 2**64 - 1),
)
def test_ack_round_trip(ids: list[BundleId], created: int) -> None:
    ack = ack_module.Ack(BOB.node_id, ALICE.node_id, created, tuple(ids))
    assert ack_module.Ack.decode(ack.encode(BOB), sender=BOB.public, recipient=ALICE.node_id) == ack


@ROUND_TRIP
@given(identity=identities)
def test_keyfile_round_trip(identity: Identity) -> None:
    assert Identity.from_keyfile(identity.to_keyfile()) == identity


@ROUND_TRIP
@given(raw=st.binary(min_size=16, max_size=16))
def test_node_id_text_round_trip(raw: bytes) -> None:
    assert NodeId.parse(str(NodeId(raw))) == NodeId(raw)


@ROUND_TRIP
@given(
    payload=st.binary(max_size=4096),
    meta=metas,
    expiry=st.integers(0, MAX_EXPIRY),
    priority=st.integers(0, MAX_PRIORITY),
    ephemeral_secret=st.binary(min_size=32, max_size=32),
)
def test_bundle_round_trip(
    payload: bytes, meta: Meta, expiry: int, priority: int, ephemeral_secret: bytes
) -> None:
    data = seal_bundle(
        payload, meta=meta, expiry=expiry, priority=priority, ephemeral_secret=ephemeral_secret
    )
    clear = parse_clear(data)
    assert (clear.header.recipient, clear.header.expiry, clear.header.priority) == (
        BOB.node_id,
        expiry,
        priority,
    )
    inner, opened = receive(BOB, ALICE.public, data)
    assert opened == payload
    assert inner.meta == meta
    assert inner.sender == ALICE.node_id
