"""Bundles nodes send each other about the network: receipts, cancels and maps.

- A receipt goes back end to end, over a fresh route, when a bundle that
  came over relays is delivered; it makes the sender's `rise-stat` say
  "delivered", and for a bundle sent in several copies it releases the cancel
  tokens that make relays still holding other copies drop them.
- A map goes from a relay to a neighbour, direct (never routed): a bounded
  random subset of the links it knows and the cards of the relays on them.
Formats: docs/protocol.md sections 21 and 22. Decoding a peer's payload is
decoding untrusted input: every failure is a one-line BundleError.
"""

from __future__ import annotations

import hashlib
import io
import random
import secrets

from rise_dtn.core.bundle import ContentKind, Meta, Sealer
from rise_dtn.core.card import Card
from rise_dtn.core.encoding import canonical, strict_loads
from rise_dtn.core.errors import BundleError, PeerError, RiseError
from rise_dtn.core.identity import NODE_ID_BYTES, BundleId, NodeId
from rise_dtn.core.onion import MIN_PAYLOAD_BYTES, SlotKind, padded_payload_bytes
from rise_dtn.core.routing import Link, advertise, merge
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.send import routed, routes, send
from rise_dtn.node.send.onion_send import PacketWriter, RouteNode, packet_writers
from rise_dtn.store.rows import LinkRow

RECEIPT_VERSION = 1
MAP_VERSION = 1
# A map names at most 64 links and carries at most 128 cards: a few dozen KiB,
# one sealed chunk, whatever a hostile neighbour claims.
MAX_MAP_LINKS = 64
MAX_MAP_CARDS = 128
MAX_CONTROL_BYTES = 64 * 1024
# Receipts take this many relays when the node sets no [send] hops: a routed
# bundle deserves a routed receipt.
RECEIPT_HOPS = 2
# Links a node keeps from all its relay neighbours' maps together: each map
# may add this divided by the number of relay neighbours. 24 keeps a node to
# about 30% of a 100-node network (tests/core/test_map_simulation.py).
MAP_KNOWLEDGE_LINKS = 24
# Links a receipt tells the sender about reaching its recipient: enough to
# bridge two partial maps (bench/mapsim.py), a few KiB with the relay cards.
REACH_LINKS = 16
RECEIPT_MARGIN_BYTES = 8
# A neighbour sees a new random subset of this relay's links once a week.
MAP_EPOCH_SECONDS = 7 * 86400


def accept(home: Home, peer: Peer, kind: ContentKind, payload: bytes, *, now: int) -> None:
    """Take in a receipt or a map from `peer` (the signed end-to-end sender)."""
    if kind is ContentKind.RECEIPT:
        _accept_receipt(home, peer, payload, now=now)
    elif kind is ContentKind.MAP:
        _accept_map(home, peer, payload, now=now)


# Receipts and cancels.


def send_receipts_owed(home: Home, *, now: int) -> None:
    """Queue every receipt the index says is owed (a crash may have left some), then forget each.

    A failure leaves the debt for the next toss; it never undoes the delivery.
    """
    for bundle_id, sender in home.fast_index.receipts_owed():
        try:
            send_receipt(home, bundle_id=BundleId.parse(bundle_id), sender=sender, now=now)
        except RiseError:
            continue  # no route or no space now: the next toss tries again
        home.fast_index.receipt_queued(bundle_id)


def send_receipt(home: Home, *, bundle_id: BundleId, sender: str, now: int) -> None:
    """Queue a receipt for a bundle delivered from relays (raises RiseError if it cannot)."""
    peer = home.peers.find(sender)
    links, cards = _reach(home, now=now)
    payload = _fitted_receipt(home, peer, bundle_id, links, cards, now=now)
    hops = home.config.hops or RECEIPT_HOPS
    routed.queue_routed(
        home,
        peer,
        io.BytesIO(payload),
        options=send.SendOptions(),
        route=routed.RouteOptions(hops=hops, copies=1, wait=True),
        now=now,
        rng=random.SystemRandom(),
        kind=ContentKind.RECEIPT,
    )


