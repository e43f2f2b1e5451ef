"""rise-stat: what waits for whom, read from the spool files and the index."""

from __future__ import annotations

import dataclasses

from rise_dtn.core.errors import BundleError
from rise_dtn.node import inbox
from rise_dtn.node.home import Home
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
    cached = {row.bundle_id: row for row in home.index.entries() if row.direction == "tx"}
    delivered = home.index.delivered_counts()
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
            entry = cached.get(bundle_id)
            row.in_flight += 1 if entry is not None and entry.copies > 0 else 0
            when = entry.queued_at if entry is not None else int(path.stat().st_mtime)
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
