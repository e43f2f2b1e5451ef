"""The live session's policy: two nodes back to back through in-memory bytes, no sockets, no clock.

Each node is a `LivePolicy` driven as carriers/live/link.py drives it, with
dicts standing in for its disk: the bundles it offers, its partial copies
with their checkpoints, and its durable store (rx/). This is the unit test
of the pure policy; tests/carriers/live and tests/e2e run the real thing.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rise_dtn.core.errors import PeerError
from rise_dtn.core.identity import BundleId
from rise_dtn.core.live_policy import (
    KEEPALIVE_SECONDS,
    MAX_ARRIVING,
    Arrival,
    LivePolicy,
    PartialCopy,
    Reply,
    resume_offset,
    stale_partials,
)
from rise_dtn.core.session import (
    LENGTH_BYTES,
    MAX_DATA_BYTES,
    MAX_PUSH_BYTES,
    Data,
    Done,
    Event,
    NeedData,
    Offer,
    Ping,
    Push,
    Request,
    Stored,
    _decode,
)
from tests.properties import examples

CHECKPOINT_BYTES = 100_000  # the fake disk's fsync step (the link's is 16 MiB)


def bid(text: str) -> BundleId:
    return BundleId(hashlib.blake2b(text.encode(), digest_size=16).digest())


@dataclasses.dataclass
class Disk:
    """What survives a session: a node's queue, partial copies and durable store."""

    outbox: dict[BundleId, bytes] = dataclasses.field(default_factory=dict)
    partials: dict[BundleId, bytearray] = dataclasses.field(default_factory=dict)
    checkpoints: dict[BundleId, int] = dataclasses.field(default_factory=dict)
    durable: dict[BundleId, bytes] = dataclasses.field(default_factory=dict)
    commits: list[BundleId] = dataclasses.field(default_factory=list)

    def power_cut(self) -> None:
        """Only what a checkpoint made durable survives."""
        for bundle_id, partial in self.partials.items():
            del partial[self.checkpoints.get(bundle_id, 0) :]

    def partial_copy(self, bundle_id: BundleId) -> PartialCopy | None:
        partial = self.partials.get(bundle_id)
        if partial is None:
            return None
        return PartialCopy(len(partial), self.checkpoints.get(bundle_id, 0), modified_at=0)


