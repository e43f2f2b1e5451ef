"""A network of nodes joined by directory carriers, for the relay tests.

One directory ("stick") per link, as two people who meet now and then would
carry one USB stick. Nodes are set up in-process (init, cards, peers,
config, the first maps): that is bookkeeping, not what the tests are about.
Sending, carrying and tossing run as the installed commands wherever a test
looks at what a command does (`real=`), and otherwise in-process through the
same node services the commands call (rise_dtn.carriers.directory.xfer and .toss), which
keeps a round over a dozen links at milliseconds instead of seconds.

`settle()` is "run the network until quiet": it visits every (node, link)
that has something to do (a bundle in tx/ that is not on the stick yet, a
bundle or an ack on the stick for the node, a bundle waiting in rx/, an ack
owed), sweeping the nodes forwards then backwards, until a whole round finds
nothing to do. A visit is `rise-xfer --toss --for PARTNER STICK` (or its
in-process twin): each stick serves the one neighbour it is shared with.
A visit with nothing to do would change nothing, so skipping it only saves
time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import random
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

import sqlalchemy

from rise_dtn.carriers.directory import xfer
from rise_dtn.carriers.directory.audience import Audience
from rise_dtn.core.identity import NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.send import routed, send
from rise_dtn.node.toss import control, toss
from rise_dtn.store.atomic import TMP_PREFIX
from tests.conftest import Node

MIB = 1 << 20


def now() -> int:
    return int(time.time())


def digest(data: bytes) -> str:
    """Compare payloads by digest: a failed assertion must not print megabytes."""
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=16).hexdigest()}"


@contextlib.contextmanager
def opened(node: Node) -> Iterator[Home]:
    home = Home.open(node.home)
    try:
        yield home
    finally:
        home.close()


def set_config(node: Node, section: str, key: str, value: str) -> None:
    """Set `key = value` in [section] of the node's config.toml (a commented default or new)."""
    path = node.home / "config.toml"
    text = path.read_text()
    header = f"[{section}]\n"
    if header not in text:
        path.write_text(f"{text}\n{header}{key} = {value}\n")
        return
    start = text.index(header) + len(header)
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end + 1
    body = text[start:end]
    pattern = re.compile(rf"^#?\s*{re.escape(key)}\s*=.*$", re.MULTILINE)
    if pattern.search(body):
        body = pattern.sub(f"{key} = {value}", body, count=1)
    else:
        body = f"{key} = {value}\n{body}"
    path.write_text(text[:start] + body + text[end:])


