"""Toss a large rx/ on every core: forked workers, each with its own slice and batch.

A relay's toss is CPU-bound (two X25519 and some Python per packet), so
thousands of waiting packets go faster on several cores. The workers are
forked after the parent has listed the jobs, so they start in a moment and
share nothing but the spool, whose every step is already safe against a
concurrent toss (a lock per rx file, idempotent index writes, SQLite's own
locking). Events come back to the parent over a queue, and the parent alone
prints them and runs the on_delivery hook, as in a single-process toss.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Callable, Sequence
from queue import Empty
from typing import TYPE_CHECKING, TypeVar

from rise_dtn.core.errors import RiseError, StorageError
from rise_dtn.node.home import Home

if TYPE_CHECKING:
    import multiprocessing

# Below this many bundles a worker's fork and index connection cost more than
# they save; above it, each core takes an equal, interleaved share.
MIN_PARALLEL_JOBS = 1024
MAX_WORKERS = 4
POLL_SECONDS = 1.0  # how often the parent looks for a worker that died silently
PR_SET_PDEATHSIG = 1  # prctl(2)

Job = TypeVar("Job")
Event = TypeVar("Event")
_DONE = "done"


def workers_for(jobs: int) -> int:
    """How many workers a toss of `jobs` bundles should use (1: do it in-process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if jobs < MIN_PARALLEL_JOBS or not cores or cores < 2:
        return 1
    import multiprocessing  # late: a toss of a few bundles never forks

    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
        return 1
    if threading.active_count() > 1:
        return 1  # forking a process with other threads (a daemon) risks their locks

    return min(cores, MAX_WORKERS)


def run_sliced(
    home: Home,
    jobs: Sequence[Job],
    *,
    workers: int,
    run: Callable[[Sequence[Job], Callable[[Event], None]], None],
    emit: Callable[[Event], None],
) -> None:
    """Run `run(slice, emit)` in `workers` forked processes; relay their events to `emit`.

    A worker's RiseError is raised again here (after the others finished),
    so the command exits with its code; anything else becomes a StorageError.
    """
    home.relay_index  # noqa: B018 - the tables exist before the workers race to make them
    import multiprocessing  # late, as in workers_for

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [
        context.Process(
            target=_work,
            args=(home, list(jobs[index::workers]), run, queue, os.getpid()),
            daemon=True,
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    failure: BaseException | None = None
    finished = 0
    while finished < workers:
        try:
            message = queue.get(timeout=POLL_SECONDS)
        except Empty:
            if any(process.is_alive() for process in processes) or not queue.empty():
                continue
            failure = failure or StorageError("a toss worker died; the next toss finishes its part")
            break
        if message == _DONE:
            finished += 1
        elif isinstance(message, BaseException):
            failure = failure or message
            finished += 1
        else:
            emit(message)
    for process in processes:
        process.join()
    if failure is not None:
        if isinstance(failure, RiseError):
            raise failure
        raise StorageError(f"a toss worker failed: {failure}")


def die_with(parent: int) -> None:
    """Go when the parent goes (kill -9 included): an orphan would hold its locks."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _work(
    home: Home,
    jobs: list[Job],
    run: Callable[[Sequence[Job], Callable[[Event], None]], None],
    queue: multiprocessing.Queue[object],
    parent: int,
) -> None:
    die_with(parent)
    # The parent's pooled index connections must not be shared across a fork.
    if "index" in home.__dict__:
        home.index.engine.dispose(close=False)
    try:
        run(jobs, queue.put)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        queue.put(exc if isinstance(exc, RiseError) else StorageError(str(exc)[:200]))
        return
    queue.put(_DONE)
