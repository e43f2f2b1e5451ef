"""The one bundle transaction: the only code that changes where a bundle stands in the spool.

A bundle is *queued* for a neighbour (tx/<neighbour>/), *admitted* from a
neighbour (rx/<neighbour>/), *released* from tx/ (acked, moved, expired,
cancelled) or *quarantined* with a reason. Every carrier (a stick, a live
link, a byte stream) and every service (send, toss, relay) goes through
here, so the rules are the same whatever carried the bundle.

The order of every change is the one in DESIGN.md: the file first (tmp,
fsync, rename, fsync the directory), then the index row, and only then may
the caller confirm, ack or release anything. A crash between two steps
leaves a file the index does not list (or a row whose file is gone), which
`rise-check --repair` mends from the files; never a torn bundle, never a
bundle confirmed before it is durable.

The carriers keep their own I/O: each hands in a `write(target)` that
durably creates the file under its final name (a kernel copy from a stick,
a rename of a partial copy from a link, a write from a pipe) or raises
FileExistsError when it is already there. This module decides whether to
take the bundle, and records what happened. It never parses a bundle body,
never reads the clock (`now` is passed in) and never talks to a carrier.

Releases take no lock: each is idempotent (the file goes, then a row says
how), and a carrier that copies a bundle out holds the file open, so a
release meanwhile costs at most a duplicate copy, which the receiver drops
by bundle id (docs/protocol.md, duplicates).
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.errors import BundleError, StorageError, UsageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.core.units import human_bytes
from rise_dtn.store import plain_index
from rise_dtn.store.atomic import fsync_dir, storage_error
from rise_dtn.store.rows import EntryRow, SentRow
from rise_dtn.store.spool import Spool, parse_clear_file

if TYPE_CHECKING:
    from rise_dtn.store.index import Index
    from rise_dtn.store.plain_index import PlainIndex


DIGEST_PERSON = b"rise-spool"
DIGEST_BLOCK_BYTES = 1 << 20


class Release(enum.StrEnum):
    """Why a bundle left tx/ for good (the index's `release.how`)."""

    ACKED = "acked"  # the neighbour confirmed it: a hop ack, or STORED on a link
    MOVED = "moved"  # written to a medium or stream with --move: no ack awaited
    EXPIRED = "expired"  # its lifetime ended before anyone took it
    CANCELLED = "cancelled"  # a cancel token for it reached this relay


class Verdict(enum.Enum):
    """What the admission rules say of a bundle a neighbour hands us."""

    TAKE = "take"
    RECEIVED = "already received"  # in rx/, not tossed yet: this copy adds nothing
    DELIVERED = "already delivered"  # a replay or a copy the sender re-sent: ack again
    EXPIRED = "expired"
    NOT_FOR_US = "not for this node"
    NO_ROOM = "no room"  # over a quota or the free-space reserve: the sender keeps it


@dataclasses.dataclass(frozen=True, slots=True)
class Admission:
    """The verdict on one bundle, and the one-line reason a user is shown."""

    verdict: Verdict
    reason: str

    @property
    def taken(self) -> bool:
        return self.verdict is Verdict.TAKE


# Makes the received file under its final name and returns a descriptor holding
# an exclusive flock on it (AtomicFile.commit(hold=True), commit_partial): a
# toss in another thread or process skips a locked rx/ file, so none can
# handle and remove it before its index row exists (which would leave a row
# naming a file that is gone).
Write = Callable[[Path], int]


@dataclasses.dataclass(frozen=True, slots=True)
class Room:
    """How much a node takes in: the free space it keeps, and a quota per neighbour.

    A hostile neighbour (or whoever holds a stick) could otherwise fill the
    spool's filesystem. A bundle over either limit is not taken and not
    confirmed: the sender keeps it and offers it again at the next exchange,
    when toss has made room. The check is a soft one, made before the write:
    two carriers admitting at once may both pass it by one bundle each.
    """

    min_free_bytes: int = 0
    receive_max: Callable[[NodeId], int | None] = lambda _neighbour: None


class BundleTransaction:
    """Queue, admit, release and quarantine bundles in one node's spool."""

    def __init__(
        self,
        spool: Spool,
        index: Callable[[], Index | PlainIndex],
        me: NodeId,
        *,
        room: Room | None = None,
        plain_index: Path | None = None,
        full_index: Callable[[], Index] | None = None,
    ) -> None:
        self._spool = spool
        # Opened on first use: a stick with nothing for us opens no database. It
        # may be a PlainIndex (store/plain_index.py) with the Index's methods this
        # module calls; `full_index` is the Index itself, for the sends' records.
        self._index: Callable[[], Index | PlainIndex] = index
        self._full_index: Callable[[], Index] = full_index or index  # type: ignore[assignment]
        # The default SQLite index's file, which `queue` may write without
        # SQLAlchemy (store/plain_index.py); None: always through the Index.
        self._plain_index = plain_index
        self._me = me
        self._room = room or Room()

    # Admission: bundles a neighbour hands us.

    def judge(self, clear: ClearPart, neighbour: NodeId, *, now: int) -> Admission:
        """The admission rules, from the cleartext header alone (no change made).

        A carrier may ask before it takes a byte (a link before it requests
        the body, a stick before it copies); `admit` asks again at commit.
        """
        if clear.header.recipient != self._me:
            return Admission(
                Verdict.NOT_FOR_US, f"bundle is for another node ({clear.header.recipient})"
            )
        held = self.judge_id(clear.bundle_id, neighbour)
        if not held.taken:
            return held
        if clear.expired(now):
            return Admission(Verdict.EXPIRED, "expired")
        return self.room_for(clear.total_bytes, neighbour) or held

    def judge_id(self, bundle_id: BundleId, neighbour: NodeId) -> Admission:
        """The rules that need only a bundle's id (received already, delivered already).

        A live link asks this of an offer, before any byte of the bundle
        (and so its header) has arrived; `judge` asks it too.
        """
        if self.received_path(neighbour, bundle_id).exists():
            return Admission(Verdict.RECEIVED, "already received, waiting for rise-toss")
        seen = self._index().seen_state(str(bundle_id))
        if seen is not None and seen.state == "delivered":
            return Admission(Verdict.DELIVERED, "already delivered (a duplicate)")
        return Admission(Verdict.TAKE, "taken")

    def room_for(self, size: int, neighbour: NodeId) -> Admission | None:
        """NO_ROOM with its reason when `size` more bytes would break a limit; else None.

        `judge` asks it; a live link asks it of an offer too, before any byte moves.
        """
        quota = self._room.receive_max(neighbour)
        if quota is not None:
            held = self._index().held_bytes("rx", str(neighbour))
            if held + size > quota:
                return Admission(
                    Verdict.NO_ROOM,
                    f"no room: over the receive quota ({human_bytes(held)} waiting for "
                    f"rise-toss, {human_bytes(size)} more, receive_max_bytes "
                    f"{human_bytes(quota)})",
                )
        try:
            stat = os.statvfs(self._spool.root)
        except OSError as exc:
            raise storage_error(exc, "checking free space") from None
        free = stat.f_bavail * stat.f_frsize
        if free - size < self._room.min_free_bytes:
            return Admission(
                Verdict.NO_ROOM,
                f"no room: {human_bytes(free)} free, {human_bytes(size)} needed, "
                f"min_free keeps {human_bytes(self._room.min_free_bytes)}",
            )
        return None

    def admit(
        self, clear: ClearPart, size: int, neighbour: NodeId, *, now: int, write: Write
    ) -> Admission:
        """Take a bundle into rx/<neighbour>/ if the rules allow; record what happened.

        `write(target)` must make `target` a complete, durable file and return
        a descriptor holding its flock until the index row is written (or
        raise FileExistsError). A duplicate of a delivered bundle owes the
        neighbour its ack again (it missed ours); the caller disposes of its
        copy for every verdict but TAKE and NO_ROOM (the sender keeps that
        one, unconfirmed), and quarantines on NOT_FOR_US.
        """
        admission = self.judge(clear, neighbour, now=now)
        if admission.verdict is Verdict.DELIVERED:
            self._index().owe_ack(str(clear.bundle_id), str(neighbour), now=now)
        if not admission.taken:
            return admission
        target = self.received_path(neighbour, clear.bundle_id)
        _make_dir(target.parent)
        try:
            held = write(target)
        except FileExistsError:
            return Admission(Verdict.RECEIVED, "already received, waiting for rise-toss")
        try:
            self._index().put_entry(
                EntryRow(
                    bundle_id=str(clear.bundle_id),
                    direction="rx",
                    neighbour=str(neighbour),
                    size=size,
                    expiry=clear.header.expiry,
                    priority=clear.header.priority,
                    queued_at=now,
                )
            )
        finally:
            os.close(held)
        return admission

    def received_path(self, neighbour: NodeId, bundle_id: BundleId) -> Path:
        return self._spool.bundle_path(self._spool.rx_dir(neighbour), bundle_id)

    # Queueing: bundles we send.

    def queued_path(self, neighbour: NodeId, bundle_id: BundleId) -> Path:
        return self._spool.bundle_path(self._spool.tx_dir(neighbour), bundle_id)

    def queue(
        self,
        neighbour: NodeId,
        bundle_id: BundleId,
        *,
        expiry: int,
        priority: int,
        now: int,
        write: Callable[[Path], str | None],
        sent: Callable[[], SentRow | None] | None = None,
    ) -> int:
        """Put a new bundle in tx/<neighbour>/ and list it; returns its size in bytes.

        `sent`: once written, the sender's record of a direct send (for `rise
        status`), journaled in the listing's own transaction.

        `write` may return the bundle's digest (`SpoolDigest`, hex), hashed
        as it was written, which rise-check then verifies.

        An error means "not queued": the file is removed again even when the
        rename was done (a failed fsync of tx/ after it, a full index), so a
        user's retry never sends it twice. The id is new, so no one else has
        a file under this name.
        """
        target = self.queued_path(neighbour, bundle_id)
        _make_dir(target.parent)
        try:
            digest = write(target)
            size = target.stat().st_size
            entry = EntryRow(
                bundle_id=str(bundle_id),
                direction="tx",
                neighbour=str(neighbour),
                size=size,
                expiry=expiry,
                priority=priority,
                queued_at=now,
            )
            record = sent() if sent is not None else None
            if self._plain_index is None or not plain_index.put_queued(
                self._plain_index, [(entry, digest)], sent=record
            ):
                self._put_entry(entry, digest=digest, sent=record)
        except BaseException:
            try:
                self._spool.remove(target)
            except StorageError:
                pass
            raise
        return size

    def _put_entry(self, entry: EntryRow, *, digest: str | None, sent: SentRow | None) -> None:
        """The listing through the Index (SQLAlchemy), which creates missing tables first."""
        index = self._full_index()
        if sent is None:
            index.put_entry(entry, digest=digest)
            return
        from rise_dtn.store.relay_index import RelayIndex

        RelayIndex(index)  # creates the table of sends on a node that has none yet
        index.put_entry(entry, digest=digest, also=RelayIndex.sent_statements(sent))

    def list_queued(self, entry: EntryRow, *, digest: str | None = None) -> None:
        """Index a bundle its writer already made durable in tx/ (onion packets:
        one batch of writers shares one sync, onion_send.packet_writers)."""
        self._index().put_entry(entry, digest=digest)

    def list_routed(
        self, listed: Sequence[tuple[EntryRow, str | None]], *, sent: SentRow | None, route: str
    ) -> None:
        """Index the packets of a send over relays, which their writers made durable in
        tx/, and its record for `rise status` (`sent`, None for a receipt), `route`
        (relay ids, comma-separated) being the first copy's: the next route avoids it.

        On the default SQLite index, one write transaction without SQLAlchemy
        (store/plain_index.py); else one per packet, then the record."""
        last_route = (sent.recipient, route) if sent is not None else None
        if self._plain_index is not None and plain_index.put_queued(
            self._plain_index, listed, sent=sent, last_route=last_route
        ):
            return
        for entry, digest in listed:
            self.list_queued(entry, digest=digest)
        if sent is not None:
            from rise_dtn.store.relay_index import RelayIndex

            RelayIndex(self._full_index()).put_sent(sent, recipient_route=route)

    # Hop acks owed: journaled by admit and drop_received, given by carriers.

    def acks_due(self) -> dict[NodeId, list[BundleId]]:
        """The hop acks owed, by neighbour, for a carrier to give.

        A row that does not parse is forgotten here: no carrier could give
        it, and it must not stop every exchange from giving the others.
        """
        index = self._index()
        due: dict[NodeId, list[BundleId]] = {}
        for neighbour, bundle_id in index.acks_owed():
            try:
                parsed = NodeId.parse(neighbour), BundleId.parse(bundle_id)
            except UsageError:
                index.acks_sent(neighbour, [bundle_id])
                continue
            due.setdefault(parsed[0], []).append(parsed[1])
        return due

    def acks_given(self, neighbour: NodeId, bundle_ids: Sequence[BundleId]) -> None:
        """These acks are on a carrier now (a repeat is harmless): owed no longer."""
        self._index().acks_sent(str(neighbour), [str(bundle_id) for bundle_id in bundle_ids])

    # Received bundles that are done with: delivered, forwarded, dropped.

    def drop_received(
        self, path: Path, neighbour: NodeId, bundle_id: BundleId, *, now: int
    ) -> None:
        """A received bundle needs no delivery (expired, a duplicate, refused by policy).

        The neighbour still gets its ack, under the id inside the bundle: a
        file in rx/ under another name must neither ack a bundle it is not
        nor leave an unparsable id among the acks owed.
        """
        self._index().drop_received(_stem(path), str(bundle_id), str(neighbour), now=now)
        self._spool.remove(path)

    def handled(self, path: Path) -> None:
        """The received copy's fate is journaled (delivered, forwarded): the file goes.

        The caller's index transaction already dropped its rx row and owed
        the ack; a crash before this leaves a file whose bundle id the index
        knows, which the next toss drops as a duplicate.
        """
        self._spool.remove(path)

    # Leaving: release from tx/, quarantine.

    def release(self, neighbour: NodeId, bundle_id: BundleId, how: Release, *, now: int) -> bool:
        """The bundle left tx/<neighbour>/ for good; False if it was not there (already gone)."""
        path = self.queued_path(neighbour, bundle_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise storage_error(exc, "releasing a bundle") from None
        # The release is journaled before the file goes: a crash between the
        # two leaves a file the journal names, which finish_releases removes
        # (the other order left an index row naming a file that was gone).
        self._index().release(str(bundle_id), str(neighbour), size=size, how=how, now=now)
        self._spool.remove(path)
        return True

    def finish_releases(self) -> list[Path]:
        """Remove the tx/ files whose release a crash interrupted; the paths removed.

        A released bundle id is never queued again (ids are fresh), so a tx/
        file whose id has a release row is one whose removal did not happen.
        """
        files = [
            path
            for neighbour in self._spool.tx_neighbours()
            for path in self._spool.files(self._spool.tx_dir(neighbour))
        ]
        if not files:
            return []
        released = self._index().released_among([_stem(path) for path in files])
        finished = [path for path in files if _stem(path) in released]
        for path in finished:
            self._spool.remove(path)
        return finished

    def quarantine(
        self,
        path: Path,
        reason: str,
        *,
        listed_as: str | None = None,
        keep_bytes: int | None = None,
        name: str | None = None,
    ) -> Path:
        """Set a rejected bundle aside with its one-line reason; forget its index row.

        `listed_as` is "rx" or "tx" when the file was a listed spool entry;
        `keep_bytes` bounds what stays of it, `name` renames it (Spool.quarantine).
        """
        target = self._spool.quarantine(path, reason, keep_bytes=keep_bytes, name=name)
        if listed_as is not None:
            self._index().drop_entry(_stem(path), listed_as)
        return target


class SpoolDigest:
    """The digest a sender records of each bundle it seals (rise-check verifies it).

    Two hashes, of the clear part (magic, header, E; an onion packet's
    routing slots and MAC too) and of the payload, hashed together: an
    onion packet's clear part is written last, over the room reserved for
    it, so a single hash in file order would cost a second read of the
    packet; in two parts each writer hashes its bytes as it writes them.

    SHA-256 (with the CPU's SHA instructions, twice as fast as BLAKE2b
    here, and on the writer thread that paces a large send), shown as "s"
    and 31 hex digits to fit the index's 32 characters; a digest of 32 hex
    digits is the BLAKE2b-128 that earlier versions recorded, and is still
    checked as such.
    """

    def __init__(self, *, legacy: bool = False) -> None:
        self.legacy = legacy
        self.head = _hasher(legacy=legacy)
        self.body = _hasher(legacy=legacy)

    def hexdigest(self) -> str:
        combined = _hasher(legacy=self.legacy)
        combined.update(self.head.digest())
        combined.update(self.body.digest())
        if self.legacy:
            return combined.hexdigest()
        return SHA256_MARK + combined.hexdigest()[: DIGEST_CHARS - 1]


SHA256_MARK = "s"  # not a hex digit: no BLAKE2b digest starts with it
DIGEST_CHARS = 32


def digest_of(path: Path, *, like: str = SHA256_MARK) -> str:
    """A spool file's SpoolDigest ("" if its clear part is unreadable), by the scheme of
    the digest `like` (the one recorded), read in large blocks."""
    hasher = SpoolDigest(legacy=not like.startswith(SHA256_MARK))
    with open(path, "rb") as handle:
        try:
            clear, _size = parse_clear_file(handle)
        except BundleError:
            return ""
        handle.seek(0)
        hasher.head.update(handle.read(clear.payload_offset))
        while block := handle.read(DIGEST_BLOCK_BYTES):
            hasher.body.update(block)
    return hasher.hexdigest()


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def _hasher(*, legacy: bool) -> _Hasher:
    if legacy:
        return hashlib.blake2b(digest_size=16, person=DIGEST_PERSON)
    return hashlib.sha256()


def _stem(path: Path) -> str:
    """The bundle id a spool file is named after (or what stands there)."""
    return path.name.split(".")[0]


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, "creating the spool directory") from None


def commit_partial(partial: Path, target: Path) -> int:
    """Give a complete copy received into the spool (a live link's partial) its final name;
    returns a descriptor holding its flock (see `Write`).

    fsync, then a hard link under the final name (never clobbering a copy
    already there: FileExistsError), then the partial name goes; both
    directories are fsynced.
    """
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise storage_error(exc, "receiving a bundle") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # before the name exists: no toss sees it unlocked
        os.fsync(fd)
        os.link(partial, target)
        os.unlink(partial)
        fsync_dir(target.parent)
        fsync_dir(partial.parent)
    except FileExistsError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise storage_error(exc, "receiving a bundle") from None
    except BaseException:
        os.close(fd)
        raise
    return fd
