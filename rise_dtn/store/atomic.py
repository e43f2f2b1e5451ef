"""Crash-safe file writes: tmp, fsync, rename, fsync the directory.

A crash at any instant leaves the old state or the new one, never a torn
file (STYLE.md, "Atomic spool writes"). A tmp file is flock()ed while it is
written, so a later process can tell a stale one (lock free) from one still
being written (lock held) and remove only the former. ENOSPC and EDQUOT
become `NoSpaceError`, and the partial file is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from rise_dtn.core.errors import NoSpaceError, StorageError

TMP_PREFIX = ".rise-tmp-"
COPY_BLOCK_BYTES = 8 << 20  # kernel copies in 8 MiB steps: few syscalls, bounded latency
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class SourceChanged(StorageError):
    """The file being copied ended before the length its caller had checked: it was cut
    while it was read (on a medium, by whoever else holds it). Not this node's disk
    failing: the caller refuses that one file and goes on with the rest."""


def storage_error(exc: OSError, what: str) -> StorageError:
    """Turn an OSError into the rise-dtn error a user should see."""
    if exc.errno in _NO_SPACE:
        return NoSpaceError(
            f"no space left while {what}; nothing was lost, retry when space returns"
        )
    return StorageError(f"{what} failed: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    fsync_path(path, flags=os.O_DIRECTORY)


def fsync_path(path: Path, *, flags: int = 0) -> None:
    """fsync a file (or, with O_DIRECTORY, a directory) by name."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Make every write on `path`'s filesystem durable at once: syncfs(2).

    One journal commit for a batch of files instead of one fsync each (a
    relay forwards thousands of small packets a second). Where syncfs is
    missing, sync(2) does the same for every filesystem.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sync_filesystem_of(fd, shown=str(path))
    finally:
        os.close(fd)


def sync_filesystem_of(fd: int, *, shown: str) -> None:
    """sync_filesystem for a directory already open (a medium is opened by fd only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:
        os.sync()
    elif syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), shown)


# A large file asks the kernel to start writing every 8 MiB as it goes:
# with gigabytes of RAM the kernel would otherwise wait, and the final fsync
# would then write the whole file while nothing else happens.
WRITEBACK_BYTES = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2  # sync_file_range(2): start writeback, do not wait


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing `length` bytes at `offset` to disk, without waiting (Linux; else nothing).

    Only a head start for a later fsync, which alone makes the data durable.
    """
    function = _sync_file_range()
    if function is not None:
        function(fd, ctypes.c_int64(offset), ctypes.c_int64(length), _SYNC_FILE_RANGE_WRITE)


# How far behind a large sequential read or write its pages leave the page
# cache. Far enough that writeback started one step earlier has finished
# (fadvise drops only clean pages, so a page still being written stays).
DROP_LAG_BYTES = 32 << 20


class DropBehind:
    """Keeps one large sequential read or write from filling the page cache.

    A gigabyte bundle read or written once would otherwise take a gigabyte of
    fresh page-cache pages, evicting what the user works with; on a virtual
    machine whose free pages go back to the host, each fresh page also costs
    a fault in the host, which made a 1 GiB write cost 1.4 s instead of 0.4 s
    (bench/README.md, "Page cache"). Pages left DROP_LAG_BYTES behind are
    dropped, so the same few megabytes are reused all the way. A writer also
    starts writeback every WRITEBACK_BYTES (a head start for the final fsync,
    which alone makes the data durable). Only a hint to the kernel: it never
    changes what a file holds or when it is durable.
    """

    __slots__ = ("_dropped", "_fd", "_kicked", "_writing")

    def __init__(self, fd: int, *, writing: bool, start: int = 0) -> None:
        self._fd = fd
        self._writing = writing
        self._kicked = self._dropped = start
        if not writing:  # a larger read-ahead: the disk reads while we copy or decrypt
            advise(fd, start, 0, "POSIX_FADV_SEQUENTIAL")

    def moved(self, position: int) -> None:
        """The file has been read or written sequentially up to `position`."""
        if position - self._kicked < WRITEBACK_BYTES:
            return
        if self._writing:
            start_writeback(self._fd, self._kicked, position - self._kicked)
        self._kicked = position
        drop_to = position - DROP_LAG_BYTES
        if drop_to - self._dropped >= WRITEBACK_BYTES:
            advise(self._fd, self._dropped, drop_to - self._dropped, "POSIX_FADV_DONTNEED")
            self._dropped = drop_to


