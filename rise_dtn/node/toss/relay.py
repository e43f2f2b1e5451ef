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

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Protocol

from rise_dtn.core import bundle
from rise_dtn.core.bundle import ClearPart, parse_clear
from rise_dtn.core.errors import BundleError, Deferred
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.core.onion import OnionPeeler, SlotKind, commitment_for
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss import deliver
from rise_dtn.node.toss.forwarding import (
    MAX_BATCHED_PAYLOAD_BYTES,
    ForwardBatch,
    check_forward,
    check_quota,
    relayed_seen,
)
from rise_dtn.node.toss.toss_events import Delivered, Forwarded, Rejected, Source, TossEvent
from rise_dtn.store.atomic import AtomicFile, atomic_file, fsync_dir, storage_error
from rise_dtn.store.pipeline import BackgroundWriter
from rise_dtn.store.rows import EntryRow
from rise_dtn.store.transaction import Release

BLOCK_BYTES = 1 << 20  # the hot path works in large blocks


class Reader(Protocol):
    """Where a packet's bytes come from: its file in rx/, or a stick (all that is asked for
    comes back, short only at the end)."""

    def read(self, size: int, /) -> bytes: ...


class PeeledSource:
    """The payload of an onion packet, peeled as it is read; a `Source`."""

    def __init__(self, handle: Reader, peeler: OnionPeeler) -> None:
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
    home: Home,
    path: Path,
    neighbour: NodeId,
    clear: ClearPart,
    *,
    now: int,
    batch: ForwardBatch | None = None,
    reader: Reader | None = None,
) -> TossEvent | None:
    """Handle one onion packet from rx/<neighbour>/; BundleError means quarantine.

    A small FORWARD packet joins `batch` and its event comes when the batch
    is flushed (None here); everything else is done at once. `reader`: the
    packet read from elsewhere (a stick, with rise-xfer --toss), positioned
    after its clear part; `path` is then where rx/ would have kept it.
    """
    stem = path.name.split(".")[0]
    with contextlib.ExitStack() as stack:
        handle = reader if reader is not None else stack.enter_context(_opened(path, clear))
        routing = handle.read(clear.slots * bundle.SLOT_BYTES + bundle.MAC_BYTES)
        peeler = OnionPeeler(home.identity, clear, routing)
        kind = peeler.slot.kind
        small = peeler.payload_bytes <= MAX_BATCHED_PAYLOAD_BYTES
        if kind is SlotKind.FORWARD and batch is not None and small:
            payload = handle.read(peeler.payload_bytes + 1)
            if len(payload) != peeler.payload_bytes:
                raise BundleError("onion packet is truncated")
            batch.add(path, neighbour, peeler, payload)
            return None
        if home.fast_index.seen_state(str(clear.bundle_id)) is not None:
            # Sphinx replay detection: the same alpha means the same packet.
            reason = "replay of a packet already handled"
            return deliver.drop(home, path, neighbour, clear.bundle_id, reason, now=now)
        source = PeeledSource(handle, peeler)
        if kind is SlotKind.DELIVER:
            return _deliver(home, path, neighbour, source, peeler, now=now)
        if kind in (SlotKind.CANCEL_FORWARD, SlotKind.CANCEL_END):
            if peeler.payload_bytes > MAX_BATCHED_PAYLOAD_BYTES:
                raise BundleError("cancel packet is too large")
            peeled = PeeledBytes(source.read(peeler.payload_bytes))
            source.finish()  # a tampered cancel drops nothing
            dropped = _cancel(home, peeler, now=now)
            if dropped is not None or kind is SlotKind.CANCEL_END:
                home.fast_relay_index.record_handled(
                    relayed_seen(clear, now), neighbour=str(neighbour)
                )
                home.bundles.handled(path)
                reason = dropped or "cancel: nothing held here"
                return Rejected(stem, reason, "dropped")
            return _forward(home, path, neighbour, peeled, peeler, now=now)
        return _forward(home, path, neighbour, source, peeler, now=now)


