"""What a toss reports for each bundle it handled (rise-toss prints these)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

from rise_dtn.core.bundle import ContentKind
from rise_dtn.core.identity import BundleId


@dataclasses.dataclass(frozen=True, slots=True)
class Delivered:
    bundle_id: BundleId
    kind: ContentKind
    sender: str  # local name of the sender
    path: Path
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    bundle_id: str  # file name stem: the id may be unreadable
    reason: str
    action: str  # "quarantined" or "dropped"


@dataclasses.dataclass(frozen=True, slots=True)
class NotifyFailed:
    """The delivery happened; only its on_delivery command failed."""

    bundle_id: BundleId
    reason: str
    action: str = "delivered, but not notified"


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """A receipt or a map from a peer, taken in (nothing to deliver to a person)."""

    bundle_id: BundleId
    kind: ContentKind
    sender: str
    action: str = "accepted"

    @property
    def reason(self) -> str:
        return f"{self.kind.name.lower()} from {self.sender}"


@dataclasses.dataclass(frozen=True, slots=True)
class Forwarded:
    """A relay passed an onion packet on to its next hop."""

    bundle_id: str  # the packet's id as it arrived
    next_hop: str  # local name of the neighbour it now waits for
    action: str = "forwarded"

    @property
    def reason(self) -> str:
        return f"to {self.next_hop}"


@dataclasses.dataclass(frozen=True, slots=True)
class PartStored:
    """A part of a split file is in its reassembly; the file is not complete yet
    (node/parts.py). `reason` says which part of what, and how many are to come."""

    bundle_id: str
    reason: str
    action: str = "part stored"


TossEvent = Delivered | Rejected | NotifyFailed | Accepted | Forwarded | PartStored


@dataclasses.dataclass(frozen=True, slots=True)
class Streamed:
    """What tossing a bundle while it arrived came to (toss.deliver_streamed).

    `done`: delivered, forwarded or taken in, or dropped with its ack owed:
    nothing more to do with it. `bad`: it proved bad, for this reason (what
    a toss from rx/ would quarantine it for): the caller stops copying it,
    quarantines what it read (bounded) and goes on. Neither: take it the
    usual way (into rx/, then the toss), as for a bundle that must wait.
    """

    done: bool = False
    bad: str | None = None


STREAM_DONE = Streamed(done=True)
STREAM_LEFT = Streamed()  # the usual way: rx/, then the toss


class StreamCut(Exception):
    """The link went, or the bundle ended, before the bytes a streamed delivery needed."""


class Source(Protocol):
    """Where a bundle's sealed chunks are read from: a file, a peeled onion payload, or a
    live link's partial copy as it grows."""

    def read(self, size: int, /) -> bytes: ...

    def finish(self) -> None:
        """Called once the bundle is read: check what the carrier around it promised."""
