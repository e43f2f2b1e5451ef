"""A direct send's index write through sqlite3 alone leaves the rows SQLAlchemy's would.

store/plain_index.py duplicates one transaction of store/index.py and
store/relay_index.py in plain SQL; these tests hold the two to the same
rows, the same "released already" rule and the same refusal to create
anything, and check that a `rise-send` of a message no longer imports
SQLAlchemy (nor tqdm) at all.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from rise_dtn.store import plain_index
from rise_dtn.store.index import EntryRow, Index
from rise_dtn.store.relay_index import LinkRow, RelayIndex, SentRow
from tests.conftest import command_env, make_node
from tests.e2e.relay_network import Network

ID = "b" * 26
NEIGHBOUR = "n" * 26


def entry(bundle_id: str = ID) -> EntryRow:
    return EntryRow(
        bundle_id=bundle_id,
        direction="tx",
        neighbour=NEIGHBOUR,
        size=1234,
        expiry=5000,
        priority=7,
        queued_at=1000,
    )


def sent(bundle_id: str = ID) -> SentRow:
    return SentRow(
        bundle_id=bundle_id, recipient=NEIGHBOUR, created=1000, expiry=5000, size=99, copies=b"\x80"
    )


def new_index(path: Path) -> tuple[Index, RelayIndex]:
    index = Index(f"sqlite:///{path}")
    return index, RelayIndex(index)


def rows(index: Index, relay_index: RelayIndex) -> tuple[object, ...]:
    return (index.entries(), index.digests(), relay_index.sent())


def test_the_plain_write_leaves_the_rows_of_the_index_write(tmp_path: Path) -> None:
    plain, plain_relay = new_index(tmp_path / "plain.sqlite")
    through, through_relay = new_index(tmp_path / "through.sqlite")
    for number, bundle_id in enumerate(("b" * 26, "c" * 26)):
        row, record, digest = entry(bundle_id), sent(bundle_id), f"{number:032x}"
        assert plain_index.put_queued(tmp_path / "plain.sqlite", [(row, digest)], sent=record)
        through.put_entry(row, digest=digest, also=RelayIndex.sent_statements(record))
    # Again with the same id: both replace, neither adds a row.
    again = EntryRow(ID, "tx", NEIGHBOUR, 1, 2, 3, 4, copies=1)
    assert plain_index.put_queued(tmp_path / "plain.sqlite", [(again, "f" * 32)], sent=None)
    through.put_entry(again, digest="f" * 32)
    assert rows(plain, plain_relay) == rows(through, through_relay)
    assert len(plain.entries()) == 2
    assert plain.entries()[0] == again or plain.entries()[1] == again


def test_a_bundle_released_already_is_not_listed_but_its_send_is(tmp_path: Path) -> None:
    """A live link can take and confirm a bundle before its sender gets to list it."""
    results = []
    for name in ("plain", "through"):
        index, relay_index = new_index(tmp_path / f"{name}.sqlite")
        index.release(ID, NEIGHBOUR, size=1234, how="acked", now=1500)
        if name == "plain":
            assert plain_index.put_queued(
                tmp_path / "plain.sqlite", [(entry(), "0" * 32)], sent=sent()
            )
        else:
            index.put_entry(entry(), digest="0" * 32, also=RelayIndex.sent_statements(sent()))
        results.append(rows(index, relay_index))
    assert results[0] == results[1]
    assert results[0] == ([], {}, [sent()])


def test_no_index_yet_means_no_write_and_no_file(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    assert not plain_index.put_queued(path, [(entry(), None)], sent=sent())
    assert plain_index.PlainMap.open(path) is None
    assert not path.exists()  # the Index creates it, with its tables


def test_an_index_without_the_tables_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    sqlite3.connect(path).close()
    assert not plain_index.put_queued(path, [(entry(), None)], sent=sent())
    assert plain_index.PlainMap.open(path) is None
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    index, relay_index = new_index(path)  # what the caller then does
    index.put_entry(entry(), also=RelayIndex.sent_statements(sent()))
    assert rows(index, relay_index) == ([entry()], {}, [sent()])


def test_a_routed_send_is_one_transaction_with_the_rows_of_the_index_writes(
    tmp_path: Path,
) -> None:
    """Packets, digests, the send and its last route: as list_queued and put_sent leave them."""
    plain, plain_relay = new_index(tmp_path / "plain.sqlite")
    through, through_relay = new_index(tmp_path / "through.sqlite")
    packets = [(entry("p" * 26), "1" * 32), (entry("q" * 26), "2" * 32)]
    record, route = sent(), ",".join(("r" * 26, "s" * 26))
    assert plain_index.put_queued(
        tmp_path / "plain.sqlite", packets, sent=record, last_route=(NEIGHBOUR, route)
    )
    for row, digest in packets:
        through.put_entry(row, digest=digest)
    through_relay.put_sent(record, recipient_route=route)
    assert rows(plain, plain_relay) == rows(through, through_relay)
    assert plain_relay.last_route(NEIGHBOUR) == through_relay.last_route(NEIGHBOUR)
    assert plain_relay.last_route(NEIGHBOUR) == ["r" * 26, "s" * 26]


def test_the_plain_map_reads_what_the_relay_index_reads(tmp_path: Path) -> None:
    _index, relay_index = new_index(tmp_path / "index.sqlite")
    links = [
        LinkRow("a" * 26, "b" * 26, "c" * 26, 1, 100, 900),
        LinkRow("a" * 26, "d" * 26, "c" * 26, 2, 100, 200),
    ]
    relay_index.learn(via="c" * 26, links=links, cards={"b" * 26: b"card"}, card_expiry=900)
    map_ = plain_index.PlainMap.open(tmp_path / "index.sqlite")
    assert map_ is not None
    for now in (150, 500, 1000):  # the second link, then every link and the card, expire
        assert sorted(map_.links(now), key=str) == sorted(relay_index.links(now), key=str)
        assert map_.cards(now) == relay_index.cards(now)
    assert sorted(map_.links(150), key=str) == sorted(links, key=str)
    assert map_.last_route(NEIGHBOUR) == relay_index.last_route(NEIGHBOUR) == []


def test_a_forked_process_reads_the_map_on_a_connection_of_its_own(tmp_path: Path) -> None:
    """A parallel toss forks a daemon that has read the map: SQLite connections
    must never be shared across a fork."""
    _index, relay_index = new_index(tmp_path / "index.sqlite")
    relay_index.learn(via="c" * 26, links=[], cards={"b" * 26: b"card"}, card_expiry=900)
    map_ = plain_index.PlainMap.open(tmp_path / "index.sqlite")
    assert map_ is not None
    assert map_.cards(0) == {"b" * 26: b"card"}
    inherited = map_._connection  # what the fork must not reuse
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        fresh = map_.cards(0) == {"b" * 26: b"card"} and map_._connection is not inherited
        os._exit(0 if fresh else 1)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert map_.cards(0) == {"b" * 26: b"card"}  # the parent's own connection still serves it
    assert map_._connection is inherited


def test_the_connection_is_set_up_as_the_index_sets_up_its_own(tmp_path: Path) -> None:
    """WAL and a busy timeout: a send waits for a daemon's write instead of failing."""
    path = tmp_path / "index.sqlite"
    new_index(path)
    connection = sqlite3.connect(path)
    plain_index.configure(connection)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    timeout_ms = plain_index.BUSY_TIMEOUT_SECONDS * 1000
    assert connection.execute("PRAGMA busy_timeout").fetchone() == (timeout_ms,)
    connection.close()


