"""The spool index: SQLAlchemy 2 Core on SQLite (WAL) by default, any URL by config.

The spool tables are a cache of the spool files (`rise-check --repair`
rebuilds them). Three tables are the index's own truth: `seen` (bundle ids
already delivered, so a replay is refused), `pending_ack` (acks owed to
neighbours) and `inbox` (which messages were read). Every operation is one
transaction, named for what it means to the node; no SQL leaves this module.
Timestamps are passed in: this module never reads the clock.

The schema is portable (SQLite, PostgreSQL): sizes and times are BIGINT,
since PostgreSQL's INTEGER is 32 bits (a 3 GiB file, an expiry after 2038)
while SQLite stores both alike (an existing index needs no migration);
string lengths are the longest value that can occur (ids are 26 characters,
paths at most PATH_MAX); upserts are an UPDATE then an INSERT inside the
write lock, not a dialect's own UPSERT.

Core rather than the ORM: each rise-* command is a short process, and the
ORM would add a fifth to its start-up time for no gain in a schema this small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Executable,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL

from rise_dtn.store import database
from rise_dtn.store.rows import EntryRow as EntryRow  # noqa: PLC0414 - re-exported
from rise_dtn.store.rows import InboxRow as InboxRow  # noqa: PLC0414 - re-exported
from rise_dtn.store.rows import SeenRow as SeenRow  # noqa: PLC0414 - re-exported

metadata = MetaData()

# One bundle file in tx/ or rx/ (a cache of the file and its header).
SpoolEntry = Table(
    "spool_entry",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("direction", String(2), primary_key=True),  # "tx" or "rx"
    Column("neighbour", String(26), index=True),
    Column("size", BigInteger, nullable=False),
    Column("expiry", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("queued_at", BigInteger, nullable=False),
    Column("copies", Integer, nullable=False, default=0),  # times written to a carrier
)

# A tx bundle the neighbour confirmed, or that was moved (--move) or expired.
Release = Table(
    "release",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("neighbour", String(26), index=True),
    Column("size", BigInteger, nullable=False),
    Column("released_at", BigInteger, nullable=False),
    Column("how", String(16), nullable=False),  # "acked", "moved", "expired"
)

# A hop ack owed to a neighbour: the bundle was verified and processed here.
# Acks are owed only after toss (delivered, duplicate or expired), never for a
# bundle merely stored: a corrupt copy must not release the sender's good one.
PendingAck = Table(
    "pending_ack",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("neighbour", String(26), primary_key=True),
    Column("created", BigInteger, nullable=False),
)

# An end-to-end bundle this node accepted: the delivery journal and replay guard.
Seen = Table(
    "seen",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("expiry", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),  # "delivering" then "delivered"
    Column("sender", String(26), nullable=False),
    Column("target", String(4096), nullable=False),  # where the payload goes
    Column("at", BigInteger, nullable=False),
)

# A delivery receipt owed to the sender of a bundle that came over relays.
# Written in the delivery's own transaction and removed once the receipt is
# queued, so a crash between the two never loses it; a repeat is harmless
# (the sender counts only the first receipt for a bundle).
ReceiptOwed = Table(
    "receipt_owed",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("sender", String(26), nullable=False),
    Column("created", BigInteger, nullable=False),
)

# The digest (transaction.SpoolDigest) of a bundle this node sealed, recorded as it
# was written: the sender can tell a damaged copy of its own bundle (bit rot,
# a medium that shared its bytes) instead of offering it again and again.
# Its own table, so that an existing index needs no migration.
QueuedDigest = Table(
    "tx_digest",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("digest", String(32), nullable=False),
)

# A message delivered to this node, stored as a file under inbox/.
InboxMessage = Table(
    "inbox",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("sender", String(26), nullable=False),
    Column("sender_name", String(64), nullable=False),
    Column("received_at", BigInteger, nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("path", String(4096), nullable=False),
    Column("read", Boolean, nullable=False, default=False),
)


def sqlite_file_url(path: Path) -> URL:
    """The URL of the SQLite index file `path`, built, not written as text: in
    "sqlite:///PATH" a '?' in the path starts a query and a '%' an escape, and the
    index would be another file (beside the home) than the one PlainIndex opens."""
    return URL.create("sqlite", database=str(path))


def upsert(
    connection: Connection, table: Table, keys: dict[str, Any], values: dict[str, Any]
) -> None:
    """Insert or replace by primary key, portably (no dialect-specific UPSERT)."""
    where = and_(*(table.c[name] == value for name, value in keys.items()))
    if connection.execute(update(table).where(where).values(**values)).rowcount == 0:
        connection.execute(insert(table).values(**keys, **values))


def entry_dict(row: EntryRow) -> dict[str, Any]:
    """A spool entry as column values; by hand, since dataclasses.asdict deep-copies
    every field and a relay writes a thousand of these per batch."""
    return {
        "bundle_id": row.bundle_id,
        "direction": row.direction,
        "neighbour": row.neighbour,
        "size": row.size,
        "expiry": row.expiry,
        "priority": row.priority,
        "queued_at": row.queued_at,
        "copies": row.copies,
    }


def entry_values(row: EntryRow) -> dict[str, Any]:
    """The columns of a spool entry other than its key."""
    values = entry_dict(row)
    del values["bundle_id"], values["direction"]
    return values


class Index:
    """The node's index; each method is one transaction.

    A method that writes runs in `transaction()`, which holds the database's
    write lock from its first statement (store/database.py says how and
    why), so its checks and its writes are atomic across processes. A
    method that only reads runs in `reading()`, which never waits for a
    writer.
    """

    def __init__(self, url: str | URL) -> None:
        self.engine: Engine = database.open_engine(url)
        database.create_tables(self.engine, metadata)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on a clean exit, rolled back otherwise."""
        with database.writing(self.engine) as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot); nothing in it may write."""
        with database.reading(self.engine) as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()

    # Spool entries (cache of tx/ and rx/).

    def put_entry(
        self, row: EntryRow, *, digest: str | None = None, also: Sequence[Executable] = ()
    ) -> None:
        """List a spool file; `digest`: what the sender's own bundle hashed to when sealed;
        `also`: statements of another table that belong in the same transaction (a
        direct send's record for `rise status`)."""
        with self.transaction() as connection:
            for statement in also:
                connection.execute(statement)
            if row.direction == "tx" and _released(connection, row.bundle_id):
                # A live link took and confirmed it before its sender got to
                # record it: recording it now would list a file that is gone.
                return
            keys = {"bundle_id": row.bundle_id, "direction": row.direction}
            upsert(connection, SpoolEntry, keys, entry_values(row))
            if digest is not None:
                upsert(connection, QueuedDigest, {"bundle_id": row.bundle_id}, {"digest": digest})

    def digests(self) -> dict[str, str]:
        """Bundle id -> digest recorded when sealed, for the bundles still queued."""
        with self.reading() as connection:
            query = select(QueuedDigest.c.bundle_id, QueuedDigest.c.digest)
            return {bundle_id: digest for bundle_id, digest in connection.execute(query)}

    def drop_entry(self, bundle_id: str, direction: str) -> None:
        with self.transaction() as connection:
            connection.execute(delete_entry(bundle_id, direction))

    def entries(self) -> list[EntryRow]:
        with self.reading() as connection:
            rows = connection.execute(select(SpoolEntry)).mappings().all()
        return [EntryRow(**row) for row in rows]

    def held_bytes(self, direction: str, neighbour: str) -> int:
        """Bytes listed in tx/ or rx/ for one neighbour (the receive quota counts rx/)."""
        query = select(func.coalesce(func.sum(SpoolEntry.c.size), 0)).where(
            SpoolEntry.c.direction == direction, SpoolEntry.c.neighbour == neighbour
        )
        with self.reading() as connection:
            return int(connection.execute(query).scalar_one())

    def count_copy(self, bundle_id: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                update(SpoolEntry)
                .where(SpoolEntry.c.bundle_id == bundle_id, SpoolEntry.c.direction == "tx")
                .values(copies=SpoolEntry.c.copies + 1)
            )

    def replace_entries(self, drop: list[tuple[str, str]], put: list[EntryRow]) -> None:
        """rise-check --repair: make the cache match the files, in one transaction."""
        with self.transaction() as connection:
            for bundle_id, direction in drop:
                connection.execute(delete_entry(bundle_id, direction))
            for row in put:
                keys = {"bundle_id": row.bundle_id, "direction": row.direction}
                upsert(connection, SpoolEntry, keys, entry_values(row))

    # Releases (tx bundles that left for good).

    def release(self, bundle_id: str, neighbour: str, *, size: int, how: str, now: int) -> None:
        with self.transaction() as connection:
            connection.execute(delete_entry(bundle_id, "tx"))
            connection.execute(delete(QueuedDigest).where(QueuedDigest.c.bundle_id == bundle_id))
            values = {"neighbour": neighbour, "size": size, "released_at": now, "how": how}
            upsert(connection, Release, {"bundle_id": bundle_id}, values)

    def released_among(self, bundle_ids: list[str]) -> set[str]:
        """Those of `bundle_ids` whose release is recorded (a crash may have kept the file)."""
        found: set[str] = set()
        with self.reading() as connection:
            for start in range(0, len(bundle_ids), 500):  # bound the IN list
                batch = bundle_ids[start : start + 500]
                query = select(Release.c.bundle_id).where(Release.c.bundle_id.in_(batch))
                found.update(bundle_id for (bundle_id,) in connection.execute(query))
        return found

    def releases_among(self, bundle_ids: list[str]) -> dict[str, tuple[str, int]]:
        """Bundle id -> (how, when) for those of `bundle_ids` that left tx/ for good."""
        found: dict[str, tuple[str, int]] = {}
        with self.reading() as connection:
            for start in range(0, len(bundle_ids), 500):  # bound the IN list
                batch = bundle_ids[start : start + 500]
                query = select(Release.c.bundle_id, Release.c.how, Release.c.released_at).where(
                    Release.c.bundle_id.in_(batch)
                )
                found.update({row[0]: (row[1], row[2]) for row in connection.execute(query)})
        return found

    def delivered_counts(self) -> dict[str, int]:
        """Per neighbour: bundles it confirmed (acked) or took (moved)."""
        query = (
            select(Release.c.neighbour, func.count())
            .where(Release.c.how.in_(("acked", "moved")))
            .group_by(Release.c.neighbour)
        )
        with self.reading() as connection:
            return {neighbour: int(count) for neighbour, count in connection.execute(query)}

    # The delivery journal.

    def seen_state(self, bundle_id: str) -> SeenRow | None:
        with self.reading() as connection:
            row = (
                connection.execute(select(Seen).where(Seen.c.bundle_id == bundle_id))
                .mappings()
                .first()
            )
        return SeenRow(**row) if row is not None else None

    def record_delivering(self, row: SeenRow) -> None:
        with self.transaction() as connection:
            values = dataclasses.asdict(row)
            del values["bundle_id"]
            upsert(connection, Seen, {"bundle_id": row.bundle_id}, values)

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
        """Delivered: journal it, file the message, forget the rx entry, owe the ack.

        `hop_id` is the id of the packet as it arrived when that differs from
        the end-to-end id (an onion packet): the ack and the rx entry use it.
        `receipt_to` owes that sender a delivery receipt, in the same
        transaction (see ReceiptOwed).
        """
        hop_id = hop_id or bundle_id
        with self.transaction() as connection:
            connection.execute(
                update(Seen).where(Seen.c.bundle_id == bundle_id).values(state="delivered")
            )
            if message is not None:
                exists = connection.execute(
                    select(InboxMessage.c.bundle_id).where(InboxMessage.c.bundle_id == bundle_id)
                ).first()
                if exists is None:
                    connection.execute(insert(InboxMessage).values(**dataclasses.asdict(message)))
            connection.execute(delete_entry(hop_id, "rx"))
            owe(connection, hop_id, neighbour, now)
            if receipt_to is not None:
                values = {"sender": receipt_to, "created": now}
                upsert(connection, ReceiptOwed, {"bundle_id": bundle_id}, values)

    def receipts_owed(self) -> list[tuple[str, str]]:
        """(bundle id, sender) for every receipt not yet queued."""
        with self.reading() as connection:
            query = select(ReceiptOwed.c.bundle_id, ReceiptOwed.c.sender)
            return [(bundle_id, sender) for bundle_id, sender in connection.execute(query)]

    def receipt_queued(self, bundle_id: str) -> None:
        with self.transaction() as connection:
            connection.execute(delete(ReceiptOwed).where(ReceiptOwed.c.bundle_id == bundle_id))

    # Hop acks owed.

    def owe_ack(self, bundle_id: str, neighbour: str, *, now: int) -> None:
        with self.transaction() as connection:
            owe(connection, bundle_id, neighbour, now)

    def drop_received(self, stem: str, bundle_id: str, neighbour: str, *, now: int) -> None:
        """Forget the rx row and owe the ack in one transaction: a crash after it leaves
        at most a file the next toss drops again, never a row naming a file that is gone."""
        with self.transaction() as connection:
            owe(connection, bundle_id, neighbour, now)
            connection.execute(delete_entry(stem, "rx"))

    def acks_owed(self) -> list[tuple[str, str]]:
        """(neighbour, bundle id) for every ack not yet on a carrier."""
        with self.reading() as connection:
            query = select(PendingAck.c.neighbour, PendingAck.c.bundle_id)
            return [(neighbour, bundle_id) for neighbour, bundle_id in connection.execute(query)]

    def acks_sent(self, neighbour: str, bundle_ids: list[str]) -> None:
        with self.transaction() as connection:
            connection.execute(
                delete(PendingAck).where(
                    PendingAck.c.neighbour == neighbour, PendingAck.c.bundle_id.in_(bundle_ids)
                )
            )

    # The inbox.

    def messages(self) -> list[InboxRow]:
        with self.reading() as connection:
            query = select(InboxMessage).order_by(InboxMessage.c.received_at)
            return [InboxRow(**row) for row in connection.execute(query).mappings()]

    def mark_read(self, bundle_id: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                update(InboxMessage).where(InboxMessage.c.bundle_id == bundle_id).values(read=True)
            )

    def delete_message(self, bundle_id: str) -> None:
        with self.transaction() as connection:
            connection.execute(delete(InboxMessage).where(InboxMessage.c.bundle_id == bundle_id))

    def count(self, table: Table, **where: Any) -> int:
        """Rows in `table` matching `where` (for rise-check and tests)."""
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(table.c[name] == value)
        with self.reading() as connection:
            return int(connection.execute(query).scalar_one())


def delete_entry(bundle_id: str, direction: str) -> sqlalchemy.Delete:
    return delete(SpoolEntry).where(
        SpoolEntry.c.bundle_id == bundle_id, SpoolEntry.c.direction == direction
    )


def owe(connection: Connection, bundle_id: str, neighbour: str, now: int) -> None:
    upsert(
        connection, PendingAck, {"bundle_id": bundle_id, "neighbour": neighbour}, {"created": now}
    )


def _released(connection: Connection, bundle_id: str) -> bool:
    query = select(Release.c.bundle_id).where(Release.c.bundle_id == bundle_id)
    return connection.execute(query).first() is not None
