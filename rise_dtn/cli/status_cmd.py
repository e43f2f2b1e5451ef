"""rise status: where the bundles this node sent over relays stand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from rise_dtn.cli.common import ago, home_option, human_bytes, now, open_home
from rise_dtn.core.errors import UsageError
from rise_dtn.node.status import sent_status


@click.command("status")
@click.argument("bundle", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
def status_cmd(bundle: str | None, as_json: bool, home_path: Path | None) -> None:
    """Show the end-to-end state of BUNDLE (an id rise-send printed), or of all.

    \b
    States:
      held        no route yet (rise-send --wait); retried as maps arrive
      queued      waiting for the first relay to confirm it
      in transit  the first relay has it; no receipt yet
      delivered   the recipient's signed receipt came back
      expired     its lifetime ended before a receipt came
      cancelled   taken back (rise queue cancel) before its first relay had it
    """
    home = open_home(home_path)
    current = now()
    rows = sent_status(home, now=current, bundle_id=bundle.strip().lower() if bundle else None)
    if bundle and not rows:
        raise UsageError(f"no bundle {bundle} was sent over relays from this node")
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return
    for row in rows:
        routes = "; ".join(" -> ".join(route) for route in row.routes) or "-"
        when = ago(row.delivered_at or row.created or None, now_seconds=current)
        cancels = f"  ({row.cancels} cancels sent)" if row.cancels else ""
        click.echo(
            f"{row.bundle_id}  {row.state:<10}  to {row.recipient}  "
            f"{human_bytes(row.size)}  {when}  via {routes}{cancels}"
        )
