"""Send over relays: seal the end-to-end bundle once, wrap it for fresh routes, track it.

`rise-send --hops N` (or [send] hops) lands here. With no route and
`--wait`, the sealed bundle waits in spool/held/ and every toss that learns
a map tries again (`retry_held`). What was sent, and its fate, is in the
`sent` table: queued, in transit, delivered (a receipt came back), expired.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from rise_dtn.core.bundle import ContentKind, Sealer
from rise_dtn.core.errors import RiseError, StorageError
from rise_dtn.core.identity import PUBLIC_KEY_BYTES, BundleId
from rise_dtn.core.onion import SlotKind, padded_payload_bytes
from rise_dtn.core.parts import PartHeader
from rise_dtn.core.routing import NoRoute
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.send import routes, send
from rise_dtn.node.send.onion_send import (
    Copy,
    PacketWriter,
    RouteNode,
    encode_copies,
    packet_writers,
    wrap,
)
from rise_dtn.node.send.options import RouteOptions as RouteOptions  # noqa: PLC0414 - re-exported
from rise_dtn.store.atomic import atomic_file, storage_error
from rise_dtn.store.rows import HeldRow, SentRow

BLOCK_BYTES = 1 << 20
HELD_DIR = "held"
EXTRA_HOPS = 2  # how many relays beyond --hops a route may take when none of N exists
MAX_ROUTE_HOPS = 8  # the onion header's 9 slots: 8 relays and the destination


@dataclasses.dataclass(frozen=True, slots=True)
class RoutedQueued:
    bundle_id: BundleId
    peer: Peer
    kind: ContentKind
    payload_bytes: int
    copies: tuple[Copy, ...]  # empty when held for a route
    held_because: str | None = None


def queue_routed(
    home: Home,
    peer: Peer,
    source: BinaryIO,
    *,
    options: send.SendOptions,
    route: RouteOptions,
    now: int,
    rng: random.Random,
    progress: send.Progress = lambda _done: None,
    kind: ContentKind | None = None,
    part: PartHeader | None = None,
) -> RoutedQueued:
    prepared = send.prepare(home, peer, source, options=options, now=now, kind=kind, part=part)
    sealer = prepared.sealer
    assert sealer is not None  # freshly prepared, never a held one
    hops, copies = route.resolve(home)
    try:
        drawn = _draw(home, peer, hops, copies, route.via, prepared.kind, now=now, rng=rng)
    except NoRoute as exc:
        if not route.wait:
            raise
        size = _hold(home, sealer, source, prepared, hops=hops, copies=copies, progress=progress)
        return RoutedQueued(sealer.bundle_id, peer, prepared.kind, size, (), exc.message)
    destination = RouteNode(peer.node_id, peer.card.public)
    if prepared.size is not None:
        inner = inner_bytes(sealer, prepared.size)
        writers = _writers(home, drawn, destination, inner, prepared, now=now, rng=rng)
        with packet_writers(writers):
            fan = _fan(writers)
            fan(sealer.clear_part(prepared.size))
            payload = send.seal_stream(sealer, source, fan, progress)
            if payload != prepared.size:
                raise StorageError(
                    f"the file changed size while it was read ({prepared.size} -> {payload})"
                )
            committed = [writer.commit() for writer in writers]
    else:
        with _staging(home) as staging:
            payload = send.seal_stream(sealer, source, _writing(staging), progress)
            staging.seek(0)
            writers = _writers(
                home, drawn, destination, inner_bytes(sealer, payload), prepared, now=now, rng=rng
            )
            with packet_writers(writers):
                fan = _fan(writers)
                fan(sealer.clear_part(payload))
                _pump(staging, fan)
                committed = [writer.commit() for writer in writers]
    _record(home, sealer.bundle_id, writers, committed, prepared, payload_bytes=payload, now=now)
    return RoutedQueued(sealer.bundle_id, peer, prepared.kind, payload, tuple(committed))


def rehearse(home: Home, peer: Peer, *, hops: int, now: int, rng: random.Random) -> None:
    """Queue a short message for `peer` over `hops` relays in memory only: sealed, routed
    and wrapped, then dropped. Nothing is written, recorded or sent.

    rise-send's spare child runs this while it waits for a caller (node/warm.py).
    A forked child copies each of the worker's memory pages the first time it
    writes to it (reference counts are writes): a real send made 1200 such copies,
    about 4 ms on its way. A rehearsal makes them before the caller comes.
    """
    source = io.BytesIO(b"a rehearsal, never sent")
    prepared = send.prepare(home, peer, source, options=send.SendOptions(), now=now)
    sealer = prepared.sealer
    assert sealer is not None
    drawn = _draw(home, peer, hops, 1, (), prepared.kind, now=now, rng=rng)
    sealed = bytearray()
    payload = send.seal_stream(sealer, source, sealed.extend, lambda _done: None)
    inner = sealer.clear_part(payload) + bytes(sealed)
    _tokens, onion = wrap(
        drawn[0],
        RouteNode(peer.node_id, peer.card.public),
        kinds=(SlotKind.FORWARD, SlotKind.DELIVER),
        inner_bytes=inner_bytes(sealer, payload),
        expiry=prepared.expiry,
        priority=prepared.priority,
        rng=rng,
        now=now,
    )
    padding = padded_payload_bytes(inner_bytes(sealer, payload)) - len(inner)
    onion.transform(inner + bytes(max(padding, 0)))
    onion.clear()


def inner_bytes(sealer: Sealer, payload_bytes: int) -> int:
    """The direct bundle's size inside the onion, for `payload_bytes` of payload."""
    return (
        len(sealer.clear_part(payload_bytes)) + sealer.body_length(payload_bytes) - PUBLIC_KEY_BYTES
    )


