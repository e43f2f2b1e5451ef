"""The queue as an operator sees it: what waits here, for whom, and how to take it back.

NNCP users list packets with `nncp-stat -pkt` and drop them with `nncp-rm`;
before this, a rise-dtn user who queued 1.2 GiB by mistake deleted files in
spool/tx/ and ran `rise-check --repair`. Every row comes from the index (a
cache of the spool files, which rise-check keeps true), and a cancel goes
through the bundle transaction like every other release, so it is journaled
and survives a crash half way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from rise_dtn.core.errors import UsageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.node.home import Home
from rise_dtn.store.transaction import Release

# queued: waiting for a carrier; in flight: written to a medium at least
# once, not acked yet; held: no route yet (rise-send --wait);
# received: from a neighbour, waiting for rise-toss.
STATES = ("queued", "in flight", "held", "received")


@dataclasses.dataclass(frozen=True, slots=True)
class QueueRow:
    bundle_id: str
    state: str  # one of STATES
    neighbour: str  # the peer's name (the recipient's, for a held bundle)
    neighbour_id: str
    bundle_bytes: int  # the bundle's own size (a relay cannot know a packet's payload)
    priority: int
    expiry: int
    queued_at: int | None  # None: not known (a held bundle)
    copies: int = 0  # times written to a carrier


def rows(home: Home, *, neighbour: str | None = None) -> list[QueueRow]:
    """Every bundle waiting here, most urgent first; `neighbour` (a name) filters."""
    names = {str(peer.node_id): peer.name for peer in home.peers.all()}
    wanted = str(home.peers.find(neighbour).node_id) if neighbour is not None else None
    found = [
        QueueRow(
            entry.bundle_id,
            ("in flight" if entry.copies else "queued") if entry.direction == "tx" else "received",
            names.get(entry.neighbour, entry.neighbour[:8]),
            entry.neighbour,
            entry.size,
            entry.priority,
            entry.expiry,
            entry.queued_at,
            entry.copies,
        )
        for entry in home.index.entries()
    ]
    found += [
        QueueRow(
            held.bundle_id,
            "held",
            names.get(held.recipient, held.recipient[:8]),
            held.recipient,
            _held_bytes(home, held.bundle_id),
            held.priority,
            held.expiry,
            None,
        )
        for held in home.relay_index.held()
    ]
    if wanted is not None:
        found = [row for row in found if row.neighbour_id == wanted]
    return sorted(found, key=lambda row: (STATES.index(row.state), row.priority, row.bundle_id))


def find(home: Home, prefix: str) -> QueueRow:
    """The one waiting bundle whose id starts with `prefix` (at least 4 characters)."""
    prefix = prefix.strip().lower()
    return one_by_prefix(
        rows(home),
        prefix,
        missing=f"no bundle {prefix} waits here (delivered or sent on already? "
        "`rise status` follows the files and messages this node sent)",
    )


class _HasBundleId(Protocol):
    @property
    def bundle_id(self) -> str: ...


_Row = TypeVar("_Row", bound=_HasBundleId)


def one_by_prefix(rows: Iterable[_Row], prefix: str, *, missing: str) -> _Row:
    """The one row whose bundle id starts with `prefix` (at least 4 characters, as `rise
    queue`, `rise status` and `rise inbox` take them); `missing` says there is none."""
    if len(prefix) < 4:
        raise UsageError(f"give at least 4 characters of a bundle id, not {prefix!r}")
    matches = [row for row in rows if row.bundle_id.startswith(prefix)]
    if not matches:
        raise UsageError(missing)
    if len(matches) > 1:
        raise UsageError(f"{prefix} matches {len(matches)} bundles: give more of the id")
    return matches[0]


def cancel(home: Home, row: QueueRow, *, now: int) -> str:
    """Take a queued, in-flight or held bundle back; returns what the user should know.

    A received bundle is refused: it is someone else's mail, delivered by
    rise-toss (a damaged one is quarantined there).
    """
    if row.state == "received":
        raise UsageError(
            f"{row.bundle_id} was received from {row.neighbour}: rise-toss delivers it; "
            "received bundles are not cancelled"
        )
    if row.state == "held":
        from rise_dtn.node.send.routed import held_path

        path: Path = held_path(home, BundleId.parse(row.bundle_id))
        home.spool.remove(path)
        home.relay_index.release_held(row.bundle_id)
        return "cancelled (it was held for a route and never left)"
    released = home.bundles.release(
        NodeId.parse(row.neighbour_id), BundleId.parse(row.bundle_id), Release.CANCELLED, now=now
    )
    if not released:
        return "already gone (acked or expired meanwhile)"
    if row.copies:
        return (
            f"cancelled here; the copy already written to a medium "
            f"({row.copies} time(s)) may still reach {row.neighbour}"
        )
    return "cancelled"


def _held_bytes(home: Home, bundle_id: str) -> int:
    """The sealed bundle's size in held/ (as send.routed.held_path names it), as for every
    other row; 0 if it is gone meanwhile."""
    try:
        return (home.spool.root / "held" / f"{bundle_id}.bundle").stat().st_size
    except OSError:
        return 0
