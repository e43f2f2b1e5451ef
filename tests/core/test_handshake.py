"""The Noise IK handshake: who may talk, and what a tampered message does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from noise.connection import Keypair, NoiseConnection
from test_codec_support import ALICE, BOB, MALLORY

from rise_dtn.core.errors import PeerError
from rise_dtn.core.handshake import (
    FEATURE_PUSH,
    FEATURES,
    MAX_PLAINTEXT_BYTES,
    PROLOGUE,
    PROTOCOL_NAME,
    Initiator,
    Responder,
    features_of,
    takes_short_push,
)
from tests.properties import TALLY, examples, mutations, untrusted


def test_both_sides_learn_the_truth_and_talk() -> None:
    initiator = Initiator(ALICE, BOB.public.exchange_public)
    responder = Responder(BOB)
    assert responder.read_first(initiator.first_message()) == ALICE.public.exchange_public
    reply, bob_cipher = responder.accept()
    alice_cipher = initiator.finish(reply)
    sealed = alice_cipher.encrypt(b"x" * MAX_PLAINTEXT_BYTES)
    assert bob_cipher.decrypt(sealed) == b"x" * MAX_PLAINTEXT_BYTES
    assert alice_cipher.decrypt(bob_cipher.encrypt(b"back")) == b"back"


def test_calling_the_wrong_key_fails() -> None:
    initiator = Initiator(ALICE, BOB.public.exchange_public)
    with pytest.raises(PeerError):
        Responder(MALLORY).read_first(initiator.first_message())


def test_a_reply_from_an_impostor_fails() -> None:
    initiator = Initiator(ALICE, BOB.public.exchange_public)
    first = initiator.first_message()
    impostor = Responder(MALLORY)
    with pytest.raises(PeerError):
        impostor.read_first(first)
    # An impostor's own reply to a fresh handshake cannot satisfy alice either.
    other = Initiator(MALLORY, MALLORY.public.exchange_public)
    mallory = Responder(MALLORY)
    mallory.read_first(other.first_message())
    reply, _cipher = mallory.accept()
    with pytest.raises(PeerError):
        initiator.finish(reply)


@pytest.mark.parametrize("position", [0, 31, 32, 60, 95])
def test_tampered_first_message_fails(position: int) -> None:
    first = bytearray(Initiator(ALICE, BOB.public.exchange_public).first_message())
    first[position] ^= 0x01
    with pytest.raises(PeerError):
        Responder(BOB).read_first(bytes(first))


def test_tampered_or_replayed_transport_message_fails() -> None:
    initiator = Initiator(ALICE, BOB.public.exchange_public)
    responder = Responder(BOB)
    responder.read_first(initiator.first_message())
    reply, bob = responder.accept()
    alice = initiator.finish(reply)
    sealed = bytearray(alice.encrypt(b"hello"))
    sealed[-1] ^= 0x01
    with pytest.raises(PeerError):
        bob.decrypt(bytes(sealed))


@settings(max_examples=examples(100))
@given(st.binary(max_size=200))
def test_garbage_first_messages_raise_only_peer_error(data: bytes) -> None:
    TALLY.decoder_inputs += 1
    with pytest.raises(PeerError):
        Responder(BOB).read_first(data)


@settings(max_examples=examples(150))
@given(message=st.sampled_from(["first", "reply", "link"]), data=st.data())
def test_tampered_handshake_and_link_messages_raise_only_peer_error(
    message: str, data: st.DataObject
) -> None:
    """A message of a real handshake or link, altered: the side reading it refuses it cleanly.

    Noise draws its ephemeral keys itself, so the valid messages differ from run
    to run; the alterations, drawn by Hypothesis, do not.
    """
    initiator = Initiator(ALICE, BOB.public.exchange_public)
    first = initiator.first_message()
    if message == "first":
        untrusted(lambda: Responder(BOB).read_first(data.draw(mutations(first))), PeerError)
        return
    responder = Responder(BOB)
    responder.read_first(first)
    reply, bob = responder.accept()
    if message == "reply":
        untrusted(lambda: initiator.finish(data.draw(mutations(reply))), PeerError)
        return
    sealed = initiator.finish(reply).encrypt(data.draw(st.binary(max_size=64)))
    untrusted(lambda: bob.decrypt(data.draw(mutations(sealed) | st.binary(max_size=80))), PeerError)


def test_both_sides_learn_that_the_other_takes_push() -> None:
    initiator = Initiator(ALICE, BOB.public.exchange_public)
    responder = Responder(BOB)
    responder.read_first(initiator.first_message())
    assert responder.peer_features & FEATURE_PUSH
    reply, _cipher = responder.accept()
    initiator.finish(reply)
    assert initiator.peer_features & FEATURE_PUSH


def _old_node(identity: Any) -> NoiseConnection:
    """A node from before features: the same handshake with empty payloads."""
    connection = NoiseConnection.from_name(PROTOCOL_NAME)
    connection.set_keypair_from_private_bytes(Keypair.STATIC, identity.exchange_secret)
    connection.set_prologue(PROLOGUE)
    return connection


def test_a_node_from_before_features_takes_none_and_ignores_ours() -> None:
    """Backwards: an empty payload means no feature, and an old node reads ours unharmed."""
    old_caller = _old_node(ALICE)
    old_caller.set_as_initiator()
    old_caller.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, BOB.public.exchange_public)
    old_caller.start_handshake()
    responder = Responder(BOB)
    responder.read_first(bytes(old_caller.write_message()))
    assert responder.peer_features == 0
    reply, bob_cipher = responder.accept()
    assert bytes(old_caller.read_message(reply)) == FEATURES  # ignored by it
    assert bob_cipher.decrypt(bytes(old_caller.encrypt(b"hi"))) == b"hi"

    old_answerer = _old_node(BOB)
    old_answerer.set_as_responder()
    old_answerer.start_handshake()
    initiator = Initiator(ALICE, BOB.public.exchange_public)
    old_answerer.read_message(initiator.first_message())
    alice_cipher = initiator.finish(bytes(old_answerer.write_message()))
    assert initiator.peer_features == 0
    assert bytes(old_answerer.decrypt(alice_cipher.encrypt(b"hi"))) == b"hi"


FEATURE_VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "frames.json").read_text())[
    "handshake_features"
]


@pytest.mark.parametrize("vector", FEATURE_VECTORS, ids=lambda vector: vector["payload"] or "empty")
def test_feature_vectors(vector: dict[str, Any]) -> None:
    """protocol.md 17.5: the first payload byte holds the bits; unknown bits and bytes
    are ignored."""
    features = features_of(bytes.fromhex(vector["payload"]))
    assert features == vector["features"]
    assert bool(features & FEATURE_PUSH) == vector["push"]
    assert takes_short_push(features) == vector["short_push"]