def _writers(
    home: Home,
    drawn: Sequence[Sequence[RouteNode]],
    destination: RouteNode,
    inner_bytes: int,
    prepared: send.Prepared,
    *,
    now: int,
    rng: random.Random,
) -> list[PacketWriter]:
    writers: list[PacketWriter] = []
    with packet_writers(writers):
        for relays in drawn:
            writers.append(
                PacketWriter(
                    home,
                    relays,
                    destination,
                    kinds=(SlotKind.FORWARD, SlotKind.DELIVER),
                    inner_bytes=inner_bytes,
                    expiry=prepared.expiry,
                    priority=prepared.priority,
                    rng=rng,
                    now=now,
                )
            )
    return writers


def _fan(writers: Sequence[PacketWriter]) -> Callable[[bytes], None]:
    def write(block: bytes) -> None:
        for writer in writers:
            writer.write(block)

    return write


def _pump(handle: BinaryIO, write: Callable[[bytes], None]) -> None:
    while block := handle.read(BLOCK_BYTES):
        write(block)


# A sealed payload from a pipe is staged in memory up to this size, and in a file
# in spool/tmp/ beyond: a chat message costs no file (and no disk) at all.
STAGED_IN_MEMORY_BYTES = 1 << 20


@contextlib.contextmanager
def _staging(home: Home) -> Iterator[BinaryIO]:
    handle = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed below
        max_size=STAGED_IN_MEMORY_BYTES, dir=str(home.spool.tmp)
    )
    with handle:
        yield cast(BinaryIO, handle)


def _writing(staging: BinaryIO) -> Callable[[bytes], object]:
    """Writes into the staging file, whose failures (the file it rolls over into cannot
    be made, a full disk) are the storage's one-line errors."""

    def write(data: bytes) -> object:
        try:
            return staging.write(data)
        except OSError as exc:
            raise storage_error(exc, "queueing the bundle") from None

    return write


def _record(
    home: Home,
    bundle_id: BundleId,
    writers: Sequence[PacketWriter],
    copies: Sequence[Copy],
    prepared: send.Prepared,
    *,
    payload_bytes: int,
    now: int,
) -> None:
    # A receipt is the network's business, not one the user follows: no record.
    sent = (
        None
        if prepared.kind is ContentKind.RECEIPT
        else SentRow(
            bundle_id=str(bundle_id),
            recipient=str(prepared.peer.node_id),
            created=now,
            expiry=prepared.expiry,
            size=payload_bytes,
            copies=encode_copies(copies),
        )
    )
    try:
        home.bundles.list_routed(
            [(writer.entry(now=now), writer.digest.hexdigest()) for writer in writers],
            sent=sent,
            route=",".join(str(relay) for relay in copies[0].relays),
        )
    except BaseException:
        # An error must mean "not queued", or a retry would send it twice.
        for writer in writers:
            with contextlib.suppress(RiseError, OSError):
                writer.path.unlink(missing_ok=True)
        raise


