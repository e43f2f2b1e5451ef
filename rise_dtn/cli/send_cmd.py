"""rise send / rise-send: queue a file or a message for a peer."""

from __future__ import annotations

from pathlib import Path

import click

from rise_dtn.cli.common import (
    home_option,
    human_bytes,
    now,
    open_home,
    progress,
    quiet_option,
    say,
)
from rise_dtn.node import send
from rise_dtn.node.config import check_nice, parse_duration


@click.command("send")
@click.argument("source", metavar="FILE|-")
@click.argument("node")
@click.option("--name", help="Deliver as a file with this name (default: FILE's own name).")
@click.option("--nice", type=int, help="Priority 0 (urgent) .. 255 (bulk); default from config.")
@click.option("--lifetime", help="Drop the bundle if not delivered within this (30d, 12h, 3600).")
@home_option
@quiet_option
def send_cmd(
    source: str,
    node: str,
    name: str | None,
    nice: int | None,
    lifetime: str | None,
    home_path: Path | None,
    quiet: bool,
) -> None:
    """Queue FILE (or stdin, with -) for NODE, sealed to it and signed by this node.

    FILE is delivered as a file into the peer's incoming directory; stdin is
    delivered as a message for `rise inbox`, unless --name makes it a file.
    The bundle waits in the spool until a carrier (`rise-xfer`) moves it.

    \b
    Examples:
      rise-send report.pdf bob
      echo 'meet at 6' | rise-send - bob
      tar c photos | rise-send --name photos.tar - bob
    """
    home = open_home(home_path)
    home.prewarm_index()
    peer = home.peers.find(node)
    if name is None and source != "-":
        name = Path(source).name
    options = send.SendOptions(
        name=name,
        nice=check_nice(nice) if nice is not None else None,
        lifetime_seconds=parse_duration(lifetime) if lifetime else None,
    )
    handle = send.open_source(source)
    with handle:
        total = send.regular_size(handle)
        with progress(f"sealing for {peer.name}", total, quiet=quiet) as update:
            queued = send.queue(home, peer, handle, options=options, now=now(), progress=update)
    if not quiet:
        click.echo(str(queued.bundle_id))
        what = "file" if name is not None else "message"
        say(
            f"queued {what} for {peer.name}: {human_bytes(queued.payload_bytes)} "
            f"in a {human_bytes(queued.bundle_bytes)} bundle"
        )
