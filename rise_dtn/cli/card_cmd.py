"""rise card: print this node's contact card."""

from __future__ import annotations

import io
from pathlib import Path

import click
import segno

from rise_dtn.cli.common import home_option, now, open_home, say


@click.command("card")
@click.option("--qr", is_flag=True, help="Print the card as a QR code for the terminal.")
@click.option(
    "--png",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the card as a QR code image to this PNG file.",
)
@click.option(
    "--via",
    help="Relays next to this node to publish, comma-separated (default: every relay peer).",
)
@click.option("--no-via", is_flag=True, help="Publish no relays: reachable only directly.")
@home_option
def card_cmd(
    qr: bool, png: Path | None, via: str | None, no_via: bool, home_path: Path | None
) -> None:
    """Print this node's contact card (signed, armored text) on stdout.

    Give the card to neighbours out of band (a file, mail, a QR code); they
    import it with `rise peer add`. It holds only public keys, the addresses
    in [node] addresses, and the relays next to this node ("via"), through
    which others route bundles to it.
    """
    home = open_home(home_path)
    if no_via:
        relays = []
    elif via:
        relays = [home.peers.find(name.strip()) for name in via.split(",") if name.strip()]
    else:
        relays = [peer for peer in home.peers.all() if peer.relay]
    card = home.card(now=now(), via=[peer.node_id for peer in relays])
    if png is not None:
        # QR codes carry the binary card: the armored text would need a bigger code.
        segno.make(card.to_bytes(), error="m").save(str(png), kind="png", scale=4)
        say(f"wrote {png}")
    if qr:
        buffer = io.StringIO()
        segno.make(card.to_bytes(), error="m").terminal(out=buffer, compact=True)
        click.echo(buffer.getvalue(), nl=False)
    if not qr and png is None:
        click.echo(card.armor(), nl=False)
