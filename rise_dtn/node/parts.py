"""Reassembly of split files: each part written in place, the whole file delivered once.

A part bundle (docs/protocol.md section 25) is opened like any bundle by
deliver.py, which hands it here under its per-bundle lock. Its payload is
written straight into one preallocated file at the part's offset, in
constant memory, so a file is never held twice on disk. Everything is a
file in SPOOL/parts/<sender>-<file id>/ (the files are the truth):

    state      JSON: name, count, sizes, latest expiry (written once, atomically)
    data       the file being reassembled, total_bytes long
    have/<i>   part i is in `data` and fsynced (made only after that fsync)
    target     the journal: the free name chosen in incoming/ (before the link)
    delivered  the file has its name; `data` and have/ are gone

Every step is write, fsync, then mark; a kill -9 at any instant leaves a
state the next toss finishes: a part without its marker is written again, a
complete set without `delivered` is linked again under the journalled name.
This module must never deliver a file with a missing part, nor twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rise_dtn.core.bundle import ContentKind
from rise_dtn.core.errors import BundleError, BusyError, Deferred, StorageError
from rise_dtn.core.parts import PartHeader
from rise_dtn.core.units import human_bytes, human_seconds
from rise_dtn.node.home import Home
from rise_dtn.node.toss.delivery_steps import Opened, journal_without_file, numbered, read_exact
from rise_dtn.node.toss.toss_events import Delivered, PartStored, Source, TossEvent
from rise_dtn.store import locks
from rise_dtn.store.atomic import (
    WRITEBACK_BYTES,
    AtomicFile,
    copy_into,
    fsync_dir,
    remove_stale_tmp,
    start_writeback,
    storage_error,
    write_atomic,
)
from rise_dtn.store.pipeline import BackgroundWriter

PARTS_DIR = "parts"
# How long a toss waits for another process working on the same file's
# state (a few file operations, or the final link) before deferring.
LOCK_WAIT_SECONDS = 30.0


def folder_for(home: Home, opened: Opened, part: PartHeader) -> Path:
    return home.spool.root / PARTS_DIR / f"{opened.peer.node_id}-{part.file_id.hex()}"


def deliver_part(
    home: Home, opened: Opened, source: Source, first_payload: bytes, *, now: int
) -> TossEvent:
    """Store one part; deliver the file if it was the last one missing."""
    part = opened.inner.meta.part
    assert part is not None  # Meta.decode gives every PART a header
    name = opened.inner.meta.name
    assert name is not None
    folder = folder_for(home, opened, part)
    marker = folder / "have" / str(part.index)
    expiry = opened.opener.clear.header.expiry
    with _locked(home, folder):
        _start_or_check(home, folder, name, part, expiry=expiry, sender=opened.peer.name)
        stored_before = marker.exists() or (folder / "delivered").exists()
    if not stored_before:
        _write_part(folder / "data", part, opened, source, first_payload)
        with _locked(home, folder):
            if not (folder / "state").exists():
                raise Deferred(f"the reassembly of {name} expired while part {part.index} arrived")
            _mark(marker, name)
    else:
        source.finish()
    with _locked(home, folder):
        target = _complete_if_ready(home, folder, opened, part)
    _finish_part(home, opened, now=now)
    if target is not None:
        return Delivered(
            opened.bundle_id, ContentKind.FILE, opened.peer.name, target, part.total_bytes
        )
    have = _count(folder)
    what = f"part {part.index + 1} of {part.count} of {name} from {opened.peer.name}"
    if stored_before:
        return PartStored(str(opened.bundle_id), f"{what}: already had it")
    return PartStored(str(opened.bundle_id), f"{what} ({part.count - have} to come)")


@contextlib.contextmanager
def _locked(home: Home, folder: Path) -> Iterator[None]:
    try:
        with locks.held(
            home.spool.lock_path(f"parts-{folder.name}"),
            wait_seconds=LOCK_WAIT_SECONDS,
            what=f"the reassembly {folder.name}",
        ):
            yield
    except BusyError as exc:
        raise Deferred(exc.message) from None


def _start_or_check(
    home: Home, folder: Path, name: str, part: PartHeader, *, expiry: int, sender: str
) -> None:
    """Begin a reassembly (within the caps), or check the part against the one begun."""
    state_path = folder / "state"
    try:
        state = _read_state(state_path)
    except StorageError as exc:
        # Not ours to guess at (sweep names it every toss): the part waits in rx/,
        # and the other bundles go on.
        raise Deferred(exc.message) from None
    if state is not None:
        earlier = PartHeader(
            part.file_id, 0, state["count"], state["total_bytes"], state["part_bytes"]
        )
        reason = part.agrees_with(earlier)
        if reason is None and state["name"] != name:
            reason = f"its file name {name!r} disagrees with earlier parts ({state['name']!r})"
        if reason is not None:
            raise BundleError(f"part {part.index} of {state['name']}: {reason}")
        if expiry > state["expiry"]:
            write_atomic(state_path, _state_bytes(state | {"expiry": expiry}), mode=0o600)
        return
    _check_room(home, part, name=name)
    try:
        (folder / "have").mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / "data", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _reserve(fd, part.total_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise Deferred(
                f"no room to reassemble {name} ({human_bytes(part.total_bytes)})"
            ) from None
        raise storage_error(exc, "starting a reassembly") from None
    state = {
        "name": name,
        "sender": sender,
        "count": part.count,
        "total_bytes": part.total_bytes,
        "part_bytes": part.part_bytes,
        "expiry": expiry,
    }
    write_atomic(state_path, _state_bytes(state), what="starting a reassembly", mode=0o600)
    fsync_dir(folder.parent)


def _reserve(fd: int, size: int) -> None:
    """Claim the file's blocks now, so a later part never meets a full disk half way."""
    os.ftruncate(fd, size)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise


