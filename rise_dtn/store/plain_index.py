"""A direct send's one index write on the default SQLite index, with the standard library alone.

`rise-send FILE NODE` without relays writes the index once: the new tx
entry, the digest it was sealed to, and the record `rise status` follows,
in one write transaction. Through SQLAlchemy that write costs its import,
about a third of a one-off command's start-up, which a mail gateway or a
cron job pays on every message. Here the same statements run through
`sqlite3`, on a connection set up as store/database.py sets up every
SQLite connection (`configure`: WAL, synchronous FULL, busy timeout; no
implicit transactions) and under the same write lock (`BEGIN IMMEDIATE`),
so a send written either way leaves the same rows
(tests/store/test_plain_index.py holds them to it).

Only for an index file that exists and has the tables: a new node's first
command creates them through SQLAlchemy, and any other index URL (a
PostgreSQL server) always goes through SQLAlchemy. Raises only
StorageError (NoSpaceError for a full disk), as store/database.py does.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from rise_dtn.core.errors import NoSpaceError, StorageError
from rise_dtn.store.rows import EntryRow, InboxRow, LinkRow, SeenRow, SentRow

# How long a writer waits for another writer before giving up with an error.
# A write transaction lasts milliseconds (a repair of a large spool, seconds);
# 30 s means something is stuck, and an error says so instead of hanging a cron job.
BUSY_TIMEOUT_SECONDS = 30

# SQLite reports a full disk as SQLITE_FULL on a write, and as
# SQLITE_IOERR_SHMSIZE when it cannot even grow its shared-memory file, which
# every WAL reader needs: on a disk with no block left, opening the index fails.
SQLITE_NO_SPACE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_SHMSIZE})

NO_SPACE_MESSAGE = "no space left for the index; nothing was lost, retry when space returns"

# The tables a send writes or checks, and those a route is drawn from
# (store/index.py, store/relay_index.py).
_WRITTEN = frozenset({"spool_entry", "release", "tx_digest", "sent", "last_route"})
_MAP = frozenset({"map_card", "map_link", "last_route"})


def configure(connection: Any) -> None:
    """Set up a new SQLite connection to the index (both ways in: SQLAlchemy's and ours)."""
    # Take transaction control away from the sqlite3 module: a deferred
    # implicit BEGIN would let a check run outside the write lock
    # (store/database.py says why); BEGIN is always ours.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed "seen" row survives power loss, which is what makes
    # "never delivered twice" hold across a crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


# One listing: a bundle made durable in tx/ and the digest it was sealed to.
Listed = tuple[EntryRow, str | None]


def put_queued(
    path: Path,
    listed: Sequence[Listed],
    *,
    sent: SentRow | None,
    last_route: tuple[str, str] | None = None,
) -> bool:
    """List new tx bundles, their digests and the send's record in one write transaction.

    As Index.put_entry with RelayIndex.sent_statements (a direct send: one
    bundle), or as BundleTransaction.list_queued for each packet and then
    RelayIndex.put_sent (a send over relays: a packet per copy, and
    `last_route`, (recipient, route), for the next route's choice). The
    sent record is written first, and a bundle whose release is recorded
    already (a live link took and confirmed it before this got here) is
    not listed. False: the index file or one of its tables is not there
    yet, and nothing was written; the caller then goes through the Index,
    which creates them.
    """
    connection = _connect(path)
    if connection is None:
        return False
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            if not _has_tables(connection, _WRITTEN):
                connection.execute("ROLLBACK")
                return False
            if sent is not None:
                _put_sent(connection, sent)
            if last_route is not None:
                recipient, route = last_route
                _upsert(connection, "last_route", {"recipient": recipient}, {"route": route})
            for entry, digest in listed:
                _put_entry(connection, entry, digest=digest)
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise index_error(exc, "index failure") from None
    finally:
        connection.close()
    return True


class _PlainConnection:
    """One `sqlite3` connection to the index file, behind a lock, reopened in a forked
    child (a parallel toss's worker) and never shared across the fork."""

    _tables: frozenset[str]

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self._path = path
        self._connection = connection
        self._pid = os.getpid()
        self._lock = threading.RLock()

    @classmethod
    def _open(cls, path: Path) -> Self | None:
        """None without the index file or `_tables`: the caller's SQLAlchemy side creates them."""
        connection = _connect(path)
        if connection is None:
            return None
        try:
            present = _has_tables(connection, cls._tables)
        except sqlite3.Error as exc:
            connection.close()
            raise index_error(exc, "index failure") from None
        if not present:
            connection.close()
            return None
        return cls(path, connection)

    def _current(self) -> sqlite3.Connection:
        """This process's connection (call with the lock held)."""
        if self._pid != os.getpid():
            # Forked: the parent's connection is left alone, never used or closed here.
            connection = _connect(self._path)
            if connection is None:
                raise StorageError(f"index failure: cannot open {self._path}")
            _INHERITED.append(self._connection)
            self._connection, self._pid = connection, os.getpid()
        return self._connection


class PlainMap(_PlainConnection):
    """The reads a route is drawn from, as RelayIndex has them, straight from the file.

    One connection for all of them (each connect sets the pragmas again),
    shared by the threads of a daemon under a lock, and never across a fork
    (a parallel toss's workers open their own); each read is its own
    snapshot, as each RelayIndex read is its own read transaction. `open`
    gives None when the index or a map table is not there yet; the caller
    then reads through the RelayIndex, which creates them.
    """

    _tables = _MAP

    @classmethod
    def open(cls, path: Path) -> PlainMap | None:
        return cls._open(path)

    def cards(self, now: int) -> dict[str, bytes]:
        query = "SELECT node_id, card FROM map_card WHERE expiry > ?"
        return {node_id: card for node_id, card in self._read(query, (now,))}

    def links(self, now: int) -> list[LinkRow]:
        query = "SELECT a, b, via, distance, learned_at, expiry FROM map_link WHERE expiry > ?"
        return [LinkRow(*row) for row in self._read(query, (now,))]

    def last_route(self, recipient: str) -> list[str]:
        rows = self._read("SELECT route FROM last_route WHERE recipient = ?", (recipient,))
        return rows[0][0].split(",") if rows and rows[0][0] else []

    def _read(self, query: str, parameters: tuple[object, ...]) -> list[Any]:
        with self._lock:
            try:
                return self._current().execute(query, parameters).fetchall()
            except sqlite3.Error as exc:
                raise index_error(exc, "index failure") from None


# A parent's connections a forked child replaced, kept referenced for the
# child's life: dropping one would close it (sqlite3_close), and SQLite's state
# for a connection is not the child's to tear down (as SQLAlchemy's
# dispose(close=False) in a toss worker, node/toss/parallel.py).
_INHERITED: list[sqlite3.Connection] = []


def _connect(path: Path) -> sqlite3.Connection | None:
    """A connection set up as every index connection is; None if there is no index file."""
    try:
        connection = sqlite3.connect(
            path.absolute().as_uri() + "?mode=rw",
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            check_same_thread=False,  # PlainMap's, behind its lock
        )
    except sqlite3.Error:
        return None  # no index yet (or one we cannot open: the Index says why)
    try:
        configure(connection)
    except sqlite3.Error as exc:
        connection.close()
        raise index_error(exc, "index failure") from None
    return connection


def _has_tables(connection: sqlite3.Connection, tables: frozenset[str]) -> bool:
    present = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return tables <= {name for (name,) in present}


def _put_sent(connection: sqlite3.Connection, sent: SentRow) -> None:
    connection.execute("DELETE FROM sent WHERE bundle_id = ?", (sent.bundle_id,))
    connection.execute(
        "INSERT INTO sent (bundle_id, recipient, created, expiry, size, copies, "
        "delivered_at, cancelled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sent.bundle_id,
            sent.recipient,
            sent.created,
            sent.expiry,
            sent.size,
            sent.copies,
            sent.delivered_at,
            sent.cancelled,
        ),
    )


