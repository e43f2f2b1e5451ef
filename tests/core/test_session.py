"""The sans-I/O session machine: a two-sided harness, resume after a cut, hostile peers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec_support import ALICE, BOB, seal_bundle

from rise_dtn.core.bundle import MAX_CLEAR_BYTES, HopHeader, parse_clear
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import PeerError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.core.session import (
    LENGTH_BYTES,
    MAX_DATA_BYTES,
    MAX_PUSH_BYTES,
    NEED_DATA,
    Data,
    Done,
    Event,
    Gone,
    NeedData,
    Offer,
    Ping,
    Push,
    Request,
    Session,
    Stored,
    _decode,
    _decode_data,
    _encode,
    _encode_short_push,
    _Outgoing,
)
from tests.properties import examples, untrusted


def bid(text: str) -> BundleId:
    return BundleId(hashlib.blake2b(text.encode(), digest_size=16).digest())


def drain(session: Session) -> list[Event]:
    events: list[Event] = []
    while not isinstance(event := session.next_event(), NeedData):
        events.append(event)
    return events


class Side:
    """One node: bundles to give, and what it has received (a dict stands in for the spool)."""

    def __init__(self, outbox: dict[BundleId, bytes], have: dict[BundleId, bytes] | None = None):
        self.session = Session()
        self.outbox = outbox
        self.received: dict[BundleId, bytearray] = {
            k: bytearray(v) for k, v in (have or {}).items()
        }
        self.released: list[BundleId] = []
        self.wire = bytearray()

    def start(self) -> None:
        for bundle_id, body in self.outbox.items():
            self.wire += self.session.send(Offer(bundle_id, len(body), 16))
        self.say_done_if_idle()

    def say_done_if_idle(self) -> None:
        if self.session.idle and not self.session.done_is_current:
            self.wire += self.session.send(self.session.done())

    def handle(self, event: Event) -> None:
        session = self.session
        if isinstance(event, Offer):
            have = len(self.received.setdefault(event.bundle_id, bytearray()))
            self.wire += session.send(Request(event.bundle_id, have))
            if have == event.size:
                self.wire += session.send(Stored(event.bundle_id))
        elif isinstance(event, Request):
            body = self.outbox[event.bundle_id]
            for offset in range(event.offset, len(body), MAX_DATA_BYTES):
                piece = body[offset : offset + MAX_DATA_BYTES]
                self.wire += session.send(Data(event.bundle_id, offset, piece))
        elif isinstance(event, Data):
            self.received[event.bundle_id] += event.payload
        elif isinstance(event, Stored):
            self.released.append(event.bundle_id)


def run_pair(
    left: Side, right: Side, *, sizes: dict[BundleId, int], cut_after: int | None = None
) -> None:
    """Shuttle bytes both ways until both are finished (or the link is cut)."""
    left.start()
    right.start()
    moved = 0
    for _round in range(10_000):
        progressed = False
        for sender, receiver in ((left, right), (right, left)):
            if sender.wire:
                data = bytes(sender.wire)
                if cut_after is not None and moved + len(data) > cut_after:
                    receiver.session.receive_data(data[: cut_after - moved])
                    drain_into(receiver, sizes)
                    return
                moved += len(data)
                sender.wire.clear()
                receiver.session.receive_data(data)
                drain_into(receiver, sizes)
                progressed = True
        if not progressed:
            break
    assert left.session.finished and right.session.finished


def drain_into(side: Side, sizes: dict[BundleId, int]) -> None:
    for event in drain(side.session):
        side.handle(event)
        if (
            isinstance(event, Data)
            and len(side.received[event.bundle_id]) == sizes[event.bundle_id]
        ):
            side.wire += side.session.send(Stored(event.bundle_id))
    side.say_done_if_idle()


def test_both_directions_in_one_session() -> None:
    a_out = {bid("a1"): b"x" * 700_000, bid("a2"): b"hello"}
    b_out = {bid("b1"): bytes(range(256)) * 5000}
    sizes = {k: len(v) for k, v in {**a_out, **b_out}.items()}
    alice, bob = Side(a_out), Side(b_out)
    run_pair(alice, bob, sizes=sizes)
    assert {k: bytes(v) for k, v in bob.received.items()} == a_out
    assert {k: bytes(v) for k, v in alice.received.items()} == b_out
    assert sorted(alice.released) == sorted(a_out)
    assert bob.released == [bid("b1")]


@pytest.mark.parametrize("cut_after", [0, 3, 100, 300_000, 650_001])
def test_cut_link_resumes_from_offset_without_duplicates(cut_after: int) -> None:
    body = bytes(range(256)) * 3000  # 768,000 bytes
    bundle = bid("big")
    sizes = {bundle: len(body)}
    alice, bob = Side({bundle: body}), Side({})
    run_pair(alice, bob, sizes=sizes, cut_after=cut_after)
    partial = bytes(bob.received.get(bundle, b""))
    assert body.startswith(partial)
    # Next session: bob still holds the partial bundle and asks for the rest.
    alice2, bob2 = Side({bundle: body}), Side({}, have={bundle: partial})
    run_pair(alice2, bob2, sizes=sizes)
    assert bytes(bob2.received[bundle]) == body
    assert alice2.released == [bundle]


def test_already_complete_bundle_is_confirmed_without_data() -> None:
    bundle = bid("done")
    alice, bob = Side({bundle: b"abc"}), Side({}, have={bundle: b"abc"})
    run_pair(alice, bob, sizes={bundle: 3})
    assert alice.released == [bundle]


def test_byte_at_a_time_delivery() -> None:
    sender, receiver = Session(), Session()
    wire = sender.send(Offer(bid("x"), 10, 3)) + sender.send(Ping())
    events: list[Event] = []
    for byte in wire:
        receiver.receive_data(bytes([byte]))
        events += drain(receiver)
    assert events == [Offer(bid("x"), 10, 3), Ping()]


def raw_frame(event: Event) -> bytes:
    """A frame as a hostile peer could send it, skipping the sender's own checks."""
    frame = _encode(event)
    return len(frame).to_bytes(LENGTH_BYTES, "big") + frame


