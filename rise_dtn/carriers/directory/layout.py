"""The directory carrier: a USB stick, a shared folder, anything with files.

Layout on the medium (docs/carriers.md):

    DIR/rise-dtn/<to-node-id>/<from-node-id>/<bundle-id>.rsb   bundles
    DIR/rise-dtn/<to-node-id>/<from-node-id>/<ack-name>.rsa    hop acks

Every file is written under a tmp name, fsynced and renamed, so a stick
pulled mid-write leaves only a `.rise-tmp-*` file that no reader takes for a
bundle. Bundles for other nodes may sit here too; each node reads only its
own folder. This module moves files; it never opens a bundle body.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from rise_dtn.core.errors import UsageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.store.atomic import (
    TMP_PREFIX,
    atomic_file,
    fsync_dir,
    link_or_copy,
    remove_stale_tmp,
    storage_error,
)

TOP = "rise-dtn"
BUNDLE_SUFFIX = ".rsb"
ACK_SUFFIX = ".rsa"


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A file on the medium addressed to us."""

    path: Path
    sender: NodeId  # the neighbour that left it (its folder name)


class DirectoryCarrier:
    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise UsageError(f"{root} is not a directory (is the stick mounted?)")
        self.root = root
        self.top = root / TOP

    def _folder(self, recipient: NodeId, sender: NodeId) -> Path:
        return self.top / str(recipient) / str(sender)

    def _incoming(self, recipient: NodeId, suffix: str) -> Iterator[Found]:
        base = self.top / str(recipient)
        try:
            senders = sorted(os.listdir(base))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in senders:
            try:
                sender = NodeId.parse(name)
            except UsageError:
                continue
            try:
                files = sorted(os.listdir(base / name))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for file_name in files:
                if file_name.endswith(suffix) and not file_name.startswith(TMP_PREFIX):
                    yield Found(base / name / file_name, sender)

    def bundles_for(self, recipient: NodeId) -> Iterator[Found]:
        return self._incoming(recipient, BUNDLE_SUFFIX)

    def acks_for(self, recipient: NodeId) -> Iterator[Found]:
        return self._incoming(recipient, ACK_SUFFIX)

    def bundle_path(self, recipient: NodeId, sender: NodeId, bundle_id: BundleId) -> Path:
        return self._folder(recipient, sender) / f"{bundle_id}{BUNDLE_SUFFIX}"

    def holds(self, recipient: NodeId, sender: NodeId, bundle_id: BundleId, size: int) -> bool:
        """True if a complete copy of the bundle is already on the medium."""
        try:
            return self.bundle_path(recipient, sender, bundle_id).stat().st_size == size
        except FileNotFoundError:
            return False

    def put_bundle(
        self, source: Path, *, recipient: NodeId, sender: NodeId, bundle_id: BundleId
    ) -> None:
        """Put a bundle on the medium atomically: a hard link where the medium
        shares our filesystem (a shared folder), else a kernel copy."""
        folder = self._prepare(recipient, sender)
        target = folder / f"{bundle_id}{BUNDLE_SUFFIX}"
        try:
            link_or_copy(source, target, what=f"writing to {self.root}")
        except FileExistsError:
            pass  # a complete copy is already there (names appear only when complete)

    def put_ack(self, data: bytes, *, recipient: NodeId, sender: NodeId, name: str) -> None:
        folder = self._prepare(recipient, sender)
        with atomic_file(folder / f"{name}{ACK_SUFFIX}", what=f"writing to {self.root}") as out:
            out.write(data)

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(exc, f"removing {path}") from None

    def _prepare(self, recipient: NodeId, sender: NodeId) -> Path:
        folder = self._folder(recipient, sender)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, f"creating {folder}") from None
        return folder

    def remove_stale(self, *, sender: NodeId) -> int:
        """Remove partial files that `sender` left (a stick pulled mid-write)."""
        removed = 0
        try:
            recipients = os.listdir(self.top)
        except FileNotFoundError:
            return 0
        for name in recipients:
            removed += remove_stale_tmp(self.top / name / str(sender))
        return removed

    def sync(self) -> None:
        """Flush everything to the medium before the user pulls it."""
        os.sync()