def _check_room(home: Home, part: PartHeader, *, name: str) -> None:
    """The cap on all reassemblies at once ([toss] parts_max_bytes), and min_free.

    A file larger than the cap on its own is refused (BundleError); one that
    fits only once others finish, or once there is room, is Deferred."""
    cap = home.config.parts_max_bytes
    if part.total_bytes > cap:
        # Never, whatever finishes meanwhile: refused now (quarantined, its first
        # MiB), not left in rx/ for its lifetime against the sender's quota.
        raise BundleError(
            f"{name} ({human_bytes(part.total_bytes)}) is larger than [toss] "
            f"parts_max_bytes ({human_bytes(cap)}): refused"
        )
    busy = sum(total for total in _in_progress_bytes(home))
    if busy + part.total_bytes > cap:
        raise Deferred(
            f"reassembling {name} ({human_bytes(part.total_bytes)}) would pass [toss] "
            f"parts_max_bytes ({human_bytes(cap)}; {human_bytes(busy)} in progress)"
        )
    info = os.statvfs(home.spool.root)
    free = info.f_bavail * info.f_frsize
    if part.total_bytes + home.config.min_free_bytes > free:
        raise Deferred(
            f"no room to reassemble {name} ({human_bytes(part.total_bytes)}; "
            f"{human_bytes(free)} free, [spool] min_free {human_bytes(home.config.min_free_bytes)})"
        )


def _in_progress_bytes(home: Home) -> list[int]:
    root = home.spool.root / PARTS_DIR
    if not root.is_dir():
        return []
    sizes = []
    for folder in root.iterdir():
        try:
            state = _read_state(folder / "state")
        except StorageError:
            # Named by every toss's sweep and left alone; it must not stop other files
            # from being reassembled. What its data file holds still counts.
            with contextlib.suppress(OSError):
                sizes.append((folder / "data").stat().st_size)
            continue
        if state is not None and not (folder / "delivered").exists():
            sizes.append(state["total_bytes"])
    return sizes


