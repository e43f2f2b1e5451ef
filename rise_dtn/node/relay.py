"""Toss for onion packets: peel this node's layer, then forward, cancel or deliver.

A relay writes the next hop's packet into tx/<next hop>/ (tmp, fsync,
rename), records it, and only then owes the previous hop its ack and deletes
the packet from rx/: a crash at any point leaves either the old packet in rx/
(done again, the same bytes come out, since peeling is deterministic) or the
new one in tx/ (the replay guard in `seen` drops a second arrival).

What the relay writes names only neighbours and per-hop ids. Default deny:
it forwards only with [relay] enabled, only to a neighbour in its peer book,
and only within the previous hop's quota (protocol.md section 20.6).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from rise_dtn.core import bundle
from rise_dtn.core.bundle import ClearPart, parse_clear
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.core.onion import OnionPeeler, SlotKind, commitment_for
from rise_dtn.node import toss
from rise_dtn.node.home import Home
from rise_dtn.store.atomic import atomic_file
from rise_dtn.store.index import EntryRow, SeenRow

BLOCK_BYTES = 1 << 20  # the hot path works in large blocks


class PeeledSource:
    """The payload of an onion packet, peeled as it is read; a `toss.Source`."""

    def __init__(self, handle: BinaryIO, peeler: OnionPeeler) -> None:
        self._handle = handle
        self._peeler = peeler
        self._remaining = peeler.payload_bytes
        self._pushed_back = b""

    def read(self, size: int, /) -> bytes:
        head, self._pushed_back = self._pushed_back[:size], self._pushed_back[size:]
        wanted = min(size - len(head), self._remaining)
        data = self._handle.read(wanted) if wanted else b""
        self._remaining -= len(data)
        return head + self._peeler.transform(data)

    def push_back(self, data: bytes) -> None:
        self._pushed_back = data + self._pushed_back

    def finish(self) -> None:
        """Peel the rest (the padding) and check the sender's tag over the whole payload."""
        self._pushed_back = b""
        while self._remaining:
            data = self._handle.read(min(BLOCK_BYTES, self._remaining))
            if not data:
                raise BundleError("onion packet is truncated")
            self._remaining -= len(data)
            self._peeler.transform(data)
        self._peeler.check_payload()


def toss_packet(
    home: Home, path: Path, neighbour: NodeId, clear: ClearPart, *, now: int
) -> toss.TossEvent:
    """Handle one onion packet from rx/<neighbour>/; BundleError means quarantine."""
    stem = path.name.split(".")[0]
    seen = home.index.seen_state(str(clear.bundle_id))
    if seen is not None:
        # Sphinx replay detection: the same alpha means the same packet.
        return _drop(home, path, neighbour, clear, "replay of a packet already handled", now=now)
    with open(path, "rb") as handle:
        handle.seek(clear.size)
        routing = handle.read(clear.slots * bundle.SLOT_BYTES + bundle.MAC_BYTES)
        peeler = OnionPeeler(home.identity, clear, routing)
        source = PeeledSource(handle, peeler)
        kind = peeler.slot.kind
        if kind is SlotKind.DELIVER:
            return _deliver(home, path, neighbour, source, peeler, now=now)
        if kind in (SlotKind.CANCEL_FORWARD, SlotKind.CANCEL_END):
            dropped = _cancel(home, peeler, now=now)
            if dropped is not None or kind is SlotKind.CANCEL_END:
                source.finish()
                _record(home, clear, neighbour, now=now)
                home.spool.remove(path)
                reason = dropped or "cancel: nothing held here"
                return toss.Rejected(stem, reason, "dropped")
        return _forward(home, path, neighbour, source, peeler, now=now)


def _deliver(
    home: Home,
    path: Path,
    neighbour: NodeId,
    source: PeeledSource,
    peeler: OnionPeeler,
    *,
    now: int,
) -> toss.TossEvent:
    head = source.read(min(bundle.MAX_CLEAR_BYTES, peeler.payload_bytes))
    inner = parse_clear(head)
    if inner.onion:
        raise BundleError("onion payload is not a direct bundle")
    if inner.total_bytes > peeler.payload_bytes:
        raise BundleError("onion payload is shorter than the bundle it carries")
    source.push_back(head[inner.size :])
    event = toss.deliver_peeled(
        home, path, neighbour, inner, source, hop_id=peeler.bundle_id, now=now
    )
    if isinstance(event, toss.Delivered):
        from rise_dtn.node import control  # late: control imports the sending side

        control.send_receipt(home, event, now=now)
    return event


