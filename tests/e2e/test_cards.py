"""Contact cards and the peer book through the installed commands; the key file's mode."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

from rise_dtn.core.card import Card
from tests.conftest import Node

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def one_line(result: object) -> str:
    text = result.stderr.decode()  # type: ignore[attr-defined]
    assert "Traceback" not in text
    assert text.count("\n") == 1, text
    return text


def peers(node: Node) -> list[dict[str, object]]:
    return json.loads(node.run("rise", "peer", "list", "--json").stdout)  # type: ignore[no-any-return]


def test_card_text_binary_qr_and_png(node_factory: Callable[[str], Node], tmp_path: Path) -> None:
    alice, bob, carol = node_factory("alice"), node_factory("bob"), node_factory("carol")
    text = alice.card()
    assert text.startswith(b"-----BEGIN RISE CARD-----\nName: alice\n")
    assert f"Node: {alice.node_id}".encode() in text
    # The armored text, from a file, with mail around it.
    card_file = tmp_path / "alice.card"
    card_file.write_bytes(b"Hi Bob, here is my card:\n\n" + text + b"\n-- \nAlice\n")
    added = bob.run("rise", "peer", "add", str(card_file))
    assert added.stdout.decode() == f"alice\t{alice.node_id}\n"
    # The binary form, as a QR scanner yields it, on stdin.
    raw = Card.from_text(carol.card().decode()).to_bytes()
    bob.run("rise", "peer", "add", "-", "--name", "carol-phone", input=raw)
    listing = peers(bob)
    assert [(row["name"], row["node_id"], row["card_name"]) for row in listing] == [
        ("alice", alice.node_id, "alice"),
        ("carol-phone", carol.node_id, "carol"),
    ]
    assert listing[0]["addresses"] == []

    qr = alice.run("rise", "card", "--qr")
    assert len(qr.stdout.decode().splitlines()) > 10
    assert b"BEGIN RISE CARD" not in qr.stdout
    png = tmp_path / "alice.png"
    result = alice.run("rise", "card", "--png", str(png))
    assert result.stdout == b""
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert png.stat().st_size > 100

    # The card works: bob can send to alice once she trusts him too.
    alice.run("rise", "peer", "add", "-", input=bob.card())
    assert bob.run("rise-send", "-q", "-", "alice", input=b"hi").returncode == 0


def test_peer_book_refusals_and_remove(pair: tuple[Node, Node], node_factory: object) -> None:
    alice, bob = pair
    own = alice.run("rise", "peer", "add", "-", input=alice.card(), check=False)
    assert own.returncode == 4
    assert "own card" in one_line(own)

    twice = alice.run("rise", "peer", "add", "-", "--name", "bobby", input=bob.card(), check=False)
    assert twice.returncode == 2
    assert "already known as 'bob'" in one_line(twice)

    carol = node_factory("carol")  # type: ignore[operator]
    taken = alice.run("rise", "peer", "add", "-", "--name", "bob", input=carol.card(), check=False)
    assert taken.returncode == 2
    assert "taken" in one_line(taken)
    bad_name = alice.run(
        "rise", "peer", "add", "-", "--name", "../x", input=carol.card(), check=False
    )
    assert bad_name.returncode == 2
    assert "invalid name" in one_line(bad_name)
    assert [row["name"] for row in peers(alice)] == ["bob"]
    assert sorted(p.name for p in (alice.home / "peers").iterdir()) == ["bob.card"]

    # Adding the same card again under the same name is harmless.
    alice.run("rise", "peer", "add", "-", input=bob.card())
    assert [row["name"] for row in peers(alice)] == ["bob"]

    removed = alice.run("rise", "peer", "remove", "bob")
    assert "removed peer 'bob'" in one_line(removed)
    assert peers(alice) == []
    result = alice.run("rise", "peer", "list")
    assert result.stdout == b""
    assert b"no peers" in result.stderr
    gone = alice.run("rise-send", "-", "bob", input=b"x", check=False)
    assert gone.returncode == 2
    assert "unknown peer 'bob'" in one_line(gone)
    again = alice.run("rise", "peer", "remove", "bob", check=False)
    assert again.returncode == 2
    one_line(again)


def test_key_file_mode(node_factory: Callable[[str], Node]) -> None:
    alice = node_factory("alice")
    key = alice.home / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    commands = (("rise", "card"), ("rise-toss",), ("rise-stat",), ("rise-send", "-", "alice"))
    for command in commands:
        result = alice.run(*command, input=b"x", check=False)
        assert result.returncode == 2, command
        line = one_line(result)
        assert str(key) in line and "644" in line and "chmod 600" in line, line
    key.chmod(0o600)
    alice.run("rise", "card")
