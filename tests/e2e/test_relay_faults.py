"""A malicious relay or carrier between two hops, and a relay killed while it forwards.

The faults are made by editing packet files where they wait between hops:
in the relay's own tx/ (the relay itself is malicious) or on the stick (the
carrier is). Every fault must be detected where the packet lands and
handled as documented (protocol.md section 20.6; rise-toss(1)): quarantined
with a one-line reason (exit status 3), or dropped; the command goes on with
the other packets, and nothing is delivered twice or corrupt.

The network is the diamond A -- R1 -- {R2, R3} -- B (R2 -- R3 linked too);
packets go A -> R1 -> R2 -> B, forced with --via.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from rise_dtn.carriers.directory import xfer
from rise_dtn.carriers.directory.audience import Audience
from rise_dtn.core.encoding import canonical
from rise_dtn.core.identity import NodeId
from rise_dtn.store.spool import read_clear
from tests.e2e.relay_network import MIB, Network, digest, opened
from tests.e2e.test_crash import Killer, repair_then_check, timed

DIAMOND = {
    "relays": ["r1", "r2", "r3"],
    "ends": ["a", "b"],
    "links": [("a", "r1"), ("r1", "r2"), ("r1", "r3"), ("r2", "r3"), ("r2", "b"), ("r3", "b")],
    "correspondents": [("a", "b")],
}
VIA = ["--via", "r1,r2"]
KILLS = 24  # kill -9 points for the relay's rise-toss
SEED = 20240612


def diamond(base: Path) -> Network:
    return Network.build(base, **DIAMOND)  # type: ignore[arg-type]


def send_messages(net: Network, count: int, tag: str) -> list[bytes]:
    bodies = [f"{tag} {number}\n".encode() for number in range(count)]
    for body in bodies:
        net.send("a", "b", body, options=VIA, real=False)
    return bodies


def forward_to(net: Network, hop: str) -> list[Path]:
    """Carry A's packets until they wait in the tx/ of the node before `hop` (R1 or R2)."""
    net.visit("a", "r1", real=False)
    net.visit("r1", "a", real=False)
    if hop == "b":
        net.visit("r1", "r2", real=False)
        net.visit("r2", "r1", real=False)
    before = "r1" if hop == "r2" else "r2"
    return net.tx(before, hop)


def rejected_lines(stderr: str) -> list[str]:
    """The one line each rejection printed (the rest of stderr is the usual talk)."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if ": rejected: " in line]


# -- editing packets -------------------------------------------------------------------


def rewrite(path: Path, data: bytes) -> None:
    """Replace the file, as a carrier that alters what it carries would write a new one."""
    staged = path.with_name(path.name + ".edit")
    staged.write_bytes(data)
    staged.replace(path)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    rewrite(path, bytes(data))


def header_offset(path: Path) -> int:
    """Where the cleartext expiry's last byte is (a hop header field, bound by the MAC)."""
    clear, _size = read_clear(path)
    encoded = canonical(clear.header.expiry)
    head = path.read_bytes()[: clear.size]
    return head.index(encoded) + len(encoded) - 1


def alpha_offset(path: Path) -> int:
    clear, _size = read_clear(path)
    return clear.size - 1  # the last byte of alpha, the packet's ephemeral key


def routing_offset(path: Path) -> int:
    clear, _size = read_clear(path)
    return clear.size + 40  # inside the first routing slot (beta)


def payload_offset(path: Path) -> int:
    clear, size = read_clear(path)
    start = clear.size + clear.slots * 74 + 16
    return start + (size - start) // 2


TAMPERING = {
    "header": (header_offset, "routing header MAC"),
    "alpha": (alpha_offset, "routing header MAC"),
    "routing": (routing_offset, "routing header MAC"),
    "payload": (payload_offset, ""),  # the payload tag, or the inner bundle's own check
}


