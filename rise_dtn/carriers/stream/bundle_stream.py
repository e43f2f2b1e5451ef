"""A self-contained stream of bundles, for tapes, CDs and shell pipelines (rise-bundle).

    stream  = "RSS" 0x01, then records, then an end record
    record  = CBOR [from-node-id, to-node-id, size]  followed by size bundle bytes
    end     = CBOR []

The stream is one-way: no acks travel back, so `--out` keeps what it wrote
in the spool unless `--move`. The `from` field is not trusted: it only says
which peer's rx/ folder a bundle lands in (unknown nodes are skipped,
default deny); toss verifies the sender's signature inside every bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from rise_dtn.core import bundle
from rise_dtn.core.encoding import canonical, split_item
from rise_dtn.core.errors import BundleError, UsageError
from rise_dtn.core.identity import NODE_ID_BYTES, NodeId
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.node.home import Home
from rise_dtn.store.atomic import atomic_file
from rise_dtn.store.spool import read_clear
from rise_dtn.store.transaction import Release, Verdict

MAGIC = b"RSS\x01"
MAX_RECORD_HEADER_BYTES = 64
COPY_BYTES = 1 << 20


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclasses.dataclass(slots=True)
class StreamReport:
    bundles: int = 0
    bytes: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    rejected: list[str] = dataclasses.field(default_factory=list)
    no_room: list[str] = dataclasses.field(default_factory=list)  # not taken: spool full


def write_stream(
    home: Home,
    out: BinaryIO,
    *,
    neighbours: Iterable[NodeId] | None,
    move: bool,
    now: int,
    progress: Progress = NO_PROGRESS,
) -> StreamReport:
    """Write every waiting (unexpired) bundle for `neighbours` (default: all peers);
    `progress` hears each block, in lanes "to NAME"."""
    report = StreamReport()
    me = home.identity.node_id
    peers = {peer.node_id: peer for peer in home.peers.all()}
    wanted = list(neighbours) if neighbours is not None else list(peers)
    out.write(MAGIC)
    written = []
    for neighbour in wanted:
        paths = list(home.spool.files(home.spool.tx_dir(neighbour)))
        lane = f"to {peers[neighbour].name}" if neighbour in peers else f"to {neighbour}"
        progress.planned(lane, bundles=len(paths), total_bytes=_total_size(paths))
        for path in paths:
            try:
                clear, size = read_clear(path)
            except (BundleError, OSError):
                progress.finished(lane, complete=False)
                continue  # rise-check reports damaged files
            if clear.expired(now):
                progress.finished(lane, complete=False)
                continue
            out.write(canonical([me.raw, neighbour.raw, size]))
            with open(path, "rb") as source, progress.item(lane, path.stem, size) as moved:
                while block := source.read(COPY_BYTES):
                    out.write(block)
                    moved(len(block))
            written.append((neighbour, clear.bundle_id))
            report.bundles += 1
            report.bytes += size
    out.write(canonical([]))
    out.flush()
    with contextlib.suppress(OSError, ValueError):
        os.fsync(out.fileno())  # a pipe cannot be fsynced; a file can
    if move:
        for neighbour, bundle_id in written:
            home.bundles.release(neighbour, bundle_id, Release.MOVED, now=now)
    return report


def _total_size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def _read_exact(source: Readable, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise BundleError("bundle stream is truncated")
    return data


def _record_header(source: Readable) -> list[object]:
    """Read one CBOR record header byte by byte (it is tiny) without over-reading."""
    buffer = b""
    while len(buffer) < MAX_RECORD_HEADER_BYTES:
        byte = source.read(1)
        if not byte:
            raise BundleError("bundle stream is truncated (no end record)")
        buffer += byte
        try:
            value, used = split_item(
                buffer, max_bytes=MAX_RECORD_HEADER_BYTES, error=BundleError, what="stream record"
            )
        except BundleError:
            continue  # not a complete item yet
        if used == len(buffer) and isinstance(value, list):
            return value
    raise BundleError("bundle stream has a malformed record header")


READING = "reading"  # read_stream's progress lane: the whole stream, one item


def read_stream(
    home: Home, source: BinaryIO, *, now: int, progress: Progress = NO_PROGRESS
) -> StreamReport:
    """Take the bundles addressed to this node into rx/; skip the rest.

    `progress` hears the stream's bytes as one item (lane READING), of the
    file's size when `source` is a file, else of unknown size."""
    try:
        total = os.fstat(source.fileno()).st_size if source.seekable() else 0
    except (OSError, ValueError):
        total = 0
    with progress.item(READING, "stream", total) as moved:
        return _read_records(home, _Counted(source, moved), now=now)


