"""The partial map a node keeps: links it learned, and what it tells each neighbour.

RISE routing (DESIGN.md, "Routing") lets each node know its neighbours plus
the links that relay neighbours chose to tell it. This module holds that
knowledge (`KnownLink`, `MapView`), folds a received map into it (`merge`)
and picks the bounded random subset to tell one neighbour (`advertise`).

The advertisement policy is what keeps knowledge compartmentalised:
- a node tells each neighbour at most `size` links, a random draw made
  independently per neighbour, so two neighbours get different subsets;
- its own links (itself to its neighbours, distance 0) go first, then links
  it learned, which travel at most `max_distance` advertisements from an
  endpoint (each receiver adds 1 to the distance and drops what is beyond);
- learned entries expire after `lifetime_seconds`: set it a little above
  the refresh period, so a link is still held when it is passed on and what
  a neighbour stopped telling is soon forgotten;
- a draw repeats within an epoch when the caller seeds the rng per
  (neighbour, epoch), so refreshes do not leak a little more each time;
- a receiver keeps at most its knowledge budget / its neighbours links from
  each map (`merge(max_links=...)`), so a well-connected node learns no more
  in all than a sparse one.
bench/mapsim.py measures what this buys (known fraction vs routable pairs).

Pure: no clock, no randomness of its own (`now` and an `Rng` come in), no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, MutableSequence
from typing import Any, Protocol

from rise_dtn.core.identity import NodeId


class Rng(Protocol):
    """The randomness routing needs: `random.SystemRandom()` or a seeded `random.Random`."""

    def randrange(self, stop: int, /) -> int: ...

    def shuffle(self, items: MutableSequence[Any], /) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    """An undirected link between two nodes, as advertised in a map bundle.

    `distance` is how many advertisements the link is away from one of its
    endpoints: 0 when an endpoint tells it, +1 each time it is passed on.
    The endpoints are stored in order (`a < b`); build one with `of`.
    """

    a: NodeId
    b: NodeId
    distance: int

    def __post_init__(self) -> None:
        if not self.a < self.b:
            raise ValueError("a link joins two different nodes, in order (use Link.of)")
        if self.distance < 0:
            raise ValueError("a link distance is not negative")

    @classmethod
    def of(cls, one: NodeId, other: NodeId, distance: int) -> Link:
        return cls(min(one, other), max(one, other), distance)

    @property
    def ends(self) -> tuple[NodeId, NodeId]:
        return (self.a, self.b)

    def touches(self, node: NodeId) -> bool:
        return node in (self.a, self.b)


@dataclasses.dataclass(frozen=True, slots=True)
class KnownLink:
    """A link as this node stored it: who told us, when, and until when it holds."""

    link: Link  # distance as stored: the advertised distance + 1
    via: NodeId  # the neighbour whose map carried it
    learned_at: int  # seconds since the epoch
    expiry: int  # seconds since the epoch; ignored from this instant on


@dataclasses.dataclass(frozen=True, slots=True)
class NumberedMap:
    """A map's nodes (not the node itself) numbered in id order, links as numbers.

    Route searches work on this form: hashing a node id costs far more than
    indexing a list.
    """

    nodes: tuple[NodeId, ...]
    number: Mapping[NodeId, int]
    adjacent: tuple[tuple[int, ...], ...]  # adjacent[i]: the numbers linked to node i


class MapView:
    """An immutable snapshot of one node's map at `now`, built by the node layer.

    Relays must be neighbours. A learned link is ignored when it has expired,
    when it touches this node (our own links come from the peer book, not
    from hearsay), or when the neighbour that told it is no longer one.
    """

    __slots__ = (
        "_adjacent",
        "_distance",
        "_learned",
        "_names",
        "_numbered",
        "_told_by",
        "neighbours",
        "relays",
        "self_id",
    )

    def __init__(
        self,
        *,
        self_id: NodeId,
        neighbours: Iterable[NodeId],
        relays: Iterable[NodeId],
        links: Iterable[KnownLink],
        now: int,
        names: Mapping[NodeId, str] | None = None,
    ) -> None:
        self.self_id = self_id
        self.neighbours = frozenset(neighbours) - {self_id}
        self.relays = frozenset(relays)
        if not self.relays <= self.neighbours:
            raise ValueError("every relay must be a neighbour")
        self._names = dict(names or {})
        self._numbered: NumberedMap | None = None
        self._learned: list[Link] | None = None
        self._adjacent: dict[NodeId, set[NodeId]] = {self_id: set(self.neighbours)}
        for neighbour in self.neighbours:
            self._adjacent.setdefault(neighbour, set()).add(self_id)
        self._distance: dict[tuple[NodeId, NodeId], int] = {}
        self._told_by: dict[tuple[NodeId, NodeId], set[NodeId]] = {}
        for known in links:
            link = known.link
            if known.expiry <= now or link.touches(self_id) or known.via not in self.neighbours:
                continue
            ends = link.ends
            self._distance[ends] = min(link.distance, self._distance.get(ends, link.distance))
            self._told_by.setdefault(ends, set()).add(known.via)
            self._adjacent.setdefault(link.a, set()).add(link.b)
            self._adjacent.setdefault(link.b, set()).add(link.a)

    def nodes(self) -> set[NodeId]:
        """Every node this map knows of (neighbours and link endpoints), not this node."""
        return set(self._adjacent) - {self.self_id}

    def adjacent(self, node: NodeId) -> set[NodeId]:
        """The nodes known to be linked to `node` (for this node: its neighbours)."""
        return set(self._adjacent.get(node, ()))

    def degree(self, node: NodeId) -> int:
        """How many links of `node` this map knows."""
        return len(self._adjacent.get(node, ()))

    def learned(self) -> list[Link]:
        """The learned links, each once, at the shortest distance any neighbour told it."""
        if self._learned is None:
            self._learned = [Link(a, b, distance) for (a, b), distance in self._distance.items()]
        return list(self._learned)

    def told_by(self, link: Link) -> frozenset[NodeId]:
        """The neighbours whose maps carried `link` (empty for an unknown link)."""
        return frozenset(self._told_by.get(link.ends, ()))

    def numbered(self) -> NumberedMap:
        """The numbered form of this map (computed once)."""
        if self._numbered is None:
            nodes = tuple(sorted(self.nodes()))
            number = {node: index for index, node in enumerate(nodes)}
            adjacent = tuple(
                tuple(sorted(number[other] for other in self._adjacent[node] if other in number))
                for node in nodes
            )
            self._numbered = NumberedMap(nodes, number, adjacent)
        return self._numbered

    def name(self, node: NodeId) -> str:
        """How to name `node` to the user: its peer name if it has one, else its id."""
        return self._names.get(node, str(node))


def advertise(
    view: MapView,
    *,
    to: NodeId,
    size: int,
    max_distance: int,
    rng: Rng,
) -> list[Link]:
    """The links to tell neighbour `to`: at most `size`, a random draw from what may be told.

    Own links come first (they are what makes this node reachable), then
    learned links whose distance is below `max_distance` (the receiver adds 1).
    Never told to `to`: links touching `to` (it knows its own links from its
    peer book), and links only `to` told us (echoing them back wastes a slot
    and would keep alive links that `to` itself stopped advertising).

    The draw ranks links by a hash keyed with one number from `rng`. A
    `random.SystemRandom()` makes a fresh subset every call; a `random.Random`
    seeded per (neighbour, epoch) re-tells the same subset, even as the map
    changes a little, until the epoch turns, so a neighbour does not learn a
    little more with every refresh.
    """
    if to not in view.neighbours:
        raise ValueError("maps are only sent to neighbours")
    key = rng.randrange(1 << 64).to_bytes(8, "big")

    def rank(link: Link) -> bytes:
        return hashlib.blake2b(link.a.raw + link.b.raw, digest_size=8, key=key).digest()

    own = [Link.of(view.self_id, node, 0) for node in view.neighbours if node != to]
    learned = [
        link
        for link in view.learned()
        if link.distance < max_distance
        and not link.touches(to)
        and view.told_by(link) != frozenset({to})
    ]
    chosen = sorted(own, key=rank)[:size]
    return chosen + sorted(learned, key=rank)[: size - len(chosen)]


def merge(
    existing: Iterable[KnownLink],
    received: Iterable[Link],
    *,
    via: NodeId,
    now: int,
    lifetime_seconds: int,
    max_distance: int,
    self_id: NodeId,
    max_links: int | None = None,
) -> list[KnownLink]:
    """Fold the map that neighbour `via` sent into the stored links.

    Received links are stored one advertisement further away (distance + 1)
    and dropped beyond `max_distance`; links touching this node are dropped
    (the peer book knows our own links). A link `via` told before is
    refreshed: new distance, new expiry. Expired entries are dropped.
    One entry per (link, neighbour), so a link one neighbour stops telling
    still holds while another keeps telling it.

    `max_links` keeps at most that many links of this map, nearest first
    (then in the order sent, which is the sender's random draw). A node that
    passes its knowledge budget divided by its number of neighbours learns
    about that budget in all, however many neighbours it has; only it knows
    that number, so the cap is the receiver's to apply.
    """
    kept: dict[tuple[NodeId, NodeId, NodeId], KnownLink] = {}
    for known in existing:
        if known.expiry > now:
            kept[(*known.link.ends, known.via)] = known
    wanted = [
        link for link in received if link.distance + 1 <= max_distance and not link.touches(self_id)
    ]
    wanted.sort(key=lambda link: link.distance)
    for link in wanted[:max_links]:
        distance = link.distance + 1
        kept[(*link.ends, via)] = KnownLink(
            link=Link(link.a, link.b, distance),
            via=via,
            learned_at=now,
            expiry=now + lifetime_seconds,
        )
    return list(kept.values())