@pytest.mark.parametrize("hop", ["r2", "b"])
def test_a_relay_that_alters_packets_is_caught_at_the_next_hop(tmp_path: Path, hop: str) -> None:
    """The node before `hop` alters one byte of four packets in its own tx/ and forwards them.

    `hop` (the middle relay R2, or B itself) quarantines each with one line,
    and forwards or delivers the fifth; what the malicious relay sent is
    never delivered.
    """
    net = diamond(tmp_path)
    bodies = send_messages(net, 5, "altered")
    waiting = forward_to(net, hop)
    assert len(waiting) == 5
    altered = dict(zip(TAMPERING, waiting, strict=False))
    for kind, path in altered.items():
        flip(path, TAMPERING[kind][0](path))
    before = "r1" if hop == "r2" else "r2"
    net.visit(before, hop, real=False)
    visit = net.visit(hop, before, allow_rejects=True)
    assert visit.status == 3
    lines = rejected_lines(visit.stderr)
    assert len(lines) == 4, lines
    for kind, path in altered.items():
        # A new alpha is a new packet id: the line names the id the packet claims.
        (line,) = [line for line in lines if read_clear_id(path) in line]
        assert TAMPERING[kind][1] in line, (kind, line)
        assert "corrupt" in line or "tampered" in line or "truncated" in line, (kind, line)
    # The malicious relay forgets what it altered; the rest of the network settles.
    for path in altered.values():
        path.unlink()
    net.settle(allow_rejects=True)
    (good,) = [body for body in bodies if body in net.inbox("b")]
    assert net.inbox("b") == [good]
    quarantined = list((net[hop].spool / "quarantine").glob("*.rsb"))
    assert len(quarantined) == 4


def read_clear_id(path: Path) -> str:
    """The bundle id a (possibly altered) packet file claims."""
    clear, _size = read_clear(path)
    return str(clear.bundle_id)


def test_a_carrier_that_alters_or_truncates_loses_nothing(tmp_path: Path) -> None:
    """Packets damaged on the stick are refused; the relay's good copies still arrive once."""
    net = diamond(tmp_path)
    bodies = send_messages(net, 4, "carried")
    forward_to(net, "r2")
    net.visit("r1", "r2", real=False)
    on_stick = net.on_stick("r1", "r2")
    assert len(on_stick) == 4
    truncated, cut_header, altered = on_stick[:3]
    rewrite(truncated, truncated.read_bytes()[:-100])
    rewrite(cut_header, cut_header.read_bytes()[:40])
    flip(altered, payload_offset(altered))
    visit = net.visit("r2", "r1", allow_rejects=True)
    lines = rejected_lines(visit.stderr)
    assert len(lines) == 3, lines
    assert any("truncated" in line for line in lines)
    assert any("payload tag" in line for line in lines)
    net.settle(allow_rejects=True)
    net.assert_quiet()
    assert net.inbox("b") == sorted(bodies)
    delivered = net.status("a")
    assert {row["state"] for row in delivered.values()} == {"delivered"}


def test_replays_and_duplicates_are_dropped(tmp_path: Path) -> None:
    net = diamond(tmp_path)
    bodies = send_messages(net, 3, "replayed")
    forward_to(net, "r2")
    net.visit("r1", "r2", real=False)
    first, second, third = net.on_stick("r1", "r2")
    saved = tmp_path / "saved"
    saved.mkdir()
    shutil.copy(first, saved / first.name)
    # Two copies at once: the same packet again under another name on the stick,
    # and handed over by R3 as well (so both wait in R2's rx/ together).
    shutil.copy(second, second.with_name(f"{second.stem}-again.rsb"))
    from_r3 = net.stick("r2", "r3") / "rise-dtn" / net["r2"].node_id / net["r3"].node_id
    from_r3.mkdir(parents=True, exist_ok=True)
    shutil.copy(third, from_r3 / third.name)
    net["r2"].run("rise-xfer", "--for", "r1", str(net.stick("r1", "r2")))
    net["r2"].run("rise-xfer", "--for", "r3", str(net.stick("r2", "r3")))
    tossed = net["r2"].run("rise-toss")
    assert tossed.stderr.decode().count("forwarded") == 3
    assert "replay of a packet already handled" in tossed.stderr.decode()
    assert len(net.tx("r2", "b")) == 3
    again = net["r2"].run("rise-xfer", "--toss", "--for", "r1", str(net.stick("r1", "r2")))
    assert "replay of a packet already handled" in again.stderr.decode()
    assert len(net.tx("r2", "b")) == 3
    final = net.tx("r2", "b")[0]
    shutil.copy(final, saved / "final.rsb")
    net.settle()
    net.assert_quiet()
    assert net.inbox("b") == sorted(bodies)
    # Later: the same packets once more, to the relay and to the recipient.
    shutil.copy(saved / first.name, first)
    later = net.visit("r2", "r1")
    assert "replay of a packet already handled" in later.stderr
    assert net.tx("r2") == []
    to_b = net.stick("r2", "b") / "rise-dtn" / net["b"].node_id / net["r2"].node_id
    shutil.copy(saved / "final.rsb", to_b / final.name)
    at_b = net.visit("b", "r2")
    assert "duplicate" in at_b.stderr
    net.settle()
    assert net.inbox("b") == sorted(bodies)