def advise(fd: int, offset: int, length: int, advice: str) -> None:
    """posix_fadvise(`advice`, by name), a hint only: where the platform or the file
    refuses it (macOS has none), nothing."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, length, getattr(os, advice))


@functools.cache
def _sync_file_range() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    return function


_CREATE_ATTEMPTS = 100  # each failure needs a concurrent cleaner; 100 in a row is a bug


def _still_named(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


# A name may have 255 bytes (NAME_MAX); the tmp name adds TMP_PREFIX and a
# random tail (19 bytes), so it keeps only this much of the final name.
TMP_NAME_PART_BYTES = 200


def _name_part(name: str) -> str:
    """The final name cut to TMP_NAME_PART_BYTES, on a character boundary."""
    encoded = os.fsencode(name)
    if len(encoded) <= TMP_NAME_PART_BYTES:
        return name
    return os.fsdecode(encoded[:TMP_NAME_PART_BYTES].decode("utf-8", "ignore").encode())


class AtomicFile:
    """A file that appears under its final name only once it is complete and durable."""

    def __init__(self, final: Path, *, tmp_dir: Path | None = None, mode: int = 0o644) -> None:
        self.final = final
        tmp_parent = tmp_dir if tmp_dir is not None else final.parent
        for _attempt in range(_CREATE_ATTEMPTS):
            self.tmp = tmp_parent / f"{TMP_PREFIX}{_name_part(final.name)}-{secrets.token_hex(4)}"
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            # Between open() and flock() a cleaner in another process may take
            # the new file for stale and unlink it: wait for the lock (a
            # cleaner holds it only for an instant), then make sure the name
            # still leads to our file, else start again under a new name.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _still_named(self.tmp, fd):
                break
            os.close(fd)
        else:
            raise OSError(errno.EAGAIN, "tmp files keep vanishing", str(tmp_parent))
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=0)
        self.held = -1
        self._done = False
        self._written = 0
        self._behind = DropBehind(fd, writing=True)

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self.file.write(view)
            if written is None:  # pragma: no cover - only for non-blocking files
                continue
            view = view[written:]
            self._written += written
        self._behind.moved(self._written)

    def fileno(self) -> int:
        return self.file.fileno()

    def commit(self, *, replace: bool = True, synced: bool = False, hold: bool = False) -> None:
        """fsync, rename into place, fsync the directory.

        `synced`: the caller already made the data durable (one
        `sync_filesystem` for a whole batch) and fsyncs the directories
        itself once the batch is renamed. The tmp file stays locked until
        it has its final name, so no stale-tmp cleaner can take it.
        `hold`: the flock outlives the commit in `self.held`, a descriptor
        the caller closes (a received bundle, until its index row exists).
        """
        if not self.file.closed and not synced:
            os.fsync(self.file.fileno())
        if hold:
            self.held = os.dup(self.file.fileno())  # shares the open file, and so the flock
        # Close only once renamed: closing drops the flock, and a stale-tmp
        # cleaner in another process would then take the file for abandoned.
        if replace:
            os.replace(self.tmp, self.final)
        else:
            # link() fails if the name exists: two writers never clobber each other.
            os.link(self.tmp, self.final)
            os.unlink(self.tmp)
        self._done = True
        self.file.close()
        if synced:
            return
        fsync_dir(self.final.parent)
        if self.tmp.parent != self.final.parent:
            fsync_dir(self.tmp.parent)

    def abort(self) -> None:
        if self.held >= 0:
            os.close(self.held)
            self.held = -1
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_file(
    final: Path,
    *,
    tmp_dir: Path | None = None,
    what: str = "writing",
    mode: int = 0o644,
    hold: bool = False,
) -> Iterator[AtomicFile]:
    """`with atomic_file(path) as out: out.write(...)`; committed on a clean exit
    (`hold`: see AtomicFile.commit)."""
    try:
        handle = AtomicFile(final, tmp_dir=tmp_dir, mode=mode)
    except OSError as exc:
        raise storage_error(exc, what) from None
    try:
        yield handle
        handle.commit(hold=hold)
    except OSError as exc:
        handle.abort()
        raise storage_error(exc, what) from None
    except BaseException:
        handle.abort()
        raise


def write_atomic(final: Path, data: bytes, *, what: str = "writing", mode: int = 0o644) -> None:
    with atomic_file(final, what=what, mode=mode) as out:
        out.write(data)


Moved = Callable[[int], object]  # told each copy step's byte count (a progress bar's)


def unwatched(_count: int) -> None:
    return None


# copy_file_range refuses some pairs of filesystems; sendfile then still
# copies in the kernel (file to file on Linux); plain reads are the last resort.
_KERNEL_COPY_REFUSED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP}


def _kernel_copy(
    copy: Callable[[int, int, int, int], int],
    src_fd: int,
    dst_fd: int,
    offset: int,
    length: int,
    *,
    progress: Moved,
) -> int:
    """Copy with `copy` until done or refused; return how many bytes it copied."""
    done = 0
    read_behind = DropBehind(src_fd, writing=False, start=offset)
    written_from = os.lseek(dst_fd, 0, os.SEEK_CUR)  # a regular file (Writable's contract)
    write_behind = DropBehind(dst_fd, writing=True, start=written_from)
    try:
        while done < length:
            copied = copy(src_fd, dst_fd, offset + done, min(length - done, COPY_BLOCK_BYTES))
            if copied == 0:
                raise SourceChanged("source file is shorter than expected")
            done += copied
            read_behind.moved(offset + done)
            write_behind.moved(written_from + done)
            progress(copied)
    except OSError as exc:
        if exc.errno not in _KERNEL_COPY_REFUSED:
            raise
    return done


def _copy_file_range(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    return os.copy_file_range(src_fd, dst_fd, count, offset_src=offset)


def _sendfile(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    return os.sendfile(dst_fd, src_fd, offset, count)


class Writable(Protocol):
    """Where copy_into writes: an AtomicFile, or a file being written on a medium."""

    def fileno(self) -> int: ...

    def write(self, data: bytes | memoryview) -> None: ...


def copy_into(source: BinaryIO, out: Writable, length: int, *, progress: Moved = unwatched) -> None:
    """Copy `length` bytes from `source`'s current offset, in the kernel where it can;
    `progress` hears each step's byte count (a block, never a byte)."""
    src_fd, dst_fd = source.fileno(), out.fileno()
    offset = source.tell()
    done = 0
    for copy in (_copy_file_range, _sendfile):
        done += _kernel_copy(copy, src_fd, dst_fd, offset + done, length - done, progress=progress)
        if done == length:
            return
    source.seek(offset + done)
    buffer = bytearray(min(length - done, COPY_BLOCK_BYTES))
    view = memoryview(buffer)
    read_behind = DropBehind(src_fd, writing=False, start=offset + done)
    while done < length:
        count = source.readinto(view[: min(length - done, len(buffer))])  # type: ignore[attr-defined]
        if not count:
            raise SourceChanged("source file is shorter than expected")
        out.write(view[:count])
        done += count
        read_behind.moved(offset + done)
        progress(count)