def _put_entry(connection: sqlite3.Connection, entry: EntryRow, *, digest: str | None) -> None:
    if entry.direction == "tx" and _released(connection, entry.bundle_id):
        return  # gone already: listing it now would name a file that is not there
    keys = {"bundle_id": entry.bundle_id, "direction": entry.direction}
    values = {
        "neighbour": entry.neighbour,
        "size": entry.size,
        "expiry": entry.expiry,
        "priority": entry.priority,
        "queued_at": entry.queued_at,
        "copies": entry.copies,
    }
    _upsert(connection, "spool_entry", keys, values)
    if digest is not None:
        _upsert(connection, "tx_digest", {"bundle_id": entry.bundle_id}, {"digest": digest})


def _upsert(
    connection: sqlite3.Connection,
    table: str,
    keys: Mapping[str, object],
    values: Mapping[str, object],
) -> None:
    """Insert or replace by primary key, as index.upsert does: an UPDATE, then an INSERT.
    Table and column names are this module's own constants, never input."""
    assignments = ", ".join(f"{name} = ?" for name in values)
    where = " AND ".join(f"{name} = ?" for name in keys)
    update = f"UPDATE {table} SET {assignments} WHERE {where}"
    if connection.execute(update, (*values.values(), *keys.values())).rowcount == 0:
        columns = ", ".join((*keys, *values))
        marks = ", ".join("?" * (len(keys) + len(values)))
        insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
        connection.execute(insert, (*keys.values(), *values.values()))


