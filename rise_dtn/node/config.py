"""The node's config.toml: what a user may set, with defaults and clear errors.

Read with tomllib; written once, from a commented template, by `rise init`
(the operator edits it by hand after that). See rise-config(5).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from rise_dtn.core.card import check_name
from rise_dtn.core.errors import UsageError

DEFAULT_LIFETIME_SECONDS = 30 * 86400  # a month: long enough for a stick carried by hand
MAX_LIFETIME_SECONDS = 10 * 365 * 86400
# Lower is sooner, as with nice(1). 16 is a small number so that it costs one
# byte on the wire; urgent traffic can still go below it.
DEFAULT_NICE = 16
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

TEMPLATE = """\
# rise-dtn node configuration; see rise-config(5).

[node]
name = "{name}"
# Carrier addresses published in this node's card, e.g.
# addresses = {{ tcp = "example.org:5454" }}

[send]
# Default bundle lifetime ("30d", "12h", "3600") and priority (0 urgent .. 255 bulk).
lifetime = "30d"
nice = {nice}

[toss]
# Where delivered files go (default: <home>/incoming/<sender>/).
# incoming = "/srv/rise/incoming"
# A command run for every delivery, with RISE_* variables in its environment.
# on_delivery = "notify-send 'rise-dtn' 'new delivery'"

[spool]
# The index database; any SQLAlchemy URL (default: SQLite in the spool).
# index_url = "postgresql+psycopg://rise@localhost/rise"

# Scheduled calls for rise-caller (one [[calls]] table per call), e.g.
# [[calls]]
# node = "bob"
# cron = "*/10 * * * *"       # when, in cron syntax (local time)
# address = "bob.example.org:5454"   # or: command = "ssh bob rise-daemon --stdio"
# window = "22:00-06:00"      # optional: only call within this daily window

# Per-peer settings, by the peer's local name:
# [peers.bob]
# on_delivery = "/usr/local/bin/handle-bob"
# max_rate = "2M"             # bytes per second each way on live links
"""


def parse_duration(text: str | int) -> int:
    """'30d', '12h', '90m', '45s' or plain seconds -> seconds."""
    if isinstance(text, int):
        seconds = text
    else:
        match = _DURATION.match(text)
        if not match:
            raise UsageError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m, 3600)")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= MAX_LIFETIME_SECONDS:
        raise UsageError(f"duration out of range: {text!r} (1 second to 10 years)")
    return seconds


def check_nice(nice: int) -> int:
    if not 0 <= nice <= 255:
        raise UsageError(f"nice must be 0..255, not {nice}")
    return nice


@dataclasses.dataclass(frozen=True, slots=True)
class PeerSettings:
    on_delivery: str | None = None
    max_rate_bytes: int | None = None  # per direction, on live links; None: unlimited


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    name: str
    addresses: tuple[tuple[str, str], ...] = ()
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
    nice: int = DEFAULT_NICE
    incoming: Path | None = None
    on_delivery: str | None = None
    index_url: str | None = None
    peers: dict[str, PeerSettings] = dataclasses.field(default_factory=dict)
    calls: tuple[Any, ...] = ()  # raw [[calls]] tables; see node/schedule.py

    def peer(self, name: str) -> PeerSettings:
        return self.peers.get(name, PeerSettings())


def render(name: str) -> str:
    return TEMPLATE.format(name=name, nice=DEFAULT_NICE)


def load(path: Path) -> Config:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no config at {path} (run `rise init --name NAME` first)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    try:
        return _from_dict(data, base=path.parent)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: invalid setting: {exc}") from None
    except KeyError as exc:
        raise UsageError(f"{path}: {exc.args[0]} (see rise-config(5))") from None


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"[{key}] must be a table")
    return value


def _optional_str(table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


# Every key a config may hold: a typo is an error, not a silently ignored line.
KNOWN_KEYS = {
    "node": {"name", "addresses"},
    "send": {"lifetime", "nice"},
    "toss": {"incoming", "on_delivery"},
    "spool": {"index_url"},
    "peers": None,  # any peer name; checked below
    "calls": None,  # an array of tables, checked by node/schedule.py
}
PEER_KEYS = {"on_delivery", "max_rate"}
_RATE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)\s*$")


def parse_rate(text: str | int) -> int:
    """'500K', '2M', '1G' or plain bytes per second."""
    if isinstance(text, int) and not isinstance(text, bool):
        rate = text
    else:
        match = _RATE.match(str(text))
        if not match:
            raise UsageError(f"not a rate: {text!r} (bytes per second, e.g. 500K, 2M)")
        rate = int(match.group(1)) * 1024 ** " KMG".index((match.group(2) or " ").upper())
    if rate < 1024:
        raise UsageError(f"rate too low: {text!r} (at least 1K bytes per second)")
    return rate


def _check_keys(data: dict[str, Any]) -> None:
    for table, value in data.items():
        if table not in KNOWN_KEYS:
            raise KeyError(f"unknown section [{table}]")
        allowed = KNOWN_KEYS[table]
        if allowed is not None and isinstance(value, dict):
            for key in value:
                if key not in allowed:
                    raise KeyError(f"unknown key {key!r} in [{table}]")
    for peer, settings in _table(data, "peers").items():
        for key in settings if isinstance(settings, dict) else ():
            if key not in PEER_KEYS:
                raise KeyError(f"unknown key {key!r} in [peers.{peer}]")


def _from_dict(data: dict[str, Any], *, base: Path) -> Config:
    _check_keys(data)
    node, send, toss, spool = (_table(data, key) for key in ("node", "send", "toss", "spool"))
    name = node.get("name")
    if not isinstance(name, str):
        raise TypeError("[node] name must be a string")
    check_name(name, error=UsageError)
    addresses = tuple(sorted((str(k), str(v)) for k, v in _table(node, "addresses").items()))
    nice = send.get("nice", DEFAULT_NICE)
    if not isinstance(nice, int):
        raise TypeError("[send] nice must be an integer")
    incoming = _optional_str(toss, "incoming")
    peers = {
        str(peer): _peer_settings(_table(_table(data, "peers"), peer))
        for peer in _table(data, "peers")
    }
    return Config(
        name=name,
        addresses=addresses,
        lifetime_seconds=parse_duration(send.get("lifetime", DEFAULT_LIFETIME_SECONDS)),
        nice=check_nice(nice),
        incoming=(base / Path(incoming).expanduser()) if incoming else None,
        on_delivery=_optional_str(toss, "on_delivery"),
        index_url=_optional_str(spool, "index_url"),
        peers=peers,
        calls=tuple(_calls(data)),
    )


def _peer_settings(table: dict[str, Any]) -> PeerSettings:
    rate = table.get("max_rate")
    return PeerSettings(
        on_delivery=_optional_str(table, "on_delivery"),
        max_rate_bytes=parse_rate(rate) if rate is not None else None,
    )


def _calls(data: dict[str, Any]) -> list[Any]:
    calls = data.get("calls", [])
    if not isinstance(calls, list):
        raise TypeError("calls must be an array of tables: [[calls]]")
    return calls
