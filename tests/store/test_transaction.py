"""The one bundle transaction (rise_dtn/store/transaction.py) on a real node's spool.

The rules are the same whatever carried a bundle, so they are tested here
once, on the clear header; the carriers' own tests (tests/carriers/, e2e)
check that each carrier goes through them. A crash between two steps is
simulated by doing the first step alone, as a SIGKILL would leave it.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from rise_dtn.core.bundle import MAX_CLEAR_BYTES, parse_clear
from rise_dtn.node.home import Home
from rise_dtn.node.send import send
from rise_dtn.node.toss.toss import toss
from rise_dtn.node.toss.toss_events import TossEvent
from rise_dtn.store import transaction
from rise_dtn.store.atomic import atomic_file
from rise_dtn.store.index import QueuedDigest, SeenRow, upsert
from rise_dtn.store.transaction import BundleTransaction, Release, Room, Verdict
from tests.conftest import BIN, Node, command_env

NOW = 1_800_000_000


def sealed_for(sender: Node, recipient: Node, *, lifetime: int = 3600) -> tuple[bytes, Path]:
    """A bundle `sender` queued for `recipient`: its bytes, and its path in sender's tx/."""
    home = Home.open(sender.home)
    peer = home.peers.find(recipient.name)
    options = send.SendOptions(lifetime_seconds=lifetime)
    queued = send.queue(home, peer, io.BytesIO(b"hello"), options=options, now=NOW)
    path = home.bundles.queued_path(peer.node_id, queued.bundle_id)
    home.close()
    return path.read_bytes(), path


def writer(data: bytes) -> Callable[[Path], int]:
    def write(target: Path) -> int:
        with atomic_file(target, hold=True) as out:
            out.write(data)
        return out.held

    return write


def test_admit_takes_a_bundle_once_then_says_why_not(pair: tuple[Node, Node]) -> None:
    alice, bob = pair
    data, _path = sealed_for(alice, bob)
    clear = parse_clear(data[:MAX_CLEAR_BYTES])
    home = Home.open(bob.home)
    sender = home.peers.find("alice").node_id
    first = home.bundles.admit(clear, len(data), sender, now=NOW, write=writer(data))
    assert first.verdict is Verdict.TAKE
    assert home.bundles.received_path(sender, clear.bundle_id).read_bytes() == data
    again = home.bundles.admit(clear, len(data), sender, now=NOW, write=writer(data))
    assert again.verdict is Verdict.RECEIVED
    # Once delivered, a copy is a duplicate: refused, and the sender is owed its ack again.
    home.bundles.received_path(sender, clear.bundle_id).unlink()
    home.index.drop_entry(str(clear.bundle_id), "rx")
    row = SeenRow(str(clear.bundle_id), clear.header.expiry, "delivering", str(sender), "", NOW)
    home.index.record_delivering(row)
    home.index.finish_delivery(str(clear.bundle_id), neighbour=str(sender), message=None, now=NOW)
    home.index.acks_sent(str(sender), [str(clear.bundle_id)])
    duplicate = home.bundles.admit(clear, len(data), sender, now=NOW, write=writer(data))
    assert duplicate.verdict is Verdict.DELIVERED
    assert (str(sender), str(clear.bundle_id)) in home.index.acks_owed()
    assert not home.bundles.received_path(sender, clear.bundle_id).exists()
    home.close()