def _fitted_receipt(
    home: Home,
    peer: Peer,
    bundle_id: BundleId,
    links: list[list[object]],
    cards: list[bytes],
    *,
    now: int,
) -> bytes:
    """The receipt, its reach cut (farthest links first, then cards) to fit the padding floor.

    Every onion payload is padded to at least MIN_PAYLOAD_BYTES, which a
    short message fits: a receipt that fits it too looks like one, to every
    relay (protocol.md 20.5, 22.3); a larger one would stand out by its size.
    """
    sizer = Sealer(
        sender=home.identity,
        recipient=peer.card.public,
        meta=Meta(ContentKind.RECEIPT, None, None),
        expiry=now + home.config.lifetime_seconds,
        priority=home.config.nice,
        ephemeral_secret=secrets.token_bytes(32),
    )
    # CBOR integers grow by a few bytes at some sizes: keep a small margin.
    budget = MIN_PAYLOAD_BYTES - RECEIPT_MARGIN_BYTES
    for count in range(len(links), -1, -1):
        kept = links[:count]
        ends = {bytes(end) for link in kept for end in link[:2] if isinstance(end, bytes)}
        kept_cards = [card for card in cards if Card.from_bytes(card).node_id.raw in ends]
        while True:
            payload = canonical([RECEIPT_VERSION, bundle_id.raw, now, kept, kept_cards])
            if routed.inner_bytes(sizer, len(payload)) <= budget:
                return payload
            if not kept_cards:
                break
            kept_cards.pop()
    return canonical([RECEIPT_VERSION, bundle_id.raw, now, [], []])


def _accept_receipt(home: Home, peer: Peer, payload: bytes, *, now: int) -> None:
    value = strict_loads(payload, max_bytes=MAX_CONTROL_BYTES, error=BundleError, what="receipt")
    if (
        not isinstance(value, list)
        or len(value) not in (3, 5)
        or not _is_version(value[0], RECEIPT_VERSION)
        or not isinstance(value[1], bytes)
        or len(value[1]) != NODE_ID_BYTES
        or not isinstance(value[2], int)
        or isinstance(value[2], bool)
        or value[2] < 0
    ):
        raise BundleError("receipt is malformed")
    bundle_id = str(BundleId(value[1]))
    rows = home.relay_index.sent(bundle_id)
    if not rows or rows[0].recipient != str(peer.node_id):
        raise BundleError(f"receipt from {peer.name} for a bundle not sent to it")
    if len(value) == 5:
        links, cards = _decode_map([MAP_VERSION, value[3], value[4]])
        _learn_reach(home, peer, links, cards, now=now)
    row = home.relay_index.mark_delivered(bundle_id, now=now)
    if row is not None:
        copies = strict_loads(
            row.copies, max_bytes=MAX_CONTROL_BYTES, error=BundleError, what="copies"
        )
        if isinstance(copies, list) and len(copies) > 1:
            sent = _cancel_copies(home, copies, expiry=row.expiry, now=now)
            home.relay_index.mark_cancelled(bundle_id, cancels=sent)


def _cancel_copies(home: Home, copies: list[object], *, expiry: int, now: int) -> int:
    """Send each copy's relays, in order, the tokens that drop it wherever it still waits.

    Returns how many cancel packets were queued.
    """
    sent = 0
    cards = routes.relay_cards(home, now=now)
    for copy in copies:
        assert isinstance(copy, list)
        _first, _packet, relays, tokens = copy
        nodes = [cards.get(NodeId(raw)) for raw in relays]
        if not nodes or any(card is None for card in nodes):
            continue  # a relay left the map: its copy expires on its own
        route = [RouteNode(card.node_id, card.public) for card in nodes if card is not None]
        writer = PacketWriter(
            home,
            route,
            route[-1],
            kinds=(SlotKind.CANCEL_FORWARD, SlotKind.CANCEL_END),
            inner_bytes=padded_payload_bytes(0),
            expiry=expiry,
            priority=0,
            rng=random.SystemRandom(),
            now=now,
            tokens=tuple(tokens),
        )
        with packet_writers([writer]):
            writer.commit()
        home.bundles.list_queued(writer.entry(now=now), digest=writer.digest.hexdigest())
        sent += 1
    return sent


