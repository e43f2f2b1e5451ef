"""The sneakernet commands on the default SQLite index without SQLAlchemy.

`rise-xfer DIR` and `rise-xfer --toss DIR` (and `rise-toss`) of direct
bundles write the index through PlainIndex (store/plain_index.py). These
tests hold each of its operations to the rows the Index leaves, and run
the real commands in fresh interpreters to check what they imported.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rise_dtn.store.index import Index
from rise_dtn.store.plain_index import PlainIndex
from rise_dtn.store.relay_index import RelayIndex
from rise_dtn.store.rows import EntryRow, InboxRow, SeenRow
from tests.conftest import command_env, make_node

A, B, C = "a" * 26, "b" * 26, "c" * 26
N = "n" * 26


def _script(index: Index | PlainIndex) -> list[object]:
    """Every operation PlainIndex has, in an order that exercises each rule; what it read."""
    read: list[object] = []
    for bundle_id in (A, B, C):
        index.put_entry(EntryRow(bundle_id, "tx", N, 10, 5000, 3, 1000), digest=bundle_id[:32])
    index.put_entry(EntryRow(A, "rx", N, 77, 6000, 1, 1001))
    index.count_copy(A)
    index.count_copy(A)
    index.count_copy(C)
    index.release(B, N, size=10, how="acked", now=1100)
    index.release(B, N, size=10, how="acked", now=1101)  # a repeat replaces
    # Released already: a late listing of B is not made (the rule of Index.put_entry).
    index.put_entry(EntryRow(B, "tx", N, 10, 5000, 3, 1000), digest="d" * 32)
    read.append(sorted(index.released_among([A, B, C])))
    read.append(index.held_bytes("rx", N))
    read.append(index.held_bytes("tx", N))
    read.append(index.seen_state(A))
    index.record_delivering(SeenRow(A, 6000, "delivering", N, "/tmp/x", 1200))
    read.append(index.seen_state(A))
    message = InboxRow(A, N, "nina", 1201, 77, "/inbox/x")
    index.finish_delivery(A, neighbour=N, message=message, now=1201)
    index.finish_delivery(A, neighbour=N, message=message, now=1202)  # a repeat
    index.record_delivering(SeenRow(C, 6000, "delivering", N, "/tmp/y", 1300))
    index.finish_delivery(C, neighbour=N, message=None, now=1301, hop_id=B, receipt_to=N)
    read.append(index.seen_state(A))
    read.append(index.receipts_owed())
    index.owe_ack(C, "m" * 26, now=1400)
    index.put_entry(EntryRow("stem" + "x" * 22, "rx", N, 5, 6000, 1, 1001))
    index.drop_received("stem" + "x" * 22, C, N, now=1500)
    read.append(sorted(index.acks_owed()))
    index.acks_sent(N, [A, "z" * 26])
    read.append(sorted(index.acks_owed()))
    index.drop_entry(C, "tx")
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


def _new(path: Path) -> Index:
    index = Index(f"sqlite:///{path}")
    RelayIndex(index)  # every table, as `rise init` makes them
    return index


def test_each_plain_operation_leaves_the_rows_and_reads_of_the_index(tmp_path: Path) -> None:
    through = _new(tmp_path / "through.sqlite")
    _new(tmp_path / "plain.sqlite").close()
    plain = PlainIndex.open(tmp_path / "plain.sqlite")
    assert plain is not None
    assert _script(plain) == _script(through)
    plain.close()
    through.close()
    dump = _tables(tmp_path / "plain.sqlite")
    assert dump == _tables(tmp_path / "through.sqlite")
    assert dump["inbox"] and dump["seen"] and dump["release"] and dump["pending_ack"]


def test_no_index_or_no_tables_means_the_index_is_used(tmp_path: Path) -> None:
    assert PlainIndex.open(tmp_path / "none.sqlite") is None
    assert not (tmp_path / "none.sqlite").exists()
    sqlite3.connect(tmp_path / "bare.sqlite").close()
    assert PlainIndex.open(tmp_path / "bare.sqlite") is None


def test_a_failed_write_rolls_back_and_keeps_the_connection(tmp_path: Path) -> None:
    _new(tmp_path / "i.sqlite").close()
    plain = PlainIndex.open(tmp_path / "i.sqlite")
    assert plain is not None
    with pytest.raises(RuntimeError), plain.transaction() as connection:
        connection.execute("DELETE FROM pending_ack")
        connection.execute(
            "INSERT INTO pending_ack (bundle_id, neighbour, created) VALUES (?, ?, ?)", (A, N, 1)
        )
        raise RuntimeError("crash mid-transaction")
    assert plain.acks_owed() == []
    plain.owe_ack(A, N, now=2)
    assert plain.acks_owed() == [(N, A)]
    plain.close()


def test_a_forked_child_writes_on_a_connection_of_its_own(tmp_path: Path) -> None:
    _new(tmp_path / "i.sqlite").close()
    plain = PlainIndex.open(tmp_path / "i.sqlite")
    assert plain is not None
    inherited = plain._connection
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        plain.owe_ack(B, N, now=3)
        os._exit(0 if plain._connection is not inherited else 1)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert plain._connection is inherited
    assert plain.acks_owed() == [(N, B)]
    plain.close()


PROBE = """
import sys
from rise_dtn.cli.main import _dispatch, load_command
verb = sys.argv[1]
sys.argv = ["rise-" + verb, *sys.argv[2:]]
code = _dispatch(load_command(verb), "rise-" + verb)
heavy = sorted(name for name in sys.modules if name.split(".")[0] == "sqlalchemy")
print("exit", code, "heavy", ",".join(heavy[:3]) or "-", file=sys.stderr)
"""


def _probe(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=command_env(home, RISE_NO_DAEMON="1"),
        capture_output=True,
        timeout=120,
        check=False,
    )


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def test_a_stick_trip_loads_no_sqlalchemy_and_delivers_acks_and_releases(
    tmp_path: Path,
) -> None:
    """alice writes to a stick, bob takes and tosses, alice takes the acks: the three
    exchanges of a sneakernet, each in a fresh interpreter that never loads SQLAlchemy."""
    alice, bob = make_node(tmp_path, "alice"), make_node(tmp_path, "bob")
    alice.run("rise", "peer", "add", "-", input=bob.card())
    bob.run("rise", "peer", "add", "-", input=alice.card())
    (tmp_path / "letter.txt").write_bytes(b"carried by hand" * 1000)
    alice.run("rise-send", "-q", str(tmp_path / "letter.txt"), "bob")
    alice.run("rise-send", "-q", "-", "bob", input=b"a short note")
    stick = tmp_path / "stick"
    stick.mkdir()
    expect: list[tuple[Path, tuple[str, ...], Callable[[], None]]] = []

    def written() -> None:
        assert len(list(stick.rglob("*.rsb"))) == 2
        copies = _rows(alice.spool / "index.sqlite", "SELECT copies FROM spool_entry")
        assert copies == [(1,), (1,)]

    def tossed() -> None:
        inbox = _rows(bob.spool / "index.sqlite", "SELECT bundle_id FROM inbox")
        seen = _rows(bob.spool / "index.sqlite", "SELECT state FROM seen")
        assert len(inbox) == 1 and seen == [("delivered",), ("delivered",)]
        assert (bob.home / "incoming" / "alice" / "letter.txt").exists()
        assert _rows(bob.spool / "index.sqlite", "SELECT * FROM pending_ack") == []
        assert _rows(bob.spool / "index.sqlite", "SELECT * FROM spool_entry") == []

    def released() -> None:
        assert _rows(alice.spool / "index.sqlite", "SELECT * FROM spool_entry") == []
        hows = _rows(alice.spool / "index.sqlite", 'SELECT how FROM "release"')
        assert hows == [("acked",), ("acked",)]
        assert list((alice.spool / "tx").rglob("*.rsb")) == []

    expect.append((alice.home, ("xfer", "-q", str(stick)), written))
    expect.append((bob.home, ("xfer", "-q", "--toss", str(stick)), tossed))
    expect.append((alice.home, ("xfer", "-q", str(stick)), released))
    for home, args, check in expect:
        result = _probe(home, *args)
        assert result.stderr.decode().splitlines()[-1] == "exit 0 heavy -", result.stderr
        check()


def test_rise_toss_of_a_direct_bundle_loads_no_sqlalchemy(tmp_path: Path) -> None:
    alice, bob = make_node(tmp_path, "alice"), make_node(tmp_path, "bob")
    alice.run("rise", "peer", "add", "-", input=bob.card())
    bob.run("rise", "peer", "add", "-", input=alice.card())
    alice.run("rise-send", "-q", "-", "bob", input=b"tossed later")
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))  # taken into rx/, not tossed
    assert len(_rows(bob.spool / "index.sqlite", "SELECT * FROM spool_entry")) == 1
    result = _probe(bob.home, "toss", "-q")
    assert result.stderr.decode().splitlines()[-1] == "exit 0 heavy -", result.stderr
    assert _rows(bob.spool / "index.sqlite", "SELECT state FROM seen") == [("delivered",)]
    assert len(_rows(bob.spool / "index.sqlite", "SELECT * FROM inbox")) == 1
    assert len(_rows(bob.spool / "index.sqlite", "SELECT * FROM pending_ack")) == 1


@pytest.mark.parametrize("odd", ["a?b", "a#b", "a%41b", "a b"])
def test_a_home_whose_path_has_url_characters_keeps_one_index_in_its_spool(
    tmp_path: Path, odd: str
) -> None:
    """The Index (SQLAlchemy, a URL) and PlainIndex (sqlite3, a file URI) open the same
    file, the spool's, whatever the home's path holds: with '?' the Index took the rest of
    the path for a query and made its database beside the home's folder, so two homes
    under "x?1" and "x?2" shared one (a bundle delivered to one was a replay to the other)."""
    alice, bob = make_node(tmp_path, "alice"), make_node(tmp_path / odd, "bob")
    made = {path.name for path in tmp_path.iterdir()}
    assert made == {"alice", odd}, made  # nothing beside the homes
    assert [path.name for path in (tmp_path / odd).iterdir()] == ["bob"]
    alice.run("rise", "peer", "add", "-", input=bob.card())
    bob.run("rise", "peer", "add", "-", input=alice.card())
    alice.run("rise-send", "-q", "-", "bob", input=b"to an odd home")
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    assert _rows(bob.spool / "index.sqlite", "SELECT state FROM seen") == [("delivered",)]
    listed = bob.run("rise", "inbox").stdout.decode()  # read through the Index
    assert "alice" in listed, listed
    assert {path.name for path in tmp_path.iterdir()} == {"alice", odd, "stick"}
    assert [path.name for path in (tmp_path / odd).iterdir()] == ["bob"]


def test_rise_send_with_an_index_url_configured_sends(tmp_path: Path) -> None:
    """With an index URL in the config, rise-send imports the index (SQLAlchemy) in a
    thread while it seals (Home.prewarm_index), and then uses it. Importing a piece of
    SQLAlchemy before the index module, while that thread was inside it, failed every
    time: 'internal error: ImportError: ... partially initialized module'."""
    alice, bob = make_node(tmp_path, "alice"), make_node(tmp_path, "bob")
    alice.run("rise", "peer", "add", "-", input=bob.card())
    config = alice.home / "config.toml"
    elsewhere = tmp_path / "elsewhere.sqlite"
    config.write_text(
        config.read_text().replace("[spool]\n", f'[spool]\nindex_url = "sqlite:///{elsewhere}"\n')
    )
    for number in range(3):
        alice.run("rise-send", "-q", "-", "bob", input=f"note {number}".encode())
    listed = alice.run("rise", "queue").stdout.decode().splitlines()
    assert len(listed) == 3, listed
    assert elsewhere.exists()
