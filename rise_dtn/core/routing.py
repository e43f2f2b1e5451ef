"""Route choice: a fresh random chain of relays to a recipient, through the partial map.

A route from this node S to recipient D with `hops` relays is [R1, ..., Rh]:
distinct nodes, none of them S or D, R1 a relay neighbour of S, each
(Ri, Ri+1) a link in S's map, and Rh adjacent to D (a map link, or a via
hint on D's card). That D may be S's own neighbour does not matter: the
bundle still goes through relays.

Every bundle gets its own draw (DESIGN.md, "Routing"): `choose_route` picks
uniformly among the valid routes by counting walks through the map and
drawing one in proportion, rejecting walks that revisit a node; only when
rejection keeps failing does it fall back to a randomised depth-first search
that is exhaustive (pruned by the same counts, bounded by a step budget), so
"no route" means there is none. Pure: the caller passes the `Rng` and the map.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence

from rise_dtn.core.errors import UsageError
from rise_dtn.core.identity import NodeId
from rise_dtn.core.mapview import KnownLink, Link, MapView, Rng, advertise, merge

__all__ = [
    "MAX_HOPS",
    "KnownLink",
    "Link",
    "MapView",
    "NoRoute",
    "Rng",
    "advertise",
    "check_via",
    "choose_disjoint_routes",
    "choose_hints",
    "choose_route",
    "merge",
]

MAX_HOPS = 8  # more relays add latency and onion overhead without hiding the sender better
SAMPLE_ATTEMPTS = 32  # uniform draws tried before the exhaustive search takes over
# Depth-first steps before giving up. On random sparse maps of 200 nodes the
# search never needed more than ~100 at any hop count up to 8; the bound only
# stops a pathological dense map from taking seconds.
SEARCH_BUDGET_STEPS = 200_000
DISJOINT_ATTEMPTS = 16  # greedy rounds tried when looking for node-disjoint routes


class NoRoute(UsageError):
    """No route as asked exists in this node's map; the message says why."""


class _SearchExhausted(Exception):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class _Problem:
    """The search space of one route, with nodes numbered (hashing node ids is slow).

    Node i is `nodes[i]`; nodes are sorted, so seeded draws stay repeatable.
    """

    nodes: Sequence[NodeId]  # every node of the map; some may be unusable
    number: Mapping[NodeId, int]
    usable: int  # how many nodes may be relays: not the recipient, not avoided
    first: list[int]  # usable relay neighbours
    last: frozenset[int]  # usable nodes adjacent to the recipient
    adjacent: Sequence[Sequence[int]]  # map links among usable nodes
    hops: int

    def numbered(self, route: Sequence[NodeId]) -> list[int]:
        return [self.number.get(node, -1) for node in route]


def choose_route(
    view: MapView,
    recipient: NodeId,
    *,
    hints: Iterable[NodeId],
    hops: int,
    rng: Rng,
    avoid: Iterable[NodeId] = (),
    previous: Sequence[NodeId] | None = None,
) -> list[NodeId]:
    """A random route of `hops` relays to `recipient`, different from `previous` if possible.

    Raises NoRoute with the reason when the map holds no such route.
    """
    problem = _problem(view, recipient, hints=hints, hops=hops, avoid=avoid)
    counts = _walk_counts(problem)
    if not any(counts[0][node] for node in problem.first):
        raise NoRoute(_why_not(view, recipient, problem))
    prior = problem.numbered(previous) if previous is not None else None
    for _ in range(SAMPLE_ATTEMPTS):
        route = _draw(problem, counts, rng)
        if len(set(route)) == hops and route != prior:
            return [problem.nodes[node] for node in route]
    try:
        found = _search(problem, counts, rng, skip=prior)
    except _SearchExhausted:
        raise NoRoute(
            f"gave up looking for a route of {hops} relays to {view.name(recipient)}"
            f" after {SEARCH_BUDGET_STEPS} steps; try fewer --hops"
        ) from None
    if found is not None:
        return [problem.nodes[node] for node in found]
    if prior is not None and _is_route(problem, prior):
        return list(previous or ())  # the only route there is
    raise NoRoute(_why_not(view, recipient, problem))


