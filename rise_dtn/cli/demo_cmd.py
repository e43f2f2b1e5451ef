"""rise demo: build a small network on this machine and show it working."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from rise_dtn import demo
from rise_dtn.cli.common import now, say


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to build the network (default: spool/demo/ in a checkout, else a temp dir).",
)
def demo_cmd(directory: Path | None) -> None:
    """Build alice, relay1, relay2 and bob; send a message and a file over both relays.

    Each link is a directory standing in for a USB stick; the bundles are
    onion-wrapped, each relay peels one layer, and bob's receipts come back.
    Then the same network runs live over TCP on 127.0.0.1: a rise-daemon per
    node keeps a link to the next, and another message and its receipt cross
    both relays at once; the demo times them, then stops the daemons (their
    logs stay in DIR/daemon-NAME.log).

    Everything the demo does is what the real commands do; it prints each
    step and where to look afterwards.
    """
    target = directory or demo.default_directory(Path.cwd())
    if target is None:
        target = Path(tempfile.mkdtemp(prefix="rise-demo-"))
    demo.run(target.resolve(), now=now(), say=say)
