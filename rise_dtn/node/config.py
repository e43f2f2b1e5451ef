"""The node's config.toml: what a user may set, with defaults and clear errors.

Read with tomllib; written once, from a commented template, by `rise init`
(the operator edits it by hand after that). See rise-config(5).
"""

from __future__ import annotations

import dataclasses
import fractions
import json
import re
import textwrap
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from rise_dtn.core.card import check_name
from rise_dtn.core.errors import UsageError

DEFAULT_LIFETIME_SECONDS = 30 * 86400  # a month: long enough for a stick carried by hand
MAX_LIFETIME_SECONDS = 10 * 365 * 86400
# A live link's partial copy not resumed for a week is given up ([spool]
# partial_lifetime): its sender has most likely expired or re-sent it.
DEFAULT_PARTIAL_LIFETIME_SECONDS = 7 * 24 * 3600
# Lower is sooner, as with nice(1). 16 is a small number so that it costs one
# byte on the wire; urgent traffic can still go below it.
DEFAULT_NICE = 16
# Relays per route when [send] hops is not set: 0 keeps a node that has no
# relays working (direct bundles); a node that routes sets it, e.g. to 2.
DEFAULT_HOPS = 0
MAX_HOPS = 8  # the onion header has 9 slots: 8 relays and the destination
MAX_COPIES = 4  # node-disjoint routes are scarce in small maps; more would rarely exist
# A relay holds at most this much for one neighbour at a time: enough for a
# day of files on a busy link, small enough that one neighbour cannot fill the disk.
DEFAULT_RELAY_MAX_BYTES = 1 << 30
DEFAULT_RELAY_MAX_BUNDLES = 10_000
# Map exchange (protocol.md section 21): how many links one map names, how
# often a neighbour gets a fresh one, how long a learned link is trusted, and
# how far (in re-advertisements) a link may travel.
# A neighbour's bundles are refused ("no room", left with the sender) rather
# than fill the spool's filesystem: the index, toss and the user need room too.
DEFAULT_MIN_FREE_BYTES = 100 << 20
# Split files (protocol.md section 25): a file larger than [send] part_size
# travels as parts. Unset means no split (a stick's size is the user's to know).
# All reassemblies in progress at once may take at most this much disk: one
# neighbour cannot fill the spool's filesystem with parts of files that never
# complete (they are also given up when their parts expire).
DEFAULT_PARTS_MAX_BYTES = 16 << 30
MIN_PART_BYTES = 64 << 10  # below this the bundle overhead (about 250 bytes) starts to count
DEFAULT_MAP_SIZE = 8
DEFAULT_MAP_REFRESH_SECONDS = 3600
DEFAULT_MAP_LIFETIME_SECONDS = 86400
DEFAULT_MAP_MAX_DISTANCE = 2
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
# Relays per route (0 = direct to a neighbour) and copies over disjoint routes.
# hops = 2
# copies = 1
# Split files larger than this into parts, each its own bundle (e.g. for a stick).
# part_size = "1GiB"

[relay]
# Forward onion packets for neighbours (default off), within per-neighbour quotas.
# enabled = true
# max_bytes = "1G"
# max_bundles = 10000

[map]
# Map exchange between relays: links per map, how often, how long they last.
# size = 8
# refresh = "1h"
# lifetime = "1d"
# max_distance = 2

[toss]
# Where delivered files go (default: <home>/incoming/<sender>/).
# incoming = "/srv/rise/incoming"
# A command run for every delivery, with RISE_* variables in its environment.
# on_delivery = "notify-send 'rise-dtn' 'new delivery'"
# Disk that the reassembly of split files may take at once (default 16GiB).
# parts_max_bytes = "16GiB"

[spool]
# The index database; any SQLAlchemy URL (default: SQLite in the spool).
# index_url = "postgresql+psycopg://rise@localhost/rise"
# min_free = "100M"           # refuse bundles that would leave less free space
# receive_max_bytes = "10G"   # untossed bytes each neighbour may have here (default: no limit)
# partial_lifetime = "7d"      # a live link's partial copy not resumed by then is given up

