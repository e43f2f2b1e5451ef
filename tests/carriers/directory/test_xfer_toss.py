"""`rise-xfer --toss` in one pass: a bundle for this node is delivered as it is read off the
stick, with no copy in rx/; a damaged one is quarantined as it is read (its first MiB), never
copied whole into rx/ first."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from rise_dtn.carriers.directory import xfer
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.identity import NodeId
from rise_dtn.core.progress import Progress
from rise_dtn.node.home import Home
from rise_dtn.node.toss import toss
from rise_dtn.node.toss.toss_events import Source, TossEvent
from rise_dtn.store.atomic import copy_file
from rise_dtn.store.spool import parse_clear_file
from tests.carriers.live.test_link import make_pair, queue

MIB = 1 << 20


def streaming(home: Home, events: list[TossEvent]) -> xfer.Stream:
    def stream(clear: ClearPart, neighbour: NodeId, source: Source) -> toss.Streamed:
        return toss.deliver_streamed(
            home, clear, neighbour, source, now=int(time.time()), on_event=events.append
        )

    return stream


def test_a_bundle_for_us_is_delivered_off_the_stick_without_a_copy_in_rx(tmp_path: Path) -> None:
    alice, bob = make_pair(tmp_path)
    payload = bytes(range(256)) * (3 * MIB // 256 + 7)  # several sealed chunks
    queue(alice, "bob", payload, "big.bin")
    stick = tmp_path / "stick"
    stick.mkdir()
    xfer.exchange(alice, stick, move=False, now=int(time.time()))
    events: list[TossEvent] = []
    # No toss step at all: only the one-pass delivery can put the file in incoming/.
    now = int(time.time())
    report = xfer.exchange(bob, stick, move=False, now=now, stream=streaming(bob, events))
    assert report.received == 1 and report.rejected == []
    (delivered,) = events
    assert isinstance(delivered, toss.Delivered)
    assert (bob.incoming_dir("alice") / "big.bin").read_bytes() == payload
    assert not list(bob.spool.rx.rglob("*.rsb"))
    assert bob.index.held_bytes("rx", str(alice.identity.node_id)) == 0  # never listed in rx
    # The ack left with this very exchange, and the copy on the stick went with it.
    assert not list(stick.rglob("*.rsb"))
    assert len(list(stick.rglob("*.rsa"))) == 1
    back = xfer.exchange(alice, stick, move=False, now=int(time.time()))
    assert back.released == 1
    assert not list(alice.spool.tx.rglob("*.rsb"))


def test_a_bundle_damaged_on_the_stick_is_quarantined_as_read_not_copied_whole(
    tmp_path: Path,
) -> None:
    """The one-pass toss proves it bad: it is not copied whole into rx/ only to be
    quarantined there (a stick's holder could fill the spool so), but quarantined at once,
    its first MiB, and taken off the stick; the sender's good copy then comes."""
    alice, bob = make_pair(tmp_path)
    payload = b"x" * (3 * MIB)
    queue(alice, "bob", payload, "damaged.bin")
    stick = tmp_path / "stick"
    stick.mkdir()
    xfer.exchange(alice, stick, move=False, now=int(time.time()))
    (on_stick,) = stick.rglob("*.rsb")
    data = bytearray(on_stick.read_bytes())
    data[-10] ^= 0x01  # in the last sealed chunk: found only at the end of the read
    on_stick.write_bytes(bytes(data))
    events: list[TossEvent] = []
    report = xfer.exchange(
        bob,
        stick,
        move=False,
        now=int(time.time()),
        stream=streaming(bob, events),
        toss=lambda: events.extend(toss.toss(bob, now=int(time.time()))),
    )
    assert report.received == 0  # never into rx/...
    (line,) = report.rejected  # ...rejected as it was read, with its reason
    assert line.startswith(on_stick.name) and "fails authentication" in line, line
    assert events == []  # the toss had nothing of it to quarantine
    assert bob.index.held_bytes("rx", str(alice.identity.node_id)) == 0
    assert not bob.incoming_dir("alice").exists() or not list(bob.incoming_dir("alice").iterdir())
    kept = bob.spool.quarantine_dir / on_stick.name
    assert kept.read_bytes() == bytes(data[:MIB])  # what it claimed to be, not what it weighs
    reason = kept.with_name(kept.name + ".reason").read_text()
    assert "fails authentication" in reason and f"(the first {MIB} of its {len(data)}" in reason
    assert not on_stick.exists()  # off the stick: alice writes her good copy again
    xfer.exchange(alice, stick, move=False, now=int(time.time()))
    report = xfer.exchange(
        bob, stick, move=False, now=int(time.time()), stream=streaming(bob, events)
    )
    assert report.rejected == [] and report.received == 1
    assert (bob.incoming_dir("alice") / "damaged.bin").read_bytes() == payload


class _CutWhileRead(Progress):
    """A medium's holder who truncates a bundle on the stick once its copy has begun
    (after the exchange checked its size: the first block moved)."""

    def __init__(self, victim: Path, *, keep: int) -> None:
        self.victim, self.keep, self.reading, self.done = victim, keep, "", False

    def started(self, lane: str, name: str, total_bytes: int, *, done_bytes: int = 0) -> None:
        self.reading = name

    def moved(self, lane: str, count: int) -> None:
        if not self.done and self.reading == self.victim.name:
            self.done = True
            os.truncate(self.victim, self.keep)


# Larger than one step of a kernel copy (store/atomic.py COPY_BLOCK_BYTES): the file
# is cut between two steps of the copy into rx/, or between two chunks of a delivery.
CUT_BUNDLE_BYTES = 9 * MIB


@pytest.mark.parametrize("stream", [False, True])
def test_a_bundle_cut_short_while_it_is_read_is_refused_and_the_rest_go_on(
    tmp_path: Path, *, stream: bool
) -> None:
    """The stick's file shrinks after the exchange checked its size (a shared directory's
    other user, a medium's holder): one line for it, and every other bundle still comes."""
    alice, bob = make_pair(tmp_path)
    big = os.urandom(CUT_BUNDLE_BYTES)
    queue(alice, "bob", big, "big.bin")
    for number in range(3):
        queue(alice, "bob", f"small {number}".encode(), f"small{number}.txt")
    stick = tmp_path / "stick"
    stick.mkdir()
    xfer.exchange(alice, stick, move=False, now=int(time.time()))
    victim = max(stick.rglob("*.rsb"), key=lambda path: path.stat().st_size)
    events: list[TossEvent] = []
    hostile = _CutWhileRead(victim, keep=2 * MIB)
    report = xfer.exchange(
        bob,
        stick,
        move=False,
        now=int(time.time()),
        stream=streaming(bob, events) if stream else None,
        toss=lambda: events.extend(toss.toss(bob, now=int(time.time()))),
        progress=hostile,
    )
    assert hostile.done
    (line,) = report.rejected
    assert line.startswith(victim.name) and "changed while it was read" in line, line
    assert sorted(path.name for path in bob.incoming_dir("alice").iterdir()) == [
        "small0.txt",
        "small1.txt",
        "small2.txt",
    ]
    assert not list(bob.spool.rx.rglob("*.rsb"))
    assert not [path for path in bob.spool.tmp.rglob("*") if path.is_file()]  # no half copy
    # Quarantined (a part of it, as any bundle rejected off a stick), and off the stick,
    # so that alice's good copy goes out again.
    assert (bob.spool.quarantine_dir / victim.name).exists()
    assert not victim.exists()
    back = xfer.exchange(alice, stick, move=False, now=int(time.time()))
    assert back.released == 3 and back.sent == 1  # the good copy, written again
    xfer.exchange(bob, stick, move=False, now=int(time.time()), stream=streaming(bob, events))
    assert (bob.incoming_dir("alice") / "big.bin").read_bytes() == big


class _AnotherExchange(Progress):
    """A second `rise-xfer` of the same stick (a second cron job, a double click) that
    takes the bundle into rx/ the usual way while this one delivers it off the stick: its
    copy has its name in rx/, and its index row comes once this delivery is done."""

    def __init__(self, home: Path, stick_copy: Path) -> None:
        self.home, self.stick_copy = home, stick_copy
        self.linked, self.go = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._admit)
        self.taken: list[bool] = []

    def moved(self, lane: str, count: int) -> None:
        if not self.thread.is_alive() and not self.linked.is_set():
            self.thread.start()
            assert self.linked.wait(60)

    def _admit(self) -> None:
        other = Home.open(self.home)
        try:
            with open(self.stick_copy, "rb") as source:
                clear, size = parse_clear_file(source)

                def write(target: Path) -> int:
                    held = copy_file(
                        source, size, target, tmp_dir=other.spool.tmp, what="", hold=True
                    )
                    self.linked.set()
                    assert self.go.wait(60)  # its row is written once the delivery is done
                    return held

                neighbour = other.peers.find("alice").node_id
                admitted = other.bundles.admit(
                    clear, size, neighbour, now=int(time.time()), write=write
                )
                self.taken.append(admitted.taken)
        finally:
            other.close()