def test_data_for_a_bundle_not_requested_is_refused() -> None:
    receiver = Session()
    receiver.receive_data(raw_frame(Offer(bid("x"), 10, 0)))
    drain(receiver)
    receiver.receive_data(raw_frame(Data(bid("x"), 0, b"abc")))
    with pytest.raises(PeerError, match="not requested"):
        drain(receiver)


def test_data_out_of_order_is_refused() -> None:
    receiver, sender = Session(), Session()
    receiver.receive_data(sender.send(Offer(bid("x"), 10, 0)))
    drain(receiver)
    sender.receive_data(receiver.send(Request(bid("x"), 0)))
    drain(sender)
    receiver.receive_data(raw_frame(Data(bid("x"), 5, b"abc")))  # skips ahead
    with pytest.raises(PeerError, match="out of order"):
        drain(receiver)


def test_stored_or_gone_for_unknown_bundle_is_refused() -> None:
    for frame in (Stored(bid("x")), Gone(bid("x"))):
        session = Session()
        session.receive_data(raw_frame(frame))
        with pytest.raises(PeerError, match="not offered"):
            drain(session)


def test_done_claiming_frames_never_sent_is_refused() -> None:
    session = Session()
    session.receive_data(raw_frame(Done(1)))
    with pytest.raises(PeerError, match="never sent"):
        drain(session)


def shuttle(a: Session, b: Session, wire: bytes) -> list[Event]:
    """Hand `wire` (written by a) to b and return b's events."""
    b.receive_data(wire)
    return drain(b)


def test_an_offer_after_done_reopens_the_session() -> None:
    """A long-lived link: DONE says 'nothing for now'; a relay's forward can follow it."""
    a, b = Session(), Session()
    shuttle(a, b, a.send(a.done()))
    shuttle(b, a, b.send(b.done()))
    assert a.finished and b.finished
    shuttle(a, b, a.send(Offer(bid("late"), 3, 0)))
    assert not a.finished and not b.finished  # a has an offer out; b has not answered it
    shuttle(b, a, b.send(Request(bid("late"), 0)))
    shuttle(a, b, a.send(Data(bid("late"), 0, b"abc")))
    shuttle(b, a, b.send(Stored(bid("late"))) + b.send(b.done()))
    assert not a.finished  # a has not yet said DONE since
    shuttle(a, b, a.send(a.done()))
    assert a.finished and b.finished


