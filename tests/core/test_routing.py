"""Route choice and map exchange: rise_dtn.core.routing and rise_dtn.core.mapview."""

from __future__ import annotations

import collections
import hashlib
import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rise_dtn.core import routing
from rise_dtn.core.errors import UsageError
from rise_dtn.core.identity import NodeId
from rise_dtn.core.routing import (
    MAX_HOPS,
    KnownLink,
    Link,
    MapView,
    NoRoute,
    advertise,
    check_via,
    choose_disjoint_routes,
    choose_hints,
    choose_route,
    merge,
)
from tests.properties import examples

NOW = 1_700_000_000
LATER = NOW + 3600


def nid(name: str) -> NodeId:
    return NodeId(hashlib.blake2b(name.encode(), digest_size=16).digest())


NAMES = {nid(name): name for name in ["s", "d", *(f"r{index}" for index in range(20))]}


def known(one: str, other: str, via: str, *, distance: int = 1, expiry: int = LATER) -> KnownLink:
    return KnownLink(Link.of(nid(one), nid(other), distance), nid(via), NOW, expiry)


def make_view(
    neighbours: str,
    links: str = "",
    *,
    relays: str | None = None,
    now: int = NOW,
    extra: tuple[KnownLink, ...] = (),
) -> MapView:
    """View of node "s": `links` like "r1-r2 r2-r3", each told by the first neighbour."""
    told_by = neighbours.split(maxsplit=1)[0]
    pairs = [pair.split("-") for pair in links.split()]
    return MapView(
        self_id=nid("s"),
        neighbours=[nid(name) for name in neighbours.split()],
        relays=[nid(name) for name in (neighbours if relays is None else relays).split()],
        links=[known(one, other, told_by) for one, other in pairs] + list(extra),
        now=now,
        names=NAMES,
    )


def names(route: list[NodeId]) -> list[str]:
    return [NAMES[node] for node in route]


def test_link_orders_its_ends_and_refuses_nonsense() -> None:
    one, other = nid("r1"), nid("r2")
    assert Link.of(one, other, 0) == Link.of(other, one, 0)
    assert Link.of(one, other, 2).ends == (min(one, other), max(one, other))
    with pytest.raises(ValueError):
        Link(max(one, other), min(one, other), 0)
    with pytest.raises(ValueError):
        Link.of(one, one, 0)
    with pytest.raises(ValueError):
        Link.of(one, other, -1)


def test_view_knows_neighbours_and_live_links_only() -> None:
    view = make_view(
        "r1 r2",
        "r1-r3",
        extra=(
            known("r3", "r4", "r1", expiry=NOW),  # expired at this instant
            known("r4", "r5", "r9"),  # told by someone no longer a neighbour
            known("s", "r6", "r1"),  # hearsay about our own links
            known("r3", "r7", "r2", distance=2),
            known("r3", "r7", "r1", distance=1),
        ),
    )
    assert view.nodes() == {nid(name) for name in ["r1", "r2", "r3", "r7"]}
    assert view.adjacent(nid("s")) == {nid("r1"), nid("r2")}
    assert view.adjacent(nid("r3")) == {nid("r1"), nid("r7")}
    assert view.adjacent(nid("r5")) == set()
    assert Link.of(nid("r3"), nid("r7"), 1) in view.learned()  # the shortest telling
    assert view.told_by(Link.of(nid("r3"), nid("r7"), 0)) == {nid("r1"), nid("r2")}
    assert view.name(nid("r3")) == "r3"
    assert view.name(nid("x")) == str(nid("x"))
    with pytest.raises(ValueError):
        make_view("r1", relays="r2")


def test_route_goes_from_a_relay_neighbour_to_a_relay_next_to_the_recipient() -> None:
    view = make_view("r1 r2", "r1-r3 r3-r4 r4-d")
    rng = random.Random(1)
    assert names(choose_route(view, nid("d"), hints=[], hops=3, rng=rng)) == ["r1", "r3", "r4"]
    assert names(choose_route(view, nid("d"), hints=[nid("r3")], hops=2, rng=rng)) == ["r1", "r3"]
    assert names(choose_route(view, nid("d"), hints=[nid("r2")], hops=1, rng=rng)) == ["r2"]


def test_a_neighbour_recipient_is_still_reached_through_relays() -> None:
    view = make_view("d r1", "r1-r2", relays="r1")
    route = choose_route(view, nid("d"), hints=[nid("r2")], hops=2, rng=random.Random(0))
    assert names(route) == ["r1", "r2"]