# Scheduled calls for rise-caller (one [[calls]] table per call), e.g.
# [[calls]]
# node = "bob"
# cron = "*/10 * * * *"       # when, in cron syntax (local time)
# address = "tcp://bob.example.org:5454"   # or ssh://bob, exec:COMMAND, dir:/PATH
# window = "22:00-06:00"      # optional: only call within this daily window

# Per-peer settings, by the peer's local name:
# [peers.bob]
# on_delivery = "/usr/local/bin/handle-bob"
# max_rate = "2M"             # bytes per second each way on live links
# relay_max_bytes = "100M"    # what this node holds for bob as a relay
# relay_max_bundles = 1000
# address = "tcp://bob.example.org:5454"  # where to reach bob; the schemes installed
# {schemes}
# keep_link = true            # rise-daemon keeps a link to bob open, redialling
# media = ["/media/alice/BOB"]  # rise-xfer writes for bob on the sticks mounted here
# receive_max_bytes = "1G"    # untossed bytes bob may have here ([spool] default)
"""


def parse_duration(text: object) -> int:
    """'30d', '12h', '90m', '45s' or plain seconds -> seconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text
    else:
        match = _DURATION.match(text) if isinstance(text, str) else None
        if not match:
            raise UsageError(f"not a duration: {_shown(text)} (use e.g. 30d, 12h, 90m, 3600)")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= MAX_LIFETIME_SECONDS:
        raise UsageError(f"duration out of range: {_shown(text)} (1 second to 10 years)")
    return seconds


def check_nice(nice: int) -> int:
    if not 0 <= nice <= 255:
        raise UsageError(f"nice must be 0..255, not {nice}")
    return nice


def as_written(value: object) -> str:
    """A value as it was written in TOML: true, "30 days", -1 (the carriers' messages too)."""
    return json.dumps(value) if isinstance(value, (bool, int, float, str)) else repr(value)


_shown = as_written  # short, for this module's many messages


@dataclasses.dataclass(frozen=True, slots=True)
class PeerSettings:
    on_delivery: str | None = None
    max_rate_bytes: int | None = None  # per direction, on live links; None: unlimited
    relay_max_bytes: int | None = None  # None: the [relay] default
    relay_max_bundles: int | None = None
    address: str | None = None  # where to reach it (carriers/address.py), before the card's
    keep_link: bool = False  # rise-daemon holds a link open to it
    media: tuple[str, ...] = ()  # mount points of the sticks that serve it (rise-xfer)
    receive_max_bytes: int | None = None  # None: the [spool] default


@dataclasses.dataclass(frozen=True, slots=True)
class RelaySettings:
    enabled: bool = False  # default deny: a node forwards nothing until told to
    max_bytes: int = DEFAULT_RELAY_MAX_BYTES
    max_bundles: int = DEFAULT_RELAY_MAX_BUNDLES


@dataclasses.dataclass(frozen=True, slots=True)
class MapSettings:
    size: int = DEFAULT_MAP_SIZE
    refresh_seconds: int = DEFAULT_MAP_REFRESH_SECONDS
    lifetime_seconds: int = DEFAULT_MAP_LIFETIME_SECONDS
    max_distance: int = DEFAULT_MAP_MAX_DISTANCE


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    name: str
    addresses: tuple[tuple[str, str], ...] = ()
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
    nice: int = DEFAULT_NICE
    incoming: Path | None = None
    on_delivery: str | None = None
    index_url: str | None = None
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES  # admissions keep this much free in the spool
    receive_max_bytes: int | None = None  # untossed bytes one neighbour may have in rx/
    partial_lifetime_seconds: int = DEFAULT_PARTIAL_LIFETIME_SECONDS
    peers: dict[str, PeerSettings] = dataclasses.field(default_factory=dict)
    calls: tuple[Any, ...] = ()  # raw [[calls]] tables; see carriers/live/schedule.py
    # [mailbox] as written; carriers/mailbox/settings.py checks it when a mailbox is used.
    mailbox: dict[str, Any] = dataclasses.field(default_factory=dict)
    hops: int = DEFAULT_HOPS
    copies: int = 1
    relay: RelaySettings = dataclasses.field(default_factory=RelaySettings)
    map: MapSettings = dataclasses.field(default_factory=MapSettings)
    part_bytes: int | None = None  # [send] part_size; None: never split
    parts_max_bytes: int = DEFAULT_PARTS_MAX_BYTES

    def peer(self, name: str) -> PeerSettings:
        return self.peers.get(name, PeerSettings())

    def receive_max(self, name: str) -> int | None:
        """The untossed bytes neighbour `name` may have in rx/ (None: no limit)."""
        own = self.peer(name).receive_max_bytes
        return self.receive_max_bytes if own is None else own