class Node:
    """One side of a session, driven as the link drives its policy."""

    def __init__(
        self, disk: Disk, *, offers: list[Offer] | None = None, push: bool = False
    ) -> None:
        self.disk = disk
        self.push = push  # the peer takes PUSH: small bundles go with their offer
        self.policy = LivePolicy()
        self.policy.wrote(0.0)
        self.wire = bytearray()
        self.peer: Node | None = None
        self.notes: list[str] = []
        self.released: list[BundleId] = []
        self.plans: list[tuple[Reply, int]] = []
        self.settled: set[BundleId] = set()
        self.offers = offers  # a hostile sender's own list of offers; else the outbox's

    def start(self) -> None:
        offers = self.offers
        if offers is None:
            offers = [Offer(key, len(body), 16) for key, body in self.disk.outbox.items()]
        for offer in offers:
            body = self.disk.outbox.get(offer.bundle_id, b"")
            if self.push and 0 < len(body) == offer.size <= MAX_PUSH_BYTES:
                self.wire += self.policy.session.send(Push(offer.bundle_id, 16, body))
            else:
                self.wire += self.policy.session.send(offer)
        self.speak()

    def speak(self) -> None:
        word = self.policy.word(0.0, busy=False)
        if word is not None:
            self.wire += self.policy.session.send(word)

    def take(self, data: bytes) -> None:
        self.policy.session.receive_data(data)
        while not isinstance(event := self.policy.session.next_event(), NeedData):
            self.handle(event)
        self.speak()

    def handle(self, event: Event) -> None:
        if isinstance(event, Offer):
            self.on_offer(event)
        elif isinstance(event, Push):
            self.on_push(event)
        elif isinstance(event, Request):
            body = self.disk.outbox[event.bundle_id]
            for offset in range(event.offset, len(body), MAX_DATA_BYTES):
                piece = body[offset : offset + MAX_DATA_BYTES]
                self.wire += self.policy.session.send(Data(event.bundle_id, offset, piece))
        elif isinstance(event, Data):
            self.on_data(event)
        elif isinstance(event, Stored):
            assert self.peer is not None
            # The invariant: a STORED reaches a sender only for what its peer holds durably
            # (or settled without a transfer: held already, or refused).
            assert event.bundle_id in self.peer.disk.durable or event.bundle_id in self.peer.settled
            self.released.append(event.bundle_id)
            self.disk.outbox.pop(event.bundle_id, None)

    def on_offer(self, offer: Offer) -> None:
        settled = "already received" if offer.bundle_id in self.disk.durable else None
        plan, wire = self.policy.offered(
            offer, settled=settled, partial=self.disk.partial_copy(offer.bundle_id)
        )
        self.wire += wire
        self.plans.append((plan.reply, plan.offset))
        if plan.reply is Reply.SETTLED:
            self.settled.add(offer.bundle_id)
        if plan.reply in {Reply.SETTLED, Reply.IGNORED}:
            if plan.reply is Reply.IGNORED or settled is None:
                self.notes.append(plan.reason)
            self.disk.partials.pop(offer.bundle_id, None)
            return
        partial = self.disk.partials.setdefault(offer.bundle_id, bytearray())
        del partial[plan.offset :]
        if plan.reply is Reply.COMMIT:
            self.commit(offer.bundle_id)

    def on_push(self, push: Push) -> None:
        """As the link does: judged by id, then written as the bundle's one DATA frame."""
        settled = "already received" if push.bundle_id in self.disk.durable else None
        plan, wire = self.policy.pushed(push, settled=settled)
        self.wire += wire
        self.plans.append((plan.reply, plan.offset))
        if plan.reply is Reply.IGNORED:
            self.notes.append(plan.reason)
            return
        self.disk.partials.pop(push.bundle_id, None)  # replaced by the whole bundle
        self.disk.checkpoints.pop(push.bundle_id, None)
        if plan.reply is Reply.SETTLED:
            self.settled.add(push.bundle_id)
            return
        self.on_data(Data(push.bundle_id, 0, push.payload))

    def on_data(self, data: Data) -> None:
        action, complete = self.policy.arrived(data.bundle_id, data.offset, len(data.payload))
        if action is Arrival.WRITE:
            partial = self.disk.partials.setdefault(data.bundle_id, bytearray())
            assert len(partial) == data.offset  # the policy resumes exactly where the copy ends
            partial += data.payload
            if len(partial) // CHECKPOINT_BYTES > data.offset // CHECKPOINT_BYTES:
                self.disk.checkpoints[data.bundle_id] = len(partial)
        if complete:
            self.commit(data.bundle_id)

    def commit(self, bundle_id: BundleId) -> None:
        """The driver's commit: durable first, then STORED."""
        partial = self.disk.partials.pop(bundle_id, None)
        self.disk.checkpoints.pop(bundle_id, None)
        if self.policy.refused(bundle_id) is None:
            assert partial is not None
            self.disk.durable[bundle_id] = bytes(partial)
            self.disk.commits.append(bundle_id)
        self.wire += self.policy.confirm(bundle_id)

    def wind_down(self) -> None:
        """A cut: what arrived is checkpointed (the link's _checkpoint_partials)."""
        for bundle_id, partial in self.disk.partials.items():
            self.disk.checkpoints[bundle_id] = len(partial)


def connect(left: Node, right: Node) -> None:
    left.peer, right.peer = right, left


def run(left: Node, right: Node, *, cut_after: int | None = None) -> bool:
    """Shuttle bytes both ways until neither has anything to say; False if cut."""
    connect(left, right)
    left.start()
    right.start()
    moved = 0
    for _round in range(10_000):
        progressed = False
        for sender, receiver in ((left, right), (right, left)):
            if not sender.wire:
                continue
            data = bytes(sender.wire)
            sender.wire.clear()
            if cut_after is not None and moved + len(data) > cut_after:
                receiver.take(data[: cut_after - moved])
                return False
            moved += len(data)
            receiver.take(data)
            progressed = True
        if not progressed:
            return True
    raise AssertionError("the session never settled")


def hung_up(*nodes: Node) -> bool:
    return all(node.policy.may_hang_up(busy=False, persistent=False) for node in nodes)