def _cancel(home: Home, peeler: OnionPeeler, *, now: int) -> str | None:
    """Drop the packet held under this cancel token; say what was dropped, if anything."""
    commitment = commitment_for(peeler.slot.commitment).hex()
    for bundle_id, next_hop in home.relay_index.holding(commitment):
        tx_dir = home.spool.tx_dir(NodeId.parse(next_hop))
        tx_path = home.spool.bundle_path(tx_dir, BundleId.parse(bundle_id))
        home.spool.remove(tx_path)
        home.index.release(bundle_id, next_hop, size=0, how="cancelled", now=now)
        return "cancel: the copy held here was dropped"
    return None


def _forward(
    home: Home,
    path: Path,
    neighbour: NodeId,
    source: PeeledSource,
    peeler: OnionPeeler,
    *,
    now: int,
) -> toss.TossEvent:
    config = home.config
    if not config.relay.enabled:
        raise BundleError("this node does not relay ([relay] enabled is off)")
    previous = home.peers.by_id(neighbour)
    next_hop = home.peers.by_id(peeler.slot.next_hop) if peeler.slot.next_hop else None
    if previous is None:
        raise BundleError(f"packet from {neighbour}, which is not a neighbour")
    if next_hop is None:
        raise BundleError(f"next hop {peeler.slot.next_hop} is not a neighbour of this node")
    if peeler.slot.next_expiry <= now:
        raise BundleError("next hop's expiry has passed")
    _check_quota(home, previous.name, str(neighbour), peeler.clear.total_bytes)
    next_id = peeler.next_bundle_id
    tx_dir = home.spool.tx_dir(next_hop.node_id)
    tx_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_file(
        home.spool.bundle_path(tx_dir, next_id), tmp_dir=home.spool.tmp, what="forwarding"
    ) as out:
        out.write(peeler.next_clear())
        remaining = peeler.payload_bytes
        while remaining:
            block = source.read(min(BLOCK_BYTES, remaining))
            if not block:
                raise BundleError("onion packet is truncated")
            remaining -= len(block)
            out.write(block)
        source.finish()  # a tagged payload never leaves this node
    home.relay_index.record_forwarded(
        entry=EntryRow(
            bundle_id=str(next_id),
            direction="tx",
            neighbour=str(next_hop.node_id),
            size=peeler.clear.total_bytes,
            expiry=peeler.slot.next_expiry,
            priority=peeler.slot.next_priority,
            queued_at=now,
        ),
        from_neighbour=str(neighbour),
        commitment=peeler.slot.commitment.hex(),  # already BLAKE2b(token): 20.2, 22.2
        arrived=_seen_row(peeler.clear, now),
    )
    home.spool.remove(path)
    return toss.Forwarded(path.name.split(".")[0], next_hop.name)


def _check_quota(home: Home, name: str, neighbour: str, size: int) -> None:
    settings = home.config.peer(name)
    relay = home.config.relay
    max_bytes = (
        settings.relay_max_bytes if settings.relay_max_bytes is not None else relay.max_bytes
    )
    max_bundles = (
        settings.relay_max_bundles if settings.relay_max_bundles is not None else relay.max_bundles
    )
    count, held = home.relay_index.held_for(neighbour)
    if count + 1 > max_bundles:
        raise BundleError(f"over relay quota for {name}: {count} bundles held (max {max_bundles})")
    if held + size > max_bytes:
        raise BundleError(
            f"over relay quota for {name}: {held + size} bytes would be held (max {max_bytes})"
        )


def _seen_row(clear: ClearPart, now: int) -> SeenRow:
    # A relayed packet is remembered by its id alone: no sender, no target.
    return SeenRow(
        bundle_id=str(clear.bundle_id),
        expiry=clear.header.expiry,
        state="relayed",
        sender="",
        target="",
        at=now,
    )


def _record(home: Home, clear: ClearPart, neighbour: NodeId, *, now: int) -> None:
    home.relay_index.record_handled(_seen_row(clear, now), neighbour=str(neighbour))


def _drop(
    home: Home, path: Path, neighbour: NodeId, clear: ClearPart, reason: str, *, now: int
) -> toss.Rejected:
    home.index.owe_ack(str(clear.bundle_id), str(neighbour), now=now)
    home.spool.remove(path)
    home.index.drop_entry(path.name.split(".")[0], "rx")
    return toss.Rejected(path.name.split(".")[0], reason, "dropped")