def choose_disjoint_routes(
    view: MapView,
    recipient: NodeId,
    *,
    hints: Iterable[NodeId],
    hops: int,
    copies: int,
    rng: Rng,
) -> list[list[NodeId]]:
    """`copies` routes to `recipient` that share no relay, or NoRoute saying how many exist.

    Greedy: draw a route, avoid its relays, draw the next; repeated a few
    times from fresh draws, keeping the best. Finding the true maximum of
    fixed-length disjoint routes is a hard problem; the message says "found".
    """
    if copies < 1:
        raise UsageError(f"--copies must be at least 1, not {copies}")
    given_hints = list(hints)
    best: list[list[NodeId]] = []
    for _ in range(DISJOINT_ATTEMPTS):
        routes: list[list[NodeId]] = []
        used: set[NodeId] = set()
        while len(routes) < copies:
            try:
                route = choose_route(
                    view, recipient, hints=given_hints, hops=hops, rng=rng, avoid=used
                )
            except NoRoute:
                if not routes:
                    raise  # not even one route: its reason is the one to give
                break
            routes.append(route)
            used.update(route)
        if len(routes) == copies:
            return routes
        best = max(best, routes, key=len)
    were = "route was" if len(best) == 1 else "routes were"
    raise NoRoute(
        f"only {len(best)} node-disjoint {were} found with {hops} relays to"
        f" {view.name(recipient)}; --copies {copies} needs {copies}"
    )


def check_via(
    view: MapView, recipient: NodeId, *, hints: Iterable[NodeId], via: Sequence[NodeId]
) -> list[NodeId]:
    """Validate a route the user forced with --via; NoRoute names the first broken step."""
    route = list(via)
    if not 1 <= len(route) <= MAX_HOPS:
        raise NoRoute(f"--via names {len(route)} relays; a route has 1 to {MAX_HOPS}")
    seen: set[NodeId] = set()
    for node in route:
        if node == view.self_id:
            raise NoRoute("--via cannot include this node itself")
        if node == recipient:
            raise NoRoute(f"--via cannot include the recipient {view.name(recipient)}")
        if node in seen:
            raise NoRoute(f"relay {view.name(node)} appears twice in --via")
        seen.add(node)
    first = route[0]
    if first not in view.neighbours:
        raise NoRoute(f"relay {view.name(first)} in --via is not a neighbour of this node")
    if first not in view.relays:
        raise NoRoute(f"neighbour {view.name(first)} in --via is not marked as a relay")
    for before, after in itertools.pairwise(route):
        if after not in view.adjacent(before):
            raise NoRoute(
                f"relay {view.name(after)} in --via is not a neighbour of"
                f" {view.name(before)} in the map"
            )
    last = route[-1]
    if last not in set(hints) and last not in view.adjacent(recipient):
        raise NoRoute(
            f"relay {view.name(last)} in --via is not adjacent to {view.name(recipient)}"
            " (not a via hint on its card, no link in the map)"
        )
    return route


def choose_hints(view: MapView, *, count: int) -> list[NodeId]:
    """Via hints for this node's own card: its best-connected relays in its map.

    Senders route to a hint only if their map reaches it, and well-connected
    relays are the ones most maps reach. Deterministic, so a card does not
    change each time it is printed.
    """
    return sorted(view.relays, key=lambda relay: (-view.degree(relay), relay))[:count]


def _problem(
    view: MapView, recipient: NodeId, *, hints: Iterable[NodeId], hops: int, avoid: Iterable[NodeId]
) -> _Problem:
    if not 1 <= hops <= MAX_HOPS:
        raise UsageError(f"--hops must be 1 to {MAX_HOPS}, not {hops}")
    if recipient == view.self_id:
        raise NoRoute("the recipient is this node itself; there is nothing to route")
    numbered = view.numbered()
    number = numbered.number
    banned = {number[node] for node in {recipient, *avoid} if node in number}
    adjacent: Sequence[Sequence[int]] = numbered.adjacent
    if banned:
        adjacent = [
            () if node in banned else [other for other in others if other not in banned]
            for node, others in enumerate(adjacent)
        ]

    def usable(nodes: Iterable[NodeId]) -> list[int]:
        found = (number.get(node) for node in nodes)
        return sorted(index for index in found if index is not None and index not in banned)

    return _Problem(
        nodes=numbered.nodes,
        number=number,
        usable=len(numbered.nodes) - len(banned),
        first=usable(view.relays),
        last=frozenset(usable({*hints, *view.adjacent(recipient)})),
        adjacent=adjacent,
        hops=hops,
    )


