"""Deliver: open, verify and write out one bundle for this node; the delivery journal.

Delivery is a small journal in the index (`seen`): decrypt to a tmp file,
fsync, record "delivering" with the target name, link into place, record
"delivered" (with the hop ack and, over relays, the receipt owed, in one
transaction) and only then delete the rx file. A crash at any step is
finished by the next toss, and a bundle id that was delivered once is never
delivered again (docs/protocol.md, "Toss"). Used by toss.py for direct
bundles, by relay.py for what an onion packet for this node carries, and by
a live link for a bundle delivered while it arrives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from rise_dtn.core import sealing
from rise_dtn.core.bundle import ClearPart, ContentKind, Opener
from rise_dtn.core.errors import BundleError, Deferred, StorageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.toss.delivery_steps import Job as Job  # noqa: PLC0414 - toss.py's deliver.Job
from rise_dtn.node.toss.delivery_steps import Opened as _Opened
from rise_dtn.node.toss.delivery_steps import journal_without_file
from rise_dtn.node.toss.delivery_steps import numbered as _numbered
from rise_dtn.node.toss.delivery_steps import read_exact as _read_exact
from rise_dtn.node.toss.toss_events import Accepted, Delivered, Rejected, Source, TossEvent
from rise_dtn.store import locks
from rise_dtn.store.atomic import AtomicFile, DropBehind, remove_stale_tmp, storage_error
from rise_dtn.store.pipeline import BackgroundWriter
from rise_dtn.store.rows import InboxRow, SeenRow

CONTROL_KINDS = frozenset({ContentKind.RECEIPT, ContentKind.MAP})


class FileSource:
    """A direct bundle in rx/: nothing around it to check."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._position = handle.tell()
        self._behind = DropBehind(handle.fileno(), writing=False, start=self._position)

    def read(self, size: int, /) -> bytes:
        data = self._handle.read(size)
        self._position += len(data)
        self._behind.moved(self._position)
        return data

    def finish(self) -> None:
        return None


def deliver_peeled(
    home: Home,
    path: Path,
    neighbour: NodeId,
    inner: ClearPart,
    source: Source,
    *,
    hop_id: BundleId,
    now: int,
) -> TossEvent:
    """Deliver the direct bundle that an onion packet for this node carried.

    `source` yields the peeled payload after the inner clear part and
    checks the onion's payload tag in `finish()`, before anything is
    committed. The hop ack goes to the neighbour under the packet's own id.
    """
    job = Job(path, neighbour)
    stem = path.name.split(".")[0]
    if inner.expired(now):
        return drop_job(home, job, hop_id, stem, "expired", now=now)
    seen = home.fast_index.seen_state(str(inner.bundle_id))
    if seen is not None and seen.state == "delivered":
        reason = "duplicate of a bundle already delivered (another copy)"
        return drop_job(home, job, hop_id, stem, reason, now=now)
    opener = Opener(home.identity, inner)
    return deliver(home, job, opener, source, now=now, hop_id=hop_id)


def drop(
    home: Home, path: Path, neighbour: NodeId, bundle_id: BundleId, reason: str, *, now: int
) -> Rejected:
    """`_drop` for a caller without a job at hand (relay.py: a replayed packet)."""
    return drop_job(home, Job(path, neighbour), bundle_id, path.name.split(".")[0], reason, now=now)


def drop_job(
    home: Home, job: Job, bundle_id: BundleId, stem: str, reason: str, *, now: int
) -> Rejected:
    """Drop a bundle that needs no delivery; the neighbour still gets its ack.

    The ack names the id inside the bundle, not the file's name: a file in
    rx/ under another name must neither ack a bundle it is not nor leave an
    unparsable id in pending_ack (which would stop every later rise-xfer).
    """
    home.bundles.drop_received(job.path, job.neighbour, bundle_id, now=now)
    return Rejected(stem, reason, "dropped")


def deliver(
    home: Home,
    job: Job,
    opener: Opener,
    source: Source,
    *,
    now: int,
    hop_id: BundleId | None = None,
) -> TossEvent:
    """Open, verify and deliver one bundle, once, whatever else is delivering at the time.

    The same bundle can be in hand twice at once: from two neighbours (two
    relays), or tossed from rx/ while a live link or `rise-xfer --toss`
    delivers another copy as it arrives. A lock per bundle id makes the
    journal check and the delivery one step; a copy whose id is being
    delivered elsewhere is Deferred (left where it is, for a later toss,
    which finds it delivered and drops it).
    """
    inner, first_payload = opener.open_first(_read_exact(source, opener.first_chunk_bytes))
    peer = home.peers.by_id(inner.sender)
    if peer is None:
        raise BundleError(f"unknown sender {inner.sender} (not in the peer book)")
    opener.verify_sender(inner, peer.card.public)
    opened = _Opened(job, opener, inner, peer, hop_id)
    lock = home.spool.lock_path(f"deliver-{opened.bundle_id}")
    with locks.claimed(lock) as ours:
        if not ours:
            raise Deferred(f"{opened.bundle_id} is being delivered by another rise-dtn process")
        seen = home.fast_index.seen_state(str(opened.bundle_id))
        if seen is not None and seen.state == "delivered":
            stem = job.path.name.split(".")[0]
            reason = "duplicate of a bundle already delivered"
            return drop_job(home, job, hop_id or opened.bundle_id, stem, reason, now=now)
        if inner.meta.kind in CONTROL_KINDS:
            return _deliver_control(home, opened, source, first_payload, now=now)
        if inner.meta.kind is ContentKind.PART:
            from rise_dtn.node import parts  # late: only split files need it

            return parts.deliver_part(home, opened, source, first_payload, now=now)
        return _deliver_payload(home, opened, seen, source, first_payload, now=now)