def test_a_neighbour_not_marked_relay_never_starts_a_route() -> None:
    view = make_view("r1 r2", "r1-r3 r2-r3", relays="r1")
    for seed in range(20):
        route = choose_route(view, nid("d"), hints=[nid("r3")], hops=2, rng=random.Random(seed))
        assert names(route) == ["r1", "r3"]


@pytest.mark.parametrize(
    "case",
    [
        (
            "r1",
            "r1-r2",
            "",
            ["r2"],
            2,
            "no relay neighbours; a route starts at a neighbour "
            "marked as a relay (rise peer add --relay CARD)",
        ),
        ("r1", "r1-r2", None, [], 2, "no known relay reaches d"),
        ("r1", "", None, ["r1"], 2, "only 1 relay is known; --hops 2 needs 2"),
        ("r1", "r1-r2 r2-r3", None, ["r3"], 2, "has 3 relays; --hops 2 is too few"),
        (
            "r1",
            "r1-r2",
            None,
            ["r1"],
            2,
            "exactly 2 different relays reaches d (the shortest has 1)",
        ),
        ("r1", "r2-r3", None, ["r3"], 2, "no chain of known links leads"),
        ("d", "d-r1", None, ["r1"], 1, "no relay neighbour is left to start a route to d"),
    ],
)
def test_no_route_says_why(case: tuple[str, str, str | None, list[str], int, str]) -> None:
    neighbours, links, relays, hints, hops, reason = case
    view = make_view(neighbours, links, relays=relays)
    with pytest.raises(NoRoute, match=reason.replace("(", r"\(").replace(")", r"\)")):
        choose_route(view, nid("d"), hints=[nid(h) for h in hints], hops=hops, rng=random.Random())


def test_hops_out_of_range_and_routes_to_oneself_are_usage_errors() -> None:
    view = make_view("r1", "r1-d")
    for hops in (0, MAX_HOPS + 1):
        with pytest.raises(UsageError, match="--hops must be 1 to 8"):
            choose_route(view, nid("d"), hints=[], hops=hops, rng=random.Random())
    with pytest.raises(NoRoute, match="this node itself"):
        choose_route(view, nid("s"), hints=[], hops=1, rng=random.Random())
    assert issubclass(NoRoute, UsageError)


def test_a_new_route_differs_from_the_previous_one_when_another_exists() -> None:
    view = make_view("r1 r2", "r1-r3 r2-r3")
    previous = [nid("r1"), nid("r3")]
    for seed in range(50):
        route = choose_route(
            view, nid("d"), hints=[nid("r3")], hops=2, rng=random.Random(seed), previous=previous
        )
        assert names(route) == ["r2", "r3"]
    lonely = make_view("r1", "r1-r3")
    route = choose_route(
        lonely, nid("d"), hints=[nid("r3")], hops=2, rng=random.Random(), previous=previous
    )
    assert route == previous  # the only route there is


def test_previous_is_avoided_by_the_exhaustive_search_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "SAMPLE_ATTEMPTS", 0)
    view = make_view("r1 r2", "r1-r3 r2-r3")
    for seed in range(20):
        route = choose_route(
            view,
            nid("d"),
            hints=[nid("r3")],
            hops=2,
            rng=random.Random(seed),
            previous=[nid("r2"), nid("r3")],
        )
        assert names(route) == ["r1", "r3"]


@pytest.mark.parametrize("hints", [["r3", "r4"], ["r1", "r3", "r4"]])
def test_routes_are_drawn_uniformly(hints: list[str]) -> None:
    # With r1 as a hint too, some walks revisit r1 and are rejected: still uniform.
    view = make_view("r1 r2", "r1-r3 r1-r4 r2-r3 r2-r4 r1-r2 r3-r4")
    raw = {"links": _links("r1-r3 r1-r4 r2-r3 r2-r4 r1-r2 r3-r4"), "relays": {nid("r1"), nid("r2")}}
    ids = [nid(name) for name in hints]
    expected = {tuple(route) for route in every_route(view, ids, 3, raw)}
    rng = random.Random(7)
    draws = 6000
    seen = collections.Counter(
        tuple(choose_route(view, nid("d"), hints=ids, hops=3, rng=rng)) for _ in range(draws)
    )
    assert set(seen) == expected
    mean = draws / len(expected)
    assert all(0.8 * mean < count < 1.2 * mean for count in seen.values()), seen


def _links(text: str) -> set[frozenset[NodeId]]:
    return {frozenset(nid(name) for name in pair.split("-")) for pair in text.split()}


