"""Crash-safe writes: rise_dtn.store.atomic.

A file appears under its final name only complete; a failure leaves neither
the final name nor a tmp file; a tmp file is stale only once no live process
holds its lock.
"""

from __future__ import annotations

import errno
import itertools
import os
import select
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rise_dtn.core.errors import NoSpaceError, StorageError
from rise_dtn.store import atomic
from rise_dtn.store.atomic import (
    TMP_PREFIX,
    AtomicFile,
    atomic_file,
    copy_into,
    remove_stale_tmp,
    stale_tmp,
    storage_error,
    write_atomic,
)


def tmp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{TMP_PREFIX}*"))


# -- AtomicFile, atomic_file, write_atomic ------------------------------------------------


def test_write_atomic_creates_the_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    write_atomic(target, b"name = 'alice'\n", mode=0o600)
    assert target.read_bytes() == b"name = 'alice'\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert tmp_files(tmp_path) == []


def test_write_atomic_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "card"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert tmp_files(tmp_path) == []


def test_nothing_is_visible_under_the_final_name_before_commit(tmp_path: Path) -> None:
    target = tmp_path / "bundle.rsb"
    with atomic_file(target) as out:
        out.write(b"half")
        assert not target.exists()
        assert out.tmp.parent == tmp_path
        assert out.tmp.name.startswith(TMP_PREFIX)
        assert out.tmp.read_bytes() == b"half"
        out.write(memoryview(b"-and-the-rest"))
    assert target.read_bytes() == b"half-and-the-rest"
    assert tmp_files(tmp_path) == []


def test_an_error_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "bundle.rsb"
    with pytest.raises(ValueError, match="sealing failed"), atomic_file(target) as out:
        out.write(b"partial")
        raise ValueError("sealing failed")
    assert not target.exists()
    assert tmp_files(tmp_path) == []


def test_an_error_keeps_the_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "peers.card"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as out:
        out.write(b"next")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"previous"
    assert tmp_files(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_becomes_no_space_error(tmp_path: Path, code: int) -> None:
    target = tmp_path / "bundle.rsb"
    with pytest.raises(NoSpaceError) as caught, atomic_file(target, what="queueing") as out:
        out.write(b"partial")
        raise OSError(code, os.strerror(code))
    assert caught.value.message.startswith("no space left while queueing")
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == 5
    assert not target.exists()
    assert tmp_files(tmp_path) == []


def test_other_os_errors_become_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught, atomic_file(tmp_path / "x", what="writing x"):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    assert not isinstance(caught.value, NoSpaceError)
    assert caught.value.message == "writing x failed: Input/output error"
    assert tmp_files(tmp_path) == []


def test_storage_error_mapping() -> None:
    assert isinstance(storage_error(OSError(errno.ENOSPC, "full"), "x"), NoSpaceError)
    assert isinstance(storage_error(OSError(errno.EDQUOT, "quota"), "x"), NoSpaceError)
    error = storage_error(OSError(errno.EACCES, "Permission denied"), "reading y")
    assert type(error) is StorageError
    assert error.message == "reading y failed: Permission denied"


def test_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="No such file"), atomic_file(tmp_path / "no" / "x"):
        pass


def test_tmp_dir_elsewhere(tmp_path: Path) -> None:
    staging, final_dir = tmp_path / "tmp", tmp_path / "tx"
    staging.mkdir()
    final_dir.mkdir()
    with atomic_file(final_dir / "b.rsb", tmp_dir=staging) as out:
        assert out.tmp.parent == staging
        out.write(b"bundle")
    assert (final_dir / "b.rsb").read_bytes() == b"bundle"
    assert list(staging.iterdir()) == []
    assert [path.name for path in final_dir.iterdir()] == ["b.rsb"]


def test_two_writers_of_one_name_get_distinct_tmp_files(tmp_path: Path) -> None:
    first, second = AtomicFile(tmp_path / "x"), AtomicFile(tmp_path / "x")
    try:
        assert first.tmp != second.tmp
    finally:
        first.abort()
        second.abort()
    assert tmp_files(tmp_path) == []


