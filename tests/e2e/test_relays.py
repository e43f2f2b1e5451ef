"""Relays end to end: onion-routed bundles over directory carriers, one stick per link.

The networks are built in-process (tests/e2e/relay_network.py); what a test
is about runs as the installed commands: rise-send, rise-xfer --toss on the
relays and the recipient, rise-toss, rise status.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rise_dtn.core.bundle import MAX_CLEAR_BYTES, parse_clear
from tests.conftest import Node
from tests.e2e.relay_network import (
    MIB,
    Network,
    digest,
    files_under,
    node_ids_in,
    set_config,
)
from tests.postgres import IndexUrls

# A -- R1 -- R2 -- B, with R1 -- R3 -- B and R2 -- R3 beside: 2-relay routes
# are R1 -> R2 and R1 -> R3.
DIAMOND = {
    "relays": ["r1", "r2", "r3"],
    "ends": ["a", "b"],
    "links": [("a", "r1"), ("r1", "r2"), ("r1", "r3"), ("r2", "r3"), ("r2", "b"), ("r3", "b")],
    "correspondents": [("a", "b")],
}


def one_line(stderr: bytes) -> str:
    """The single line a failed command printed (and nothing else, no traceback)."""
    text = stderr.decode()
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text.strip()


def routes_of(status: dict[str, dict[str, object]], bundle_id: str) -> list[list[str]]:
    routes = status[bundle_id]["routes"]
    assert isinstance(routes, list)
    return routes


@pytest.mark.slow
def test_message_and_20_mib_file_over_two_relays(tmp_path: Path, index_urls: IndexUrls) -> None:
    net = Network.build(tmp_path, **DIAMOND, index_urls=index_urls)  # type: ignore[arg-type]
    payload = os.urandom(20 * MIB)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    file_id = net.send("a", "b", source).stdout.decode().split()[0]
    message_id = net.send("a", "b", b"hello over two relays\n").stdout.decode().split()[0]
    net.settle(real=True)
    net.assert_quiet()
    assert net.incoming("b", "a") == {"big.bin": digest(payload)}
    assert net.inbox("b") == [b"hello over two relays\n"]
    status = net.status("a")
    for bundle_id in (file_id, message_id):
        assert status[bundle_id]["state"] == "delivered", status[bundle_id]
        (route,) = routes_of(status, bundle_id)
        assert route[0] == "r1" and route[1] in {"r2", "r3"}
    for name in net.nodes:
        net[name].run("rise-check")


def mesh() -> dict[str, object]:
    """A and B next to each of 6 relays, the relays linked as {r1, r2, r3} x {r4, r5, r6}.

    18 ordered 2-relay routes: a relay of one side, then one of the other.
    """
    names = [f"r{number}" for number in range(1, 7)]
    links = [(end, relay) for end in ("a", "b") for relay in names]
    links += [(one, other) for one in names[:3] for other in names[3:]]
    return {"relays": names, "ends": ["a", "b"], "links": links, "correspondents": [("a", "b")]}


@pytest.mark.slow
def test_fifty_bundles_take_many_routes(tmp_path: Path, index_urls: IndexUrls) -> None:
    """50 messages, each with a route drawn for it: at least 10 distinct routes.

    All 50 are sent as real rise-send runs; a handful is carried to B (the
    rest stay aside, as on a stick nobody takes along) to check delivery.
    """
    net = Network.build(tmp_path, **mesh(), map_rounds=1, index_urls=index_urls)  # type: ignore[arg-type]
    bodies = [f"message {number}\n".encode() for number in range(50)]

    def send(body: bytes) -> str:
        return net.send("a", "b", body, options=["--hops", "2"]).stdout.decode().strip()

    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(send, bodies))
    status = net.status("a")
    routes = [tuple(route) for bundle_id in ids for route in routes_of(status, bundle_id)]
    assert len(routes) == 50
    sides = [{"r1", "r2", "r3"}, {"r4", "r5", "r6"}]
    assert all({route[0], route[1]} & side for route in routes for side in sides), routes
    counts = collections.Counter(routes)
    assert len(counts) >= 10, counts
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in net.tx("a")[6:]:
        path.rename(aside / path.name)
    net.settle()
    delivered = net.inbox("b")
    assert len(delivered) == 6 and set(delivered) <= set(bodies)
    states = collections.Counter(row["state"] for row in net.status("a").values())
    assert states == {"delivered": 6, "queued": 44}  # the rest never left A


def test_via_forces_a_route_and_bad_routes_fail_in_one_line(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    net = Network.build(tmp_path, **DIAMOND, index_urls=index_urls)  # type: ignore[arg-type]
    forced = net.send("a", "b", b"forced\n", options=["--via", "r1,r3"]).stdout.split()[0]
    status = net.status("a")
    assert routes_of(status, forced.decode()) == [["r1", "r3"]]
    # The diamond has two 2-relay routes: consecutive bundles alternate between them.
    ids = [
        net.send("a", "b", f"turn {turn}\n".encode()).stdout.decode().split()[0]
        for turn in range(3)
    ]
    status = net.status("a")
    taken = [routes_of(status, bundle_id)[0] for bundle_id in ids]
    assert taken[0] != taken[1] and taken[1] != taken[2], taken
    for via, expected in [
        ("r1,zz", "no relay called 'zz'"),
        ("r3,r1", "relay r3 in --via is not a neighbour of this node"),
        ("r1", "relay r1 in --via is not adjacent to b"),
        ("r1,r2,r1", "appears twice"),
    ]:
        failed = net.send("a", "b", b"x", options=["--via", via], check=False)
        assert failed.returncode != 0 and failed.stdout == b""
        assert expected in one_line(failed.stderr)
    net.settle()
    net.assert_quiet()
    assert net.inbox("b") == sorted([b"forced\n", b"turn 0\n", b"turn 1\n", b"turn 2\n"])


def test_no_route_says_so_and_wait_holds_until_a_map_opens_one(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    """C is a correspondent of A that no relay reaches, until R3 becomes its neighbour."""
    net = Network.build(
        tmp_path,
        index_urls=index_urls,
        relays=DIAMOND["relays"],
        ends=["a", "b", "c"],
        links=DIAMOND["links"],
        correspondents=[("a", "b"), ("a", "c")],
    )
    failed = net.send("a", "c", b"x", check=False)
    assert failed.returncode != 0
    assert "no known relay reaches c" in one_line(failed.stderr)
    held = net.send("a", "c", b"held for c\n", options=["--hops", "2", "--wait"])
    bundle_id = held.stdout.decode().strip()
    assert "held for c" in held.stderr.decode()
    assert net.status("a")[bundle_id]["state"] == "held"
    text = net["a"].run("rise", "status").stdout.decode()
    assert bundle_id in text and "held" in text
    net.link("r3", "c")
    for _round in range(2):  # R3 tells R1 of R3 -- C (once met, if maps wait for that) ...
        net.refresh_maps(["r3"])
        net.settle()
    assert net.status("a")[bundle_id]["state"] == "held"  # ... but A has not heard of it yet
    net.refresh_maps(["r1"])
    visits = net.settle(real={"a"})
    told = "".join(visit.stderr for visit in visits if visit.node == "a")
    assert f"{bundle_id}: routed: was held for a route" in told
    net.assert_quiet()
    assert net.inbox("c") == [b"held for c\n"]
    status = net.status("a")
    assert status[bundle_id]["state"] == "delivered"
    assert routes_of(status, bundle_id) == [["r1", "r3"]]


def test_two_copies_go_disjoint_and_the_late_one_is_cancelled(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    """A -- R1 -- R3 -- B and A -- R2 -- R4 -- B; the R4 -- B stick stays home for a while.

    B takes maps only from its relays' own links ([map] max_distance = 1) and
    A's card names only R1, so B's receipt can only go B -> R3 -> R1 -> A.
    """
    net = Network.build(
        tmp_path,
        index_urls=index_urls,
        relays=["r1", "r2", "r3", "r4"],
        ends=["a", "b"],
        links=[("a", "r1"), ("a", "r2"), ("r1", "r3"), ("r2", "r4"), ("r3", "b"), ("r4", "b")],
        correspondents=[("a", "b")],
        via={"a": ["r1"], "b": ["r3", "r4"]},
        config=[("b", "map", "max_distance", "1")],
    )
    bundle_id = net.send("a", "b", b"twice\n", options=["--hops", "2", "--copies", "2"])
    bundle_id_text = bundle_id.stdout.decode().split()[0]
    routes = routes_of(net.status("a"), bundle_id_text)
    assert sorted(routes) == [["r1", "r3"], ["r2", "r4"]]
    net.blocked.add(frozenset(("r4", "b")))
    net.settle(real={"r4"})
    assert net.status("a")[bundle_id_text]["state"] == "delivered"
    assert net.tx("r4", "b") == []  # the copy that waited for B is gone
    assert "cancel: the copy held here was dropped" in net.printed("r4")
    net.blocked.clear()
    net.settle()
    net.assert_quiet()
    assert net.inbox("b") == [b"twice\n"]


def test_middle_relay_learns_neither_end_nor_the_payload(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    """A -> R1 -> R2 -> R3 -> B, forced with --via: what R2 keeps and prints names neither.

    A map names the end nodes next to a relay (receipts are routed by it), so
    the middle relay here keeps no learned links ([map] max_distance = 0):
    whatever it records comes from forwarding. B's receipt takes 3 relays
    back, through R2 as well.
    """
    net = Network.build(
        tmp_path,
        index_urls=index_urls,
        relays=["r1", "r2", "r3"],
        ends=["a", "b"],
        links=[("a", "r1"), ("r1", "r2"), ("r2", "r3"), ("r3", "b")],
        correspondents=[("a", "b")],
        config=[("r2", "map", "max_distance", "0"), ("b", "send", "hops", "3")],
    )
    payload = os.urandom(256 * 1024)
    source = tmp_path / "secret.bin"
    source.write_bytes(payload)
    file_id = net.send("a", "b", source, options=["--via", "r1,r2,r3"]).stdout.split()[0]
    net.send("a", "b", b"a message only b may read\n", options=["--via", "r1,r2,r3"])
    net.settle(real={"r1", "r2", "r3"})
    net.assert_quiet()
    assert net.incoming("b", "a") == {"secret.bin": digest(payload)}
    assert net.status("a")[file_id.decode()]["state"] == "delivered"
    a, b = net["a"], net["b"]
    samples = [payload[offset : offset + 32] for offset in range(0, len(payload), 32 * 1024)]
    for relay, hidden in (("r1", [b]), ("r2", [a, b]), ("r3", [a])):
        home = net[relay].home
        records = [(path, path.read_bytes()) for path in files_under(home)]
        records.append((home / "(its index, dumped)", net.index_dump(relay)))
        records.append((home / "(printed)", net.printed(relay).encode()))
        assert net.printed(relay), f"{relay} printed nothing: did it run as a command?"
        for path, data in records:
            for node in hidden:
                assert not node_ids_in(data, node), f"{path} names {node.name}"
            for sample in [b"a message only b may read", *samples]:
                assert sample not in data, f"{path} holds payload bytes"


def rejections(stderr: str) -> list[str]:
    """The one line each rejection printed (the rest of stderr is the usual talk)."""
    return [line for line in stderr.splitlines() if ": rejected: " in line]


def quarantined(node: Node) -> list[tuple[Path, str]]:
    """(bundle file, reason) of what `node` quarantined."""
    spool = node.spool / "quarantine"
    return [
        (path, path.with_name(path.name + ".reason").read_text().strip())
        for path in sorted(spool.glob("*.rsb"))
    ]


def test_a_node_without_relay_enabled_refuses_to_forward(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    """R2 is taken for a relay by its neighbours, but its own config says no (the default)."""
    net = Network.build(
        tmp_path,
        index_urls=index_urls,
        relays=["r1"],
        ends=["a", "r2", "b"],
        links=[("a", "r1"), ("r1", "r2"), ("r2", "b")],
        correspondents=[("a", "b")],
        marked=[("r1", "r2"), ("b", "r2")],
    )
    net.send("a", "b", b"not through r2\n", real=False)
    for name, partner in (("a", "r1"), ("r1", "a"), ("r1", "r2")):
        net.visit(name, partner, real=False)
    net["r2"].run("rise-xfer", str(net.stick("r1", "r2")))
    tossed = net["r2"].run("rise-toss", check=False)
    assert tossed.returncode == 3
    assert "this node does not relay ([relay] enabled is off)" in one_line(tossed.stderr)
    assert net.tx("r2") == [] and net.inbox("b") == []
    ((_path, reason),) = quarantined(net["r2"])
    assert "[relay] enabled is off" in reason


def test_a_relay_refuses_a_next_hop_that_is_not_its_neighbour(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    """R1 stopped trusting R3 after A learned the R1 -- R3 link: A's map is stale."""
    net = Network.build(tmp_path, **DIAMOND, index_urls=index_urls)  # type: ignore[arg-type]
    net["r1"].run("rise", "peer", "remove", "r3")
    net.send("a", "b", b"via a stale link\n", options=["--via", "r1,r3"])
    net.visit("a", "r1", real=False)
    visit = net.visit("r1", "a", allow_rejects=True)
    assert visit.status == 3
    (line,) = rejections(visit.stderr)
    assert f"next hop {net['r3'].node_id} is not a neighbour of this node" in line
    assert net.tx("r1", "r2") == []