def test_done_that_crossed_a_frame_in_flight_does_not_finish() -> None:
    """b said DONE before seeing a's late offer: a must not hang up on that DONE."""
    a, b = Session(), Session()
    shuttle(a, b, a.send(a.done()))
    b_done = b.send(b.done())
    offer = a.send(Offer(bid("x"), 1, 0))
    shuttle(b, a, b_done)  # arrives after a sent the offer
    assert not a.finished
    shuttle(a, b, offer)
    assert not b.finished


def test_gone_withdraws_an_offer() -> None:
    a, b = Session(), Session()
    shuttle(a, b, a.send(Offer(bid("x"), 10, 0)))
    shuttle(b, a, b.send(Request(bid("x"), 0)))
    assert not b.idle
    assert shuttle(a, b, a.send(Gone(bid("x")))) == [Gone(bid("x"))]
    assert a.idle and b.idle
    with pytest.raises(ValueError):
        b.send(Stored(bid("x")))  # nothing to confirm any more


def test_done_only_when_idle_and_counting_everything() -> None:
    a, b = Session(), Session()
    shuttle(a, b, a.send(Offer(bid("x"), 1, 0)))
    with pytest.raises(ValueError):
        a.send(a.done())  # our offer is unconfirmed
    with pytest.raises(ValueError):
        b.send(Done(0))  # b has seen one frame


def test_huge_claimed_frame_is_refused_before_buffering() -> None:
    session = Session()
    session.receive_data((1 << 31).to_bytes(LENGTH_BYTES, "big"))
    with pytest.raises(PeerError, match="frame of"):
        session.next_event()


def test_our_own_mistakes_are_caller_errors() -> None:
    session = Session()
    with pytest.raises(ValueError):
        session.send(Data(bid("x"), 0, b"a"))
    with pytest.raises(ValueError):
        session.send(Stored(bid("x")))
    assert session.next_event() is NEED_DATA


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_peer_error(data: bytes) -> None:
    session = Session()
    session.receive_data(data)
    untrusted(lambda: drain(session), PeerError)


@settings(max_examples=examples(200))
@given(st.lists(st.integers(0, 9), max_size=8), st.binary(max_size=40))
def test_framed_garbage_raises_only_peer_error(kinds: list[int], blob: bytes) -> None:
    session = Session(me=BOB.node_id)
    for kind in kinds:
        frame = cbor2.dumps([kind, blob[:16], len(blob), blob])
        session.receive_data(len(frame).to_bytes(LENGTH_BYTES, "big") + frame)
    untrusted(lambda: drain(session), PeerError)


@settings(max_examples=examples(300))
@given(
    st.binary(min_size=16, max_size=16),
    st.one_of(st.integers(0, 30), st.integers(0, 1 << 50)),
    st.binary(min_size=1, max_size=600),
)
def test_fast_data_decoder_agrees_with_cbor(raw_id: bytes, offset: int, payload: bytes) -> None:
    """DATA frames skip cbor2 for speed; they must decode exactly as the general decoder does."""
    event = Data(BundleId(raw_id), offset, payload)
    frame = _encode(event)
    assert _decode_data(frame) == _decode(frame) == event
    sender = Session()
    sender._outgoing[event.bundle_id] = _Outgoing(size=offset + len(payload), requested_from=offset)
    sender._outgoing[event.bundle_id].next_offset = offset
    header, body = sender.send_data(event)
    assert header + body == len(frame).to_bytes(LENGTH_BYTES, "big") + frame


@settings(max_examples=examples(500))
@given(st.binary(min_size=0, max_size=64))
def test_fast_data_decoder_never_accepts_what_cbor_refuses(tail: bytes) -> None:
    """Any bytes after the DATA prefix: the fast path returns None or what cbor2 decodes."""
    frame = bytes([0x84, 3, 0x50]) + bytes(16) + tail
    fast = _decode_data(frame)
    if fast is None:
        return
    assert _decode(frame) == fast