def test_commit_without_replace_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    target.write_bytes(b"someone else's file")
    staged = AtomicFile(target)
    staged.write(b"ours")
    with pytest.raises(FileExistsError):
        staged.commit(replace=False)
    assert target.read_bytes() == b"someone else's file"
    assert staged.tmp.read_bytes() == b"ours"  # still ours to retry under another name
    staged.final = tmp_path / "report.1.pdf"
    staged.commit(replace=False)
    assert staged.final.read_bytes() == b"ours"
    assert target.read_bytes() == b"someone else's file"
    assert tmp_files(tmp_path) == []


def test_commit_without_replace_into_a_free_name(tmp_path: Path) -> None:
    staged = AtomicFile(tmp_path / "new.txt", mode=0o600)
    staged.write(b"content")
    staged.commit(replace=False)
    assert (tmp_path / "new.txt").read_bytes() == b"content"
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o600
    assert tmp_files(tmp_path) == []


def test_abort_is_idempotent_and_harmless_after_commit(tmp_path: Path) -> None:
    staged = AtomicFile(tmp_path / "a")
    staged.write(b"a")
    staged.abort()
    staged.abort()
    assert tmp_files(tmp_path) == []
    assert not (tmp_path / "a").exists()
    committed = AtomicFile(tmp_path / "b")
    committed.write(b"b")
    committed.commit()
    committed.abort()
    assert (tmp_path / "b").read_bytes() == b"b"


# -- copy_into -----------------------------------------------------------------------------


class OsWith:
    """The os module as rise_dtn.store.atomic sees it, with some functions replaced."""

    def __init__(self, **replaced: Callable[..., object]) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)


def refuse(code: int) -> Callable[..., int]:
    def call(*_args: object, **_kwargs: object) -> int:
        raise OSError(code, os.strerror(code))

    return call


def source_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path


def test_copy_into_copies_from_the_current_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "COPY_BLOCK_BYTES", 1000)  # several kernel copies
    data = os.urandom(10_000)
    with open(source_file(tmp_path, data), "rb") as source, atomic_file(tmp_path / "out") as out:
        source.seek(123)
        out.write(b"head:")
        copy_into(source, out, 7_000)
    assert (tmp_path / "out").read_bytes() == b"head:" + data[123:7_123]


class Counted:
    """A kernel copy call that works `works` times, then refuses with `code`."""

    def __init__(self, real: Callable[..., int], *, works: int, code: int) -> None:
        self.real, self.works, self.code, self.calls = real, works, code, 0

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        self.calls += 1
        if self.calls > self.works:
            raise OSError(self.code, os.strerror(self.code))
        return self.real(*args, **kwargs)


REFUSALS = [errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP]


@pytest.mark.parametrize("code", REFUSALS)
def test_copy_into_goes_on_with_sendfile_where_copy_file_range_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    copy_file_range = Counted(os.copy_file_range, works=1, code=code)
    sendfile = Counted(os.sendfile, works=1000, code=code)
    monkeypatch.setattr(atomic, "COPY_BLOCK_BYTES", 4096)
    monkeypatch.setattr(atomic, "os", OsWith(copy_file_range=copy_file_range, sendfile=sendfile))
    data = os.urandom(20_000)
    with open(source_file(tmp_path, data), "rb") as source, atomic_file(tmp_path / "out") as out:
        source.seek(10)
        copy_into(source, out, len(data) - 10)
    assert (copy_file_range.calls, sendfile.calls) == (2, 4)  # 4096 bytes, refused, 4 more
    assert (tmp_path / "out").read_bytes() == data[10:]


@pytest.mark.parametrize("code", REFUSALS)
def test_copy_into_reads_and_writes_where_the_kernel_refuses_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    copy_file_range = Counted(os.copy_file_range, works=1, code=code)
    sendfile = Counted(os.sendfile, works=1, code=code)
    monkeypatch.setattr(atomic, "COPY_BLOCK_BYTES", 4096)
    monkeypatch.setattr(atomic, "os", OsWith(copy_file_range=copy_file_range, sendfile=sendfile))
    data = os.urandom(20_000)
    with open(source_file(tmp_path, data), "rb") as source, atomic_file(tmp_path / "out") as out:
        copy_into(source, out, len(data))
    assert (copy_file_range.calls, sendfile.calls) == (2, 2)
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("refused", [(), ("copy_file_range",), ("copy_file_range", "sendfile")])
def test_copy_into_a_short_source_fails_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: tuple[str, ...]
) -> None:
    monkeypatch.setattr(atomic, "os", OsWith(**dict.fromkeys(refused, refuse(errno.EXDEV))))
    with (
        pytest.raises(StorageError, match="shorter than expected"),
        open(source_file(tmp_path, b"abc"), "rb") as source,
        atomic_file(tmp_path / "out") as out,
    ):
        copy_into(source, out, 10)
    assert not (tmp_path / "out").exists()
    assert tmp_files(tmp_path) == []


