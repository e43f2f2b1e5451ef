"""rise queue: list what waits, show one, cancel (issue 11), with the installed commands."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Node
from tests.e2e.relay_network import Network
from tests.e2e.test_relays import DIAMOND


def listed(node: Node, *args: str) -> list[dict[str, object]]:
    rows = json.loads(node.run("rise", "queue", "--json", *args).stdout)
    assert isinstance(rows, list)
    return rows


def one_line(result: object) -> str:
    text = result.stderr.decode()  # type: ignore[attr-defined]
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text.strip()


def test_list_show_and_cancel_direct_bundles(
    pair: tuple[Node, Node], tmp_path: Path, node_factory: object
) -> None:
    alice, bob = pair
    carol = node_factory("carol")  # type: ignore[operator]
    alice.run("rise", "peer", "add", "-", input=carol.card())
    stick = tmp_path / "stick"
    stick.mkdir()
    first = alice.run("rise-send", "-q", "-", "bob", input=b"first").stdout.decode().strip()
    alice.run("rise-xfer", "-q", str(stick))  # first is on the stick now: in flight
    big = tmp_path / "big.iso"
    big.write_bytes(b"\0" * 200_000)
    second = alice.run("rise-send", "-q", "--nice", "200", str(big), "bob").stdout.decode().strip()
    third = alice.run("rise-send", "-q", "-", "carol", input=b"for carol").stdout.decode().strip()

    rows = {row["bundle_id"]: row for row in listed(alice)}
    assert rows.keys() == {first, second, third}
    assert (rows[first]["state"], rows[first]["neighbour"], rows[first]["copies"]) == (
        "in_flight",
        "bob",
        1,
    )
    assert (rows[second]["state"], rows[second]["priority"]) == ("queued", 200)
    assert [row["bundle_id"] for row in listed(alice, "--for", "carol")] == [third]
    shown = alice.run("rise", "queue", "show", second[:6]).stdout.decode()
    assert f"id:       {second}" in shown and "state:    queued" in shown

    cancelled = alice.run("rise", "queue", "cancel", second[:6]).stderr.decode()
    assert cancelled == f"{second} for bob: cancelled\n"
    in_flight = alice.run("rise", "queue", "cancel", first).stderr.decode()
    assert "may still reach bob" in in_flight
    assert [row["bundle_id"] for row in listed(alice)] == [third]
    alice.run("rise-check")  # journaled releases: the index and the files agree

    # The copy already on the stick is still delivered: a cancel cannot recall it.
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    assert json.loads(bob.run("rise", "inbox", "--json").stdout)[0]["size"] == len(b"first")
    alice.run("rise-xfer", "-q", str(stick))  # bob's ack finds nothing left to release
    alice.run("rise-check")
    assert not list((stick / "rise-dtn" / bob.node_id).rglob("*.rsb"))  # cancelled: never went

    alice.run("rise", "queue", "cancel", "--all", "carol", "-q")
    assert listed(alice) == []
    assert not list((alice.spool / "tx").rglob("*.rsb"))


def test_what_cannot_be_cancelled_is_one_line(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, bob = pair
    stick = tmp_path / "stick"
    stick.mkdir()
    sent = alice.run("rise-send", "-q", "-", "bob", input=b"hello").stdout.decode().strip()
    alice.run("rise-xfer", "-q", "--move", str(stick))
    bob.run("rise-xfer", "-q", str(stick))  # received, not tossed
    ((row),) = listed(bob)
    assert (row["bundle_id"], row["state"], row["neighbour"]) == (sent, "received", "alice")
    refused = bob.run("rise", "queue", "cancel", sent, check=False)
    assert refused.returncode == 2
    assert "received bundles are not cancelled" in one_line(refused)
    for prefix, reason in (("zzzz", "no bundle zzzz waits here"), ("ab", "at least 4 characters")):
        missing = alice.run("rise", "queue", "cancel", prefix, check=False)
        assert missing.returncode == 2 and reason in one_line(missing)
    both = alice.run("rise", "queue", "cancel", sent, "--all", "bob", check=False)
    assert both.returncode == 2 and "not both" in one_line(both)


def test_a_relayed_send_taken_back_shows_as_cancelled(tmp_path: Path) -> None:
    net = Network.build(tmp_path, **DIAMOND)  # type: ignore[arg-type]
    bundle_id = net.send("a", "b", b"oops\n", options=["--via", "r1,r2"]).stdout.decode().strip()
    (packet,) = listed(net["a"])  # the first hop's packet, under its own id
    assert (packet["state"], packet["neighbour"]) == ("queued", "r1")
    net["a"].run("rise", "queue", "cancel", str(packet["bundle_id"]))
    assert net.status("a")[bundle_id]["state"] == "cancelled"
    stat = json.loads(net["a"].run("rise-stat", "--json").stdout)
    assert stat["sent"]["cancelled"] == 1
    net.settle()
    assert net.inbox("b") == []


def test_a_bundle_held_for_a_route_can_be_cancelled(tmp_path: Path) -> None:
    net = Network.build(
        tmp_path,
        relays=DIAMOND["relays"],
        ends=["a", "b", "c"],
        links=DIAMOND["links"],
        correspondents=[("a", "b"), ("a", "c")],
    )
    held = net.send("a", "c", b"held for c\n", options=["--hops", "2", "--wait"])
    bundle_id = held.stdout.decode().strip()
    ((row),) = listed(net["a"])
    assert (row["bundle_id"], row["state"], row["neighbour"]) == (bundle_id, "held", "c")
    said = net["a"].run("rise", "queue", "cancel", bundle_id).stderr.decode()
    assert "never left" in said
    assert listed(net["a"]) == []
    assert net.status("a") == {}
    assert not list((net["a"].spool / "held").iterdir())
    net["a"].run("rise-check")
