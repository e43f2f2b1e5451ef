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
    """Hold an exclusive lock on `path`, waiting up to `wait_seconds`, else BusyError.

    The lock is on the file the name leads to once it is ours: a `claimed`
    holder of the same name removes the file when done, and the file this
    one opened before that leads nowhere then (a newcomer makes a new one),
    so it is opened again.
    """
    deadline = time.monotonic() + wait_seconds
    for _attempt in range(_OPEN_ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BusyError(
                            f"{what} is busy: another rise-dtn process holds it"
                        ) from None
                    time.sleep(0.05)
            if _still_names(path, fd):
                yield
                return
        finally:
            os.close(fd)
    raise BusyError(f"{what} is busy: its lock file keeps being removed")


# Each new open needs a `claimed` holder to have removed the file meanwhile: a
# hundred in a row is not contention but a filesystem whose names do not hold
# still (a bound, so that it is an error and not a hang).
_OPEN_ATTEMPTS = 100


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[bool]:
    """Yield True while holding `path`'s lock, or False at once if another holder has it.

    For a lock per item (one bundle being delivered), so the file is removed
    when done and none pile up. Whoever opened the file just before that
    removal gets its lock on a name that leads elsewhere now (or nowhere):
    that counts as held by another, so two processes never both hold "the"
    lock of one name.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        if not _still_names(path, fd):
            yield False
            return
        try:
            yield True
        finally:
            # Unlinked while still locked: a process that opens the name from
            # now on makes a new file, one that opened the old one finds the
            # name moved on.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)


def _still_names(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
