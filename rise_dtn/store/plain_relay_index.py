"""A relay's index writes on the default SQLite index, with the standard library alone.

`rise-xfer --toss` on a relay forwards a packet with four index operations
(the replay check, the quota, the forward's record, the map's refresh
time) and `rise-toss` with a few more; through SQLAlchemy each of those
commands paid its import, a third of a relay's start-up, on every stick
and every call. Each method here is the RelayIndex method of the same
name (store/relay_index.py), statement for statement and in the same
transaction shape, on PlainIndex's connection (store/plain_index.py: the
same pragmas, `BEGIN IMMEDIATE` for a write), so a crash or a full disk
leaves the rows the RelayIndex would have left
(tests/store/test_plain_relay_index.py holds the two to the same rows).

What a relay records names only neighbours and per-hop ids, as in
RelayIndex (protocol.md section 20.7). `open` gives None without the index
file or one of its tables; the caller then uses the RelayIndex, which
creates them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from rise_dtn.store.plain_index import (
    INDEX_TABLES,
    PlainIndex,
    delete_entry,
    owe,
    upsert,
)
from rise_dtn.store.rows import EntryRow, HeldRow, LinkRow, SeenRow

# The tables a relay's forward, a map's refresh and a held receipt write, beyond the Index's.
_RELAY = frozenset({"relayed", "map_sent", "map_link", "map_card", "held"})

# The largest IN list one statement binds (SQLite's default limit is 32766
# variables; a batch of 1024 packets binds at most 1024 at a time here).
_IN_BATCH = 500

FORGET_EVERY_SECONDS = 60  # as RelayIndex: a daemon tosses per bundle


class PlainRelayIndex(PlainIndex):
    """RelayIndex's relay-side operations and the map's (learning, refreshing) through `sqlite3`."""

    _tables = INDEX_TABLES | _RELAY

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        super().__init__(path, connection)
        self._forgot_at: int | None = None

    @classmethod
    def open(cls, path: Path) -> PlainRelayIndex | None:
        return cls._open(path)

    def held_for(self, neighbour: str) -> tuple[int, int]:
        """(bundles, bytes) this node holds as a relay for `neighbour` (not yet acked)."""
        query = (
            "SELECT count(*), coalesce(sum(relayed.size), 0) FROM relayed JOIN spool_entry "
            "ON spool_entry.bundle_id = relayed.bundle_id "
            "WHERE relayed.from_neighbour = ? AND spool_entry.direction = 'tx'"
        )
        with self.reading() as connection:
            count, size = connection.execute(query, (neighbour,)).fetchone()
        return int(count), int(size)

    def holding(self, commitment: str) -> list[tuple[str, str]]:
        """(bundle id, next hop) of packets still in tx/ under this cancel commitment."""
        query = (
            "SELECT spool_entry.bundle_id, spool_entry.neighbour FROM relayed JOIN spool_entry "
            "ON spool_entry.bundle_id = relayed.bundle_id "
            "WHERE relayed.commitment = ? AND spool_entry.direction = 'tx'"
        )
        with self.reading() as connection:
            return [(row[0], row[1]) for row in connection.execute(query, (commitment,))]

    def seen_among(self, bundle_ids: list[str]) -> set[str]:
        """Which of these packet ids were handled before (replays)."""
        found: set[str] = set()
        with self.reading() as connection:
            for batch in _batches(bundle_ids):
                query = f"SELECT bundle_id FROM seen WHERE bundle_id IN ({_marks(batch)})"
                found.update(bundle_id for (bundle_id,) in connection.execute(query, batch))
        return found

    def record_forwarded_many(
        self,
        forwarded: list[tuple[EntryRow, str, str, SeenRow]],
        *,
        replays: list[tuple[SeenRow, str]],
    ) -> None:
        """As RelayIndex.record_forwarded_many: one transaction for the whole batch."""
        next_ids = [entry.bundle_id for entry, _, _, _ in forwarded]
        arrivals = [(arrived, neighbour) for _, neighbour, _, arrived in forwarded] + replays
        arrived_ids = [arrived.bundle_id for arrived, _ in arrivals]
        with self.transaction() as connection:
            if forwarded:
                _delete_in(connection, "spool_entry", next_ids, direction="tx")
                released: set[str] = set()
                for batch in _batches(next_ids):
                    query = f'SELECT bundle_id FROM "release" WHERE bundle_id IN ({_marks(batch)})'
                    released.update(row[0] for row in connection.execute(query, batch))
                connection.executemany(
                    "INSERT INTO spool_entry (bundle_id, direction, neighbour, size, expiry, "
                    "priority, queued_at, copies) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            entry.bundle_id,
                            entry.direction,
                            entry.neighbour,
                            entry.size,
                            entry.expiry,
                            entry.priority,
                            entry.queued_at,
                            entry.copies,
                        )
                        for entry, _, _, _ in forwarded
                        if entry.bundle_id not in released
                    ],
                )
                _delete_in(connection, "relayed", next_ids)
                connection.executemany(
                    "INSERT INTO relayed (bundle_id, from_neighbour, size, expiry, commitment) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (entry.bundle_id, neighbour, entry.size, entry.expiry, commitment)
                        for entry, neighbour, commitment, _ in forwarded
                    ],
                )
                fresh = [arrived for _, _, _, arrived in forwarded]
                _delete_in(connection, "seen", [arrived.bundle_id for arrived in fresh])
                connection.executemany(
                    "INSERT INTO seen (bundle_id, expiry, state, sender, target, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [_seen_values(arrived) for arrived in fresh],
                )
            _delete_in(connection, "spool_entry", arrived_ids, direction="rx")
            _delete_in(connection, "pending_ack", arrived_ids)
            connection.executemany(
                "INSERT INTO pending_ack (bundle_id, neighbour, created) VALUES (?, ?, ?)",
                [(arrived.bundle_id, neighbour, arrived.at) for arrived, neighbour in arrivals],
            )

    def record_handled(self, arrived: SeenRow, *, neighbour: str) -> None:
        """A packet that ends here without a delivery (a cancel): remember it, owe the ack."""
        values = {
            "expiry": arrived.expiry,
            "state": arrived.state,
            "sender": arrived.sender,
            "target": arrived.target,
            "at": arrived.at,
        }
        with self.transaction() as connection:
            upsert(connection, "seen", {"bundle_id": arrived.bundle_id}, values)
            delete_entry(connection, arrived.bundle_id, "rx")
            owe(connection, arrived.bundle_id, neighbour, arrived.at)

    def forget_expired(self, now: int) -> None:
        """Drop expired routing records; at most once a minute (a daemon tosses per bundle)."""
        if self._forgot_at is not None and 0 <= now - self._forgot_at < FORGET_EVERY_SECONDS:
            return
        self._forgot_at = now
        with self.transaction() as connection:
            for table in ("relayed", "map_link", "map_card"):
                connection.execute(f"DELETE FROM {table} WHERE expiry <= ?", (now,))

    def links(self, now: int) -> list[LinkRow]:
        query = "SELECT a, b, via, distance, learned_at, expiry FROM map_link WHERE expiry > ?"
        with self.reading() as connection:
            return [LinkRow(*row) for row in connection.execute(query, (now,))]

    def learn(
        self, *, via: str, links: Iterable[LinkRow], cards: dict[str, bytes], card_expiry: int
    ) -> None:
        """Replace what `via` told us before with its latest map (a map, a receipt's reach)."""
        with self.transaction() as connection:
            connection.execute("DELETE FROM map_link WHERE via = ?", (via,))
            for link in links:
                connection.execute(
                    "INSERT INTO map_link (a, b, via, distance, learned_at, expiry) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (link.a, link.b, link.via, link.distance, link.learned_at, link.expiry),
                )
            for node_id, card in cards.items():
                values = {"card": card, "expiry": card_expiry}
                upsert(connection, "map_card", {"node_id": node_id}, values)

    def hold(self, row: HeldRow) -> None:
        """A bundle sealed with no route yet (a receipt, most often): it waits in held/."""
        with self.transaction() as connection:
            connection.execute("DELETE FROM held WHERE bundle_id = ?", (row.bundle_id,))
            connection.execute(
                "INSERT INTO held (bundle_id, recipient, hops, copies, expiry, priority, size, "
                "kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.bundle_id,
                    row.recipient,
                    row.hops,
                    row.copies,
                    row.expiry,
                    row.priority,
                    row.size,
                    row.kind,
                ),
            )

    def held(self) -> list[HeldRow]:
        query = (
            "SELECT bundle_id, recipient, hops, copies, expiry, priority, size, kind FROM held "
            "ORDER BY priority"
        )
        with self.reading() as connection:
            return [HeldRow(*row) for row in connection.execute(query)]

    def release_held(self, bundle_id: str) -> None:
        with self.transaction() as connection:
            connection.execute("DELETE FROM held WHERE bundle_id = ?", (bundle_id,))

    def maps_sent(self) -> dict[str, int]:
        with self.reading() as connection:
            return {row[0]: row[1] for row in connection.execute("SELECT * FROM map_sent")}

    def map_sent(self, neighbour: str, *, now: int) -> None:
        with self.transaction() as connection:
            upsert(connection, "map_sent", {"neighbour": neighbour}, {"at": now})


def _seen_values(row: SeenRow) -> tuple[object, ...]:
    return (row.bundle_id, row.expiry, row.state, row.sender, row.target, row.at)


def _batches(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[start : start + _IN_BATCH] for start in range(0, len(ids), _IN_BATCH)]


def _marks(batch: Sequence[str]) -> str:
    return ", ".join("?" * len(batch))


def _delete_in(
    connection: sqlite3.Connection, table: str, ids: list[str], *, direction: str | None = None
) -> None:
    """DELETE the rows of `ids` (in batches); `table` is this module's constant, never input."""
    for batch in _batches(ids):
        where = f"bundle_id IN ({_marks(batch)})"
        if direction is None:
            connection.execute(f"DELETE FROM {table} WHERE {where}", batch)
        else:
            query = f"DELETE FROM {table} WHERE {where} AND direction = ?"
            connection.execute(query, (*batch, direction))