def render(name: str, *, schemes: Iterable[str] = ()) -> str:
    """The template for node `name`; `schemes` are the address schemes of the installed
    carriers (carriers/registry.py, which this layer must not import: the caller passes
    them), listed where an address is set so that the list follows what is installed."""
    listed = ", ".join(f"{scheme}:" for scheme in sorted(schemes))
    text = f"(`rise carriers`): {listed}" if listed else "(`rise carriers` lists them)"
    lines = textwrap.wrap(text, width=76, break_on_hyphens=False)
    return TEMPLATE.format(name=name, nice=DEFAULT_NICE, schemes="\n#   ".join(lines))


# Configs already parsed, by path and the file's stamp: rise-daemon's send worker
# parses its node's once, and each rise-send it forks (node/warm.py) inherits it.
_PARSED: dict[Path, tuple[tuple[int, int, int, int], Config]] = {}
# A file changed this recently may change again within the same tick of the file
# system's coarse clock with the same stamp: parsed, not kept.
_SETTLED_NS = 2_000_000_000


def load(path: Path) -> Config:
    try:
        info = path.stat()
    except OSError:
        info = None
    stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns) if info else None
    kept = _PARSED.get(path)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    config = _parse(path)
    if info is not None and stamp is not None and time.time_ns() - info.st_ctime_ns > _SETTLED_NS:
        _PARSED[path] = (stamp, config)
    return config


