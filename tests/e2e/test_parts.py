"""Split files end to end (docs/protocol.md section 25): the installed commands, a real
10 MiB stick on another filesystem, two carriers, duplicates, forgeries, kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rise_dtn.core.bundle import ContentKind
from rise_dtn.core.errors import ExitCode, StorageError
from rise_dtn.core.parts import PartHeader
from rise_dtn.node import parts
from rise_dtn.node.home import Home
from rise_dtn.node.send import send, split
from rise_dtn.node.toss import toss
from tests.conftest import Node, befriend, make_node
from tests.e2e.test_crash import (
    CRASH_STEPS,
    WriteSteps,
    _die,
    mounted_tmpfs,
    stepping,
)

MIB = 1 << 20


def rsb_on(stick: Path) -> list[Path]:
    return sorted((stick / "rise-dtn").rglob("*.rsb")) if (stick / "rise-dtn").exists() else []


def delivered(node: Node, sender: str = "alice") -> list[Path]:
    folder = node.incoming / sender
    return sorted(folder.iterdir()) if folder.exists() else []


def make_file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def test_twelve_mib_file_over_a_ten_mib_stick(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, bob = pair
    data = make_file(tmp_path / "big.bin", 12 * MIB, 1)
    with mounted_tmpfs(tmp_path / "usb", size="10m") as stick:
        ids = alice.run("rise-send", "--part-size", "4MiB", str(tmp_path / "big.bin"), "bob")
        assert len(ids.stdout.split()) == 3
        assert b"12.0 MiB in 3 parts of at most 4.0 MiB" in ids.stderr
        first = alice.run("rise-xfer", str(stick), check=False)
        assert first.returncode == ExitCode.NO_SPACE, first.stderr  # two parts fit, one waits
        assert len(rsb_on(stick)) == 2
        took = bob.run("rise-xfer", "--toss", str(stick))
        assert took.stderr.count(b"part stored") == 2
        assert delivered(bob) == []  # never a half file where the user looks
        alice.run("rise-xfer", "-q", str(stick))  # second exchange: acks in, last part out
        bob.run("rise-xfer", "-q", "--toss", str(stick))
        alice.run("rise-xfer", "-q", str(stick))
    assert delivered(bob) == [bob.incoming / "alice" / "big.bin"]
    assert (bob.incoming / "alice" / "big.bin").read_bytes() == data
    assert not (bob.spool / "parts").exists() or not list((bob.spool / "parts").rglob("data"))
    stat = json.loads(alice.run("rise-stat", "--json").stdout)
    assert stat["neighbours"][0]["waiting"] == 0
    assert stat["sent"]["delivered"] == 3  # each part, acked by bob
    for bundle_id in ids.stdout.decode().split():
        status = json.loads(alice.run("rise", "status", "--json", bundle_id).stdout)
        assert [row["state"] for row in status] == ["delivered"]
    for node in (alice, bob):
        node.run("rise-check")


def test_a_bundle_larger_than_the_stick_is_named_once(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, _bob = pair
    make_file(tmp_path / "big.bin", 12 * MIB, 2)
    with mounted_tmpfs(tmp_path / "usb", size="10m") as stick:
        big = alice.run("rise-send", "-q", str(tmp_path / "big.bin"), "bob").stdout.decode()
        alice.run("rise-send", "-q", "-", "bob", input=b"small, after it\n")
        result = alice.run("rise-xfer", "-q", str(stick), check=False)
    assert result.returncode == ExitCode.NO_SPACE
    lines = result.stderr.decode().splitlines()
    named = [line for line in lines if big.strip() in line]
    assert len(named) == 1, lines
    assert "can never fit" in named[0] and "--part-size" in named[0]
    stat = json.loads(alice.run("rise-stat", "--json").stdout)
    assert stat["neighbours"][0]["waiting"] == 2  # both still queued (the small one on the stick)


def test_max_bundle_option(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, _bob = pair
    alice.run("rise-send", "-q", "-", "bob", "--name", "a.txt", input=b"x" * 5000)
    stick = tmp_path / "stick"
    stick.mkdir()
    result = alice.run("rise-xfer", "-q", "--max-bundle", "4K", str(stick), check=False)
    assert result.returncode == ExitCode.NO_SPACE
    assert b"larger than --max-bundle (4.0 KiB)" in result.stderr
    assert rsb_on(stick) == []


@pytest.mark.parametrize("size", ["0", "0K", "-1", "-4K", "500", "1.5.3", "four", ""])
def test_max_bundle_nonsense_is_a_usage_error(
    pair: tuple[Node, Node], tmp_path: Path, size: str
) -> None:
    """A limit no bundle fits under (zero, below the smallest bundle) or no size at all is the
    user's mistake: one line, exit status 2, before anything is read or written."""
    alice, _bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"hello\n")
    stick = tmp_path / "stick"
    stick.mkdir()
    result = alice.run("rise-xfer", "--max-bundle", size, str(stick), check=False)
    message = result.stderr.decode()
    assert result.returncode == ExitCode.USAGE, message
    assert message.startswith("rise-xfer: --max-bundle"), message
    assert message.count("\n") == 1 and "Traceback" not in message, message
    assert list(stick.iterdir()) == []  # nothing was written, not even the folders


