"""The index's rows as plain records, with no database library.

The send path names its rows (a spool entry, a send for `rise status`, a
route's links) before it knows which way they are written: through
SQLAlchemy (store/index.py, store/relay_index.py) or, for a direct send on
the default SQLite index, through the standard library alone
(store/plain_index.py). Keeping the records here lets a `rise-send` of a
message run without importing SQLAlchemy at all (its import is most of a
command's start-up). The tables themselves stay in index.py and
relay_index.py; these records mirror their columns.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class EntryRow:
    bundle_id: str
    direction: str
    neighbour: str
    size: int
    expiry: int
    priority: int
    queued_at: int
    copies: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class SeenRow:
    bundle_id: str
    expiry: int
    state: str
    sender: str
    target: str
    at: int


@dataclasses.dataclass(frozen=True, slots=True)
class InboxRow:
    bundle_id: str
    sender: str
    sender_name: str
    received_at: int
    size: int
    path: str
    read: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RelayedRow:
    bundle_id: str
    from_neighbour: str
    size: int
    expiry: int
    commitment: str


@dataclasses.dataclass(frozen=True, slots=True)
class SentRow:
    bundle_id: str
    recipient: str
    created: int
    expiry: int
    size: int
    copies: bytes
    delivered_at: int | None = None
    cancelled: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LinkRow:
    a: str
    b: str
    via: str
    distance: int
    learned_at: int
    expiry: int


@dataclasses.dataclass(frozen=True, slots=True)
class HeldRow:
    bundle_id: str
    recipient: str
    hops: int
    copies: int
    expiry: int
    priority: int
    size: int
    kind: int
