"""A folder on a medium that someone else controls, reached only through file descriptors.

Whoever held the stick chose what is on it: a folder may be a symbolic link
into our spool, a `.rsb` file a link to a secret or to /dev/zero, a FIFO
that blocks its reader for ever, a device, a sparse file of a terabyte. So
every name is looked up relative to an open folder (`dir_fd`) and never
through a symbolic link (O_NOFOLLOW); a file is opened only after lstat
says it is a regular file, without blocking (O_NONBLOCK), and fstat must
agree; files are created under a fresh tmp name (O_EXCL) and renamed within
their folder. This module never follows a link out of the medium, never
blocks on a file, never reads more than it was asked for, and never parses
what it reads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rise_dtn.core.errors import BundleError, StorageError
from rise_dtn.store.atomic import TMP_PREFIX

# Shown names are cut here: a name may be 255 bytes of anything.
SHOWN_NAME_CHARS = 80
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors that mean "this medium will not take writes": a write-protected
# stick, a read-only mount, someone else's folder.
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_CREATE_ATTEMPTS = 100  # as in store/atomic.py: each failure needs a concurrent cleaner


class UnsafeEntry(BundleError):
    """An entry on the medium that is not what its place says: a symbolic link,
    a FIFO, a device, a file where a folder belongs. It is neither followed nor read."""


class OccupiedName(UnsafeEntry):
    """A name this node writes or removes is held by a folder (or anything else that is
    not a regular file): left alone, with a line, and the rest goes on."""


# What rename(2) and unlink(2) say of a name held by a folder: EISDIR (Linux), EPERM
# (unlink elsewhere), ENOTEMPTY or EEXIST (rename onto a folder), EBUSY (a mount point).
_FOLDER_IN_THE_WAY = {errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY, errno.EPERM}


class UnwritableMedium(StorageError):
    """The medium refused a write (read-only, write-protected, not ours)."""


def shown(path: Path | str) -> str:
    """A path as one printable line: odd bytes escaped, long names cut."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    parts = [
        part if len(part) <= SHOWN_NAME_CHARS else part[: SHOWN_NAME_CHARS - 3] + "..."
        for part in text.split("/")
    ]
    return "/".join(parts)


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def not_writable(exc: OSError, what: str) -> UnwritableMedium | None:
    """The error to report if `exc` says the medium takes no writes, else None."""
    if exc.errno in _NOT_WRITABLE:
        return UnwritableMedium(f"{what}: {exc.strerror}")
    return None


class MediumFile:
    """A file being written on the medium (see Folder.writing); what copy_into needs."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]


class Folder:
    """An open folder on the medium; every name in it is resolved without following links."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path  # for messages only: never opened by name

    @classmethod
    def open_root(cls, path: Path) -> Folder:
        """The directory the user named (a link there is the user's own choice)."""
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)

    def close(self) -> None:
        os.close(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def child(self, name: str, *, create: bool = False) -> Folder | None:
        """The sub-folder `name` (made if `create`), or None if there is none.

        Raises UnsafeEntry if `name` is a link or anything else but a folder.
        """
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=self.fd)
        try:
            fd = os.open(name, _OPEN_FOLDER, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in {errno.ELOOP, errno.ENOTDIR}:
                raise
            found = self.lstat(name)
            if found is None:
                return None
            raise UnsafeEntry(
                f"{shown(self.path / name)}: {kind_of(found.st_mode)} where a folder belongs, "
                "not followed"
            ) from None
        return Folder(fd, self.path / name)

    def names(self) -> list[str]:
        """The names in this folder, sorted (a listing never follows anything)."""
        return sorted(os.listdir(self.fd))

    def open_file(self, name: str) -> BinaryIO:
        """Open a regular file for reading; raise UnsafeEntry for anything else."""
        before = self.lstat(name)
        if before is None:
            raise FileNotFoundError(errno.ENOENT, "gone", str(self.path / name))
        if not stat.S_ISREG(before.st_mode):
            raise UnsafeEntry(f"{shown(self.path / name)}: {kind_of(before.st_mode)}, not read")
        fd = os.open(name, _OPEN_FILE, dir_fd=self.fd)
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            os.close(fd)
            raise UnsafeEntry(f"{shown(self.path / name)}: replaced while being opened, not read")
        return open(fd, "rb", buffering=0)

    def read_at_most(self, name: str, max_bytes: int) -> bytes:
        """Up to `max_bytes` + 1 bytes of a regular file: enough to tell it is too large."""
        with self.open_file(name) as handle:
            chunks = []
            left = max_bytes + 1
            while left > 0:
                chunk = handle.read(left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks)

    def remove(self, name: str) -> None:
        """Unlink `name` (a link is removed itself, never its target); flush the folder.

        Raises OccupiedName if a folder holds the name (never removed: not ours)."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._check_occupied(name, exc, "left alone")
            raise
        os.fsync(self.fd)

    def _check_occupied(self, name: str, exc: OSError, outcome: str) -> None:
        """Raise OccupiedName if `exc` came of a folder (or the like) holding `name`."""
        found = self.lstat(name) if exc.errno in _FOLDER_IN_THE_WAY else None
        if (
            found is not None
            and not stat.S_ISREG(found.st_mode)
            and not stat.S_ISLNK(found.st_mode)
        ):
            raise OccupiedName(
                f"{shown(self.path / name)}: {kind_of(found.st_mode)} where a file belongs, "
                f"{outcome}"
            ) from None

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[MediumFile]:
        """Write `name` atomically: a locked tmp file, fsync, rename, fsync the folder.

        A pulled stick leaves only a `.rise-tmp-*` file, which no reader takes
        for a bundle. The rename replaces whatever had the name, a link
        included, and never writes through it.
        """
        tmp, fd = self._create_tmp(name)
        try:
            yield MediumFile(fd)
            os.fsync(fd)
            try:
                os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            except OSError as exc:
                self._check_occupied(name, exc, "nothing written")
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise
        finally:
            os.close(fd)  # only now: the lock kept stale-tmp cleaners off it until renamed
        os.fsync(self.fd)

    def _create_tmp(self, name: str) -> tuple[str, int]:
        for _attempt in range(_CREATE_ATTEMPTS):
            tmp = f"{TMP_PREFIX}{name}-{secrets.token_hex(4)}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o644, dir_fd=self.fd)
            # A cleaner in another process may take the new file for stale
            # before it is locked: lock it, then make sure the name is still ours.
            fcntl.flock(fd, fcntl.LOCK_EX)
            named = self.lstat(tmp)
            if named is not None and named.st_ino == os.fstat(fd).st_ino:
                return tmp, fd
            os.close(fd)
        raise OSError(errno.EAGAIN, "tmp files keep vanishing", str(self.path))

    def remove_stale_tmp(self) -> int:
        """Remove the tmp files here that no live process holds locked."""
        removed = 0
        for name in self.names():
            if not name.startswith(TMP_PREFIX):
                continue
            try:
                handle = self.open_file(name)
            except (OSError, UnsafeEntry):
                continue  # gone, or not a file we could have left
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer holds it
                self.remove(name)
                removed += 1
        return removed
