"""A relay's daemon forwards a small packet a live link received whole without rx/
(relay.forward_pushed): the same files and index rows as the ordinary toss, and
nothing at all when it declines (a replay, a damaged packet, no relaying, a quota)."""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rise_dtn.core.bundle import parse_clear
from rise_dtn.core.identity import NodeId
from rise_dtn.node.home import CONFIG_FILE, Home
from rise_dtn.node.send import routed, send
from rise_dtn.node.toss import relay as relay_module
from rise_dtn.node.toss import toss
from rise_dtn.node.toss.relay import forward_pushed
from rise_dtn.node.toss.toss_events import Forwarded
from rise_dtn.store import atomic
from rise_dtn.store.atomic import remove_stale_tmp
from rise_dtn.store.transaction import commit_partial
from tests.e2e.test_crash import CRASH_STEPS, WriteSteps, _die


def _swap(one: Home, other: Home, now: int) -> None:
    one.peers.add(other.card(now=now), name=None, self_id=one.identity.node_id, replace=True)
    other.peers.add(one.card(now=now), name=None, self_id=other.identity.node_id, replace=True)


def _chain(base: Path, now: int, *, relay_settings: str = "") -> tuple[Home, Home, Home]:
    """alice - relay - bob, bob's card naming the relay; a relay with [relay] enabled."""
    alice = Home.create(base / "alice", name="alice")
    relay = Home.create(base / "relay", name="relay")
    bob = Home.create(base / "bob", name="bob")
    config = relay.path / CONFIG_FILE
    text = config.read_text().replace("# enabled = true", "enabled = true")
    config.write_text(text + relay_settings)
    relay = Home.open(relay.path)
    _swap(alice, relay, now)
    _swap(relay, bob, now)
    alice.peers.set_relay("relay", relay=True)
    bob.peers.set_relay("relay", relay=True)
    card = bob.card(now=now, via=[relay.identity.node_id])
    alice.peers.add(card, name=None, self_id=alice.identity.node_id, replace=True)
    bob.peers.add(alice.card(now=now), name=None, self_id=bob.identity.node_id, replace=True)
    return alice, relay, bob


def _packet(alice: Home, relay: Home, now: int, text: bytes = b"hello over a relay") -> bytes:
    """A one-relay packet alice queues for the relay, as the link would push it."""
    tx = alice.spool.tx_dir(relay.identity.node_id)
    before = set(alice.spool.files(tx)) if tx.exists() else set()
    routed.queue_routed(
        alice,
        alice.peers.find("bob"),
        io.BytesIO(text),
        options=send.SendOptions(),
        route=routed.RouteOptions(hops=1),
        now=now,
        rng=random.Random(text),
    )
    (path,) = set(alice.spool.files(tx)) - before
    return path.read_bytes()


def _rows(home: Home) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the node's index, sorted."""
    with sqlite3.connect(home.spool.index_path) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {
            table: sorted(map(tuple, connection.execute(f'SELECT * FROM "{table}"')), key=repr)
            for table in tables
        }