def test_parts_over_two_carriers_out_of_order_and_twice(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """Part bundles taken apart: some by stick, some by a bundle stream, one twice."""
    alice, bob = pair
    data = make_file(tmp_path / "video.bin", 300 * 1024, 3)
    ids = alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "video.bin"), "bob")
    bundle_ids = ids.stdout.decode().split()
    assert len(bundle_ids) == 5
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    on_stick = {path.stem: path for path in rsb_on(stick)}
    assert sorted(on_stick) == sorted(bundle_ids)
    # The stick carries parts 5, 3 and 1 (last first); 2 and 4 go by the stream.
    keep = {bundle_ids[0], bundle_ids[2], bundle_ids[4]}
    again = on_stick[bundle_ids[2]]
    again_bytes = again.read_bytes()  # to be carried a second time
    for stem, path in on_stick.items():
        if stem not in keep:
            path.unlink()
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    assert delivered(bob) == []
    stream = tmp_path / "parts.rss"
    alice.run("rise-bundle", "-q", "--out", str(stream), "--to", "bob")
    took = bob.run("rise-bundle", "--in", str(stream), "--toss")
    assert delivered(bob) == [bob.incoming / "alice" / "video.bin"]
    assert (bob.incoming / "alice" / "video.bin").read_bytes() == data
    assert b"delivered file from alice" in took.stderr
    # Part 3 comes again, on the stick, after the file was delivered: dropped, acked.
    again.parent.mkdir(parents=True, exist_ok=True)
    again.write_bytes(again_bytes)
    second = bob.run("rise-xfer", "--toss", str(stick))
    assert b"duplicate" in second.stderr, second.stderr
    assert delivered(bob) == [bob.incoming / "alice" / "video.bin"]
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-check")


def _in_process(path: Path) -> Home:
    return Home.open(path)


def _queue_part(alice_home: Path, header: PartHeader, payload: bytes, name: str) -> None:
    """A part sealed by alice's own key with a header of our choosing (a sender's bug)."""
    home = _in_process(alice_home)
    try:
        source = tmp = alice_home / "crafted.bin"
        tmp.write_bytes(payload)
        with open(source, "rb") as handle:
            send.queue(
                home,
                home.peers.find("bob"),
                handle,
                options=send.SendOptions(name=name),
                now=int(time.time()),
                part=header,
            )
        tmp.unlink()
    finally:
        home.close()


