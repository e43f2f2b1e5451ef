"""rise xfer / rise-xfer: exchange bundles with a directory or USB stick."""

from __future__ import annotations

from pathlib import Path

import click

from rise_dtn.cli.common import (
    home_option,
    human_bytes,
    now,
    open_home,
    quiet_option,
    say,
    stop_on_sigterm,
    warn,
)
from rise_dtn.core.errors import ExitCode, NoSpaceError
from rise_dtn.node import medium
from rise_dtn.node.home import Home
from rise_dtn.node.watching import ChangeWaiter
from rise_dtn.node.xfer import Say, XferReport, exchange


def _report(report: XferReport, *, quiet: bool) -> None:
    for line in report.rejected:
        warn("rise-xfer", f"rejected: {line}")
    if quiet:
        return
    for line in report.skipped:
        say(f"note: {line}")
    say(
        f"received {report.received} ({human_bytes(report.received_bytes)}), "
        f"sent {report.sent} ({human_bytes(report.sent_bytes)}), "
        f"confirmed {report.released}, duplicates {report.duplicates}, expired {report.expired}"
    )


@click.command("xfer")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--move", is_flag=True, help="Delete sent bundles from the spool once copied.")
@click.option("--watch", is_flag=True, help="Wait for DIRECTORY to be mounted, then exchange.")
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 3600),
    default=1.0,
    show_default=True,
    help="With --watch: check for the medium at least this often (seconds).",
)
@home_option
@quiet_option
def xfer_cmd(
    directory: Path, move: bool, watch: bool, poll: float, home_path: Path | None, quiet: bool
) -> None:
    """Exchange bundles with DIRECTORY (a mounted USB stick or any folder).

    Writes the bundles waiting for neighbours onto it, takes the bundles
    addressed to this node into the spool (run `rise-toss` to deliver them),
    and leaves signed acks so that the senders release what arrived. Sent
    bundles stay in the spool until acked, unless --move.

    \b
    Example (a complete sneakernet, on both machines):
      */10 * * * *  rise-xfer -q /media/usb && rise-toss -q
    """
    home = open_home(home_path)
    if not watch:
        report = exchange(home, directory, move=move, now=now(), say=_verbose(quiet))
        _report(report, quiet=quiet)
        _exit_for(report)
        return
    _watch(home, directory, move=move, poll=poll, quiet=quiet)


def _verbose(quiet: bool) -> Say:
    return (lambda _line: None) if quiet else say


def _exit_for(report: XferReport) -> None:
    if report.medium_full:
        raise NoSpaceError("the medium is full; the rest stays queued for the next exchange")
    if report.rejected:
        raise SystemExit(int(ExitCode.REJECTED))


def _watch(home: Home, directory: Path, *, move: bool, poll: float, quiet: bool) -> None:
    """Exchange each time a medium appears at `directory`; say when it may be pulled."""
    parent = directory.parent if directory.parent.is_dir() else Path("/")
    waiter = ChangeWaiter([parent], poll_seconds=poll)
    stop_on_sigterm(waiter.stop)
    say(f"waiting for a medium at {directory} (Ctrl-C to stop)")
    try:
        while not waiter.stopping.is_set():
            if not medium.ready(directory):
                waiter.wait()
                continue
            report = exchange(home, directory, move=move, now=now(), say=_verbose(quiet))
            _report(report, quiet=quiet)
            say(f"done: it is safe to remove {directory}")
            while medium.ready(directory) and waiter.wait():
                pass
    except KeyboardInterrupt:
        pass
    finally:
        waiter.close()
