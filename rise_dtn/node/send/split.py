"""Send a file larger than the part size as parts, each an ordinary bundle (section 25).

Each part is sealed straight from its window of the file (pread), so
memory stays flat and nothing is copied; a pipe is first staged into an
unnamed file in the spool's tmp/, because the part count and the total
size go into every part's header. Parts are queued one after the other; an
error half way takes back the parts queued so far, while a crash leaves
them, and the recipient gives up their reassembly when they expire
(documented in rise-send(1)).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import tempfile
import typing
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from rise_dtn.core import parts
from rise_dtn.core.errors import BundleError, RiseError, StorageError, UsageError
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.send import send
from rise_dtn.node.send.options import RouteOptions
from rise_dtn.store.atomic import storage_error
from rise_dtn.store.transaction import Release

if TYPE_CHECKING:
    from rise_dtn.node.send.routed import RoutedQueued


class Window:
    """Bytes [offset, offset + length) of an open file, read without moving its position."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd, self._position, self._end = fd, offset, offset + length

    def read(self, size: int = -1, /) -> bytes:
        left = self._end - self._position
        wanted = left if size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        data = os.pread(self._fd, wanted, self._position)
        self._position += len(data)
        return data


def plan(total_bytes: int, part_bytes: int) -> list[parts.PartHeader]:
    """The parts of a file, under a fresh file id; a UsageError if it needs too many."""
    try:
        return parts.plan(secrets.token_bytes(parts.FILE_ID_BYTES), total_bytes, part_bytes)
    except BundleError:
        count = -(-total_bytes // part_bytes)
        raise UsageError(
            f"{human_bytes(total_bytes)} in parts of {human_bytes(part_bytes)} makes {count} "
            f"parts (at most {parts.MAX_PARTS}); use a larger --part-size"
        ) from None


def should_split(size: int | None, part_bytes: int | None, *, named: bool) -> bool:
    """Split only a file (a message is never split) larger than the part size."""
    return named and part_bytes is not None and size is not None and size > part_bytes


@contextlib.contextmanager
def staged(home: Home, source: BinaryIO) -> Iterator[BinaryIO]:
    """A pipe's bytes in an unnamed file in tmp/ (a crash leaves nothing), read from 0."""
    try:
        staging = tempfile.TemporaryFile(dir=home.spool.tmp)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise storage_error(exc, "staging the input") from None
    with staging:
        try:
            while block := source.read(1 << 20):
                staging.write(block)
            staging.flush()
        except OSError as exc:
            raise storage_error(exc, "staging the input") from None
        staging.seek(0)
        yield staging


def windows(source: BinaryIO, headers: list[parts.PartHeader]) -> Iterator[Window]:
    fd = source.fileno()
    for header in headers:
        yield Window(fd, header.offset, header.length)


def queue_parts(
    home: Home,
    peer: Peer,
    source: BinaryIO,
    *,
    options: send.SendOptions,
    part_bytes: int,
    now: int,
    progress: send.Progress = lambda _done: None,
    route: RouteOptions | None = None,
    rng: random.Random | None = None,
) -> list[send.Queued | RoutedQueued]:
    """Queue every part of the regular file `source`, direct or over relays, in order."""
    total = send.regular_size(source)
    assert total is not None  # the caller staged a pipe
    queued: list[send.Queued | RoutedQueued] = []
    headers = plan(total, part_bytes)
    try:
        _queue_each(
            home,
            peer,
            source,
            headers,
            queued,
            options=options,
            now=now,
            progress=progress,
            route=route,
            rng=rng,
        )
        # Each part read its own window of the file: a file that grew meanwhile (a
        # log being written) went out as its first bytes. A whole send reads to the
        # end and says so; so does this.
        now_bytes = send.regular_size(source)
        if now_bytes != total:
            raise StorageError(
                f"the file changed size while it was read ({total} -> {now_bytes} bytes)"
            )
    except RiseError:
        # The user is told to retry (a full disk, a file that changed while read):
        # the parts queued so far must not go as well, or the recipient reserves
        # the whole file for a reassembly that never ends, beside the retry's.
        _take_back(home, queued, now=now)
        raise
    return queued


def _queue_each(
    home: Home,
    peer: Peer,
    source: BinaryIO,
    headers: list[parts.PartHeader],
    queued: list[send.Queued | RoutedQueued],
    *,
    options: send.SendOptions,
    now: int,
    progress: send.Progress,
    route: RouteOptions | None,
    rng: random.Random | None,
) -> None:
    """Queue the parts in order, each appended to `queued` as soon as it is in tx/."""
    for header, window in zip(headers, windows(source, headers), strict=True):
        reader = typing.cast("BinaryIO", window)
        if route is not None and rng is not None:
            from rise_dtn.node.send import routed  # late: a direct send skips the onion code

            queued.append(
                routed.queue_routed(
                    home,
                    peer,
                    reader,
                    options=options,
                    route=route,
                    now=now,
                    rng=rng,
                    progress=progress,
                    part=header,
                )
            )
        else:
            queued.append(
                send.queue(
                    home, peer, reader, options=options, now=now, progress=progress, part=header
                )
            )


def _take_back(home: Home, queued: list[send.Queued | RoutedQueued], *, now: int) -> None:
    """Cancel the parts of a send that failed, as `rise queue cancel` would; best effort
    (the disk may be full): what cannot be taken back goes, and expires at the recipient."""
    for one in queued:
        with contextlib.suppress(RiseError):
            if isinstance(one, send.Queued):
                home.bundles.release(one.peer.node_id, one.bundle_id, Release.CANCELLED, now=now)
                continue
            for copy in one.copies:
                home.bundles.release(copy.first_hop, copy.packet_id, Release.CANCELLED, now=now)
            if one.held_because is not None:
                from rise_dtn.node.send.routed import held_path

                home.spool.remove(held_path(home, one.bundle_id))
                home.relay_index.release_held(str(one.bundle_id))
