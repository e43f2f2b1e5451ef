"""One vocabulary across commands (rise(7), UNITS AND JSON): keys, states, sizes, times.

Every --json listing is read back here: keys are snake_case identifiers, a
bundle's id is `bundle_id`, states are single words, times end in `_at` (or
are `expiry`), sizes are plain integers, and a size for people is in the
binary units of core/units.py wherever a command prints one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import Node

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
HUMAN_SIZE = re.compile(r"\b\d+(\.\d)? (B|KiB|MiB|GiB|TiB)\b")


def keys_and_states(value: Any) -> list[str]:
    """Every key of every object in `value`, and every "state" value, recursively."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            found.append(key)
            if key == "state":
                found.append(inner)
            found += keys_and_states(inner)
    elif isinstance(value, list):
        for inner in value:
            found += keys_and_states(inner)
    return found


def test_every_json_listing_speaks_one_vocabulary(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    big = tmp_path / "report.pdf"
    big.write_bytes(b"%" * 171)
    alice.run("rise-send", "-q", str(big), "bob")
    alice.run("rise-xfer", "-q", str(stick))  # on the stick: in flight, in transit
    alice.run("rise-send", "-q", "-", "bob", input=b"queued still")
    bob.run("rise-send", "-q", "-", "alice", input=b"for the inbox")
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    alice.run("rise-xfer", "-q", "--toss", str(stick))

    listings = {
        args: json.loads(alice.run("rise", *args, "--json").stdout)
        for args in (("stat",), ("status",), ("queue",), ("inbox",), ("peer", "list"), ("map",))
    }
    listings[("check",)] = json.loads(alice.run("rise-check", "--json").stdout)
    for args, listing in listings.items():
        for word in keys_and_states(listing):
            assert IDENTIFIER.match(word), (args, word)
        for key in keys_and_states(listing):
            assert key not in ("id", "created", "size_bytes", "bytes"), (args, key)

    stat = listings[("stat",)]
    assert stat["sent"] == {  # every state, zeros included
        "queued": 1,
        "in_transit": 0,
        "delivered": 1,
        "expired": 0,
        "cancelled": 0,
    }
    status = {row["bundle_id"]: row for row in listings[("status",)]}
    assert sorted(row["state"] for row in status.values()) == ["delivered", "queued"]
    for row in status.values():
        assert isinstance(row["created_at"], int) and isinstance(row["size"], int)
    assert sorted(row["size"] for row in status.values()) == [len(b"queued still"), 171]
    (queued,) = listings[("queue",)]  # the last rise-xfer put it on the stick
    assert queued["state"] == "in_flight" and queued["bundle_bytes"] > len(b"queued still")
    (message,) = listings[("inbox",)]
    assert set(message) >= {"bundle_id", "sender", "sender_id", "received_at", "size"}
    assert message["size"] == len(b"for the inbox")


def test_sizes_for_people_are_in_binary_units(pair: tuple[Node, Node], stick: Path) -> None:
    alice, bob = pair
    sent = alice.run("rise-send", "-", "bob", input=b"x" * 171).stderr.decode()
    assert "queued message for bob: 171 B in a " in sent
    lines = [
        sent,
        alice.run("rise-stat").stdout.decode(),
        alice.run("rise", "status").stdout.decode(),
        alice.run("rise", "queue").stdout.decode(),
        alice.run("rise-xfer", str(stick)).stderr.decode(),
        bob.run("rise-xfer", "--toss", str(stick)).stderr.decode(),
        bob.run("rise", "inbox").stdout.decode(),
    ]
    for text in lines:
        assert HUMAN_SIZE.search(text), text
        assert not re.search(r"\d bytes\b", text), text  # never "171 bytes" beside "171 B"


def test_an_option_error_names_the_option(pair: tuple[Node, Node]) -> None:
    alice, _bob = pair
    failed = alice.run("rise-send", "--lifetime", "30 days", "-", "bob", input=b"x", check=False)
    assert failed.returncode == 2
    assert failed.stderr.decode() == (
        'rise-send: --lifetime: not a duration: "30 days" (use e.g. 30d, 12h, 90m, 3600)\n'
    )