def test_a_copy_taken_into_rx_by_another_exchange_meanwhile_is_not_lost_track_of(
    tmp_path: Path,
) -> None:
    """Two `rise-xfer --toss` of one stick at once: one delivers the bundle off the stick
    while the other stores a copy in rx/. The delivery removed the file at the rx/ path it
    never wrote (the other's copy), leaving an index row for a file that was gone: a
    receive quota short of its size for ever, rise-check's 'the file is gone', and a
    received bundle in `rise queue` that was not there."""
    alice, bob = make_pair(tmp_path)
    payload = os.urandom(3 * MIB)
    queue(alice, "bob", payload, "big.bin")
    stick = tmp_path / "stick"
    stick.mkdir()
    xfer.exchange(alice, stick, move=False, now=int(time.time()))
    (on_stick,) = stick.rglob("*.rsb")
    events: list[TossEvent] = []
    other = _AnotherExchange(bob.path, on_stick)
    try:
        xfer.exchange(
            bob,
            stick,
            move=False,
            now=int(time.time()),
            stream=streaming(bob, events),
            progress=other,
        )
    finally:
        other.go.set()
        other.thread.join(60)
    assert other.taken == [True]
    assert [type(event) for event in events] == [toss.Delivered]
    alice_id = str(alice.identity.node_id)
    rx_files = list(bob.spool.rx.rglob("*.rsb"))
    assert bob.index.held_bytes("rx", alice_id) == sum(path.stat().st_size for path in rx_files)
    # The other exchange's toss finds its copy a duplicate: dropped, nothing left listed.
    (again,) = toss.toss(bob, now=int(time.time()))
    assert isinstance(again, toss.Rejected) and again.action == "dropped"
    assert bob.index.held_bytes("rx", alice_id) == 0
    assert not list(bob.spool.rx.rglob("*.rsb"))
    assert (bob.incoming_dir("alice") / "big.bin").read_bytes() == payload
    assert len(list(bob.incoming_dir("alice").iterdir())) == 1