def test_avoided_nodes_are_not_used() -> None:
    view = make_view("r1 r2", "r1-r3 r2-r3 r2-r4")
    for seed in range(20):
        route = choose_route(
            view,
            nid("d"),
            hints=[nid("r3"), nid("r4")],
            hops=2,
            rng=random.Random(seed),
            avoid=[nid("r3")],
        )
        assert names(route) == ["r2", "r4"]


def test_disjoint_routes_share_no_relay() -> None:
    view = make_view("r1 r2 r5", "r1-r3 r2-r4 r3-r4 r5-r3")
    hints = [nid("r3"), nid("r4")]
    for seed in range(20):
        routes = choose_disjoint_routes(
            view, nid("d"), hints=hints, hops=2, copies=2, rng=random.Random(seed)
        )
        assert len(routes) == 2
        assert not set(routes[0]) & set(routes[1])
    with pytest.raises(
        NoRoute,
        match="only 2 node-disjoint routes were found with 2 relays to d; --copies 3 needs 3",
    ):
        choose_disjoint_routes(view, nid("d"), hints=hints, hops=2, copies=3, rng=random.Random())
    with pytest.raises(NoRoute, match="no known relay reaches d"):
        choose_disjoint_routes(view, nid("d"), hints=[], hops=2, copies=2, rng=random.Random())
    with pytest.raises(UsageError, match="--copies must be at least 1"):
        choose_disjoint_routes(view, nid("d"), hints=hints, hops=2, copies=0, rng=random.Random())


def test_check_via_accepts_a_valid_route_and_names_the_first_broken_step() -> None:
    view = make_view("r1 r2", "r1-r3 r3-r4", relays="r1")
    hints = [nid("r4")]

    def check(*route: str) -> list[str]:
        return names(check_via(view, nid("d"), hints=hints, via=[nid(name) for name in route]))

    assert check("r1", "r3", "r4") == ["r1", "r3", "r4"]
    cases = {
        (): "--via names 0 relays; a route has 1 to 8",
        ("r1",) * 9: "--via names 9 relays",
        ("r1", "s"): "--via cannot include this node itself",
        ("r1", "d"): "--via cannot include the recipient d",
        ("r1", "r3", "r1"): "relay r1 appears twice in --via",
        ("r3", "r4"): "relay r3 in --via is not a neighbour of this node",
        ("r2", "r3"): "neighbour r2 in --via is not marked as a relay",
        ("r1", "r4"): "relay r4 in --via is not a neighbour of r1 in the map",
        ("r1", "r3"): "relay r3 in --via is not adjacent to d",
    }
    for route, reason in cases.items():
        with pytest.raises(NoRoute, match=reason):
            check(*route)


def test_hints_are_the_best_connected_relays() -> None:
    view = make_view("r1 r2 r3", "r2-r4 r2-r5 r3-r4", relays="r1 r2 r3")
    assert names(choose_hints(view, count=2)) == ["r2", "r3"]
    assert len(choose_hints(view, count=8)) == 3


def test_advertise_tells_own_links_first_and_at_most_size() -> None:
    view = make_view(
        "r1 r2 r3",
        extra=(
            known("r1", "r4", "r1"),
            known("r4", "r5", "r1", distance=2),
            known("r2", "r6", "r2"),
            known("r6", "r7", "r2"),
            known("r7", "r8", "r3"),
            known("r4", "r6", "r1"),  # only r1 told it: not echoed back to r1
        ),
    )
    told = advertise(view, to=nid("r1"), size=8, max_distance=2, rng=random.Random(1))
    by_name = {tuple(sorted((NAMES[link.a], NAMES[link.b]))): link.distance for link in told}
    # own links except the one to r1; learned links below max_distance, not touching r1,
    # not told only by r1.
    assert by_name == {
        ("r2", "s"): 0,
        ("r3", "s"): 0,
        ("r2", "r6"): 1,
        ("r6", "r7"): 1,
        ("r7", "r8"): 1,
    }
    to_r3 = advertise(view, to=nid("r3"), size=8, max_distance=2, rng=random.Random(1))
    assert Link.of(nid("r4"), nid("r6"), 1) in to_r3
    for size in range(6):
        small = advertise(view, to=nid("r1"), size=size, max_distance=2, rng=random.Random(size))
        assert len(small) == size
        assert [link.distance for link in small] == sorted(link.distance for link in small)
    with pytest.raises(ValueError):
        advertise(view, to=nid("r7"), size=8, max_distance=2, rng=random.Random())


