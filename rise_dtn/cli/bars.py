"""Progress bars on a terminal (tqdm) for what core.progress.Progress hears.

Each lane ("to bob", "from alice", "tossing") gets an overall bar (bytes,
rate, ETA, bundles done of those planned) and, while it moves one of
several bundles, a bar for that bundle under it, gone once it is done. Byte
counts read as everywhere else (core/units.py: KiB, MiB, one decimal).

Nothing at all when stderr is not a terminal, in cron, with -q or on a dumb
terminal. tqdm is imported only when a bar is first drawn, so a 100-byte
rise-send never pays for it; its mininterval limits redrawing, so the
per-block calls cost a lock and a few additions.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.core.units import human_bytes

# A lane this large gets its bars at once; a smaller one once it has taken
# SLOW_SECONDS (a radio link moves 100 KiB in minutes): short work stays silent.
MIN_BAR_BYTES = 1 << 20
SLOW_SECONDS = 1.0
# Redraw at most this often: a per-block call then costs no terminal write.
REDRAW_SECONDS = 0.2
NAME_CHARS = 16  # of a bundle id in its bar: enough to tell bundles apart


def printable(name: str) -> str:
    """A name as a bar may show it: a name on a stick is chosen by whoever held the
    stick, and a control character there (an escape sequence) would reach the
    terminal as a command, not as text."""
    return "".join(char if char.isprintable() else "?" for char in name)


def wanted(*, quiet: bool, stream: IO[str] | None = None) -> bool:
    """Bars only for a person watching: stderr a terminal, no -q, a terminal that can."""
    stream = sys.stderr if stream is None else stream
    if quiet or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def for_command(*, quiet: bool) -> Progress:
    """Bars on stderr if wanted (wanted()), else the listener that does nothing."""
    return Bars() if wanted(quiet=quiet) else NO_PROGRESS


class _Lane:
    """One lane's counts and its bars (None until drawn)."""

    __slots__ = (
        "bundles",
        "done_bundles",
        "item",
        "item_moved",
        "item_name",
        "item_total",
        "moved",
        "overall",
        "planned",
        "started_at",
    )

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.planned = 0  # bytes planned for this run
        self.moved = 0  # bytes moved in this run
        self.bundles = 0
        self.done_bundles = 0
        self.item_name = ""
        self.item_total = 0
        self.item_moved = 0  # of the current item, in this run
        self.overall: Any = None
        self.item: Any = None