FIELD_VALUES = st.one_of(
    st.sampled_from([bid("a").raw, bid("b").raw, bid("c").raw]),
    st.integers(0, 40),
    st.sampled_from([2**50, 2**50 + 1, 2**63, 2**64 - 1, -1, True, None, b"", "x"]),
    st.binary(max_size=24),
)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(
    offered=st.lists(st.sampled_from(["a", "b"]), max_size=2),
    frames=st.lists(
        st.tuples(st.integers(0, 9), st.lists(FIELD_VALUES, max_size=4)), min_size=1, max_size=12
    ),
    cut=st.integers(0, 40),
)
def test_well_framed_hostile_events_raise_only_peer_error(
    offered: list[str], frames: list[tuple[int, list[object]]], cut: int
) -> None:
    """Frames of every type with any fields, in any order, after we offered some bundles."""
    session = Session(me=BOB.node_id)
    for name in offered:
        session.send(Offer(bid(name), 20, 1))
    wire = b""
    for kind, fields in frames:
        frame = canonical([kind, *fields])  # type: ignore[list-item]
        wire += len(frame).to_bytes(LENGTH_BYTES, "big") + frame
    for piece in (wire[:cut], wire[cut:]):  # frames split across reads
        session.receive_data(piece)
        events = untrusted(lambda: drain(session), PeerError)
        if events is None:
            return


SESSION_VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "frames.json").read_text())[
    "session"
]


def _vector_event(vector: dict[str, Any]) -> Event:
    bundle_id = BundleId(bytes.fromhex(vector.get("bundle_id", "00" * 16)))
    kind = vector["type"]
    if kind == "OFFER":
        return Offer(bundle_id, vector["size"], vector["priority"])
    if kind == "REQUEST":
        return Request(bundle_id, vector["offset"])
    if kind in ("PUSH", "SHORT_PUSH"):
        return Push(bundle_id, vector["priority"], bytes.fromhex(vector["payload"]))
    if kind == "STORED":
        return Stored(bundle_id)
    return Done(vector["seen"])


@pytest.mark.parametrize("vector", SESSION_VECTORS, ids=lambda vector: vector["type"])
def test_session_frame_vectors_both_ways(vector: dict[str, Any]) -> None:
    """protocol.md 17's frame vectors: encoded to the golden bytes, decoded back."""
    event = _vector_event(vector)
    golden = bytes.fromhex(vector["frame"])
    me = NodeId(bytes.fromhex(vector["recipient"])) if "recipient" in vector else None
    frame = _encode_short_push(event, me) if isinstance(event, Push) and me else _encode(event)
    assert frame is not None
    assert len(frame).to_bytes(LENGTH_BYTES, "big") + frame == golden
    assert _decode(golden[LENGTH_BYTES:], me=me) == event


def test_a_push_is_offered_requested_and_sent_at_once() -> None:
    """PUSH needs no REQUEST: the receiver may confirm it straight away, and both sides
    count it as a frame for DONE."""
    alice, bob = Session(), Session()
    bob.receive_data(alice.send(Push(bid("p"), 3, b"hello")))
    assert drain(bob) == [Push(bid("p"), 3, b"hello")]
    assert not bob.idle  # received, not yet confirmed
    assert not bob.waiting_for_peer()  # but nothing more of it is coming
    alice.receive_data(bob.send(Stored(bid("p"))) + bob.send(bob.done()))
    assert drain(alice) == [Stored(bid("p")), Done(1)]
    assert alice.idle and bob.idle
    bob.receive_data(alice.send(alice.done()))
    assert drain(bob) == [Done(1)]
    assert alice.finished and bob.finished


def test_a_push_is_small_and_complete() -> None:
    """Data after a push, a push too large or empty: the peer's error; ours: ValueError."""
    bob = Session()
    bob.receive_data(Session().send(Push(bid("p"), 3, b"hello")))
    drain(bob)
    extra = _encode(Data(bid("p"), 5, b"more"))
    bob.receive_data(len(extra).to_bytes(LENGTH_BYTES, "big") + extra)
    with pytest.raises(PeerError, match="out of order or past the end"):
        drain(bob)
    for payload in (b"", b"x" * (MAX_PUSH_BYTES + 1)):
        frame = canonical([8, bid("q").raw, 3, payload])
        with pytest.raises(PeerError, match="malformed push frame"):
            _decode(frame)
        with pytest.raises(ValueError, match="push only a small bundle"):
            Session().send(Push(bid("q"), 3, payload))
    offered = Session()
    offered.send(Offer(bid("q"), 5, 3))
    with pytest.raises(ValueError, match="push only a small bundle"):
        offered.send(Push(bid("q"), 3, b"hello"))


