"""Map exchange among simulated nodes, in process: how much each learns, how many can route.

Shared by tests/core/test_map_simulation.py (targets asserted on a few seeds)
and bench/mapsim.py (a table over seeds and degrees). Everything is seeded,
and node ids are sorted wherever order meets randomness, so a seed always
gives the same run.

The model: a random connected graph of neighbours; every neighbour is a
relay; each round every node sends each neighbour `advertise(...)` and each
receiver `merge(...)`s it; a node's card carries `choose_hints(...)` as via
hints. A round is `ROUND_SECONDS` of simulated time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
import statistics
import time
from collections.abc import Iterable

from rise_dtn.core.identity import NodeId
from rise_dtn.core.routing import (
    KnownLink,
    Link,
    MapView,
    NoRoute,
    advertise,
    choose_hints,
    choose_route,
    merge,
)

ROUND_SECONDS = 3600  # one map refresh per simulated hour
START = 1_700_000_000
MAX_ROUNDS = 40
CONVERGED_CHANGE = 0.005  # mean known fraction moving less than this per round = converged

Graph = dict[NodeId, frozenset[NodeId]]


@dataclasses.dataclass(frozen=True)
class Policy:
    """The advertisement knobs (see rise_dtn/core/mapview.py for what each does)."""

    size: int = 8
    # Links a node keeps in all: it keeps budget / (its neighbours) from each map.
    knowledge_budget: int | None = 32
    max_distance: int = 2
    # A little over one round, so a learned link is still held when it is passed on,
    # and what a neighbour stopped telling lapses soon after.
    lifetime_seconds: int = ROUND_SECONDS * 11 // 10
    # Each neighbour is told the same draw for this many rounds, then a fresh one
    # (None: a fresh draw every round, as with random.SystemRandom()).
    epoch_rounds: int | None = 6
    hints: int = 3


@dataclasses.dataclass(frozen=True)
class Result:
    nodes: int
    average_degree: float
    max_known: float  # the largest fraction of the other nodes one node knew, at any time
    mean_known: float  # at the end
    routable: dict[int, float]  # hops -> fraction of sampled (S, D) pairs with a route
    full_map_routable: dict[int, float]  # the same if every node knew every link (a ceiling)
    rounds: int  # rounds until the mean known fraction settled
    mean_choice_seconds: float  # mean choose_route time (successes and failures)


def node_ids(count: int) -> list[NodeId]:
    return sorted(
        NodeId(hashlib.blake2b(f"node-{index}".encode(), digest_size=16).digest())
        for index in range(count)
    )


def random_graph(count: int, average_degree: float, rng: random.Random) -> Graph:
    """G(n, p) with p for the wanted mean degree, its components then joined by one edge each."""
    nodes = node_ids(count)
    edges: dict[NodeId, set[NodeId]] = {node: set() for node in nodes}
    chance = average_degree / (count - 1)
    for one, other in itertools.combinations(nodes, 2):
        if rng.random() < chance:
            edges[one].add(other)
            edges[other].add(one)
    components = _components(edges)
    for here, there in itertools.pairwise(components):
        one, other = rng.choice(sorted(here)), rng.choice(sorted(there))
        edges[one].add(other)
        edges[other].add(one)
    return {node: frozenset(neighbours) for node, neighbours in edges.items()}


def _components(edges: dict[NodeId, set[NodeId]]) -> list[set[NodeId]]:
    seen: set[NodeId] = set()
    found = []
    for start in sorted(edges):
        if start in seen:
            continue
        component, stack = {start}, [start]
        while stack:
            for other in edges[stack.pop()]:
                if other not in component:
                    component.add(other)
                    stack.append(other)
        seen |= component
        found.append(component)
    return found


def view_of(graph: Graph, node: NodeId, links: Iterable[KnownLink], now: int) -> MapView:
    return MapView(self_id=node, neighbours=graph[node], relays=graph[node], links=links, now=now)


def exchange(
    graph: Graph, policy: Policy, seed: int
) -> tuple[dict[NodeId, list[KnownLink]], int, int, float]:
    """Rounds of map exchange until knowledge settles, then one more epoch of rounds.

    Knowledge is measured a fifth of a round after each exchange (when the
    previous round's unrepeated links have lapsed). Returns the stored links,
    the rounds it took to settle, the instant of the last measurement and the
    largest known fraction seen at any measurement after settling.
    """
    shared = random.Random(f"{seed}:fresh")
    numbers = {node: number for number, node in enumerate(sorted(graph))}
    # stores[node][neighbour]: what node keeps from neighbour's maps (merge keys by both)
    stores: dict[NodeId, dict[NodeId, list[KnownLink]]] = {node: {} for node in graph}
    means: list[float] = []
    settled: int | None = None
    largest = 0.0
    extra = policy.epoch_rounds or 1
    for round_number in range(1, MAX_ROUNDS + 1):
        now = START + round_number * ROUND_SECONDS
        views = {node: view_of(graph, node, _flat(stores[node]), now) for node in sorted(graph)}
        for node in sorted(graph):
            for neighbour in sorted(graph[node]):
                draws = _draws(policy, seed, (numbers[node], numbers[neighbour]), round_number)
                links = advertise(
                    views[node],
                    to=neighbour,
                    size=policy.size,
                    max_distance=policy.max_distance,
                    rng=draws or shared,
                )
                stores[neighbour][node] = merge(
                    stores[neighbour].get(node, []),
                    links,
                    via=node,
                    now=now,
                    lifetime_seconds=policy.lifetime_seconds,
                    max_distance=policy.max_distance,
                    self_id=neighbour,
                    max_links=_keep(policy, len(graph[neighbour])),
                )
        measured = now + ROUND_SECONDS // 5
        known = _known(graph, {node: _flat(kept) for node, kept in stores.items()}, measured)
        means.append(statistics.fmean(known.values()))
        if (
            settled is None
            and round_number > policy.max_distance + 1
            and abs(means[-1] - means[-2]) < CONVERGED_CHANGE
        ):
            settled = round_number
        if settled is not None:
            largest = max(largest, *known.values())
            if round_number >= settled + extra:
                return (
                    {node: _flat(kept) for node, kept in stores.items()},
                    settled,
                    measured,
                    largest,
                )
    raise AssertionError(f"knowledge did not settle in {MAX_ROUNDS} rounds")


def _keep(policy: Policy, neighbours: int) -> int | None:
    if policy.knowledge_budget is None:
        return None
    return max(1, policy.knowledge_budget // neighbours)


def _flat(kept: dict[NodeId, list[KnownLink]]) -> list[KnownLink]:
    return [known for links in kept.values() for known in links]


def _draws(
    policy: Policy, seed: int, pair: tuple[int, int], round_number: int
) -> random.Random | None:
    """The draw for one neighbour: the same within an epoch, fresh in the next."""
    if policy.epoch_rounds is None:
        return None
    return random.Random(f"{seed}:{pair}:{round_number // policy.epoch_rounds}")


def _known(graph: Graph, stores: dict[NodeId, list[KnownLink]], now: int) -> dict[NodeId, float]:
    others = len(graph) - 1
    return {node: len(view_of(graph, node, stores[node], now).nodes()) / others for node in graph}


def full_map(graph: Graph, node: NodeId, now: int) -> MapView:
    """What `node` would know if every neighbour told it every link."""
    via = min(graph[node])
    links = [
        KnownLink(Link.of(one, other, 1), via, now, now + ROUND_SECONDS)
        for one in graph
        for other in graph[one]
        if one < other and node not in (one, other)
    ]
    return view_of(graph, node, links, now)


def routable(
    views: dict[NodeId, MapView],
    hints: dict[NodeId, list[NodeId]],
    pairs: list[tuple[NodeId, NodeId]],
    hops: int,
    rng: random.Random,
) -> tuple[float, float]:
    """(fraction of `pairs` that get a route of `hops` relays, mean seconds per choice)."""
    found = 0
    started = time.perf_counter()
    for sender, recipient in pairs:
        try:
            choose_route(views[sender], recipient, hints=hints[recipient], hops=hops, rng=rng)
        except NoRoute:
            continue
        found += 1
    return found / len(pairs), (time.perf_counter() - started) / len(pairs)


def simulate(
    count: int,
    average_degree: float,
    seed: int,
    *,
    policy: Policy = Policy(),
    pairs: int = 600,
    hops: Iterable[int] = (1, 2, 3),
    full_map_hops: Iterable[int] = (),
) -> Result:
    rng = random.Random(seed)
    graph = random_graph(count, average_degree, rng)
    stores, rounds, now, largest = exchange(graph, policy, seed)
    views = {node: view_of(graph, node, stores[node], now) for node in graph}
    hints = {node: choose_hints(views[node], count=policy.hints) for node in graph}
    ordered = [(one, other) for one in sorted(graph) for other in sorted(graph) if one != other]
    sample = rng.sample(ordered, min(pairs, len(ordered)))
    known = _known(graph, stores, now)
    fractions: dict[int, float] = {}
    full: dict[int, float] = {}
    seconds = []
    for hop_count in hops:
        fractions[hop_count], took = routable(views, hints, sample, hop_count, rng)
        seconds.append(took)
    full_map_hops = list(full_map_hops)
    if full_map_hops:
        full_views = {node: full_map(graph, node, now) for node in graph}
        for hop_count in full_map_hops:
            full[hop_count], _ = routable(full_views, hints, sample, hop_count, rng)
    return Result(
        nodes=count,
        average_degree=sum(len(neighbours) for neighbours in graph.values()) / count,
        max_known=largest,
        mean_known=statistics.fmean(known.values()),
        routable=fractions,
        full_map_routable=full,
        rounds=rounds,
        mean_choice_seconds=statistics.fmean(seconds),
    )


# What a receipt tells the sender about reaching its recipient (node/toss/control.py
# `_reach`): the recipient's own links and its nearest learned links, at most
# REACH_LINKS in all.
REACH_LINKS = 16


def reach_of(
    graph: Graph, node: NodeId, stored: list[KnownLink], now: int, rng: random.Random
) -> list[KnownLink]:
    via = min(graph[node])
    own = [
        KnownLink(Link.of(node, other, 0), via, now, now + ROUND_SECONDS)
        for other in sorted(graph[node])
    ]
    learned = sorted(
        stored, key=lambda known: (known.link.distance, known.learned_at, known.link.ends)
    )
    chosen = own[:REACH_LINKS]
    ends = {known.link.ends for known in chosen}
    for known in learned:
        if len(chosen) >= REACH_LINKS:
            break
        if known.link.ends not in ends:
            ends.add(known.link.ends)
            chosen.append(known)
    del rng  # the choice is deterministic: nearest first, as the node does
    return chosen


@dataclasses.dataclass(frozen=True)
class ReachResult:
    max_known: float  # of the other nodes, from map exchange alone, at any time
    routable_at_least: dict[int, float]  # N -> pairs with a route of N to N+2 relays


def simulate_with_receipts(
    count: int,
    average_degree: float,
    seed: int,
    *,
    policy: Policy = Policy(),
    pairs: int = 400,
    at_least: Iterable[int] = (1, 2),
) -> ReachResult:
    """After a first delivery each way: the sender's map plus its recipient's reach.

    rise-send draws N relays, or N+1 or N+2 when the map has no route of N
    (node/send/routed.py); a pair counts as routable if one of those exists.
    """
    rng = random.Random(seed)
    graph = random_graph(count, average_degree, rng)
    stores, _rounds, now, largest = exchange(graph, policy, seed)
    reach = {node: reach_of(graph, node, stores[node], now, rng) for node in graph}
    ordered = [(one, other) for one in sorted(graph) for other in sorted(graph) if one != other]
    sample = rng.sample(ordered, min(pairs, len(ordered)))
    found: dict[int, float] = {}
    for least in at_least:
        routed = 0
        for sender, recipient in sample:
            told = [
                KnownLink(known.link, recipient, now, now + ROUND_SECONDS)
                for known in reach[recipient]
                if not known.link.touches(sender)
            ]
            view = MapView(
                self_id=sender,
                neighbours=graph[sender] | {recipient},
                relays=graph[sender],
                links=[*stores[sender], *told],
                now=now,
            )
            for hops in range(least, least + 3):
                try:
                    choose_route(view, recipient, hints=(), hops=hops, rng=rng)
                except NoRoute:
                    continue
                routed += 1
                break
        found[least] = routed / len(sample)
    return ReachResult(max_known=largest, routable_at_least=found)
