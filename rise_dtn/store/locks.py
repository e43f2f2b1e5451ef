"""Advisory locks (flock) that two rise-dtn processes use to stay out of each other's way.

A lock dies with its process, so a kill -9 never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from rise_dtn.core.errors import BusyError


@contextlib.contextmanager
def held(path: Path, *, wait_seconds: float = 0.0, what: str = "the spool") -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting up to `wait_seconds`, else BusyError."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(f"{what} is busy: another rise-dtn process holds it") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