def _write_part(
    data: Path, part: PartHeader, opened: Opened, source: Source, first_payload: bytes
) -> None:
    """Open the rest of the part and write it at its offset; fsync before returning.

    Each chunk is authenticated before its bytes are written, so `data` only
    ever holds the sender's bytes; a part that fails half way leaves no
    marker and is written again in full by a later copy.
    """
    opener = opened.opener
    try:
        fd = os.open(data, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        # Removed by hand, or lost with a damaged disk: this file cannot be put together
        # (rise-check names it, --repair sets it aside); its parts wait, the rest goes on.
        raise Deferred(
            f"the reassembly of {opened.inner.meta.name} has lost its data file "
            "(`rise-check --repair` sets it aside)"
        ) from None
    except OSError as exc:
        raise storage_error(exc, "reassembling") from None
    position = [part.offset, part.offset]  # where the next write goes; written back up to

    def put(block: bytes) -> None:  # in the writer's thread: the disk writes while we open
        view = memoryview(block)
        while view:
            count = os.pwrite(fd, view, position[0])
            view, position[0] = view[count:], position[0] + count
        if position[0] - position[1] >= WRITEBACK_BYTES:  # so the final fsync has little to do
            start_writeback(fd, position[1], position[0] - position[1])
            position[1] = position[0]

    try:
        with BackgroundWriter(put) as write:
            written = _checked(part, 0, first_payload)
            write(first_payload)
            for index, size in opener.chunk_sizes():
                plain = opener.open(index, read_exact(source, size))
                written = _checked(part, written, plain)
                write(plain)
        if written != part.length:
            raise BundleError(
                f"part {part.index} carries {written} bytes; its header says {part.length}"
            )
        source.finish()
        os.fsync(fd)
    except OSError as exc:
        raise storage_error(exc, "reassembling") from None
    finally:
        os.close(fd)


def _checked(part: PartHeader, written: int, block: bytes) -> int:
    """Never a byte past the part's own region of the file."""
    if written + len(block) > part.length:
        raise BundleError(f"part {part.index} carries more than the {part.length} bytes it claims")
    return written + len(block)


def _mark(marker: Path, name: str) -> None:
    """The part is durable in `data`: say so, durably."""
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
        fsync_dir(marker.parent)
    except FileNotFoundError:
        # have/ removed by hand or lost: as for a lost data file (_write_part).
        raise Deferred(
            f"the reassembly of {name} has lost its part markers "
            "(`rise-check --repair` sets it aside)"
        ) from None
    except OSError as exc:
        raise storage_error(exc, "reassembling") from None


def _count(folder: Path) -> int:
    try:
        return len(os.listdir(folder / "have"))
    except FileNotFoundError:
        return 0


def _complete_if_ready(home: Home, folder: Path, opened: Opened, part: PartHeader) -> Path | None:
    """Give the file its name once every part is in; the path if it was done now."""
    if (folder / "delivered").exists() or _count(folder) < part.count:
        return None
    journal = folder / "target"
    incoming = home.incoming_dir(opened.peer.name)
    incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_tmp(incoming)  # a copy across filesystems that a crash cut short
    target = Path(journal.read_text()) if journal.exists() else None
    if target is None or not os.path.lexists(target):
        target = _link_free_name(folder, journal, incoming / _read_state_name(folder))
    write_atomic(folder / "delivered", str(target).encode(), mode=0o600)
    # The file has its own name now: the parts' copy and markers can go.
    with contextlib.suppress(FileNotFoundError):
        (folder / "data").unlink()
    shutil.rmtree(folder / "have", ignore_errors=True)
    return target


def _read_state_name(folder: Path) -> str:
    state = _read_state(folder / "state")
    assert state is not None  # a complete set of markers implies a state
    return str(state["name"])


def _link_free_name(folder: Path, journal: Path, wanted: Path) -> Path:
    """Journal a free name, then link `data` to it without ever replacing a file."""
    for attempt in range(1000):
        target = numbered(wanted, attempt) if attempt else wanted
        if os.path.lexists(target):
            continue
        write_atomic(journal, str(target).encode(), mode=0o600)
        try:
            os.link(folder / "data", target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise storage_error(exc, "delivering a reassembled file") from None
            if not _copy_across(folder / "data", target):
                continue
        fsync_dir(target.parent)
        return target
    raise StorageError(f"cannot find a free name for {wanted}")


def _copy_across(data: Path, target: Path) -> bool:
    """incoming/ on another filesystem: copy (in the kernel) then link into place."""
    try:
        staged = AtomicFile(target, mode=0o600)
    except OSError as exc:
        raise storage_error(exc, "delivering a reassembled file") from None
    try:
        with open(data, "rb") as source:
            copy_into(source, staged, os.fstat(source.fileno()).st_size)
        staged.commit(replace=False)
    except FileExistsError:
        staged.abort()
        return False
    except OSError as exc:
        staged.abort()
        raise storage_error(exc, "delivering a reassembled file") from None
    return True


def _finish_part(home: Home, opened: Opened, *, now: int) -> None:
    """Journal the part bundle as delivered: its ack (and, over relays, receipt) is owed."""
    journal_without_file(home, opened, now=now, receipt=True)


def sweep(home: Home, *, now: int) -> list[tuple[str, str, str]]:
    """Remove reassemblies whose every part has expired: (folder, reason, action) for each
    incomplete one given up, and for each whose state cannot be read (left alone).

    A part expires with its bundle (section 25.5): once the latest expiry
    of the parts seen has passed, no missing part can still arrive.
    """
    root = home.spool.root / PARTS_DIR
    if not root.is_dir():
        return []
    lines = []
    for folder in sorted(root.iterdir()):
        with locks.claimed(home.spool.lock_path(f"parts-{folder.name}")) as ours:
            if not ours:
                continue
            try:
                state = _read_state(folder / "state")
            except StorageError as exc:  # not ours to guess at: say so, every toss
                lines.append((folder.name, exc.message, "left alone"))
                continue
            if state is not None and state["expiry"] > now:
                continue
            if state is not None and not (folder / "delivered").exists():
                have = _count(folder)
                lines.append(
                    (
                        folder.name,
                        f"{state['name']} from {state['sender']}: {have} of "
                        f"{state['count']} parts came before they expired",
                        "given up",
                    )
                )
            shutil.rmtree(folder, ignore_errors=True)
    return lines


STATE_KEYS = {"name": str, "sender": str, "count": int, "total_bytes": int, "part_bytes": int}


def _read_state(path: Path) -> dict[str, Any] | None:
    """The reassembly's state (written whole by write_atomic), or None before it exists."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"{path}: unreadable reassembly state ({exc})") from None
    expected = STATE_KEYS | {"expiry": int}
    if not isinstance(state, dict) or any(
        not isinstance(state.get(key), kind) for key, kind in expected.items()
    ):
        raise StorageError(f"{path}: unreadable reassembly state")
    return state


def _state_bytes(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True).encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Reassembly:
    """One folder of spool/parts/ as rise-check and rise-stat see it."""

    folder: str
    summary: str  # for people: what it is and how far it got
    problem: str | None = None  # what makes it unable to finish correctly, if anything
    name: str | None = None  # the rest: None where the state cannot say
    sender: str | None = None
    parts_in: int = 0
    parts: int = 0
    total_bytes: int = 0
    expiry: int = 0
    delivered: bool = False

    @property
    def receiving(self) -> bool:
        """Still waiting for parts: what rise-stat lists."""
        return self.name is not None and not self.delivered and self.problem is None


def survey(home: Home, *, now: int, lock: bool = True) -> list[Reassembly]:
    """Every reassembly, in progress or left over, and what is wrong with any of them.

    With `lock`, a folder a toss is working on (its lock held) is skipped:
    what it shows is changing (rise-check); without, a glance that may be a
    moment old (rise-stat). Leftovers the toss clears by itself (a folder
    from a crash before its state was written, a delivered file's folder
    kept until its parts expire) are summaries, not problems.
    """
    root = home.spool.root / PARTS_DIR
    try:
        folders = sorted(entry for entry in root.iterdir() if entry.is_dir())
    except OSError:
        return []
    found = []
    for folder in folders:
        if not lock:
            found.append(_surveyed(folder, now=now))
            continue
        with locks.claimed(home.spool.lock_path(f"parts-{folder.name}")) as ours:
            if ours:
                found.append(_surveyed(folder, now=now))
    return found


def _surveyed(folder: Path, *, now: int) -> Reassembly:
    try:
        state = _read_state(folder / "state")
    except StorageError as exc:
        return Reassembly(folder.name, "a reassembly", exc.message)
    if state is None:
        summary = "begun by a toss that stopped before its first part (the next toss removes it)"
        return Reassembly(folder.name, summary)
    what = f"{state['name']} from {state['sender']}"
    known = {
        "name": state["name"],
        "sender": state["sender"],
        "parts": state["count"],
        "total_bytes": state["total_bytes"],
        "expiry": state["expiry"],
    }
    if (folder / "delivered").exists():
        summary = f"{what}: delivered (kept until its parts expire)"
        return Reassembly(folder.name, summary, delivered=True, **known)
    have, problem = _markers(folder, state)
    left = state["expiry"] - now
    when = "expired" if left <= 0 else f"expires in {human_seconds(left)}"
    summary = (
        f"{what}: {have} of {state['count']} parts ({human_bytes(state['total_bytes'])}), {when}"
    )
    if problem is None:
        try:
            size = os.stat(folder / "data").st_size
        except OSError as exc:
            problem = f"its data file is unreadable ({exc.strerror})"
        else:
            if size != state["total_bytes"]:
                problem = (
                    f"its data file holds {size} bytes, not the {state['total_bytes']} "
                    "it was made with: the parts stored in it may be damaged"
                )
    return Reassembly(folder.name, summary, problem, parts_in=have, **known)


def _markers(folder: Path, state: dict[str, Any]) -> tuple[int, str | None]:
    """How many parts are marked stored, and whether any marker makes no sense."""
    try:
        names = os.listdir(folder / "have")
    except FileNotFoundError:
        return 0, None
    except OSError as exc:
        return 0, f"its part markers are unreadable ({exc.strerror})"
    odd = sorted(name for name in names if not (name.isdigit() and int(name) < state["count"]))
    if odd:
        return len(names), f"marker(s) for parts it cannot have: {', '.join(odd[:5])}"
    return len(names), None


def set_aside(home: Home, folder_name: str, reason: str) -> Path:
    """Move a reassembly that cannot finish correctly into quarantine/, with its reason."""
    source = home.spool.root / PARTS_DIR / folder_name
    target = home.spool.quarantine_dir / f"parts-{folder_name}"
    for number in range(1, 1000):  # the same file set aside before: keep both
        if not os.path.lexists(target):
            break
        target = home.spool.quarantine_dir / f"parts-{folder_name}.{number}"
    with locks.claimed(home.spool.lock_path(f"parts-{folder_name}")) as ours:
        if not ours:
            raise Deferred(f"the reassembly {folder_name} is in use")
        try:
            write_atomic(target.with_name(target.name + ".reason"), (reason + "\n").encode())
            os.replace(source, target)
            fsync_dir(target.parent)
            fsync_dir(source.parent)
        except OSError as exc:
            raise storage_error(exc, "setting a reassembly aside") from None
    return target