@pytest.mark.parametrize("refused", [(), ("copy_file_range",)])
def test_copy_into_passes_a_full_disk_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: tuple[str, ...]
) -> None:
    kernel_calls = {"copy_file_range": refuse(errno.ENOSPC), "sendfile": refuse(errno.ENOSPC)}
    kernel_calls.update(dict.fromkeys(refused, refuse(errno.EXDEV)))
    monkeypatch.setattr(atomic, "os", OsWith(**kernel_calls))
    with (
        pytest.raises(NoSpaceError),
        open(source_file(tmp_path, b"abc"), "rb") as source,
        atomic_file(tmp_path / "out") as out,
    ):
        copy_into(source, out, 3)
    assert not (tmp_path / "out").exists()
    assert tmp_files(tmp_path) == []


# -- stale tmp files -----------------------------------------------------------------------

HOLD_A_TMP_FILE = """
import sys, time
from pathlib import Path
from rise_dtn.store.atomic import AtomicFile
staged = AtomicFile(Path(sys.argv[1]) / "bundle.rsb")
staged.write(b"half a bundle")
print(staged.tmp, flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Another process writing a tmp file in tmp_path, stopped in the middle."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_TMP_FILE, str(tmp_path)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the writer did not start within 60 s"
        line = process.stdout.readline().decode().strip()
        assert line, "the writer died before it held its tmp file"
        yield process, Path(line)
    finally:
        process.kill()
        process.wait(timeout=60)


def test_a_tmp_file_held_by_a_live_process_is_not_stale(
    tmp_path: Path, holder: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, tmp = holder
    assert tmp.exists()
    assert stale_tmp(tmp_path) == []
    assert remove_stale_tmp(tmp_path) == 0
    assert tmp.exists()
    process.kill()
    process.wait(timeout=60)  # reaped: the kernel has released its lock
    assert stale_tmp(tmp_path) == [tmp]
    assert tmp.exists()  # looking does not remove
    assert remove_stale_tmp(tmp_path) == 1
    assert not tmp.exists()
    assert stale_tmp(tmp_path) == []


def test_a_tmp_file_this_process_is_writing_is_not_stale(tmp_path: Path) -> None:
    staged = AtomicFile(tmp_path / "x")
    try:
        staged.write(b"x")
        assert stale_tmp(tmp_path) == []
        assert remove_stale_tmp(tmp_path) == 0
        assert staged.tmp.exists()
    finally:
        staged.abort()


def test_an_abandoned_tmp_file_is_stale(tmp_path: Path) -> None:
    staged = AtomicFile(tmp_path / "x")
    staged.write(b"x")
    staged.file.close()  # what a crash does: the lock goes with the descriptor
    assert stale_tmp(tmp_path) == [staged.tmp]
    assert remove_stale_tmp(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []


def test_only_tmp_files_are_ever_removed(tmp_path: Path) -> None:
    for name in ("bundle.rsb", "rise-tmp-lookalike", ".hidden", "x.rise-tmp-"):
        (tmp_path / name).write_bytes(b"keep")
    (tmp_path / f"{TMP_PREFIX}debris").write_bytes(b"")
    assert remove_stale_tmp(tmp_path) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".hidden",
        "bundle.rsb",
        "rise-tmp-lookalike",
        "x.rise-tmp-",
    ]


def test_missing_or_odd_directories_have_no_stale_files(tmp_path: Path) -> None:
    assert stale_tmp(tmp_path / "missing") == []
    assert remove_stale_tmp(tmp_path / "missing") == 0
    (tmp_path / "file").write_bytes(b"")
    assert stale_tmp(tmp_path / "file") == []


@pytest.mark.parametrize("replace", [True, False])
def test_a_cleaner_running_during_commit_cannot_take_the_tmp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replace: bool
) -> None:
    """Two tosses at once: one commits while the other sweeps stale tmp files.

    The tmp file must stay locked until it has its final name; a cleaner
    that runs between the fsync and the rename must leave it alone.
    """
    final = tmp_path / "delivered.txt"
    staged = atomic.AtomicFile(final)
    staged.write(b"payload")
    swept: list[int] = []
    name = "replace" if replace else "link"
    real = getattr(atomic.os, name)

    def sweep_then(*args: object) -> None:
        swept.append(atomic.remove_stale_tmp(tmp_path))  # the other process's cleaner
        real(*args)

    monkeypatch.setattr(atomic.os, name, sweep_then)
    staged.commit(replace=replace)
    assert swept == [0]
    assert final.read_bytes() == b"payload"


# -- dropping a large sequential read or write from the page cache --------------------------


class Advice:
    """posix_fadvise calls, as (fd, offset, length, advice); the real call is made too."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int, int]] = []
        self.watched = -1  # a file whose size is noted at each call: how far a copy got

    def __call__(self, fd: int, offset: int, length: int, advice: int) -> None:
        size = os.fstat(self.watched).st_size if self.watched >= 0 else -1
        self.calls.append((fd, offset, length, advice, size))
        os.posix_fadvise(fd, offset, length, advice)

    def dropped(self, fd: int) -> list[tuple[int, int]]:
        """The (start, end) ranges dropped on `fd`, in call order."""
        return [
            (offset, offset + length)
            for called_fd, offset, length, advice, _ in self.calls
            if called_fd == fd and advice == os.POSIX_FADV_DONTNEED
        ]

    def sizes(self, fd: int) -> list[int]:
        """The watched file's size at each drop on `fd`."""
        return [
            size
            for called_fd, _, _, advice, size in self.calls
            if called_fd == fd and advice == os.POSIX_FADV_DONTNEED
        ]


