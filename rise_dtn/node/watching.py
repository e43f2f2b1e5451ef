"""Waiting for something to happen on disk: watchdog events as hints, polling as truth.

Events only wake the waiter early; every wake-up rescans from scratch, and a
periodic rescan runs even when no event came (inotify queues overflow, NFS
and some removable media send none). See STYLE.md, "Watchdog events are hints".
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

DEBOUNCE_SECONDS = 0.2  # let a burst of renames settle before rescanning


class _Wake(FileSystemEventHandler):
    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.flag.set()


class ChangeWaiter:
    """Sleeps until a change under one of `paths`, a stop request, or `poll_seconds`."""

    def __init__(self, paths: list[Path], *, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self.changed = threading.Event()
        self.stopping = threading.Event()
        self._observer: Observer | None = None  # type: ignore[valid-type]
        try:
            observer = Observer()
            handler = _Wake(self.changed)
            for path in paths:
                if path.is_dir():
                    observer.schedule(handler, str(path), recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except OSError:
            self._observer = None  # out of inotify watches: polling alone still works

    def wait(self) -> bool:
        """Block until something may have changed; False once a stop was requested."""
        if self.stopping.is_set():
            return False
        self.changed.wait(self.poll_seconds)
        if self.changed.is_set():
            self.stopping.wait(DEBOUNCE_SECONDS)
            self.changed.clear()
        return not self.stopping.is_set()

    def stop(self) -> None:
        self.stopping.set()
        self.changed.set()

    def close(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(RuntimeError):
                self._observer.stop()
                self._observer.join(timeout=2)