def _files(home: Home) -> dict[str, bytes]:
    return {
        str(path.relative_to(home.spool.root)): path.read_bytes()
        for folder in (home.spool.tx, home.spool.rx)
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_the_forward_is_the_ordinary_tosss_files_and_rows(tmp_path: Path) -> None:
    now = int(time.time())
    alice, relay, bob = _chain(tmp_path, now)
    packet = _packet(alice, relay, now)
    relay.close()
    shutil.copytree(relay.path, tmp_path / "ordinary")
    relay = Home.open(relay.path)
    ordinary = Home.open(tmp_path / "ordinary")
    # The ordinary way: the link takes the packet into rx/, then the toss.
    clear = parse_clear(packet)
    partial = ordinary.spool.tmp / "arriving"
    partial.write_bytes(packet)
    ordinary.bundles.admit(
        clear,
        len(packet),
        alice.identity.node_id,
        now=now,
        write=lambda target: commit_partial(partial, target),
    )
    events = toss.toss(ordinary, now=now)
    assert [type(event) for event in events] == [Forwarded]

    done = forward_pushed(relay, alice.identity.node_id, packet, now=now)

    assert done is not None
    event, next_hop = done
    assert next_hop == bob.identity.node_id
    assert event == events[0]
    assert _files(relay) == _files(ordinary)
    assert _rows(relay) == _rows(ordinary)
    # And bob gets the message from it.
    (forward,) = relay.spool.files(relay.spool.tx_dir(bob.identity.node_id))
    inbox_before = list(bob.inbox_dir.glob("*.msg")) if bob.inbox_dir.exists() else []
    arriving = bob.spool.tmp / "arriving"
    arriving.write_bytes(forward.read_bytes())
    bob.bundles.admit(
        parse_clear(forward.read_bytes()),
        forward.stat().st_size,
        relay.identity.node_id,
        now=now,
        write=lambda target: commit_partial(arriving, target),
    )
    toss.toss(bob, now=now)
    (message,) = set(bob.inbox_dir.glob("*.msg")) - set(inbox_before)
    assert message.read_bytes() == b"hello over a relay"


def test_a_packet_seen_before_is_left_to_the_ordinary_way(tmp_path: Path) -> None:
    now = int(time.time())
    alice, relay, _bob = _chain(tmp_path, now)
    packet = _packet(alice, relay, now)
    assert forward_pushed(relay, alice.identity.node_id, packet, now=now) is not None
    files, rows = _files(relay), _rows(relay)
    assert forward_pushed(relay, alice.identity.node_id, packet, now=now) is None
    assert (_files(relay), _rows(relay)) == (files, rows)


@pytest.mark.parametrize(
    "spoil",
    ["damaged payload", "truncated", "trailing byte", "from a stranger", "expired", "not relaying"],
)
def test_what_the_relay_declines_leaves_no_trace(tmp_path: Path, spoil: str) -> None:
    now = int(time.time())
    alice, relay, _bob = _chain(tmp_path, now)
    packet = _packet(alice, relay, now)
    neighbour = alice.identity.node_id
    when = now
    if spoil == "damaged payload":
        packet = packet[:-1] + bytes([packet[-1] ^ 1])
    elif spoil == "truncated":
        packet = packet[:-1]
    elif spoil == "trailing byte":
        packet += b"\0"
    elif spoil == "from a stranger":
        neighbour = NodeId(bytes(16))
    elif spoil == "expired":
        when = parse_clear(packet).header.expiry + 1
    else:
        config = relay.path / CONFIG_FILE
        config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
        relay = Home.open(relay.path)
    files, rows = _files(relay), _rows(relay)

    assert forward_pushed(relay, neighbour, packet, now=when) is None

    assert (_files(relay), _rows(relay)) == (files, rows)


def test_a_packet_over_the_quota_is_left_to_the_ordinary_way(tmp_path: Path) -> None:
    """The toss then defers it in rx/ and says why; here nothing is written."""
    now = int(time.time())
    alice, relay, _bob = _chain(tmp_path, now)
    config = relay.path / CONFIG_FILE
    text = config.read_text().replace("# max_bundles = 10000", "max_bundles = 1")
    config.write_text(text)
    relay = Home.open(relay.path)
    first = _packet(alice, relay, now, b"one")
    assert forward_pushed(relay, alice.identity.node_id, first, now=now) is not None
    packet = _packet(alice, relay, now, b"two")
    files, rows = _files(relay), _rows(relay)
    assert forward_pushed(relay, alice.identity.node_id, packet, now=now) is None
    assert (_files(relay), _rows(relay)) == (files, rows)


def _through(relay: Home, bob: Home, alice: Home, packet: bytes, now: int) -> bytes:
    """The ordinary way through the relay and into bob's inbox; the message delivered."""
    for home, neighbour in ((relay, alice), (bob, relay)):
        arriving = home.spool.tmp / "arriving"
        arriving.write_bytes(packet)
        home.bundles.admit(
            parse_clear(packet),
            len(packet),
            neighbour.identity.node_id,
            now=now,
            write=lambda target, arriving=arriving: commit_partial(arriving, target),
        )
        toss.toss(home, now=now)
        if home is relay:
            (forward,) = relay.spool.files(relay.spool.tx_dir(bob.identity.node_id))
            packet = forward.read_bytes()
    (message,) = bob.inbox_dir.glob("*.msg")
    return message.read_bytes()


@pytest.mark.parametrize("size", [100, routed.STAGED_IN_MEMORY_BYTES + 12_345])
def test_a_message_from_a_pipe_is_staged_in_memory_or_in_a_file_alike(
    tmp_path: Path, size: int
) -> None:
    """A routed send from a pipe stages the sealed payload (its size is known only at the
    end): in memory up to 1 MiB, in a file beyond. Either way the same message arrives."""
    now = int(time.time())
    alice, relay, bob = _chain(tmp_path, now)
    text = random.Random(size).randbytes(size)
    read_end, write_end = os.pipe()

    def feed() -> None:
        with open(write_end, "wb") as pipe:
            pipe.write(text)

    writer = threading.Thread(target=feed)
    writer.start()
    with open(read_end, "rb") as pipe:
        routed.queue_routed(
            alice,
            alice.peers.find("bob"),
            pipe,
            options=send.SendOptions(),
            route=routed.RouteOptions(hops=1),
            now=now,
            rng=random.Random(1),
        )
    writer.join()
    (path,) = alice.spool.files(alice.spool.tx_dir(relay.identity.node_id))
    assert not list(alice.spool.tmp.iterdir())  # nothing staged is left behind
    assert _through(relay, bob, alice, path.read_bytes(), now) == text


def test_a_relay_killed_before_any_write_step_of_the_forward_redoes_it_once(
    tmp_path: Path,
) -> None:
    """SIGKILL before each write step of the forward (in a forked child), then the packet
    pushed again, as the previous hop does when it never heard STORED: one forward in
    tx/, the same files and rows as the ordinary toss makes, nothing left in tmp/."""
    now = int(time.time())
    alice, relay, _bob = _chain(tmp_path / "model", now)
    packet = _packet(alice, relay, now)
    relay.close()
    pristine = tmp_path / "pristine"
    shutil.copytree(relay.path, pristine)
    relay = Home.open(relay.path)
    assert forward_pushed(relay, alice.identity.node_id, packet, now=now) is not None
    expected = _files(relay), _rows(relay)
    for at in range(1, 50):
        home_path = tmp_path / f"step{at}"
        shutil.copytree(pristine, home_path)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                with _crashing(at):
                    forward_pushed(Home.open(home_path), alice.identity.node_id, packet, now=now)
                code = 0
            finally:
                os._exit(code)
        _pid, status = os.waitpid(pid, 0)
        crashed = os.WIFSIGNALED(status)
        assert crashed or os.WEXITSTATUS(status) == 0
        home = Home.open(home_path)
        forward_pushed(home, alice.identity.node_id, packet, now=now)  # pushed again
        remove_stale_tmp(home.spool.tmp)
        assert (_files(home), _rows(home)) == expected, f"killed before step {at}"
        assert not [path for path in home.spool.tmp.iterdir() if path.is_file()]
        if not crashed:
            assert at > 3, "the forward took no write step at all"
            return
    raise AssertionError("the forward never finished")


@contextlib.contextmanager
def _crashing(at: int) -> Iterator[None]:
    """Write steps of the forward counted; SIGKILL just before step `at`."""
    steps = WriteSteps(at, _die, CRASH_STEPS)
    saved = atomic.os, relay_module.os
    atomic.os = relay_module.os = steps  # type: ignore[assignment]
    try:
        yield
    finally:
        atomic.os, relay_module.os = saved
