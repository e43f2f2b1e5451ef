"""The index tables of routing: what a relay holds, what we sent, the map we know.

A separate module (and MetaData) from store/index.py so that a node that
never routes pays nothing for them; the tables live in the same database
and each method is one transaction on the same engine.

What a relay records names only neighbours (who handed it a packet, to whom
it goes next) and per-hop bundle ids: never an end-to-end sender,
recipient or payload (protocol.md section 20.7; a test inspects it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Executable,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)

from rise_dtn.store import database
from rise_dtn.store.index import (
    EntryRow,
    Index,
    PendingAck,
    Release,
    Seen,
    SeenRow,
    SpoolEntry,
    delete_entry,
    entry_dict,
    owe,
    upsert,
)
from rise_dtn.store.rows import HeldRow as HeldRow  # noqa: PLC0414 - re-exported
from rise_dtn.store.rows import LinkRow as LinkRow  # noqa: PLC0414 - re-exported
from rise_dtn.store.rows import RelayedRow as RelayedRow  # noqa: PLC0414 - re-exported
from rise_dtn.store.rows import SentRow as SentRow  # noqa: PLC0414 - re-exported

metadata = MetaData()

# A packet this node forwards as a relay, by the id it has on the next hop.
Relayed = Table(
    "relayed",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("from_neighbour", String(26), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("expiry", BigInteger, nullable=False),
    Column("commitment", String(32), nullable=False, index=True),  # hex; cancels match it
)

# A file or message this node sent (over relays, or direct: one copy with no relays):
# its fate, for rise status and rise-stat.
Sent = Table(
    "sent",
    metadata,
    Column("bundle_id", String(26), primary_key=True),  # the end-to-end (inner) id
    Column("recipient", String(26), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expiry", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),  # payload bytes
    Column("copies", LargeBinary, nullable=False),  # CBOR: routes, first-hop ids, cancel tokens
    Column("delivered_at", BigInteger, nullable=True),
    Column("cancelled", Integer, nullable=False, default=0),  # cancel packets sent
)

# A card a relay neighbour told us about (map bundles), so routes can use it.
MapCard = Table(
    "map_card",
    metadata,
    Column("node_id", String(26), primary_key=True),
    Column("card", LargeBinary, nullable=False),
    Column("expiry", BigInteger, nullable=False),
)

# A link (a, b) a relay neighbour (via) told us about.
MapLink = Table(
    "map_link",
    metadata,
    Column("a", String(26), primary_key=True),
    Column("b", String(26), primary_key=True),
    Column("via", String(26), primary_key=True),
    Column("distance", Integer, nullable=False),
    Column("learned_at", BigInteger, nullable=False),
    Column("expiry", BigInteger, nullable=False),
)

# When each neighbour last got a map from us.
MapSent = Table(
    "map_sent",
    metadata,
    Column("neighbour", String(26), primary_key=True),
    Column("at", BigInteger, nullable=False),
)

# The last route drawn to each recipient: the next bundle takes another one.
LastRoute = Table(
    "last_route",
    metadata,
    Column("recipient", String(26), primary_key=True),
    Column("route", String(26 * 9 + 8), nullable=False),  # node ids joined by ","
)

# An end-to-end bundle sealed but waiting for a route (rise-send --wait).
Held = Table(
    "held",
    metadata,
    Column("bundle_id", String(26), primary_key=True),
    Column("recipient", String(26), nullable=False),
    Column("hops", Integer, nullable=False),
    Column("copies", Integer, nullable=False),
    Column("expiry", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("kind", Integer, nullable=False),
)


FORGET_EVERY_SECONDS = 60


class RelayIndex:
    """Routing state on top of the node's Index; each method is one transaction."""

    def __init__(self, index: Index) -> None:
        self._index = index
        self._forgot_at: int | None = None
        # In a write transaction, after a look without the lock: processes
        # starting together on a new node (a daemon and rise-send) no longer
        # race table by table.
        database.create_tables(index.engine, metadata)

    # Relay side.

    def held_for(self, neighbour: str) -> tuple[int, int]:
        """(bundles, bytes) this node holds as a relay for `neighbour` (not yet acked)."""
        query = (
            select(func.count(), func.coalesce(func.sum(Relayed.c.size), 0))
            .select_from(Relayed.join(SpoolEntry, SpoolEntry.c.bundle_id == Relayed.c.bundle_id))
            .where(Relayed.c.from_neighbour == neighbour, SpoolEntry.c.direction == "tx")
        )
        with self._index.reading() as connection:
            count, size = connection.execute(query).one()
            return int(count), int(size)

    def holding(self, commitment: str) -> list[tuple[str, str]]:
        """(bundle id, next hop) of packets still in tx/ under this cancel commitment."""
        query = (
            select(SpoolEntry.c.bundle_id, SpoolEntry.c.neighbour)
            .select_from(Relayed.join(SpoolEntry, SpoolEntry.c.bundle_id == Relayed.c.bundle_id))
            .where(Relayed.c.commitment == commitment, SpoolEntry.c.direction == "tx")
        )
        with self._index.reading() as connection:
            return [(row[0], row[1]) for row in connection.execute(query)]

    def seen_among(self, bundle_ids: list[str]) -> set[str]:
        """Which of these packet ids were handled before (replays)."""
        query = select(Seen.c.bundle_id).where(Seen.c.bundle_id.in_(bundle_ids))
        with self._index.reading() as connection:
            return {row[0] for row in connection.execute(query)}

    def record_forwarded_many(
        self,
        forwarded: list[tuple[EntryRow, str, str, SeenRow]],
        *,
        replays: list[tuple[SeenRow, str]],
    ) -> None:
        """Next hops' packets are durable in tx/: index them, remember arrivals, owe acks.

        `forwarded` holds (tx entry, previous hop, cancel commitment, arrival);
        one transaction for the whole batch, written idempotently (a batch
        redone after a crash writes the same rows again). A forward that a
        live link already sent and saw confirmed (it is in tx/ before this
        runs) is not listed again: as in Index.put_entry, the check and the
        write are one write transaction.
        """
        next_ids = [entry.bundle_id for entry, _, _, _ in forwarded]
        arrivals = [(arrived, neighbour) for _, neighbour, _, arrived in forwarded] + replays
        arrived_ids = [arrived.bundle_id for arrived, _ in arrivals]
        with self._index.transaction() as connection:
            if forwarded:
                connection.execute(
                    delete(SpoolEntry).where(
                        SpoolEntry.c.bundle_id.in_(next_ids), SpoolEntry.c.direction == "tx"
                    )
                )
                released = set(
                    connection.execute(
                        select(Release.c.bundle_id).where(Release.c.bundle_id.in_(next_ids))
                    ).scalars()
                )
                waiting = [entry_dict(e) for e, _, _, _ in forwarded if e.bundle_id not in released]
                if waiting:
                    connection.execute(insert(SpoolEntry), waiting)
                connection.execute(delete(Relayed).where(Relayed.c.bundle_id.in_(next_ids)))
                connection.execute(
                    insert(Relayed),
                    [
                        {
                            "bundle_id": entry.bundle_id,
                            "from_neighbour": neighbour,
                            "size": entry.size,
                            "expiry": entry.expiry,
                            "commitment": commitment,
                        }
                        for entry, neighbour, commitment, _ in forwarded
                    ],
                )
                fresh = [_seen_dict(arrived) for _, _, _, arrived in forwarded]
                fresh_ids = [row["bundle_id"] for row in fresh]
                connection.execute(delete(Seen).where(Seen.c.bundle_id.in_(fresh_ids)))
                connection.execute(insert(Seen), fresh)
            connection.execute(
                delete(SpoolEntry).where(
                    SpoolEntry.c.bundle_id.in_(arrived_ids), SpoolEntry.c.direction == "rx"
                )
            )
            connection.execute(delete(PendingAck).where(PendingAck.c.bundle_id.in_(arrived_ids)))
            connection.execute(
                insert(PendingAck),
                [
                    {"bundle_id": arrived.bundle_id, "neighbour": neighbour, "created": arrived.at}
                    for arrived, neighbour in arrivals
                ],
            )

    def record_handled(self, arrived: SeenRow, *, neighbour: str) -> None:
        """A packet that ends here without a delivery (a cancel): remember it, owe the ack."""
        with self._index.transaction() as connection:
            _handled(connection, arrived, neighbour)

    def forget_expired(self, now: int) -> None:
        """Drop expired routing records; at most once a minute (a daemon tosses per bundle)."""
        if self._forgot_at is not None and 0 <= now - self._forgot_at < FORGET_EVERY_SECONDS:
            return
        self._forgot_at = now
        with self._index.transaction() as connection:
            connection.execute(delete(Relayed).where(Relayed.c.expiry <= now))
            connection.execute(delete(MapLink).where(MapLink.c.expiry <= now))
            connection.execute(delete(MapCard).where(MapCard.c.expiry <= now))

    # Sender side.

    @staticmethod
    def sent_statements(row: SentRow) -> list[Executable]:
        """Record a send, for the caller's own transaction (a direct send: Index.put_entry)."""
        return [
            delete(Sent).where(Sent.c.bundle_id == row.bundle_id),
            insert(Sent).values(**dataclasses.asdict(row)),
        ]

    def put_sent(self, row: SentRow, *, recipient_route: str) -> None:
        with self._index.transaction() as connection:
            connection.execute(delete(Sent).where(Sent.c.bundle_id == row.bundle_id))
            connection.execute(insert(Sent).values(**dataclasses.asdict(row)))
            upsert(connection, LastRoute, {"recipient": row.recipient}, {"route": recipient_route})

    def sent(self, bundle_id: str | None = None) -> list[SentRow]:
        query = select(Sent).order_by(Sent.c.created)
        if bundle_id is not None:
            query = query.where(Sent.c.bundle_id == bundle_id)
        with self._index.reading() as connection:
            return [SentRow(**row) for row in connection.execute(query).mappings()]

    def mark_delivered(self, bundle_id: str, *, now: int) -> SentRow | None:
        """Record a receipt; return the row the first time only (cancels go out once)."""
        with self._index.transaction() as connection:
            row = connection.execute(select(Sent).where(Sent.c.bundle_id == bundle_id)).mappings()
            found = row.first()
            if found is None or found["delivered_at"] is not None:
                return None
            connection.execute(
                update(Sent).where(Sent.c.bundle_id == bundle_id).values(delivered_at=now)
            )
            return SentRow(**{**found, "delivered_at": now})

    def mark_cancelled(self, bundle_id: str, *, cancels: int) -> None:
        """Record how many cancel packets went out for a delivered bundle's other copies."""
        with self._index.transaction() as connection:
            connection.execute(
                update(Sent).where(Sent.c.bundle_id == bundle_id).values(cancelled=cancels)
            )

    def last_route(self, recipient: str) -> list[str]:
        query = select(LastRoute.c.route).where(LastRoute.c.recipient == recipient)
        with self._index.reading() as connection:
            route = connection.execute(query).scalar_one_or_none()
        return route.split(",") if route else []

    def hold(self, row: HeldRow) -> None:
        with self._index.transaction() as connection:
            connection.execute(delete(Held).where(Held.c.bundle_id == row.bundle_id))
            connection.execute(insert(Held).values(**dataclasses.asdict(row)))

    def held(self) -> list[HeldRow]:
        with self._index.reading() as connection:
            rows = connection.execute(select(Held).order_by(Held.c.priority)).mappings()
            return [HeldRow(**row) for row in rows]

    def release_held(self, bundle_id: str) -> None:
        with self._index.transaction() as connection:
            connection.execute(delete(Held).where(Held.c.bundle_id == bundle_id))

    # The map.

    def links(self, now: int) -> list[LinkRow]:
        with self._index.reading() as connection:
            rows = connection.execute(select(MapLink).where(MapLink.c.expiry > now)).mappings()
            return [LinkRow(**row) for row in rows]

    def cards(self, now: int) -> dict[str, bytes]:
        query = select(MapCard.c.node_id, MapCard.c.card).where(MapCard.c.expiry > now)
        with self._index.reading() as connection:
            return {row[0]: row[1] for row in connection.execute(query)}

    def learn(
        self, *, via: str, links: Iterable[LinkRow], cards: dict[str, bytes], card_expiry: int
    ) -> None:
        """Replace what `via` told us before with its latest map."""
        with self._index.transaction() as connection:
            connection.execute(delete(MapLink).where(MapLink.c.via == via))
            for link in links:
                connection.execute(insert(MapLink).values(**dataclasses.asdict(link)))
            for node_id, card in cards.items():
                upsert(
                    connection, MapCard, {"node_id": node_id}, {"card": card, "expiry": card_expiry}
                )

    def maps_sent(self) -> dict[str, int]:
        with self._index.reading() as connection:
            return {row[0]: row[1] for row in connection.execute(select(MapSent))}

    def map_sent(self, neighbour: str, *, now: int) -> None:
        with self._index.transaction() as connection:
            upsert(connection, MapSent, {"neighbour": neighbour}, {"at": now})


def _handled(connection: Connection, arrived: SeenRow, neighbour: str) -> None:
    values = _seen_dict(arrived)
    del values["bundle_id"]
    upsert(connection, Seen, {"bundle_id": arrived.bundle_id}, values)
    connection.execute(delete_entry(arrived.bundle_id, "rx"))
    owe(connection, arrived.bundle_id, neighbour, arrived.at)


def _seen_dict(row: SeenRow) -> dict[str, object]:
    return {
        "bundle_id": row.bundle_id,
        "expiry": row.expiry,
        "state": row.state,
        "sender": row.sender,
        "target": row.target,
        "at": row.at,
    }