def test_relay_quotas_refuse_the_excess_and_name_the_quota(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    """Over its quota a packet waits in rx/, unacked (deferred); one that never fits is refused."""
    net = Network.build(
        tmp_path,
        index_urls=index_urls,
        **DIAMOND,  # type: ignore[arg-type]
        config=[("r1", "peers.a", "relay_max_bundles", "2"), ("r1", "relay", "max_bytes", '"64K"')],
    )
    for number in range(3):
        net.send("a", "b", f"quota {number}\n".encode(), real=False)
    net.visit("a", "r1", real=False)
    visit = net.visit("r1", "a")
    (line,) = [line for line in visit.stderr.splitlines() if ": deferred: " in line]
    assert "over relay quota for a: 2 bundles held (max 2)" in line
    assert len(net.tx("r1")) == 2 and len(net.rx("r1")) == 1  # two went on, one waits
    net.visit("a", "r1", real=False)
    assert len(net.tx("a", "r1")) == 1  # A keeps its copy of that one: not acked
    # Once the next hops confirm the first two, the third goes too.
    net.settle()
    net.assert_quiet()
    assert net.inbox("b") == [b"quota 0\n", b"quota 1\n", b"quota 2\n"]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(100 * 1024))
    net.send("a", "b", big, real=False)
    net.visit("a", "r1", real=False)
    visit = net.visit("r1", "a", allow_rejects=True)
    assert visit.status == 3
    (line,) = rejections(visit.stderr)
    assert "over the relay quota for a" in line and "(max 64.0 KiB)" in line
    assert net.tx("r1") == [] and net.rx("r1") == []