# Maps.


def refresh_maps(
    home: Home, *, now: int, force: bool = False, only: Peer | None = None
) -> list[str]:
    """Queue a fresh map for every neighbour whose last one is older than [map] refresh.

    Only a relay ([relay] enabled) tells others what it knows. Every peer
    in its book counts as a neighbour (a relay's peers are the nodes it
    meets). Each neighbour's subset is drawn from a generator seeded by this node's
    key, the neighbour and the week: refreshes within a week repeat the same
    subset (keeping it alive) instead of showing a neighbour more links each
    time. Returns the names of the neighbours that got one.
    """
    config = home.config
    if not config.relay.enabled:
        return []
    last_sent = home.fast_relay_index.maps_sent()
    due = [
        peer
        for peer in ([only] if only is not None else home.peers.all())
        if force or now - last_sent.get(str(peer.node_id), 0) >= config.map.refresh_seconds
    ]
    if not due:
        return []  # most exchanges: the map and its cards are not even read
    cards = routes.relay_cards(home, now=now)
    cards[home.identity.node_id] = home.card(now=now)
    view = routes.view(home, now=now, cards=cards)
    sent = []
    for peer in due:
        links = advertise(
            view,
            to=peer.node_id,
            size=config.map.size,
            max_distance=config.map.max_distance,
            rng=_subset_rng(home, peer, now=now),
        )
        if not links:
            continue
        ends = {node for link in links for node in (link.a, link.b)}
        shared = [cards[node].to_bytes() for node in sorted(ends) if node in cards]
        payload = canonical(
            [MAP_VERSION, [[link.a.raw, link.b.raw, link.distance] for link in links], shared]
        )
        send.queue(
            home,
            peer,
            io.BytesIO(payload),
            options=send.SendOptions(lifetime_seconds=config.map.lifetime_seconds),
            now=now,
            kind=ContentKind.MAP,
        )
        home.fast_relay_index.map_sent(str(peer.node_id), now=now)
        sent.append(peer.name)
    return sent


def _subset_rng(home: Home, peer: Peer, *, now: int) -> random.Random:
    epoch = now // MAP_EPOCH_SECONDS
    seed = hashlib.blake2b(
        peer.node_id.raw + epoch.to_bytes(8, "big"),
        digest_size=32,
        key=home.identity.signing_seed,
        person=b"rise-map-subset",
    ).digest()
    return random.Random(seed)


def _accept_map(home: Home, peer: Peer, payload: bytes, *, now: int) -> None:
    if not peer.relay:
        hint = f"`rise peer relay {peer.name} on`"
        raise BundleError(f"map from {peer.name}, which is not marked as a relay ({hint})")
    links, cards = _decode_map(payload)
    config = home.config.map
    relays = sum(1 for other in home.peers.all() if other.relay)
    # A new map from a neighbour replaces its previous one (RelayIndex.learn).
    merged = merge(
        [],
        links,
        via=peer.node_id,
        now=now,
        lifetime_seconds=config.lifetime_seconds,
        max_distance=config.max_distance,
        self_id=home.identity.node_id,
        max_links=max(1, MAP_KNOWLEDGE_LINKS // max(1, relays)),
    )
    rows = [
        LinkRow(
            a=str(known.link.a),
            b=str(known.link.b),
            via=str(known.via),
            distance=known.link.distance,
            learned_at=known.learned_at,
            expiry=known.expiry,
        )
        for known in merged
    ]
    home.fast_relay_index.learn(
        via=str(peer.node_id),
        links=rows,
        cards={str(card.node_id): card.to_bytes() for card in cards},
        card_expiry=now + config.lifetime_seconds,
    )


def _decode_map(payload: bytes | list[object]) -> tuple[list[Link], list[Card]]:
    value = (
        payload
        if isinstance(payload, list)
        else strict_loads(payload, max_bytes=MAX_CONTROL_BYTES, error=BundleError, what="map")
    )
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not _is_version(value[0], MAP_VERSION)
        or not isinstance(value[1], list)
        or not isinstance(value[2], list)
        or len(value[1]) > MAX_MAP_LINKS
        or len(value[2]) > MAX_MAP_CARDS
    ):
        raise BundleError("map is malformed")
    links = [_decode_link(entry) for entry in value[1]]
    cards = []
    for data in value[2]:
        if not isinstance(data, bytes):
            raise BundleError("map is malformed (card)")
        try:
            cards.append(Card.from_bytes(data))
        except PeerError as exc:
            raise BundleError(f"map carries a bad card: {exc.message}") from None
    return links, cards