BODIES = {
    bid("big"): bytes(range(256)) * 1500,  # 384,000 bytes: several frames and checkpoints
    bid("small"): b"hello",
    bid("mid"): b"m" * (MAX_DATA_BYTES + 1),
}


@pytest.mark.parametrize("push", [False, True])
def test_a_normal_session_moves_everything_and_hangs_up(push: bool) -> None:
    alice, bob = Disk(outbox=dict(BODIES)), Disk(outbox={bid("back"): b"and back"})
    left, right = Node(alice, push=push), Node(bob, push=push)
    assert run(left, right)
    assert bob.durable == BODIES
    assert alice.durable == {bid("back"): b"and back"}
    assert sorted(left.released) == sorted(BODIES)
    assert not alice.outbox and not bob.outbox
    assert hung_up(left, right)
    assert sorted(bob.commits) == sorted(BODIES)


@given(cut=st.integers(min_value=0, max_value=400_000), power_cut=st.booleans(), push=st.booleans())
@settings(max_examples=examples(60), deadline=None)
def test_a_cut_at_any_byte_resumes_and_stores_each_bundle_once(
    cut: int, power_cut: bool, push: bool
) -> None:
    alice, bob = Disk(outbox=dict(BODIES)), Disk()
    first = Node(bob)
    if not run(Node(alice, push=push), first, cut_after=cut):
        if power_cut:
            bob.power_cut()
        else:
            first.wind_down()
    left, right = Node(alice, push=push), Node(bob)
    assert run(left, right)
    assert bob.durable == BODIES
    assert sorted(bob.commits) == sorted(BODIES)  # each committed once, never twice
    assert not alice.outbox
    assert not bob.partials
    assert hung_up(left, right)


def test_a_resumed_copy_asks_only_from_the_last_checkpoint() -> None:
    body = BODIES[bid("big")]
    bob = Disk(partials={bid("big"): bytearray(body[:250_000])}, checkpoints={bid("big"): 200_000})
    alice = Disk(outbox={bid("big"): body})
    right = Node(bob)
    assert run(Node(alice), right)
    assert right.plans == [(Reply.REQUEST, 200_000)]
    assert bob.durable[bid("big")] == body


def test_a_partial_copy_larger_than_the_offer_starts_again() -> None:
    assert resume_offset(100, PartialCopy(150, 150, 0)) == 0
    assert resume_offset(100, PartialCopy(80, 50, 0)) == 50
    assert resume_offset(100, PartialCopy(80, 90, 0)) == 80
    assert resume_offset(100, None) == 0
    stranger = Disk(partials={bid("small"): bytearray(b"x" * 50)}, checkpoints={bid("small"): 50})
    assert run(Node(Disk(outbox={bid("small"): b"hello"})), Node(stranger))
    assert stranger.durable == {bid("small"): b"hello"}


def test_duplicate_offers_are_ignored_and_the_bundle_stored_once() -> None:
    body = BODIES[bid("mid")]
    offer = Offer(bid("mid"), len(body), 16)
    sender = Node(Disk(outbox={bid("mid"): body}), offers=[offer, offer])
    bob = Disk()
    receiver = Node(bob)
    assert run(sender, receiver)
    assert bob.commits == [bid("mid")]
    assert receiver.notes == [f"{bid('mid')} offered again while it arrives: ignored"]
    assert hung_up(sender, receiver)
    # Offered again in a later session: settled at once, nothing moves.
    again = Node(Disk(outbox={bid("mid"): body}))
    assert run(again, Node(bob))
    assert again.released == [bid("mid")] and bob.commits == [bid("mid")]


def test_a_re_offer_with_another_size_is_one_line_and_the_first_offer_stands() -> None:
    """Defect 6: once a traceback (`cannot confirm a bundle not completely received`)."""
    body = BODIES[bid("mid")]
    offers = [Offer(bid("mid"), len(body), 16), Offer(bid("mid"), 10, 16)]
    sender = Node(Disk(outbox={bid("mid"): body}), offers=offers)
    bob = Disk()
    receiver = Node(bob)
    assert run(sender, receiver)
    assert bob.durable == {bid("mid"): body}
    (note,) = receiver.notes
    assert "another size (10 bytes, was 262145)" in note and "\n" not in note
    assert hung_up(sender, receiver)


