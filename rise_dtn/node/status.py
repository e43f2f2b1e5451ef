"""rise-stat: what waits for whom, read from the spool files and the index."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select

from rise_dtn.core.errors import BundleError
from rise_dtn.node import inbox
from rise_dtn.node.home import Home
from rise_dtn.store.index import Release, SpoolEntry
from rise_dtn.store.spool import read_clear


@dataclasses.dataclass(slots=True)
class NeighbourStatus:
    name: str
    node_id: str
    waiting: int = 0
    waiting_bytes: int = 0
    oldest_queued_at: int | None = None  # seconds since the epoch
    in_flight: int = 0  # written to a carrier at least once, not yet confirmed
    delivered: int = 0  # confirmed by the neighbour (acked or moved)
    received_waiting: int = 0  # in rx/, not yet tossed


@dataclasses.dataclass(slots=True)
class Status:
    node: str
    node_id: str
    neighbours: list[NeighbourStatus]
    quarantined: int
    inbox_unread: int


def status(home: Home) -> Status:
    spool = home.spool
    spool.check_exists()
    with home.index.session() as session:
        copies = dict(
            session.execute(
                select(SpoolEntry.bundle_id, SpoolEntry.copies).where(SpoolEntry.direction == "tx")
            ).all()
        )
        queued = dict(
            session.execute(
                select(SpoolEntry.bundle_id, SpoolEntry.queued_at).where(
                    SpoolEntry.direction == "tx"
                )
            ).all()
        )
        delivered = dict(
            session.execute(
                select(Release.neighbour, func.count())
                .where(Release.how.in_(("acked", "moved")))
                .group_by(Release.neighbour)
            ).all()
        )
    rows = []
    for peer in home.peers.all():
        row = NeighbourStatus(peer.name, str(peer.node_id))
        row.delivered = int(delivered.get(str(peer.node_id), 0))
        for path in spool.files(spool.tx_dir(peer.node_id)):
            try:
                clear, size = read_clear(path)
            except (BundleError, OSError):
                continue  # rise-check reports damaged files
            bundle_id = str(clear.bundle_id)
            row.waiting += 1
            row.waiting_bytes += size
            row.in_flight += 1 if copies.get(bundle_id, 0) > 0 else 0
            when = queued.get(bundle_id) or int(path.stat().st_mtime)
            if row.oldest_queued_at is None or when < row.oldest_queued_at:
                row.oldest_queued_at = when
        row.received_waiting = sum(1 for _ in spool.files(spool.rx_dir(peer.node_id)))
        rows.append(row)
    return Status(
        node=home.config.name,
        node_id=str(home.identity.node_id),
        neighbours=rows,
        quarantined=len(spool.quarantined()),
        inbox_unread=sum(1 for message in inbox.messages(home) if not message.read),
    )
