"""rise queue: list what waits in the spool, show one bundle, cancel."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import click

from rise_dtn.cli.common import ago, home_option, json_row, now, open_home, quiet_option, say
from rise_dtn.core.errors import UsageError
from rise_dtn.core.units import human_bytes
from rise_dtn.node import queue


@click.group("queue", invoke_without_command=True)
@click.option(
    "--for", "neighbour", metavar="NEIGHBOUR", help="Only what waits for or from NEIGHBOUR."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
@click.pass_context
def queue_cmd(
    context: click.Context, neighbour: str | None, as_json: bool, home_path: Path | None
) -> None:
    """List the bundles waiting here, most urgent first; show or cancel one.

    \b
    States:
      queued     waiting for a carrier to take it to the neighbour
      in flight  written to a medium, not acked yet
      held       no route yet (rise-send --wait); retried as maps arrive
      received   from the neighbour, waiting for rise-toss

    \b
    Examples:
      rise queue                      everything
      rise queue --for bob --json     what waits for or from bob
      rise queue show 3xmi            one bundle, by the start of its id
      rise queue cancel 3xmi          take it back
      rise queue cancel --all bob     take back everything queued for bob
    """
    context.obj = home_path  # `rise queue --home X cancel ID` works as well
    if context.invoked_subcommand is not None:
        if neighbour is not None or as_json:
            raise UsageError(f"--for and --json go after {context.invoked_subcommand}")
        return
    home = open_home(home_path)
    found = queue.rows(home, neighbour=neighbour)
    if as_json:
        click.echo(json.dumps([json_row(row) for row in found], indent=2))
        return
    current = now()
    for row in found:
        click.echo(
            f"{row.bundle_id}  {row.state:<9}  {_direction(row)} {row.neighbour:<16} "
            f"{human_bytes(row.bundle_bytes):>10}  nice {row.priority:<3}  "
            f"{ago(row.queued_at, now_seconds=current):>8}  expires {_when(row.expiry)}"
        )
    if not found:
        say(f"nothing waits for or from {neighbour}" if neighbour else "nothing waits here")


@queue_cmd.command("show")
@click.argument("bundle")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
@click.pass_context
def show_cmd(context: click.Context, bundle: str, as_json: bool, home_path: Path | None) -> None:
    """Show one waiting bundle (BUNDLE: its id, or its first 4+ characters)."""
    home = open_home(home_path or context.obj)
    row = queue.find(home, bundle)
    if as_json:
        click.echo(json.dumps(json_row(row), indent=2))
        return
    current = now()
    for label, value in (
        ("id", row.bundle_id),
        ("state", row.state),
        ("to" if row.state != "received" else "from", f"{row.neighbour} ({row.neighbour_id})"),
        ("size", f"{human_bytes(row.bundle_bytes)} ({row.bundle_bytes} bytes)"),
        ("priority", str(row.priority)),
        ("queued", ago(row.queued_at, now_seconds=current)),
        ("expires", _when(row.expiry)),
        ("written", f"{row.copies} time(s) to a medium"),
    ):
        click.echo(f"{label + ':':<10}{value}")


@queue_cmd.command("cancel")
@click.argument("bundles", nargs=-1)
@click.option("--all", "all_for", metavar="NEIGHBOUR", help="Every bundle waiting for NEIGHBOUR.")
@quiet_option
@home_option
@click.pass_context
def cancel_cmd(
    context: click.Context,
    bundles: tuple[str, ...],
    all_for: str | None,
    quiet: bool,
    home_path: Path | None,
) -> None:
    """Take back queued, in-flight or held bundles (BUNDLES: ids or their first 4+ characters).

    A cancelled bundle leaves the spool and is never offered again; a copy
    already written to a medium may still be delivered. Bundles received
    from a neighbour are not cancelled: rise-toss delivers them.
    """
    if bool(bundles) == (all_for is not None):
        raise UsageError("give bundle ids, or --all NEIGHBOUR (not both)")
    home = open_home(home_path or context.obj)
    if all_for is not None:
        chosen = [row for row in queue.rows(home, neighbour=all_for) if row.state != "received"]
        if not chosen:
            raise UsageError(f"nothing waits for {all_for}")
    else:
        chosen = [queue.find(home, bundle) for bundle in bundles]
    for row in chosen:
        outcome = queue.cancel(home, row, now=now())
        if not quiet:
            say(f"{row.bundle_id} for {row.neighbour}: {outcome}")


def _direction(row: queue.QueueRow) -> str:
    return "from" if row.state == "received" else "to  "


def _when(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")