def _released(connection: sqlite3.Connection, bundle_id: str) -> bool:
    query = 'SELECT 1 FROM "release" WHERE bundle_id = ?'
    return connection.execute(query, (bundle_id,)).fetchone() is not None


def index_error(exc: sqlite3.Error, what: str) -> StorageError:
    """The one line a user sees for a database failure (the driver's first line)."""
    if getattr(exc, "sqlite_errorcode", None) in SQLITE_NO_SPACE:
        return NoSpaceError(NO_SPACE_MESSAGE)
    text = str(exc)
    reason = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return StorageError(f"{what}: {reason}")


# The tables PlainIndex reads and writes (store/index.py's own).
_INDEX = frozenset(
    {"spool_entry", "release", "tx_digest", "pending_ack", "seen", "receipt_owed", "inbox"}
)

# The largest IN list one statement binds, as Index.released_among bounds it.
_IN_BATCH = 500


class PlainIndex(_PlainConnection):
    """The Index's operations a sneakernet exchange and a direct toss use, through `sqlite3`.

    `rise-xfer DIR` (release acked bundles, count copies, give acks) and
    `rise-xfer --toss` / `rise-toss` of direct bundles (admission, the
    delivery journal, acks owed) touch nothing else, and through SQLAlchemy
    they pay its import, half of a 256 MiB exchange's fixed cost. Each
    method is the Index method of the same name, statement for statement,
    in the same transaction shape: a write holds `BEGIN IMMEDIATE` from its
    first statement, as database.writing does, so a crash or a full disk
    leaves the rows the Index would have left (tests/store/test_plain_index.py
    compares both). One connection, behind a lock, reopened in a forked
    child (a parallel toss's worker) and never shared across the fork, as
    PlainMap's. `open` gives None without the index file or its tables;
    the caller then uses the Index, which creates them.
    """

    _tables = _INDEX

    @classmethod
    def open(cls, path: Path) -> PlainIndex | None:
        return cls._open(path)

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the write lock: committed on a clean exit, else rolled back."""
        with self._lock:
            connection = self._current()
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                    connection.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise index_error(exc, "index failure") from None

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read transaction (one snapshot); nothing in it may write."""
        with self._lock:
            connection = self._current()
            try:
                connection.execute("BEGIN")
                try:
                    yield connection
                finally:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise index_error(exc, "index failure") from None

    # Spool entries.

    def put_entry(self, row: EntryRow, *, digest: str | None = None) -> None:
        with self.transaction() as connection:
            _put_entry(connection, row, digest=digest)

    def drop_entry(self, bundle_id: str, direction: str) -> None:
        with self.transaction() as connection:
            _delete_entry(connection, bundle_id, direction)

    def held_bytes(self, direction: str, neighbour: str) -> int:
        query = (
            "SELECT coalesce(sum(size), 0) FROM spool_entry WHERE direction = ? AND neighbour = ?"
        )
        with self.reading() as connection:
            return int(connection.execute(query, (direction, neighbour)).fetchone()[0])

    def count_copy(self, bundle_id: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                "UPDATE spool_entry SET copies = copies + 1 WHERE bundle_id = ? AND direction = ?",
                (bundle_id, "tx"),
            )

    # Releases.

    def release(self, bundle_id: str, neighbour: str, *, size: int, how: str, now: int) -> None:
        with self.transaction() as connection:
            _delete_entry(connection, bundle_id, "tx")
            connection.execute("DELETE FROM tx_digest WHERE bundle_id = ?", (bundle_id,))
            values = {"neighbour": neighbour, "size": size, "released_at": now, "how": how}
            _upsert(connection, '"release"', {"bundle_id": bundle_id}, values)

    def released_among(self, bundle_ids: list[str]) -> set[str]:
        found: set[str] = set()
        with self.reading() as connection:
            for start in range(0, len(bundle_ids), _IN_BATCH):
                batch = bundle_ids[start : start + _IN_BATCH]
                marks = ", ".join("?" * len(batch))
                query = f'SELECT bundle_id FROM "release" WHERE bundle_id IN ({marks})'
                found.update(bundle_id for (bundle_id,) in connection.execute(query, batch))
        return found

    # The delivery journal.

    def seen_state(self, bundle_id: str) -> SeenRow | None:
        query = "SELECT bundle_id, expiry, state, sender, target, at FROM seen WHERE bundle_id = ?"
        with self.reading() as connection:
            row = connection.execute(query, (bundle_id,)).fetchone()
        return SeenRow(*row) if row is not None else None

    def record_delivering(self, row: SeenRow) -> None:
        values = {
            "expiry": row.expiry,
            "state": row.state,
            "sender": row.sender,
            "target": row.target,
            "at": row.at,
        }
        with self.transaction() as connection:
            _upsert(connection, "seen", {"bundle_id": row.bundle_id}, values)

    def finish_delivery(
        self,
        bundle_id: str,
        *,
        neighbour: str,
        message: InboxRow | None,
        now: int,
        hop_id: str | None = None,
        receipt_to: str | None = None,
    ) -> None:
        hop_id = hop_id or bundle_id
        with self.transaction() as connection:
            connection.execute(
                "UPDATE seen SET state = ? WHERE bundle_id = ?", ("delivered", bundle_id)
            )
            if message is not None:
                exists = connection.execute(
                    "SELECT bundle_id FROM inbox WHERE bundle_id = ?", (bundle_id,)
                ).fetchone()
                if exists is None:
                    connection.execute(
                        "INSERT INTO inbox (bundle_id, sender, sender_name, received_at, size, "
                        "path, read) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            message.bundle_id,
                            message.sender,
                            message.sender_name,
                            message.received_at,
                            message.size,
                            message.path,
                            message.read,
                        ),
                    )
            _delete_entry(connection, hop_id, "rx")
            _owe(connection, hop_id, neighbour, now)
            if receipt_to is not None:
                values = {"sender": receipt_to, "created": now}
                _upsert(connection, "receipt_owed", {"bundle_id": bundle_id}, values)

    def receipts_owed(self) -> list[tuple[str, str]]:
        with self.reading() as connection:
            rows = connection.execute("SELECT bundle_id, sender FROM receipt_owed").fetchall()
        return [(bundle_id, sender) for bundle_id, sender in rows]

    def receipt_queued(self, bundle_id: str) -> None:
        with self.transaction() as connection:
            connection.execute("DELETE FROM receipt_owed WHERE bundle_id = ?", (bundle_id,))

    # Hop acks owed.

    def owe_ack(self, bundle_id: str, neighbour: str, *, now: int) -> None:
        with self.transaction() as connection:
            _owe(connection, bundle_id, neighbour, now)

    def drop_received(self, stem: str, bundle_id: str, neighbour: str, *, now: int) -> None:
        with self.transaction() as connection:
            _owe(connection, bundle_id, neighbour, now)
            _delete_entry(connection, stem, "rx")

    def acks_owed(self) -> list[tuple[str, str]]:
        with self.reading() as connection:
            rows = connection.execute("SELECT neighbour, bundle_id FROM pending_ack").fetchall()
        return [(neighbour, bundle_id) for neighbour, bundle_id in rows]

    def acks_sent(self, neighbour: str, bundle_ids: list[str]) -> None:
        with self.transaction() as connection:
            # Batched where the Index binds one IN list: the same rows go, in one transaction.
            for start in range(0, len(bundle_ids), _IN_BATCH):
                batch = bundle_ids[start : start + _IN_BATCH]
                marks = ", ".join("?" * len(batch))
                connection.execute(
                    f"DELETE FROM pending_ack WHERE neighbour = ? AND bundle_id IN ({marks})",
                    (neighbour, *batch),
                )


def _delete_entry(connection: sqlite3.Connection, bundle_id: str, direction: str) -> None:
    connection.execute(
        "DELETE FROM spool_entry WHERE bundle_id = ? AND direction = ?", (bundle_id, direction)
    )


def _owe(connection: sqlite3.Connection, bundle_id: str, neighbour: str, now: int) -> None:
    keys = {"bundle_id": bundle_id, "neighbour": neighbour}
    _upsert(connection, "pending_ack", keys, {"created": now})


# What store/plain_relay_index.py shares: it writes these tables too, row for row.
INDEX_TABLES = _INDEX
upsert = _upsert
delete_entry = _delete_entry
owe = _owe