def test_mismatched_parts_are_quarantined_with_a_reason(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, bob = pair
    file_id = os.urandom(16)
    stick = tmp_path / "stick"
    stick.mkdir()
    # Part 1 of 2 first, alone, so that it starts the reassembly.
    _queue_part(alice.home, PartHeader(file_id, 0, 2, 100, 64), b"a" * 64, "f.bin")
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    # The same file id, another shape: the second part disagrees with the first.
    _queue_part(alice.home, PartHeader(file_id, 1, 3, 150, 64), b"b" * 64, "f.bin")
    # Another name under the same file id.
    _queue_part(alice.home, PartHeader(file_id, 1, 2, 100, 64), b"c" * 36, "g.bin")
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-toss", check=False)
    assert result.returncode == ExitCode.REJECTED
    reasons = [path.read_text() for path in (bob.spool / "quarantine").glob("*.reason")]
    assert len(reasons) == 2, result.stderr
    assert any("disagrees with earlier parts" in reason for reason in reasons)
    assert any("file name 'g.bin' disagrees" in reason for reason in reasons)
    assert all(reason.count("\n") == 1 for reason in reasons)
    assert delivered(bob) == []


def _cap_parts(bob: Node, cap: str) -> None:
    config = bob.home / "config.toml"
    config.write_text(
        config.read_text().replace("[toss]\n", f'[toss]\nparts_max_bytes = "{cap}"\n')
    )


def test_a_file_larger_than_the_reassembly_cap_is_refused_at_once(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """It could never be put together here: each part is quarantined with one line (its first
    MiB at most), nothing waits in rx/ against alice's receive quota, nothing is reserved."""
    alice, bob = pair
    _cap_parts(bob, "1M")
    make_file(tmp_path / "f.bin", 3 * MIB + 5, 4)
    sent = alice.run("rise-send", "-q", "--part-size", "2MiB", str(tmp_path / "f.bin"), "bob")
    ids = sent.stdout.decode().split()
    assert len(ids) == 2
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-toss", "-q", check=False)
    assert result.returncode == ExitCode.REJECTED, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 2, lines  # one line per part, and nothing else
    for line in lines:
        assert "f.bin (3.0 MiB) is larger than [toss] parts_max_bytes (1.0 MiB)" in line
        assert line.endswith("(quarantined)"), line
    assert list((bob.spool / "rx").rglob("*.rsb")) == []
    home = _in_process(bob.home)
    try:
        assert home.index.held_bytes("rx", alice.node_id) == 0
    finally:
        home.close()
    assert not (bob.spool / "parts").exists() or list((bob.spool / "parts").iterdir()) == []
    quarantined = sorted((bob.spool / "quarantine").glob("*.rsb"))
    assert sorted(path.stem for path in quarantined) == sorted(ids)
    for path in quarantined:  # what it claimed to be, not what it weighs
        assert path.stat().st_size == MIB
        reason = path.with_name(path.name + ".reason").read_text()
        assert f"(the first {MIB} of its " in reason and reason.count("\n") == 1
    assert delivered(bob) == []
    bob.run("rise-check")


def test_reassembly_cap_defers_and_stale_reassemblies_are_given_up(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """Two files that each fit the cap but not together: the second waits in rx/ (deferred)
    while the first is in progress."""
    alice, bob = pair
    _cap_parts(bob, "300K")
    make_file(tmp_path / "f.bin", 200 * 1024, 4)
    make_file(tmp_path / "g.bin", 200 * 1024, 5)
    first = alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "f.bin"), "bob")
    second = alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "g.bin"), "bob")
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    # One part of f.bin only: its reassembly stays in progress, holding 200 KiB of the cap.
    rx = {path.stem: path for path in (bob.spool / "rx").rglob("*.rsb")}
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in rx.values():
        shutil.move(path, aside / path.name)
    f_first = first.stdout.decode().split()[0]
    shutil.move(aside / rx[f_first].name, rx[f_first])
    assert b"part stored" in bob.run("rise-toss").stderr
    for bundle_id in second.stdout.decode().split():  # then g.bin comes
        shutil.move(aside / rx[bundle_id].name, rx[bundle_id])
    result = bob.run("rise-toss")
    assert result.stderr.count(b"deferred") == 4 and b"parts_max_bytes" in result.stderr
    waiting = sorted(path.stem for path in (bob.spool / "rx").rglob("*.rsb"))
    assert waiting == sorted(second.stdout.decode().split())  # kept, not lost
    # The rest expire: the reassembly is given up at their expiry.
    for path in (bob.spool / "rx").rglob("*.rsb"):
        shutil.move(path, aside / path.name)
    assert len(list((bob.spool / "parts").iterdir())) == 1
    home = _in_process(bob.home)
    try:
        events = toss.toss(home, now=int(time.time()) + 40 * 86400)
    finally:
        home.close()
    assert [event.action for event in events] == ["given up"]
    assert events[0].reason == "f.bin from alice: 1 of 4 parts came before they expired"
    assert list((bob.spool / "parts").iterdir()) == []


# -- kill -9 ---------------------------------------------------------------------------


def _parts_in_rx(base: Path, pair: tuple[Node, Node], data: bytes) -> None:
    alice, bob = pair
    (base / "f.bin").write_bytes(data)
    alice.run("rise-send", "-q", "--part-size", "64K", str(base / "f.bin"), "bob")
    stick = base / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))


