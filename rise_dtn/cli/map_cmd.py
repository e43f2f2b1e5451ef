"""rise map: what this node knows of the network (its partial map)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rise_dtn.cli.common import ago, home_option, now, open_home, say
from rise_dtn.core.errors import UsageError
from rise_dtn.node.send import routes
from rise_dtn.node.toss import control


@click.command("map")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--refresh", is_flag=True, help="Queue a fresh map for every neighbour now (relays only)."
)
@home_option
def map_cmd(as_json: bool, refresh: bool, home_path: Path | None) -> None:
    """Show the nodes and links this node knows, and how old each link is.

    The map holds this node's peers, and the links that relay neighbours
    told it about in map bundles: each relay tells each neighbour only a
    bounded random subset ([map] size), so no node holds the whole network.
    Routes for `rise-send --hops` are drawn from it.
    """
    home = open_home(home_path)
    current = now()
    if refresh:
        if not home.config.relay.enabled:
            raise UsageError("only a relay sends maps: set [relay] enabled = true")
        sent = control.refresh_maps(home, now=current, force=True)
        say(f"queued a fresh map for {len(sent)} neighbour(s): {', '.join(sent) or 'none'}")
        return
    names = routes.names(home, now=current)
    cards = routes.relay_cards(home, now=current)
    links = home.relay_index.links(current)
    peers = home.peers.all()
    nodes = {str(node_id): name for node_id, name in names.items()}
    if as_json:
        result = {
            "nodes": [
                {
                    "node_id": node_id,
                    "name": name,
                    "relay": any(str(card_id) == node_id for card_id in cards),
                    "peer": any(str(peer.node_id) == node_id for peer in peers),
                }
                for node_id, name in sorted(nodes.items())
            ],
            "links": [
                {
                    "a": row.a,
                    "b": row.b,
                    "via": row.via,
                    "distance": row.distance,
                    "learned_at": row.learned_at,
                    "expiry": row.expiry,
                }
                for row in links
            ],
        }
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{len(nodes)} node(s) known, {len(links)} link(s) learned from relays")
    for peer in peers:
        role = "relay neighbour" if peer.relay else "neighbour"
        click.echo(f"  {peer.name:<16} {peer.node_id}  {role}")
    for node_id, card in sorted(cards.items()):
        if all(peer.node_id != node_id for peer in peers):
            click.echo(f"  {card.name:<16} {node_id}  relay (from maps)")
    for row in links:
        ends = " -- ".join(nodes.get(end, end[:8]) for end in (row.a, row.b))
        told = nodes.get(row.via, row.via[:8])
        age = ago(row.learned_at, now_seconds=current)
        click.echo(f"  {ends:<34} from {told}, {row.distance} hop(s) away, {age}")
