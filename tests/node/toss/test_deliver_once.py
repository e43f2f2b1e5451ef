"""A bundle id being delivered by one process is never delivered by another at the same time."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rise_dtn.node.toss import toss
from rise_dtn.store import locks
from tests.carriers.live.test_link import make_pair, queue


def test_a_copy_tossed_while_another_copy_is_being_delivered_is_deferred_then_dropped(
    tmp_path: Path,
) -> None:
    """Two copies of one bundle (two relays, or a stick read with --toss while rx/ holds
    another): the second waits in rx/ while the first is delivered, then goes as a duplicate."""
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"only once", "once.txt")
    (bundle,) = alice.spool.tx.rglob("*.rsb")
    rx = bob.spool.rx_dir(alice.identity.node_id)
    rx.mkdir(parents=True, exist_ok=True)
    shutil.copy(bundle, rx / bundle.name)
    lock = bob.spool.lock_path(f"deliver-{bundle.stem}")
    with locks.claimed(lock) as held:  # as another process delivering this id would
        assert held
        events = toss.toss(bob, now=int(time.time()))
    assert [(type(event).__name__, getattr(event, "action", None)) for event in events] == [
        ("Rejected", "deferred")
    ]
    assert "being delivered by another" in events[0].reason  # type: ignore[union-attr]
    assert (rx / bundle.name).exists()
    assert not bob.incoming_dir("alice").exists() or not list(bob.incoming_dir("alice").iterdir())
    (delivered,) = toss.toss(bob, now=int(time.time()))
    assert isinstance(delivered, toss.Delivered)
    assert delivered.path.read_bytes() == b"only once"
    # The same bundle again (the other relay's copy): dropped, never a second file.
    shutil.copy(bundle, rx / bundle.name)
    (again,) = toss.toss(bob, now=int(time.time()))
    assert isinstance(again, toss.Rejected) and again.action == "dropped"
    assert [path.name for path in bob.incoming_dir("alice").iterdir()] == ["once.txt"]
    assert not list(bob.spool.locks.glob("deliver-*"))  # no lock file left behind