def _opened(path: Path, clear: ClearPart) -> BinaryIO:
    handle = open(path, "rb")  # noqa: SIM115 - the caller's ExitStack closes it
    handle.seek(clear.size)
    return handle


class PeeledBytes:
    """A payload already peeled and checked, read back for forwarding."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int, /) -> bytes:
        block, self._data = self._data[:size], self._data[size:]
        return block

    def finish(self) -> None:
        return None


def _deliver(
    home: Home,
    path: Path,
    neighbour: NodeId,
    source: PeeledSource,
    peeler: OnionPeeler,
    *,
    now: int,
) -> TossEvent:
    head = source.read(min(bundle.MAX_CLEAR_BYTES, peeler.payload_bytes))
    inner = parse_clear(head)
    if inner.onion:
        raise BundleError("onion payload is not a direct bundle")
    if inner.total_bytes > peeler.payload_bytes:
        raise BundleError("onion payload is shorter than the bundle it carries")
    source.push_back(head[inner.size :])
    event = deliver.deliver_peeled(
        home, path, neighbour, inner, source, hop_id=peeler.bundle_id, now=now
    )
    if isinstance(event, Delivered):
        from rise_dtn.node.toss import control  # late: control imports the sending side

        control.send_receipts_owed(home, now=now)
    return event


def _cancel(home: Home, peeler: OnionPeeler, *, now: int) -> str | None:
    """Drop the packet held under this cancel token; say what was dropped, if anything."""
    commitment = commitment_for(peeler.slot.commitment).hex()
    for bundle_id, next_hop in home.fast_relay_index.holding(commitment):
        home.bundles.release(
            NodeId.parse(next_hop), BundleId.parse(bundle_id), Release.CANCELLED, now=now
        )
        return "cancel: the copy held here was dropped"
    return None


def _forward(
    home: Home,
    path: Path,
    neighbour: NodeId,
    source: Source,
    peeler: OnionPeeler,
    *,
    now: int,
) -> TossEvent:
    """One packet, streamed in constant memory (large payloads, cancels)."""
    next_hop = _next_hop(home, neighbour, peeler, now=now)
    next_id = peeler.next_bundle_id
    tx_dir = home.spool.tx_dir(next_hop.node_id)
    tx_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_file(
        home.spool.bundle_path(tx_dir, next_id), tmp_dir=home.spool.tmp, what="forwarding"
    ) as out:
        out.write(peeler.next_clear())
        remaining = peeler.payload_bytes
        # The disk writes while this thread reads and peels the next block.
        with BackgroundWriter(out.write) as write:
            while remaining:
                block = source.read(min(BLOCK_BYTES, remaining))
                if not block:
                    raise BundleError("onion packet is truncated")
                remaining -= len(block)
                write(block)
        source.finish()  # a tagged payload never leaves this node
    _record_forward(home, peeler, next_hop, neighbour, now=now)
    home.bundles.handled(path)
    return Forwarded(path.name.split(".")[0], next_hop.name)


def forward_pushed(
    home: Home, neighbour: NodeId, packet: bytes, *, now: int
) -> tuple[Forwarded, NodeId] | None:
    """Forward a small onion packet a live link received whole, without it passing through rx/.

    For chat over relays: the ordinary way (the packet written and synced
    into rx/ and indexed, a toss thread that lists rx/, reads it back and
    peels it, a rescan of tx/ by the next link) cost ~6 ms a hop here. This
    is the same forward with the same checks (forwarding.py: default deny,
    the next hop's expiry, the previous hop's quota, the payload's tag) and
    the same durable steps in the same order as relay.py's: the next hop's
    packet written (tmp, fsync, rename, fsync of tx/<next hop>/), then one
    transaction recording it with this packet's arrival; the caller confirms
    the packet (STORED) only after that. A crash in between is as harmless
    as there: the previous hop still holds the packet and sends it again,
    peeling gives the same bytes, and a recorded one is a replay.

    None, with nothing written, when it is anything else: not an onion
    packet for us, not a forward, seen before (a replay), damaged, refused
    or over quota. The caller then takes it into rx/ as usual, and the
    toss does what it does with such a packet and says why.
    """
    if not home.config.relay.enabled:
        return None
    try:
        clear = parse_clear(packet[: bundle.MAX_CLEAR_BYTES])
        if (
            not clear.onion
            or clear.header.recipient != home.identity.node_id
            or clear.total_bytes != len(packet)
            or clear.expired(now)
            or home.fast_index.seen_state(str(clear.bundle_id)) is not None
        ):
            return None
        start = clear.size + clear.slots * bundle.SLOT_BYTES + bundle.MAC_BYTES
        peeler = OnionPeeler(home.identity, clear, packet[clear.size : start])
        if peeler.slot.kind is not SlotKind.FORWARD or peeler.payload_bytes != len(packet) - start:
            return None
        next_hop = _next_hop(home, neighbour, peeler, now=now)
        peeled = peeler.transform(packet[start:])
        peeler.check_payload()  # a tagged payload never leaves this node
    except (BundleError, Deferred):
        return None
    next_id = peeler.next_bundle_id
    tx_dir = home.spool.tx_dir(next_hop.node_id)
    _write_forward(home, home.spool.bundle_path(tx_dir, next_id), peeler.next_clear() + peeled)
    _record_forward(home, peeler, next_hop, neighbour, now=now)
    return Forwarded(str(clear.bundle_id), next_hop.name), next_hop.node_id


def _write_forward(home: Home, final: Path, data: bytes) -> None:
    """The forward, durable under its name in tx/<next hop>/: the file synced, renamed in
    from spool/tmp/, its new directory synced, as a batch of forwards is (forwarding.py).

    Not spool/tmp/ as well, which AtomicFile.commit syncs after the rename: all a
    crash could undo there is the removal of the tmp name, which would leave a
    complete copy behind under a tmp name, never offered, and swept as stale.
    On this shared disk each fsync is 1-3 ms under load, on every hop.
    """
    try:
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = AtomicFile(final, tmp_dir=home.spool.tmp)
    except OSError as exc:
        raise storage_error(exc, "forwarding") from None
    try:
        out.write(data)
        os.fsync(out.fileno())
        out.commit(synced=True)  # the rename alone: synced above, the directory below
        fsync_dir(final.parent)
    except OSError as exc:
        out.abort()
        raise storage_error(exc, "forwarding") from None
    except BaseException:
        out.abort()
        raise


def _record_forward(
    home: Home, peeler: OnionPeeler, next_hop: Peer, neighbour: NodeId, *, now: int
) -> None:
    """The forward's queue row, its replay commitment and the packet seen, in one
    transaction (a forward off a stick or rx/, and one pushed over a live link)."""
    entry = EntryRow(
        bundle_id=str(peeler.next_bundle_id),
        direction="tx",
        neighbour=str(next_hop.node_id),
        size=peeler.clear.total_bytes,
        expiry=peeler.slot.next_expiry,
        priority=peeler.slot.next_priority,
        queued_at=now,
    )
    commitment = peeler.slot.commitment.hex()  # already BLAKE2b(token): 20.2, 22.2
    home.fast_relay_index.record_forwarded_many(
        [(entry, str(neighbour), commitment, relayed_seen(peeler.clear, now))], replays=[]
    )


def _next_hop(home: Home, neighbour: NodeId, peeler: OnionPeeler, *, now: int) -> Peer:
    """Whom a packet from `neighbour` goes to, once the forwarding rules and the
    neighbour's quota allow it (BundleError or Deferred if not)."""
    peers = {peer.node_id: peer for peer in home.peers.all()}
    previous, next_hop = check_forward(home, peers, neighbour, peeler, now=now)
    count, held = home.fast_relay_index.held_for(str(neighbour))
    check_quota(home, previous.name, count=count, held_bytes=held, size=peeler.clear.total_bytes)
    return next_hop
