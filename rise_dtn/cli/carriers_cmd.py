"""rise carriers: list the installed carriers (entry points of group rise_dtn.carriers)."""

from __future__ import annotations

import json

import click

from rise_dtn.carriers import registry
from rise_dtn.core.errors import ExitCode


@click.command("carriers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def carriers_cmd(as_json: bool) -> None:
    """List the installed carriers: name, address schemes, package, summary.

    A carrier moves bundles between neighbours. Which one a call uses is
    chosen by the scheme of the address, given to rise-call or set as
    [peers.NAME] address in config.toml:

    \b
      tcp://HOST[:PORT]                  rise-daemon over TCP (port 5454)
      ssh://[USER@]HOST[:PORT][/HOME]    ssh HOST rise-daemon --stdio
      exec:COMMAND                       any command's stdin and stdout
      dir:/PATH                          a folder or USB stick, as rise-xfer
      imaps://USER@HOST/FOLDER           an IMAP mailbox, with rise-imap
      serial:DEVICE, kiss:DEVICE         a serial line or KISS TNC (rise-serial)
      kiss+tcp://HOST:PORT               a KISS TNC on TCP, e.g. Direwolf

    Other packages add carriers (and schemes) by entry point; see
    docs/carriers.md. A carrier that cannot be loaded is named on stderr
    with the reason, and the command exits with status 1.

    \b
    Examples:
      rise carriers
      rise-call bob tcp://bob.example.org:5454
      rise-call relay ssh://rise@relay.example.org
    """
    found = registry.load()
    if as_json:
        rows = [
            {
                "name": item.carrier.name,
                "schemes": list(item.carrier.schemes),
                "kind": item.carrier.kind.value,
                "source": item.source,
                "summary": item.carrier.summary,
            }
            for item in found.carriers
        ]
        click.echo(json.dumps({"carriers": rows, "problems": [str(p) for p in found.problems]}))
    else:
        listed = {
            item.carrier.name: ", ".join(f"{scheme}:" for scheme in item.carrier.schemes)
            for item in found.carriers
        }
        width = max([14, *map(len, listed.values())])  # the columns line up
        for item in found.carriers:
            schemes = listed[item.carrier.name]
            click.echo(f"{item.carrier.name:<10} {schemes:<{width}} {item.source:<18} ", nl=False)
            click.echo(item.carrier.summary)
    for problem in found.problems:
        click.echo(f"rise carriers: {problem}", err=True)
    if found.problems:
        raise SystemExit(int(ExitCode.FAILURE))
