"""rise xfer / rise-xfer: exchange bundles with a directory or USB stick."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from rise_dtn.carriers.directory import medium
from rise_dtn.carriers.directory.audience import Audience, check_names
from rise_dtn.carriers.directory.xfer import Say, XferReport, exchange
from rise_dtn.cli.common import (
    home_option,
    now,
    open_home,
    progress_bars,
    quiet_option,
    say,
    stop_on_sigterm,
    warn,
)
from rise_dtn.core.errors import ExitCode, NoSpaceError, UsageError
from rise_dtn.core.units import human_bytes
from rise_dtn.node.config import parse_size
from rise_dtn.node.home import Home


def _report(report: XferReport, *, quiet: bool) -> None:
    for line in report.rejected:
        warn("rise-xfer", f"rejected: {line}")
    for line in report.unwritten:
        warn("rise-xfer", f"not written: {line}")
    for line in report.no_room:
        warn("rise-xfer", f"not taken: {line}")
    for line in report.never_fits:
        warn("rise-xfer", f"not written: {line}")
    if report.serves_nobody is not None:
        warn("rise-xfer", report.serves_nobody)
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
@click.option(
    "--toss",
    "toss_too",
    is_flag=True,
    help="Toss what arrived before leaving acks, so they go back on this same trip.",
)
@click.option(
    "--for",
    "for_names",
    multiple=True,
    metavar="NAME",
    help="Write bundles and acks only for this neighbour (repeatable). Default: the "
    "peers whose [peers.NAME] media name DIRECTORY, else every peer (a relay: its only peer).",
)
@click.option(
    "--for-all",
    is_flag=True,
    help="Write bundles and acks for every neighbour (a stick all of them share).",
)
@click.option(
    "--max-bundle",
    metavar="SIZE",
    help="Write no bundle larger than SIZE (e.g. 4095MiB for FAT32); one that can never "
    "fit is named, once, with a hint to send it as parts (rise-send --part-size).",
)
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
    directory: Path,
    move: bool,
    toss_too: bool,
    for_names: tuple[str, ...],
    for_all: bool,
    watch: bool,
    poll: float,
    max_bundle: str | None,
    home_path: Path | None,
    quiet: bool,
) -> None:
    """Exchange bundles with DIRECTORY (a mounted USB stick or any folder).

    Writes the bundles waiting for neighbours onto it, takes the bundles
    addressed to this node into the spool (`rise-toss`, or --toss, delivers
    them), and leaves signed acks for the bundles tossed so far, so that the
    senders release them. Sent bundles stay in the spool until acked,
    unless --move.

    A medium carries bundles and acks only for the neighbours it serves:
    those named with --for, else those whose [peers.NAME] media name
    DIRECTORY, else every peer; a relay, which holds others' packets,
    serves only its one peer or those named (--for-all: every peer).

    \b
    Examples:
      rise-xfer --toss /media/usb
      rise-xfer --watch --toss /media/usb    # wait for the stick, say when to pull it
    A complete sneakernet, the same crontab line on both machines (mountpoint:
    with no stick, /media/usb is a folder on the local disk):
      */10 * * * *  mountpoint -q /media/usb && rise-xfer -q --toss /media/usb
    """
    limit = _max_bundle_bytes(max_bundle)  # first: a typo is told before anything moves
    home = open_home(home_path)
    serving = Audience(names=for_names, everyone=for_all)
    check_names(home, serving)
    run = _runner(
        home, directory, serving, move=move, toss_too=toss_too, quiet=quiet, max_bundle=limit
    )
    if not watch:
        report = run()
        _exit_for(report)
        return
    _watch(directory, run, poll=poll)


def _max_bundle_bytes(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        size = parse_size(text)
    except UsageError as exc:
        raise UsageError(f"--max-bundle: {exc.message}") from None
    medium.check_max_bundle(size)
    return size


def _verbose(quiet: bool) -> Say:
    return (lambda _line: None) if quiet else say


def _runner(
    home: Home,
    directory: Path,
    serving: Audience,
    *,
    move: bool,
    toss_too: bool,
    quiet: bool,
    max_bundle: int | None = None,
) -> Callable[[], XferReport]:
    rejected_by_toss = [0]
    if toss_too:
        # Late: the toss and what it reads (onion layers, parallel workers)
        # are a quarter of a plain exchange's start-up.
        from rise_dtn.cli.toss_cmd import stream_now, toss_reporter
        from rise_dtn.node.toss.toss import toss

        rejected_by_toss, on_event = toss_reporter(quiet)

    def run() -> XferReport:
        with progress_bars(quiet=quiet) as bars:
            toss_step = (
                (lambda: toss(home, now=now(), on_event=on_event, progress=bars))
                if toss_too
                else None
            )
            report = exchange(
                home,
                directory,
                move=move,
                now=now(),
                say=_verbose(quiet),
                toss=toss_step,
                stream=stream_now(home, on_event) if toss_too else None,
                serving=serving,
                progress=bars,
                max_bundle_bytes=max_bundle,
            )
        report.rejected_by_toss = rejected_by_toss[0]
        _report(report, quiet=quiet)
        return report

    return run


def _exit_for(report: XferReport) -> None:
    if report.left_queued:
        raise NoSpaceError(
            f"no space left on the medium for {report.left_queued} bundle(s); they stay "
            "queued for the next exchange (the others were written)"
        )
    if report.medium_full:
        raise NoSpaceError(
            "no space left on the medium; the rest stays queued for the next exchange"
        )
    if report.never_fits:
        raise NoSpaceError(
            f"{len(report.never_fits)} bundle(s) can never fit this medium; they stay queued "
            "(send large files as parts: rise-send --part-size)"
        )
    if report.rejected or report.rejected_by_toss:
        raise SystemExit(int(ExitCode.REJECTED))
    if report.no_room:
        raise NoSpaceError(
            f"no room in the spool for {len(report.no_room)} bundle(s); they stay on the "
            "medium for the next exchange (see min_free in rise-config(5))"
        )
    if report.unwritten:
        raise SystemExit(int(ExitCode.FAILURE))
    if report.serves_nobody is not None:
        raise SystemExit(int(ExitCode.USAGE))


def _watch(directory: Path, run: Callable[[], XferReport], *, poll: float) -> None:
    """Exchange each time a medium appears at `directory`; say when it may be pulled."""
    from rise_dtn.node.watching import ChangeWaiter  # late: watchdog, only for --watch

    parent = directory.parent if directory.parent.is_dir() else Path("/")
    waiter = ChangeWaiter([parent], poll_seconds=poll)
    stop_on_sigterm(waiter.stop)
    say(f"waiting for a medium at {directory} (Ctrl-C to stop)")
    try:
        while not waiter.stopping.is_set():
            if not medium.ready(directory):
                waiter.wait()
                continue
            run()
            say(f"done: it is safe to remove {directory}")
            while medium.ready(directory) and waiter.wait():
                pass
            if not waiter.stopping.is_set():
                say(f"{directory} was removed; waiting for the next medium")
    except KeyboardInterrupt:
        pass
    finally:
        waiter.close()
