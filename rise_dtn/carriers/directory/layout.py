"""The directory carrier: a USB stick, a shared folder, anything with files.

Layout on the medium (docs/carriers.md):

    DIR/rise-dtn/<to-node-id>/<from-node-id>/<bundle-id>.rsb   bundles
    DIR/rise-dtn/<to-node-id>/<from-node-id>/<ack-name>.rsa    hop acks

Every file is written under a tmp name, fsynced and renamed, so a stick
pulled mid-write leaves only a `.rise-tmp-*` file that no reader takes for a
bundle. Bundles for other nodes may sit here too; each node reads only its
own folder. Whoever held the medium chose what is on it, so every folder
and file is reached through folder.py: never through a link, never a FIFO
or device, never a hard link shared with the spool. This module moves
files; it never opens a bundle body.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from rise_dtn.carriers.directory.folder import (
    Folder,
    MediumFile,
    OccupiedName,
    UnsafeEntry,
    not_writable,
    shown,
)
from rise_dtn.core.errors import StorageError, UsageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.store.atomic import (
    TMP_PREFIX,
    Moved,
    clone_or_copy,
    storage_error,
    sync_filesystem_of,
    unwatched,
)

TOP = "rise-dtn"
BUNDLE_SUFFIX = ".rsb"
ACK_SUFFIX = ".rsa"


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A file on the medium addressed to us."""

    folder: Folder  # where it is, open
    name: str
    sender: NodeId  # the neighbour that left it (its folder name)

    @property
    def path(self) -> Path:
        """For messages only: the carrier never opens anything by its path."""
        return self.folder.path / self.name

    @property
    def shown(self) -> str:
        return shown(self.name)


