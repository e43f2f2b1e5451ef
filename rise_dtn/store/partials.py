"""Partial copies a live link is receiving: spool/tmp/partial/<neighbour>/<bundle-id>.part.

Beside each copy, `<bundle-id>.part.ok` holds the offset up to which it is
known to be on disk (its last checkpoint). The live-link driver writes and
resumes them; this module only reads what is there for the policy
(core/live_policy.py decides what is stale) and removes what it gives up,
so that the link and `rise-check` look at partial copies the same way.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from rise_dtn.core.live_policy import PartialCopy

PARTIAL_SUFFIX = ".part"
CHECKPOINT_SUFFIX = ".part.ok"


def partial_dir(tmp: Path, neighbour: str) -> Path:
    return tmp / "partial" / neighbour


def checkpoint_path(partial: Path) -> Path:
    return partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX) + CHECKPOINT_SUFFIX)


def durable_bytes(partial: Path) -> int:
    """The offset up to which the partial copy is known to be on disk (0: none known)."""
    try:
        return int(checkpoint_path(partial).read_text().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return 0


def read_partial(partial: Path) -> PartialCopy | None:
    """What is on disk of one partial copy; None if there is none."""
    try:
        status = partial.stat()
    except FileNotFoundError:
        return None
    return PartialCopy(
        size_bytes=status.st_size,
        durable_bytes=durable_bytes(partial),
        modified_at=int(status.st_mtime),
    )


def read_partials(directory: Path) -> dict[str, PartialCopy]:
    """Every partial copy in one neighbour's folder, by file name."""
    found: dict[str, PartialCopy] = {}
    try:
        paths = sorted(directory.glob(f"*{PARTIAL_SUFFIX}"))
    except OSError:
        return found
    for path in paths:
        with contextlib.suppress(OSError):
            partial = read_partial(path)
            if partial is not None:
                found[path.name] = partial
    return found


def orphan_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files whose partial copy is gone (a crash between two unlinks)."""
    try:
        checkpoints = sorted(directory.glob(f"*{CHECKPOINT_SUFFIX}"))
    except OSError:
        return []
    return [
        path
        for path in checkpoints
        if not path.with_name(path.name.removesuffix(CHECKPOINT_SUFFIX) + PARTIAL_SUFFIX).exists()
    ]


def remove_partial(partial: Path) -> None:
    """Give a partial copy up: the copy first, then its checkpoint (a checkpoint alone is
    harmless, and cleaned up too)."""
    partial.unlink(missing_ok=True)
    checkpoint_path(partial).unlink(missing_ok=True)
