"""What every command shares: --home, -q, the clock, talking to stderr, progress bars."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from rise_dtn.node.home import Home

F = TypeVar("F", bound=Callable[..., Any])


def home_option(function: F) -> F:
    return click.option(
        "--home",
        "home_path",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="RISE_HOME",
        help="Node directory (default: $RISE_HOME, else the platform's data directory).",
    )(function)


def quiet_option(function: F) -> F:
    return click.option(
        "-q", "--quiet", is_flag=True, help="Print nothing unless something failed (for cron)."
    )(function)


def open_home(home_path: Path | None) -> Home:
    return Home.open(home_path)


def now() -> int:
    return int(time.time())


def say(line: str) -> None:
    """Talk to the user on stderr; stdout is for data."""
    click.echo(line, err=True)


def warn(prog: str, line: str) -> None:
    click.echo(f"{prog}: {line}", err=True)


@contextlib.contextmanager
def progress(label: str, total: int | None, *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; nothing at all in cron, pipes or with -q."""
    if quiet or total is None or total < (1 << 20) or not sys.stderr.isatty():
        yield lambda _done: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def stop_on_sigterm(stop: Callable[[], None]) -> None:
    """Let `kill` (SIGTERM) end a --watch loop as cleanly as Ctrl-C does."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop())


def stop_event_on_signals() -> asyncio.Event:
    """Inside a running loop: an event that SIGTERM or Ctrl-C sets, for daemons."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def ago(seconds_since_epoch: int | None, *, now_seconds: int) -> str:
    if seconds_since_epoch is None:
        return "-"
    delta = max(0, now_seconds - seconds_since_epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{delta // size}{unit} ago"
    return f"{delta}s ago"