def test_an_empty_offer_is_refused_with_a_reason_and_the_session_goes_on() -> None:
    """Defect 7: a size-0 offer once ended the session with `No such file or directory`."""
    sender = Disk(outbox={bid("empty"): b"", bid("small"): b"hello"})
    bob = Disk()
    left, right = Node(sender), Node(bob)
    assert run(left, right)
    assert bob.durable == {bid("small"): b"hello"}
    assert right.notes == [f"{bid('empty')}: an empty bundle offered: refused"]
    assert sorted(left.released) == sorted([bid("empty"), bid("small")])
    assert hung_up(left, right)


def offered_to(policy: LivePolicy, peer: LivePolicy, bundle_id: BundleId, size: int) -> None:
    """`peer` offers a bundle and `policy` requests it, each through its session."""
    policy.session.receive_data(peer.session.send(Offer(bundle_id, size, 1)))
    offer = policy.session.next_event()
    assert isinstance(offer, Offer)
    plan, wire = policy.offered(offer, settled=None, partial=None)
    assert plan.reply is Reply.REQUEST
    peer.session.receive_data(wire)
    assert isinstance(peer.session.next_event(), Request)


def data_to(
    policy: LivePolicy, peer: LivePolicy, bundle_id: BundleId, offset: int, length: int
) -> tuple[Arrival, bool]:
    policy.session.receive_data(peer.session.send(Data(bundle_id, offset, b"d" * length)))
    data = policy.session.next_event()
    assert isinstance(data, Data)
    return policy.arrived(data.bundle_id, data.offset, len(data.payload))


def test_stored_goes_out_only_once_the_driver_says_durable() -> None:
    policy, peer = LivePolicy(), LivePolicy()
    offered_to(policy, peer, bid("x"), 10)
    with pytest.raises(ValueError, match="not completely received"):
        policy.confirm(bid("x"))  # nothing in yet
    assert data_to(policy, peer, bid("x"), 0, 4) == (Arrival.WRITE, False)
    with pytest.raises(ValueError, match="not completely received"):
        policy.confirm(bid("x"))  # part of it only
    assert data_to(policy, peer, bid("x"), 4, 6) == (Arrival.WRITE, True)
    assert not policy.session.idle  # complete but not confirmed: not quiet, no DONE
    assert policy.word(0.0, busy=False) is None
    assert policy.confirm(bid("x"))  # the driver made it durable
    assert policy.session.idle


def test_a_bundle_refused_on_its_header_is_dropped_then_settled() -> None:
    policy, peer = LivePolicy(), LivePolicy()
    offered_to(policy, peer, bid("old"), 100)
    assert data_to(policy, peer, bid("old"), 0, 40) == (Arrival.WRITE, False)
    policy.refuse(bid("old"), "expired")
    assert policy.refused(bid("old")) == "expired"
    assert data_to(policy, peer, bid("old"), 40, 60) == (Arrival.DROP, True)
    assert policy.confirm(bid("old"))


def test_too_many_bundles_arriving_at_once_end_the_session() -> None:
    policy = LivePolicy()
    peer = LivePolicy()
    ids = [bid(f"b{number}") for number in range(MAX_ARRIVING + 1)]
    for bundle_id in ids:
        policy.session.receive_data(peer.session.send(Offer(bundle_id, 100, 1)))
        offer = policy.session.next_event()
        assert isinstance(offer, Offer)
        policy.offered(offer, settled=None, partial=None)
    for bundle_id in ids[:MAX_ARRIVING]:
        policy.arrived(bundle_id, 0, 10)
    with pytest.raises(PeerError, match=f"more than {MAX_ARRIVING} bundles arriving at once"):
        policy.arrived(ids[-1], 0, 10)


def test_hang_up_only_when_both_are_done_and_nothing_is_owed() -> None:
    left, right = Node(Disk(outbox={bid("small"): b"hello"})), Node(Disk())
    connect(left, right)
    left.start()
    right.start()
    assert not hung_up(left, right)  # an offer is in flight
    right.take(bytes(left.wire))
    left.wire.clear()
    assert not hung_up(left, right)  # the request is in flight back
    assert run(left, right)
    assert hung_up(left, right)
    assert not left.policy.may_hang_up(busy=True, persistent=False)  # a toss is running
    assert not left.policy.may_hang_up(busy=False, persistent=True)  # a daemon's kept link


