"""The live session's policy, sans I/O: what to ask for, when to confirm, when to hang up.

`core.session.Session` says which frames are well formed and in order;
this module decides what a node does with them (docs/protocol.md,
"Session policy"): from which offset to resume a partial copy, when an
offer is settled at once (held already, refused by the admission rules,
an empty bundle), that STORED goes out only once the driver says the
bundle is durable (or was disposed of by the rules), how many bundles may
arrive at once, when a partial copy left by an earlier session is stale,
and when a one-shot session hangs up.

The live-link driver (carriers/live/link.py) executes these decisions
with files, sockets and the clock; this module never touches any of them:
time comes in as `now`, what is on disk as plain `PartialCopy` records.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from rise_dtn.core.errors import PeerError
from rise_dtn.core.identity import BundleId
from rise_dtn.core.session import Done, Offer, Ping, Push, Request, Session, Stored

# A neighbour that sends nothing for 5 minutes is cut off: long enough for a
# slow radio link's largest frame, short enough that a stalled peer frees
# its slot in the daemon.
IDLE_SECONDS = 300.0
# An idle link says PING this often, well inside the peer's idle timeout,
# and often enough to keep a NAT mapping open.
KEEPALIVE_SECONDS = 30.0
# An honest sender streams one bundle at a time (it may resume another
# after a GONE), so 4 leaves room; a peer that starts more at once only
# wants to leave many partial copies behind, and the session ends.
MAX_ARRIVING = 4
# Partial copies of one neighbour's bundles kept between sessions, newest
# first: a flaky link leaves one or two; more are a peer starting bundles it
# never finishes, and the oldest go.
MAX_PARTIALS_KEPT = 16


@dataclasses.dataclass(frozen=True, slots=True)
class PartialCopy:
    """What a node holds of a bundle from an earlier session (read by the driver)."""

    size_bytes: int  # bytes in the file
    durable_bytes: int  # up to where a checkpoint says they are on disk
    modified_at: int  # when it last grew (seconds)


class Reply(enum.Enum):
    """What the driver does about an offer."""

    REQUEST = "request"  # the bundle arrives from `offset`; write it, commit it, confirm it
    COMMIT = "commit"  # the partial copy is complete already: commit it, then confirm
    SETTLED = "settled"  # REQUEST(size) and STORED are sent: nothing to receive (see reason)
    IGNORED = "ignored"  # the bundle is arriving already: the first offer stands (see reason)


@dataclasses.dataclass(frozen=True, slots=True)
class OfferPlan:
    reply: Reply
    offset: int = 0  # REQUEST, COMMIT: keep the partial copy's first `offset` bytes, drop the rest
    reason: str = ""  # SETTLED, IGNORED: one line for the log


class Arrival(enum.Enum):
    """What the driver does with the payload of a DATA frame."""

    WRITE = "write"  # append it to the partial copy
    DROP = "drop"  # the bundle was refused on its header: nothing is kept


@dataclasses.dataclass(slots=True)
class _Arriving:
    size: int
    offset: int  # the next byte expected
    started: bool = False  # a DATA frame came in this session (a partial copy is open)
    refused: str | None = None  # refused on its header: payload dropped, settled at the end

    @property
    def complete(self) -> bool:
        return self.offset == self.size


def resume_offset(size: int, partial: PartialCopy | None) -> int:
    """Where to resume a bundle of `size` bytes given what an earlier session left.

    Only from the last checkpoint: after a power cut the tail past it may
    hold zeros, which STORED must never confirm. A copy longer than the
    offer is another bundle under this id (or a damaged copy): start again.
    """
    if partial is None:
        return 0
    have = min(partial.size_bytes, partial.durable_bytes)
    return 0 if have > size or partial.size_bytes > size else have


def stale_partials(
    partials: Mapping[str, PartialCopy],
    *,
    now: int,
    lifetime_seconds: int,
    keep: int = MAX_PARTIALS_KEPT,
) -> dict[str, str]:
    """Which of one neighbour's partial copies to give up, each with its one-line reason.

    Older than `lifetime_seconds` since it last grew, or beyond the `keep`
    most recent ones.
    """
    stale: dict[str, str] = {}
    for name, partial in partials.items():
        age = now - partial.modified_at
        if age > lifetime_seconds:
            stale[name] = f"not resumed for {age // 86400} day(s) (partial_lifetime)"
    fresh = sorted(
        (name for name in partials if name not in stale),
        key=lambda name: (partials[name].modified_at, name),
        reverse=True,
    )
    for name in fresh[keep:]:
        stale[name] = f"more than {keep} partial copies from one neighbour (the oldest go)"
    return stale


class LivePolicy:
    """One side of a live session: the wire machine plus what to do about each event.

    The driver feeds the peer's bytes through `session`, asks `offered`,
    `arrived`, `refuse`, `confirm` and `withdrawn` about what comes in, and
    writes the bytes they return; it asks `word` and `may_hang_up` when it
    has a moment. Nothing here waits, reads a file or looks at a clock.
    """

    def __init__(self, *, max_arriving: int = MAX_ARRIVING) -> None:
        self.session = Session()
        self.max_arriving = max_arriving
        self._arriving: dict[BundleId, _Arriving] = {}
        self._last_write: float | None = None

    # Offers from the peer.

    def offered(
        self, offer: Offer, *, settled: str | None, partial: PartialCopy | None
    ) -> tuple[OfferPlan, bytes]:
        """Our answer to an offer, and its bytes.

        `settled` is the admission rules' reason when the bundle needs no
        transfer (already received, already delivered), from its id alone.
        """
        arriving = self._arriving.get(offer.bundle_id)
        if arriving is not None:
            if arriving.size != offer.size:
                reason = (
                    f"{offer.bundle_id} offered again with another size ({offer.size} bytes, "
                    f"was {arriving.size}): ignored"
                )
            else:
                reason = f"{offer.bundle_id} offered again while it arrives: ignored"
            return OfferPlan(Reply.IGNORED, reason=reason), b""
        if offer.size == 0:
            return self._settle(offer, f"{offer.bundle_id}: an empty bundle offered: refused")
        if settled is not None:
            return self._settle(offer, f"{offer.bundle_id}: {settled}")
        offset = resume_offset(offer.size, partial)
        self._arriving[offer.bundle_id] = _Arriving(offer.size, offset)
        wire = self.session.send(Request(offer.bundle_id, offset))
        reply = Reply.COMMIT if offset == offer.size else Reply.REQUEST
        return OfferPlan(reply, offset=offset), wire

    def pushed(self, push: Push, *, settled: str | None) -> tuple[OfferPlan, bytes]:
        """Our answer to a push (an offer with all its bytes), and its bytes.

        As for an offer, judged by its id first: settled at once with STORED
        alone (the bytes are dropped), or ignored while an offer of it still
        arrives. Otherwise the plan is REQUEST from 0 with nothing on the
        wire: the driver writes the payload as the bundle's one DATA frame
        (`arrived`), commits it, and confirms it when it is durable.
        """
        offer = push.offer
        if offer.bundle_id in self._arriving:
            reason = f"{offer.bundle_id} pushed while an offer of it arrives: ignored"
            return OfferPlan(Reply.IGNORED, reason=reason), b""
        if settled is not None:
            wire = self.session.send(Stored(offer.bundle_id))
            return OfferPlan(Reply.SETTLED, reason=f"{offer.bundle_id}: {settled}"), wire
        self._arriving[offer.bundle_id] = _Arriving(offer.size, 0)
        return OfferPlan(Reply.REQUEST), b""

    def _settle(self, offer: Offer, reason: str) -> tuple[OfferPlan, bytes]:
        """Nothing to receive: 'I have it all' and 'stored', so the sender lets it go."""
        wire = self.session.send(Request(offer.bundle_id, offer.size))
        wire += self.session.send(Stored(offer.bundle_id))
        return OfferPlan(Reply.SETTLED, reason=reason), wire

    # Bundles arriving.

    def arrived(self, bundle_id: BundleId, offset: int, length: int) -> tuple[Arrival, bool]:
        """A DATA frame the session accepted: write or drop it, and is the bundle complete?

        PeerError when the peer starts more than `max_arriving` bundles at once.
        """
        arriving = self._arriving[bundle_id]
        if not arriving.started and arriving.refused is None:
            started = sum(
                1
                for item in self._arriving.values()
                if item.started and not item.complete and item.refused is None
            )
            if started >= self.max_arriving:
                raise PeerError(
                    f"protocol error: more than {self.max_arriving} bundles arriving at once"
                )
            arriving.started = True
        arriving.offset = offset + length
        action = Arrival.DROP if arriving.refused is not None else Arrival.WRITE
        return action, arriving.complete

    def refuse(self, bundle_id: BundleId, reason: str) -> None:
        """The admission rules refuse this bundle on its header: drop what else comes of it.

        It is settled with STORED once its last byte is in (the wire has no
        other way to stop a transfer), so its sender lets it go.
        """
        self._arriving[bundle_id].refused = reason

    def refused(self, bundle_id: BundleId) -> str | None:
        arriving = self._arriving.get(bundle_id)
        return None if arriving is None else arriving.refused

    def confirm(self, bundle_id: BundleId) -> bytes:
        """STORED, once the driver has made the complete bundle durable (or disposed of it
        by the admission rules). A caller's mistake before that: ValueError."""
        arriving = self._arriving.get(bundle_id)
        if arriving is None or not arriving.complete:
            raise ValueError("cannot confirm a bundle not completely received")
        del self._arriving[bundle_id]
        return self.session.send(Stored(bundle_id))

    def withdrawn(self, bundle_id: BundleId) -> bool:
        """The peer withdrew its offer (GONE): True if a copy of it may be on disk here."""
        return self._arriving.pop(bundle_id, None) is not None

    def is_arriving(self, bundle_id: BundleId) -> bool:
        return bundle_id in self._arriving

    def arriving(self) -> list[BundleId]:
        """Bundles requested and not yet confirmed (their partial copies are live)."""
        return list(self._arriving)

    def size_of(self, bundle_id: BundleId) -> int:
        return self._arriving[bundle_id].size

    # The conversation: DONE, PING, hanging up.

    def wrote(self, now: float) -> None:
        """The driver wrote something to the peer at `now` (monotonic seconds)."""
        self._last_write = now

    def quiet(self, *, busy: bool) -> bool:
        """Nothing in flight either way, and the driver has nothing under way (`busy`:
        a toss pending or running, something new to offer)."""
        return self.session.idle and not busy

    def word(self, now: float, *, busy: bool) -> Done | Ping | None:
        """What to say when nothing else is said: DONE once quiet, PING when due."""
        if self.quiet(busy=busy) and not self.session.done_is_current:
            return self.session.done()
        if self._last_write is not None and now - self._last_write >= KEEPALIVE_SECONDS:
            return Ping()
        return None

    def may_hang_up(self, *, busy: bool, persistent: bool) -> bool:
        """A one-shot session ends when both sides are idle and neither owes a reply."""
        return not persistent and self.session.finished and self.quiet(busy=busy)
