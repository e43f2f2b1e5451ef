"""Is a removable medium there, and how large can a bundle on it be? (rise-xfer)"""

from __future__ import annotations

import os
from pathlib import Path

from rise_dtn.carriers.directory.layout import TOP


def ready(directory: Path) -> bool:
    """A stick is ready when its mount point is mounted, or it already carries rise-dtn.

    The second test lets a plain folder (a network share, a test) act as a stick.
    """
    try:
        return directory.is_dir() and (os.path.ismount(directory) or (directory / TOP).is_dir())
    except OSError:
        return False


def bundle_limit(directory: Path, max_bundle_bytes: int | None) -> tuple[int, str] | None:
    """The size no bundle for this medium may exceed, and what sets it; None: no limit.

    A bundle larger than the filesystem's whole capacity (or than the
    user's --max-bundle) would wait for ever behind "the medium is full":
    rise-xfer says so once, and points at rise-send --part-size.
    """
    limits = []
    if max_bundle_bytes is not None:
        limits.append((max_bundle_bytes, "--max-bundle"))
    try:
        info = os.statvfs(directory)
    except OSError:
        info = None
    if info is not None and info.f_blocks:
        limits.append((info.f_blocks * info.f_frsize, "the medium's whole capacity"))
    return min(limits) if limits else None