def test_a_toss_while_a_bundle_is_admitted_leaves_it_for_the_next_toss(
    pair: tuple[Node, Node],
) -> None:
    """The received file is named before its index row is written; a toss that ran in
    between used to deliver and remove it, and the row written after named a file that
    was gone (rise-check: "index lists rx/... but the file is gone")."""
    alice, bob = pair
    data, _path = sealed_for(alice, bob)
    clear = parse_clear(data[:MAX_CLEAR_BYTES])
    home = Home.open(bob.home)
    sender = home.peers.find("alice").node_id
    during: list[list[TossEvent]] = []

    def write_then_toss(target: Path) -> int:
        held = writer(data)(target)
        during.append(toss(Home.open(bob.home), now=NOW))  # another process's toss, say
        return held

    assert home.bundles.admit(clear, len(data), sender, now=NOW, write=write_then_toss).taken
    assert during == [[]]  # the file was there, locked: left alone
    assert [row.bundle_id for row in home.index.entries()] == [str(clear.bundle_id)]
    events = toss(home, now=NOW)
    assert [type(event).__name__ for event in events] == ["Delivered"]
    assert home.index.entries() == []
    check = subprocess.run(
        [str(BIN / "rise-check")], env=command_env(bob.home), capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_admit_leaves_with_the_sender_what_there_is_no_room_for(pair: tuple[Node, Node]) -> None:
    alice, bob = pair
    data, _path = sealed_for(alice, bob)
    clear = parse_clear(data[:MAX_CLEAR_BYTES])
    home = Home.open(bob.home)
    sender = home.peers.find("alice").node_id
    disk = os.statvfs(home.spool.root)
    # The whole disk: no bundle leaves that much free. (Not the free space of the
    # moment: another process on the machine may free some before admit looks.)
    reserve = disk.f_blocks * disk.f_frsize
    bundles = BundleTransaction(
        home.spool, lambda: home.index, home.identity.node_id, room=Room(min_free_bytes=reserve)
    )
    refused = bundles.admit(clear, len(data), sender, now=NOW, write=writer(data))
    assert refused.verdict is Verdict.NO_ROOM
    assert refused.reason.startswith("no room: ") and "min_free keeps" in refused.reason
    assert not bundles.received_path(sender, clear.bundle_id).exists()
    quota = Room(receive_max=lambda neighbour: len(data) - 1 if neighbour == sender else None)
    bundles = BundleTransaction(home.spool, lambda: home.index, home.identity.node_id, room=quota)
    over = bundles.admit(clear, len(data), sender, now=NOW, write=writer(data))
    assert over.verdict is Verdict.NO_ROOM and "over the receive quota" in over.reason
    quota = Room(receive_max=lambda _neighbour: len(data))
    bundles = BundleTransaction(home.spool, lambda: home.index, home.identity.node_id, room=quota)
    assert bundles.admit(clear, len(data), sender, now=NOW, write=writer(data)).taken
    assert home.index.held_bytes("rx", str(sender)) == len(data)
    home.close()


def test_admit_refuses_expired_and_foreign_bundles(
    pair: tuple[Node, Node], node_factory: object
) -> None:
    alice, bob = pair
    data, _path = sealed_for(alice, bob, lifetime=60)
    clear = parse_clear(data[:MAX_CLEAR_BYTES])
    home = Home.open(bob.home)
    sender = home.peers.find("alice").node_id
    late = home.bundles.admit(clear, len(data), sender, now=NOW + 61, write=writer(data))
    assert late.verdict is Verdict.EXPIRED
    home.close()
    # The same bundle offered to alice (not its recipient) is not for her.
    home = Home.open(alice.home)
    neighbour = home.peers.find("bob").node_id
    foreign = home.bundles.admit(clear, len(data), neighbour, now=NOW, write=writer(data))
    assert foreign.verdict is Verdict.NOT_FOR_US
    assert "for another node" in foreign.reason
    home.close()


@pytest.mark.parametrize("how", list(Release))
def test_a_release_is_journaled_and_idempotent(pair: tuple[Node, Node], how: Release) -> None:
    alice, bob = pair
    _data, path = sealed_for(alice, bob)
    home = Home.open(alice.home)
    neighbour = home.peers.find("bob").node_id
    bundle_id = parse_clear(path.read_bytes()[:MAX_CLEAR_BYTES]).bundle_id
    assert home.bundles.release(neighbour, bundle_id, how, now=NOW)
    assert not path.exists()
    assert not home.bundles.release(neighbour, bundle_id, how, now=NOW)  # already gone
    assert [row for row in home.index.entries() if row.direction == "tx"] == []
    home.close()


def test_a_release_cut_by_a_crash_is_finished_by_rise_check(pair: tuple[Node, Node]) -> None:
    """Journaled, then killed before the file went: rise-check finishes it, and is clean."""
    alice, bob = pair
    _data, path = sealed_for(alice, bob)
    home = Home.open(alice.home)
    neighbour = home.peers.find("bob").node_id
    bundle_id = parse_clear(path.read_bytes()[:MAX_CLEAR_BYTES]).bundle_id
    home.index.release(str(bundle_id), str(neighbour), size=1, how=Release.ACKED, now=NOW)
    home.close()
    assert path.exists()
    result = subprocess.run(
        [str(BIN / "rise-check")], env=command_env(alice.home), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"note: finished the interrupted release" in result.stdout
    assert not path.exists()


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "pipe"])
def test_a_damaged_copy_of_our_own_bundle_is_found(
    pair: tuple[Node, Node], tmp_path: Path, stdin: bool
) -> None:
    """Defect 11: a byte changed in place in tx/ (bit rot, or a medium that shared the
    file's bytes) no longer passes for our bundle: rise-check names it, --repair sets it aside."""
    alice, _bob = pair
    source = tmp_path / "report.bin"
    source.write_bytes(b"x" * 300_000)
    if stdin:
        alice.run("rise-send", "-q", "-", "bob", "--name", "report.bin", input=source.read_bytes())
    else:
        alice.run("rise-send", "-q", str(source), "bob")
    alice.run("rise-check")  # the digest recorded when sealing matches
    (path,) = (alice.spool / "tx").rglob("*.rsb")
    with open(path, "r+b") as handle:
        handle.seek(200_000)
        byte = handle.read(1)
        handle.seek(200_000)
        handle.write(bytes([byte[0] ^ 1]))
    found = alice.run("rise-check", check=False)
    assert found.returncode == 3
    assert b"damaged in our own spool" in found.stdout
    alice.run("rise-check", "--repair", check=False)
    assert not path.exists()
    assert (alice.spool / "quarantine" / path.name).exists()
    alice.run("rise-check")


