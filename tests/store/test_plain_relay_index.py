"""A relay's index writes through sqlite3 alone leave the rows the RelayIndex leaves.

store/plain_relay_index.py duplicates RelayIndex's relay-side operations in
plain SQL; these tests hold each of them to the same rows and reads, and run
a relay's real `rise-xfer --toss` (a forward off a stick) and `rise-xfer` (its
map refresh) in fresh interpreters to check that they load no SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from rise_dtn.store.index import Index
from rise_dtn.store.plain_relay_index import PlainRelayIndex
from rise_dtn.store.relay_index import LinkRow, RelayIndex
from rise_dtn.store.rows import EntryRow, HeldRow, SeenRow
from tests.conftest import command_env
from tests.e2e.relay_network import Network

P, Q, R = "p" * 26, "q" * 26, "r" * 26  # previous hops' packet ids
X, Y, Z = "x" * 26, "y" * 26, "z" * 26  # the next hops' ids
N, M = "n" * 26, "m" * 26  # neighbours


def _forward(next_id: str, arrived: str, *, at: int) -> tuple[EntryRow, str, str, SeenRow]:
    entry = EntryRow(next_id, "tx", M, 700, 9000, 2, at)
    return entry, N, next_id[:2] * 16, SeenRow(arrived, 9500, "relayed", "", "", at)


def _script(index: PlainRelayIndex | RelayIndex, plain: Index | PlainRelayIndex) -> list[object]:
    """Every operation PlainRelayIndex adds, in an order that exercises each rule."""
    read: list[object] = []
    plain.put_entry(EntryRow(P, "rx", N, 700, 9500, 2, 1000))
    plain.release(Z, M, size=700, how="acked", now=1000)  # a live link took Z already
    index.record_forwarded_many([_forward(X, P, at=1100), _forward(Z, R, at=1100)], replays=[])
    read.append(index.held_for(N))
    read.append(index.held_for(M))
    read.append(sorted(index.holding("xx" * 16)))
    read.append(sorted(index.seen_among([P, Q, R])))
    # The same batch redone after a crash, and a replay of P: the same rows again.
    index.record_forwarded_many(
        [_forward(X, P, at=1100)], replays=[(SeenRow(P, 9500, "relayed", "", "", 1200), M)]
    )
    index.record_forwarded_many([], replays=[(SeenRow(Q, 9400, "relayed", "", "", 1250), N)])
    index.record_handled(SeenRow(Y, 800, "relayed", "", "", 1300), neighbour=M)
    read.append(sorted(index.seen_among([P, Q, R, Y])))
    read.append(index.maps_sent())
    index.map_sent(N, now=1400)
    index.map_sent(N, now=1500)
    index.map_sent(M, now=1500)
    read.append(index.maps_sent())
    read.append(sorted(index.links(150), key=str))
    index.learn(via=M, links=[LinkRow(M, R, M, 2, 160, 9000)], cards={R: b"new"}, card_expiry=600)
    index.learn(via=N, links=[LinkRow(N, M, N, 1, 170, 700)], cards={}, card_expiry=600)
    read.append(sorted(index.links(650), key=str))
    index.forget_expired(850)  # a link and the cards, and nothing relayed
    index.forget_expired(870)  # within a minute of the last (by `now`): nothing
    read.append(index.held_for(N))
    index.hold(HeldRow(X, M, 2, 1, 9000, 3, 512, 4))
    index.hold(HeldRow(X, M, 2, 1, 9100, 3, 512, 4))  # again: replaced
    index.hold(HeldRow(Y, N, 3, 2, 9000, 1, 700, 1))
    index.hold(HeldRow(Z, N, 3, 2, 9000, 2, 700, 1))
    index.release_held(Z)
    read.append(index.held())
    plain.record_delivering(SeenRow(R, 9500, "delivering", N, "/x", 1600))
    plain.finish_delivery(R, neighbour=N, message=None, now=1601, receipt_to=N)
    read.append(plain.receipts_owed())
    plain.receipt_queued(R)
    read.append(plain.receipts_owed())
    return read


def _tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    connection = sqlite3.connect(path)
    names = [
        name
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    dump = {
        name: sorted(connection.execute(f'SELECT * FROM "{name}"').fetchall()) for name in names
    }
    connection.close()
    return dump


def _new(path: Path) -> tuple[Index, RelayIndex]:
    index = Index(f"sqlite:///{path}")
    relay_index = RelayIndex(index)  # every table, as `rise init` makes them
    relay_index.learn(
        via=N,
        links=[LinkRow(N, M, N, 1, 100, 500), LinkRow(N, R, N, 1, 100, 9000)],
        cards={M: b"card", R: b"card"},
        card_expiry=500,
    )
    return index, relay_index


def test_each_plain_relay_operation_leaves_the_rows_and_reads_of_the_relay_index(
    tmp_path: Path,
) -> None:
    through, through_relay = _new(tmp_path / "through.sqlite")
    _new(tmp_path / "plain.sqlite")[0].close()
    plain = PlainRelayIndex.open(tmp_path / "plain.sqlite")
    assert plain is not None
    assert _script(plain, plain) == _script(through_relay, through)
    plain.close()
    through.close()
    dump = _tables(tmp_path / "plain.sqlite")
    assert dump == _tables(tmp_path / "through.sqlite")
    assert dump["relayed"] and dump["seen"] and dump["pending_ack"] and dump["map_sent"]
    assert len(dump["held"]) == 2
    assert [row[0] for row in dump["spool_entry"]] == [X]  # Z was released: not listed
    assert len(dump["map_link"]) == 1 and dump["map_card"] == []  # forgotten at 850


def test_an_index_without_the_relay_tables_means_the_relay_index_is_used(
    tmp_path: Path,
) -> None:
    assert PlainRelayIndex.open(tmp_path / "none.sqlite") is None
    Index(f"sqlite:///{tmp_path / 'bare.sqlite'}").close()  # the Index's tables only
    assert PlainRelayIndex.open(tmp_path / "bare.sqlite") is None


PROBE = """
import sys
from rise_dtn.cli.main import _dispatch, load_command
verb = sys.argv[1]
sys.argv = ["rise-" + verb, *sys.argv[2:]]
code = _dispatch(load_command(verb), "rise-" + verb)
heavy = sorted(name for name in sys.modules if name.split(".")[0] == "sqlalchemy")
print("exit", code, "heavy", ",".join(heavy[:3]) or "-", file=sys.stderr)
"""


def _probe(home: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=command_env(home, RISE_NO_DAEMON="1"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    return result.stderr.decode().splitlines()[-1]


def test_a_file_over_two_relays_by_stick_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """a -> r1 -> r2 -> b, one stick per link, each relay forwarding off the stick
    (`rise-xfer --toss`) and writing the next one (with its map refresh), b
    delivering off the stick and queueing the receipt: no step loads SQLAlchemy."""
    net = Network.build(
        tmp_path,
        relays=["r1", "r2"],
        ends=["a", "b"],
        links=[("a", "r1"), ("r1", "r2"), ("r2", "b")],
        correspondents=[("a", "b")],
    )
    payload = tmp_path / "two-mib.bin"
    payload.write_bytes(bytes(range(256)) * (8 << 10))  # over one chunk: streamed off the stick
    net.send("a", "b", payload, options=("--hops", "2", "--via", "r1,r2"))
    sticks = {
        "a-r1": net.stick("a", "r1"),
        "r1-r2": net.stick("r1", "r2"),
        "r2-b": net.stick("r2", "b"),
    }
    steps = [
        ("a", ("xfer", "-q", str(sticks["a-r1"]))),
        ("r1", ("xfer", "-q", "--toss", "--for", "a", str(sticks["a-r1"]))),
        ("r1", ("xfer", "-q", "--for", "r2", str(sticks["r1-r2"]))),
        ("r2", ("xfer", "-q", "--toss", "--for", "r1", str(sticks["r1-r2"]))),
        ("r2", ("xfer", "-q", "--for", "b", str(sticks["r2-b"]))),
        ("b", ("xfer", "-q", "--toss", str(sticks["r2-b"]))),
    ]
    for name, args in steps:
        assert _probe(net[name].home, *args) == "exit 0 heavy -", (name, args)
    assert (net["b"].home / "incoming" / "a" / payload.name).read_bytes() == payload.read_bytes()
    for relay in ("r1", "r2"):
        connection = sqlite3.connect(net[relay].home / "spool" / "index.sqlite")
        relayed = connection.execute("SELECT count(*) FROM relayed").fetchone()
        connection.close()
        assert relayed == (1,)  # the forward was recorded, by sqlite3
    connection = sqlite3.connect(net["b"].home / "spool" / "index.sqlite")
    owed = connection.execute("SELECT count(*) FROM receipt_owed").fetchone()
    connection.close()
    assert owed == (0,)  # the receipt was queued (and its debt forgotten)