class Bars(Progress):
    """Draws tqdm bars on `stream` (stderr); close() leaves each lane's overall line."""

    def __init__(
        self, stream: IO[str] | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def planned(self, lane: str, *, bundles: int, total_bytes: int) -> None:
        with self._lock:
            state = self._lane(lane)
            state.bundles += bundles
            state.planned += total_bytes
            self._update_overall(state, lane)

    def started(self, lane: str, name: str, total_bytes: int, *, done_bytes: int = 0) -> None:
        with self._lock:
            state = self._lane(lane)
            remaining = max(0, total_bytes - done_bytes)
            # Work nobody planned (a lane that could not count ahead) is planned now.
            state.planned = max(state.planned, state.moved + remaining)
            if state.done_bundles >= state.bundles:
                state.bundles = state.done_bundles + 1
            state.item_name = printable(name)
            state.item_total = total_bytes
            state.item_moved = done_bytes
            self._close_item(state)
            if state.overall is not None or self._due(state):
                self._draw(state, lane)

    def moved(self, lane: str, count: int) -> None:
        with self._lock:
            state = self._lane(lane)
            state.moved += count
            state.item_moved += count
            if state.overall is None:
                if self._due(state):
                    self._draw(state, lane)  # with this count in it
                return
            state.overall.update(count)
            if state.item is not None:
                state.item.update(count)

    def finished(self, lane: str, *, complete: bool = True) -> None:
        with self._lock:
            state = self._lane(lane)
            if complete:
                rest = max(0, state.item_total - state.item_moved)
                state.moved += rest
                state.done_bundles += 1
            else:
                # Abandoned: what it would still have taken is no longer ahead.
                rest = 0
                state.planned -= max(0, state.item_total - state.item_moved)
                state.bundles = max(state.done_bundles, state.bundles - 1)
            state.item_total = state.item_moved = 0
            self._close_item(state)
            if state.overall is not None:
                self._update_overall(state, lane, advance=rest)

    def write(self, line: str) -> None:
        """A line of talk above the bars (tqdm.write keeps them whole)."""
        with self._lock:
            if not any(state.overall is not None for state in self._lanes.values()):
                print(line, file=self._stream, flush=True)
                return
            _tqdm().write(line, file=self._stream)

    def close(self) -> None:
        """Leave each lane's overall line as it ended; bundle bars go.

        The bars are cleared and their last states written again as plain
        lines: tqdm leaving several bars closed out of order (a live link's two
        directions) left the tail of an older line beside the summary.
        """
        with self._lock:
            for state in self._lanes.values():
                self._close_item(state)
            drawn = [state for state in self._lanes.values() if state.overall is not None]
            finals = [str(state.overall) for state in drawn]
            for state in drawn:
                state.overall.leave = False
                state.overall.close()
                state.overall = None
            for line in finals:
                print(line, file=self._stream, flush=True)

    def _lane(self, lane: str) -> _Lane:
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane(self._clock())
        return state

    def _due(self, state: _Lane) -> bool:
        return (
            max(state.planned, state.item_total) >= MIN_BAR_BYTES
            or self._clock() - state.started_at >= SLOW_SECONDS
        )

    def _draw(self, state: _Lane, lane: str) -> None:
        if state.overall is None:
            state.overall = _bar(self._stream, desc=lane, total=state.planned, leave=True)
            state.overall.update(state.moved)
            self._update_overall(state, lane)
        if state.item is None and state.item_total and state.bundles > 1:
            state.item = _bar(
                self._stream,
                desc=f"  {state.item_name[:NAME_CHARS]}",
                total=state.item_total,
                leave=False,
                initial=state.item_moved,
            )

    def _update_overall(self, state: _Lane, lane: str, *, advance: int = 0) -> None:
        bar = state.overall
        if bar is None:
            return
        bar.total = max(state.planned, state.moved) or None
        bar.set_description_str(
            f"{lane} ({state.done_bundles}/{state.bundles})" if state.bundles > 1 else lane,
            refresh=False,
        )
        if advance:
            bar.update(advance)
        else:
            bar.refresh()

    def _close_item(self, state: _Lane) -> None:
        if state.item is not None:
            state.item.close()
            state.item = None


# With a total: percent, bar, bytes, rate, time left; without: bytes and rate.
_KNOWN = (
    "{desc}: {percentage:3.0f}%|{bar}| {done_text} / {total_text}, {rate_text}, ETA {remaining}"
)
_UNKNOWN = "{desc}: {done_text}, {rate_text} [{elapsed}]"


def _bar(stream: IO[str], *, desc: str, total: int, leave: bool, initial: int = 0) -> Any:
    # A terminal that reports no size (a serial console, a bare pty) would
    # make tqdm hide every bar: draw for 80 columns and 24 rows there.
    columns, rows = _size(stream)
    sized = bool(columns and rows)
    return _bar_class()(
        ncols=None if sized else columns or 80,
        nrows=None if sized else rows or 24,
        total=total or None,
        initial=initial,
        desc=desc,
        file=stream,
        leave=leave,
        mininterval=REDRAW_SECONDS,
        dynamic_ncols=sized,
        bar_format=_KNOWN if total else _UNKNOWN,
    )


def _size(stream: IO[str]) -> tuple[int, int]:
    """The terminal's columns and rows (0: it does not say)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


@functools.cache
def _tqdm() -> Any:
    import tqdm  # late: ~30 ms of imports, paid only when a bar is drawn

    # No monitor thread: a toss forks workers only in a process without threads.
    tqdm.tqdm.monitor_interval = 0
    return tqdm.tqdm


@functools.cache
def _bar_class() -> Any:
    base = _tqdm()

    class ByteBar(base):  # type: ignore[misc, valid-type]
        """tqdm's bar with the project's byte words (tqdm's own mix 1000 and 1024)."""

        @property
        def format_dict(self) -> dict[str, Any]:
            found: dict[str, Any] = super().format_dict
            done, total = found["n"], found["total"]
            rate = found["rate"]
            if rate is None and found["elapsed"]:
                rate = done / found["elapsed"]
            found["done_text"] = human_bytes(int(done))
            found["total_text"] = human_bytes(int(total)) if total else "?"
            found["rate_text"] = f"{human_bytes(int(rate))}/s" if rate else "? B/s"
            self.bar_format = _KNOWN if total else _UNKNOWN
            return found

    return ByteBar
