"""rise-check: verify every spool file against the index; --repair rebuilds the index.

The files are the truth. A spool file that does not parse, or whose size
disagrees with its header, is a problem (moved to quarantine by --repair);
an index row without a file, or a file without a row, is a stale cache
(rebuilt by --repair); a tmp file that no live process holds is debris from
a crash (removed by --repair), and so is a live link's partial copy that the
session policy calls stale (not resumed within [spool] partial_lifetime, or
beyond the most recent ones a neighbour may leave; core/live_policy.py).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from rise_dtn.core.card import Card
from rise_dtn.core.errors import BundleError, Deferred, PeerError, StorageError
from rise_dtn.core.identity import NodeId
from rise_dtn.core.live_policy import stale_partials
from rise_dtn.node import parts
from rise_dtn.node.home import Home
from rise_dtn.node.peers import CARD_SUFFIX
from rise_dtn.store import partials
from rise_dtn.store.atomic import remove_stale_tmp, stale_tmp
from rise_dtn.store.index import EntryRow
from rise_dtn.store.spool import read_clear
from rise_dtn.store.transaction import digest_of


@dataclasses.dataclass(slots=True)
class CheckReport:
    files: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    repaired: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)  # done, and not a problem

    @property
    def clean(self) -> bool:
        return not self.problems


def check(home: Home, *, repair: bool, now: int) -> CheckReport:
    spool = home.spool
    spool.check_exists()
    report = CheckReport()
    # A release a crash interrupted is journaled: finish it before looking,
    # as SQLite replays its own journal (store/transaction.py).
    for path in home.bundles.finish_releases():
        report.notes.append(f"finished the interrupted release of {path.name}")
    found: dict[tuple[str, str], tuple[Path, NodeId, int, int, int]] = {}
    damaged: set[tuple[str, str]] = set()  # reported once, as damaged, not again as unindexed
    digests = home.index.digests()
    for direction, parent, neighbours in (
        ("tx", spool.tx, spool.tx_neighbours()),
        ("rx", spool.rx, spool.rx_neighbours()),
    ):
        for neighbour in neighbours:
            for path in spool.files(parent / str(neighbour)):
                report.files += 1
                try:
                    clear, size = read_clear(path)
                    if path.name != f"{clear.bundle_id}.rsb":
                        raise BundleError(f"file name does not match bundle id {clear.bundle_id}")
                    if direction == "tx" and clear.header.recipient != neighbour:
                        raise BundleError(
                            f"bundle in tx/{neighbour} is for {clear.header.recipient}"
                        )
                except (BundleError, OSError) as exc:
                    reason = exc.message if isinstance(exc, BundleError) else str(exc)
                    report.problems.append(f"{direction}/{neighbour}/{path.name}: {reason}")
                    damaged.add((path.name.split(".")[0], direction))
                    if repair:
                        home.bundles.quarantine(path, f"rise-check: {reason}")
                        report.repaired.append(f"quarantined {path.name}")
                    continue
                if direction == "tx" and not _digest_matches(home, path, digests):
                    reason = (
                        "damaged in our own spool: no longer the bytes it had when sealed "
                        "(send it again; rise-check --repair sets it aside)"
                    )
                    report.problems.append(f"tx/{neighbour}/{path.name}: {reason}")
                    damaged.add((path.name.split(".")[0], direction))
                    if repair:
                        home.bundles.quarantine(path, f"rise-check: {reason}")
                        report.repaired.append(f"quarantined {path.name}")
                    continue
                found[(str(clear.bundle_id), direction)] = (
                    path,
                    neighbour,
                    size,
                    clear.header.expiry,
                    clear.header.priority,
                )
    _compare_index(home, found, damaged, report, repair=repair, now=now)
    _check_peers(home, report)
    _stale_tmp(home, report, repair=repair)
    _stale_partials(home, report, repair=repair, now=now)
    _reassemblies(home, report, repair=repair, now=now)
    return report


def _digest_matches(home: Home, path: Path, digests: dict[str, str]) -> bool:
    """True unless the digest recorded when this node sealed the bundle differs."""
    recorded = digests.get(path.name.split(".")[0])
    if recorded is None:
        return True  # a packet forwarded or made by a relay, or sealed before digests
    try:
        return digest_of(path, like=recorded) == recorded
    except OSError:
        return False


def _compare_index(
    home: Home,
    found: dict[tuple[str, str], tuple[Path, NodeId, int, int, int]],
    damaged: set[tuple[str, str]],
    report: CheckReport,
    *,
    repair: bool,
    now: int,
) -> None:
    rows = {(row.bundle_id, row.direction): row for row in home.index.entries()}
    drop: list[tuple[str, str]] = []
    put: list[EntryRow] = []
    for key in rows:
        if key in damaged:
            drop.append(key)  # reported once already, as damaged
        elif key not in found:
            report.problems.append(f"index lists {key[1]}/{key[0]} but the file is gone")
            drop.append(key)
            if repair:
                report.repaired.append(f"dropped index row {key[0]}")
    for key, (path, neighbour, size, expiry, priority) in found.items():
        cached = rows.get(key)
        if cached is not None and (cached.size, cached.neighbour) == (size, str(neighbour)):
            continue
        report.problems.append(f"{key[1]}/{neighbour}/{path.name} is missing from the index")
        put.append(
            EntryRow(
                bundle_id=key[0],
                direction=key[1],
                neighbour=str(neighbour),
                size=size,
                expiry=expiry,
                priority=priority,
                queued_at=int(os.stat(path).st_mtime) if path.exists() else now,
                copies=cached.copies if cached is not None else 0,
            )
        )
        if repair:
            report.repaired.append(f"indexed {path.name}")
    if repair:
        home.index.replace_entries(drop, put)


def _check_peers(home: Home, report: CheckReport) -> None:
    """A card file that no longer verifies trusts nobody; say so rather than stay silent."""
    for path in sorted(home.peers.directory.glob(f"*{CARD_SUFFIX}")):
        try:
            Card.from_text(path.read_text(encoding="utf-8"))
        except (PeerError, UnicodeDecodeError, OSError) as exc:
            reason = exc.message if isinstance(exc, PeerError) else str(exc)
            report.problems.append(f"peer card {path.name} is damaged and ignored: {reason}")


def _stale_tmp(home: Home, report: CheckReport, *, repair: bool) -> None:
    directories = [home.spool.tmp, home.inbox_dir]
    incoming = home.config.incoming or home.path / "incoming"
    if incoming.is_dir():
        directories += [entry for entry in incoming.iterdir() if entry.is_dir()]
    for parent in (home.spool.tx, home.spool.rx):
        if parent.is_dir():
            directories += [entry for entry in parent.iterdir() if entry.is_dir()]
    for directory in directories:
        if repair:
            removed = remove_stale_tmp(directory)
            if removed:
                report.repaired.append(f"removed {removed} stale tmp file(s) in {directory}")
            continue
        stale = stale_tmp(directory)
        if stale:
            report.problems.append(f"{len(stale)} tmp file(s) in {directory} (run --repair)")


def _stale_partials(home: Home, report: CheckReport, *, repair: bool, now: int) -> None:
    """Partial copies from live links that no session will resume (the link's own rule)."""
    root = home.spool.tmp / "partial"
    try:
        folders = sorted(entry for entry in root.iterdir() if entry.is_dir())
    except OSError:
        return  # no live link ever received here
    lifetime = home.config.partial_lifetime_seconds
    for folder in folders:
        stale = stale_partials(partials.read_partials(folder), now=now, lifetime_seconds=lifetime)
        for name, reason in sorted(stale.items()):
            shown = f"tmp/partial/{folder.name}/{name}"
            if not repair:
                report.problems.append(f"stale partial copy {shown}: {reason} (run --repair)")
                continue
            try:
                partials.remove_partial(folder / name)
            except OSError as exc:
                report.problems.append(f"stale partial copy {shown}: {exc.strerror}")
                continue
            report.repaired.append(f"removed stale partial copy {shown} ({reason})")
        for orphan in partials.orphan_checkpoints(folder):
            if repair:
                orphan.unlink(missing_ok=True)


def _reassemblies(home: Home, report: CheckReport, *, repair: bool, now: int) -> None:
    """Split files being put together in spool/parts/: listed, and any that could only
    ever deliver a damaged file set aside (their parts were acked: the sender must send
    the file again)."""
    for found in parts.survey(home, now=now):
        shown = f"parts/{found.folder}"
        if found.problem is None:
            report.notes.append(f"reassembling {shown}: {found.summary}")
            continue
        problem = f"{shown} ({found.summary}): {found.problem}"
        if not repair:
            report.problems.append(f"{problem} (--repair sets it aside)")
            continue
        try:
            target = parts.set_aside(home, found.folder, f"rise-check: {found.problem}")
        except (Deferred, StorageError) as exc:
            report.problems.append(f"{problem}; not set aside: {exc.message}")
            continue
        report.problems.append(problem)
        report.repaired.append(
            f"set {shown} aside in {target} (ask the sender to send the file again)"
        )