class DirectoryCarrier:
    """The rise-dtn tree on one medium, opened folder by folder, never through a link.

    `refusals` collects one line per hostile entry met (a link, a FIFO, a
    file where a folder belongs); `unwritten` one line per removal the
    medium refused (a read-only stick). Use it as a context manager: it
    holds the folders it opened until closed.
    """

    def __init__(self, root: Path) -> None:
        try:
            self._root = Folder.open_root(root)
        except OSError:
            raise UsageError(f"{root} is not a directory (is the stick mounted?)") from None
        self.root = root
        self.refusals: list[str] = []
        self.unwritten: list[str] = []
        self._folders: dict[tuple[str, ...], Folder] = {}

    def __enter__(self) -> DirectoryCarrier:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for folder in self._folders.values():
            folder.close()
        self._folders.clear()
        self._root.close()

    def refuse(self, line: str) -> None:
        if line not in self.refusals:
            self.refusals.append(line)

    def _open(self, parts: tuple[str, ...], *, create: bool = False) -> Folder | None:
        """The folder ROOT/parts, or None (absent, or refused with a line)."""
        if not parts:
            return self._root
        cached = self._folders.get(parts)
        if cached is not None:
            return cached
        parent = self._open(parts[:-1], create=create)
        if parent is None:
            return None
        try:
            folder = parent.child(parts[-1], create=create)
        except UnsafeEntry as exc:
            self.refuse(exc.message)
            return None
        if folder is not None:
            self._folders[parts] = folder
        return folder

    def _parts(self, recipient: NodeId, sender: NodeId) -> tuple[str, ...]:
        return (TOP, str(recipient), str(sender))

    def _incoming(self, recipient: NodeId, suffix: str) -> Iterator[Found]:
        base = self._open((TOP, str(recipient)))
        if base is None:
            return
        for name in base.names():
            try:
                sender = NodeId.parse(name)
            except UsageError:
                continue
            folder = self._open(self._parts(recipient, sender))
            if folder is None:
                continue
            for file_name in folder.names():
                if file_name.endswith(suffix) and not file_name.startswith(TMP_PREFIX):
                    yield Found(folder, file_name, sender)

    def bundles_for(self, recipient: NodeId) -> Iterator[Found]:
        return self._incoming(recipient, BUNDLE_SUFFIX)

    def acks_for(self, recipient: NodeId) -> Iterator[Found]:
        return self._incoming(recipient, ACK_SUFFIX)

    def open(self, found: Found) -> BinaryIO:
        """Open a file we found, for reading; UnsafeEntry if it is not a regular file."""
        return found.folder.open_file(found.name)

    def read_at_most(self, found: Found, max_bytes: int) -> bytes:
        """At most `max_bytes` + 1 bytes of a regular file (so that too large shows)."""
        return found.folder.read_at_most(found.name, max_bytes)

    def bundle_name(self, bundle_id: BundleId) -> str:
        return f"{bundle_id}{BUNDLE_SUFFIX}"

    def holds(self, recipient: NodeId, sender: NodeId, bundle_id: BundleId, size: int) -> bool:
        """True if a complete copy of the bundle is already on the medium."""
        folder = self._open(self._parts(recipient, sender))
        found = folder.lstat(self.bundle_name(bundle_id)) if folder is not None else None
        return found is not None and found.st_size == size and stat.S_ISREG(found.st_mode)

    def put_bundle(
        self,
        source: Path,
        *,
        recipient: NodeId,
        sender: NodeId,
        bundle_id: BundleId,
        progress: Moved | None = None,
    ) -> None:
        """Put a bundle on the medium atomically: a reflink where the filesystem offers
        copy-on-write, else a kernel copy; never a hard link, which would share
        the spool's bytes with whoever holds the medium."""
        what = f"writing to {self.root}"
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise storage_error(exc, "reading a bundle in the spool") from None
        with handle, self._writing(recipient, sender, self.bundle_name(bundle_id), what) as out:
            size = os.fstat(handle.fileno()).st_size
            clone_or_copy(handle, out, size, progress=progress or unwatched)

    def put_ack(self, data: bytes, *, recipient: NodeId, sender: NodeId, name: str) -> None:
        what = f"writing to {self.root}"
        with self._writing(recipient, sender, f"{name}{ACK_SUFFIX}", what) as out:
            out.write(data)

    @contextlib.contextmanager
    def _writing(
        self, recipient: NodeId, sender: NodeId, name: str, what: str
    ) -> Iterator[MediumFile]:
        """Write one file atomically into ROOT/rise-dtn/recipient/sender/.

        Raises UnsafeEntry if a folder on the way is a link or not a folder
        (its line is in `refusals` already), UnwritableMedium if the medium
        takes no writes, NoSpaceError if it is full.
        """
        try:
            folder = self._open(self._parts(recipient, sender), create=True)
            if folder is None:
                raise UnsafeEntry(f"nothing written under {shown(self.root / TOP)}")
            with folder.writing(name) as out:
                yield out
        except OSError as exc:
            raise _medium_error(exc, what) from None

    def remove(self, found: Found) -> None:
        self._remove(found.folder, found.name)

    def remove_bundle(self, *, recipient: NodeId, sender: NodeId, bundle_id: BundleId) -> None:
        folder = self._open(self._parts(recipient, sender))
        if folder is not None:
            self._remove(folder, self.bundle_name(bundle_id))

    def _remove(self, folder: Folder, name: str) -> None:
        """Remove a file from the medium; a medium that refuses gets one line, not an error,
        and so does a folder under the name (left alone)."""
        try:
            folder.remove(name)
        except OccupiedName as exc:
            self.refuse(exc.message)
        except OSError as exc:
            refused = not_writable(exc, f"removing {shown(folder.path / name)}")
            if refused is None:
                raise storage_error(exc, f"removing {shown(folder.path / name)}") from None
            self.unwritten.append(refused.message)

    def remove_stale(self, *, sender: NodeId) -> int:
        """Remove partial files that `sender` left (a stick pulled mid-write)."""
        top = self._open((TOP,))
        if top is None:
            return 0
        removed = 0
        for name in top.names():
            try:
                recipient = NodeId.parse(name)
            except UsageError:
                continue
            folder = self._open(self._parts(recipient, sender))
            if folder is None:
                continue
            try:
                removed += folder.remove_stale_tmp()
            except OSError as exc:
                refused = not_writable(exc, f"removing partial files in {shown(folder.path)}")
                if refused is None:
                    raise storage_error(exc, "removing partial files") from None
                self.unwritten.append(refused.message)
        return removed

    def sync(self) -> None:
        """Flush everything to the medium before the user pulls it.

        syncfs(2) on the medium alone: sync(2) would also wait for every
        other filesystem's dirty bytes (a download, another spool). Each file
        was fsynced as it was written, so a failure here is reported (a
        `not written:` line), not fatal.
        """
        try:
            sync_filesystem_of(self._root.fd, shown=str(self.root))
        except OSError as exc:
            self.unwritten.append(_medium_error(exc, "flushing the medium").message)


def _medium_error(exc: OSError, what: str) -> StorageError:
    refused = not_writable(exc, what)
    return refused if refused is not None else storage_error(exc, what)