def held_path(home: Home, bundle_id: BundleId) -> Path:
    return home.spool.root / HELD_DIR / f"{bundle_id}.bundle"


def _hold(
    home: Home,
    sealer: Sealer,
    source: BinaryIO,
    prepared: send.Prepared,
    *,
    hops: int,
    copies: int,
    progress: send.Progress,
) -> int:
    """Seal the end-to-end bundle into spool/held/ until a route exists."""
    path = held_path(home, sealer.bundle_id)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, "holding the bundle") from None
    with _staging(home) as staging:
        payload = send.seal_stream(sealer, source, _writing(staging), progress)
        staging.seek(0)
        with atomic_file(path, tmp_dir=home.spool.tmp, what="holding the bundle") as out:
            out.write(sealer.clear_part(payload))
            _pump(staging, out.write)
    home.fast_relay_index.hold(
        HeldRow(
            bundle_id=str(sealer.bundle_id),
            recipient=str(prepared.peer.node_id),
            hops=hops,
            copies=copies,
            expiry=prepared.expiry,
            priority=prepared.priority,
            size=payload,
            kind=int(prepared.kind),
        )
    )
    return payload


def retry_held(home: Home, *, now: int, rng: random.Random) -> list[tuple[str, str]]:
    """Try again to route every held bundle; return (bundle id, what happened)."""
    outcomes = []
    for row in home.fast_relay_index.held():
        path = held_path(home, BundleId.parse(row.bundle_id))
        peer = home.peers.by_id_text(row.recipient)
        if row.expiry <= now or peer is None or not path.exists():
            home.fast_relay_index.release_held(row.bundle_id)
            path.unlink(missing_ok=True)
            outcomes.append((row.bundle_id, "expired" if row.expiry <= now else "dropped"))
            continue
        try:
            drawn = _draw(
                home, peer, row.hops, row.copies, (), ContentKind(row.kind), now=now, rng=rng
            )
        except NoRoute:
            continue
        _send_held(home, peer, row, path, drawn, now=now, rng=rng)
        outcomes.append((row.bundle_id, "routed"))
    return outcomes


def _draw(  # noqa: PLR0917 - the route request, in the order rise-send takes it
    home: Home,
    peer: Peer,
    hops: int,
    copies: int,
    via: Sequence[str],
    kind: ContentKind,
    *,
    now: int,
    rng: random.Random,
) -> list[list[RouteNode]]:
    # --hops N means at least N relays: when the map has no route of N, one
    # or two more relays are tried (more relays never weaken the sender's
    # anonymity). A receipt also takes a shorter route rather than none.
    hops = max(hops, 1)
    if via:
        return routes.draw(home, peer, hops=hops, copies=copies, via=via, now=now, rng=rng)
    longest = min(hops + EXTRA_HOPS, MAX_ROUTE_HOPS)
    shortest = 1 if kind is ContentKind.RECEIPT else hops
    attempts = [*range(hops, longest + 1), *range(hops - 1, shortest - 1, -1)]
    first: NoRoute | None = None
    for attempt in attempts:
        try:
            return routes.draw(home, peer, hops=attempt, copies=copies, via=via, now=now, rng=rng)
        except NoRoute as exc:
            first = first or exc  # the reason for the length asked for is the one to show
    assert first is not None
    raise first


def _send_held(
    home: Home,
    peer: Peer,
    row: HeldRow,
    path: Path,
    drawn: Sequence[Sequence[RouteNode]],
    *,
    now: int,
    rng: random.Random,
) -> None:
    prepared = send.Prepared(
        peer=peer,
        sealer=None,
        kind=ContentKind(row.kind),
        size=row.size,
        expiry=row.expiry,
        priority=row.priority,
    )
    destination = RouteNode(peer.node_id, peer.card.public)
    inner_bytes = path.stat().st_size
    writers = _writers(home, drawn, destination, inner_bytes, prepared, now=now, rng=rng)
    with packet_writers(writers), open(path, "rb") as handle:
        _pump(handle, _fan(writers))
        committed = [writer.commit() for writer in writers]
    bundle_id = BundleId.parse(row.bundle_id)
    _record(home, bundle_id, writers, committed, prepared, payload_bytes=row.size, now=now)
    home.fast_relay_index.release_held(row.bundle_id)
    path.unlink(missing_ok=True)