def _toss_in_child(bob_home: Path, at: int) -> bool:
    """rise-toss's work in a forked child, SIGKILLed just before write step `at`."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            saved = parts.os
            with stepping(WriteSteps(at, _die, CRASH_STEPS | {"pwrite"})) as steps:
                parts.os = steps  # type: ignore[assignment]
                home = Home.open(bob_home)
                toss.toss(home, now=int(time.time()))
                home.close()
            parts.os = saved
            code = 0
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the toss failed without a crash"
    return False


@pytest.mark.slow
@pytest.mark.parametrize("incoming", ["beside", "across"])
def test_kill_toss_before_every_write_step(tmp_path: Path, incoming: str) -> None:
    """`across`: [toss] incoming on a tmpfs, so the file is copied over, not linked."""
    from tests.conftest import befriend, make_node

    data = random.Random(5).randbytes(200 * 1024)  # three parts of 64 KiB and one of 8
    template = tmp_path / "template"
    template.mkdir()
    pair = (make_node(template, "alice"), make_node(template, "bob"))
    befriend(*pair)
    _parts_in_rx(template, pair, data)
    with contextlib.ExitStack() as stack:
        other = None
        if incoming == "across":
            other = stack.enter_context(mounted_tmpfs(tmp_path / "other", size="64m"))
        for at in range(1, 400):
            base = tmp_path / f"at{at}"
            shutil.copytree(template, base, symlinks=True)
            bob = Node("bob", base / "bob", pair[1].node_id)
            folder = bob.incoming
            if other is not None:
                folder = other / f"at{at}"
                config = bob.home / "config.toml"
                text = config.read_text().replace("[toss]\n", f'[toss]\nincoming = "{folder}"\n')
                config.write_text(text)
            crashed = _toss_in_child(bob.home, at)
            bob.run("rise-toss", "-q")
            bob.run("rise-toss", "-q")  # nothing left to do, nothing delivered again
            assert sorted(path.name for path in (folder / "alice").iterdir()) == ["f.bin"], at
            assert (folder / "alice" / "f.bin").read_bytes() == data, at
            assert not list((bob.spool / "rx").rglob("*.rsb")), at
            bob.run("rise-check")
            shutil.rmtree(base)
            if other is not None:
                shutil.rmtree(folder)
            if not crashed:
                assert at > 10
                return
    raise AssertionError("the toss never finished")


KILLS = 12


def test_kill_rise_toss_at_random_moments(tmp_path: Path) -> None:
    """rise-toss SIGKILLed while it reassembles and delivers a split file, at moments
    placed within what a run takes here and now (test_crash.Killer: a fixed span of
    time would miss a toss that got faster); the next toss finishes it, once."""
    from tests.conftest import befriend, make_node
    from tests.e2e.test_crash import Killer, timed

    rng = random.Random(6)
    data = rng.randbytes(3 * MIB + 5)
    template = tmp_path / "template"
    template.mkdir()
    pair = (make_node(template, "alice"), make_node(template, "bob"))
    befriend(*pair)
    (template / "f.bin").write_bytes(data)
    pair[0].run("rise-send", "-q", "--part-size", "1MiB", str(template / "f.bin"), "bob")
    stick = template / "stick"
    stick.mkdir()
    pair[0].run("rise-xfer", "-q", str(stick))
    pair[1].run("rise-xfer", "-q", str(stick))
    killer: Killer | None = None
    for attempt in range(200):  # bounded; the kills land within a run's span
        if killer is not None and killer.kills >= KILLS:
            break
        base = tmp_path / f"kill{attempt}"
        shutil.copytree(template, base, symlinks=True)
        bob = Node("bob", base / "bob", pair[1].node_id)
        if killer is None:  # the first, timed run tosses all four parts: the span to aim in
            killer = Killer(rng, timed("rise-toss", "-q", home=bob.home), work_seconds=0.1)
        else:
            outcome = killer.run("rise-toss", "-q", home=bob.home)
            assert outcome.status in {None, 0}, outcome.stderr
            bob.run("rise-toss", "-q")
        assert delivered(bob) == [bob.incoming / "alice" / "f.bin"]
        assert (bob.incoming / "alice" / "f.bin").read_bytes() == data
        bob.run("rise-check")
        shutil.rmtree(base)
    assert killer is not None and killer.kills >= KILLS


def test_content_kind_part_is_five() -> None:
    assert ContentKind.PART == 5


def test_part_sizes_that_cannot_work_are_usage_errors(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, _bob = pair
    make_file(tmp_path / "f.bin", 65 * 65536 + 1, 7)
    small = alice.run("rise-send", "--part-size", "1K", str(tmp_path / "f.bin"), "bob", check=False)
    assert small.returncode == ExitCode.USAGE
    assert small.stderr.decode().strip().endswith("--part-size must be at least 64.0 KiB")
    # A file needing more than 65,536 parts: refused before anything is queued.
    sparse = tmp_path / "huge.bin"
    with open(sparse, "wb") as handle:
        handle.truncate(65537 * 65536)
    many = alice.run("rise-send", "--part-size", "64K", str(sparse), "bob", check=False)
    assert many.returncode == ExitCode.USAGE
    assert b"makes 65537 parts (at most 65536); use a larger --part-size" in many.stderr
    assert not list((alice.spool / "tx").rglob("*.rsb"))
    # A file no larger than the part size goes as one ordinary bundle.
    one = alice.run("rise-send", "--part-size", "10MiB", str(tmp_path / "f.bin"), "bob")
    assert len(one.stdout.split()) == 1


def test_parts_over_two_relays_each_on_its_own_route(tmp_path: Path) -> None:
    """--hops with --part-size: each part an onion packet; b reassembles, a gets receipts."""
    from tests.e2e.relay_network import Network, digest
    from tests.e2e.test_relays import DIAMOND

    net = Network.build(tmp_path, **DIAMOND, index_urls=lambda _name: None)  # type: ignore[arg-type]
    source = tmp_path / "routed.bin"
    data = make_file(source, 5 * 65536 + 99, 8)
    sent = net.send("a", "b", source, options=("--hops", "2", "--part-size", "64K"))
    bundle_ids = sent.stdout.decode().split()
    assert len(bundle_ids) == 6
    net.settle(real=True)
    net.assert_quiet()
    assert net.incoming("b", "a") == {"routed.bin": digest(data)}
    status = net.status("a")
    assert all(status[bundle_id]["state"] == "delivered" for bundle_id in bundle_ids)


def test_a_pipe_with_a_name_is_split_too(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, bob = pair
    data = random.Random(9).randbytes(200 * 1024)
    sent = alice.run("rise-send", "--name", "p.bin", "--part-size", "64K", "-", "bob", input=data)
    assert len(sent.stdout.split()) == 4
    small = alice.run("rise-send", "--name", "s.bin", "--part-size", "64K", "-", "bob", input=b"s")
    assert len(small.stdout.split()) == 1
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    assert (bob.incoming / "alice" / "p.bin").read_bytes() == data
    assert (bob.incoming / "alice" / "s.bin").read_bytes() == b"s"
    assert not list((alice.spool / "tmp").iterdir())  # the staging file had no name


@pytest.mark.slow
def test_parts_tossed_by_parallel_workers(pair: tuple[Node, Node], tmp_path: Path) -> None:
    """1,100 parts: enough for rise-toss to share them among worker processes, which then
    store parts of one file at once (each part under the reassembly's lock for its state)."""
    from rise_dtn.node.toss import parallel

    count = 1100
    assert count >= parallel.MIN_PARALLEL_JOBS
    if parallel.workers_for(count) < 2:
        pytest.skip("a single core: rise-toss would not use workers here")
    alice, bob = pair
    data = make_file(tmp_path / "many.bin", count * 65536 - 1000, 10)
    sent = alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "many.bin"), "bob")
    assert len(sent.stdout.split()) == count
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    bob.run("rise-toss", "-q")
    assert delivered(bob) == [bob.incoming / "alice" / "many.bin"]
    assert (bob.incoming / "alice" / "many.bin").read_bytes() == data
    assert not list((bob.spool / "rx").rglob("*.rsb"))