def test_advertise_draws_vary_and_repeat_with_a_repeated_seed() -> None:
    learned = tuple(known(f"r{index}", f"r{index + 1}", "r1") for index in range(4, 18))
    view = make_view("r1 r2 r3", extra=learned)
    draws = {
        frozenset(advertise(view, to=nid("r2"), size=6, max_distance=2, rng=random.Random(seed)))
        for seed in range(10)
    }
    assert len(draws) > 5
    first = advertise(view, to=nid("r2"), size=6, max_distance=2, rng=random.Random("epoch-1"))
    grown = make_view("r1 r2 r3", extra=(*learned, known("r18", "r19", "r1")))
    again = advertise(grown, to=nid("r2"), size=6, max_distance=2, rng=random.Random("epoch-1"))
    assert len(set(first) & set(again)) >= 5  # the same draw, give or take the new link


def test_merge_adds_a_hop_drops_what_is_too_far_and_refreshes() -> None:
    r1, r2, r3, r4 = (nid(f"r{index}") for index in range(1, 5))
    received = [
        Link.of(r1, r2, 0),
        Link.of(r2, r3, 1),
        Link.of(r3, r4, 2),
        Link.of(nid("s"), r3, 0),
    ]
    stored = merge(
        [], received, via=r1, now=NOW, lifetime_seconds=60, max_distance=2, self_id=nid("s")
    )
    assert {(known.link.ends, known.link.distance) for known in stored} == {
        (Link.of(r1, r2, 0).ends, 1),
        (Link.of(r2, r3, 0).ends, 2),
    }
    assert all(
        known.via == r1 and known.learned_at == NOW and known.expiry == NOW + 60 for known in stored
    )
    refreshed = merge(
        stored,
        [Link.of(r1, r2, 0)],
        via=r1,
        now=NOW + 30,
        lifetime_seconds=60,
        max_distance=2,
        self_id=nid("s"),
    )
    assert len(refreshed) == 2
    assert {known.expiry for known in refreshed} == {NOW + 90, NOW + 60}
    other = merge(
        refreshed,
        [Link.of(r1, r2, 0)],
        via=r2,
        now=NOW + 30,
        lifetime_seconds=60,
        max_distance=2,
        self_id=nid("s"),
    )
    assert len(other) == 3  # one entry per (link, neighbour)
    later = merge(
        other, [], via=r2, now=NOW + 60, lifetime_seconds=60, max_distance=2, self_id=nid("s")
    )
    assert {(known.link.ends, known.via) for known in later} == {
        (Link.of(r1, r2, 0).ends, r1),
        (Link.of(r1, r2, 0).ends, r2),
    }


def test_merge_keeps_the_nearest_links_up_to_max_links() -> None:
    links = [Link.of(nid(f"r{index}"), nid(f"r{index + 1}"), index % 2) for index in range(1, 9)]
    stored = merge(
        [],
        links,
        via=nid("r1"),
        now=NOW,
        lifetime_seconds=60,
        max_distance=2,
        self_id=nid("s"),
        max_links=3,
    )
    assert len(stored) == 3
    assert all(known.link.distance == 1 for known in stored)


# --- property tests: random small maps against a brute-force enumeration ---------------

POOL = ["s", "d", "r1", "r2", "r3", "r4", "r5", "r6"]


@st.composite
def maps(draw: st.DrawFn) -> tuple[MapView, list[NodeId], int, dict[str, object]]:
    others = POOL[1:]
    neighbours = draw(st.lists(st.sampled_from(others), min_size=1, unique=True))
    relays = draw(st.lists(st.sampled_from(neighbours), unique=True, min_size=1))
    pairs = [pair for pair in itertools.combinations(others, 2)]
    links = draw(st.lists(st.sampled_from(pairs), unique=True, min_size=4, max_size=16))
    expired = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=3))
    hints = draw(st.lists(st.sampled_from(others[1:]), unique=True, max_size=3))
    hops = draw(st.integers(min_value=1, max_value=4))
    via = nid(neighbours[0])
    view = MapView(
        self_id=nid("s"),
        neighbours=[nid(name) for name in neighbours],
        relays=[nid(name) for name in relays],
        links=[KnownLink(Link.of(nid(a), nid(b), 1), via, NOW, LATER) for a, b in links]
        + [KnownLink(Link.of(nid(a), nid(b), 1), via, NOW, NOW) for a, b in expired],
        now=NOW,
    )
    raw = {
        "links": {frozenset((nid(a), nid(b))) for a, b in links},
        "relays": {nid(name) for name in relays},
    }
    return view, [nid(name) for name in hints], hops, raw


