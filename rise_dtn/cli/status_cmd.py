"""rise status: where the bundles this node sent over relays stand."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rise_dtn.cli.common import ago, home_option, json_row, now, open_home, say
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.queue import one_by_prefix
from rise_dtn.node.status import SentStatus, sent_status


@click.command("status")
@click.argument("bundle", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
def status_cmd(bundle: str | None, as_json: bool, home_path: Path | None) -> None:
    """Show the end-to-end state of BUNDLE (an id rise-send printed, or its first 4+
    characters), or of all sent.

    Files and messages sent directly and over relays: a direct one is
    delivered when its recipient acks it, one over relays when the
    recipient's receipt comes back.

    \b
    States:
      held        no route yet (rise-send --wait); retried as maps arrive
      queued      waiting for the first hop to confirm it
      in transit  the first relay has it, or it was moved onto a medium
      delivered   acked by the recipient, or its signed receipt came back (relays)
      expired     its lifetime ended before a receipt came
      cancelled   taken back (rise queue cancel) before its first relay had it
    """
    home = open_home(home_path)
    current = now()
    wanted = bundle.strip().lower() if bundle else None
    rows = sent_status(home, now=current, bundle_id=wanted)
    if wanted is not None and not rows:
        rows = _by_prefix(home, wanted, now=current)
    if as_json:
        click.echo(json.dumps([json_row(row) for row in rows], indent=2))
        return
    for row in rows:
        routes = "; ".join(" -> ".join(route) for route in row.routes if route)
        way = f"via {routes}" if routes else ("direct" if row.routes else "-")
        when = ago(row.delivered_at or row.created_at, now_seconds=current)
        cancels = f"  ({row.cancels} cancels sent)" if row.cancels else ""
        click.echo(
            f"{row.bundle_id}  {row.state:<10}  to {row.recipient}  "
            f"{human_bytes(row.size)}  {when}  {way}{cancels}"
        )
    if not rows:
        say("nothing sent from this node yet: `rise-send FILE NODE`")


def _by_prefix(home: Home, prefix: str, *, now: int) -> list[SentStatus]:
    """The one bundle sent whose id starts with `prefix` (4 characters at least, as for
    `rise queue` and `rise inbox`)."""
    found = one_by_prefix(
        sent_status(home, now=now),
        prefix,
        missing=f"no bundle {prefix} was sent from this node (a file or message;"
        " `rise status` lists them all)",
    )
    return [found]
