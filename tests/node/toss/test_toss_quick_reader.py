"""A reader that takes a delivered message away at once must not make toss deliver it twice."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from rise_dtn.node.toss import toss
from rise_dtn.store import atomic
from tests.carriers.live.test_link import make_pair, queue


def test_a_message_taken_away_at_once_is_still_delivered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"read me quickly", "note.txt")
    (bundle,) = alice.spool.tx.rglob("*.rsb")
    rx = bob.spool.rx_dir(alice.identity.node_id)
    rx.mkdir(parents=True, exist_ok=True)
    shutil.copy(bundle, rx / bundle.name)
    taken = tmp_path / "taken"
    commit = atomic.AtomicFile.commit

    def commit_then_taken(self: atomic.AtomicFile, **kwargs: bool) -> None:
        commit(self, **kwargs)
        if self.final.name == "note.txt":
            self.final.rename(taken)  # a watcher moves the file the instant it appears

    monkeypatch.setattr(atomic.AtomicFile, "commit", commit_then_taken)
    first = toss.toss(bob, now=int(time.time()))
    assert [type(event).__name__ for event in first] == ["Delivered"]
    assert taken.read_bytes() == b"read me quickly"
    assert toss.toss(bob, now=int(time.time())) == []  # nothing left, nothing again
    assert not list(bob.incoming_dir("alice").glob("*"))
