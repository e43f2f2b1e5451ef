"""When to call whom: [[calls]] entries of config.toml, cron schedules, windows, backoff.

Pure functions of the config and a given time (no clock, no I/O), so the
caller loop in carriers/live/caller.py stays a thin driver and this is unit-tested.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any

from croniter import croniter

from rise_dtn.core.errors import UsageError
from rise_dtn.node.config import as_written, unknown_key

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
CALL_KEYS = {"node", "cron", "address", "command", "window"}
FIRST_RETRY_SECONDS = 30  # a dropped link is often back within a minute
MAX_RETRY_SECONDS = 3600  # never wait longer than an hour between attempts


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """A daily local-time window; it may wrap midnight (22:00-06:00)."""

    start_minute: int
    end_minute: int

    def contains(self, moment: datetime.datetime) -> bool:
        minute = moment.hour * 60 + moment.minute
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute


@dataclasses.dataclass(frozen=True, slots=True)
class CallPlan:
    node: str
    cron: str
    address: str | None = None
    command: str | None = None
    window: Window | None = None

    def next_due(self, after: datetime.datetime) -> datetime.datetime:
        """The next cron time after `after` that falls inside the window."""
        times = croniter(self.cron, after)
        for _attempt in range(10_000):  # a window always meets a cron within a week or so
            due: datetime.datetime = times.get_next(datetime.datetime)
            if self.window is None or self.window.contains(due):
                return due
        raise UsageError(f"call to {self.node}: cron {self.cron!r} never falls in its window")


def parse_window(text: str) -> Window:
    match = _WINDOW.match(text)
    if not match:
        raise UsageError(f"not a time window: {text!r} (use HH:MM-HH:MM)")
    start_hour, start_min, end_hour, end_min = (int(part) for part in match.groups())
    if start_hour > 23 or end_hour > 24 or start_min > 59 or end_min > 59:
        raise UsageError(f"not a time window: {text!r} (use HH:MM-HH:MM)")
    return Window(start_hour * 60 + start_min, end_hour * 60 + end_min)


def parse_calls(entries: list[Any]) -> list[CallPlan]:
    """The [[calls]] array of tables, checked."""
    plans = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise UsageError("[[calls]] entries must be tables")
        for key in entry:
            if key not in CALL_KEYS:
                raise UsageError(unknown_key(key, "[[calls]]", CALL_KEYS) + " (see rise-config(5))")
        node, cron = entry.get("node"), entry.get("cron")
        if not isinstance(node, str) or not isinstance(cron, str):
            raise UsageError('each [[calls]] entry needs node = "NAME" and cron = "* * * * *"')
        if not croniter.is_valid(cron):
            raise UsageError(f"call to {node}: not a cron schedule: {cron!r}")
        window = _optional(entry, "window")  # not a string: refused, never "at any hour"
        plans.append(
            CallPlan(
                node=node,
                cron=cron,
                address=_optional(entry, "address"),
                command=_optional(entry, "command"),
                window=_window(node, window) if window is not None else None,
            )
        )
    return plans


def _window(node: str, text: str) -> Window:
    try:
        return parse_window(text)
    except UsageError as exc:
        raise UsageError(f"call to {node}: window: {exc.message}") from None


def _optional(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"[[calls]] {key}: must be a string, not {as_written(value)}")
    return value


def retry_delay(failures: int) -> int:
    """Seconds to wait after `failures` failed attempts in a row (exponential, capped)."""
    return int(min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, failures - 1)))
