"""The walking skeleton end to end: real commands, real directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import Node, run


def carry(sender: Node, receiver: Node, stick: Path) -> None:
    """One round of the stick: sender writes, receiver takes and tosses, sender gets acks."""
    sender.run("rise-xfer", "-q", str(stick))
    receiver.run("rise-xfer", "-q", "--toss", str(stick))
    sender.run("rise-xfer", "-q", str(stick))


def test_file_and_message_round_trip(pair: tuple[Node, Node], stick: Path, tmp_path: Path) -> None:
    alice, bob = pair
    payload = os.urandom(3 * (1 << 20) + 7)
    source = tmp_path / "data.bin"
    source.write_bytes(payload)
    bundle_id = alice.run("rise-send", str(source), "bob").stdout.decode().strip()
    assert len(bundle_id) == 26
    alice.run("rise-send", "-q", "-", "bob", input=b"hello bob\n")
    stat = json.loads(alice.run("rise-stat", "--json").stdout)
    assert stat["neighbours"][0]["waiting"] == 2
    # Every counter is there, zeros too: a script needs no default for any key.
    assert stat["sent"] == {
        "queued": 2,
        "in_transit": 0,
        "delivered": 0,
        "expired": 0,
        "cancelled": 0,
    }
    assert (stat["held_for_route"], stat["quarantined"], stat["inbox_unread"]) == (0, 0, 0)
    carry(alice, bob, stick)
    assert (bob.incoming / "alice" / "data.bin").read_bytes() == payload
    listing = json.loads(bob.run("rise", "inbox", "--json").stdout)
    assert [row["sender"] for row in listing] == ["alice"]
    shown = bob.run("rise", "inbox", "show", listing[0]["bundle_id"][:6])
    assert shown.stdout == b"hello bob\n"
    stat = json.loads(alice.run("rise-stat", "--json").stdout)
    assert stat["neighbours"][0]["waiting"] == 0
    assert stat["neighbours"][0]["delivered"] == 2
    assert stat["sent"]["delivered"] == 2  # direct sends: bob's ack is the confirmation
    status = json.loads(alice.run("rise", "status", "--json", bundle_id).stdout)
    assert [(row["state"], row["routes"], row["size"]) for row in status] == [
        ("delivered", [[]], len(payload))
    ]
    assert not list((stick / "rise-dtn").rglob("*.rsb"))
    for node in (alice, bob):
        node.run("rise-check")


def test_resent_bundle_is_delivered_once(pair: tuple[Node, Node], stick: Path) -> None:
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", "--name", "note.txt", input=b"once\n")
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    bob.run("rise-toss", "-q")
    # The ack never reaches alice (a second stick); she writes the bundle again.
    acks = list((stick / "rise-dtn").rglob("*.rsa"))
    for ack in acks:
        ack.unlink()
    alice.run("rise-xfer", "-q", str(stick))
    assert list((stick / "rise-dtn").rglob("*.rsb"))
    bob.run("rise-xfer", "-q", str(stick))
    bob.run("rise-toss", "-q")
    alice.run("rise-xfer", "-q", str(stick))
    assert sorted(p.name for p in (bob.incoming / "alice").iterdir()) == ["note.txt"]
    assert json.loads(alice.run("rise-stat", "--json").stdout)["neighbours"][0]["waiting"] == 0


def test_same_name_twice_never_overwrites(pair: tuple[Node, Node], stick: Path) -> None:
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", "--name", "a.txt", input=b"first")
    alice.run("rise-send", "-q", "-", "bob", "--name", "a.txt", input=b"second")
    carry(alice, bob, stick)
    got = sorted((bob.incoming / "alice").iterdir())
    assert [p.name for p in got] == ["a.1.txt", "a.txt"]
    assert {p.read_bytes() for p in got} == {b"first", b"second"}


def test_unknown_peer_gets_nothing(node_factory: object, stick: Path) -> None:
    make = node_factory  # type: ignore[assignment]
    alice, bob, mallory = make("alice"), make("bob"), make("mallory")  # type: ignore[operator]
    mallory.run("rise", "peer", "add", "-", input=bob.card())
    bob.run("rise", "peer", "add", "-", input=alice.card())
    mallory.run("rise-send", "-q", "-", "bob", input=b"spam")
    mallory.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-xfer", str(stick))
    assert b"unknown node" in result.stderr
    bob.run("rise-toss")
    assert not list((bob.home / "inbox").iterdir())
    result = alice.run("rise-send", "-", "carol", input=b"x", check=False)
    assert result.returncode == 2
    assert b"unknown peer 'carol'" in result.stderr


def test_help_everywhere() -> None:
    for command in ("rise", "rise-send", "rise-toss", "rise-xfer", "rise-stat", "rise-check"):
        result = run(command, "--help")
        assert b"Usage:" in result.stdout
        assert b"Traceback" not in result.stderr


def test_missing_node_is_a_clear_error(tmp_path: Path) -> None:
    result = run("rise-stat", home=tmp_path / "nowhere", check=False)
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert b"rise init" in result.stderr


def test_names_up_to_255_bytes_are_delivered_and_numbered(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    """80 CJK characters and .txt are 244 bytes: valid, and no tmp or numbered name may
    grow past NAME_MAX (it wedged every later toss)."""
    alice, bob = pair
    name = "文" * 80 + ".txt"
    longest = "a" * 251 + ".txt"
    assert len(name.encode()) == 244 and len(longest.encode()) == 255
    for content, as_name in ((b"one", name), (b"two", name), (b"three", longest), (b"4", longest)):
        alice.run("rise-send", "-q", "-", "bob", "--name", as_name, input=content)
    carry(alice, bob, stick)
    delivered = {path.name: path.read_bytes() for path in (bob.incoming / "alice").iterdir()}
    assert len(delivered) == 4
    assert sorted(delivered.values()) == [b"4", b"one", b"three", b"two"]
    assert all(len(found.encode()) <= 255 for found in delivered)
    assert {delivered[name], delivered[longest]} <= {b"one", b"two", b"three", b"4"}
    assert not list((bob.spool / "rx").rglob("*.rsb"))  # nothing wedged
    for node in (alice, bob):
        node.run("rise-check")