def test_a_packet_delayed_past_its_expiry_is_dropped(tmp_path: Path) -> None:
    """R1 sits on two packets until they expire: one on the stick, one already in R2's rx/."""
    net = diamond(tmp_path)
    for number in range(2):
        net.send("a", "b", f"late {number}\n".encode(), options=[*VIA, "--lifetime", "4s"])
    forward_to(net, "r2")
    net.visit("r1", "r2", real=False)
    late_on_stick, late_in_rx = net.on_stick("r1", "r2")
    held = late_on_stick.rename(net.base / late_on_stick.name)
    with opened(net["r2"]) as home:
        xfer.exchange(
            home,
            net.stick("r1", "r2"),
            move=False,
            now=int(time.time()),
            serving=Audience(names=("r1",)),
        )
    assert len(net.rx("r2")) == 1
    held.rename(late_on_stick)
    expiry = max(read_clear(path)[0].header.expiry for path in [late_on_stick, *net.rx("r2")])
    deadline = time.monotonic() + 30
    while time.time() <= expiry + 1:  # the delay itself: wall-clock time has to pass
        assert time.monotonic() < deadline
        time.sleep(0.2)
    visit = net.visit("r2", "r1")
    assert "expired, removed from the medium" in visit.stderr
    assert f"{late_in_rx.stem}: dropped: expired" in visit.stderr
    assert net.tx("r2") == [] and net.rx("r2") == []
    net.settle()
    assert net.inbox("b") == []
    assert {row["state"] for row in net.status("a").values()} == {"expired"}


def test_a_packet_carried_to_the_wrong_relay_is_refused_and_still_arrives(tmp_path: Path) -> None:
    """Packets for R2 end up with R3: in its folder on a stick, in its rx/, or readdressed."""
    net = diamond(tmp_path)
    bodies = send_messages(net, 4, "misrouted")
    forward_to(net, "r2")
    net.visit("r1", "r2", real=False)
    in_folder, in_rx, readdressed, fine = net.on_stick("r1", "r2")
    r2_raw, r3_raw = (NodeId.parse(net[name].node_id).raw for name in ("r2", "r3"))
    data = readdressed.read_bytes()
    rewrite(readdressed, data.replace(r2_raw, r3_raw, 1))  # passes the folder check
    folder = net.stick("r1", "r3") / "rise-dtn" / net["r3"].node_id / net["r1"].node_id
    folder.mkdir(parents=True, exist_ok=True)
    for path in (in_folder, readdressed):
        path.rename(folder / path.name)
    rx = net["r3"].spool / "rx" / net["r1"].node_id
    rx.mkdir(parents=True, exist_ok=True)
    in_rx.rename(rx / in_rx.name)
    visit = net.visit("r3", "r1", allow_rejects=True)
    lines = rejected_lines(visit.stderr)
    assert len(lines) == 3, lines
    assert any(f"for another node ({net['r2'].node_id})" in line for line in lines)
    assert any("onion packet is for another node" in line for line in lines)
    assert any("routing header MAC" in line for line in lines)
    assert net.tx("r3") == []
    assert fine.exists()
    # R1 still holds all four (none was acked by R2): they go again, to R2 this time.
    net.settle(allow_rejects=True)
    net.assert_quiet()
    assert net.inbox("b") == sorted(bodies)