def test_receipts_look_like_short_messages_to_every_relay(tmp_path: Path) -> None:
    """protocol.md 20.5: a short message and its receipt (with b's reach) fall in one
    padding bucket, so that no relay tells them apart by size."""
    net = Network.build(tmp_path, **DIAMOND)  # type: ignore[arg-type]
    message_id = net.send("a", "b", b"short\n").stdout.decode().split()[0]
    sizes: set[int] = set()
    for _round in range(12):
        busy = False
        for name in net.nodes:
            for partner in net.partners(name):
                if net.needs_visit(name, partner):
                    busy = True
                    net.visit(name, partner, real=False)
                    for path in net.stick(name, partner).rglob("*.rsb"):
                        if parse_clear(path.read_bytes()[:MAX_CLEAR_BYTES]).onion:
                            sizes.add(path.stat().st_size)
        if not busy:
            break
    assert net.status("a")[message_id]["state"] == "delivered"  # the receipt came back
    assert len(sizes) == 1, sorted(sizes)


def test_a_relay_writes_onto_a_stick_only_for_the_neighbour_it_serves(tmp_path: Path) -> None:
    """A -> R1 -> R2 -> B: R2 must not show R1, on their stick, the packet for B that it
    has just forwarded from R1 (by folder and by size): R1 would learn both ends."""
    net = Network.build(
        tmp_path,
        relays=["r1", "r2"],
        ends=["a", "b"],
        links=[("a", "r1"), ("r1", "r2"), ("r2", "b")],
        correspondents=[("a", "b")],
    )
    net.send("a", "b", b"only b may know who this is for\n", options=["--via", "r1,r2"])
    for name, partner in (("a", "r1"), ("r1", "a"), ("r1", "r2")):
        net.visit(name, partner, real=False)
    stick, r2, b = net.stick("r1", "r2"), net["r2"], net["b"]

    def names_b() -> list[Path]:
        return [
            path
            for path in stick.rglob("*")
            if node_ids_in(str(path).encode(), b)
            or (path.is_file() and node_ids_in(path.read_bytes(), b))
        ]

    # Nothing said: a relay with two neighbours writes for neither, in one line.
    result = r2.run("rise-xfer", "--toss", str(stick), check=False)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert "Traceback" not in result.stderr.decode()
    (line,) = [line for line in lines if line.startswith("rise-xfer: a relay writes for no")]
    assert "--for NAME, [peers.NAME] media, or --for-all" in line
    assert len(net.tx("r2", "b")) == 1  # forwarded: it waits for a medium that serves b
    assert names_b() == []
    assert not list(stick.rglob("*.rsa"))  # not even the ack for r1

    # --for r1: the ack goes, b's packet stays home.
    r2.run("rise-xfer", "-q", "--for", "r1", str(stick))
    assert list((stick / "rise-dtn" / net["r1"].node_id / r2.node_id).glob("*.rsa"))
    assert names_b() == []
    assert len(net.tx("r2", "b")) == 1

    # The same from config.toml, for the mount point of the r1 stick.
    set_config(r2, "peers.r1", "media", f'["{stick}"]')
    result = r2.run("rise-xfer", str(stick))
    assert result.returncode == 0
    assert names_b() == []
    result = r2.run("rise-xfer", "--for", "nobody", str(stick), check=False)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("rise-xfer: unknown peer 'nobody'")

    # --for-all is the explicit opt-in for a stick that every neighbour shares.
    r2.run("rise-xfer", "-q", "--for-all", str(stick))
    assert len(list((stick / "rise-dtn" / b.node_id / r2.node_id).glob("*.rsb"))) == 1


def test_a_damaged_onion_packet_of_our_own_is_found(tmp_path: Path) -> None:
    """Defect 11 for packets over relays: the digest recorded as the packet was sealed
    (its clear part written last) names a byte changed in place in tx/."""
    net = Network.build(tmp_path, **DIAMOND)  # type: ignore[arg-type]
    source = tmp_path / "scan.bin"
    source.write_bytes(os.urandom(300_000))
    net.send("a", "b", source, options=["--via", "r1,r2"])
    net.send("a", "b", b"a short one\n", options=["--via", "r1,r2"])
    net["a"].run("rise-check")  # both digests match what was sealed
    packets = net.tx("a", "r1")
    assert len(packets) == 2
    for offset in (100, 200_000):  # in the clear part, in the payload
        path = max(packets, key=lambda packet: packet.stat().st_size)
        original = path.read_bytes()
        changed = bytearray(original)
        changed[offset] ^= 1
        path.write_bytes(bytes(changed))
        found = net["a"].run("rise-check", check=False)
        assert found.returncode == 3, found.stdout
        assert f"{path.name}: damaged in our own spool".encode() in found.stdout
        path.write_bytes(original)
    net["a"].run("rise-check")
