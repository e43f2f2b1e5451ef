"""Is a removable medium there, and how large can a bundle on it be? (rise-xfer)"""

from __future__ import annotations

import os
from pathlib import Path

from rise_dtn.carriers.directory.layout import TOP
from rise_dtn.core.errors import UsageError
from rise_dtn.core.units import human_bytes

# The smallest --max-bundle that makes sense: a one-byte message's bundle is
# 161 bytes; under a KiB no medium is worth writing to (and 0 would turn every
# bundle into "can never fit", which is a typo, not a medium).
MIN_MAX_BUNDLE_BYTES = 1 << 10


def ready(directory: Path) -> bool:
    """A stick is ready when its mount point is mounted, or it already carries rise-dtn.

    The second test lets a plain folder (a network share, a test) act as a stick.
    """
    try:
        return directory.is_dir() and (os.path.ismount(directory) or (directory / TOP).is_dir())
    except OSError:
        return False


def check_max_bundle(max_bundle_bytes: int | None) -> None:
    """Refuse a --max-bundle under which no useful bundle fits (UsageError, one line)."""
    if max_bundle_bytes is not None and max_bundle_bytes < MIN_MAX_BUNDLE_BYTES:
        raise UsageError(
            f"--max-bundle must be at least {human_bytes(MIN_MAX_BUNDLE_BYTES)}, not "
            f"{max_bundle_bytes} bytes: a smaller limit lets no bundle through"
        )


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


def free_bytes(directory: Path, *, default: int) -> int:
    """What a file on the medium may still take (statvfs), or `default` if it cannot say."""
    try:
        info = os.statvfs(directory)
    except OSError:
        return default
    return info.f_bavail * info.f_frsize