# -- kill -9 of a relay's rise-toss ----------------------------------------------------


def random_file(rng: random.Random, size: int) -> bytes:
    block = rng.randbytes(min(size, MIB))
    return (block * (size // MIB + 1))[:size]


# Small ones go through the relay's batch, large ones are streamed; the 5 MiB
# one keeps a toss writing long enough for kills to land mid-write.
SIZES = [0, 700, 64 * 1024 + 3, MIB + 1, 5 * MIB - 5]


@pytest.mark.slow
def test_kill_relay_toss_while_it_forwards(tmp_path: Path) -> None:
    """SIGKILL R1's rise-toss again and again; every bundle still reaches B once, intact."""
    rng = random.Random(SEED)
    net = diamond(tmp_path)
    sources = tmp_path / "sources"
    sources.mkdir()
    expected: dict[str, str] = {}
    killer: Killer | None = None
    batches = 0
    for _run in range(400):
        if killer is not None and killer.kills >= KILLS:
            break
        if not net.rx("r1"):
            batches += 1
            for number, size in enumerate(SIZES):
                data = random_file(rng, size)
                path = sources / f"b{batches}-{number}.bin"
                path.write_bytes(data)
                expected[path.name] = digest(data)
                net.send("a", "b", path, options=VIA, real=False)
            net.visit("a", "r1", real=False)
            with opened(net["r1"]) as home:  # take them into rx/, leave the toss to the kills
                xfer.exchange(
                    home,
                    net.stick("a", "r1"),
                    move=False,
                    now=int(time.time()),
                    serving=Audience(names=("a",)),
                )
        if killer is None:
            killer = Killer(rng, timed("rise-toss", "-q", home=net["r1"].home), work_seconds=0.2)
            continue  # that first run tossed the batch
        outcome = killer.run("rise-toss", "-q", home=net["r1"].home)
        assert outcome.status in {None, 0}, outcome.stderr
    assert killer is not None and killer.kills >= KILLS
    net["r1"].run("rise-toss", "-q")
    assert net.rx("r1") == []
    repair_then_check(net["r1"].home)
    net.settle()
    net.assert_quiet()
    assert net.incoming("b", "a") == expected
    for name in net.nodes:
        net[name].run("rise-check")


@pytest.mark.slow
def test_kill_relay_xfer_toss_while_it_forwards_off_the_stick(tmp_path: Path) -> None:
    """SIGKILL R1's `rise-xfer --toss` again and again while it forwards packets as it reads
    them off the stick (no copy in rx/); every bundle still reaches B once, intact."""
    rng = random.Random(SEED + 1)
    net = diamond(tmp_path)
    sources = tmp_path / "sources"
    sources.mkdir()
    expected: dict[str, str] = {}
    stick = str(net.stick("a", "r1"))
    killer: Killer | None = None
    batches = 0
    for _run in range(400):
        if killer is not None and killer.kills >= KILLS:
            break
        if not net.on_stick("a", "r1"):
            batches += 1
            for number, size in enumerate(SIZES):
                data = random_file(rng, size)
                path = sources / f"b{batches}-{number}.bin"
                path.write_bytes(data)
                expected[path.name] = digest(data)
                net.send("a", "b", path, options=VIA, real=False)
            net.visit("a", "r1", real=False)
        if killer is None:
            startup = timed("rise-xfer", "-q", "--toss", "--for", "a", stick, home=net["r1"].home)
            killer = Killer(rng, startup, work_seconds=0.2)
            continue  # that first run forwarded the batch
        outcome = killer.run("rise-xfer", "-q", "--toss", "--for", "a", stick, home=net["r1"].home)
        assert outcome.status in {None, 0}, outcome.stderr
    assert killer is not None and killer.kills >= KILLS
    net["r1"].run("rise-xfer", "-q", "--toss", "--for", "a", stick)
    repair_then_check(net["r1"].home)
    net.settle()
    net.assert_quiet()
    assert net.incoming("b", "a") == expected
    for name in net.nodes:
        net[name].run("rise-check")