def _parse(path: Path) -> Config:
    try:
        # -sig: a byte-order mark, as some editors write, is no reason to refuse the file
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"no config at {path} (run `rise init --name NAME` first)") from None
    except UnicodeDecodeError as exc:
        number = exc.object[: exc.start].count(b"\n") + 1
        byte = exc.object[exc.start]
        raise UsageError(
            f"{path} line {number}: not UTF-8 (byte {byte:#04x}): save the file as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        from rise_dtn.node.config_mistakes import explain  # only for a file that is wrong

        explained = explain(text, str(exc))
        raise UsageError(f"{path} {explained}" if explained else f"{path}: {exc}") from None
    try:
        return _from_dict(data, base=path.parent)
    except KeyError as exc:
        raise UsageError(f"{path}: {exc.args[0]} (see rise-config(5))") from None
    except UsageError as exc:
        raise UsageError(f"{path}: invalid setting: {exc.message}") from None


Value = TypeVar("Value")


def _setting(
    table: dict[str, Any], section: str, key: str, parse: Callable[[object], Value]
) -> Value:
    """`parse` the value of `key`; its error names the setting: `[relay] max_bytes: ...`."""
    try:
        return parse(table[key])
    except UsageError as exc:
        raise UsageError(f"[{section}] {key}: {exc.message}") from None


def _table(data: dict[str, Any], key: str, parent: str = "") -> dict[str, Any]:
    """The table `key` of `data` ([parent.key]); named in full when it is something else."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        name, where = (f"{parent}.{key}", f"[{parent}] {key}") if parent else (key, key)
        raise UsageError(
            f"{where}: must be a table ([{name}] and its keys below it), not {_shown(value)}"
        )
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise UsageError(f"must be a string, not {_shown(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        quoted = isinstance(value, str) and value.strip().lower() in {"true", "false"}
        hint = " (written without quotes)" if quoted else ""
        raise UsageError(f"must be true or false, not {_shown(value)}{hint}")
    return value


def _optional_str(table: dict[str, Any], section: str, key: str) -> str | None:
    return _setting(table, section, key, _string) if key in table else None


# Every key a config may hold: a typo is an error, not a silently ignored line.
KNOWN_KEYS = {
    "node": {"name", "addresses"},
    "send": {"lifetime", "nice", "hops", "copies", "part_size"},
    "relay": {"enabled", "max_bytes", "max_bundles"},
    "map": {"size", "refresh", "lifetime", "max_distance"},
    "toss": {"incoming", "on_delivery", "parts_max_bytes"},
    "spool": {"index_url", "min_free", "receive_max_bytes", "partial_lifetime"},
    "peers": None,  # any peer name; checked below
    "calls": None,  # an array of tables, checked by carriers/live/schedule.py
    "mailbox": None,  # defaults and [mailbox.PEER] tables, checked by carriers/mailbox/settings.py
}
PEER_KEYS = {
    "on_delivery",
    "max_rate",
    "relay_max_bytes",
    "relay_max_bundles",
    "address",
    "keep_link",
    "media",
    "receive_max_bytes",
}
# A number, then a unit as in dd(1) and truncate(1): K, M, G, T and KiB, MiB,
# GiB, TiB are powers of 1024; KB, MB, GB, TB powers of 1000; B is bytes.
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(I?)(B?)|(B?))\s*$", re.IGNORECASE)
SIZE_EXAMPLES = "e.g. 500K, 100MB, 512MiB, 1G, 1 GiB"


def parse_size(text: object) -> int:
    """'500K', '100MB', '512MiB', '1G', '1.5 GiB' or plain bytes (an integer or a string)."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        match = _SIZE.match(text) if isinstance(text, str) else None
        if not match:
            raise UsageError(f"not a size: {_shown(text)} ({SIZE_EXAMPLES})")
        number, prefix, binary, byte = match.group(1, 2, 3, 4)
        power = " KMGT".index(prefix.upper()) if prefix else 0
        base = 1000 if prefix and byte and not binary else 1024
        size = int(fractions.Fraction(number) * base**power)
    if size < 0:
        raise UsageError(f"not a size: {_shown(text)} (a size is never negative)")
    return size


def parse_rate(text: object) -> int:
    """'500K', '2M', '1G' or plain bytes per second."""
    try:
        rate = parse_size(text)
    except UsageError:
        raise UsageError(f"not a rate: {_shown(text)} (bytes per second, e.g. 500K, 2M)") from None
    if rate < 1024:
        raise UsageError(f"rate too low: {_shown(text)} (at least 1K bytes per second)")
    return rate


# How a section is written, where that is not [NAME]: for the "did you mean" of a typo.
_SECTION_SHOWN = {"peers": "[peers.NAME]", "calls": "[[calls]]"}


def _check_keys(data: dict[str, Any]) -> None:
    for table, value in data.items():
        if table not in KNOWN_KEYS and not isinstance(value, (dict, list)):
            raise KeyError(_misplaced(table, "above the first [table]", ()))  # a key, up top
        if table not in KNOWN_KEYS:
            near = _nearest(table, KNOWN_KEYS)
            shown = _SECTION_SHOWN.get(near, f"[{near}]") if near else ""
            if near == "peers" and isinstance(value, dict) and value:
                shown = f"[peers.{next(iter(value))}]"  # [peer.bob]: the peer it was meant for
            raise KeyError(
                f"unknown section [{table}]" + (f", did you mean {shown}?" if near else "")
            )
        allowed = KNOWN_KEYS[table]
        if allowed is not None and isinstance(value, dict):
            for key in value:
                if key not in allowed:
                    raise KeyError(_misplaced(key, f"in [{table}]", allowed))
    for peer, settings in _table(data, "peers").items():
        for key in settings if isinstance(settings, dict) else ():
            if key not in PEER_KEYS:
                raise KeyError(_misplaced(key, f"in [peers.{peer}]", PEER_KEYS))


def _misplaced(key: str, where: str, allowed: Iterable[str]) -> str:
    """An unknown key, and where it goes when another table has it: a line appended at the
    end of the file lands in the last table ([spool] in the template), not in [send].
    Not [node]'s keys: `name` under [peers.bob] is no reason to rename this node."""
    homes = [f"[{table}]" for table, keys in KNOWN_KEYS.items() if keys and key in keys]
    homes += ["[peers.NAME]"] if key in PEER_KEYS else []
    homes = [home for home in homes if home != "[node]"]
    if homes:
        return f"unknown key {key!r} {where}: put it below {' or '.join(homes)}"
    if where.startswith("in "):
        return unknown_key(key, where.removeprefix("in "), allowed)
    return f"unknown key {key!r} {where}"


def unknown_key(key: str, section: str, known: Iterable[str]) -> str:
    """The message for a key not in `known`, with the nearest known one when one is close:
    one shape for every table of config.toml, those the carriers check too ([mailbox],
    [[calls]]), so that a typo reads the same wherever it is."""
    near = _nearest(key, known)
    return f"unknown key {key!r} in {section}" + (f", did you mean {near!r}?" if near else "")


def _nearest(word: str, known: Iterable[str]) -> str | None:
    """The known name a typo most likely meant (difflib's ratio, its default cut-off)."""
    import difflib  # only when a name is wrong: not on every command's way in

    matches = difflib.get_close_matches(word.lower(), sorted(known), n=1)
    return matches[0] if matches else None


def _from_dict(data: dict[str, Any], *, base: Path) -> Config:
    _check_keys(data)
    node, send, toss, spool = (_table(data, key) for key in ("node", "send", "toss", "spool"))
    if "name" not in node:
        raise UsageError('[node] name: missing (the node\'s name, e.g. name = "alice")')
    name = _setting(node, "node", "name", _string)
    _setting(node, "node", "name", lambda value: check_name(_string(value), error=UsageError))
    node_addresses = _table(node, "addresses", "node")
    addresses = tuple(
        sorted(
            (str(carrier), _setting(node_addresses, "node.addresses", carrier, _string))
            for carrier in node_addresses
        )
    )
    incoming = _optional_str(toss, "toss", "incoming")
    peers = _table(data, "peers")
    return Config(
        name=name,
        addresses=addresses,
        lifetime_seconds=_optional(send, "send", "lifetime", parse_duration)
        or DEFAULT_LIFETIME_SECONDS,
        nice=_count(send, "send", "nice", DEFAULT_NICE, 0, 255),
        incoming=(base / Path(incoming).expanduser()) if incoming else None,
        on_delivery=_optional_str(toss, "toss", "on_delivery"),
        index_url=_optional_str(spool, "spool", "index_url"),
        min_free_bytes=_default(
            _size(spool, "spool", "min_free", minimum=0), DEFAULT_MIN_FREE_BYTES
        ),
        receive_max_bytes=_size(spool, "spool", "receive_max_bytes", minimum=0),
        partial_lifetime_seconds=_optional(spool, "spool", "partial_lifetime", parse_duration)
        or DEFAULT_PARTIAL_LIFETIME_SECONDS,
        peers={
            str(peer): _peer_settings(_table(peers, peer, "peers"), f"peers.{peer}")
            for peer in peers
        },
        calls=tuple(_calls(data)),
        mailbox=_table(data, "mailbox"),
        hops=_count(send, "send", "hops", DEFAULT_HOPS, 0, MAX_HOPS),
        copies=_count(send, "send", "copies", 1, 1, MAX_COPIES),
        relay=_relay_settings(_table(data, "relay")),
        map=_map_settings(_table(data, "map")),
        part_bytes=_size(send, "send", "part_size", minimum=MIN_PART_BYTES),
        parts_max_bytes=_default(
            _size(toss, "toss", "parts_max_bytes", minimum=0), DEFAULT_PARTS_MAX_BYTES
        ),
    )


def _default(value: Value | None, default: Value) -> Value:
    """A setting's value, or its default when unset (zero is a value, not unset)."""
    return default if value is None else value


def _optional(
    table: dict[str, Any], section: str, key: str, parse: Callable[[object], Value]
) -> Value | None:
    return _setting(table, section, key, parse) if key in table else None


def _count(  # noqa: PLR0917 - reads as the sentence it checks
    table: dict[str, Any], section: str, key: str, default: int, low: int, high: int
) -> int:
    """An integer from `low` to `high` (TOML true is no integer, whatever Python says)."""

    def check(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            quoted = isinstance(value, str) and value.strip().lstrip("+-").isdigit()
            hint = " (a number is written without quotes)" if quoted else ""
            raise UsageError(f"must be an integer from {low} to {high}, not {_shown(value)}{hint}")
        return value

    return _setting(table, section, key, check) if key in table else default


def _size(table: dict[str, Any], section: str, key: str, *, minimum: int) -> int | None:
    """A size in bytes (see parse_size), at least `minimum`; None when not set."""

    def check(value: object) -> int:
        size = parse_size(value)
        if size < minimum:
            raise UsageError(
                f"must be a size of at least {minimum} bytes ({SIZE_EXAMPLES}), not {_shown(value)}"
            )
        return size

    return _setting(table, section, key, check) if key in table else None


def _relay_settings(table: dict[str, Any]) -> RelaySettings:
    # A zero quota for every neighbour would be a relay that relays nothing:
    # that is `enabled = false`.
    max_bytes = _size(table, "relay", "max_bytes", minimum=1)
    return RelaySettings(
        enabled=bool(_optional(table, "relay", "enabled", _boolean)),
        max_bytes=DEFAULT_RELAY_MAX_BYTES if max_bytes is None else max_bytes,
        max_bundles=_count(table, "relay", "max_bundles", DEFAULT_RELAY_MAX_BUNDLES, 1, 10**9),
    )


def _map_settings(table: dict[str, Any]) -> MapSettings:
    return MapSettings(
        size=_count(table, "map", "size", DEFAULT_MAP_SIZE, 1, 64),
        refresh_seconds=_optional(table, "map", "refresh", parse_duration)
        or DEFAULT_MAP_REFRESH_SECONDS,
        lifetime_seconds=_optional(table, "map", "lifetime", parse_duration)
        or DEFAULT_MAP_LIFETIME_SECONDS,
        max_distance=_count(table, "map", "max_distance", DEFAULT_MAP_MAX_DISTANCE, 0, 8),
    )


def _peer_settings(table: dict[str, Any], section: str) -> PeerSettings:
    # Zero is a quota that makes sense for one neighbour: relay nothing for it.
    return PeerSettings(
        media=_optional(table, section, "media", _media) or (),
        address=_optional_str(table, section, "address"),
        keep_link=bool(_optional(table, section, "keep_link", _boolean)),
        on_delivery=_optional_str(table, section, "on_delivery"),
        max_rate_bytes=_optional(table, section, "max_rate", parse_rate),
        relay_max_bytes=_size(table, section, "relay_max_bytes", minimum=0),
        receive_max_bytes=_size(table, section, "receive_max_bytes", minimum=0),
        relay_max_bundles=(
            _count(table, section, "relay_max_bundles", 0, 0, 10**9)
            if "relay_max_bundles" in table
            else None
        ),
    )


def _media(value: object) -> tuple[str, ...]:
    """A mount point, or a list of them (rise-xfer writes for the peer on those)."""
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not all(
        isinstance(path, str) and Path(path).expanduser().is_absolute() for path in paths
    ):
        raise UsageError(f"must be an absolute path or a list of them, not {_shown(value)}")
    return tuple(paths)


def _calls(data: dict[str, Any]) -> list[Any]:
    calls = data.get("calls", [])
    if not isinstance(calls, list):
        raise UsageError("calls must be an array of tables: [[calls]]")
    return calls
