"""Hostile receipts and maps from a known neighbour raise only BundleError (node/toss/control.py).

A receipt or a map arrives as the payload of a bundle whose end-to-end
signature checked out, so its sender is a known neighbour; the payload itself
is still untrusted bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rise_dtn.core.bundle import ContentKind
from rise_dtn.core.card import Card
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import Identity
from rise_dtn.node.home import Home
from rise_dtn.node.toss import control
from tests.properties import examples, mutations, untrusted

NOW = 1_800_000_000
HOME = Home.create(Path(tempfile.mkdtemp(prefix="rise-fuzz-")) / "node", name="fuzz")
NEIGHBOUR = Identity.from_seeds(bytes([0x51]) * 32, bytes([0x52]) * 32)
NEIGHBOUR_CARD = Card.create(NEIGHBOUR, name="relay", addresses=(), now=NOW)
PEER = HOME.peers.add(NEIGHBOUR_CARD, name="relay", self_id=HOME.identity.node_id, replace=True)
PEER = HOME.peers.set_relay("relay", relay=True)
LINK = [HOME.identity.node_id.raw, NEIGHBOUR.node_id.raw, 1]
RECEIPT = canonical([control.RECEIPT_VERSION, bytes(16), NOW, [LINK], [NEIGHBOUR_CARD.to_bytes()]])
MAP = canonical([control.MAP_VERSION, [LINK], [NEIGHBOUR_CARD.to_bytes()]])

FIELDS = st.recursive(
    st.one_of(
        st.integers(-2, 2**64 - 1),
        st.sampled_from([0, 1, 255, 256, True, False, None, bytes(16), NEIGHBOUR.node_id.raw]),
        st.binary(max_size=40),
        st.just(NEIGHBOUR_CARD.to_bytes()),
        st.text(max_size=4),
    ),
    lambda children: st.lists(children, max_size=4),
    max_leaves=10,
)


def accept(kind: ContentKind, payload: bytes) -> None:
    untrusted(lambda: control.accept(HOME, PEER, kind, payload, now=NOW), BundleError)


@settings(max_examples=examples(100))
@given(
    kind=st.sampled_from([ContentKind.RECEIPT, ContentKind.MAP]),
    payload=st.binary(max_size=200) | mutations(RECEIPT) | mutations(MAP),
)
def test_hostile_payloads(kind: ContentKind, payload: bytes) -> None:
    accept(kind, payload)


@settings(max_examples=examples(100))
@given(
    kind=st.sampled_from([ContentKind.RECEIPT, ContentKind.MAP]),
    fields=st.lists(FIELDS, max_size=6),
)
def test_wrongly_typed_fields(kind: ContentKind, fields: list[object]) -> None:
    accept(kind, canonical(fields))  # type: ignore[arg-type]
