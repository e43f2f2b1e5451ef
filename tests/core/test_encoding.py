"""Canonical CBOR out, strict CBOR in: rise_dtn.core.encoding."""

from __future__ import annotations

import cbor2
import pytest

from rise_dtn.core.encoding import MAX_DEPTH, canonical, split_item, strict_loads
from rise_dtn.core.errors import BundleError, PeerError


def loads(data: bytes, *, max_bytes: int = 1000) -> object:
    return strict_loads(data, max_bytes=max_bytes, error=BundleError, what="test item")


def split(data: bytes, *, max_bytes: int = 1000) -> tuple[object, int]:
    return split_item(data, max_bytes=max_bytes, error=BundleError, what="test item")


PLAIN_VALUES = [
    0,
    1,
    23,
    24,
    255,
    256,
    2**64 - 1,
    -1,
    -(2**64),
    b"",
    b"\x00\xff",
    "",
    "ünïcødé",
    True,
    False,
    None,
    [],
    [1, [2, [3]]],
    {},
    {"b": 1, "a": 2, 3: [b"x"]},
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=repr)
def test_round_trip(value: object) -> None:
    encoded = canonical(value)  # type: ignore[arg-type]
    assert loads(encoded) == value
    if value is not None:  # see test_split_item_null_is_refused
        assert split(encoded + b"trailing raw bytes") == (value, len(encoded))


def test_canonical_sorts_map_keys_and_uses_shortest_forms() -> None:
    assert canonical({"b": 1, "a": 2}) == bytes([0xA2, 0x61, 0x61, 0x02, 0x61, 0x62, 0x01])
    assert canonical(23) == b"\x17"
    assert canonical(24) == b"\x18\x18"
    assert canonical(2**64 - 1) == b"\x1b" + b"\xff" * 8


def test_the_named_error_class_is_raised() -> None:
    with pytest.raises(PeerError, match=r"^card is not valid CBOR"):
        strict_loads(b"\xff", max_bytes=10, error=PeerError, what="card")


def test_size_bound_is_checked_before_decoding() -> None:
    assert loads(canonical(b"x" * 8), max_bytes=9) == b"x" * 8
    with pytest.raises(BundleError, match=r"too large \(10 > 9 bytes\)"):
        loads(canonical(b"x" * 9), max_bytes=9)


def test_depth_limit() -> None:
    value: object = 0
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert loads(canonical(value)) == value  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="nested too deeply"):
        loads(canonical([value]))  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="nested too deeply"):
        loads(canonical({"k": {"k": {"k": {"k": 1}}}}))


@pytest.mark.parametrize("depth", [10, 399, 400, 401, 1000, 5000])
@pytest.mark.parametrize("opener", [b"\x81", b"\x9f", b"\xa1\x00"], ids=["array", "indef", "map"])
def test_deep_nesting_is_refused(depth: int, opener: bytes) -> None:
    closer = b"\xff" if opener == b"\x9f" else b""
    data = opener * depth + b"\x00" + closer * depth
    with pytest.raises(BundleError):
        loads(data, max_bytes=len(data))
    with pytest.raises(BundleError):
        split(data, max_bytes=len(data))


NOT_STRICT = {
    "empty": b"",
    "trailing": b"\x00\x00",
    "non-shortest int": b"\x18\x01",
    "non-shortest length": b"\x58\x01x",
    "indefinite bytes": b"\x5f\x41x\xff",
    "indefinite array": b"\x9f\x01\xff",
    "indefinite map": b"\xbf\x01\x02\xff",
    "unsorted map": b"\xa2\x02\x00\x01\x00",
    "duplicate keys": b"\xa2\x01\x00\x01\x01",
    "half float": b"\xf9\x3c\x00",
    "double": b"\xfb" + bytes(8),
    "undefined": b"\xf7",
    "simple value": b"\xf8\x20",
    "break": b"\xff",
    "reserved additional info": b"\x1c",
    "epoch tag": b"\xc1\x00",
    "date tag": b"\xc0\x6020",
    "unknown tag": b"\xd8\x64\x00",
    "bignum equal to a small int": b"\xc2\x41\x01",
    "positive bignum": b"\xc2\x49\x01" + bytes(8),
    "negative bignum": b"\xc3\x49\x01" + bytes(8),
    "bignum in a list": b"\x81\xc2\x49\x01" + bytes(8),
    "set tag": b"\xd9\x01\x02\x80",
    "shared value": b"\xd8\x1c\x81\x00",
    "shared reference": b"\x81\xd8\x1d\x00",
    "string reference namespace": b"\xd9\x01\x00\x00",
    "self-describe tag": b"\xd9\xd9\xf7\x00",
    "invalid utf-8": b"\x62\xc3\x28",
    "encoded surrogate": b"\x63\xed\xa0\x80",
    "array as map key": b"\xa1\x81\x00\x00",
    "map as map key": b"\xa1\xa0\x00",
    "huge array": b"\x9b" + b"\xff" * 8,
    "huge map": b"\xbb" + b"\x7f" + b"\xff" * 7,
    "huge bytes": b"\x5b" + b"\xff" * 8,
    "huge text": b"\x7a\xff\xff\xff\xff",
    "truncated bytes": b"\x45abc",
}


@pytest.mark.parametrize("data", NOT_STRICT.values(), ids=NOT_STRICT.keys())
def test_strict_loads_refuses(data: bytes) -> None:
    with pytest.raises(BundleError):
        loads(data)


# Followed by more bytes, these three are (or start) valid items.
SPLIT_REFUSES = {
    name: data
    for name, data in NOT_STRICT.items()
    if name not in {"trailing", "empty", "truncated bytes"}
}


@pytest.mark.parametrize("data", SPLIT_REFUSES.values(), ids=SPLIT_REFUSES.keys())
def test_split_item_refuses(data: bytes) -> None:
    with pytest.raises(BundleError):
        split(data + b"\x00rest")


def test_split_item_reports_truncation_and_the_window() -> None:
    with pytest.raises(BundleError, match="truncated"):
        split(b"\x82\x01")
    # The item is larger than the window: it reads as truncated.
    with pytest.raises(BundleError, match="truncated"):
        split(canonical(b"x" * 20), max_bytes=10)
    assert split(canonical(b"x" * 8) + b"more", max_bytes=9) == (b"x" * 8, 9)


def test_split_item_null_is_refused() -> None:
    # null is not a structure rise-dtn ever frames with split_item
    with pytest.raises(BundleError):
        split(b"\xf6rest")


def test_largest_64_bit_integers_are_plain() -> None:
    assert loads(b"\x1b" + b"\xff" * 8) == 2**64 - 1
    assert loads(b"\x3b" + b"\xff" * 8) == -(2**64)


def test_canonical_and_cbor2_agree() -> None:
    value = {"z": [1, b"2", "3"], "a": {"n": None}}
    assert cbor2.loads(canonical(value)) == value
