"""rise check / rise-check: verify the spool; --repair rebuilds the index."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from rise_dtn.cli.common import home_option, now, open_home, say
from rise_dtn.core.errors import ExitCode
from rise_dtn.node.check import check


@click.command("check")
@click.option("--repair", is_flag=True, help="Rebuild the index from the files; clean up debris.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@home_option
def check_cmd(repair: bool, as_json: bool, home_path: Path | None) -> None:
    """Verify every spool file against its header and the index.

    Exit status 0 when the spool is clean, 3 when problems were found (with
    --repair: found and repaired; run it again to confirm).
    """
    home = open_home(home_path)
    report = check(home, repair=repair, now=now())
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report) | {"clean": report.clean}, indent=2))
    else:
        for line in report.problems:
            click.echo(f"problem: {line}")
        for line in report.repaired:
            click.echo(f"repaired: {line}")
        for line in report.notes:
            click.echo(f"note: {line}")
        if report.clean:
            verdict = "clean"
        elif repair:
            verdict = "problems, repaired as above (run rise-check again to confirm)"
        else:
            verdict = "problems (run rise-check --repair)"
        say(f"{report.files} spool file(s) checked: {verdict}")
    if not report.clean:
        raise SystemExit(int(ExitCode.REJECTED))