def test_an_idle_link_says_ping_when_due_and_done_once() -> None:
    policy = LivePolicy()
    policy.wrote(100.0)
    assert isinstance(policy.word(100.0, busy=False), Done)
    policy.session.send(policy.word(100.0, busy=False) or Ping())
    assert policy.word(100.0 + KEEPALIVE_SECONDS - 1, busy=False) is None
    assert isinstance(policy.word(100.0 + KEEPALIVE_SECONDS, busy=False), Ping)
    assert isinstance(policy.word(100.0 + KEEPALIVE_SECONDS, busy=True), Ping)


def test_stale_partials_by_age_and_by_count() -> None:
    day = 86400
    found = {f"p{number}.part": PartialCopy(10, 10, modified_at=number) for number in range(20)}
    found["old.part"] = PartialCopy(10, 10, modified_at=-8 * day)
    stale = stale_partials(found, now=0, lifetime_seconds=7 * day, keep=16)
    assert "not resumed for 8 day(s)" in stale["old.part"]
    assert sorted(name for name in stale if name != "old.part") == [
        f"p{number}.part" for number in range(4)
    ]
    assert stale_partials({}, now=0, lifetime_seconds=1) == {}


def test_a_push_saves_the_request_and_is_confirmed_only_once_durable() -> None:
    """A small bundle goes with its offer: no REQUEST comes back, only STORED after the commit
    (the harness asserts at each STORED that the bundle is durable at the receiver)."""
    alice, bob = Disk(outbox={bid("small"): b"hello"}), Disk()
    left, right = Node(alice, push=True), Node(bob)
    connect(left, right)
    left.start()
    right.take(bytes(left.wire))
    left.wire.clear()
    assert right.plans == [(Reply.REQUEST, 0)]
    assert bob.commits == [bid("small")]
    replies, wire = [], bytes(right.wire)
    while wire:
        length = int.from_bytes(wire[:LENGTH_BYTES], "big")
        replies.append(_decode(wire[LENGTH_BYTES : LENGTH_BYTES + length]))
        wire = wire[LENGTH_BYTES + length :]
    assert [type(event) for event in replies] == [Stored, Done]  # no REQUEST
    left.take(bytes(right.wire))
    right.take(bytes(left.wire))
    assert left.released == [bid("small")] and bob.durable == {bid("small"): b"hello"}
    assert hung_up(left, right)


def test_a_push_of_a_bundle_held_already_is_dropped_and_confirmed() -> None:
    """Deduplication: judged by its id, the pushed bytes are not kept again, and STORED
    alone (no REQUEST) lets the sender release it."""
    alice = Disk(outbox={bid("small"): b"hello"})
    bob = Disk(durable={bid("small"): b"hello"}, partials={bid("small"): bytearray(b"he")})
    left, right = Node(alice, push=True), Node(bob)
    assert run(left, right)
    assert right.plans == [(Reply.SETTLED, 0)]
    assert bob.commits == []  # not stored a second time
    assert not bob.partials  # a stale partial copy of it goes too
    assert left.released == [bid("small")]
    assert hung_up(left, right)


def test_a_push_of_a_bundle_still_arriving_is_ignored() -> None:
    """A push of a bundle whose offer is still arriving: the first offer stands."""
    policy = LivePolicy()
    sender = LivePolicy().session
    body = b"x" * 100
    policy.session.receive_data(sender.send(Offer(bid("twice"), len(body), 16)))
    offer = policy.session.next_event()
    assert isinstance(offer, Offer)
    plan, _wire = policy.offered(offer, settled=None, partial=None)
    assert plan.reply is Reply.REQUEST
    other = LivePolicy().session  # a second sender, as a confused peer would be
    policy.session.receive_data(other.send(Push(bid("twice"), 16, body)))
    push = policy.session.next_event()
    assert isinstance(push, Push)
    plan, wire = policy.pushed(push, settled=None)
    assert plan.reply is Reply.IGNORED and wire == b""
    assert "pushed while an offer of it arrives" in plan.reason
    assert policy.is_arriving(bid("twice"))
