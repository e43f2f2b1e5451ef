"""Shared fixtures for the core codec tests: fixed identities, sealing and the receive path.

`seal_bundle` drives `Sealer` exactly as `rise_dtn/node/send/send.py` `_seal_stream`
does (chunk 0 takes `first_payload_bytes`, later chunks CHUNK_BYTES, the last
one is final), but in memory. `receive` runs the whole receive path in the
order `rise_dtn/store/spool.py` `read_clear` and `rise_dtn/node/toss/toss.py`
`_deliver` do: parse the clear part, check the size against the header, open
chunk 0, verify the sender, open the rest. The other test modules import these
helpers; the tests here check that the helpers agree with the library.
"""

from __future__ import annotations

import dataclasses

import pytest

from rise_dtn.core import sealing
from rise_dtn.core.bundle import (
    MAX_CLEAR_BYTES,
    ContentKind,
    HopHeader,
    Inner,
    Meta,
    Opener,
    Sealer,
    parse_clear,
)
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import (
    PUBLIC_KEY_BYTES,
    Identity,
    PublicIdentity,
    exchange_public_for,
    x25519,
)

ALICE = Identity.from_seeds(bytes([1]) * 32, bytes([2]) * 32)
BOB = Identity.from_seeds(bytes([3]) * 32, bytes([4]) * 32)
CAROL = Identity.from_seeds(bytes([5]) * 32, bytes([6]) * 32)
MALLORY = Identity.from_seeds(bytes([7]) * 32, bytes([8]) * 32)
EPHEMERAL = bytes([9]) * 32
OTHER_EPHEMERAL = bytes([10]) * 32
NOW = 1_700_000_000
EXPIRY = NOW + 86_400
MESSAGE = Meta(ContentKind.MESSAGE)


def pattern(size: int) -> bytes:
    """Deterministic payload whose period (251) is prime, so a moved chunk never matches."""
    block = bytes(range(251))
    return (block * (size // len(block) + 1))[:size]


def make_sealer(
    *,
    sender: Identity = ALICE,
    recipient: PublicIdentity | None = None,
    meta: Meta = MESSAGE,
    expiry: int = EXPIRY,
    priority: int = 128,
    ephemeral_secret: bytes = EPHEMERAL,
) -> Sealer:
    return Sealer(
        sender=sender,
        recipient=recipient if recipient is not None else BOB.public,
        meta=meta,
        expiry=expiry,
        priority=priority,
        ephemeral_secret=ephemeral_secret,
    )


def seal_chunks(sealer: Sealer, payload: bytes) -> list[bytes]:
    """The sealed chunks, split like send.py `_seal_stream` splits a stream."""
    chunks = []
    expected = sealer.first_payload_bytes
    current = payload[:expected]
    offset = len(current)
    while True:
        following = (
            payload[offset : offset + sealing.CHUNK_BYTES] if len(current) == expected else b""
        )
        offset += len(following)
        expected = sealing.CHUNK_BYTES
        final = not following
        chunks.append(sealer.seal(current, final=final))
        if final:
            return chunks
        current = following


def seal_bundle(payload: bytes, **sealer_options: object) -> bytes:
    """A whole bundle (clear part and sealed chunks) in memory; see make_sealer for options."""
    sealer = make_sealer(**sealer_options)  # type: ignore[arg-type]
    chunks = seal_chunks(sealer, payload)
    return sealer.clear_part(len(payload)) + b"".join(chunks)


def seal_inner(
    inner_plaintext: bytes,
    *,
    recipient: PublicIdentity | None = None,
    expiry: int = EXPIRY,
    priority: int = 128,
    ephemeral_secret: bytes = EPHEMERAL,
) -> bytes:
    """A one-chunk bundle whose chunk 0 holds exactly `inner_plaintext`.

    Sealer always writes a well-formed sender id, signature and metadata; this
    builds what a hostile sender could write instead, correctly encrypted, so
    that the parsing behind the authentication check is reachable.
    """
    recipient = recipient if recipient is not None else BOB.public
    ephemeral_public = exchange_public_for(ephemeral_secret)
    shared = x25519(ephemeral_secret, recipient.exchange_public)
    key = sealing.derive_key(shared, ephemeral_public, recipient.exchange_public)
    header = HopHeader(recipient.node_id, expiry, priority, 0)
    chunk = sealing.seal_chunk(
        key, 0, inner_plaintext, final=True, aad=header.binding(ephemeral_public)
    )
    header = dataclasses.replace(header, body_length=PUBLIC_KEY_BYTES + len(chunk))
    return header.encode() + ephemeral_public + chunk


def rewrite_header(data: bytes, **changes: int) -> bytes:
    """Re-encode the hop header with some fields changed, keeping E and the chunks."""
    clear = parse_clear(data[:MAX_CLEAR_BYTES])
    header = dataclasses.replace(clear.header, **changes)  # type: ignore[arg-type]
    return header.encode() + clear.ephemeral_public + data[clear.size :]


def receive(identity: Identity, sender_public: PublicIdentity, data: bytes) -> tuple[Inner, bytes]:
    """The full receive path of one bundle file; returns the inner part and the payload."""
    clear = parse_clear(data[:MAX_CLEAR_BYTES])
    if len(data) != clear.total_bytes:
        raise BundleError(f"bundle size {len(data)} does not match the header")
    opener = Opener(identity, clear)
    offset = clear.size + opener.first_chunk_bytes
    inner, first_payload = opener.open_first(data[clear.size : offset])
    opener.verify_sender(inner, sender_public)
    parts = [first_payload]
    for index, size in opener.chunk_sizes():
        parts.append(opener.open(index, data[offset : offset + size]))
        offset += size
    assert offset == len(data)
    return inner, b"".join(parts)


def open_all(identity: Identity, sender_public: PublicIdentity, data: bytes) -> bytes:
    """The payload of a bundle after the full receive path."""
    return receive(identity, sender_public, data)[1]


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


def rejected(identity: Identity, sender_public: PublicIdentity, data: bytes) -> bool:
    """True if the receive path refuses `data` with a BundleError; other errors propagate."""
    try:
        receive(identity, sender_public, data)
    except BundleError:
        return True
    return False


def test_seal_bundle_matches_the_sizes_the_sealer_announces() -> None:
    for size in (0, 1, 1000):
        sealer = make_sealer()
        data = seal_bundle(pattern(size))
        clear = parse_clear(data)
        assert clear.total_bytes == len(data)
        assert clear.header.body_length == sealer.body_length(size)
        assert data.startswith(sealer.clear_part(size))


def test_seal_inner_with_a_sealer_prefix_opens_like_a_sealed_bundle() -> None:
    sealer = make_sealer()
    prefix = seal_chunks(sealer, b"hi")
    assert len(prefix) == 1
    inner, payload = receive(BOB, ALICE.public, seal_bundle(b"hi"))
    forged = seal_inner(ALICE.node_id.raw + inner.signature + inner.meta_bytes + b"hi")
    assert forged == seal_bundle(b"hi")
    assert payload == b"hi"


def test_rewrite_header_without_changes_is_the_identity() -> None:
    data = seal_bundle(b"x")
    assert rewrite_header(data) == data


def test_rejected_lets_other_exceptions_through() -> None:
    with pytest.raises(TypeError):
        rejected(BOB, ALICE.public, None)  # type: ignore[arg-type]
