"""Presence beacons: known nodes verified, strangers ignored, forged or stale ones refused."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codec_support import ALICE, BOB

from rise_dtn.core import beacon
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import NodeId, PublicIdentity
from tests.properties import examples, mutations, untrusted

NOW = 1_800_000_000


def knows_alice(node_id: NodeId) -> PublicIdentity | None:
    return ALICE.public if node_id == ALICE.node_id else None


def test_round_trip_for_a_known_node() -> None:
    data = beacon.encode(ALICE, port=5454, now=NOW)
    presence = beacon.decode(data, known=knows_alice, now=NOW + 10)
    assert presence == beacon.Presence(ALICE.node_id, 5454, NOW)


def test_stranger_is_ignored_forgery_and_staleness_refused() -> None:
    assert beacon.decode(beacon.encode(BOB, port=1, now=NOW), known=knows_alice, now=NOW) is None
    data = bytearray(beacon.encode(ALICE, port=5454, now=NOW))
    data[-1] ^= 1
    with pytest.raises(BundleError, match="bad signature"):
        beacon.decode(bytes(data), known=knows_alice, now=NOW)
    with pytest.raises(BundleError, match="stale"):
        beacon.decode(beacon.encode(ALICE, port=5454, now=NOW), known=knows_alice, now=NOW + 3600)


@settings(max_examples=examples(200))
@given(st.binary(max_size=300))
def test_garbage_raises_only_bundle_error(data: bytes) -> None:
    for candidate in (data, beacon.MAGIC + data):
        decode = functools.partial(beacon.decode, candidate, known=knows_alice, now=NOW)
        untrusted(decode, BundleError)


@settings(max_examples=examples(200))
@given(data=mutations(beacon.encode(ALICE, port=5454, now=NOW)))
def test_altered_beacons_raise_only_bundle_error(data: bytes) -> None:
    presence = untrusted(lambda: beacon.decode(data, known=knows_alice, now=NOW), BundleError)
    assert presence is None or presence.node_id == ALICE.node_id


@settings(max_examples=examples(200))
@given(
    fields=st.lists(
        st.one_of(
            st.just(ALICE.node_id.raw),
            st.binary(max_size=17),
            st.integers(-(2**64), 2**64 - 1),
            st.sampled_from([0, 1, 65535, 65536, NOW, True, False, None]),
            st.text(max_size=4),
        ),
        max_size=4,
    )
)
def test_validly_signed_beacons_with_wrong_fields_raise_only_bundle_error(
    fields: list[object],
) -> None:
    body = canonical(fields)  # type: ignore[arg-type]
    data = beacon.MAGIC + body + ALICE.sign(beacon.SIGNATURE_CONTEXT + body)
    presence = untrusted(lambda: beacon.decode(data, known=knows_alice, now=NOW), BundleError)
    if presence is not None:
        assert fields == [ALICE.node_id.raw, presence.port, presence.sent_at]
        assert 0 < presence.port < 65536
        assert abs(presence.sent_at - NOW) <= beacon.MAX_AGE_SECONDS