def _walk_counts(problem: _Problem) -> list[list[int]]:
    """counts[i][node]: walks that put `node` at position i and end next to the recipient.

    Walks may revisit nodes, so a count is an upper bound on routes: zero
    proves there is none through that node, which prunes the search exactly.
    """
    size = len(problem.nodes)
    following = [1 if node in problem.last else 0 for node in range(size)]
    counts = [following]
    for _ in range(problem.hops - 1):
        following = [sum(following[other] for other in others) for others in problem.adjacent]
        counts.append(following)
    counts.reverse()
    return counts


def _draw(problem: _Problem, counts: list[list[int]], rng: Rng) -> list[int]:
    """One walk, uniform among all walks (so uniform among routes once revisits are rejected)."""
    route = [_weighted(problem.first, counts[0], rng)]
    for position in range(1, problem.hops):
        route.append(_weighted(problem.adjacent[route[-1]], counts[position], rng))
    return route


def _weighted(candidates: Sequence[int], weights: Sequence[int], rng: Rng) -> int:
    pick = rng.randrange(sum(weights[node] for node in candidates))
    for node in candidates:
        pick -= weights[node]
        if pick < 0:
            return node
    raise AssertionError("weights changed during a draw")


def _search(
    problem: _Problem, counts: list[list[int]], rng: Rng, *, skip: list[int] | None
) -> list[int] | None:
    """Exhaustive randomised depth-first search for a route other than `skip`."""
    route: list[int] = []
    steps = 0

    def extend(position: int, candidates: Sequence[int]) -> bool:
        nonlocal steps
        options = [node for node in candidates if counts[position][node] and node not in route]
        rng.shuffle(options)
        for node in options:
            steps += 1
            if steps > SEARCH_BUDGET_STEPS:
                raise _SearchExhausted
            route.append(node)
            if position == problem.hops - 1:
                if route != skip:
                    return True
            elif extend(position + 1, problem.adjacent[node]):
                return True
            route.pop()
        return False

    return route if extend(0, problem.first) else None


def _is_route(problem: _Problem, route: Sequence[int]) -> bool:
    return (
        len(route) == problem.hops
        and -1 not in route
        and len(set(route)) == len(route)
        and route[0] in problem.first
        and route[-1] in problem.last
        and all(after in problem.adjacent[before] for before, after in itertools.pairwise(route))
    )


def _why_not(view: MapView, recipient: NodeId, problem: _Problem) -> str:
    """One line saying why the map holds no route of `problem.hops` relays."""
    name, hops = view.name(recipient), problem.hops
    if not view.relays:
        return (
            "this node has no relay neighbours; a route starts at a neighbour marked as a "
            "relay (rise peer add --relay CARD)"
        )
    if not problem.first:
        return f"no relay neighbour is left to start a route to {name}"
    if not problem.last:
        return f"no known relay reaches {name}: no usable via hint on its card, no link in the map"
    if problem.usable < hops:
        known = problem.usable
        counted = "1 relay is" if known == 1 else f"{known} relays are"
        return f"only {counted} known; --hops {hops} needs {hops}"
    shortest = _shortest(problem)
    if shortest is None:
        return f"no chain of known links leads from a relay neighbour to a relay next to {name}"
    if shortest > hops:
        return f"the shortest known route to {name} has {shortest} relays; --hops {hops} is too few"
    return (
        f"no known route of exactly {hops} different relays reaches {name}"
        f" (the shortest has {shortest})"
    )


def _shortest(problem: _Problem) -> int | None:
    """The fewest relays on any route (breadth-first from the relay neighbours)."""
    frontier, seen, relays = list(problem.first), set(problem.first), 1
    while frontier:
        if problem.last.intersection(frontier):
            return relays
        frontier = list(
            dict.fromkeys(
                other for node in frontier for other in problem.adjacent[node] if other not in seen
            )
        )
        seen.update(frontier)
        relays += 1
    return None
