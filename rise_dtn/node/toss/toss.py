"""Toss: verify, decrypt and deliver the bundles waiting in rx/.

Each bundle is handled on its own; a bad one is quarantined or dropped with a
one-line reason and the rest go on. Delivery is a small journal in the index
(`seen`): decrypt to a tmp file, fsync, record "delivering" with the target
name, link into place, record "delivered" and only then delete the rx file.
A crash at any step is finished by the next toss, and a bundle id that was
delivered once is never delivered again (docs/protocol.md, "Toss").
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from rise_dtn.core.bundle import ClearPart, ContentKind, Inner, Opener
from rise_dtn.core.errors import BundleError, Deferred, StorageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss import parallel
from rise_dtn.node.toss.notify import notify
from rise_dtn.node.toss.toss_events import (
    Accepted,
    Delivered,
    Forwarded,
    NotifyFailed,
    Rejected,
    Source,
    StreamCut,
    TossEvent,
)
from rise_dtn.store.atomic import AtomicFile, remove_stale_tmp, storage_error
from rise_dtn.store.index import InboxRow, SeenRow
from rise_dtn.store.pipeline import BackgroundWriter
from rise_dtn.store.spool import read_clear

if TYPE_CHECKING:
    from rise_dtn.node.toss.forwarding import ForwardBatch


# The events live in toss_events.py; callers read them as toss.Delivered etc.
__all__ = [
    "Accepted",
    "Delivered",
    "Forwarded",
    "NotifyFailed",
    "Rejected",
    "TossEvent",
    "deliver_peeled",
    "drop",
    "toss",
]
CONTROL_KINDS = frozenset({ContentKind.RECEIPT, ContentKind.MAP})


class FileSource:
    """A direct bundle in rx/: nothing around it to check."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def read(self, size: int, /) -> bytes:
        return self._handle.read(size)

    def finish(self) -> None:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    path: Path
    neighbour: NodeId


@dataclasses.dataclass(frozen=True, slots=True)
class _Opened:
    """A bundle whose first chunk opened and whose sender checked out."""

    job: _Job
    opener: Opener
    inner: Inner
    peer: Peer
    hop_id: BundleId | None = None  # the onion packet's id, if it came in one

    @property
    def bundle_id(self) -> BundleId:
        return self.opener.clear.bundle_id


def toss(
    home: Home, *, now: int, on_event: Callable[[TossEvent], None] = lambda _event: None
) -> list[TossEvent]:
    """Toss every complete bundle in rx/; return what happened to each."""
    home.spool.check_exists()
    remove_stale_tmp(home.spool.tmp)
    events: list[TossEvent] = []

    def emit(event: TossEvent) -> None:
        events.append(event)
        announce(home, event, on_event)

    jobs = list(_jobs(home))
    workers = parallel.workers_for(len(jobs))
    if workers > 1:
        parallel.run_sliced(
            home,
            jobs,
            workers=workers,
            run=lambda part, send: _toss_jobs(home, part, now=now, emit=send),
            emit=emit,
        )
    else:
        _toss_jobs(home, jobs, now=now, emit=emit)
    if any(isinstance(event, Accepted) and event.kind is ContentKind.MAP for event in events):
        _route_held(home, now=now, on_event=on_event)
    if home.config.relay.enabled or home.spool.root.joinpath("held").exists():
        # Routing records outlive nothing they are for (a seized relay keeps no log).
        home.relay_index.forget_expired(now)
    return events


def announce(home: Home, event: TossEvent, on_event: Callable[[TossEvent], None]) -> None:
    """Report an event; for a delivery, also run the on_delivery hook and report its failure."""
    on_event(event)
    if isinstance(event, Delivered):
        warning = notify(home, event)
        if warning is not None:
            on_event(NotifyFailed(event.bundle_id, warning))


def deliver_streamed(
    home: Home,
    clear: ClearPart,
    neighbour: NodeId,
    source: Source,
    *,
    now: int,
    on_event: Callable[[TossEvent], None],
) -> bool:
    """Deliver a direct bundle while it is still arriving on a live link; True if delivered.

    `source` hands out the sealed chunks as the link writes them. Nothing is
    recorded before the last chunk is authenticated, exactly as for a bundle
    tossed from rx/: a cut or a crash leaves only a locked tmp file, swept
    later, and the bundle is tossed again in full once complete. A bad
    bundle is left to that ordinary toss, which quarantines it with its
    reason; so is one seen before (a delivery a crash interrupted).
    """
    if home.index.seen_state(str(clear.bundle_id)) is not None:
        return False
    # The bundle is not in rx/ yet (it never will be, once delivered): there
    # is no rx file for _finish to remove.
    job = _Job(home.spool.bundle_path(home.spool.rx_dir(neighbour), clear.bundle_id), neighbour)
    try:
        event = _deliver(home, job, Opener(home.identity, clear), None, source, now=now)
    except (BundleError, StreamCut):
        return False
    announce(home, event, on_event)
    return isinstance(event, Delivered)


def _toss_jobs(
    home: Home, jobs: Sequence[_Job], *, now: int, emit: Callable[[TossEvent], None]
) -> None:
    from rise_dtn.node.toss.forwarding import ForwardBatch  # late: it imports this module

    with ForwardBatch(home, now=now, emit=emit) as batch:
        for job in jobs:
            fd = _lock(job.path)
            if fd is None:
                continue  # another toss holds this one, or it is already gone
            try:
                event = _toss_one(home, job, now=now, batch=batch)
            finally:
                os.close(fd)
            if event is not None:
                emit(event)


