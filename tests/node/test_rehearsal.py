"""rise-send's spare child rehearses a send while it waits for a caller (routed.rehearse,
cli/quick.py): the whole way of a message over relays, in memory. It must leave no
trace: no file in the spool, no row in the index, and the next real send unchanged."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest

from rise_dtn.cli import quick
from rise_dtn.core.routing import NoRoute
from rise_dtn.node.home import CONFIG_FILE, Home
from rise_dtn.node.send import routed, send
from tests.node.toss.test_forward_pushed import _chain, _rows


def _tree(home: Home) -> dict[str, bytes]:
    """Every file under the node's directory but its index (compared as rows)."""
    return {
        str(path.relative_to(home.path)): path.read_bytes()
        for path in sorted(home.path.rglob("*"))
        if path.is_file() and not path.name.startswith(home.spool.index_path.name)
    }


def test_a_rehearsal_queues_nothing_and_records_nothing(tmp_path: Path) -> None:
    now = int(time.time())
    alice, _relay, _bob = _chain(tmp_path, now)
    config = alice.path / CONFIG_FILE
    config.write_text(config.read_text().replace("# hops = 2", "hops = 1", 1))
    alice = Home.open(alice.path)  # one relay on the map: a route of one, as sends take
    before = (_tree(alice), _rows(alice))

    # Called directly, a failure would raise: the rehearsal really goes the whole way.
    routed.rehearse(alice, alice.peers.find("bob"), hops=1, now=now, rng=random.Random(7))
    # And as the spare runs it, the command line parsed too; it says it went the whole way.
    assert quick._rehearse(alice.path)

    alice.close()
    assert (_tree(alice), _rows(alice)) == before
    # The real send after it is as ever: one packet queued, for the relay.
    sent = routed.queue_routed(
        alice,
        alice.peers.find("bob"),
        io.BytesIO(b"after the rehearsal"),
        options=send.SendOptions(),
        route=routed.RouteOptions(hops=1),
        now=now,
        rng=random.Random(8),
    )
    (copy,) = sent.copies
    assert copy.relays == (alice.peers.find("relay").node_id,)


def test_a_rehearsal_with_no_route_raises_and_the_spare_shrugs(tmp_path: Path) -> None:
    now = int(time.time())
    alice = Home.create(tmp_path / "alice", name="alice")
    bob = Home.create(tmp_path / "bob", name="bob")
    alice.peers.add(bob.card(now=now), name=None, self_id=alice.identity.node_id, replace=True)
    before = _tree(alice)

    with pytest.raises(NoRoute):
        routed.rehearse(alice, alice.peers.find("bob"), hops=1, now=now, rng=random.Random(1))
    assert not quick._rehearse(alice.path)  # no relay neighbour: nothing to rehearse, no error
    assert not quick._rehearse(tmp_path / "no-node-here")  # nor for a home that is not there

    assert _tree(alice) == before