def test_incoming_on_another_filesystem(pair: tuple[Node, Node], tmp_path: Path) -> None:
    """[toss] incoming on a tmpfs: the reassembled file is copied across, then linked."""
    alice, bob = pair
    with mounted_tmpfs(tmp_path / "elsewhere", size="20m") as elsewhere:
        config = bob.home / "config.toml"
        config.write_text(
            config.read_text().replace("[toss]\n", f'[toss]\nincoming = "{elsewhere}"\n')
        )
        data = make_file(tmp_path / "f.bin", 300 * 1024, 11)
        alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "f.bin"), "bob")
        stick = tmp_path / "stick"
        stick.mkdir()
        alice.run("rise-xfer", "-q", str(stick))
        bob.run("rise-xfer", "-q", "--toss", str(stick))
        assert sorted(path.name for path in (elsewhere / "alice").iterdir()) == ["f.bin"]
        assert (elsewhere / "alice" / "f.bin").read_bytes() == data


def test_an_unreadable_reassembly_state_is_named_and_left_alone(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    _alice, bob = pair
    folder = bob.spool / "parts" / "someone-0123"
    folder.mkdir(parents=True)
    (folder / "state").write_text('{"name": "x"}')
    result = bob.run("rise-toss")
    assert b"someone-0123: left alone: " in result.stderr
    assert b"unreadable reassembly state" in result.stderr
    assert b"Traceback" not in result.stderr
    assert (folder / "state").exists()


def test_rise_check_lists_reassemblies_and_sets_a_damaged_one_aside(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """rise-check sees spool/parts/: a file half put together is a note; one whose stored
    parts can no longer be trusted (its data file cut short, a marker for a part it cannot
    have) is a problem, and --repair moves it to quarantine/ with its reason."""
    alice, bob = pair
    make_file(tmp_path / "video.bin", 300 * 1024, 4)
    alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "video.bin"), "bob")
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    for path in rsb_on(stick)[:2]:  # three of the five parts reach bob
        path.unlink()
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    checked = bob.run("rise-check")
    (folder,) = (bob.spool / "parts").iterdir()
    line = f"note: reassembling parts/{folder.name}: video.bin from alice: 3 of 5 parts"
    assert line.encode() in checked.stdout, checked.stdout
    shown = bob.run("rise-stat").stdout.decode()
    assert "receiving: video.bin from alice, 3 of 5 parts (300.0 KiB), expires in " in shown
    (receiving,) = json.loads(bob.run("rise-stat", "--json").stdout)["receiving"]
    assert receiving | {"expiry": 0} == {
        "name": "video.bin",
        "sender": "alice",
        "parts_in": 3,
        "parts": 5,
        "total_bytes": 300 * 1024,
        "expiry": 0,
    }

    (folder / "have" / "9").touch()  # part 9 of 5
    marked = bob.run("rise-check", check=False)
    assert marked.returncode == ExitCode.REJECTED
    assert b"marker(s) for parts it cannot have: 9" in marked.stdout, marked.stdout
    (folder / "have" / "9").unlink()

    os.truncate(folder / "data", 1000)
    cut = bob.run("rise-check", check=False)
    assert cut.returncode == ExitCode.REJECTED
    assert b"its data file holds 1000 bytes, not the 307200" in cut.stdout, cut.stdout
    repaired = bob.run("rise-check", "--repair", check=False)
    assert repaired.returncode == ExitCode.REJECTED  # found and repaired
    assert b"ask the sender to send the file again" in repaired.stdout
    assert not folder.exists()
    aside = bob.spool / "quarantine" / f"parts-{folder.name}"
    assert (aside / "data").stat().st_size == 1000  # kept as it was, for a look
    assert b"holds 1000 bytes" in aside.with_name(aside.name + ".reason").read_bytes()
    bob.run("rise-check")  # clean now
    # The two parts still to come start the file again; never a damaged delivery.
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    assert delivered(bob) == []
    os.truncate(folder / "data", 10)  # damaged again: set aside beside the first
    bob.run("rise-check", "--repair", check=False)
    assert (aside.with_name(aside.name + ".1") / "data").stat().st_size == 10
    assert (aside / "data").stat().st_size == 1000
    bob.run("rise-check")