def small_steps(monkeypatch: pytest.MonkeyPatch) -> Advice:
    """Steps of 64 KiB and a lag of 256 KiB, so that a few MiB show the policy."""
    advice = Advice()
    monkeypatch.setattr(atomic, "WRITEBACK_BYTES", 64 << 10)
    monkeypatch.setattr(atomic, "DROP_LAG_BYTES", 256 << 10)
    monkeypatch.setattr(atomic, "os", OsWith(posix_fadvise=advice))
    return advice


def assert_drops_trail(ranges: list[tuple[int, int]], positions: list[int], size: int) -> None:
    """Contiguous from the first byte, each at least the lag behind, up to near the end."""
    assert ranges, "nothing was dropped"
    assert ranges[0][0] == 0
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start == end  # nothing dropped twice, nothing skipped
    for (_, end), position in zip(ranges, positions, strict=True):
        assert end <= position - (256 << 10)
    assert ranges[-1][1] >= size - (256 << 10) - 2 * (64 << 10)


def test_a_large_write_leaves_the_page_cache_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    advice = small_steps(monkeypatch)
    data = os.urandom(4 << 20)
    positions = []
    with atomic_file(tmp_path / "out") as out:
        for start in range(0, len(data), 10_000):  # steps that never meet the 64 KiB ones
            before = len(advice.calls)
            out.write(data[start : start + 10_000])
            if len(advice.calls) > before:
                positions.append(start + len(data[start : start + 10_000]))
        fd = out.fileno()
    assert_drops_trail(advice.dropped(fd), positions, len(data))
    assert (tmp_path / "out").read_bytes() == data


def test_a_kernel_copy_leaves_both_files_out_of_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    advice = small_steps(monkeypatch)
    monkeypatch.setattr(atomic, "COPY_BLOCK_BYTES", 64 << 10)
    data = os.urandom(4 << 20)
    with open(source_file(tmp_path, data), "rb") as source, atomic_file(tmp_path / "out") as out:
        advice.watched = out.fileno()
        copy_into(source, out, len(data))
        for fd in (source.fileno(), out.fileno()):
            assert_drops_trail(advice.dropped(fd), advice.sizes(fd), len(data))
    assert (tmp_path / "out").read_bytes() == data
