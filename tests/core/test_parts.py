"""Parts of a split file (docs/protocol.md section 25): the vectors, the header's rules,
and the part metadata decoder under hostile input."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rise_dtn.core import parts
from rise_dtn.core.bundle import ContentKind, Meta, Sealer
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError
from rise_dtn.core.parts import MAX_PARTS, PartHeader
from tests.core.test_vectors import load, open_bundle, people, seal_all
from tests.properties import examples, mutations, untrusted

VECTORS = load("parts.json")
PART_VECTORS = VECTORS["parts"]


def header_of(vector: dict[str, Any]) -> PartHeader:
    fields = vector["part"]
    return PartHeader(
        bytes.fromhex(fields["file_id_hex"]),
        fields["index"],
        fields["count"],
        fields["total_bytes"],
        fields["part_bytes"],
    )


@pytest.mark.parametrize("vector", PART_VECTORS, ids=[v["name"] for v in PART_VECTORS])
def test_part_vector_encodes(vector: dict[str, Any]) -> None:
    who = people("parts.json")
    header = header_of(vector)
    meta = Meta(ContentKind.PART, vector["meta"]["name"], header.length, header)
    assert meta.encode().hex() == vector["meta_hex"]
    sealer = Sealer(
        sender=who[vector["sender"]],
        recipient=who[vector["recipient"]].public,
        meta=meta,
        expiry=vector["expiry"],
        priority=vector["priority"],
        ephemeral_secret=bytes.fromhex(vector["ephemeral_secret_hex"]),
    )
    data = seal_all(sealer, bytes.fromhex(vector["payload_hex"]))
    assert data.hex() == vector["bundle_hex"]


def test_parts_reassemble_to_the_file_in_any_order() -> None:
    who = people("parts.json")
    file = bytes.fromhex(VECTORS["file_hex"])
    assert hashlib.sha256(file).hexdigest() == VECTORS["file_sha256"]
    rebuilt = bytearray(len(file))
    for vector in reversed(PART_VECTORS):  # the last first: order does not matter
        found = open_bundle(bytes.fromhex(vector["bundle_hex"]), who["bob"], who)
        meta = found["inner"].meta
        assert meta.kind is ContentKind.PART
        assert meta.part == header_of(vector)
        assert meta.size == len(found["payload"]) == vector["part"]["length"]
        rebuilt[meta.part.offset : meta.part.offset + meta.part.length] = found["payload"]
    assert bytes(rebuilt) == file


def test_part_metadata_from_the_spec_alone() -> None:
    """Section 25.2's array, written with cbor2 alone, is what rise-dtn signs."""
    for vector in PART_VECTORS:
        part = vector["part"]
        spec = cbor2.dumps(
            [
                5,
                vector["meta"]["name"],
                bytes.fromhex(part["file_id_hex"]),
                part["index"],
                part["count"],
                part["total_bytes"],
                part["part_bytes"],
            ]
        )
        assert spec.hex() == vector["meta_hex"]


@pytest.mark.parametrize(
    "vector", VECTORS["invalid_meta"], ids=[v["name"] for v in VECTORS["invalid_meta"]]
)
def test_invalid_part_metadata_is_rejected(vector: dict[str, str]) -> None:
    with pytest.raises(BundleError, match=vector["reason"].replace(".", r"\.")):
        Meta.decode(bytes.fromhex(vector["meta_hex"]))


def test_plan_covers_the_file_exactly() -> None:
    file_id = bytes(16)
    for total, size in [(1, 1), (208, 64), (192, 64), (12 << 20, 4 << 20), (10, 3)]:
        headers = parts.plan(file_id, total, size)
        assert [h.offset for h in headers] == list(range(0, total, size))
        assert sum(h.length for h in headers) == total
        assert all(0 < h.length <= size for h in headers)


def test_parts_of_another_shape_disagree() -> None:
    mine = PartHeader(bytes(16), 0, 4, 208, 64)
    assert mine.agrees_with(PartHeader(bytes(16), 3, 4, 208, 64)) is None
    reason = mine.agrees_with(PartHeader(bytes(16), 0, 5, 260, 64))
    assert reason == "its count (4) disagrees with earlier parts (5)"
    reason = mine.agrees_with(PartHeader(bytes(16), 0, 4, 200, 64))
    assert reason == "its total bytes (208) disagrees with earlier parts (200)"


def test_too_many_parts_is_refused_at_the_limit() -> None:
    PartHeader(bytes(16), MAX_PARTS - 1, MAX_PARTS, MAX_PARTS, 1)
    with pytest.raises(BundleError, match="too many parts"):
        PartHeader(bytes(16), 0, MAX_PARTS + 1, MAX_PARTS + 1, 1)


# -- the decoder under hostile input ----------------------------------------------------

field_values = st.one_of(
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.binary(max_size=20),
    st.text(max_size=20),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=examples(300))
@given(fields=st.lists(field_values, min_size=0, max_size=9))
def test_any_part_fields_decode_or_are_refused(fields: list[object]) -> None:
    try:
        data = cbor2.dumps([5, *fields])
    except (ValueError, OverflowError):
        return
    meta = untrusted(lambda: Meta.decode(data), BundleError)
    if meta is not None:
        assert meta.part is not None
        assert meta.encode() == canonical([5, meta.name, *meta.part.fields()])


@settings(max_examples=examples(300))
@given(
    index=st.integers(0, 70_000),
    count=st.integers(0, 70_000),
    total=st.integers(0, 2**51),
    size=st.integers(0, 2**40),
)
def test_numbers_decode_only_when_consistent(index: int, count: int, total: int, size: int) -> None:
    data = canonical([5, "f.bin", bytes(16), index, count, total, size])
    meta = untrusted(lambda: Meta.decode(data), BundleError)
    if meta is not None:
        assert meta.part is not None
        part = meta.part
        assert 0 <= part.index < part.count <= MAX_PARTS
        assert (part.count - 1) * part.part_bytes < part.total_bytes <= part.count * part.part_bytes
        assert 0 < part.length <= part.part_bytes


@settings(max_examples=examples(300))
@given(data=mutations(bytes.fromhex(PART_VECTORS[1]["meta_hex"])))
def test_mutated_part_metadata(data: bytes) -> None:
    untrusted(lambda: Meta.decode(data), BundleError)