def test_an_unreadable_reassembly_state_holds_up_no_other_file(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """One reassembly whose state cannot be read (a disk error, a hand edit) is named and
    left alone; a new split file and a whole file from the same stick are still delivered."""
    alice, bob = pair
    folder = bob.spool / "parts" / "someone-0123"
    folder.mkdir(parents=True)
    (folder / "state").write_text('{"name": "x"}')
    (folder / "data").write_bytes(b"\0" * 4096)
    data = make_file(tmp_path / "f.bin", 200 * 1024, 12)
    alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "f.bin"), "bob")
    (tmp_path / "whole.txt").write_text("whole\n")
    alice.run("rise-send", "-q", str(tmp_path / "whole.txt"), "bob")
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-xfer", "--toss", str(stick), check=False)
    assert b"Traceback" not in result.stderr
    assert b"someone-0123: left alone: " in result.stderr, result.stderr
    assert [path.name for path in delivered(bob)] == ["f.bin", "whole.txt"]
    assert (bob.incoming / "alice" / "f.bin").read_bytes() == data
    assert (folder / "state").read_text() == '{"name": "x"}'  # left alone


def test_parts_of_a_reassembly_whose_state_went_bad_wait_and_hold_up_nothing(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """The state of a reassembly under way becomes unreadable: its later parts wait in rx/
    (deferred, one line each), while a whole file on the same stick is delivered."""
    alice, bob = pair
    make_file(tmp_path / "f.bin", 200 * 1024, 13)
    alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "f.bin"), "bob")
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    rx = sorted((bob.spool / "rx").rglob("*.rsb"))
    for path in rx[1:]:
        shutil.move(path, tmp_path / path.name)
    bob.run("rise-toss", "-q")
    (state,) = (bob.spool / "parts").glob("*/state")
    state.write_text("{")
    for path in rx[1:]:
        shutil.move(tmp_path / path.name, path)
    (tmp_path / "whole.txt").write_text("whole\n")
    alice.run("rise-send", "-q", str(tmp_path / "whole.txt"), "bob")
    alice.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-xfer", "--toss", str(stick), check=False)
    assert b"Traceback" not in result.stderr
    assert delivered(bob) == [bob.incoming / "alice" / "whole.txt"], result.stderr
    deferred = [line for line in result.stderr.decode().splitlines() if ": deferred: " in line]
    assert len(deferred) == len(rx) - 1, result.stderr
    assert all("unreadable reassembly state" in line for line in deferred)
    assert len(list((bob.spool / "rx").rglob("*.rsb"))) == len(rx) - 1  # kept, not lost


