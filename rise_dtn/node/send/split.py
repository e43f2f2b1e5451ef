"""Send a file larger than the part size as parts, each an ordinary bundle (section 25).

Each part is sealed straight from its window of the file (pread), so
memory stays flat and nothing is copied; a pipe is first staged into an
unnamed file in the spool's tmp/, because the part count and the total
size go into every part's header. Parts are queued one after the other; a
crash half way leaves the parts queued so far, and the recipient gives up
their reassembly when they expire (documented in rise-send(1)).
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
from rise_dtn.core.errors import BundleError, UsageError
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.send import send
from rise_dtn.node.send.options import RouteOptions
from rise_dtn.store.atomic import storage_error

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
    return queued
