"""Wrap an end-to-end bundle in onion packets, one per copy, into tx/<first relay>/.

The end-to-end bundle (core/bundle.py) is sealed once; each copy gets its own
freshly drawn route, ephemeral key and cancel tokens (protocol.md section 20).
The payload streams through every copy's layers in one pass, so memory stays
flat; each onion header depends on the whole payload (its per-hop tags), so
its room is reserved at the start of the file and it is written last, before
the fsync and rename that make the packet appear.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import secrets
from collections.abc import Callable, Iterator, Sequence

from rise_dtn.core import bundle
from rise_dtn.core.errors import RiseError
from rise_dtn.core.identity import NodeId, PublicIdentity
from rise_dtn.core.onion import (
    COMMITMENT_BYTES,
    Hop,
    OnionSealer,
    SlotKind,
    commitment_for,
    padded_payload_bytes,
)
from rise_dtn.node.home import Home
from rise_dtn.node.send.copies import Copy as Copy  # noqa: PLC0414 - re-exported
from rise_dtn.node.send.copies import encode_copies as encode_copies  # noqa: PLC0414
from rise_dtn.store.atomic import AtomicFile, storage_error
from rise_dtn.store.pipeline import BackgroundWriter
from rise_dtn.store.rows import EntryRow
from rise_dtn.store.transaction import SpoolDigest

BLOCK_BYTES = 1 << 20
# A hop's cleartext expiry is the bundle's, less a random part of up to a
# tenth of its lifetime (at most an hour): equal expiries would link a
# packet's hops for anyone who sees two links.
MAX_EXPIRY_JITTER_SECONDS = 3600


@dataclasses.dataclass(frozen=True, slots=True)
class RouteNode:
    """A node on a route, with the keys the onion needs."""

    node_id: NodeId
    public: PublicIdentity


class PacketWriter:
    """One onion packet being written: reserve the header, stream the payload, seal."""

    def __init__(
        self,
        home: Home,
        route: Sequence[RouteNode],
        destination: RouteNode,
        *,
        kinds: tuple[SlotKind, SlotKind],
        inner_bytes: int,
        expiry: int,
        priority: int,
        rng: random.Random,
        now: int,
        tokens: tuple[bytes, ...] | None = None,
    ) -> None:
        self.tokens, self.sealer = wrap(
            route,
            destination,
            kinds=kinds,
            inner_bytes=inner_bytes,
            expiry=expiry,
            priority=priority,
            rng=rng,
            now=now,
            tokens=tokens,
        )
        self.priority = priority
        self.inner_bytes = inner_bytes
        self.payload_bytes = padded_payload_bytes(inner_bytes)
        self.first_hop = route[0].node_id if route else destination.node_id
        self.relays = tuple(node.node_id for node in route)
        tx_dir = home.spool.tx_dir(self.first_hop)
        try:
            tx_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path = home.spool.bundle_path(tx_dir, self.sealer.bundle_id)
            self._out = AtomicFile(self.path, tmp_dir=home.spool.tmp)
            self._out.write(bytes(self.sealer.clear_bytes))
        except OSError as exc:
            raise storage_error(exc, "queueing the packet") from None
        self._fed = 0
        self.digest = SpoolDigest()  # complete once committed
        # The disk write and the digest run on the other core while this
        # thread seals the next block through every layer: hashlib and the
        # kernel let go of the GIL, so a large send takes the longer of the
        # two instead of their sum (bench/README.md, relay figures).
        # A payload of one block (a message) has nothing to overlap: no thread to
        # start and join, milliseconds on a loaded machine, on every message's way.
        self._writing = contextlib.ExitStack()
        self._put: Callable[[bytes], None] = (
            self._keep
            if self.payload_bytes <= BLOCK_BYTES
            else self._writing.enter_context(BackgroundWriter(self._keep))
        )

    @property
    def packet_bytes(self) -> int:
        return self.sealer.clear_bytes + self.payload_bytes

    def entry(self, *, now: int) -> EntryRow:
        """The index row of the committed packet in tx/<first hop>/."""
        return EntryRow(
            bundle_id=str(self.sealer.bundle_id),
            direction="tx",
            neighbour=str(self.first_hop),
            size=self.packet_bytes,
            expiry=self.sealer.first_expiry,
            priority=self.priority,
            queued_at=now,
        )

    def write(self, block: bytes) -> None:
        self._fed += len(block)
        self._put(self.sealer.transform(block))

    def _keep(self, sealed: bytes) -> None:
        self._out.write(sealed)
        self.digest.body.update(sealed)

    def commit(self) -> Copy:
        """Pad, write the header into its room, fsync and rename into tx/."""
        padding = self.payload_bytes - self._fed
        if padding < 0:
            raise ValueError("more payload than announced")
        try:
            while padding:
                block = min(padding, BLOCK_BYTES)
                self._put(self.sealer.transform(bytes(block)))
                padding -= block
            self._writing.close()  # every block written and hashed (or its error raised)
            clear = self.sealer.clear()
            self.digest.head.update(clear)
            os.pwrite(self._out.fileno(), clear, 0)
            self._out.commit()
        except OSError as exc:
            self._out.abort()
            raise storage_error(exc, "queueing the packet") from None
        return Copy(self.first_hop, self.sealer.bundle_id, self.relays, self.tokens)

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the writer's error, if any: the packet goes
            self._writing.close()
        self._out.abort()


def wrap(
    route: Sequence[RouteNode],
    destination: RouteNode,
    *,
    kinds: tuple[SlotKind, SlotKind],
    inner_bytes: int,
    expiry: int,
    priority: int,
    rng: random.Random,
    now: int,
    tokens: tuple[bytes, ...] | None = None,
) -> tuple[tuple[bytes, ...], OnionSealer]:
    """One copy's onion, in memory: its cancel tokens and the sealer its payload goes
    through (a PacketWriter writes it; rise-send's spare child rehearses it)."""
    forward, last = kinds
    nodes = [*route, destination] if last is SlotKind.DELIVER else list(route)
    # Data packets get fresh cancel tokens; a cancel carries the stored ones.
    tokens = tokens or tuple(secrets.token_bytes(COMMITMENT_BYTES) for _ in route)
    jitter_range = max(1, min((expiry - now) // 10, MAX_EXPIRY_JITTER_SECONDS))
    hops = []
    for position, node in enumerate(nodes):
        is_last = position == len(nodes) - 1
        if last is SlotKind.DELIVER:
            commitment = (
                secrets.token_bytes(COMMITMENT_BYTES)
                if is_last
                else commitment_for(tokens[position])
            )
        else:
            commitment = tokens[position]  # a cancel carries the tokens themselves
        hops.append(
            Hop(
                node.node_id,
                node.public.exchange_public,
                last if is_last else forward,
                max(now + 1, expiry - rng.randrange(jitter_range)),
                priority,
                commitment,
            )
        )
    sealer = OnionSealer(
        hops,
        slots=len(hops),
        payload_bytes=padded_payload_bytes(inner_bytes),
        ephemeral_secret=secrets.token_bytes(32),
        filler=secrets.token_bytes(len(hops) * bundle.SLOT_BYTES),
    )
    return tokens, sealer


@contextlib.contextmanager
def packet_writers(writers: list[PacketWriter]) -> Iterator[None]:
    """Abort every writer that did not commit (an error must mean "nothing queued")."""
    try:
        yield
    except BaseException:
        for writer in writers:
            writer.abort()
            with contextlib.suppress(RiseError, OSError):
                writer.path.unlink(missing_ok=True)
        raise
