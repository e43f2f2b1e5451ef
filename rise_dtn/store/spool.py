"""The spool directory: where bundles wait, arrive, and are quarantined.

    tx/<neighbour-id>/<bundle-id>.rsb   waiting for that neighbour
    rx/<neighbour-id>/<bundle-id>.rsb   received from that neighbour, not yet tossed
    tmp/                                partial writes (flock()ed while live)
    quarantine/<bundle-id>.rsb(.reason) rejected bundles and why
    locks/                              flock files
    index.sqlite                        the index (a cache of the above)

The files are the truth (spool/README.md); every listing here reads the
directories, never the index.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rise_dtn.core import bundle
from rise_dtn.core.errors import BundleError, UsageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.store.atomic import TMP_PREFIX, fsync_dir, storage_error, write_atomic

BUNDLE_SUFFIX = ".rsb"
REASON_SUFFIX = ".reason"
# What a toss keeps of a bundle it quarantines, as rise-xfer does of one it
# rejects off a medium: the clear part and the first sealed chunk, to see what
# it claimed to be, and never more, whatever size it claims.
QUARANTINE_KEEP_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class SpooledBundle:
    """A bundle file in the spool and what its cleartext header says."""

    path: Path
    neighbour: NodeId
    clear: bundle.ClearPart
    size: int

    @property
    def bundle_id(self) -> BundleId:
        return self.clear.bundle_id


def read_clear(path: Path) -> tuple[bundle.ClearPart, int]:
    """Parse a bundle file's clear part and check its size against the header."""
    with open(path, "rb", buffering=0) as handle:
        return parse_clear_file(handle)


def parse_clear_file(handle: BinaryIO) -> tuple[bundle.ClearPart, int]:
    """read_clear for a file already open (read from its start; never more than the header)."""
    handle.seek(0)
    head = handle.read(bundle.MAX_CLEAR_BYTES)
    size = os.fstat(handle.fileno()).st_size
    clear = bundle.parse_clear(head)
    if size < clear.total_bytes:
        raise BundleError(
            f"bundle is truncated: header claims {clear.total_bytes} bytes, file has {size}"
        )
    if size > clear.total_bytes:
        raise BundleError(f"bundle has {size - clear.total_bytes} trailing bytes")
    return clear, size


class Spool:
    """Paths and listings of one node's spool."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tx = root / "tx"
        self.rx = root / "rx"
        self.tmp = root / "tmp"
        self.quarantine_dir = root / "quarantine"
        self.locks = root / "locks"
        self.index_path = root / "index.sqlite"

    def create(self) -> None:
        for directory in (self.root, self.tx, self.rx, self.tmp, self.quarantine_dir, self.locks):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def check_exists(self) -> None:
        if not self.tx.is_dir():
            raise UsageError(f"no spool at {self.root} (run `rise init` first)")

    def tx_dir(self, neighbour: NodeId) -> Path:
        return self.tx / str(neighbour)

    def rx_dir(self, neighbour: NodeId) -> Path:
        return self.rx / str(neighbour)

    def bundle_path(self, directory: Path, bundle_id: BundleId) -> Path:
        return directory / f"{bundle_id}{BUNDLE_SUFFIX}"

    def lock_path(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    def tx_neighbours(self) -> list[NodeId]:
        return _neighbour_dirs(self.tx)

    def rx_neighbours(self) -> list[NodeId]:
        return _neighbour_dirs(self.rx)

    def files(self, directory: Path) -> Iterator[Path]:
        """Complete bundle files in `directory`, oldest first (tmp files never match)."""
        try:
            entries = [
                entry
                for entry in os.scandir(directory)
                if entry.name.endswith(BUNDLE_SUFFIX) and not entry.name.startswith(TMP_PREFIX)
            ]
        except FileNotFoundError:
            return
        entries.sort(key=lambda entry: (_mtime(entry), entry.name))
        for entry in entries:
            yield Path(entry.path)

    def quarantine(
        self, path: Path, reason: str, *, keep_bytes: int | None = None, name: str | None = None
    ) -> Path:
        """Move a rejected bundle aside with its reason; never raises on a vanished file.

        `name`: its name there, if not its own (a live link's partial copy is
        kept as the bundle it was, so that rise-stat counts it).

        With `keep_bytes`, only that much of it stays (the reason says so):
        enough to see what it claimed to be, while whoever sends or carries
        junk cannot fill the spool with it. It is cut after the move, so a
        crash in between leaves a whole copy in quarantine/, never a cut one
        in rx/ that the next toss would reject for another reason.
        """
        target = self.quarantine_dir / (name or path.name)
        try:
            size = os.stat(path).st_size
            cut = keep_bytes is not None and size > keep_bytes
            if cut:
                reason = f"{reason} (the first {keep_bytes} of its {size} bytes kept)"
            write_atomic(target.with_name(target.name + REASON_SUFFIX), (reason + "\n").encode())
            if target.exists() and os.path.samefile(path, target):
                # Hard links (xfer links bundles in from the medium) to one file:
                # rename() would succeed and do nothing, leaving it in rx/ forever.
                path.unlink()
            else:
                os.replace(path, target)
            if cut:
                os.truncate(target, keep_bytes or 0)
            fsync_dir(self.quarantine_dir)
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(exc, "quarantining a bundle") from None
        return target

    def remove(self, path: Path) -> None:
        """Delete a spool file durably (a release must survive a crash)."""
        try:
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(exc, "removing a spool file") from None

    def quarantined(self) -> list[tuple[Path, str]]:
        items = []
        for path in sorted(self.quarantine_dir.glob(f"*{BUNDLE_SUFFIX}")):
            reason_path = path.with_name(path.name + REASON_SUFFIX)
            try:
                reason = reason_path.read_text().strip()
            except FileNotFoundError:
                reason = "(no reason recorded)"
            items.append((path, reason))
        return items


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _neighbour_dirs(parent: Path) -> list[NodeId]:
    found = []
    try:
        names = sorted(os.listdir(parent))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            found.append(NodeId.parse(name))
        except UsageError:
            continue
    return found
