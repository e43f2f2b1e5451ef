"""Toss: take the bundles waiting in rx/ one by one and hand each to what it is for.

A direct bundle for this node is delivered (deliver.py); an onion packet is
peeled and relayed or delivered (relay.py, forwarding.py); a receipt or a
map is taken in (control.py). Each bundle is handled on its own; a bad one
is quarantined or dropped with a one-line reason and the rest go on. Two
tosses at once never take the same file (an flock per rx file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rise_dtn.core.bundle import ClearPart, ContentKind, Opener
from rise_dtn.core.errors import BundleError, Deferred
from rise_dtn.core.identity import NodeId
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.node.home import Home
from rise_dtn.node.toss import deliver, parallel, relay
from rise_dtn.node.toss.forwarding import ForwardBatch
from rise_dtn.node.toss.notify import notify
from rise_dtn.node.toss.toss_events import (
    STREAM_DONE,
    STREAM_LEFT,
    Accepted,
    Delivered,
    Forwarded,
    NotifyFailed,
    Rejected,
    Source,
    StreamCut,
    Streamed,
    TossEvent,
)
from rise_dtn.store.atomic import remove_stale_tmp
from rise_dtn.store.spool import QUARANTINE_KEEP_BYTES, read_clear

# The events live in toss_events.py; callers read them as toss.Delivered etc.
__all__ = [
    "Accepted",
    "Delivered",
    "Forwarded",
    "NotifyFailed",
    "Rejected",
    "Streamed",
    "TossEvent",
    "deliver_streamed",
    "toss",
]


def toss(
    home: Home,
    *,
    now: int,
    on_event: Callable[[TossEvent], None] = lambda _event: None,
    progress: Progress = NO_PROGRESS,
) -> list[TossEvent]:
    """Toss every complete bundle in rx/; return what happened to each.

    `progress` hears each bundle (lane TOSSING), and each chunk of a direct one."""
    home.spool.check_exists()
    remove_stale_tmp(home.spool.tmp)
    events: list[TossEvent] = []

    def emit(event: TossEvent) -> None:
        events.append(event)
        announce(home, event, on_event)

    if home.spool.root.joinpath("parts").is_dir():
        from rise_dtn.node import parts  # late: only a node with split files pays for it

        for folder, reason, action in parts.sweep(home, now=now):
            emit(Rejected(folder, reason, action))

    jobs = list(_jobs(home))
    sizes = _plan(jobs, progress)
    workers = parallel.workers_for(len(jobs))
    if workers > 1:

        def emit_counted(event: TossEvent) -> None:
            # The workers draw nothing: each event the parent hears is a bundle done.
            with progress.item(TOSSING, str(event.bundle_id), sizes.get(str(event.bundle_id), 0)):
                emit(event)

        parallel.run_sliced(
            home,
            jobs,
            workers=workers,
            run=lambda part, send: _toss_jobs(home, part, now=now, emit=send),
            emit=emit_counted,
        )
    else:
        _toss_jobs(home, jobs, now=now, emit=emit, progress=progress)
    if any(isinstance(event, Accepted) and event.kind is ContentKind.MAP for event in events):
        _route_held(home, now=now, on_event=on_event)
    if home.fast_index.receipts_owed():
        # A crash between a delivery and its receipt's queueing left a debt.
        from rise_dtn.node.toss import control  # late: control imports the sending side

        control.send_receipts_owed(home, now=now)
    if home.config.relay.enabled or home.spool.root.joinpath("held").exists():
        # Routing records outlive nothing they are for (a seized relay keeps no log).
        home.fast_relay_index.forget_expired(now)
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
) -> Streamed:
    """Toss a bundle as it arrives (a live link, a stick with --toss): done, bad, or left.

    A direct bundle is delivered, an onion packet forwarded or delivered, as
    `source` hands out the bytes after its clear part. Nothing is recorded
    before the last chunk (the onion payload's tag) is authenticated,
    exactly as for a bundle tossed from rx/: a cut or a crash leaves only a
    locked tmp file, swept later, and the bundle is tossed again in full
    once complete. A bundle that proves bad (what the toss from rx/ would
    quarantine: a chunk that fails authentication, an unknown sender, a
    refused part) is reported with its reason, so that the caller stops
    copying it rather than keep a whole copy only to quarantine it. One
    seen before (a delivery a crash interrupted), and one that must wait
    (a relay's quota), or a cut link, are left to the ordinary toss.
    """
    if home.fast_index.seen_state(str(clear.bundle_id)) is not None:
        return STREAM_LEFT
    # The bundle is not in rx/: its toss has no file of its own to remove at
    # the end. Under its rx/ name there may be another's copy (a second
    # exchange of the same stick, storing it meanwhile), which that one's
    # index row lists and its toss drops: so a name no file ever has, with the
    # bundle id for stem (what events and the index go by).
    path = home.spool.rx_dir(neighbour) / f"{clear.bundle_id}{STREAMED_SUFFIX}"
    try:
        if clear.onion:
            event = relay.toss_packet(home, path, neighbour, clear, now=now, reader=source)
        else:
            job = deliver.Job(path, neighbour)
            event = deliver.deliver(home, job, Opener(home.identity, clear), source, now=now)
    except BundleError as exc:
        return Streamed(bad=exc.message)  # nothing was recorded: the caller quarantines it
    except (Deferred, StreamCut):
        return STREAM_LEFT
    if event is None:  # pragma: no cover - only a batch defers an event
        return STREAM_LEFT
    announce(home, event, on_event)
    # Delivered, forwarded, or taken in (a receipt or map), or dropped with
    # its ack owed (a duplicate, a map from a peer not marked relay): done with.
    return STREAM_DONE


TOSSING = "tossing"  # the progress lane of a toss
STREAMED_SUFFIX = ".streamed"  # deliver_streamed's stand-in for an rx/ file: never a file


def _plan(jobs: Sequence[deliver.Job], progress: Progress) -> dict[str, int]:
    """Each job's size by the name its events give, told to `progress` as the work ahead."""
    sizes = {}
    for job in jobs:
        with contextlib.suppress(OSError):
            sizes[_stem(job.path)] = job.path.stat().st_size
    progress.planned(TOSSING, bundles=len(sizes), total_bytes=sum(sizes.values()))
    return sizes


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def _toss_jobs(
    home: Home,
    jobs: Sequence[deliver.Job],
    *,
    now: int,
    emit: Callable[[TossEvent], None],
    progress: Progress = NO_PROGRESS,
) -> None:
    with ForwardBatch(home, now=now, emit=emit) as batch:
        for job in jobs:
            fd = _lock(job.path)
            if fd is None:
                continue  # another toss holds this one, or it is already gone
            try:
                size = os.fstat(fd).st_size
                with progress.item(TOSSING, _stem(job.path), size) as moved:
                    event = _toss_one(home, job, now=now, batch=batch, moved=moved)
            finally:
                os.close(fd)
            if event is not None:
                emit(event)


class _Watched:
    """A source that tells a progress bar of each chunk read (a chunk is 1 MiB)."""

    def __init__(self, inner: Source, moved: Callable[[int], object]) -> None:
        self._inner = inner
        self._moved = moved

    def read(self, size: int, /) -> bytes:
        data = self._inner.read(size)
        self._moved(len(data))
        return data

    def finish(self) -> None:
        self._inner.finish()


def _route_held(home: Home, *, now: int, on_event: Callable[[TossEvent], None]) -> None:
    """A new map may open a route for bundles held by `rise-send --wait`."""
    import random

    from rise_dtn.node.send import routed  # late: routed imports the sending side

    for bundle_id, outcome in routed.retry_held(home, now=now, rng=random.SystemRandom()):
        on_event(Rejected(bundle_id, "was held for a route", outcome))


def _jobs(home: Home) -> Iterator[deliver.Job]:
    for neighbour in home.spool.rx_neighbours():
        for path in home.spool.files(home.spool.rx_dir(neighbour)):
            yield deliver.Job(path, neighbour)


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
    home: Home,
    job: deliver.Job,
    *,
    now: int,
    batch: ForwardBatch | None = None,
    moved: Callable[[int], object] | None = None,
) -> TossEvent | None:
    stem = _stem(job.path)
    try:
        clear, _size = read_clear(job.path)
        if clear.expired(now):
            return deliver.drop_job(home, job, clear.bundle_id, stem, "expired", now=now)
        if clear.onion:
            return relay.toss_packet(home, job.path, job.neighbour, clear, now=now, batch=batch)
        seen = home.fast_index.seen_state(str(clear.bundle_id))
        if seen is not None and seen.state == "delivered":
            reason = "duplicate of a bundle already delivered"
            return deliver.drop_job(home, job, clear.bundle_id, stem, reason, now=now)
        with open(job.path, "rb") as handle:
            handle.seek(clear.size)
            opener = Opener(home.identity, clear)
            source: Source = deliver.FileSource(handle)
            if moved is not None:
                source = _Watched(source, moved)
            return deliver.deliver(home, job, opener, source, now=now)
    except Deferred as exc:
        return Rejected(stem, exc.message, "deferred")
    except BundleError as exc:
        home.bundles.quarantine(
            job.path, exc.message, listed_as="rx", keep_bytes=QUARANTINE_KEEP_BYTES
        )
        return Rejected(stem, exc.message, "quarantined")
