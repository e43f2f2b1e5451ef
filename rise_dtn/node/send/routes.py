"""The node's view of the map, and the routes drawn through it for one bundle.

The map is this node's peer book (relay-flagged neighbours start routes),
the links relay neighbours told it about (store/relay_index.py) and the via
hints a recipient publishes in its card. Route choice itself is pure
(core/routing.py); this module gathers its inputs and the cards whose keys
the onion layers need.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from rise_dtn.core.card import Card
from rise_dtn.core.errors import PeerError, UsageError
from rise_dtn.core.identity import NodeId
from rise_dtn.core.routing import (
    KnownLink,
    Link,
    MapView,
    NoRoute,
    check_via,
    choose_disjoint_routes,
    choose_route,
)
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.send.onion_send import RouteNode

VIA_CARRIER = "via"  # a card address ("via", node id): a relay next to this node


def hints(card: Card) -> list[NodeId]:
    """The relays a recipient says are next to it (its card's "via" addresses)."""
    found = []
    for carrier, address in card.addresses:
        if carrier == VIA_CARRIER:
            try:
                found.append(NodeId.parse(address))
            except UsageError:
                continue  # a hint we cannot read is a hint we do not use
    return found


def relay_cards(home: Home, *, now: int) -> dict[NodeId, Card]:
    """Every node this node may put on a route: relay neighbours and mapped relays."""
    cards: dict[NodeId, Card] = {}
    for node_id, data in home.route_map.cards(now).items():
        try:
            card = Card.from_bytes(data)
        except PeerError:
            continue
        if str(card.node_id) == node_id:
            cards[card.node_id] = card
    for peer in home.peers.all():
        if peer.relay:
            cards[peer.node_id] = peer.card
    return cards


def view(
    home: Home,
    *,
    now: int,
    cards: dict[NodeId, Card] | None = None,
) -> MapView:
    peers = home.peers.all()
    known = [
        KnownLink(
            Link.of(NodeId.parse(row.a), NodeId.parse(row.b), row.distance),
            NodeId.parse(row.via),
            row.learned_at,
            row.expiry,
        )
        for row in home.route_map.links(now)
    ]
    relays = cards if cards is not None else relay_cards(home, now=now)
    # Names for messages such as "relay r3 in --via is not a neighbour": the
    # user typed names, so NoRoute answers in names, not in node ids.
    names = {node_id: card.name for node_id, card in relays.items()}
    names.update({peer.node_id: peer.name for peer in peers})
    return MapView(
        self_id=home.identity.node_id,
        neighbours=[peer.node_id for peer in peers],
        relays=[peer.node_id for peer in peers if peer.relay],
        links=[link for link in known if _usable(link.link, relays)],
        now=now,
        names=names,
    )


def _usable(link: Link, relays: dict[NodeId, Card]) -> bool:
    """A link helps a route only if at least one end is a relay whose keys we have."""
    return link.a in relays or link.b in relays


def draw(
    home: Home,
    recipient: Peer,
    *,
    hops: int,
    copies: int,
    via: Sequence[str],
    now: int,
    rng: random.Random,
) -> list[list[RouteNode]]:
    """Fresh routes for one bundle: `copies` node-disjoint routes of `hops` relays.

    Raises NoRoute (a UsageError) with a reason a person can act on.
    """
    cards = relay_cards(home, now=now)
    mapped = view(home, now=now, cards=cards)
    recipient_hints = hints(recipient.card)
    if via:
        forced = [_relay_id(home, name, cards) for name in via]
        route = check_via(mapped, recipient.node_id, hints=recipient_hints, via=forced)
        routes = [route]
    elif copies > 1:
        routes = choose_disjoint_routes(
            mapped, recipient.node_id, hints=recipient_hints, hops=hops, copies=copies, rng=rng
        )
    else:
        previous = [
            NodeId.parse(text) for text in home.route_map.last_route(str(recipient.node_id))
        ]
        routes = [
            choose_route(
                mapped,
                recipient.node_id,
                hints=recipient_hints,
                hops=hops,
                rng=rng,
                previous=previous or None,
            )
        ]
    return [[_node(cards, node_id) for node_id in route] for route in routes]


def names(home: Home, *, now: int = 0) -> dict[NodeId, str]:
    """Local names for node ids: peers by their alias, mapped relays by their card's name."""
    found = {node_id: card.name for node_id, card in relay_cards(home, now=now).items()}
    found.update({peer.node_id: peer.name for peer in home.peers.all()})
    return found


def _relay_id(home: Home, name: str, cards: dict[NodeId, Card]) -> NodeId:
    """A --via entry: a peer's local name, or the id of a relay from the map."""
    for peer in home.peers.all():
        if name in (peer.name, str(peer.node_id)):
            return peer.node_id
    for node_id, card in cards.items():
        if name in (str(node_id), card.name):
            return node_id
    raise NoRoute(f"--via: no relay called {name!r} is known (see `rise map`)")


def _node(cards: dict[NodeId, Card], node_id: NodeId) -> RouteNode:
    card = cards.get(node_id)
    if card is None:
        raise NoRoute(f"no card is known for relay {node_id}; it cannot be on a route")
    return RouteNode(node_id, card.public)