def test_a_split_send_that_fails_half_way_takes_back_the_parts_it_queued(
    tmp_path: Path,
) -> None:
    """rise-send runs out of disk after two parts and says "retry when space returns": the
    two parts must not go (the recipient would reserve the whole file for a reassembly that
    never ends, beside the retry's), and the retry delivers the file once."""
    with mounted_tmpfs(tmp_path / "small", size="3m") as small:
        alice, bob = make_node(small, "alice"), make_node(tmp_path, "bob")
        befriend(alice, bob)
        data = make_file(tmp_path / "f.bin", 5 * MIB, 14)
        failed = alice.run(
            "rise-send", "-q", "--part-size", "1M", str(tmp_path / "f.bin"), "bob", check=False
        )
        assert failed.returncode == ExitCode.NO_SPACE, failed.stderr
        assert b"Traceback" not in failed.stderr
        assert list((alice.spool / "tx").rglob("*.rsb")) == []
        assert alice.run("rise", "queue").stdout.strip() == b""
        subprocess.run(["mount", "-o", "remount,size=20m", str(small)], check=True)
        alice.run("rise-send", "-q", "--part-size", "1M", str(tmp_path / "f.bin"), "bob")
        stick = tmp_path / "stick"
        stick.mkdir()
        alice.run("rise-xfer", "-q", str(stick))
        bob.run("rise-xfer", "-q", "--toss", str(stick))
        assert [path.read_bytes() == data for path in delivered(bob)] == [True]
        assert len(list((bob.spool / "parts").iterdir())) == 1  # no orphan reassembly


@pytest.mark.parametrize("split", [False, True])
def test_a_file_whose_name_is_not_utf8_is_refused_in_one_line(
    pair: tuple[Node, Node], tmp_path: Path, *, split: bool
) -> None:
    """A name from an old Latin-1 disk ("caf\\xe9.txt") cannot travel as the text a bundle's
    name is: a usage error that says how to send it (--name), nothing queued. It was an
    internal error (UnicodeEncodeError) once the name reached the metadata's encoder."""
    alice, _bob = pair
    path = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.bin")
    Path(path).write_bytes(b"x" * 200 * 1024)
    size = ["--part-size", "64K"] if split else []
    refused = alice.run("rise-send", "-q", *size, path, "bob", check=False)
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    (line,) = refused.stderr.decode().splitlines()
    assert "not UTF-8" in line and "--name" in line, line
    assert list((alice.spool / "tx").rglob("*.rsb")) == []
    alice.run("rise-send", "-q", *size, "--name", "cafe.bin", path, "bob")
    assert list((alice.spool / "tx").rglob("*.rsb"))


