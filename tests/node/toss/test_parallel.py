"""A large toss runs in forked workers: every bundle handled once, errors keep their exit code.

The workers are real forked processes working on a real spool; only the
threshold for going parallel is lowered, so that a test-sized relay spool
takes the same path as a relay with thousands of packets waiting.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from rise_dtn.carriers.directory import xfer
from rise_dtn.carriers.directory.audience import Audience
from rise_dtn.core.errors import ExitCode, NoSpaceError
from rise_dtn.node.home import CONFIG_FILE, Home
from rise_dtn.node.send import routed, send
from rise_dtn.node.toss import parallel, toss
from rise_dtn.store.relay_index import Relayed

PACKETS = 60
EVERYONE = Audience(everyone=True)  # one stick that alice, the relay and bob share


def test_every_job_is_run_once_across_the_workers(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "n", name="n")
    seen: list[int] = []

    def run(part: Sequence[int], emit: Callable[[int], None]) -> None:
        for job in part:
            emit(job)

    parallel.run_sliced(home, list(range(1000)), workers=3, run=run, emit=seen.append)
    assert sorted(seen) == list(range(1000))


def test_a_worker_error_keeps_its_exit_code(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "n", name="n")

    def run(part: Sequence[int], emit: Callable[[int], None]) -> None:
        if 7 in part:
            raise NoSpaceError("no space left while testing; nothing was lost")
        for job in part:
            emit(job)

    with pytest.raises(NoSpaceError) as caught:
        parallel.run_sliced(home, list(range(20)), workers=2, run=run, emit=lambda _job: None)
    assert caught.value.exit_code is ExitCode.NO_SPACE


def _swap(one: Home, other: Home, now: int) -> None:
    one.peers.add(other.card(now=now), name=None, self_id=one.identity.node_id, replace=True)
    other.peers.add(one.card(now=now), name=None, self_id=other.identity.node_id, replace=True)


def test_a_relay_forwards_a_large_rx_in_parallel_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time())
    alice = Home.create(tmp_path / "alice", name="alice")
    relay = Home.create(tmp_path / "relay", name="relay")
    bob = Home.create(tmp_path / "bob", name="bob")
    config = relay.path / CONFIG_FILE
    config.write_text(config.read_text().replace("# enabled = true", "enabled = true"))
    relay = Home.open(relay.path)
    _swap(alice, relay, now)
    _swap(relay, bob, now)
    alice.peers.set_relay("relay", relay=True)
    bob.peers.set_relay("relay", relay=True)
    alice.peers.add(
        bob.card(now=now, via=[relay.identity.node_id]),
        name=None,
        self_id=alice.identity.node_id,
        replace=True,
    )
    bob.peers.add(alice.card(now=now), name=None, self_id=bob.identity.node_id, replace=True)
    rng = random.Random(5)
    for number in range(PACKETS):
        routed.queue_routed(
            alice,
            alice.peers.find("bob"),
            io.BytesIO(f"message {number}\n".encode()),
            options=send.SendOptions(),
            route=routed.RouteOptions(hops=1),
            now=now,
            rng=rng,
        )
    stick = tmp_path / "stick"
    stick.mkdir()
    xfer.exchange(alice, stick, move=False, now=now, serving=EVERYONE)
    xfer.exchange(relay, stick, move=False, now=now, serving=EVERYONE)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_JOBS", 10)
    if (os.cpu_count() or 1) >= 2:
        # A thread an earlier test left winding down would make toss stay
        # in-process: give stragglers a moment, then name any that remain.
        deadline = time.monotonic() + 10
        while threading.active_count() > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        others = [thread.name for thread in threading.enumerate()]
        assert parallel.workers_for(PACKETS) >= 2, others  # the forked path is under test

    events = toss.toss(relay, now=now)

    forwarded = [event for event in events if isinstance(event, toss.Forwarded)]
    assert len(forwarded) == PACKETS
    assert len({event.bundle_id for event in forwarded}) == PACKETS
    queued = list(relay.spool.files(relay.spool.tx_dir(bob.identity.node_id)))
    map_for_bob = str(bob.identity.node_id) in relay.relay_index.maps_sent()
    assert len(queued) == PACKETS + map_for_bob  # the relay also queued bob a map
    assert not list(relay.spool.files(relay.spool.rx_dir(alice.identity.node_id)))
    assert relay.index.count(Relayed) == PACKETS
    assert toss.toss(relay, now=now) == []  # nothing left, nothing twice
    xfer.exchange(relay, stick, move=False, now=now, serving=EVERYONE)
    delivered: list[toss.TossEvent] = []
    xfer.exchange(
        bob,
        stick,
        move=False,
        now=now,
        toss=lambda: delivered.extend(toss.toss(bob, now=now)),
        serving=EVERYONE,
    )
    messages = [event for event in delivered if isinstance(event, toss.Delivered)]
    assert len(messages) == PACKETS
    texts = sorted(event.path.read_text() for event in messages)
    assert texts == sorted(f"message {number}\n" for number in range(PACKETS))
