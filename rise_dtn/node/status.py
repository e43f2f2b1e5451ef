"""rise-stat: what waits for whom, read from the spool files and the index."""

from __future__ import annotations

import dataclasses

from rise_dtn.core.errors import BundleError
from rise_dtn.node import inbox, parts
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
    sent: dict[str, int] = dataclasses.field(default_factory=dict)  # routed bundles by state
    held_for_route: int = 0
    receiving: list[ReceivingFile] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class ReceivingFile:
    """A split file some of whose parts are in (spool/parts/)."""

    name: str
    sender: str  # local name
    parts_in: int
    parts: int
    total_bytes: int
    expiry: int


@dataclasses.dataclass(frozen=True, slots=True)
class SentStatus:
    """One end-to-end bundle sent over relays, and where it stands."""

    bundle_id: str
    recipient: str  # local name
    state: str  # see SENT_STATES
    created_at: int | None  # None: not known (a bundle held for a route)
    expiry: int
    size: int  # payload bytes, as in rise inbox
    delivered_at: int | None
    routes: list[list[str]]  # relay names, one list per copy
    cancels: int = 0  # cancel packets sent for the other copies after delivery


SENT_STATES = ("held", "queued", "in transit", "delivered", "expired", "cancelled")


def sent_status(home: Home, *, now: int, bundle_id: str | None = None) -> list[SentStatus]:
    """queued: the first hop has not confirmed any copy; in transit: it has;
    delivered: the recipient's receipt came back (a direct send: the recipient,
    its own first hop, acked it); expired: past its lifetime; cancelled: taken
    back (rise queue cancel) before the first hop had it."""
    from rise_dtn.core.encoding import strict_loads
    from rise_dtn.core.identity import NodeId
    from rise_dtn.node.send import routes

    names = routes.names(home, now=now)
    waiting = {row.bundle_id for row in home.index.entries() if row.direction == "tx"}
    sent = home.relay_index.sent(bundle_id)
    decoded = {
        row.bundle_id: strict_loads(row.copies, max_bytes=1 << 16, error=BundleError, what="copies")
        for row in sent
    }
    released = home.index.releases_among(
        [_packet_id(copy) for copies in decoded.values() for copy in _listed(copies)]
    )
    found = []
    for row in sent:
        copies = decoded[row.bundle_id]
        assert isinstance(copies, list)
        paths = [
            [names.get(NodeId(raw), str(NodeId(raw))[:8]) for raw in copy[2]] for copy in copies
        ]
        delivered_at = row.delivered_at
        direct = len(copies) == 1 and not paths[0]
        if direct and released.get(_packet_id(copies[0]), ("", 0))[0] == "acked":
            delivered_at = released[_packet_id(copies[0])][1]  # the recipient's own ack
        if delivered_at is not None:
            state = "delivered"
        elif row.expiry <= now:
            state = "expired"
        elif any(_packet_id(copy) in waiting for copy in copies):
            state = "queued"
        elif all(released.get(_packet_id(copy), ("", 0))[0] == "cancelled" for copy in copies):
            state = "cancelled"  # taken back before its first hop had it
        else:
            state = "in transit"  # a direct send: moved onto a medium (--move)
        recipient = names.get(NodeId.parse(row.recipient), row.recipient)
        found.append(
            SentStatus(
                row.bundle_id,
                recipient,
                state,
                row.created,
                row.expiry,
                row.size,
                delivered_at,
                paths,
                row.cancelled,
            )
        )
    for held in home.relay_index.held():
        if bundle_id in (None, held.bundle_id):
            recipient = names.get(NodeId.parse(held.recipient), held.recipient)
            found.append(
                SentStatus(
                    held.bundle_id, recipient, "held", None, held.expiry, held.size, None, []
                )
            )
    return found


def _listed(value: object) -> list[object]:
    assert isinstance(value, list)
    return value


def _packet_id(copy: object) -> str:
    """The first-hop packet id of one copy, as `Copy.to_list` stored it."""
    from rise_dtn.core.identity import BundleId

    assert isinstance(copy, list) and isinstance(copy[1], bytes)
    return str(BundleId(copy[1]))


def status(home: Home, *, now: int | None = None) -> Status:
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
    result = Status(
        node=home.config.name,
        node_id=str(home.identity.node_id),
        neighbours=rows,
        quarantined=len(spool.quarantined()),
        inbox_unread=sum(1 for message in inbox.messages(home) if not message.read),
    )
    for found in parts.survey(home, now=now or 0, lock=False):
        if found.receiving:
            assert found.name is not None and found.sender is not None
            result.receiving.append(
                ReceivingFile(
                    found.name,
                    found.sender,
                    found.parts_in,
                    found.parts,
                    found.total_bytes,
                    found.expiry,
                )
            )
    if now is not None:
        # Every state, zeros included: a script reads `sent["delivered"]` without a default.
        result.sent = dict.fromkeys(SENT_STATES, 0)
        for sent in sent_status(home, now=now):
            result.sent[sent.state] = result.sent.get(sent.state, 0) + 1
        result.held_for_route = result.sent.pop("held", 0)
    return result
