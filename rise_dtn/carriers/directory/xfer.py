"""Exchange bundles with a directory (a USB stick): acks in, bundles in, acks out, bundles out.

Order matters for "nothing lost": a received bundle is durable in rx/ before
its copy on the medium is removed, and it is acked only once a toss has
verified and processed it (store/index.py, pending_ack), so a copy damaged on
the way never releases the sender's good one. A sent bundle stays in tx/
until an ack for it comes back (unless --move), so a lost stick loses nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rise_dtn.carriers.base import Stream
from rise_dtn.carriers.directory import audience, medium
from rise_dtn.carriers.directory.audience import Audience
from rise_dtn.carriers.directory.folder import OccupiedName, UnsafeEntry, UnwritableMedium
from rise_dtn.carriers.directory.layout import DirectoryCarrier, Found
from rise_dtn.core import sealing
from rise_dtn.core.ack import MAX_ACK_BYTES, MAX_IDS, Ack
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.errors import BundleError, NoSpaceError, StorageError
from rise_dtn.core.identity import PUBLIC_KEY_BYTES, BundleId, NodeId
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss.toss_events import STREAM_LEFT, Streamed
from rise_dtn.store import locks
from rise_dtn.store.atomic import DropBehind, Moved, SourceChanged, copy_file
from rise_dtn.store.spool import QUARANTINE_KEEP_BYTES, parse_clear_file, read_clear
from rise_dtn.store.transaction import Release, Verdict


@dataclasses.dataclass(slots=True)
class XferReport:
    received: int = 0
    received_bytes: int = 0
    duplicates: int = 0
    sent: int = 0
    sent_bytes: int = 0
    released: int = 0  # confirmed by acks (or moved)
    expired: int = 0
    rejected: list[str] = dataclasses.field(default_factory=list)  # one-line reasons
    skipped: list[str] = dataclasses.field(default_factory=list)  # notes, not errors
    unwritten: list[str] = dataclasses.field(default_factory=list)  # the medium refused
    no_room: list[str] = dataclasses.field(default_factory=list)  # left on it: spool full
    # Bundles larger than the medium can ever hold (medium.bundle_limit): one line each.
    never_fits: list[str] = dataclasses.field(default_factory=list)
    medium_full: bool = False  # a write met a full medium (ENOSPC)
    left_queued: int = 0  # bundles not written for want of room now; the others went
    serves_nobody: str | None = None  # set when bundles wait and the medium serves no one
    rejected_by_toss: int = 0  # with --toss: bundles the toss quarantined


Say = Callable[[str], None]


def exchange(
    home: Home,
    directory: Path,
    *,
    move: bool,
    now: int,
    say: Say = lambda _line: None,
    toss: Callable[[], object] | None = None,
    stream: Stream | None = None,
    serving: Audience = audience.UNNAMED,
    max_bundle_bytes: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> XferReport:
    """One full exchange with `directory`.

    `toss`, if given, runs after the bundles are taken and before the acks
    are written, so that the acks for this exchange's bundles leave at once.
    `stream`, if given (with --toss), delivers a direct bundle for this node
    as it is read off the medium, with no copy in rx/ (_deliver_from_medium).
    `progress` hears each bundle copied, in lanes "from NAME" and "to NAME".
    Bundles and acks are written only for the neighbours the medium serves
    (audience.py); bundles and acks for us are taken from any peer.
    """
    home.spool.check_exists()
    audience.check_names(home, serving)
    medium.check_max_bundle(max_bundle_bytes)
    report = XferReport()
    me = home.identity.node_id
    peers = {peer.node_id: peer for peer in home.peers.all()}
    served = audience.served(home, directory, serving).peers
    with DirectoryCarrier(directory) as carrier:
        carrier.remove_stale(sender=me)
        _take_acks(home, carrier, peers, report, now=now, say=say)
        _take_bundles(
            home, carrier, peers, report, now=now, say=say, stream=stream, progress=progress
        )
        if toss is not None:
            toss()
        _give_acks(home, carrier, served, report, now=now, say=say)
        if home.config.relay.enabled:
            from rise_dtn.node.toss import control  # late: only relays pay for the routing modules

            for name in control.refresh_maps(home, now=now):
                say(f"queued a fresh map for {name}")
        limit = medium.bundle_limit(directory, max_bundle_bytes)
        _give_all_bundles(
            home,
            carrier,
            peers,
            served,
            report,
            move=move,
            now=now,
            say=say,
            progress=progress,
            limit=limit,
        )
        carrier.sync()
        report.rejected.extend(carrier.refusals)
        report.unwritten.extend(carrier.unwritten)
    if not served and any(_waiting(home, peer) for peer in peers):
        report.serves_nobody = audience.nobody_line(directory, len(peers))
    return report


def _waiting(home: Home, neighbour: NodeId) -> bool:
    return next(home.spool.files(home.spool.tx_dir(neighbour)), None) is not None


def _give_all_bundles(
    home: Home,
    carrier: DirectoryCarrier,
    peers: dict[NodeId, Peer],
    served: dict[NodeId, Peer],
    report: XferReport,
    *,
    move: bool,
    now: int,
    say: Say,
    progress: Progress,
    limit: tuple[int, str] | None = None,
) -> None:
    """Bundles out, for each neighbour the medium serves (the others' stay in the spool)."""
    for neighbour in home.spool.tx_neighbours():
        peer = served.get(neighbour)
        if peer is None:
            if neighbour not in peers:
                report.skipped.append(f"tx/{neighbour}: not a known peer, left in the spool")
            continue
        try:
            with locks.held(home.spool.lock_path(f"tx-{neighbour}"), what=f"tx/{peer.name}"):
                _give_bundles(
                    home,
                    carrier,
                    peer,
                    report,
                    move=move,
                    now=now,
                    say=say,
                    progress=progress,
                    limit=limit,
                )
        except NoSpaceError:
            # Full before a bundle was begun (the neighbour's folder could not be
            # made): its bundles stay queued; another neighbour's may have a folder.
            report.medium_full = True
            say(f"{carrier.root} is full: bundles for {peer.name} stay in the spool")
        except UnsafeEntry:
            continue  # its folder on the medium is a link or a file: refused, with a line
        except UnwritableMedium as exc:
            report.unwritten.append(f"{exc.message}; bundles for {peer.name} stay queued")


def _take_acks(
    home: Home,
    carrier: DirectoryCarrier,
    peers: dict[NodeId, Peer],
    report: XferReport,
    *,
    now: int,
    say: Say,
) -> None:
    me = home.identity.node_id
    for found in carrier.acks_for(me):
        peer = peers.get(found.sender)
        if peer is None:
            report.skipped.append(f"{found.shown}: ack from unknown node {found.sender}, ignored")
            continue
        try:
            # Bounded: a link to /dev/zero or a sparse terabyte must not fill memory.
            data = carrier.read_at_most(found, MAX_ACK_BYTES)
            ack = Ack.decode(data, sender=peer.card.public, recipient=me)
        except UnsafeEntry as exc:
            report.rejected.append(exc.message)  # left alone: it is not ours to follow
            continue
        except (BundleError, OSError) as exc:
            reason = exc.message if isinstance(exc, BundleError) else str(exc.strerror or exc)
            report.rejected.append(f"{found.shown}: ack rejected: {reason}")
            carrier.remove(found)
            continue
        with locks.held(
            home.spool.lock_path(f"tx-{peer.node_id}"), wait_seconds=30, what=f"tx/{peer.name}"
        ):
            for bundle_id in ack.bundle_ids:
                if home.bundles.release(peer.node_id, bundle_id, Release.ACKED, now=now):
                    report.released += 1
                # The neighbour took it; a copy still on the medium is now garbage.
                carrier.remove_bundle(recipient=peer.node_id, sender=me, bundle_id=bundle_id)
        carrier.remove(found)
        say(f"ack from {peer.name}: {len(ack.bundle_ids)} bundle(s) confirmed")


def _take_bundles(
    home: Home,
    carrier: DirectoryCarrier,
    peers: dict[NodeId, Peer],
    report: XferReport,
    *,
    now: int,
    say: Say,
    stream: Stream | None,
    progress: Progress,
) -> None:
    listed = list(carrier.bundles_for(home.identity.node_id))
    _plan_taking(listed, peers, progress)
    for found in listed:
        peer = peers.get(found.sender)
        if peer is None:
            report.skipped.append(
                f"{found.shown}: from unknown node {found.sender}, left on the medium"
            )
            continue
        try:
            source = carrier.open(found)
        except UnsafeEntry as exc:
            report.rejected.append(exc.message)  # not read, not copied, left alone
            continue
        except OSError as exc:
            report.rejected.append(f"{found.shown}: unreadable: {exc.strerror}")
            continue
        size = os.fstat(source.fileno()).st_size
        with source, progress.item(f"from {peer.name}", found.name, size) as moved:
            _take_one(
                home,
                carrier,
                found,
                peer,
                report,
                source=source,
                now=now,
                say=say,
                stream=stream,
                moved=moved,
            )


def _plan_taking(listed: list[Found], peers: dict[NodeId, Peer], progress: Progress) -> None:
    """What the bars will show as ahead: the bundles on the medium from known peers."""
    planned: dict[str, list[int]] = {}
    for found in listed:
        peer = peers.get(found.sender)
        stat = found.folder.lstat(found.name) if peer is not None else None
        if peer is not None and stat is not None:
            planned.setdefault(f"from {peer.name}", []).append(stat.st_size)
    for lane, sizes in planned.items():
        progress.planned(lane, bundles=len(sizes), total_bytes=sum(sizes))


def _take_one(
    home: Home,
    carrier: DirectoryCarrier,
    found: Found,
    peer: Peer,
    report: XferReport,
    *,
    source: BinaryIO,
    now: int,
    say: Say,
    stream: Stream | None,
    moved: Moved,
) -> None:
    """Move one bundle from the medium (`source`, open) into rx/ (durably, then off the medium),
    or with `stream`, deliver it from there."""
    try:
        clear, size = parse_clear_file(source)
    except BundleError as exc:
        report.rejected.append(f"{found.shown}: {exc.message}")
        _quarantine_from_medium(home, carrier, found, source, exc.message)
        return
    except OSError as exc:
        report.rejected.append(f"{found.shown}: unreadable: {exc.strerror}")
        return
    if stream is not None:
        streamed = _deliver_from_medium(home, clear, peer, source, stream, now=now, moved=moved)
        if streamed.done:
            _taken(home, carrier, found, peer, report, clear=clear, size=size, say=say)
            return
        if streamed.bad is not None:
            # Proved bad as it was read: no whole copy into rx/ only for the toss
            # to quarantine it. Its first MiB is quarantined and it leaves the
            # medium, so that the sender (which keeps its copy, unacked) writes
            # its good one again.
            reason = streamed.bad
            if _shrunk(source, size):
                reason = f"changed while it was read ({size} bytes when checked, fewer now)"
            report.rejected.append(f"{found.shown}: {reason}")
            _quarantine_from_medium(home, carrier, found, source, reason)
            return

    def write(target: Path) -> int:
        # A copy (or a reflink), never a hard link: the medium's holder must
        # not be able to change our copy after toss has checked it.
        return copy_file(
            source,
            size,
            target,
            tmp_dir=home.spool.tmp,
            what="receiving a bundle",
            hold=True,
            progress=moved,
        )

    try:
        admission = home.bundles.admit(clear, size, peer.node_id, now=now, write=write)
    except SourceChanged:
        # Cut short after its size was checked: no copy of it is kept in rx/.
        # Quarantined like any bundle found truncated, and off the medium, so
        # that the sender writes its good copy again.
        reason = f"changed while it was read ({size} bytes when checked, fewer now)"
        report.rejected.append(f"{found.shown}: {reason}")
        _quarantine_from_medium(home, carrier, found, source, reason)
        return
    if admission.verdict is Verdict.NOT_FOR_US:
        report.rejected.append(f"{found.shown}: {admission.reason}")
        _quarantine_from_medium(home, carrier, found, source, admission.reason)
        return
    if admission.verdict is Verdict.NO_ROOM:
        # Left on the medium, unacked: taken at a later exchange, once
        # rise-toss has made room (or the user has).
        report.no_room.append(f"{found.shown}: {admission.reason}")
        return
    if admission.verdict is Verdict.RECEIVED:
        # Not tossed yet. If our copy turns out damaged, toss quarantines it
        # and this copy, left on the medium, is taken next time.
        report.skipped.append(f"{found.shown}: {admission.reason}")
        return
    if admission.verdict is Verdict.DELIVERED:
        report.duplicates += 1  # the sender missed our ack: admit owes it again
        carrier.remove(found)
        return
    if admission.verdict is Verdict.EXPIRED:
        report.expired += 1
        report.skipped.append(f"{found.shown}: expired, removed from the medium")
        carrier.remove(found)
        return
    _taken(home, carrier, found, peer, report, clear=clear, size=size, say=say)


def _deliver_from_medium(
    home: Home,
    clear: ClearPart,
    peer: Peer,
    source: BinaryIO,
    stream: Stream,
    *,
    now: int,
    moved: Moved,
) -> Streamed:
    """Toss a bundle for this node as it is read off the medium (deliver it, or forward
    an onion packet): done, proved bad (`bad`: the reason), or left to the usual way.

    One read of the medium and no copy in rx/: each chunk (an onion
    payload's tag) is authenticated as it is read, and nothing is recorded
    before the last one, so a medium's holder who changes the file meanwhile
    only makes it fail. A bundle the admission rules do not take goes the
    usual way, into rx/, as does one that cannot be tossed now (it must wait)
    or that the medium failed to give (an I/O error: read again there).
    So does a bundle of one sealed chunk: it may be a map or a receipt,
    whose taking-in toss follows up (routes held for a map), and a copy of
    at most a MiB costs next to nothing.
    Our own disk failing (StorageError: full, read-only) ends the exchange,
    as it does when the usual way copies.
    """
    if clear.header.body_length <= ONE_CHUNK_BODY_BYTES:
        return STREAM_LEFT
    if not home.bundles.judge(clear, peer.node_id, now=now).taken:
        return STREAM_LEFT
    try:
        source.seek(clear.size)
        return stream(clear, peer.node_id, _MediumSource(source, moved))
    except OSError:
        return STREAM_LEFT  # the usual way reads it again, and says what is wrong
    finally:
        with contextlib.suppress(OSError):
            source.seek(0)


class _MediumSource:
    """A bundle's sealed chunks, read from the medium in full (a short read is not its end)."""

    def __init__(self, handle: BinaryIO, moved: Moved) -> None:
        self._handle = handle
        self._moved = moved  # a progress bar's, per chunk
        self._position = handle.tell()
        self._behind = DropBehind(handle.fileno(), writing=False, start=self._position)

    def read(self, size: int, /) -> bytes:
        data = self._read(size)
        self._position += len(data)
        self._behind.moved(self._position)
        return data

    def _read(self, size: int) -> bytes:
        data = self._handle.read(size)
        self._moved(len(data))
        if len(data) == size or not data:
            return data
        parts = [data]
        left = size - len(data)
        while left > 0:
            more = self._handle.read(left)
            if not more:
                break
            parts.append(more)
            left -= len(more)
            self._moved(len(more))
        return b"".join(parts)

    def finish(self) -> None:
        return None


def _shrunk(source: BinaryIO, size: int) -> bool:
    """Is the file on the medium shorter now than when its size was checked?"""
    try:
        return os.fstat(source.fileno()).st_size < size
    except OSError:
        return False


def _taken(
    home: Home,
    carrier: DirectoryCarrier,
    found: Found,
    peer: Peer,
    report: XferReport,
    *,
    clear: ClearPart,
    size: int,
    say: Say,
) -> None:
    """A bundle is ours now (in rx/, or delivered): what becomes of the copy on the medium."""
    bundle_id = clear.bundle_id
    target = home.bundles.received_path(peer.node_id, bundle_id)
    # The copy on the medium stays until our ack goes out (_give_acks): until
    # then the sender would only write it again, and if our copy turns out
    # damaged, this one is taken next time.
    if (home.spool.quarantine_dir / target.name).exists():
        # Toss already rejected a copy of this bundle, so the copy left on the
        # medium is most likely the same damaged bytes. Off it goes (ours is
        # durable in rx/): the sender, whose check goes by name and size,
        # then writes its good copy again instead of never replacing it.
        carrier.remove(found)
    elif found.name != carrier.bundle_name(bundle_id):
        # Not under its id: our ack removes a copy by its id, so this one
        # would be taken again at every exchange, for ever (a replay under
        # another name). Ours is durable in rx/.
        carrier.remove(found)
    report.received += 1
    report.received_bytes += size
    say(f"received {bundle_id} from {peer.name} ({human_bytes(size)})")


def _give_acks(
    home: Home,
    carrier: DirectoryCarrier,
    peers: dict[NodeId, Peer],
    report: XferReport,
    *,
    now: int,
    say: Say,
) -> None:
    """Write the acks owed to each neighbour the medium serves, then forget them (a
    repeat is harmless). Acks owed to others wait for a medium that serves them."""
    for neighbour, ids in home.bundles.acks_due().items():
        peer = peers.get(neighbour)
        if peer is None:
            continue  # not served here, or removed: keep the debt for a medium that serves it
        try:
            _give_acks_to(home, carrier, peer, ids, now=now)
        except UnsafeEntry:
            continue  # its folder on the medium is a link or a file: refused, with a line
        except UnwritableMedium as exc:
            report.unwritten.append(f"{exc.message}; acks for {peer.name} stay owed")
            continue
        say(f"left acks for {peer.name}: {len(ids)} bundle(s)")


def _give_acks_to(
    home: Home, carrier: DirectoryCarrier, peer: Peer, ids: list[BundleId], *, now: int
) -> None:
    me = home.identity.node_id
    for start in range(0, len(ids), MAX_IDS):
        batch = ids[start : start + MAX_IDS]
        ack = Ack(me, peer.node_id, now, tuple(batch))
        carrier.put_ack(
            ack.encode(home.identity), recipient=peer.node_id, sender=me, name=secrets.token_hex(8)
        )
        home.bundles.acks_given(peer.node_id, batch)
        for bundle_id in batch:
            carrier.remove_bundle(recipient=me, sender=peer.node_id, bundle_id=bundle_id)


def _quarantine_from_medium(
    home: Home, carrier: DirectoryCarrier, found: Found, source: BinaryIO, reason: str
) -> None:
    """Bring a rejected bundle into the spool, then quarantine it as toss does.

    At most QUARANTINE_KEEP_BYTES of it: enough to see what it claimed to
    be, while a medium's holder cannot fill the spool with garbage (a
    rejected file takes no part in the admission's room check).
    """
    # Under its own name (quarantine keeps it) if that is a plain short one,
    # and not a .rise-tmp- name, so a concurrent stale-tmp cleaner never takes it.
    staged = home.spool.tmp / "from-medium" / _quarantine_name(found.name)
    try:
        staged.parent.mkdir(mode=0o700, exist_ok=True)
        staged.unlink(missing_ok=True)
        length = os.fstat(source.fileno()).st_size
        kept = min(length, QUARANTINE_KEEP_BYTES)
        copy_file(source, kept, staged, tmp_dir=staged.parent, what="quarantining")
        if kept < length:
            reason = f"{reason} (the first {kept} of its {length} bytes kept)"
        home.spool.quarantine(staged, reason)
    except (OSError, StorageError):
        staged.unlink(missing_ok=True)  # leave it on the medium; the next xfer reports it again
        return
    carrier.remove(found)


# E and one sealed chunk: the largest body a control bundle (map, receipt) can have.
ONE_CHUNK_BODY_BYTES = PUBLIC_KEY_BYTES + sealing.SEALED_CHUNK_BYTES

# A name a medium's holder chose is kept in quarantine only if it is short and
# plain; any other gets one made from its bytes (a 255-byte name has no room
# for the ".reason" beside it, odd bytes have no place in a spool).
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _quarantine_name(name: str) -> str:
    if _PLAIN_NAME.match(name):
        return name
    digest = hashlib.blake2b(os.fsencode(name), digest_size=10).hexdigest()
    return f"from-medium-{digest}.rsb"


def _give_bundles(
    home: Home,
    carrier: DirectoryCarrier,
    peer: Peer,
    report: XferReport,
    *,
    move: bool,
    now: int,
    say: Say,
    progress: Progress,
    limit: tuple[int, str] | None = None,
) -> None:
    me = home.identity.node_id
    waiting = []
    for path in home.spool.files(home.spool.tx_dir(peer.node_id)):
        try:
            clear, size = read_clear(path)
        except (BundleError, OSError) as exc:
            reason = exc.message if isinstance(exc, BundleError) else str(exc)
            home.spool.quarantine(path, f"damaged in our own spool: {reason}")
            report.rejected.append(f"{path.name}: damaged in our spool: {reason}")
            continue
        if clear.expired(now):
            home.bundles.release(peer.node_id, clear.bundle_id, Release.EXPIRED, now=now)
            report.expired += 1
            continue
        waiting.append((clear.header.priority, path, clear.bundle_id, size))
    waiting.sort(key=lambda item: item[0])  # stable: equal priorities stay oldest first
    todo = []
    for item in waiting:
        _priority, _path, bundle_id, size = item
        if carrier.holds(peer.node_id, me, bundle_id, size):
            continue
        if limit is not None and size > limit[0]:
            report.never_fits.append(
                f"{bundle_id} for {peer.name} ({human_bytes(size)}) can never fit: larger than "
                f"{limit[1]} ({human_bytes(limit[0])}); it stays queued (send large files "
                "as parts: rise-send --part-size)"
            )
            continue
        todo.append(item)
    lane = f"to {peer.name}"
    progress.planned(lane, bundles=len(todo), total_bytes=sum(item[3] for item in todo))
    for _priority, path, bundle_id, size in todo:
        what = f"{bundle_id} for {peer.name} ({human_bytes(size)})"
        if report.medium_full and size > medium.free_bytes(carrier.root, default=size):
            # The medium has proved full: a bundle larger than what is left is
            # not begun (it would only write until ENOSPC); smaller ones still go.
            _left_queued(carrier, report, what, say=say)
            continue
        try:
            with progress.item(lane, str(bundle_id), size) as moved:
                carrier.put_bundle(
                    path, recipient=peer.node_id, sender=me, bundle_id=bundle_id, progress=moved
                )
        except OccupiedName as exc:
            carrier.refuse(exc.message)  # this one stays queued; the others still go
            continue
        except NoSpaceError:
            # Its tmp file is gone (Folder.writing): nothing torn, nothing named .rsb.
            report.medium_full = True
            _left_queued(carrier, report, what, say=say)
            continue
        report.sent += 1
        report.sent_bytes += size
        if move:
            home.bundles.release(peer.node_id, bundle_id, Release.MOVED, now=now)
        else:
            home.fast_index.count_copy(str(bundle_id))
        say(f"sent {bundle_id} to {peer.name} ({human_bytes(size)})")


def _left_queued(carrier: DirectoryCarrier, report: XferReport, what: str, *, say: Say) -> None:
    """One bundle the full medium has no room for now: it stays queued for the next one."""
    report.left_queued += 1
    say(f"left queued: {what}: no room left on {carrier.root}")
