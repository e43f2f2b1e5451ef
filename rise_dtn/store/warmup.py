"""Run a send's index statements once on a throwaway database, in a process that forks.

SQLAlchemy sets up a great deal lazily, per class, on first use: the event
dispatchers of an engine and its connections, each statement class's
compiler dispatch and cache-key machinery. In a short process that is paid
by the first statement of each kind, and it came to 60-90 ms of the 110 ms
a `rise-send --hops 2` spent in a daemon's warm worker (node/warm.py),
whose children are each such a first time. Done once in the worker, every
forked child inherits it.

This must never touch a node's index: it works on an in-memory SQLite
database of the same schema, closed again before any child is forked.
"""

from __future__ import annotations

from rise_dtn.store.index import EntryRow, Index
from rise_dtn.store.relay_index import RelayIndex, SentRow

# A syntactically valid id (26 base32 characters); never a real bundle's.
_PLACEHOLDER_ID = "a" * 26


def warm_up() -> None:
    """The statements of a direct and of a routed send, each run once, in memory."""
    index = Index("sqlite://")
    try:
        relay_index = RelayIndex(index)
        entry = EntryRow(
            bundle_id=_PLACEHOLDER_ID,
            direction="tx",
            neighbour=_PLACEHOLDER_ID,
            size=0,
            expiry=1,
            priority=0,
            queued_at=0,
        )
        sent = SentRow(
            bundle_id=_PLACEHOLDER_ID,
            recipient=_PLACEHOLDER_ID,
            created=0,
            expiry=1,
            size=0,
            copies=b"",
        )
        relay_index.cards(0)
        relay_index.links(0)
        relay_index.last_route(_PLACEHOLDER_ID)
        index.put_entry(entry, digest="0" * 32, also=RelayIndex.sent_statements(sent))
        relay_index.put_sent(sent, recipient_route="")
        index.put_entry(entry, digest="0" * 32)
    finally:
        index.close()
