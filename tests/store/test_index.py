"""The index's transactions, on SQLite and on a real PostgreSQL server.

The race tests run the other side as a real process (a child Python that
opens the same index) and order the two deterministically: this process
holds a write transaction, lets the child start its method, waits until the
child is waiting for the database (SQLite: the child's statement trace shows
the statement it waits in; PostgreSQL: pg_stat_activity shows it waiting for
a lock), then writes what a concurrent process would have written and
commits. A method whose check ran before it took the write lock then acts on
a stale check; one that takes the lock first sees the commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import delete, insert, update

from rise_dtn.core.errors import StorageError, UsageError
from rise_dtn.store.index import (
    EntryRow,
    InboxMessage,
    InboxRow,
    Index,
    PendingAck,
    Release,
    SeenRow,
    SpoolEntry,
)
from rise_dtn.store.relay_index import HeldRow, LinkRow, RelayIndex, Sent, SentRow
from tests.conftest import command_env, make_node, run
from tests.postgres import IndexUrls, free_port

BUNDLE = "B" * 26
NEIGHBOUR = "N" * 26
OTHER = "O" * 26
WAIT_SECONDS = 60.0  # a bound on waiting for the child, not a timing goal
BEYOND_32_BITS = 5 * 2**31  # a 10 GiB bundle, an expiry after 2038

# The other process: opens the index, says "ready", waits for a line on
# stdin, runs one method and prints "result ...". On SQLite it also prints
# each statement as SQLite starts running it ("sql ..."), before any wait
# for a lock inside that statement.
CHILD = r"""
import sys
from sqlalchemy import event
from sqlalchemy.pool import Pool

url, method, bundle_id, neighbour = sys.argv[1:5]
if url.startswith("sqlite"):
    def trace(dbapi_connection, _record):
        dbapi_connection.set_trace_callback(
            lambda sql: print("sql", " ".join(sql.split()), flush=True)
        )
    event.listen(Pool, "connect", trace)

from rise_dtn.store.index import EntryRow, Index
from rise_dtn.store.relay_index import RelayIndex

index = Index(url)
relay_index = RelayIndex(index)
print("ready", flush=True)
sys.stdin.readline()
if method == "put_entry":
    index.put_entry(EntryRow(bundle_id, "tx", neighbour, 10, 100, 16, 1))
    print("result done", flush=True)
elif method == "record_forwarded":
    from rise_dtn.store.index import SeenRow
    arrival = SeenRow("A" * 26, expiry=100, state="delivered", sender="", target="", at=1)
    forward = EntryRow(bundle_id, "tx", neighbour, 10, 100, 16, 1)
    relay_index.record_forwarded_many([(forward, neighbour, "c" * 32, arrival)], replays=[])
    print("result done", flush=True)
elif method == "mark_delivered":
    first = relay_index.mark_delivered(bundle_id, now=5) is not None
    print("result", "first" if first else "again", flush=True)
elif method == "entries":
    print("result", len(index.entries()), flush=True)
