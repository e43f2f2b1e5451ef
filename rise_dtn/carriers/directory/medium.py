"""Is a removable medium there? Used by `rise-xfer --watch` to wait for a stick."""

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
