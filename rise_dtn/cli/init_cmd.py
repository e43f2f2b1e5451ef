"""rise init: create a node."""

from __future__ import annotations

from pathlib import Path

import click

from rise_dtn.carriers import registry
from rise_dtn.cli.common import home_option, say
from rise_dtn.node.home import Home, default_home


@click.command("init")
@click.option("--name", required=True, help="This node's name, shown on its card (e.g. alice).")
@home_option
def init_cmd(name: str, home_path: Path | None) -> None:
    """Create a node: keys (0600), config.toml and an empty spool.

    \b
    Example:
      rise init --name alice
      rise card > alice.card     # give this to your neighbours
    """
    found = registry.load()
    for problem in found.problems:
        say(f"rise init: {problem}")
    home = Home.create(home_path or default_home(), name=name, address_schemes=found.schemes)
    click.echo(str(home.identity.node_id))
    say(f"created node {name!r} in {home.path}")
    say("next: `rise card` prints your card; `rise peer add CARD` trusts a neighbour's card")