# Short pushes (protocol.md 17.5): a push of a bundle for the receiver, without what it knows.


def _pushed(payload: bytes) -> Push:
    clear = parse_clear(payload[:MAX_CLEAR_BYTES])
    return Push(clear.bundle_id, clear.header.priority, payload)


def test_a_short_push_is_rebuilt_exactly_and_counted_as_a_push() -> None:
    bundle = seal_bundle(b"hello bob" * 11, priority=16)  # for BOB
    push = _pushed(bundle)
    alice, bob = Session(), Session(me=BOB.node_id)
    alice.short_push_to = BOB.node_id
    wire = alice.send(push)
    long = Session().send(push)
    # No bundle id, magic, recipient or body length: 43 bytes less for a message.
    assert len(long) - len(wire) == 43
    assert wire[LENGTH_BYTES + 1] == 9
    bob.receive_data(wire)
    assert drain(bob) == [push]
    alice.receive_data(bob.send(Stored(push.bundle_id)))
    assert drain(alice) == [Stored(push.bundle_id)]
    assert alice.idle and bob.idle


@pytest.mark.parametrize(
    "case", ["for another node", "priority differs", "onion packet", "not a bundle", "trailing"]
)
def test_a_push_the_receiver_cannot_rebuild_goes_long(case: str) -> None:
    """Short only when the receiver rebuilds the very bytes: else the PUSH of before."""
    bundle = seal_bundle(b"x" * 100, priority=16)
    push = _pushed(bundle)
    if case == "for another node":
        push = _pushed(seal_bundle(b"x" * 100, recipient=ALICE.public))
    elif case == "priority differs":
        push = Push(push.bundle_id, 17, bundle)
    elif case == "onion packet":
        packet = HopHeader(BOB.node_id, 1 << 40, 16, 200, slots=1).encode() + bytes(200)
        push = _pushed(packet)
    elif case == "not a bundle":
        push = Push(bid("raw"), 16, b"RSB\x01 not cbor at all")
    else:
        push = Push(push.bundle_id, 16, bundle + b"!")
    sender = Session()
    sender.short_push_to = BOB.node_id
    wire = sender.send(push)
    assert wire == Session().send(push)
    receiver = Session(me=BOB.node_id)
    receiver.receive_data(wire)
    assert drain(receiver) == [push]


def test_a_short_push_to_a_node_that_never_announced_it_is_a_protocol_error() -> None:
    frame = _encode_short_push(_pushed(seal_bundle(b"x", priority=16)), BOB.node_id)
    assert frame is not None
    session = Session()  # no `me`: this side never said it takes them
    session.receive_data(len(frame).to_bytes(LENGTH_BYTES, "big") + frame)
    with pytest.raises(PeerError, match="unknown or malformed frame type 9"):
        drain(session)


@settings(max_examples=examples(100), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(0, 255), st.integers(0, (1 << 63) - 1))
def test_short_pushes_round_trip(payload: bytes, priority: int, expiry: int) -> None:
    """Any message for the receiver goes short, comes back byte for byte, id from E."""
    bundle = seal_bundle(payload, priority=priority, expiry=expiry)
    push = _pushed(bundle)
    frame = _encode_short_push(push, BOB.node_id)
    assert frame is not None
    assert _decode(frame, me=BOB.node_id) == push


@settings(max_examples=examples(300))
@given(
    st.lists(
        st.one_of(
            st.integers(0, 300),
            st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -1, True, None, "x", b""]),
            st.binary(max_size=80),
            st.binary(min_size=4000, max_size=4100),
        ),
        max_size=4,
    )
)
def test_short_push_decoder_raises_only_peer_error(fields: list[object]) -> None:
    """Hostile short pushes: a PUSH of at most MAX_PUSH_BYTES whose id is E's, or PeerError."""
    frame = canonical([9, *fields])  # type: ignore[list-item]
    event = untrusted(lambda: _decode(frame, me=BOB.node_id), PeerError)
    if event is None:
        return
    assert isinstance(event, Push)
    assert 0 < len(event.payload) <= MAX_PUSH_BYTES
    assert event.payload.startswith(b"RSB\x01")
