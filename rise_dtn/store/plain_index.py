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
import sqlite3
from pathlib import Path
from typing import Any

from rise_dtn.core.errors import NoSpaceError, StorageError
from rise_dtn.store.rows import EntryRow, SentRow

# How long a writer waits for another writer before giving up with an error.
# A write transaction lasts milliseconds (a repair of a large spool, seconds);
# 30 s means something is stuck, and an error says so instead of hanging a cron job.
BUSY_TIMEOUT_SECONDS = 30

# SQLite reports a full disk as SQLITE_FULL on a write, and as
# SQLITE_IOERR_SHMSIZE when it cannot even grow its shared-memory file, which
# every WAL reader needs: on a disk with no block left, opening the index fails.
SQLITE_NO_SPACE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_SHMSIZE})

NO_SPACE_MESSAGE = "no space left for the index; nothing was lost, retry when space returns"

# The tables a direct send writes or checks (store/index.py, store/relay_index.py).
_TABLES = frozenset({"spool_entry", "release", "tx_digest", "sent"})


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


def put_queued(path: Path, entry: EntryRow, *, digest: str | None, sent: SentRow | None) -> bool:
    """List a new tx bundle, with its digest and sent record, in one write transaction.

    As Index.put_entry with RelayIndex.sent_statements: the sent record is
    written first, and a bundle whose release is recorded already (a live
    link took and confirmed it before this got here) is not listed. False:
    the index file or one of its tables is not there yet, and nothing was
    written; the caller then goes through the Index, which creates them.
    """
    try:
        connection = sqlite3.connect(
            path.absolute().as_uri() + "?mode=rw", uri=True, timeout=BUSY_TIMEOUT_SECONDS
        )
    except sqlite3.Error:
        return False  # no index yet (or one we cannot open: the Index says why)
    try:
        configure(connection)
        connection.execute("BEGIN IMMEDIATE")
        try:
            if not _write(connection, entry, digest=digest, sent=sent):
                connection.execute("ROLLBACK")
                return False
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


def _write(
    connection: sqlite3.Connection, entry: EntryRow, *, digest: str | None, sent: SentRow | None
) -> bool:
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    if not {name for (name,) in tables} >= _TABLES:
        return False
    if sent is not None:
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
    if entry.direction == "tx" and _released(connection, entry.bundle_id):
        return True  # gone already: listing it now would name a file that is not there
    values = (entry.neighbour, entry.size, entry.expiry, entry.priority, entry.queued_at)
    keys = (entry.bundle_id, entry.direction)
    updated = connection.execute(
        "UPDATE spool_entry SET neighbour = ?, size = ?, expiry = ?, priority = ?, "
        "queued_at = ?, copies = ? WHERE bundle_id = ? AND direction = ?",
        (*values, entry.copies, *keys),
    )
    if updated.rowcount == 0:
        connection.execute(
            "INSERT INTO spool_entry (bundle_id, direction, neighbour, size, expiry, "
            "priority, queued_at, copies) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*keys, *values, entry.copies),
        )
    if digest is not None:
        updated = connection.execute(
            "UPDATE tx_digest SET digest = ? WHERE bundle_id = ?", (digest, entry.bundle_id)
        )
        if updated.rowcount == 0:
            connection.execute(
                "INSERT INTO tx_digest (bundle_id, digest) VALUES (?, ?)",
                (entry.bundle_id, digest),
            )
    return True


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
