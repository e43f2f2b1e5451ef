"""A relay's forwarding in batches: one filesystem sync and one transaction for many packets.

Forwarding one small packet is a few hundred microseconds of crypto; its
fsyncs and index commit would be milliseconds. So a toss peels each packet
into one locked staging directory, and every BATCH_PACKETS packets (and at
the end) makes them all durable with one syncfs, renames them into tx/, fsyncs the
few directories involved, records them in one transaction, and only then
deletes the packets from rx/. The order per packet is the one relay.py
keeps for a single packet, so a crash anywhere is just as harmless: peeling
is deterministic, the renames replace identical bytes, and a packet already
recorded is dropped as a replay (with its ack owed again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.errors import BundleError, Deferred
from rise_dtn.core.identity import NodeId
from rise_dtn.core.onion import OnionPeeler
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss.toss_events import Forwarded, Rejected, TossEvent
from rise_dtn.store.atomic import (
    StagingDirectory,
    fsync_dir,
    fsync_path,
    storage_error,
    sync_filesystem,
)
from rise_dtn.store.rows import EntryRow, SeenRow

# 1024 packets: the sync and the commit are amortised over many, a crash
# redoes a second of work at most, and the batch holds ~1 MiB of index rows.
BATCH_PACKETS = 1024
FSYNC_EACH_MAX = 8  # up to this many packets, an fsync each beats one syncfs
# Larger packets stream one by one (relay.py): a batch holds payloads in memory.
MAX_BATCHED_PAYLOAD_BYTES = 1 << 20


@dataclasses.dataclass(slots=True)
class _Pending:
    path: Path  # the packet in rx/
    neighbour: NodeId  # who handed it to us
    staged: Path  # the next hop's packet, in the batch's staging directory
    final: Path  # where it goes in tx/<next hop>/
    entry: EntryRow
    commitment: str
    arrived: SeenRow
    next_name: str


def relayed_seen(clear: ClearPart, now: int) -> SeenRow:
    """A relayed packet is remembered by its id alone: no sender, no target."""
    return SeenRow(
        bundle_id=str(clear.bundle_id),
        expiry=clear.header.expiry,
        state="relayed",
        sender="",
        target="",
        at=now,
    )


class ForwardBatch:
    """Packets peeled and written, waiting for one sync and one index commit."""

    def __init__(self, home: Home, *, now: int, emit: Callable[[TossEvent], None]) -> None:
        self._home = home
        self._now = now
        self._emit = emit
        self._pending: list[_Pending] = []
        self._peers: dict[NodeId, Peer] | None = None
        self._held: dict[str, list[int]] = {}  # neighbour -> [bundles, bytes] held for it
        self._staging: StagingDirectory | None = None
        self._made: set[Path] = set()  # tx/ directories known to exist

    def __enter__(self) -> ForwardBatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.flush()
        else:
            self._abort()

    def peers(self) -> dict[NodeId, Peer]:
        if self._peers is None:
            self._peers = {peer.node_id: peer for peer in self._home.peers.all()}
        return self._peers

    def add(self, path: Path, neighbour: NodeId, peeler: OnionPeeler, payload: bytes) -> None:
        """Check, peel and write one FORWARD packet; BundleError means quarantine it."""
        home = self._home
        previous, next_hop = check_forward(home, self.peers(), neighbour, peeler, now=self._now)
        self._check_quota(previous.name, str(neighbour), peeler.clear.total_bytes)
        peeled = peeler.transform(payload)
        peeler.check_payload()  # a tagged payload never leaves this node
        next_id = peeler.next_bundle_id
        tx_dir = home.spool.tx_dir(next_hop.node_id)
        try:
            if self._staging is None:
                self._staging = StagingDirectory(home.spool.tmp)
            staged = self._staging.write(peeler.next_clear() + peeled)
            if tx_dir not in self._made:
                tx_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._made.add(tx_dir)
        except OSError as exc:
            raise storage_error(exc, "forwarding") from None
        held = self._held[str(neighbour)]
        held[0] += 1
        held[1] += peeler.clear.total_bytes
        self._pending.append(
            _Pending(
                path,
                neighbour,
                staged,
                home.spool.bundle_path(tx_dir, next_id),
                EntryRow(
                    bundle_id=str(next_id),
                    direction="tx",
                    neighbour=str(next_hop.node_id),
                    size=peeler.clear.total_bytes,
                    expiry=peeler.slot.next_expiry,
                    priority=peeler.slot.next_priority,
                    queued_at=self._now,
                ),
                peeler.slot.commitment.hex(),  # already BLAKE2b(token): 20.2, 22.2
                relayed_seen(peeler.clear, self._now),
                next_hop.name,
            )
        )
        if len(self._pending) >= BATCH_PACKETS:
            self.flush()

    def _check_quota(self, name: str, neighbour: str, size: int) -> None:
        if neighbour not in self._held:
            self._held[neighbour] = list(self._home.fast_relay_index.held_for(neighbour))
        count, held = self._held[neighbour]
        check_quota(self._home, name, count=count, held_bytes=held, size=size)

    def flush(self) -> None:
        """Make the batch durable, record it, then let go of the packets in rx/."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        home = self._home
        known = home.fast_relay_index.seen_among([item.arrived.bundle_id for item in pending])
        fresh: list[_Pending] = []
        replays: list[_Pending] = []
        for item in pending:
            is_replay = item.arrived.bundle_id in known
            (replays if is_replay else fresh).append(item)
            known.add(item.arrived.bundle_id)  # the same packet twice in one batch
        try:
            if len(fresh) > FSYNC_EACH_MAX:
                sync_filesystem(home.spool.tmp)
            else:
                # A few packets (a live link forwards one at a time): fsync
                # each, since syncfs would also wait for every other dirty
                # byte on the filesystem, a file being received included.
                for item in fresh:
                    fsync_path(item.staged)
            for item in fresh:
                os.replace(item.staged, item.final)
            for directory in {item.final.parent for item in fresh}:
                fsync_dir(directory)
        except OSError as exc:
            self._abort()
            raise storage_error(exc, "forwarding") from None
        finally:
            if self._staging is not None:
                self._staging.close()  # replays' files go with it
                self._staging = None
        home.fast_relay_index.record_forwarded_many(
            [(item.entry, str(item.neighbour), item.commitment, item.arrived) for item in fresh],
            replays=[(item.arrived, str(item.neighbour)) for item in replays],
        )
        for item in pending:
            with contextlib.suppress(FileNotFoundError):
                item.path.unlink()
        for directory in {item.path.parent for item in pending}:
            fsync_dir(directory)
        replay_paths = {item.path for item in replays}
        for item in pending:
            stem = item.path.name.split(".")[0]
            if item.path in replay_paths:
                reason = "replay of a packet already handled"
                self._emit(Rejected(stem, reason, "dropped"))
            else:
                self._emit(Forwarded(stem, item.next_name))

    def _abort(self) -> None:
        """Forget the batch: the packets stay in rx/ for the next toss."""
        self._pending = []
        if self._staging is not None:
            self._staging.close()
            self._staging = None


