"""Exchange bundles with a directory (a USB stick): acks in, bundles in, acks out, bundles out.

Order matters for "nothing lost": a received bundle is durable in rx/ before
its copy on the medium is removed, and it is acked only once a toss has
verified and processed it (store/index.py, pending_ack), so a copy damaged on
the way never releases the sender's good one. A sent bundle stays in tx/
until an ack for it comes back (unless --move), so a lost stick loses nothing.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from pathlib import Path

from rise_dtn.carriers.directory.layout import DirectoryCarrier, Found
from rise_dtn.core.ack import MAX_IDS, Ack
from rise_dtn.core.errors import BundleError, NoSpaceError, RiseError, StorageError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.store import locks
from rise_dtn.store.atomic import (
    link_or_copy,
)
from rise_dtn.store.spool import read_clear
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
    medium_full: bool = False
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
) -> XferReport:
    """One full exchange with `directory`.

    `toss`, if given, runs after the bundles are taken and before the acks
    are written, so that the acks for this exchange's bundles leave at once.
    """
    home.spool.check_exists()
    carrier = DirectoryCarrier(directory)
    report = XferReport()
    me = home.identity.node_id
    peers = {peer.node_id: peer for peer in home.peers.all()}
    carrier.remove_stale(sender=me)
    _take_acks(home, carrier, peers, report, now=now, say=say)
    _take_bundles(home, carrier, peers, report, now=now, say=say)
    if toss is not None:
        toss()
    _give_acks(home, carrier, peers, now=now, say=say)
    if home.config.relay.enabled:
        from rise_dtn.node.toss import control  # late: only relays pay for the routing modules

        for name in control.refresh_maps(home, now=now):
            say(f"queued a fresh map for {name}")
    for neighbour in home.spool.tx_neighbours():
        peer = peers.get(neighbour)
        if peer is None:
            report.skipped.append(f"tx/{neighbour}: not a known peer, left in the spool")
            continue
        try:
            with locks.held(home.spool.lock_path(f"tx-{neighbour}"), what=f"tx/{peer.name}"):
                _give_bundles(home, carrier, peer, report, move=move, now=now, say=say)
        except NoSpaceError:
            report.medium_full = True
            say(f"{directory} is full: the rest stays in the spool for the next exchange")
            break
    carrier.sync()
    return report


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
            report.skipped.append(f"{found.path}: ack from unknown node {found.sender}, ignored")
            continue
        try:
            ack = Ack.decode(found.path.read_bytes(), sender=peer.card.public, recipient=me)
        except (BundleError, OSError) as exc:
            reason = exc.message if isinstance(exc, BundleError) else str(exc)
            report.rejected.append(f"{found.path.name}: ack rejected: {reason}")
            carrier.remove(found.path)
            continue
        with locks.held(
            home.spool.lock_path(f"tx-{peer.node_id}"), wait_seconds=30, what=f"tx/{peer.name}"
        ):
            for bundle_id in ack.bundle_ids:
                if home.bundles.release(peer.node_id, bundle_id, Release.ACKED, now=now):
                    report.released += 1
                # The neighbour took it; a copy still on the medium is now garbage.
                carrier.remove(carrier.bundle_path(peer.node_id, me, bundle_id))
        carrier.remove(found.path)
        say(f"ack from {peer.name}: {len(ack.bundle_ids)} bundle(s) confirmed")


def _take_bundles(
    home: Home,
    carrier: DirectoryCarrier,
    peers: dict[NodeId, Peer],
    report: XferReport,
    *,
    now: int,
    say: Say,
) -> None:
    for found in carrier.bundles_for(home.identity.node_id):
        peer = peers.get(found.sender)
        if peer is None:
            report.skipped.append(
                f"{found.path.name}: from unknown node {found.sender}, left on the medium"
            )
            continue
        _take_one(home, carrier, found, peer, report, now=now, say=say)


def _take_one(
    home: Home,
    carrier: DirectoryCarrier,
    found: Found,
    peer: Peer,
    report: XferReport,
    *,
    now: int,
    say: Say,
) -> None:
    """Move one bundle from the medium into rx/ (durably, then off the medium)."""
    try:
        clear, size = read_clear(found.path)
    except BundleError as exc:
        report.rejected.append(f"{found.path.name}: {exc.message}")
        _quarantine_from_medium(home, found, exc.message)
        return
    except OSError as exc:
        report.rejected.append(f"{found.path.name}: unreadable: {exc.strerror}")
        return
    bundle_id = clear.bundle_id

    def write(target: Path) -> None:
        link_or_copy(found.path, target, tmp_dir=home.spool.tmp, what="receiving a bundle")

    admission = home.bundles.admit(clear, size, peer.node_id, now=now, write=write)
    if admission.verdict is Verdict.NOT_FOR_US:
        report.rejected.append(f"{found.path.name}: {admission.reason}")
        _quarantine_from_medium(home, found, admission.reason)
        return
    if admission.verdict is Verdict.RECEIVED:
        # Not tossed yet. If our copy turns out damaged, toss quarantines it
        # and this copy, left on the medium, is taken next time.
        report.skipped.append(f"{found.path.name}: {admission.reason}")
        return
    if admission.verdict is Verdict.DELIVERED:
        report.duplicates += 1  # the sender missed our ack: admit owes it again
        carrier.remove(found.path)
        return
    if admission.verdict is Verdict.EXPIRED:
        report.expired += 1
        report.skipped.append(f"{found.path.name}: expired, removed from the medium")
        carrier.remove(found.path)
        return
    target = home.bundles.received_path(peer.node_id, bundle_id)
    # The copy on the medium stays until our ack goes out (_give_acks): until
    # then the sender would only write it again, and if our copy turns out
    # damaged, this one is taken next time.
    if (home.spool.quarantine_dir / target.name).exists():
        # Toss already rejected a copy of this bundle, so the copy left on the
        # medium is most likely the same damaged bytes. Off it goes (ours is
        # durable in rx/): the sender, whose check goes by name and size,
        # then writes its good copy again instead of never replacing it.
        carrier.remove(found.path)
    elif found.path != carrier.bundle_path(home.identity.node_id, peer.node_id, bundle_id):
        # Not under its id: our ack removes a copy by its id, so this one
        # would be taken again at every exchange, for ever (a replay under
        # another name). Ours is durable in rx/.
        carrier.remove(found.path)
    report.received += 1
    report.received_bytes += size
    say(f"received {bundle_id} from {peer.name} ({size} bytes)")


def _parses(text: str) -> bool:
    try:
        BundleId.parse(text)
    except RiseError:
        return False
    return True


def _give_acks(
    home: Home, carrier: DirectoryCarrier, peers: dict[NodeId, Peer], *, now: int, say: Say
) -> None:
    """Write the acks owed to each neighbour, then forget them (a repeat is harmless)."""
    me = home.identity.node_id
    by_neighbour: dict[str, list[str]] = {}
    for neighbour, bundle_id in home.index.acks_owed():
        if not (_parses(neighbour) and _parses(bundle_id)):
            home.index.acks_sent(neighbour, [bundle_id])  # damaged: must not block every xfer
            continue
        by_neighbour.setdefault(neighbour, []).append(bundle_id)
    for neighbour_text, ids in by_neighbour.items():
        peer = peers.get(NodeId.parse(neighbour_text))
        if peer is None:
            continue  # the neighbour was removed; keep the debt in case it comes back
        for start in range(0, len(ids), MAX_IDS):
            batch = ids[start : start + MAX_IDS]
            ack = Ack(me, peer.node_id, now, tuple(BundleId.parse(text) for text in batch))
            carrier.put_ack(
                ack.encode(home.identity),
                recipient=peer.node_id,
                sender=me,
                name=secrets.token_hex(8),
            )
            home.index.acks_sent(neighbour_text, batch)
            for bundle_id in batch:
                carrier.remove(carrier.bundle_path(me, peer.node_id, BundleId.parse(bundle_id)))
        say(f"left acks for {peer.name}: {len(ids)} bundle(s)")


def _quarantine_from_medium(home: Home, found: Found, reason: str) -> None:
    """Bring a rejected bundle into the spool, then quarantine it as toss does."""
    # Under its own name (quarantine keeps it) and not a .rise-tmp- name, so
    # a concurrent stale-tmp cleaner never takes it.
    staged = home.spool.tmp / "from-medium" / found.path.name
    try:
        staged.parent.mkdir(mode=0o700, exist_ok=True)
        staged.unlink(missing_ok=True)
        link_or_copy(found.path, staged, what="quarantining")
        home.spool.quarantine(staged, reason)
        found.path.unlink()
    except (OSError, StorageError):
        staged.unlink(missing_ok=True)  # leave it on the medium; the next xfer reports it again


def _give_bundles(
    home: Home,
    carrier: DirectoryCarrier,
    peer: Peer,
    report: XferReport,
    *,
    move: bool,
    now: int,
    say: Say,
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
    for _priority, path, bundle_id, size in waiting:
        if carrier.holds(peer.node_id, me, bundle_id, size):
            continue
        carrier.put_bundle(path, recipient=peer.node_id, sender=me, bundle_id=bundle_id)
        report.sent += 1
        report.sent_bytes += size
        if move:
            home.bundles.release(peer.node_id, bundle_id, Release.MOVED, now=now)
        else:
            home.index.count_copy(str(bundle_id))
        say(f"sent {bundle_id} to {peer.name} ({size} bytes)")