def _route_held(home: Home, *, now: int, on_event: Callable[[TossEvent], None]) -> None:
    """A new map may open a route for bundles held by `rise-send --wait`."""
    import random

    from rise_dtn.node.send import routed  # late: routed imports the sending side

    for bundle_id, outcome in routed.retry_held(home, now=now, rng=random.SystemRandom()):
        on_event(Rejected(bundle_id, "was held for a route", outcome))


def _jobs(home: Home) -> Iterator[_Job]:
    for neighbour in home.spool.rx_neighbours():
        for path in home.spool.files(home.spool.rx_dir(neighbour)):
            yield _Job(path, neighbour)


def _lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not path.exists():  # tossed by another process between listing and locking
        os.close(fd)
        return None
    return fd


def _toss_one(
    home: Home, job: _Job, *, now: int, batch: ForwardBatch | None = None
) -> TossEvent | None:
    stem = job.path.name.split(".")[0]
    try:
        clear, _size = read_clear(job.path)
        if clear.expired(now):
            return _drop(home, job, clear.bundle_id, stem, "expired", now=now)
        if clear.onion:
            from rise_dtn.node.toss import relay  # late: relay imports this module

            return relay.toss_packet(home, job.path, job.neighbour, clear, now=now, batch=batch)
        seen = home.index.seen_state(str(clear.bundle_id))
        if seen is not None and seen.state == "delivered":
            reason = "duplicate of a bundle already delivered"
            return _drop(home, job, clear.bundle_id, stem, reason, now=now)
        with open(job.path, "rb") as handle:
            handle.seek(clear.size)
            opener = Opener(home.identity, clear)
            return _deliver(home, job, opener, seen, FileSource(handle), now=now)
    except Deferred as exc:
        return Rejected(stem, exc.message, "deferred")
    except BundleError as exc:
        home.spool.quarantine(job.path, exc.message)
        _forget(home, stem)
        return Rejected(stem, exc.message, "quarantined")


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
    job = _Job(path, neighbour)
    stem = path.name.split(".")[0]
    if inner.expired(now):
        return _drop(home, job, hop_id, stem, "expired", now=now)
    seen = home.index.seen_state(str(inner.bundle_id))
    if seen is not None and seen.state == "delivered":
        reason = "duplicate of a bundle already delivered (another copy)"
        return _drop(home, job, hop_id, stem, reason, now=now)
    opener = Opener(home.identity, inner)
    return _deliver(home, job, opener, seen, source, now=now, hop_id=hop_id)


def drop(
    home: Home, path: Path, neighbour: NodeId, bundle_id: BundleId, reason: str, *, now: int
) -> Rejected:
    """`_drop` for a caller without a job at hand (relay.py: a replayed packet)."""
    return _drop(home, _Job(path, neighbour), bundle_id, path.name.split(".")[0], reason, now=now)


def _drop(
    home: Home, job: _Job, bundle_id: BundleId, stem: str, reason: str, *, now: int
) -> Rejected:
    """Drop a bundle that needs no delivery; the neighbour still gets its ack.

    The ack names the id inside the bundle, not the file's name: a file in
    rx/ under another name must neither ack a bundle it is not nor leave an
    unparsable id in pending_ack (which would stop every later rise-xfer).
    """
    home.index.owe_ack(str(bundle_id), str(job.neighbour), now=now)
    home.spool.remove(job.path)
    _forget(home, stem)
    return Rejected(stem, reason, "dropped")


def _forget(home: Home, stem: str) -> None:
    home.index.drop_entry(stem, "rx")


def _deliver(
    home: Home,
    job: _Job,
    opener: Opener,
    seen: SeenRow | None,
    source: Source,
    *,
    now: int,
    hop_id: BundleId | None = None,
) -> TossEvent:
    inner, first_payload = opener.open_first(_read_exact(source, opener.first_chunk_bytes))
    peer = home.peers.by_id(inner.sender)
    if peer is None:
        raise BundleError(f"unknown sender {inner.sender} (not in the peer book)")
    opener.verify_sender(inner, peer.card.public)
    opened = _Opened(job, opener, inner, peer, hop_id)
    if inner.meta.kind in CONTROL_KINDS:
        return _deliver_control(home, opened, source, first_payload, now=now)
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
    try:
        written = len(first_payload)
        with BackgroundWriter(staged.write) as write:
            write(first_payload)
            for index, size in opener.chunk_sizes():
                plain = opener.open(index, _read_exact(source, size))
                written += len(plain)
                write(plain)
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
        return _drop(home, opened.job, opened.hop_id or opened.bundle_id, stem, reason, now=now)
    control.accept(home, opened.peer, opened.inner.meta.kind, first_payload, now=now)
    home.index.record_delivering(
        SeenRow(
            bundle_id=str(opened.bundle_id),
            expiry=opener.clear.header.expiry,
            state="delivering",
            sender=str(opened.peer.node_id),
            target="",
            at=now,
        )
    )
    home.index.finish_delivery(
        str(opened.bundle_id),
        neighbour=str(opened.job.neighbour),
        message=None,
        now=now,
        hop_id=str(opened.hop_id) if opened.hop_id else None,
    )
    home.spool.remove(opened.job.path)
    return Accepted(opened.bundle_id, opened.inner.meta.kind, opened.peer.name)


def _read_exact(source: Source, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise BundleError("bundle is truncated")
    return data


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
        home.index.record_delivering(
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


def _numbered(path: Path, number: int) -> Path:
    """'report.pdf' -> 'report.1.pdf': an existing file is never overwritten."""
    suffix = "".join(path.suffixes[-1:])
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f"{stem}.{number}{suffix}")


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
    home.index.finish_delivery(
        str(bundle_id),
        neighbour=str(opened.job.neighbour),
        message=message,
        now=now,
        hop_id=str(opened.hop_id) if opened.hop_id else None,
    )
    home.spool.remove(opened.job.path)
    return Delivered(bundle_id, kind, peer.name, target, size)
