"""rise-daemon's send worker parses its node's config and checks its peers' cards once;
each rise-send it forks reuses them while the files are unchanged (node/config.py,
node/peers.py), and reads them again as soon as they change."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rise_dtn.node import config, peers
from rise_dtn.node.home import Home


@pytest.fixture
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled at once (they must be 2 s old otherwise: a change within
    the same tick of the file system's clock could keep the stamp)."""
    monkeypatch.setattr(config, "_SETTLED_NS", -(10**12))
    monkeypatch.setattr(peers, "_SETTLED_NS", -(10**12))
    monkeypatch.setattr(config, "_PARSED", {})
    monkeypatch.setattr(peers, "_VERIFIED", {})


def _two_nodes(tmp_path: Path) -> tuple[Home, Home]:
    now = int(time.time())
    alice = Home.create(tmp_path / "alice", name="alice")
    bob = Home.create(tmp_path / "bob", name="bob")
    alice.peers.add(bob.card(now=now), name=None, self_id=alice.identity.node_id, replace=False)
    return alice, bob


@pytest.mark.usefixtures("settled_at_once")
def test_an_unchanged_config_is_parsed_once_and_a_changed_one_again(tmp_path: Path) -> None:
    alice, _bob = _two_nodes(tmp_path)
    path = alice.path / "config.toml"
    first = config.load(path)
    assert config.load(path) is first
    path.write_text(path.read_text().replace("nice = 16", "nice = 7"))
    changed = config.load(path)
    assert changed is not first and changed.nice == 7


def test_a_config_written_just_now_is_not_kept(tmp_path: Path) -> None:
    alice, _bob = _two_nodes(tmp_path)
    path = alice.path / "config.toml"
    assert config.load(path) is not config.load(path)


@pytest.mark.usefixtures("settled_at_once")
def test_checked_cards_are_shared_until_the_peer_book_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, _bob = _two_nodes(tmp_path)
    assert [peer.name for peer in alice.peers.all()] == ["bob"]
    loads = []
    original = peers.PeerBook._load

    def counted(self: peers.PeerBook) -> list[peers.Peer]:
        loads.append(self.directory)
        return original(self)

    monkeypatch.setattr(peers.PeerBook, "_load", counted)
    fresh = Home(alice.path)  # as a forked rise-send opens it
    assert [peer.name for peer in fresh.peers.all()] == ["bob"]
    assert loads == []
    carol = Home.create(tmp_path / "carol", name="carol")
    card = carol.card(now=int(time.time()))
    fresh.peers.add(card, name=None, self_id=alice.identity.node_id, replace=False)
    assert sorted(peer.name for peer in Home(alice.path).peers.all()) == ["bob", "carol"]
    assert loads == [alice.peers.directory]


@pytest.mark.usefixtures("settled_at_once")
def test_a_card_changed_by_another_process_is_read_again(tmp_path: Path) -> None:
    alice, _bob = _two_nodes(tmp_path)
    assert [peer.name for peer in alice.peers.all()] == ["bob"]
    card = alice.peers.directory / "bob.card"
    assert card.exists()
    os.rename(card, alice.peers.directory / "robert.card")  # as `mv` would
    assert [peer.name for peer in Home(alice.path).peers.all()] == ["robert"]
