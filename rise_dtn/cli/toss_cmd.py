"""rise toss / rise-toss: deliver received bundles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

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
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.errors import ExitCode
from rise_dtn.core.identity import NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.toss.relay import forward_pushed
from rise_dtn.node.toss.toss import (
    Delivered,
    NotifyFailed,
    TossEvent,
    deliver_streamed,
    toss,
)
from rise_dtn.node.toss.toss_events import Source, Streamed


def toss_reporter(quiet: bool) -> tuple[list[int], Callable[[TossEvent], None]]:
    rejected = [0]

    def on_event(event: TossEvent) -> None:
        if isinstance(event, Delivered):
            if not quiet:
                say(f"delivered {event.kind.name.lower()} from {event.sender}: {event.path}")
            return
        if isinstance(event, NotifyFailed):
            warn("rise-toss", f"{event.bundle_id}: {event.reason}")
        elif event.action == "deferred":
            warn("rise-toss", f"{event.bundle_id}: deferred: {event.reason}")
        elif event.action == "quarantined":
            rejected[0] += 1
            warn("rise-toss", f"{event.bundle_id}: rejected: {event.reason} (quarantined)")
        elif not quiet:
            say(f"{event.bundle_id}: {event.action}: {event.reason}")

    return rejected, on_event


@click.command("toss")
@click.option("--watch", is_flag=True, help="Keep running; toss bundles as they arrive.")
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="With --watch: rescan at least this often (seconds), events or not.",
)
@home_option
@quiet_option
def toss_cmd(watch: bool, poll: float, home_path: Path | None, quiet: bool) -> None:
    """Verify, decrypt and deliver the bundles received in the spool.

    Files go to <home>/incoming/<sender>/, messages to `rise inbox`. A bad
    bundle is quarantined with a one-line reason (exit status 3) and the rest
    go on; expired and duplicate bundles are dropped.
    """
    home = open_home(home_path)
    rejected, on_event = toss_reporter(quiet)
    if not watch:
        _toss_shown(home, on_event, quiet=quiet)
        if rejected[0]:
            raise SystemExit(int(ExitCode.REJECTED))
        return
    _watch(home, poll, on_event, quiet=quiet)


def _toss_shown(home: Home, on_event: Callable[[TossEvent], None], *, quiet: bool) -> None:
    """A toss, with progress bars on a terminal."""
    with progress_bars(quiet=quiet) as bars:
        toss(home, now=now(), on_event=on_event, progress=bars)


def _watch(home: Home, poll: float, on_event: Callable[[TossEvent], None], *, quiet: bool) -> None:
    from rise_dtn.node.watching import ChangeWaiter  # late: watchdog, for --watch alone

    waiter = ChangeWaiter([home.spool.rx], poll_seconds=poll)
    stop_on_sigterm(waiter.stop)
    say(f"watching {home.spool.rx} (Ctrl-C to stop)")
    try:
        while True:
            _toss_shown(home, on_event, quiet=quiet)
            if not waiter.wait():
                break
    except KeyboardInterrupt:
        pass
    finally:
        waiter.close()


def finish_with_toss(home: Home, *, rejected: int, toss_too: bool, quiet: bool) -> None:
    """After a carrier run: toss if asked, then exit 3 if anything was rejected on the way."""
    if toss_too:
        counted, on_event = toss_reporter(quiet)
        _toss_shown(home, on_event, quiet=quiet)
        rejected += counted[0]
    if rejected:
        raise SystemExit(int(ExitCode.REJECTED))


def toss_now(home: Home, on_event: Callable[[TossEvent], None]) -> Callable[[], None]:
    """A toss of everything received so far, for links that toss as bundles arrive."""

    def run() -> None:
        toss(home, now=now(), on_event=on_event)

    return run


def stream_now(
    home: Home, on_event: Callable[[TossEvent], None]
) -> Callable[[ClearPart, NodeId, Source], Streamed]:
    """Delivery of a large bundle while a live link still receives it (see Link._start_stream)."""

    def run(clear: ClearPart, neighbour: NodeId, source: Source) -> Streamed:
        return deliver_streamed(home, clear, neighbour, source, now=now(), on_event=on_event)

    return run


def relay_now(
    home: Home, on_event: Callable[[TossEvent], None]
) -> Callable[[bytes, NodeId], NodeId | None]:
    """A relay's forward of a small packet a live link received whole (relay.forward_pushed)."""

    def run(packet: bytes, neighbour: NodeId) -> NodeId | None:
        done = forward_pushed(home, neighbour, packet, now=now())
        if done is None:
            return None
        event, next_hop = done
        on_event(event)
        return next_hop

    return run


def session_logger(home: Home, *, toss_after: bool) -> Callable[[str], None]:
    """For daemons and schedulers: print each session's line, then toss what it brought."""
    _rejected, on_event = toss_reporter(False)

    def log(line: str) -> None:
        say(line)
        if toss_after:
            toss(home, now=now(), on_event=on_event)

    return log
