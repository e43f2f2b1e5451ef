"""rise peer add|list|remove: the nodes this node trusts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rise_dtn.cli.common import home_option, open_home, say
from rise_dtn.core.card import ARMOR_BEGIN, CARD_MAGIC, Card
from rise_dtn.core.errors import PeerError, UsageError

MAX_CARD_INPUT_BYTES = 1 << 16  # a card is a few hundred bytes; mail around it is fine


@click.group("peer")
def peer_cmd() -> None:
    """Manage trusted peers (neighbours and correspondents).

    Only added peers can send to this node or receive from it (default deny).
    """


def _read_card(source: str) -> Card:
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_CARD_INPUT_BYTES + 1)
        else:
            with open(source, "rb") as handle:
                data = handle.read(MAX_CARD_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    if len(data) > MAX_CARD_INPUT_BYTES:
        raise PeerError(f"{source} is too large to be a card")
    if ARMOR_BEGIN.encode() in data:
        return Card.from_text(data.decode("utf-8", "replace"))
    try:
        return Card.from_bytes(data)  # the binary form, as read from a QR code
    except PeerError:
        if CARD_MAGIC.encode() in data[:32]:
            raise  # a binary card, but a bad one: keep the precise reason
        raise PeerError(
            f"no rise-dtn card in {'stdin' if source == '-' else source} "
            f"(expected a {ARMOR_BEGIN} block or a binary card)"
        ) from None


@peer_cmd.command("add")
@click.argument("card", metavar="CARD|-")
@click.option("--name", help="Local name for the peer (default: the name on its card).")
@click.option("--replace", is_flag=True, help="Replace a different peer that has this name.")
@click.option(
    "--relay", is_flag=True, help="This neighbour relays: route through it and take its maps."
)
@home_option
def add_cmd(
    card: str, name: str | None, replace: bool, relay: bool, home_path: Path | None
) -> None:
    """Trust the node whose card is in CARD (a file, or - for stdin).

    The card's self-signature is verified; check the node id it prints with
    the peer over another channel (phone, in person) before you rely on it.
    """
    home = open_home(home_path)
    peer = home.peers.add(
        _read_card(card), name=name, self_id=home.identity.node_id, replace=replace
    )
    if relay:
        peer = home.peers.set_relay(peer.name, relay=True)
    click.echo(f"{peer.name}\t{peer.node_id}")
    role = " as a relay" if relay else ""
    say(f"added peer {peer.name!r}{role}; verify its node id with them out of band")


@peer_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
def list_cmd(as_json: bool, home_path: Path | None) -> None:
    """List trusted peers: local name, node id, name on their card."""
    home = open_home(home_path)
    peers = home.peers.all()
    if as_json:
        rows = [
            {
                "name": peer.name,
                "node_id": str(peer.node_id),
                "card_name": peer.card.name,
                "addresses": [list(pair) for pair in peer.card.addresses],
                "relay": peer.relay,
            }
            for peer in peers
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for peer in peers:
        role = "\trelay" if peer.relay else ""
        click.echo(f"{peer.name}\t{peer.node_id}\t{peer.card.name}{role}")
    if not peers:
        say("no peers yet: `rise peer add CARD`")


@peer_cmd.command("remove")
@click.argument("name")
@home_option
def remove_cmd(name: str, home_path: Path | None) -> None:
    """Stop trusting a peer (bundles already queued for it stay in the spool)."""
    home = open_home(home_path)
    peer = home.peers.remove(name)
    say(f"removed peer {peer.name!r} ({peer.node_id})")


@peer_cmd.command("relay")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
@home_option
def relay_cmd(name: str, state: str, home_path: Path | None) -> None:
    """Mark peer NAME as a relay (on) or not (off).

    This node routes its bundles only through relays, and takes map bundles
    only from them. Whether this node itself forwards for others is
    [relay] enabled in its config.
    """
    home = open_home(home_path)
    peer = home.peers.set_relay(name, relay=state == "on")
    say(f"{peer.name} is {'now' if peer.relay else 'no longer'} a relay for this node")