def _decode_link(entry: object) -> Link:
    if (
        not isinstance(entry, list)
        or len(entry) != 3
        or not all(isinstance(end, bytes) and len(end) == NODE_ID_BYTES for end in entry[:2])
        or not isinstance(entry[2], int)
        or isinstance(entry[2], bool)
        or not 0 <= entry[2] <= 255
        or entry[0] == entry[1]
    ):
        raise BundleError("map is malformed (link)")
    return Link.of(NodeId(entry[0]), NodeId(entry[1]), entry[2])


def _reach(home: Home, *, now: int) -> tuple[list[list[object]], list[bytes]]:
    """How to reach this node, for a correspondent: its relays and some links near them.

    A sender's own map rarely reaches a recipient's relays (each node knows
    about a third of the network); the recipient's map does, around itself.
    So every receipt carries this node's relay links and a bounded subset of
    its map, nearest first, with the cards of the relays on them (protocol.md
    section 22.3); the simulation in bench/mapsim.py measures what it buys.
    """
    me = home.identity.node_id
    relays = [peer for peer in home.peers.all() if peer.relay]
    chosen = [Link.of(me, peer.node_id, 0) for peer in relays][:REACH_LINKS]
    seen = {link.ends for link in chosen}
    for row in sorted(
        home.fast_relay_index.links(now), key=lambda row: (row.distance, row.learned_at)
    ):
        if len(chosen) >= REACH_LINKS:
            break
        link = Link.of(NodeId.parse(row.a), NodeId.parse(row.b), row.distance)
        if link.ends not in seen:
            seen.add(link.ends)
            chosen.append(link)
    cards = routes.relay_cards(home, now=now)
    ends = {node for link in chosen for node in link.ends} - {me}
    shared = [cards[node].to_bytes() for node in sorted(ends) if node in cards]
    links: list[list[object]] = [[link.a.raw, link.b.raw, link.distance] for link in chosen]
    return links, shared[:MAX_MAP_CARDS]


def _learn_reach(home: Home, peer: Peer, links: list[Link], cards: list[Card], *, now: int) -> None:
    """Keep what a correspondent said about reaching it, until the next receipt replaces it."""
    lifetime = home.config.map.lifetime_seconds
    rows = [
        LinkRow(
            a=str(link.a),
            b=str(link.b),
            via=str(peer.node_id),
            distance=link.distance + 1,
            learned_at=now,
            expiry=now + lifetime,
        )
        for link in links
        if not link.touches(home.identity.node_id)
    ]
    home.fast_relay_index.learn(
        via=str(peer.node_id),
        links=rows,
        cards={str(card.node_id): card.to_bytes() for card in cards},
        card_expiry=now + lifetime,
    )


def _is_version(value: object, version: int) -> bool:
    # CBOR true must not pass for 1 (True == 1 in Python).
    return isinstance(value, int) and not isinstance(value, bool) and value == version