def valid(route: list[NodeId], hints: list[NodeId], hops: int, raw: dict[str, object]) -> bool:
    """The definition of a route, straight from the model (no shared code with routing.py)."""
    links = raw["links"]
    assert isinstance(links, set)
    relays = raw["relays"]
    assert isinstance(relays, set)
    source, recipient = nid("s"), nid("d")
    return (
        len(route) == hops
        and len(set(route)) == hops
        and source not in route
        and recipient not in route
        and route[0] in relays
        and all(frozenset(pair) in links for pair in itertools.pairwise(route))
        and (route[-1] in hints or frozenset((route[-1], recipient)) in links)
    )


def every_route(
    view: MapView, hints: list[NodeId], hops: int, raw: dict[str, object]
) -> list[list[NodeId]]:
    candidates = sorted((view.nodes() | set(hints)) - {nid("d")})
    return [
        list(route)
        for route in itertools.permutations(candidates, hops)
        if valid(list(route), hints, hops, raw)
    ]


@pytest.mark.parametrize("sample_attempts", [routing.SAMPLE_ATTEMPTS, 0])
@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=maps(), seed=st.integers(0, 2**32))
def test_routes_are_valid_and_no_route_means_none_exists(
    case: tuple[MapView, list[NodeId], int, dict[str, object]],
    seed: int,
    sample_attempts: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routing, "SAMPLE_ATTEMPTS", sample_attempts)
    view, hints, hops, raw = case
    expected = every_route(view, hints, hops, raw)
    rng = random.Random(seed)
    try:
        route = choose_route(view, nid("d"), hints=hints, hops=hops, rng=rng)
    except NoRoute:
        assert expected == []
        return
    assert route in expected
    again = choose_route(view, nid("d"), hints=hints, hops=hops, rng=rng, previous=route)
    assert again in expected
    assert again != route or len(expected) == 1
    assert check_via(view, nid("d"), hints=hints, via=route) == route


@settings(max_examples=examples(150))
@given(case=maps(), copies=st.integers(1, 3), seed=st.integers(0, 2**32))
def test_disjoint_routes_are_valid_and_disjoint(
    case: tuple[MapView, list[NodeId], int, dict[str, object]], copies: int, seed: int
) -> None:
    view, hints, hops, raw = case
    try:
        routes = choose_disjoint_routes(
            view, nid("d"), hints=hints, hops=hops, copies=copies, rng=random.Random(seed)
        )
    except NoRoute:
        return
    assert len(routes) == copies
    assert all(valid(route, hints, hops, raw) for route in routes)
    used = [node for route in routes for node in route]
    assert len(used) == len(set(used))


def test_long_routes_in_a_large_sparse_map_are_found() -> None:
    rng = random.Random(3)
    nodes = [nid(f"n{index}") for index in range(200)]
    links = set()
    for index, node in enumerate(nodes[1:], start=1):  # a random tree, then a few shortcuts
        links.add(frozenset((node, nodes[rng.randrange(index)])))
    while len(links) < 300:
        one, other = rng.sample(nodes, 2)
        links.add(frozenset((one, other)))
    source, recipient = nid("s"), nid("d")
    neighbours = nodes[:4]
    view = MapView(
        self_id=source,
        neighbours=neighbours,
        relays=neighbours,
        links=[KnownLink(Link.of(*sorted(pair), 1), neighbours[0], NOW, LATER) for pair in links],
        now=NOW,
    )
    hints = nodes[150:153]
    found = []
    for hops in range(1, MAX_HOPS + 1):
        try:
            route = choose_route(view, recipient, hints=hints, hops=hops, rng=rng)
        except NoRoute as error:
            assert "is too few" in error.message
            assert not found  # only too-short routes are missing
            continue
        found.append(hops)
        assert len(route) == hops and len(set(route)) == hops
        assert route[0] in neighbours and route[-1] in hints
        assert all(frozenset(pair) in links for pair in itertools.pairwise(route))
    assert found[-1] == MAX_HOPS


def test_search_budget_turns_into_a_clear_no_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "SAMPLE_ATTEMPTS", 0)
    monkeypatch.setattr(routing, "SEARCH_BUDGET_STEPS", 1)
    view = make_view("r1", "r1-r2 r2-r3 r3-r4 r1-r3 r2-r4")
    with pytest.raises(NoRoute, match="gave up looking for a route of 4 relays to d after 1 steps"):
        choose_route(view, nid("d"), hints=[nid("r4")], hops=4, rng=random.Random())