def _stale_candidates(directory: Path) -> Iterator[tuple[Path, int]]:
    """(path, fd holding its lock) for each tmp file no live process holds."""
    try:
        entries = [entry for entry in directory.iterdir() if entry.name.startswith(TMP_PREFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            yield entry, fd
        finally:
            os.close(fd)


def stale_tmp(directory: Path) -> list[Path]:
    """Tmp files left by a process that died (no live process holds their lock)."""
    return [path for path, _fd in _stale_candidates(directory)]


def remove_stale_tmp(directory: Path) -> int:
    """Remove tmp files (and batch staging directories) that no live process holds."""
    removed = 0
    for path, _fd in _stale_candidates(directory):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


class StagingDirectory:
    """A locked tmp directory for a batch of files renamed into place together.

    One flock on the directory protects every file in it from stale-tmp
    cleaners (which skip a locked entry and remove an unlocked one whole),
    so a batch of a thousand files costs one lock, not a thousand.
    """

    def __init__(self, parent: Path) -> None:
        self.path = parent / f"{TMP_PREFIX}batch-{secrets.token_hex(6)}"
        os.mkdir(self.path, 0o700)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._count = 0

    def write(self, data: bytes) -> Path:
        """A new file holding `data` (not yet durable: see sync_filesystem)."""
        self._count += 1
        path = self.path / str(self._count)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return path

    def close(self) -> None:
        """Remove what was not renamed away, and the directory; let go of the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)


# FICLONE (linux/fs.h, _IOW(0x94, 9, int)): make the target share the source's
# extents copy-on-write (btrfs, XFS, bcachefs). A later write to either file
# gets new blocks, so the two never share writable bytes, unlike a hard link.
FICLONE = 0x40049409


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Clone the whole of `src_fd` into the empty `dst_fd` if the filesystem can; else False.

    Refused between filesystems (EXDEV) and on filesystems without
    copy-on-write (EOPNOTSUPP, EINVAL, ENOTTY...): the caller then copies.
    A full disk is an error, not a refusal.
    """
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise
        return False
    return True


def clone_or_copy(
    source: BinaryIO, out: Writable, length: int, *, progress: Moved = unwatched
) -> None:
    """Copy `length` bytes of `source` from its start into the empty `out`: a reflink
    where the filesystem offers copy-on-write, else a copy in the kernel.

    Never a hard link: what is written must not share writable bytes with
    its source (a byte changed on a USB stick must not change the spool).
    """
    src_fd, dst_fd = source.fileno(), out.fileno()
    if os.fstat(src_fd).st_size == length and reflink(src_fd, dst_fd):
        if os.fstat(dst_fd).st_size == length:
            return
        os.ftruncate(dst_fd, 0)  # the source changed under us: copy what the caller checked
    source.seek(0)
    copy_into(source, out, length, progress=progress)


def copy_file(
    source: BinaryIO,
    length: int,
    target: Path,
    *,
    tmp_dir: Path,
    what: str,
    hold: bool = False,
    progress: Moved = unwatched,
) -> int:
    """Give the first `length` bytes of `source` the durable name `target`
    (tmp, reflink or copy, fsync, link into place, fsync the directory);
    returns AtomicFile.held (`hold`: a descriptor holding the new file's flock).

    Raises FileExistsError, and leaves the existing file, if `target` exists.
    """
    try:
        out = AtomicFile(target, tmp_dir=tmp_dir)
    except OSError as exc:
        raise storage_error(exc, what) from None
    try:
        clone_or_copy(source, out, length, progress=progress)
        out.commit(replace=False, hold=hold)
    except FileExistsError:
        out.abort()
        raise
    except OSError as exc:
        out.abort()
        raise storage_error(exc, what) from None
    except BaseException:
        out.abort()
        raise
    return out.held