def test_a_file_that_grows_while_it_is_split_is_refused_as_a_whole_send_is(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """A log file appended to while rise-send cuts it: a whole send says the file changed
    size; a split one sent its first bytes as if complete, in silence. Now it says so too,
    and takes back the parts it queued."""
    alice, _bob = pair
    path = tmp_path / "growing.log"
    make_file(path, 300 * 1024, 15)
    home = _in_process(alice.home)
    appended = []

    def grow(_count: int) -> None:
        if not appended:
            with open(path, "ab") as log:
                log.write(b"one more line\n")
            appended.append(True)

    try:
        with open(path, "rb") as handle, pytest.raises(StorageError, match="changed size"):
            split.queue_parts(
                home,
                home.peers.find("bob"),
                handle,
                options=send.SendOptions(name="growing.log"),
                part_bytes=64 * 1024,
                now=int(time.time()),
                progress=grow,
            )
    finally:
        home.close()
    assert appended
    assert list((alice.spool / "tx").rglob("*.rsb")) == []


@pytest.mark.parametrize("wait", [False, True])
def test_a_split_send_over_relays_that_fails_takes_back_every_copy(
    tmp_path: Path, *, wait: bool
) -> None:
    """The take-back of a failed split send over relays: each part's copies leave the
    first hops' tx/, and with --wait and no route, what was held goes too."""
    from rise_dtn.node.send.options import RouteOptions
    from tests.e2e.relay_network import Network, opened
    from tests.e2e.test_relays import DIAMOND

    net = Network.build(tmp_path, **DIAMOND, index_urls=lambda _name: None)  # type: ignore[arg-type]
    path = tmp_path / "growing.bin"
    make_file(path, 4 * 65536, 16)
    grown = []

    def grow(_count: int) -> None:
        if not grown:
            with open(path, "ab") as handle:
                handle.write(b"more")
            grown.append(True)

    # Five relays: no such route in the diamond, so with --wait each part is held.
    route = RouteOptions(hops=5 if wait else 2, wait=wait)
    with (
        opened(net["a"]) as home,
        open(path, "rb") as handle,
        pytest.raises(StorageError, match="changed size"),
    ):
        split.queue_parts(
            home,
            home.peers.find("b"),
            handle,
            options=send.SendOptions(name="growing.bin"),
            part_bytes=64 * 1024,
            now=int(time.time()),
            progress=grow,
            route=route,
            rng=random.Random(3),
        )
    assert grown
    assert list((net["a"].spool / "tx").rglob("*.rsb")) == []
    held = net["a"].spool / "held"
    assert not held.exists() or list(held.iterdir()) == []
    assert net["a"].run("rise", "queue").stdout.strip() == b""


@pytest.mark.parametrize("lost", ["data", "have"])
def test_a_reassembly_that_lost_its_data_file_holds_up_nothing(
    pair: tuple[Node, Node], tmp_path: Path, lost: str
) -> None:
    """Its data file or its markers gone (a clean-up by hand, a damaged disk): rise-check
    names it and --repair sets it aside; meanwhile a toss defers that file's parts with a
    line and delivers everything else. It stopped with "reassembling failed: No such file
    or directory" (exit 1) before anything was delivered."""
    alice, bob = pair
    make_file(tmp_path / "f.bin", 200 * 1024, 17)
    alice.run("rise-send", "-q", "--part-size", "64K", str(tmp_path / "f.bin"), "bob")
    stick = tmp_path / "stick"
    stick.mkdir()
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    rx = sorted((bob.spool / "rx").rglob("*.rsb"))
    for path in rx[1:]:
        shutil.move(path, tmp_path / path.name)
    bob.run("rise-toss", "-q")
    (gone,) = (bob.spool / "parts").glob(f"*/{lost}")
    if gone.is_dir():
        shutil.rmtree(gone)
    else:
        gone.unlink()
    for path in rx[1:]:
        shutil.move(tmp_path / path.name, path)
    alice.run("rise-send", "-q", "-", "bob", input=b"still comes")
    alice.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-xfer", "--toss", str(stick), check=False)
    assert b"Traceback" not in result.stderr
    assert [path.read_bytes() for path in (bob.home / "inbox").glob("*.msg")] == [b"still comes"]
    deferred = [line for line in result.stderr.decode().splitlines() if ": deferred: " in line]
    assert len(deferred) == len(rx) - 1, result.stderr
    assert all("has lost its" in line for line in deferred), deferred
    assert len(list((bob.spool / "rx").rglob("*.rsb"))) == len(rx) - 1  # kept, not lost