class _Counted:
    """A source that tells a progress callback what was read (per block or header byte)."""

    def __init__(self, inner: BinaryIO, moved: Callable[[int], object]) -> None:
        self._inner = inner
        self._moved = moved

    def read(self, size: int, /) -> bytes:
        data = self._inner.read(size)
        self._moved(len(data))
        return data


def _read_records(home: Home, source: Readable, *, now: int) -> StreamReport:
    if source.read(len(MAGIC)) != MAGIC:
        raise UsageError("not a rise-dtn bundle stream (bad magic)")
    report = StreamReport()
    me = home.identity.node_id
    peers = {peer.node_id: peer for peer in home.peers.all()}
    while True:
        header = _record_header(source)
        if not header:
            return report
        if (
            len(header) != 3
            or not all(
                isinstance(part, bytes) and len(part) == NODE_ID_BYTES for part in header[:2]
            )
            or not isinstance(header[2], int)
            or not 0 < header[2] <= bundle.MAX_BODY_BYTES
        ):
            raise BundleError("bundle stream has a malformed record header")
        sender, recipient, size = NodeId(header[0]), NodeId(header[1]), header[2]  # type: ignore[arg-type]
        if recipient != me or sender not in peers:
            why = "for another node" if recipient != me else f"from unknown node {sender}"
            report.skipped.append(f"a {size}-byte bundle {why}")
            _skip(source, size)
            continue
        _take(home, source, sender, size, report, now=now)


def _skip(source: Readable, size: int) -> None:
    remaining = size
    while remaining:
        block = source.read(min(remaining, COPY_BYTES))
        if not block:
            raise BundleError("bundle stream is truncated")
        remaining -= len(block)


def _take(
    home: Home, source: Readable, sender: NodeId, size: int, report: StreamReport, *, now: int
) -> None:
    """One record: into rx/ through the bundle transaction, or skipped with its reason."""
    head = _read_exact(source, min(size, bundle.MAX_CLEAR_BYTES))
    try:
        clear = bundle.parse_clear(head)
        if clear.total_bytes != size:
            raise BundleError("record size does not match the bundle")
    except BundleError as exc:
        report.rejected.append(exc.message)
        _skip(source, size - len(head))
        return

    def write(target: Path) -> int:
        with atomic_file(
            target, tmp_dir=home.spool.tmp, what="receiving a bundle", hold=True
        ) as out:
            out.write(head)
            remaining = size - len(head)
            while remaining:
                block = source.read(min(remaining, COPY_BYTES))
                if not block:
                    raise BundleError("bundle stream is truncated")
                out.write(block)
                remaining -= len(block)
        return out.held

    admission = home.bundles.admit(clear, size, sender, now=now, write=write)
    if not admission.taken:
        _skip(source, size - len(head))
        if admission.verdict is Verdict.NOT_FOR_US:
            report.rejected.append(f"{clear.bundle_id}: {admission.reason}")
        elif admission.verdict is Verdict.NO_ROOM:
            report.no_room.append(f"{clear.bundle_id}: {admission.reason}")
        else:
            report.skipped.append(f"{clear.bundle_id}: {admission.reason}")
        return
    report.bundles += 1
    report.bytes += size