def check_forward(
    home: Home, peers: dict[NodeId, Peer], neighbour: NodeId, peeler: OnionPeeler, *, now: int
) -> tuple[Peer, Peer]:
    """Default deny: (previous hop, next hop), or a BundleError saying why not."""
    if not home.config.relay.enabled:
        raise BundleError("this node does not relay ([relay] enabled is off)")
    previous = peers.get(neighbour)
    if previous is None:
        raise BundleError(f"packet from {neighbour}, which is not a neighbour")
    next_hop = peers.get(peeler.slot.next_hop) if peeler.slot.next_hop else None
    if next_hop is None:
        raise BundleError(f"next hop {peeler.slot.next_hop} is not a neighbour of this node")
    if peeler.slot.next_expiry <= now:
        raise BundleError("next hop's expiry has passed")
    return previous, next_hop


def check_quota(home: Home, name: str, *, count: int, held_bytes: int, size: int) -> None:
    """Defer a packet that would put the previous hop over its relay quota
    (refuse one that is larger than the whole quota: no wait makes it fit).

    It is not quarantined (it is sound) nor acked (the previous hop keeps its
    copy): it waits in rx/ and the next toss tries again, so a full quota
    slows a neighbour down without losing or piling up anything.
    """
    settings = home.config.peer(name)
    relay = home.config.relay
    max_bytes = relay.max_bytes if settings.relay_max_bytes is None else settings.relay_max_bytes
    max_bundles = (
        relay.max_bundles if settings.relay_max_bundles is None else settings.relay_max_bundles
    )
    if size > max_bytes:
        # Waiting cannot help a packet the quota could never hold: refuse it.
        raise BundleError(
            f"packet of {human_bytes(size)} is over the relay quota for {name} "
            f"(max {human_bytes(max_bytes)})"
        )
    if count + 1 > max_bundles:
        raise Deferred(
            f"over relay quota for {name}: {count} bundles held (max {max_bundles}); "
            "left in rx/ until the next hop takes some"
        )
    if held_bytes + size > max_bytes:
        raise Deferred(
            f"over relay quota for {name}: {human_bytes(held_bytes + size)} would be held "
            f"(max {human_bytes(max_bytes)}); left in rx/ until the next hop takes some"
        )
