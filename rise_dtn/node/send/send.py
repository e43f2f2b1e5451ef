"""Queue a file or a message for a peer: seal it into tx/<peer>/ in one pass.

The payload is read in CHUNK_BYTES blocks, sealed and written as it goes, so
memory stays flat whatever the size. The bundle appears in tx/ only once it
is complete and fsynced (store/atomic.py); a crash leaves no half bundle.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rise_dtn.core import sealing
from rise_dtn.core.bundle import ContentKind, Meta, Sealer, check_file_name
from rise_dtn.core.errors import BundleError, StorageError, UsageError
from rise_dtn.core.identity import PUBLIC_KEY_BYTES, BundleId
from rise_dtn.core.parts import PartHeader
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.store import transaction
from rise_dtn.store.atomic import AtomicFile, atomic_file, copy_into, storage_error
from rise_dtn.store.pipeline import BackgroundWriter
from rise_dtn.store.rows import SentRow

Progress = Callable[[int], None]


@dataclasses.dataclass(frozen=True, slots=True)
class SendOptions:
    """What the user asked for; None means the node's configured default."""

    name: str | None = None  # deliver as a file with this name (else a message for stdin)
    nice: int | None = None
    lifetime_seconds: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Queued:
    bundle_id: BundleId
    peer: Peer
    kind: ContentKind
    payload_bytes: int
    bundle_bytes: int


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Read exactly `size` bytes unless the source ends first (pipes return short reads)."""
    parts = []
    remaining = size
    while remaining:
        block = source.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


def seal_stream(
    sealer: Sealer, source: BinaryIO, write: Callable[[bytes], object], progress: Progress
) -> int:
    """Seal everything `source` yields into `out`; return the payload size.

    Reads one chunk ahead, because a chunk is sealed knowing whether it is last.
    """
    expected = sealer.first_payload_bytes
    current = _read_full(source, expected)
    total = 0
    while True:
        following = _read_full(source, sealing.CHUNK_BYTES) if len(current) == expected else b""
        expected = sealing.CHUNK_BYTES
        final = not following
        write(sealer.seal(current, final=final))
        total += len(current)
        progress(len(current))
        if final:
            return total
        current = following


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """A bundle about to be sealed: its sealer and the settings it was made with."""

    peer: Peer
    sealer: Sealer | None  # None for a bundle sealed earlier (held for a route)
    kind: ContentKind
    size: int | None  # payload bytes, if the source says in advance
    expiry: int
    priority: int


def prepare(
    home: Home,
    peer: Peer,
    source: BinaryIO,
    *,
    options: SendOptions,
    now: int,
    kind: ContentKind | None = None,
    part: PartHeader | None = None,
) -> Prepared:
    """Check the options and make the sealer (the signature is made here).

    `part`: `source` is that part of a split file (send/split.py), sent as kind PART.
    """
    config = home.config
    if kind is None:
        kind = ContentKind.FILE if options.name is not None else ContentKind.MESSAGE
    if options.name is not None:
        try:
            check_file_name(options.name)
        except BundleError as exc:
            raise UsageError(f"--name: {exc.message}") from None
    size = regular_size(source) if part is None else part.length
    meta = Meta(kind, options.name, size if kind is ContentKind.FILE else None)
    if part is not None:
        kind = ContentKind.PART
        meta = Meta(kind, options.name, part.length, part)
    lifetime = options.lifetime_seconds or config.lifetime_seconds
    priority = config.nice if options.nice is None else options.nice
    sealer = Sealer(
        sender=home.identity,
        recipient=peer.card.public,
        meta=meta,
        expiry=now + lifetime,
        priority=priority,
        ephemeral_secret=secrets.token_bytes(32),
    )
    return Prepared(peer, sealer, kind, size, now + lifetime, priority)


def queue(
    home: Home,
    peer: Peer,
    source: BinaryIO,
    *,
    options: SendOptions,
    now: int,
    progress: Progress = lambda _done: None,
    kind: ContentKind | None = None,
    part: PartHeader | None = None,
) -> Queued:
    """Seal `source` for `peer` and commit it to tx/<peer>/. Returns what was queued."""
    prepared = prepare(home, peer, source, options=options, now=now, kind=kind, part=part)
    sealer = prepared.sealer
    assert sealer is not None
    size, priority, expiry = prepared.size, prepared.priority, prepared.expiry
    sealed: list[int] = []

    def write(target: Path) -> str:
        hasher = transaction.SpoolDigest()

        def keep(block: bytes) -> None:
            # In the background writer's thread: hashlib lets go of the GIL
            # for large blocks, so the hash costs the sealing thread nothing.
            out.write(block)
            hasher.body.update(block)

        with atomic_file(target, tmp_dir=home.spool.tmp, what="queueing the bundle") as out:
            if size is not None:
                head = sealer.clear_part(size)
                out.write(head)
                hasher.head.update(head)
                if size <= sealing.CHUNK_BYTES:
                    # One chunk: nothing to overlap, so no writer thread to start.
                    payload_bytes = seal_stream(sealer, source, keep, progress)
                else:
                    with BackgroundWriter(keep) as write_block:
                        payload_bytes = seal_stream(sealer, source, write_block, progress)
                if payload_bytes != size:
                    raise StorageError(
                        f"the file changed size while it was read ({size} -> {payload_bytes})"
                    )
            else:
                payload_bytes = _seal_unknown_size(sealer, source, out, home, progress)
        sealed.append(payload_bytes)
        if size is None:  # the body was copied by the kernel, unseen: hash the file
            return transaction.digest_of(target)
        return hasher.hexdigest()

    bundle_bytes = home.bundles.queue(
        peer.node_id,
        sealer.bundle_id,
        expiry=expiry,
        priority=priority,
        now=now,
        write=write,
        sent=lambda: _sent_record(peer, prepared, sealed[0], now=now),
    )
    payload_bytes = sealed[0]
    return Queued(sealer.bundle_id, peer, prepared.kind, payload_bytes, bundle_bytes)


def _sent_record(peer: Peer, prepared: Prepared, payload_bytes: int, *, now: int) -> SentRow | None:
    """What `rise status` follows of a direct send: the user's files, parts of files
    and messages only (maps and receipts are the network's business). One "copy",
    with no relays: the bundle is its own first-hop packet, delivered when the
    recipient acks it."""
    if prepared.kind not in (ContentKind.MESSAGE, ContentKind.FILE, ContentKind.PART):
        return None
    from rise_dtn.node.send.copies import Copy, encode_copies

    assert prepared.sealer is not None
    bundle_id = prepared.sealer.bundle_id
    return SentRow(
        bundle_id=str(bundle_id),
        recipient=str(peer.node_id),
        created=now,
        expiry=prepared.expiry,
        size=payload_bytes,
        copies=encode_copies([Copy(peer.node_id, bundle_id, (), ())]),
    )


def _seal_unknown_size(
    sealer: Sealer, source: BinaryIO, out: AtomicFile, home: Home, progress: Progress
) -> int:
    """A pipe: seal the body into an unnamed tmp file, then prepend the header.

    The header holds the body length, which a pipe does not tell in advance.
    The body is copied back by the kernel (copy_file_range), not re-sealed;
    the staging file has no name, so a crash leaves nothing behind.
    """
    try:
        staging = tempfile.TemporaryFile(dir=home.spool.tmp)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise storage_error(exc, "queueing the bundle") from None
    with staging:
        payload_bytes = seal_stream(sealer, source, staging.write, progress)
        out.write(sealer.clear_part(payload_bytes))
        staging.flush()
        staging.seek(0)
        copy_into(staging, out, sealer.body_length(payload_bytes) - PUBLIC_KEY_BYTES)
    return payload_bytes


def regular_size(source: BinaryIO) -> int | None:
    """The size of a regular file, or None for a pipe or terminal."""
    try:
        info = os.fstat(source.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and source.tell() == 0 else None


def open_source(path: str) -> BinaryIO:
    """Open the payload named on the command line ('-' is stdin)."""
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(Path(path), "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
