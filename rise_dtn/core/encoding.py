"""Canonical CBOR out, strict CBOR in.

Everything rise-dtn signs, hashes or sends is built by `canonical()` so that
one value has one encoding (docs/protocol.md, "Encoding"). `strict_loads()`
is the only way untrusted CBOR enters the program: it bounds size and depth,
refuses tags, floats and trailing bytes, and raises only the error class the
caller names.
"""

from __future__ import annotations

from typing import Any

import cbor2

# Plain data that may appear in a rise-dtn CBOR object: no tags, no floats.
Plain = int | bytes | str | bool | None | list[Any] | dict[Any, Any]

# The deepest rise-dtn structure is a card: card array > address list > pair >
# string, four levels. Anything deeper is refused before it can exhaust the
# stack ("[[[[...]]]]"); a new, deeper structure must raise this on purpose.
MAX_DEPTH = 4


def canonical(value: Plain) -> bytes:
    """Encode `value` in deterministic CBOR (RFC 8949 section 4.2.1)."""
    return cbor2.dumps(value, canonical=True)


def _refuse_tag(_decoder: object, tag: object) -> object:
    raise ValueError("CBOR tags are not allowed")


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("CBOR nested too deeply")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) and not -(1 << 64) <= value < (1 << 64):
        # cbor2 decodes bignums (tags 2 and 3) itself, without calling the tag hook.
        raise ValueError("CBOR bignums are not allowed")
    if isinstance(value, int | bytes | str):
        return
    if isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
        return
    raise ValueError(f"CBOR type {type(value).__name__} is not allowed")


def strict_loads(data: bytes, *, max_bytes: int, error: type[Exception], what: str) -> Plain:
    """Decode exactly one CBOR item of at most `max_bytes`, or raise `error`.

    `what` names the object in the one-line message ("bundle header").
    """
    if len(data) > max_bytes:
        raise error(f"{what} is too large ({len(data)} > {max_bytes} bytes)")
    # A hostile item can nest deeper than MAX_DEPTH only if it has more bytes
    # than MAX_DEPTH, so the size bound also bounds cbor2's recursion.
    try:
        value = cbor2.loads(data, tag_hook=_refuse_tag)
        _check(value, 1)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise error(f"{what} is not valid CBOR: {_short(exc)}") from None
    if canonical(value) != data:
        raise error(f"{what} is not in canonical CBOR form")
    return value  # type: ignore[no-any-return]


def split_item(
    data: bytes, *, max_bytes: int, error: type[Exception], what: str
) -> tuple[Plain, int]:
    """Decode the first CBOR item of `data`; return it and its encoded length.

    Used where a CBOR header is followed by raw bytes (bundle bodies).
    """
    window = data[:max_bytes]
    try:
        value = cbor2.loads(window, tag_hook=_refuse_tag)
    except cbor2.CBORDecodeEOF:
        raise error(f"{what} is truncated or larger than {max_bytes} bytes") from None
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError):
        value = None
    # cbor2's loads() stops after the first item without saying where, so find
    # the item's length by re-encoding: canonical form makes it unique.
    try:
        encoded = canonical(value) if value is not None else b""
    except (TypeError, ValueError, cbor2.CBOREncodeError):
        encoded = b""
    if not encoded or not window.startswith(encoded):
        raise error(f"{what} is not valid canonical CBOR")
    checked = strict_loads(encoded, max_bytes=max_bytes, error=error, what=what)
    return checked, len(encoded)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