"""

WRITE_STATEMENTS = ("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
def index_url(index_urls: IndexUrls, tmp_path: Path) -> str:
    return index_urls("index") or f"sqlite:///{tmp_path / 'index.sqlite'}"


@pytest.fixture
def index(index_url: str) -> Iterator[Index]:
    opened = Index(index_url)
    RelayIndex(opened)
    yield opened
    opened.close()


@dataclasses.dataclass
class Child:
    """The other process, running one index method."""

    url: str
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    seen: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def start(cls, url: str, method: str, *, bundle_id: str = BUNDLE) -> Child:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, method, bundle_id, NEIGHBOUR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=command_env(),
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
        child = cls(url, process, lines)
        child.next_line(lambda line: line == "ready", "ready")
        return child

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def next_line(self, wanted: Callable[[str], bool], what: str, *, seconds: float = 0) -> str:
        """The next line `wanted` accepts (bounded); "" if `seconds` pass without one."""
        deadline = time.monotonic() + (seconds or WAIT_SECONDS)
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if seconds:
                    return ""
                raise AssertionError(f"the child never printed {what}: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the child ended before {what}: {self.seen}")
            self.seen.append(line)
            if wanted(line):
                return line

    def wait_until_stuck(self) -> None:
        """Until the child waits for the database's write lock, or has finished."""
        if self.url.startswith("sqlite"):
            self.next_line(
                lambda line: (
                    line.startswith("result")
                    or line.removeprefix("sql ").upper().startswith(WRITE_STATEMENTS)
                ),
                "a write or its result",
            )
            return
        deadline = time.monotonic() + WAIT_SECONDS
        while not _waiting_for_a_lock(self.url):
            if self.next_line(lambda line: line.startswith("result"), "its result", seconds=0.05):
                self.seen.append("(finished without waiting)")
                return
            assert time.monotonic() < deadline, f"the child neither waited nor ended: {self.seen}"

    def result(self) -> str:
        found = [line for line in self.seen if line.startswith("result")]
        line = found[0] if found else self.next_line(lambda x: x.startswith("result"), "result")
        assert self.process.wait(timeout=WAIT_SECONDS) == 0, self.seen
        return line.removeprefix("result ")


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _waiting_for_a_lock(url: str) -> bool:
    """Is a session of this PostgreSQL database waiting for a lock (advisory, row, any)?"""
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            query = (
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return int(connection.exec_driver_sql(query).scalar_one()) > 0
    finally:
        engine.dispose()


@contextlib.contextmanager
def child_process(url: str, method: str) -> Iterator[Child]:
    child = Child.start(url, method)
    try:
        yield child
    finally:
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait(timeout=WAIT_SECONDS)


def entry(bundle_id: str = BUNDLE, **changes: int | str) -> EntryRow:
    row = EntryRow(bundle_id, "tx", NEIGHBOUR, 10, 100, 16, 1)
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


# --- atomic check-then-write across processes ----------------------------------------------------


@pytest.mark.parametrize("method", ["put_entry", "record_forwarded"])
def test_a_tx_entry_is_not_listed_once_another_process_released_it_meanwhile(
    index: Index, index_url: str, method: str
) -> None:
    """rise-send (or a relay's toss) records its tx entry while a live link sends,
    confirms and releases the bundle it has just put in tx/."""
    with child_process(index_url, method) as child:
        with index.transaction() as connection:
            connection.execute(delete(SpoolEntry).where(SpoolEntry.c.bundle_id == BUNDLE))
            child.go()
            child.wait_until_stuck()
            # What Index.release writes, as the live link's process commits it.
            connection.execute(
                insert(Release).values(
                    bundle_id=BUNDLE, neighbour=NEIGHBOUR, size=10, released_at=3, how="acked"
                )
            )
        assert child.result() == "done"
    assert index.count(Release, bundle_id=BUNDLE) == 1
    assert index.entries() == [], "a released bundle is listed in tx/"


def test_mark_delivered_returns_the_row_to_one_process_only(index: Index, index_url: str) -> None:
    """Two processes handling a receipt each: only one may send the cancels."""
    RelayIndex(index).put_sent(
        SentRow(BUNDLE, OTHER, created=1, expiry=100, size=5, copies=b"\x80"), recipient_route=""
    )
    with child_process(index_url, "mark_delivered") as child:
        with index.transaction() as connection:
            connection.execute(
                update(Sent).where(Sent.c.bundle_id == BUNDLE).values(delivered_at=4)
            )
            child.go()
            child.wait_until_stuck()
        assert child.result() == "again"
    (row,) = RelayIndex(index).sent(BUNDLE)
    assert row.delivered_at == 4


def test_a_reader_does_not_wait_for_a_writer(index: Index, index_url: str) -> None:
    index.put_entry(entry())
    with child_process(index_url, "entries") as child, index.transaction() as connection:
        connection.execute(delete(SpoolEntry).where(SpoolEntry.c.bundle_id == BUNDLE))
        child.go()
        # Still inside the write transaction: the reader saw the last commit.
        assert child.result() == "1"


def test_processes_opening_a_new_index_at_once_all_succeed(index_url: str) -> None:
    children = [Child.start(index_url, "entries") for _ in range(4)]
    for child in children:
        child.go()
    assert [child.result() for child in children] == ["0"] * 4


# --- each transaction, portably ------------------------------------------------------------------


def test_entries_round_trip_values_beyond_32_bits(index: Index) -> None:
    big = entry(size=BEYOND_32_BITS, expiry=BEYOND_32_BITS, queued_at=BEYOND_32_BITS)
    index.put_entry(big)
    index.put_entry(entry(size=7))  # an upsert: replaces the row
    index.put_entry(entry("C" * 26, direction="rx"))
    index.count_copy(BUNDLE)
    assert sorted(index.entries(), key=lambda row: row.bundle_id) == [
        entry(size=7, copies=1),
        entry("C" * 26, direction="rx"),
    ]
    index.put_entry(big)
    assert entry(
        size=BEYOND_32_BITS, expiry=BEYOND_32_BITS, queued_at=BEYOND_32_BITS, copies=0
    ) in (index.entries())


def test_a_released_bundle_is_counted_and_never_listed_again(index: Index) -> None:
    index.put_entry(entry())
    index.release(BUNDLE, NEIGHBOUR, size=BEYOND_32_BITS, how="acked", now=BEYOND_32_BITS)
    index.release(BUNDLE, NEIGHBOUR, size=10, how="acked", now=9)  # again: an upsert
    index.put_entry(entry())
    assert index.entries() == []
    assert index.delivered_counts() == {NEIGHBOUR: 1}
    index.drop_entry(BUNDLE, "tx")
    index.replace_entries([], [entry("D" * 26)])
    index.replace_entries([("D" * 26, "tx")], [entry("E" * 26, direction="rx")])
    assert [row.bundle_id for row in index.entries()] == ["E" * 26]


def test_a_delivery_is_journaled_filed_and_acked(index: Index) -> None:
    target = "/" + "t" * 4000  # a long path fits
    seen = SeenRow(
        BUNDLE, expiry=BEYOND_32_BITS, state="delivering", sender=OTHER, target=target, at=2
    )
    index.record_delivering(seen)
    index.put_entry(entry(direction="rx"))
    message = InboxRow(BUNDLE, OTHER, "x" * 64, received_at=3, size=BEYOND_32_BITS, path=target)
    for _ in range(2):  # finishing twice (after a crash) files the message once
        index.finish_delivery(BUNDLE, neighbour=NEIGHBOUR, message=message, now=3)
    assert index.seen_state(BUNDLE) == dataclasses.replace(seen, state="delivered")
    assert index.seen_state("Z" * 26) is None
    assert index.entries() == []
    assert index.messages() == [message]
    index.mark_read(BUNDLE)
    assert index.messages() == [dataclasses.replace(message, read=True)]
    assert index.count(InboxMessage, read=True) == 1
    index.delete_message(BUNDLE)
    assert index.messages() == []
    index.owe_ack("F" * 26, NEIGHBOUR, now=4)
    assert sorted(index.acks_owed()) == [(NEIGHBOUR, BUNDLE), (NEIGHBOUR, "F" * 26)]
    index.acks_sent(NEIGHBOUR, [BUNDLE, "F" * 26])
    assert index.acks_owed() == []
    assert index.count(PendingAck) == 0


def test_a_failed_transaction_leaves_nothing(index: Index) -> None:
    with pytest.raises(StorageError), index.transaction() as connection:
        connection.execute(insert(SpoolEntry).values(**dataclasses.asdict(entry())))
        connection.execute(insert(SpoolEntry).values(**dataclasses.asdict(entry())))  # duplicate
    assert index.entries() == []


def test_the_relay_tables(index: Index) -> None:
    relay = RelayIndex(index)
    arrived = SeenRow(
        "A" * 26, expiry=BEYOND_32_BITS, state="delivered", sender="", target="", at=5
    )
    forwarded = entry(size=BEYOND_32_BITS)
    for _ in range(2):  # a batch redone after a crash writes the same rows
        relay.record_forwarded_many([(forwarded, OTHER, "c" * 32, arrived)], replays=[])
    assert relay.held_for(OTHER) == (1, BEYOND_32_BITS)
    assert relay.holding("c" * 32) == [(BUNDLE, NEIGHBOUR)]
    assert relay.seen_among(["A" * 26, "Z" * 26]) == {"A" * 26}
    assert index.acks_owed() == [(OTHER, "A" * 26)]
    relay.record_handled(dataclasses.replace(arrived, bundle_id="G" * 26), neighbour=OTHER)
    assert relay.seen_among(["G" * 26]) == {"G" * 26}
    relay.forget_expired(BEYOND_32_BITS + 1)
    assert relay.held_for(OTHER) == (0, 0)

    copies = bytes(range(256)) * 4  # binary, NUL bytes included
    sent = SentRow(
        BUNDLE, OTHER, created=1, expiry=BEYOND_32_BITS, size=BEYOND_32_BITS, copies=copies
    )
    route = ",".join([NEIGHBOUR] * 8)  # the longest route: 8 relays
    relay.put_sent(sent, recipient_route=route)
    relay.put_sent(sent, recipient_route=route)
    assert relay.sent() == [sent]
    assert relay.last_route(OTHER) == [NEIGHBOUR] * 8
    assert relay.last_route(NEIGHBOUR) == []
    delivered = relay.mark_delivered(BUNDLE, now=BEYOND_32_BITS)
    assert delivered == dataclasses.replace(sent, delivered_at=BEYOND_32_BITS)
    assert relay.mark_delivered(BUNDLE, now=7) is None
    relay.mark_cancelled(BUNDLE, cancels=2)
    assert relay.sent(BUNDLE)[0].cancelled == 2

    held = HeldRow(
        BUNDLE, OTHER, hops=2, copies=1, expiry=9, priority=16, size=BEYOND_32_BITS, kind=1
    )
    relay.hold(held)
    relay.hold(held)
    assert relay.held() == [held]
    relay.release_held(BUNDLE)
    assert relay.held() == []

    link = LinkRow(NEIGHBOUR, OTHER, via=OTHER, distance=1, learned_at=5, expiry=BEYOND_32_BITS)
    card = b"\x00card\xff"
    relay.learn(via=OTHER, links=[link], cards={NEIGHBOUR: card}, card_expiry=BEYOND_32_BITS)
    relay.learn(via=OTHER, links=[link], cards={NEIGHBOUR: card}, card_expiry=BEYOND_32_BITS)
    assert relay.links(now=6) == [link]
    assert relay.cards(now=6) == {NEIGHBOUR: card}
    relay.map_sent(OTHER, now=BEYOND_32_BITS)
    assert relay.maps_sent() == {OTHER: BEYOND_32_BITS}


# --- opening ---------------------------------------------------------------------------------


def test_a_missing_driver_names_what_to_install() -> None:
    with pytest.raises(UsageError) as raised:
        Index("postgresql+pg8000://rise@127.0.0.1/rise")
    assert raised.value.message == (
        "the index URL postgresql+pg8000://rise@127.0.0.1/rise needs the Python package "
        "pg8000: pip install 'pg8000'"
    )


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    node = make_node(tmp_path, "alice")
    url = f"postgresql+psycopg://rise:hunter2@127.0.0.1:{free_port()}/rise"
    config = node.home / "config.toml"
    config.write_text(config.read_text().replace("[spool]\n", f'[spool]\nindex_url = "{url}"\n'))
    result = run("rise", "status", home=node.home, check=False, env=command_env(node.home))
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "cannot open the index at postgresql+psycopg://rise:***@127.0.0.1" in stderr
    assert "hunter2" not in stderr


def test_a_bad_index_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="invalid index URL"):
        Index("not a url")
    with pytest.raises(UsageError, match="runs on sqlite or postgresql"):
        Index("mysql+pymysql://rise@127.0.0.1/rise")
