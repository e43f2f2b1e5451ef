"""Watching mailboxes: a pass at once, then a pass whenever IMAP IDLE says new mail came.

One thread per distinct mailbox holds an IDLE connection, re-issued every
`[mailbox] idle` (before the 30 minutes after which RFC 2177 lets a server
drop it); when the connection fails it reconnects after 1 s, then backing
off to 5 minutes, and a pass runs after each reconnect (mail may have come
meanwhile). A bundle queued in spool/tx/ (rise-send, a toss's receipts)
wakes a pass too, so it leaves at once. Passes themselves run one at a time in the caller's thread,
each on a connection of its own; a `poll` interval is the backstop for a
server whose IDLE says nothing. Stops when `stop` is set (SIGTERM).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from rise_dtn.carriers.mailbox.connection import open_mailbox
from rise_dtn.carriers.mailbox.settings import Settings
from rise_dtn.core.errors import RiseError

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
JOIN_SECONDS = 10.0
STOP_CHECK_SECONDS = 0.5


def watch(
    places: list[Settings],
    run_passes: Callable[[], None],
    *,
    stop: threading.Event,
    poll_seconds: float,
    log: Callable[[str], None],
    queues: Path | None = None,
) -> None:
    """Run passes until `stop`: at once, on new mail in any of `places`, when a bundle is
    queued under `queues` (spool/tx: a rise-send leaves at once), and every poll."""
    wake = threading.Event()
    observer = _watch_queues(queues, wake) if queues is not None else None
    watchers = [
        threading.Thread(target=_idle, args=(settings, wake, stop, log), daemon=True)
        for settings in places
    ]
    for watcher in watchers:
        watcher.start()
    try:
        while not stop.is_set():
            wake.clear()
            run_passes()
            deadline = time.monotonic() + poll_seconds
            # In short waits: a signal handler that sets `stop` wakes nobody.
            while not (stop.is_set() or wake.wait(STOP_CHECK_SECONDS)):
                if time.monotonic() >= deadline:
                    break
    finally:
        stop.set()
        if observer is not None:
            with contextlib.suppress(RuntimeError):
                observer.stop()
                observer.join(JOIN_SECONDS)
        for watcher in watchers:
            watcher.join(JOIN_SECONDS)


class _Queued(FileSystemEventHandler):
    """Wakes the watch when a file appears (bundles are renamed into tx/); removals,
    which our own passes make, do not."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_created(self, event: FileSystemEvent) -> None:
        self.wake.set()

    def on_moved(self, event: FileSystemEvent) -> None:
        self.wake.set()


def _watch_queues(queues: Path, wake: threading.Event) -> BaseObserver | None:
    """Events are hints (STYLE.md): without them the poll still sends, later."""
    try:
        queues.mkdir(mode=0o700, parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(_Queued(wake), str(queues), recursive=True)
        observer.daemon = True
        observer.start()
    except OSError:
        return None  # out of inotify watches: the poll still sends
    return observer


def _idle(
    settings: Settings, wake: threading.Event, stop: threading.Event, log: Callable[[str], None]
) -> None:
    backoff = FIRST_BACKOFF_SECONDS
    while not stop.is_set():
        try:
            mailbox = open_mailbox(settings)
        except RiseError as exc:
            log(f"watching {settings.place}: {exc.message}; trying again in {backoff:g} s")
            if stop.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        if backoff > FIRST_BACKOFF_SECONDS:
            log(f"watching {settings.place} again")
            wake.set()  # mail may have come while we were away
        backoff = FIRST_BACKOFF_SECONDS
        try:
            while not stop.is_set():
                if mailbox.wait(settings.idle_seconds, stop):
                    wake.set()
        except RiseError as exc:
            log(f"watching {settings.place}: {exc.message}; reconnecting")
            backoff = FIRST_BACKOFF_SECONDS * 2
            wake.set()
        finally:
            mailbox.close()