@dataclasses.dataclass
class Visit:
    """One rise-xfer --toss of a node on a stick: what it printed, or what toss did."""

    node: str
    link: str
    status: int
    stdout: str
    stderr: str
    events: list[toss.TossEvent] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Network:
    base: Path
    nodes: dict[str, Node] = dataclasses.field(default_factory=dict)
    sticks: dict[frozenset[str], Path] = dataclasses.field(default_factory=dict)
    blocked: set[frozenset[str]] = dataclasses.field(default_factory=set)
    visits: list[Visit] = dataclasses.field(default_factory=list)
    # Nodes whose index is on a database server, by name (the others: SQLite in the spool).
    index_urls: dict[str, str] = dataclasses.field(default_factory=dict)

    # -- building -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        base: Path,
        *,
        relays: Iterable[str],
        ends: Iterable[str],
        links: Iterable[tuple[str, str]],
        correspondents: Iterable[tuple[str, str]] = (),
        unmarked: Collection[tuple[str, str]] = (),
        marked: Collection[tuple[str, str]] = (),
        via: dict[str, list[str]] | None = None,
        config: Iterable[tuple[str, str, str, str]] = (),
        map_rounds: int = 2,
        index_urls: Callable[[str], str | None] | None = None,
    ) -> Network:
        """Nodes, links (neighbours on both sides, one stick each) and the first maps.

        Every node marks each relay neighbour as a relay, except the pairs
        (node, neighbour) in `unmarked`, and also the pairs in `marked` (a
        neighbour taken for a relay that has [relay] enabled off).
        `correspondents` trust each other end to end without being
        neighbours; each gets the other's card with its "via" hints: its
        relay neighbours, or `via[name]` if given.
        `config` is (node, section, key, value) set before anything runs.
        `index_urls` gives each node its index URL by name (None: SQLite in
        its spool), set in its config.toml as a user would.
        """
        net = cls(base)
        relay_names, end_names = list(relays), list(ends)
        # Sweep order: the first end (the usual sender), the relays, the other ends.
        for name in [*end_names[:1], *relay_names, *end_names[1:]]:
            home = Home.create(base / "nodes" / name, name=name)
            net.nodes[name] = Node(name, home.path, str(home.identity.node_id))
            home.close()
            url = index_urls(name) if index_urls is not None else None
            if url is not None:
                set_config(net.nodes[name], "spool", "index_url", json.dumps(url))
                net.index_urls[name] = url
        for name in relay_names:
            set_config(net.nodes[name], "relay", "enabled", "true")
        for name, section, key, value in config:
            set_config(net.nodes[name], section, key, value)
        for one, other in links:
            net.link(one, other, relay_names=relay_names, unmarked=unmarked, marked=marked)
        for one, other in correspondents:
            net.introduce(one, other, via=(via or {}).get(other))
            net.introduce(other, one, via=(via or {}).get(one))
        for _round in range(map_rounds):
            net.refresh_maps()
            net.settle()
        return net

    def link(
        self,
        one: str,
        other: str,
        *,
        relay_names: Collection[str] | None = None,
        unmarked: Collection[tuple[str, str]] = (),
        marked: Collection[tuple[str, str]] = (),
    ) -> Path:
        """Make `one` and `other` neighbours with a stick of their own."""
        relay_names = relay_names if relay_names is not None else self.relays()
        stick = self.base / "sticks" / "-".join(sorted((one, other)))
        stick.mkdir(parents=True, exist_ok=True)
        self.sticks[frozenset((one, other))] = stick
        for me, peer in ((one, other), (other, one)):
            self.introduce(me, peer, via=[])
            if (peer in relay_names and (me, peer) not in unmarked) or (me, peer) in marked:
                with opened(self.nodes[me]) as home:
                    home.peers.set_relay(peer, relay=True)
        return stick

    def introduce(self, me: str, peer: str, *, via: list[str] | None) -> None:
        """`me` adds `peer`'s card; the card names `via` (default: peer's relay neighbours)."""
        with opened(self.nodes[peer]) as source:
            if via is None:
                hints = [p.node_id for p in source.peers.all() if p.relay]
            else:
                hints = [NodeId.parse(self.nodes[name].node_id) for name in via]
            card = source.card(now=now(), via=hints)
        with opened(self.nodes[me]) as home:
            existing = home.peers.by_id(card.node_id)
            relay = existing.relay if existing is not None else False
            home.peers.add(card, name=peer, self_id=home.identity.node_id, replace=True)
            if relay:
                home.peers.set_relay(peer, relay=True)

    def relays(self) -> list[str]:
        return [name for name, node in self.nodes.items() if _relay_enabled(node)]

    def refresh_maps(self, names: Iterable[str] | None = None) -> None:
        """Each relay queues a fresh map for each neighbour (as `rise map --refresh`)."""
        for name in names if names is not None else self.relays():
            with opened(self.nodes[name]) as home:
                control.refresh_maps(home, now=now(), force=True)

    # -- who is where -------------------------------------------------------------------

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def stick(self, one: str, other: str) -> Path:
        return self.sticks[frozenset((one, other))]

    def partners(self, name: str) -> list[str]:
        return sorted(next(iter(link - {name})) for link in self.sticks if name in link)

    def name_of(self, node_id: str) -> str:
        for name, node in self.nodes.items():
            if node.node_id == node_id:
                return name
        raise KeyError(node_id)

    def tx(self, name: str, partner: str | None = None) -> list[Path]:
        """Bundles waiting in `name`'s tx/ (for `partner`, or for anyone)."""
        spool = self.nodes[name].spool / "tx"
        folder = self.nodes[partner].node_id if partner else "*"
        return sorted(spool.glob(f"{folder}/*.rsb"))

    def rx(self, name: str) -> list[Path]:
        return sorted((self.nodes[name].spool / "rx").glob("*/*.rsb"))

    def on_stick(self, sender: str, recipient: str) -> list[Path]:
        """Bundles `sender` left on their shared stick for `recipient`."""
        folder = self._folder(sender, recipient)
        return sorted(folder.glob("*.rsb")) if folder.is_dir() else []

    def _folder(self, sender: str, recipient: str) -> Path:
        stick = self.stick(sender, recipient)
        return stick / "rise-dtn" / self.nodes[recipient].node_id / self.nodes[sender].node_id

    # -- sending ------------------------------------------------------------------------

    def send(
        self,
        sender: str,
        recipient: str,
        data: bytes | Path,
        *,
        options: Iterable[str] = ("--hops", "2"),
        real: bool = True,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """`rise-send [options] FILE|- recipient`; in-process it honours --hops/--via/--copies."""
        options = list(options)
        source = str(data) if isinstance(data, Path) else "-"
        payload = None if isinstance(data, Path) else data
        if real:
            return self.nodes[sender].run(
                "rise-send", *options, source, recipient, input=payload, check=check
            )
        return self._send_in_process(sender, recipient, data, options)

    def _send_in_process(
        self, sender: str, recipient: str, data: bytes | Path, options: list[str]
    ) -> subprocess.CompletedProcess[bytes]:
        values = dict(zip(options[::2], options[1::2], strict=True))
        route = routed.RouteOptions(
            hops=int(values.get("--hops", "2")),
            copies=int(values.get("--copies", "1")),
            via=tuple(values["--via"].split(",")) if "--via" in values else (),
        )
        with opened(self.nodes[sender]) as home, contextlib.ExitStack() as stack:
            if isinstance(data, Path):
                source = stack.enter_context(open(data, "rb"))
                name: str | None = data.name
            else:
                source, name = io.BytesIO(data), None  # type: ignore[assignment]
            sent = routed.queue_routed(
                home,
                home.peers.find(recipient),
                source,
                options=send.SendOptions(name=name),
                route=route,
                now=now(),
                rng=random.SystemRandom(),
            )
        return subprocess.CompletedProcess([], 0, f"{sent.bundle_id}\n".encode(), b"")

    def status(self, name: str) -> dict[str, dict[str, object]]:
        """`rise status --json`, by bundle id."""
        rows = json.loads(self.nodes[name].run("rise", "status", "--json").stdout)
        return {row["bundle_id"]: row for row in rows}

    # -- carrying -----------------------------------------------------------------------

    def needs_visit(self, name: str, partner: str) -> bool:
        if frozenset((name, partner)) in self.blocked:
            return False
        node = self.nodes[name]
        folder = self._folder(partner, name)
        if folder.is_dir() and any(folder.iterdir()):
            return True  # bundles or acks for us
        outgoing = self._folder(name, partner)
        for path in self.tx(name, partner):
            if not (outgoing / path.name).exists():
                return True
        if any((node.spool / "rx" / self.nodes[partner].node_id).glob("*.rsb")):
            return True
        return bool(self._acks_owed(name, self.nodes[partner].node_id))

    def _acks_owed(self, name: str, neighbour: str) -> int:
        if name not in self.index_urls:
            return _acks_owed(self.nodes[name], neighbour)
        query = sqlalchemy.text("select count(*) from pending_ack where neighbour = :neighbour")
        with _server_index(self.index_urls[name]) as connection:
            if not sqlalchemy.inspect(connection).has_table("pending_ack"):
                return 0  # the node has not opened its index yet
            return int(connection.execute(query, {"neighbour": neighbour}).scalar_one())

    def index_dump(self, name: str) -> bytes:
        """Every text and blob of every table of `name`'s index, as bytes."""
        url = self.index_urls.get(name)
        if url is None:
            return sqlite_dump(self.nodes[name].spool / "index.sqlite")
        out = bytearray()
        with _server_index(url) as connection:
            tables = sqlalchemy.MetaData()
            tables.reflect(connection)
            for table in tables.sorted_tables:
                for row in connection.execute(sqlalchemy.select(table)):
                    out += _dumped(row)
        return bytes(out)

    def visit(
        self, name: str, partner: str, *, real: bool = True, allow_rejects: bool = False
    ) -> Visit:
        """`rise-xfer --toss` by `name` on its stick with `partner`."""
        node, stick = self.nodes[name], self.stick(name, partner)
        if real:
            result = node.run("rise-xfer", "--toss", "--for", partner, str(stick), check=False)
            visit = Visit(
                name, partner, result.returncode, result.stdout.decode(), result.stderr.decode()
            )
        else:
            visit = _visit_in_process(node, partner, stick)
        self.visits.append(visit)
        allowed = {0, 3} if allow_rejects else {0}
        if visit.status not in allowed or "Traceback" in visit.stderr:
            raise AssertionError(
                f"{name} on the {name}-{partner} stick exited {visit.status}\n"
                f"stdout: {visit.stdout}\nstderr: {visit.stderr}"
            )
        return visit

    def settle(
        self,
        *,
        real: bool | Collection[str] = False,
        allow_rejects: bool = False,
        max_rounds: int = 12,
    ) -> list[Visit]:
        """Run the network until quiet; return the visits made. Bounded."""
        order = list(self.nodes)
        made: list[Visit] = []
        for round_number in range(max_rounds):
            sweep = order if round_number % 2 == 0 else order[::-1]
            busy = False
            for name in sweep:
                for partner in self.partners(name):
                    if self.needs_visit(name, partner):
                        busy = True
                        in_real = real if isinstance(real, bool) else name in real
                        made.append(
                            self.visit(name, partner, real=in_real, allow_rejects=allow_rejects)
                        )
            if not busy:
                return made
        waiting = {name: [p.name for p in self.tx(name)] for name in self.nodes}
        raise AssertionError(f"not quiet after {max_rounds} rounds; tx: {waiting}")

    def assert_quiet(self) -> None:
        """Nothing waits in any tx/ or rx/, except for a blocked link."""
        for name in self.nodes:
            for partner in self.partners(name):
                if frozenset((name, partner)) not in self.blocked:
                    assert self.tx(name, partner) == [], f"{name} still holds for {partner}"
            assert self.rx(name) == [], f"{name} has untossed bundles"

    def printed(self, name: str) -> str:
        """Everything `name`'s real commands printed so far."""
        return "".join(v.stdout + v.stderr for v in self.visits if v.node == name)

    # -- what arrived -------------------------------------------------------------------

    def inbox(self, name: str) -> list[bytes]:
        """The messages delivered to `name`: complete ones only (a toss may be
        writing a `.rise-tmp-*` file, which vanishes under a reader)."""
        return sorted(path.read_bytes() for path in (self.nodes[name].home / "inbox").glob("*.msg"))

    def incoming(self, name: str, sender: str) -> dict[str, str]:
        folder = self.nodes[name].incoming / sender
        if not folder.is_dir():
            return {}
        return {
            path.name: digest(path.read_bytes())
            for path in sorted(folder.iterdir())
            if not path.name.startswith(TMP_PREFIX)  # a delivery being written
        }


def _relay_enabled(node: Node) -> bool:
    text = (node.home / "config.toml").read_text()
    section = text.split("[relay]", 1)[1].split("\n[", 1)[0]
    return re.search(r"^enabled\s*=\s*true", section, re.MULTILINE) is not None


def _acks_owed(node: Node, neighbour: str) -> int:
    path = node.spool / "index.sqlite"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            (count,) = db.execute(
                "select count(*) from pending_ack where neighbour = ?", (neighbour,)
            ).fetchone()
        except sqlite3.OperationalError:
            return 0  # no such table yet
    return int(count)


def _visit_in_process(node: Node, partner: str, stick: Path) -> Visit:
    events: list[toss.TossEvent] = []
    lines: list[str] = []
    with opened(node) as home:

        def toss_step() -> None:
            toss.toss(home, now=now(), on_event=events.append)

        report = xfer.exchange(
            home,
            stick,
            move=False,
            now=now(),
            say=lines.append,
            toss=toss_step,
            serving=Audience(names=(partner,)),
        )
    rejected = [e for e in events if isinstance(e, toss.Rejected) and e.action == "quarantined"]
    status = 3 if report.rejected or rejected else 0
    errors = [f"rejected: {line}" for line in report.rejected]
    errors += [f"{e.bundle_id}: rejected: {e.reason} (quarantined)" for e in rejected]
    stdout = "".join(f"{line}\n" for line in lines)
    stdout += "".join(f"{_describe(event)}\n" for event in events)
    return Visit(node.name, partner, status, stdout, "".join(f"{e}\n" for e in errors), events)


def _describe(event: toss.TossEvent) -> str:
    """A toss event as rise-toss would print it."""
    if isinstance(event, toss.Delivered):
        return f"delivered {event.kind.name.lower()} from {event.sender}: {event.path}"
    return f"{event.bundle_id}: {event.action}: {event.reason}"


def node_ids_in(data: bytes, node: Node) -> bool:
    """Does `data` name `node`: its id in base32 text (any case) or its 16 raw bytes?"""
    raw = NodeId.parse(node.node_id).raw
    return node.node_id.encode() in data.lower() or raw in data


@contextlib.contextmanager
def _server_index(url: str) -> Iterator[sqlalchemy.Connection]:
    """A connection to a node's index on a database server, closed after use."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _dumped(row: Iterable[object]) -> bytes:
    out = bytearray()
    for value in row:
        if isinstance(value, bytes | memoryview):
            out += bytes(value) + b"\n"
        elif value is not None:
            out += str(value).encode() + b"\n"
    return bytes(out)


def sqlite_dump(path: Path) -> bytes:
    """Every text and blob of every table of an SQLite database, as bytes."""
    out = bytearray()
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for row in db.execute(f'select * from "{table}"'):  # names from sqlite_master
                out += _dumped(row)
    return bytes(out)


def files_under(root: Path) -> Iterator[Path]:
    return (path for path in sorted(root.rglob("*")) if path.is_file())