PROBE = """
import sys
from rise_dtn.cli.main import _dispatch, load_command
sys.argv = ["rise-send", *sys.argv[1:]]
code = _dispatch(load_command("send"), "rise-send")
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("sqlalchemy", "tqdm"))
print("exit", code, "heavy", ",".join(heavy) or "-", file=sys.stderr)
"""


def test_rise_send_of_a_message_imports_neither_sqlalchemy_nor_tqdm(tmp_path: Path) -> None:
    """A one-off send (a cron job, a mail gateway) pays no import it does not use:
    the command's own code, run in a fresh interpreter, then a look at what it loaded."""
    alice, bob = make_node(tmp_path, "alice"), make_node(tmp_path, "bob")
    alice.run("rise", "peer", "add", "-", input=bob.card())
    for args, stdin in ((["-", "bob"], b"a message"), (["-q", "-", "bob"], b"quiet")):
        result = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            input=stdin,
            env=command_env(alice.home, RISE_NO_DAEMON="1"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.stderr.decode().splitlines()[-1] == "exit 0 heavy -", result.stderr
        assert len(result.stdout.split()[0]) == 26  # the bundle id: it was queued
    assert len(list((alice.spool / "tx").rglob("*.rsb"))) == 2
    index, relay_index = new_index(alice.spool / "index.sqlite")
    assert len(index.entries()) == 2
    assert len(relay_index.sent()) == 2  # and `rise status` follows both


def test_rise_send_over_relays_imports_no_sqlalchemy_and_records_one_route(
    tmp_path: Path,
) -> None:
    """`rise-send --hops 2`: the route drawn from the map read with sqlite3, the packet,
    its record and its last route written in one transaction; no SQLAlchemy loaded."""
    net = Network.build(
        tmp_path,
        relays=["r1", "r2"],
        ends=["a", "b"],
        links=[("a", "r1"), ("r1", "r2"), ("r2", "b")],
        correspondents=[("a", "b")],
    )
    a = net["a"]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "-q", "--hops", "2", "-", "b"],
        input=b"over two relays",
        env=command_env(a.home, RISE_NO_DAEMON="1"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.stderr.decode().splitlines()[-1] == "exit 0 heavy -", result.stderr
    bundle_id = result.stdout.split()[0].decode()
    assert len(net.tx("a", "r1")) == 1  # one copy, to the first relay
    index, relay_index = new_index(a.home / "spool" / "index.sqlite")
    assert [row.bundle_id for row in relay_index.sent()] == [bundle_id]
    relays = {net["r1"].node_id, net["r2"].node_id}
    assert set(relay_index.last_route(net["b"].node_id)) == relays
    assert [row.neighbour for row in index.entries()] == [net["r1"].node_id]


def test_connections_opened_ahead_serve_this_process_and_this_file_only(
    tmp_path: Path,
) -> None:
    """rise-send's waiting child opens its two index connections ahead (preopen): the next
    two connects to that file take them; a forked process, another file, or the same
    path after the file was replaced get a fresh connection, and writes still land."""
    path = tmp_path / "index.sqlite"
    new_index(path)[0].close()
    plain_index.preopen(path, 2)
    ready = [connection for _, _, _, connection in plain_index._READY]
    try:
        assert len(ready) == 2
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            connection = plain_index._connect(path)
            os._exit(0 if connection is not None and connection not in ready else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert plain_index._connect(tmp_path / "other.sqlite") is None  # no such file
        assert plain_index._connect(path) is ready[0]
        assert plain_index.put_queued(path, [(entry(), "0" * 32)], sent=sent())
        assert not plain_index._READY  # the write took the second one
        plain_index.preopen(path, 1)
        os.rename(path, tmp_path / "old.sqlite")  # replaced, as by hand
        new_index(path)[0].close()
        assert plain_index.put_queued(path, [(entry("c" * 26), "1" * 32)], sent=sent("c" * 26))
        index, _relay_index = new_index(path)
        assert [row.bundle_id for row in index.entries()] == ["c" * 26]
        index.close()
    finally:
        plain_index._READY.clear()
