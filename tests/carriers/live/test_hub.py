"""The daemon's Hub: one link per neighbour, glare resolved alike on both sides, shared tosses."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from rise_dtn.carriers.tcp.online import Hub, _neighbour_of
from rise_dtn.core.errors import PeerError
from tests.carriers.live.test_link import make_pair


def test_a_new_session_from_the_same_caller_replaces_the_old(tmp_path: Path) -> None:
    alice, _bob = make_pair(tmp_path)
    bob_peer = alice.peers.find("bob")

    async def scenario() -> None:
        hub = Hub(alice, toss=None, log=lambda _line: None)
        first = hub.new_link(bob_peer, caller=bob_peer.node_id)
        second = hub.new_link(bob_peer, caller=bob_peer.node_id)  # bob reconnected
        assert first._closing and not second._closing
        hub.forget(first)  # the old session winding down must not drop the new one
        assert hub.has_link(bob_peer)
        hub.forget(second)
        assert not hub.has_link(bob_peer)

    asyncio.run(scenario())


@pytest.mark.parametrize("order", ["ours first", "theirs first"])
def test_glare_keeps_the_link_the_smaller_node_id_dialled(tmp_path: Path, order: str) -> None:
    """Both daemons dial each other at once: each side keeps the same one of the two links."""
    alice, bob = make_pair(tmp_path)
    peer = alice.peers.find("bob")
    ours, theirs = alice.identity.node_id, bob.identity.node_id
    winner = min(ours, theirs)
    callers = [ours, theirs] if order == "ours first" else [theirs, ours]

    async def scenario() -> None:
        hub = Hub(alice, toss=None, log=lambda _line: None)
        first = hub.new_link(peer, caller=callers[0])
        if callers[0] == winner:
            with pytest.raises(PeerError, match="already has a live link"):
                hub.new_link(peer, caller=callers[1])
            assert not first._closing
        else:
            hub.new_link(peer, caller=callers[1])
            assert first._closing

    asyncio.run(scenario())


def test_tosses_asked_for_at_once_share_one_run(tmp_path: Path) -> None:
    alice, _bob = make_pair(tmp_path)
    runs: list[int] = []
    release = threading.Event()

    def slow_toss() -> None:
        runs.append(len(runs))
        release.wait(5)

    async def scenario() -> None:
        hub = Hub(alice, toss=slow_toss, log=lambda _line: None)
        first = asyncio.create_task(hub.toss())
        await asyncio.sleep(0.05)  # the first toss is running
        waiting = [asyncio.create_task(hub.toss()) for _ in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, *waiting)

    asyncio.run(scenario())
    # The five asked while one ran; one more toss covers them all.
    assert runs == [0, 1]


def test_tx_events_name_the_neighbour(tmp_path: Path) -> None:
    alice, bob = make_pair(tmp_path)
    tx = alice.spool.tx
    bob_id = bob.identity.node_id
    assert _neighbour_of(tx, str(tx / str(bob_id) / "x.rsb")) == bob_id
    assert _neighbour_of(tx, str(tx / "not-an-id" / "x.rsb")) is None
    assert _neighbour_of(tx, "/elsewhere/x.rsb") is None
