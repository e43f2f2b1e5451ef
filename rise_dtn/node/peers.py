"""The peer book: cards this node trusts, stored as peers/<name>.card files.

Names are local aliases chosen by this node's operator; the node id inside
the card is what counts. Only nodes in the book may send to us or receive
from us (default deny).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rise_dtn.core.card import Card, check_name
from rise_dtn.core.errors import PeerError, UsageError
from rise_dtn.core.identity import NodeId
from rise_dtn.store.atomic import write_atomic

CARD_SUFFIX = ".card"
# peers/<name>.relay marks a neighbour this node may route through and take
# maps from (`rise peer add --relay`, `rise peer relay NAME on|off`).
RELAY_SUFFIX = ".relay"


@dataclasses.dataclass(frozen=True, slots=True)
class Peer:
    name: str  # local alias
    card: Card
    relay: bool = False

    @property
    def node_id(self) -> NodeId:
        return self.card.node_id


# Verified cards per peer directory, shared by every PeerBook of this process and
# inherited by its forked children: rise-daemon's send worker loads them once and
# each rise-send it runs (node/warm.py) starts with them checked.
_VERIFIED: dict[Path, tuple[int, list[Peer]]] = {}
# A directory changed this recently may change again within the same tick of the
# file system's coarse clock without its mtime moving: not kept for others.
_SETTLED_NS = 2_000_000_000


class PeerBook:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Verified cards, until the directory changes: a relay asks for its
        # peers once per packet, and each card costs a signature check.
        self._cached: tuple[int, list[Peer]] | None = None

    def _forget(self) -> None:
        self._cached = None
        _VERIFIED.pop(self.directory, None)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}{CARD_SUFFIX}"

    def all(self) -> list[Peer]:
        try:
            stamp = self.directory.stat().st_mtime_ns
        except OSError:
            stamp = -1
        if self._cached is not None and self._cached[0] == stamp and stamp != -1:
            return list(self._cached[1])
        shared = _VERIFIED.get(self.directory)
        if shared is not None and shared[0] == stamp and stamp != -1:
            self._cached = shared
            return list(shared[1])
        peers = self._load()
        self._cached = (stamp, peers)
        if stamp != -1 and time.time_ns() - stamp > _SETTLED_NS:
            _VERIFIED[self.directory] = self._cached
        return list(peers)

    def _load(self) -> list[Peer]:
        peers = []
        for path in sorted(self.directory.glob(f"*{CARD_SUFFIX}")):
            try:
                card = Card.from_text(path.read_text(encoding="utf-8"))
            except (PeerError, UnicodeDecodeError, OSError):
                continue  # a damaged card file trusts nobody; `rise-check` reports it
            name = path.name[: -len(CARD_SUFFIX)]
            peers.append(Peer(name, card, (self.directory / f"{name}{RELAY_SUFFIX}").exists()))
        return peers

    def by_id(self, node_id: NodeId) -> Peer | None:
        for peer in self.all():
            if peer.node_id == node_id:
                return peer
        return None

    def by_id_text(self, node_id: str) -> Peer | None:
        for peer in self.all():
            if str(peer.node_id) == node_id:
                return peer
        return None

    def find(self, name_or_id: str) -> Peer:
        """A peer by local name or node id, or a UsageError that lists what exists."""
        for peer in self.all():
            if name_or_id in (peer.name, str(peer.node_id)):
                return peer
        known = ", ".join(peer.name for peer in self.all()) or "none; add one with `rise peer add`"
        raise UsageError(f"unknown peer {name_or_id!r} (known: {known})")

    def add(self, card: Card, *, name: str | None, self_id: NodeId, replace: bool) -> Peer:
        alias = check_name(name or card.name, error=UsageError)
        if card.node_id == self_id:
            raise PeerError("that is this node's own card")
        for peer in self.all():
            if peer.node_id == card.node_id and peer.name != alias:
                raise UsageError(f"node {card.node_id} is already known as {peer.name!r}")
            if peer.name == alias and peer.node_id != card.node_id and not replace:
                raise UsageError(
                    f"the name {alias!r} is taken by node {peer.node_id} (use --replace or --name)"
                )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._forget()
        write_atomic(self._path(alias), card.armor().encode(), what="saving the card")
        return Peer(alias, card)

    def remove(self, name: str) -> Peer:
        peer = self.find(name)
        self._forget()
        self._path(peer.name).unlink()
        (self.directory / f"{peer.name}{RELAY_SUFFIX}").unlink(missing_ok=True)
        return peer

    def set_relay(self, name: str, *, relay: bool) -> Peer:
        """Mark or unmark a neighbour as a relay for this node's routes."""
        peer = self.find(name)
        marker = self.directory / f"{peer.name}{RELAY_SUFFIX}"
        self._forget()
        if relay:
            write_atomic(marker, b"", what="marking the relay")
        else:
            marker.unlink(missing_ok=True)
        return Peer(peer.name, peer.card, relay)
