"""rise stat / rise-stat: what waits for whom."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from rise_dtn.cli.common import ago, home_option, json_word, now, open_home
from rise_dtn.core.units import human_bytes, human_seconds
from rise_dtn.node.status import SENT_STATES, status


@click.command("stat")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
def stat_cmd(as_json: bool, home_path: Path | None) -> None:
    """Show, per neighbour: bundles and bytes waiting, the oldest, in flight, delivered.

    "In flight" bundles were written to a carrier but not yet confirmed by
    the neighbour; "delivered" counts the confirmed ones. The files and
    messages sent are counted by their end-to-end state (see `rise status`).
    """
    home = open_home(home_path)
    current = now()
    result = status(home, now=current)
    if as_json:
        shown = dataclasses.asdict(result)
        # Every state, zeros included, each a key a script can write bare (in_transit).
        shown["sent"] = {json_word(state): result.sent.get(state, 0) for state in SENT_STATES[1:]}
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(f"node {result.node} ({result.node_id})")
    header = f"{'neighbour':<16} {'waiting':>7} {'bytes':>10} {'oldest':>10} {'in flight':>9} "
    click.echo(header + f"{'delivered':>9} {'received':>8}")
    for row in result.neighbours:
        click.echo(
            f"{row.name:<16} {row.waiting:>7} {human_bytes(row.waiting_bytes):>10} "
            f"{ago(row.oldest_queued_at, now_seconds=current):>10} {row.in_flight:>9} "
            f"{row.delivered:>9} {row.received_waiting:>8}"
        )
    click.echo(f"inbox: {result.inbox_unread} unread; quarantine: {result.quarantined}")
    for file in result.receiving:
        click.echo(
            f"receiving: {file.name} from {file.sender}, {file.parts_in} of {file.parts} "
            f"parts ({human_bytes(file.total_bytes)}), expires in "
            f"{human_seconds(max(0, file.expiry - current))}"
        )
    if any(result.sent.values()) or result.held_for_route:
        states = ", ".join(f"{result.sent.get(state, 0)} {state}" for state in SENT_STATES[1:])
        click.echo(f"sent: {states}; {result.held_for_route} held for a route")