def _deliver_payload(
    home: Home,
    opened: _Opened,
    seen: SeenRow | None,
    source: Source,
    first_payload: bytes,
    *,
    now: int,
) -> TossEvent:
    opener, inner = opened.opener, opened.inner
    if seen is not None and Path(seen.target).exists():
        source.finish()
        return _finish(home, opened, Path(seen.target), now=now)
    target = _target(home, opened, seen)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_tmp(target.parent)
    try:
        staged = AtomicFile(target, mode=0o600)
    except OSError as exc:
        raise storage_error(exc, "delivering") from None

    def open_and_write(chunk: tuple[int, bytes]) -> None:
        index, sealed = chunk
        staged.write(opener.open(index, sealed))

    try:
        written = len(first_payload)
        staged.write(first_payload)
        if opener.chunk_count > 1:
            # The writer thread authenticates, decrypts and writes each chunk
            # while this one reads the next (off a stick: peeling its onion
            # layer): two cores, as for a forward. A chunk that fails stops
            # the delivery at the next handover or at the end, before
            # anything is recorded, as before. One chunk (a message, a small
            # file): nothing to overlap, so no thread to start and join,
            # milliseconds on a loaded machine.
            with BackgroundWriter(open_and_write) as write:
                for index, size in opener.chunk_sizes():
                    write((index, _read_exact(source, size)))
                    written += size - sealing.TAG_BYTES
        signed_size = inner.meta.size
        if signed_size is not None and written != signed_size:
            raise BundleError(f"payload is {written} bytes, the sender signed {signed_size}")
        source.finish()
        os.fsync(staged.fileno())
    except OSError as exc:
        staged.abort()
        raise storage_error(exc, "delivering") from None
    except BaseException:
        staged.abort()
        raise
    target = _record_and_link(home, staged, opened, now=now)
    return _finish(home, opened, target, now=now)


def _deliver_control(
    home: Home, opened: _Opened, source: Source, first_payload: bytes, *, now: int
) -> TossEvent:
    """A receipt or a map: small, handled here, never written to incoming/ or the inbox."""
    opener = opened.opener
    if opener.chunk_count != 1:
        raise BundleError(f"{opened.inner.meta.kind.name.lower()} bundle is too large")
    source.finish()
    from rise_dtn.node.toss import control  # late: control imports the sending side

    if opened.inner.meta.kind is ContentKind.MAP and not opened.peer.relay:
        # Default deny, without a quarantine pile: the sender gets its ack and
        # stops offering the map; this node's operator sees why.
        stem = opened.job.path.name.split(".")[0]
        reason = (
            f"map from {opened.peer.name}, which is not marked as a relay "
            f"(`rise peer relay {opened.peer.name} on` to take its maps)"
        )
        return drop_job(home, opened.job, opened.hop_id or opened.bundle_id, stem, reason, now=now)
    control.accept(home, opened.peer, opened.inner.meta.kind, first_payload, now=now)
    journal_without_file(home, opened, now=now, receipt=False)
    return Accepted(opened.bundle_id, opened.inner.meta.kind, opened.peer.name)


def _target(home: Home, opened: _Opened, seen: SeenRow | None) -> Path:
    if seen is not None:
        return Path(seen.target)  # resume the delivery a crash interrupted
    meta = opened.inner.meta
    if meta.kind is ContentKind.MESSAGE:
        return home.inbox_dir / f"{opened.bundle_id}.msg"
    assert meta.name is not None  # Meta.decode guarantees a checked name
    return home.incoming_dir(opened.peer.name) / meta.name


def _record_and_link(home: Home, staged: AtomicFile, opened: _Opened, *, now: int) -> Path:
    """Journal the target, then give the staged file its name without clobbering anything."""
    bundle_id = str(opened.bundle_id)
    target = staged.final
    for attempt in range(1000):
        if attempt:
            target = _numbered(staged.final, attempt)
        if os.path.lexists(target):
            # Journal only a free name: after a crash, an existing target is
            # taken to be this delivery's own, so a taken name would lose it.
            continue
        home.fast_index.record_delivering(
            SeenRow(
                bundle_id=bundle_id,
                expiry=opened.opener.clear.header.expiry,
                state="delivering",
                sender=str(opened.peer.node_id),
                target=str(target),
                at=now,
            )
        )
        try:
            staged.final = target
            staged.commit(replace=False)
            return target
        except FileExistsError:
            continue
        except OSError as exc:
            staged.abort()
            raise storage_error(exc, "delivering") from None
    staged.abort()
    raise StorageError(f"cannot find a free name for {staged.final}")


def _finish(home: Home, opened: _Opened, target: Path, *, now: int) -> Delivered:
    bundle_id, peer, kind = opened.bundle_id, opened.peer, opened.inner.meta.kind
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        # Delivered, and already taken away by a quick reader: the delivery
        # still happened and must be recorded, or the next toss repeats it.
        size = opened.inner.meta.size or 0
    message = None
    if kind is ContentKind.MESSAGE:
        message = InboxRow(
            bundle_id=str(bundle_id),
            sender=str(peer.node_id),
            sender_name=peer.name,
            received_at=now,
            size=size,
            path=str(target),
        )
    home.fast_index.finish_delivery(
        str(bundle_id),
        neighbour=str(opened.job.neighbour),
        message=message,
        now=now,
        hop_id=str(opened.hop_id) if opened.hop_id else None,
        # Over relays (an onion packet) the sender waits for a receipt.
        receipt_to=str(peer.node_id) if opened.hop_id else None,
    )
    home.bundles.handled(opened.job.path)
    return Delivered(bundle_id, kind, peer.name, target, size)
