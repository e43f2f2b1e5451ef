"""What every command shares: --home, -q, the clock, talking to stderr, logs, progress bars."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.core.units import human_seconds
from rise_dtn.node.home import Home

if TYPE_CHECKING:
    # Only the long-running commands use these; a one-off command (rise-send
    # from cron) does not pay their imports (asyncio's was a tenth of it).
    import asyncio
    import logging

    from rise_dtn.cli.bars import Bars

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


VERBOSE = 15  # between DEBUG and INFO: -v, a line per bundle

# Set by setup_logging in the long-running commands (rise-daemon, rise-caller):
# then every line goes through `logging`, with a time and a level.
_log: logging.Logger | None = None
# Set by progress_bars while bars are drawn: talk then goes above them.
_bars: Bars | None = None


def say(line: str) -> None:
    """Talk to the user on stderr (stdout is for data), or log it in a daemon."""
    if _log is not None:
        _log.info(line)
        return
    if _bars is not None:
        _bars.write(line)
        return
    click.echo(line, err=True)


def warn(prog: str, line: str) -> None:
    if _log is not None:
        _log.warning(line)
        return
    if _bars is not None:
        _bars.write(f"{prog}: {line}")
        return
    click.echo(f"{prog}: {line}", err=True)


def log_options(function: F) -> F:
    """-v and --log-file, for the commands that run for days."""
    function = click.option(
        "--log-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Append the log to FILE instead of standard error (reopened when logrotate "
        "moves it away).",
    )(function)
    return click.option(
        "-v", "--verbose", count=True, help="More detail: -v each bundle, -vv debugging."
    )(function)


def _journal_formatter() -> logging.Formatter:
    import logging

    class JournalFormatter(logging.Formatter):
        """systemd's journal reads a `<N>` syslog priority before each line and adds its
        own time: the level survives without a timestamp twice over."""

        def format(self, record: logging.LogRecord) -> str:
            return f"<{_SYSLOG_PRIORITY.get(record.levelname, 6)}>{record.getMessage()}"

    return JournalFormatter()


_SYSLOG_PRIORITY = {"DEBUG": 7, "VERBOSE": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def setup_logging(prog: str, *, verbose: int, quiet: bool, log_file: Path | None) -> None:
    """Route say() and warn() through `logging`: a time and a level on each line.

    On a journald stream (JOURNAL_STREAM names our stderr) the lines carry a
    syslog priority instead; with --log-file they go there, appended.
    """
    global _log  # noqa: PLW0603 - one switch for the whole process
    import logging.handlers

    logging.addLevelName(VERBOSE, "VERBOSE")
    logger = logging.getLogger(prog)
    levels = (logging.INFO, VERBOSE, logging.DEBUG)
    logger.setLevel(logging.WARNING if quiet else levels[min(verbose, 2)])
    logger.propagate = False
    handler: logging.Handler
    if log_file is not None:
        try:
            handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            from rise_dtn.core.errors import UsageError

            raise UsageError(f"cannot write the log file {log_file}: {exc.strerror}") from None
        handler.setFormatter(_plain_formatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_journal_formatter() if _on_journal() else _plain_formatter())
    logger.addHandler(handler)
    # watchdog's own warnings (a thread stopping under it) are noise to an operator.
    logging.getLogger("watchdog").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)
    _log = logger


def talk_plainly() -> None:
    """Undo setup_logging: a warm worker's child (forked from rise-daemon) is the caller's
    rise-send, and talks to the caller's terminal as one run there would, progress bar
    included, not in the daemon's log format."""
    global _log  # noqa: PLW0603 - the switch setup_logging sets
    _log = None


def detail(line: str) -> None:
    """A line per bundle, shown with -v (in a daemon) and never otherwise."""
    if _log is not None:
        _log.log(VERBOSE, line)


def _plain_formatter() -> logging.Formatter:
    import logging

    return logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")


def _on_journal() -> bool:
    """True when systemd connected stderr to the journal (sd_journal_stream_fd(3))."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _colon, inode = stream.partition(":")
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{info.st_dev}:{info.st_ino}" == f"{device}:{inode}"


@contextlib.contextmanager
def progress_bars(*, quiet: bool) -> Iterator[Progress]:
    """Progress bars on a terminal for the length of the `with` (cli/bars.py), and
    nothing in cron, pipes or with -q; say() and warn() write above the bars."""
    global _bars  # noqa: PLW0603 - one terminal per process
    from rise_dtn.cli import bars

    if not bars.wanted(quiet=quiet) or _log is not None or _bars is not None:
        yield NO_PROGRESS
        return
    drawn = _bars = bars.Bars()
    try:
        yield drawn
    finally:
        _bars = None
        drawn.close()


def stream_progress(
    progress: Progress, lane: str, name: str, total: int | None
) -> Callable[[int], None]:
    """A per-block callback (what rise-send's sealing takes) that tells `progress`."""
    progress.started(lane, name, total or 0)
    return functools.partial(progress.moved, lane)


def json_word(text: str) -> str:
    """A state as --json gives it: one word, as a script compares it (in transit ->
    in_transit); people read the words (rise(7), UNITS AND JSON)."""
    return text.replace(" ", "_")


def json_row(row: Any) -> dict[str, Any]:
    """A listing's row (a dataclass) for --json, its state in one word."""
    shown: dict[str, Any] = dataclasses.asdict(row)
    if isinstance(shown.get("state"), str):
        shown["state"] = json_word(shown["state"])
    return shown


def stop_on_sigterm(stop: Callable[[], None]) -> None:
    """Let `kill` (SIGTERM) end a --watch loop as cleanly as Ctrl-C does."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop())


def stop_event_on_signals() -> asyncio.Event:
    """Inside a running loop: an event that SIGTERM or Ctrl-C sets, for daemons."""
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def ago(seconds_since_epoch: int | None, *, now_seconds: int) -> str:
    if seconds_since_epoch is None:
        return "-"
    return f"{human_seconds(max(0, now_seconds - seconds_since_epoch))} ago"