def test_acks_due_gives_ids_by_neighbour_and_forgets_a_row_no_carrier_could_give(
    pair: tuple[Node, Node],
) -> None:
    _, bob = pair
    home = Home.open(bob.home)
    alice = home.peers.find("alice").node_id
    owed = [parse_clear(sealed_for(*pair)[0]).bundle_id for _ in range(2)]
    for bundle_id in owed:
        home.index.owe_ack(str(bundle_id), str(alice), now=NOW)
    home.index.owe_ack("not an id", str(alice), now=NOW)
    home.index.owe_ack(str(owed[0]), "no node", now=NOW)

    assert {key: sorted(map(str, ids)) for key, ids in home.bundles.acks_due().items()} == {
        alice: sorted(map(str, owed))
    }
    assert sorted(home.index.acks_owed()) == sorted((str(alice), str(b)) for b in owed)
    home.bundles.acks_given(alice, owed[:1])
    assert home.bundles.acks_due() == {alice: owed[1:]}
    home.close()


def test_a_digest_recorded_by_an_earlier_version_is_still_checked(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """Bundles queued before the switch to SHA-256 carry a BLAKE2b-128 digest (32 hex
    digits): rise-check verifies it by that scheme, so neither a good copy is called
    damaged nor a damaged one passes."""
    alice, _bob = pair
    source = tmp_path / "old.bin"
    source.write_bytes(b"y" * 300_000)
    alice.run("rise-send", "-q", str(source), "bob")
    (path,) = (alice.spool / "tx").rglob("*.rsb")
    legacy = transaction.digest_of(path, like="0" * 32)
    assert len(legacy) == 32 and int(legacy, 16) >= 0  # all hex: the old scheme
    assert transaction.digest_of(path).startswith(transaction.SHA256_MARK)
    home = Home.open(alice.home)
    with home.index.transaction() as connection:
        upsert(connection, QueuedDigest, {"bundle_id": path.stem}, {"digest": legacy})
    assert home.index.digests() == {path.stem: legacy}
    home.close()
    alice.run("rise-check")
    with open(path, "r+b") as handle:
        handle.seek(150_000)
        byte = handle.read(1)
        handle.seek(150_000)
        handle.write(bytes([byte[0] ^ 1]))
    found = alice.run("rise-check", check=False)
    assert found.returncode == 3
    assert b"damaged in our own spool" in found.stdout
