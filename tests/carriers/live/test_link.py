"""A live session between two real nodes over real sockets, including a cut link."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
import time
from pathlib import Path

import pytest

from rise_dtn.carriers.live import link as link_module
from rise_dtn.carriers.live import secure
from rise_dtn.carriers.live.link import Link, LinkReport, Stream
from rise_dtn.core import handshake
from rise_dtn.core import session as session_module
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.errors import NoSpaceError, PeerError
from rise_dtn.core.identity import NodeId
from rise_dtn.core.progress import Progress
from rise_dtn.node.home import Home
from rise_dtn.node.send import send
from rise_dtn.node.toss import toss
from rise_dtn.node.toss.toss_events import Source


def make_pair(base: Path) -> tuple[Home, Home]:
    now = int(time.time())
    alice = Home.create(base / "alice", name="alice")
    bob = Home.create(base / "bob", name="bob")
    alice.peers.add(bob.card(now=now), name=None, self_id=alice.identity.node_id, replace=False)
    bob.peers.add(alice.card(now=now), name=None, self_id=bob.identity.node_id, replace=False)
    return alice, bob


def queue(sender: Home, to: str, payload: bytes, name: str) -> None:
    options = send.SendOptions(name=name)
    send.queue(
        sender, sender.peers.find(to), io.BytesIO(payload), options=options, now=int(time.time())
    )


async def session(
    alice: Home,
    bob: Home,
    *,
    cut_after: int | None = None,
    stream: Stream | None = None,
    push: bool | str = False,
) -> tuple[LinkReport | None, LinkReport | None]:
    """Run both ends over a socket pair; optionally a relay that cuts the link. `push`:
    both ends take PUSH, as two current nodes' handshakes tell them (secure.py)."""
    a_sock, a_far = socket.socketpair()
    b_sock, b_far = socket.socketpair()
    a_reader, a_writer = await asyncio.open_connection(sock=a_sock)
    b_reader, b_writer = await asyncio.open_connection(sock=b_sock)
    far_a = await asyncio.open_connection(sock=a_far)
    far_b = await asyncio.open_connection(sock=b_far)
    budget = [cut_after if cut_after is not None else 1 << 62]

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if len(data) >= budget[0]:
                writer.write(data[: budget[0]])
                budget[0] = 0
                await writer.drain()
                for far in (far_a[1], far_b[1]):
                    far.close()
                return
            budget[0] -= len(data)
            writer.write(data)
            await writer.drain()
        writer.close()

    now = int(time.time())
    left = Link(alice, alice.peers.find("bob"), now=now)
    right = Link(bob, bob.peers.find("alice"), now=now, stream=stream)
    # push: False offers everything; True pushes small bundles; "short" in the short form.
    left.peer_takes_push = right.peer_takes_push = bool(push)
    left.peer_takes_short_push = right.peer_takes_short_push = push == "short"
    relays = [
        asyncio.create_task(forward(far_a[0], far_b[1])),
        asyncio.create_task(forward(far_b[0], far_a[1])),
    ]

    async def end(
        link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> LinkReport | None:
        try:
            report = await link.run(reader, writer)
        except (ConnectionError, OSError):
            return None
        writer.close()
        return report

    results = await asyncio.wait_for(
        asyncio.gather(end(left, a_reader, a_writer), end(right, b_reader, b_writer)), timeout=60
    )
    for task in relays:
        task.cancel()
    return results


def delivered(home: Home) -> dict[str, bytes]:
    toss.toss(home, now=int(time.time()))
    folder = home.incoming_dir("alice")
    return {path.name: hashlib.sha256(path.read_bytes()).digest() for path in folder.iterdir()}


@pytest.mark.parametrize("push", [False, True, "short"])
def test_session_moves_everything_both_ways(tmp_path: Path, push: bool | str) -> None:
    alice, bob = make_pair(tmp_path)
    payloads = {
        "big.bin": os.urandom(3 * (1 << 20) + 5),
        "small.txt": b"hi",
        "mid": os.urandom(70_000),
    }
    for name, payload in payloads.items():
        queue(alice, "bob", payload, name)
    queue(bob, "alice", b"reply", "reply.txt")
    left, right = asyncio.run(session(alice, bob, push=push))
    assert left is not None and right is not None
    assert left.released == 3 and right.received == 3
    assert right.released == 1 and left.received == 1
    assert delivered(bob) == {name: hashlib.sha256(p).digest() for name, p in payloads.items()}
    assert not list(alice.spool.tx.rglob("*.rsb"))


@pytest.mark.parametrize("push", [False, True, "short"])
@pytest.mark.parametrize("cut_after", [10, 5000, 1_500_000, 3_000_000])
def test_cut_link_resumes_and_delivers_once(
    tmp_path: Path, cut_after: int, push: bool | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "CHECKPOINT_BYTES", 256 * 1024)  # resume points in 3 MiB
    alice, bob = make_pair(tmp_path)
    payload = os.urandom(3 * (1 << 20) + 5)
    queue(alice, "bob", payload, "big.bin")
    queue(alice, "bob", b"second", "second.txt")
    asyncio.run(session(alice, bob, cut_after=cut_after, push=push))
    partial_dir = bob.spool.tmp / "partial"
    partial = [path.stat().st_size for path in partial_dir.rglob("*.part")]
    durable = [int(path.read_text()) for path in partial_dir.rglob("*.part.ok")]
    if 300_000 < cut_after < len(payload):
        assert durable and 0 < max(durable) <= max(partial) < len(payload)  # a mid-bundle cut
    left, right = asyncio.run(session(alice, bob, push=push))  # the next call resumes
    assert left is not None and right is not None
    bundles = sum(path.stat().st_size for path in bob.spool.rx.rglob("*.rsb"))
    if not push:  # (with push, "second" may have been pushed and confirmed before the cut)
        assert left.sent_bytes == bundles - sum(durable)  # only what was not durable again
    got = delivered(bob)
    assert got == {
        "big.bin": hashlib.sha256(payload).digest(),
        "second.txt": hashlib.sha256(b"second").digest(),
    }
    assert not list(alice.spool.tx.rglob("*.rsb"))
    assert not list((bob.spool.tmp / "partial").rglob("*.part"))


def test_silent_neighbour_is_cut_off(tmp_path: Path) -> None:
    alice, _bob = make_pair(tmp_path)

    async def scenario() -> None:
        mine, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=mine)
        link = Link(alice, alice.peers.find("bob"), now=int(time.time()), idle_seconds=0.3)
        with pytest.raises(PeerError, match="sent nothing"):
            await asyncio.wait_for(link.run(reader, writer), timeout=10)
        writer.close()
        theirs.close()

    asyncio.run(scenario())


def test_rate_limit_slows_a_neighbour_down(tmp_path: Path) -> None:
    """[peers.bob] max_rate caps what we send to bob: 2 MiB at 1 MiB/s takes over a second."""
    alice, bob = make_pair(tmp_path)
    config = alice.path / "config.toml"
    config.write_text(config.read_text() + '\n[peers.bob]\nmax_rate = "1M"\n')
    alice = Home.open(alice.path)  # reload the config
    queue(alice, "bob", os.urandom(2 * (1 << 20)), "paced.bin")
    started = time.monotonic()
    left, right = asyncio.run(session(alice, bob))
    elapsed = time.monotonic() - started
    assert left is not None and right is not None and right.received == 1
    # The bucket starts full (1 s of burst), so 2 MiB needs at least ~1 s more.
    assert elapsed >= 0.9


def test_rate_setting_is_checked() -> None:
    from rise_dtn.core.errors import UsageError
    from rise_dtn.node.config import parse_rate

    assert parse_rate("2M") == 2 * 1024 * 1024
    assert parse_rate(4096) == 4096
    for bad in ("fast", "10", "1P", "-2M", True):
        with pytest.raises(UsageError):
            parse_rate(bad)


def test_more_bundles_than_offers_out_all_go_in_one_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay holding more than a receiver tracks offers them a window at a time."""
    monkeypatch.setattr(link_module, "MAX_OFFERS_OUT", 3)
    alice, bob = make_pair(tmp_path)
    payloads = {f"m{number}.txt": os.urandom(100 + number) for number in range(10)}
    for name, payload in payloads.items():
        queue(alice, "bob", payload, name)
    left, right = asyncio.run(session(alice, bob, push=True))
    assert left is not None and right is not None
    assert left.released == right.received == 10
    assert delivered(bob) == {name: hashlib.sha256(p).digest() for name, p in payloads.items()}


def streaming(home: Home, events: list[toss.TossEvent]) -> Stream:
    """Bob's delivery-while-receiving, as rise-daemon wires it (in a thread)."""

    async def stream(clear: ClearPart, neighbour: NodeId, source: Source) -> toss.Streamed:
        return await asyncio.to_thread(
            toss.deliver_streamed,
            home,
            clear,
            neighbour,
            source,
            now=int(time.time()),
            on_event=events.append,
        )

    return stream


def test_a_large_bundle_is_delivered_while_it_arrives(tmp_path: Path) -> None:
    alice, bob = make_pair(tmp_path)
    payload = os.urandom(link_module.STREAM_BYTES + 3 * (1 << 20) + 7)
    queue(alice, "bob", payload, "big.bin")
    events: list[toss.TossEvent] = []
    left, right = asyncio.run(session(alice, bob, stream=streaming(bob, events)))
    assert left is not None and right is not None and left.released == 1
    assert [type(event).__name__ for event in events] == ["Delivered"]
    assert (bob.incoming_dir("alice") / "big.bin").read_bytes() == payload
    # Delivered already: nothing waits in rx/ or in partial/, and a toss finds nothing.
    assert not list(bob.spool.rx.rglob("*.rsb"))
    assert not list((bob.spool.tmp / "partial").rglob("*.part*"))
    assert toss.toss(bob, now=int(time.time())) == []


@pytest.mark.parametrize("form", [True, "short"])
def test_a_pushed_message_is_delivered_from_its_frame_then_confirmed(
    tmp_path: Path, form: bool | str
) -> None:
    """A pushed bundle for bob goes straight from the frame to his inbox (nothing in rx/ or
    partial/ first), delivered once; pushed again (alice missed STORED) it is confirmed by
    its id and not delivered twice."""
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"over the radio", "note.txt")
    (note,) = alice.spool.tx.rglob("*.rsb")
    kept = note.read_bytes()
    events: list[toss.TossEvent] = []
    left, right = asyncio.run(session(alice, bob, push=form, stream=streaming(bob, events)))
    assert left is not None and right is not None
    assert left.released == right.received == 1
    assert [type(event).__name__ for event in events] == ["Delivered"]
    assert (bob.incoming_dir("alice") / "note.txt").read_bytes() == b"over the radio"
    assert not list(bob.spool.rx.rglob("*.rsb"))
    assert not list((bob.spool.tmp / "partial").rglob("*.part*"))
    note.write_bytes(kept)
    left, right = asyncio.run(session(alice, bob, push=form, stream=streaming(bob, events)))
    assert left is not None and right is not None
    assert left.released == 1 and right.received == 0
    assert len(events) == 1
    assert toss.toss(bob, now=int(time.time())) == []
    assert not list(alice.spool.tx.rglob("*.rsb"))


def test_a_pushed_bundle_the_stream_will_not_take_goes_the_ordinary_way(tmp_path: Path) -> None:
    """A pushed message whose chunk is damaged: not delivered from the frame, so kept in
    rx/ and confirmed as ever; the toss quarantines it and says why."""
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"over the radio", "note.txt")
    (note,) = alice.spool.tx.rglob("*.rsb")
    damaged = bytearray(note.read_bytes())
    damaged[-20] ^= 1
    note.write_bytes(bytes(damaged))
    events: list[toss.TossEvent] = []
    left, right = asyncio.run(session(alice, bob, push="short", stream=streaming(bob, events)))
    assert left is not None and right is not None and left.released == 1
    assert events == []
    (rejected,) = toss.toss(bob, now=int(time.time()))
    assert isinstance(rejected, toss.Rejected) and rejected.action == "quarantined"


def test_a_bad_chunk_stops_the_stream_and_the_copy(tmp_path: Path) -> None:
    """The delivery streamed while it arrives proves the bundle bad: what arrived of it is
    quarantined (its first MiB), the rest is not kept, nothing waits in rx/ for a toss,
    and STORED settles it (the neighbour is authenticated: again would not help)."""
    alice, bob = make_pair(tmp_path)
    payload = os.urandom(link_module.STREAM_BYTES + (1 << 20))
    queue(alice, "bob", payload, "big.bin")
    (bundle,) = alice.spool.tx.rglob("*.rsb")
    with open(bundle, "r+b") as handle:  # a byte in a middle chunk
        handle.seek(bundle.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 1]))
    events: list[toss.TossEvent] = []
    left, right = asyncio.run(session(alice, bob, stream=streaming(bob, events)))
    assert left is not None and right is not None and left.released == 1
    assert events == []
    (line,) = right.rejected
    assert line.startswith(bundle.stem) and "fails authentication" in line, line
    assert not list(bob.spool.rx.rglob("*.rsb"))  # never copied whole into rx/
    assert toss.toss(bob, now=int(time.time())) == []
    assert not list((bob.spool.tmp / "partial").rglob("*.part*"))
    # Under the bundle's own name, as rise-stat counts it (not its partial copy's name).
    ((kept, reason),) = bob.spool.quarantined()
    assert kept.name == bundle.name and "fails authentication" in reason
    assert kept.stat().st_size <= 1 << 20
    reason = kept.with_name(kept.name + ".reason").read_text()
    assert "fails authentication" in reason and reason.count("\n") == 1
    incoming = bob.incoming_dir("alice")
    assert not incoming.exists() or not list(incoming.iterdir())  # no file, no tmp left


def test_a_cut_stream_delivers_nothing_and_the_next_session_delivers_once(
    tmp_path: Path,
) -> None:
    alice, bob = make_pair(tmp_path)
    payload = os.urandom(link_module.STREAM_BYTES + (2 << 20))
    queue(alice, "bob", payload, "big.bin")
    events: list[toss.TossEvent] = []
    asyncio.run(session(alice, bob, cut_after=5 << 20, stream=streaming(bob, events)))
    assert events == []
    incoming = bob.incoming_dir("alice")
    assert not incoming.exists() or not list(incoming.iterdir())
    left, right = asyncio.run(session(alice, bob, stream=streaming(bob, events)))
    assert left is not None and right is not None and left.released == 1
    assert delivered(bob) == {"big.bin": hashlib.sha256(payload).digest()}


def test_a_partial_copy_larger_than_the_offer_starts_again_and_stale_ones_go(
    tmp_path: Path,
) -> None:
    """A copy under the bundle's id that cannot be it (longer than offered, its checkpoint
    vouching for all of it) is started again from 0; a stale one of another bundle goes."""
    alice, bob = make_pair(tmp_path)
    payload = os.urandom(300_000)
    queue(alice, "bob", payload, "fresh.bin")
    (path,) = alice.spool.tx.rglob("*.rsb")
    folder = bob.spool.tmp / "partial" / str(alice.identity.node_id)
    folder.mkdir(parents=True)
    wrong = folder / path.name.replace(".rsb", ".part")
    wrong.write_bytes(os.urandom(path.stat().st_size + 10))
    wrong.with_name(wrong.name + ".ok").write_text(f"{path.stat().st_size + 10}\n")
    stale = folder / ("a" * 26 + ".part")
    stale.write_bytes(b"x" * 1000)
    week_ago = time.time() - 8 * 86400
    os.utime(stale, (week_ago, week_ago))
    left, right = asyncio.run(session(alice, bob))
    assert left is not None and right is not None
    assert right.received == 1 and not right.rejected
    assert delivered(bob) == {"fresh.bin": hashlib.sha256(payload).digest()}
    assert not list(folder.iterdir())


def test_a_bundle_with_no_room_stays_with_its_sender_until_there_is_room(tmp_path: Path) -> None:
    """[peers.alice] receive_max_bytes, as for a stick: not taken, not confirmed, nothing lost."""
    alice, bob = make_pair(tmp_path)
    config = bob.path / "config.toml"
    plain = config.read_text()
    config.write_text(plain + '\n[peers.alice]\nreceive_max_bytes = "100K"\n')
    payload = os.urandom(300_000)
    queue(alice, "bob", payload, "big.bin")
    with pytest.raises(NoSpaceError, match=r"no room: over the receive quota .* stays with alice"):
        asyncio.run(session(alice, Home.open(bob.path)))
    assert list(alice.spool.tx.rglob("*.rsb"))  # not confirmed: alice keeps it
    assert not list(bob.spool.rx.rglob("*.rsb"))
    config.write_text(plain)  # the user makes room
    bob = Home.open(bob.path)
    left, right = asyncio.run(session(alice, bob))
    assert left is not None and right is not None and right.received == 1
    assert delivered(bob) == {"big.bin": hashlib.sha256(payload).digest()}
    assert not list(alice.spool.tx.rglob("*.rsb"))


@pytest.mark.parametrize("form", [True, "short"])
def test_small_bundles_are_pushed_and_a_duplicate_push_is_confirmed_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: bool | str
) -> None:
    """PUSH (protocol.md 17.5): a message goes with its offer, a large file is offered.
    Pushed again after bob has it (alice crashed before she released it), it is judged by
    its id: confirmed, so alice lets it go, and not delivered twice. In the short form
    too, whose id bob works out from the bundle's E."""
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"a message", "note.txt")
    queue(alice, "bob", os.urandom(10_000), "file.bin")
    (note,) = [path for path in alice.spool.tx.rglob("*.rsb") if path.stat().st_size < 4096]
    kept = note.read_bytes()
    pushed: list[int] = []
    original = link_module.Link._push_of

    def watched(self: Link, offer: link_module.Offer, path: Path) -> link_module.Push | None:
        push = original(self, offer, path)
        if push is not None:
            pushed.append(offer.size)
        return push

    monkeypatch.setattr(link_module.Link, "_push_of", watched)
    short: list[bytes] = []
    encode_short = session_module._encode_short_push

    def counted(push: link_module.Push, recipient: NodeId) -> bytes | None:
        frame = encode_short(push, recipient)
        if frame is not None:
            short.append(frame)
        return frame

    monkeypatch.setattr(session_module, "_encode_short_push", counted)
    left, right = asyncio.run(session(alice, bob, push=form))
    assert left is not None and right is not None
    assert pushed == [len(kept)]  # the message only: the file is over MAX_PUSH_BYTES
    assert len(short) == (1 if form == "short" else 0)
    assert left.released == right.received == 2
    first = delivered(bob)
    assert set(first) == {"note.txt", "file.bin"}
    note.write_bytes(kept)  # as if alice never heard STORED
    left, right = asyncio.run(session(alice, bob, push=form))
    assert left is not None and right is not None
    assert pushed == [len(kept), len(kept)]
    assert left.released == 1 and right.received == 0  # confirmed, not taken again
    assert delivered(bob) == first
    assert not list(alice.spool.tx.rglob("*.rsb"))


def test_a_pushed_bundle_with_no_room_stays_with_its_sender(tmp_path: Path) -> None:
    """A push that does not fit is neither kept nor confirmed, exactly like an offer."""
    alice, bob = make_pair(tmp_path)
    config = bob.path / "config.toml"
    plain = config.read_text()
    config.write_text(plain + "\n[peers.alice]\nreceive_max_bytes = 100\n")
    queue(alice, "bob", b"a message", "note.txt")
    with pytest.raises(NoSpaceError, match="no room"):
        asyncio.run(session(alice, Home.open(bob.path), push=True))
    assert list(alice.spool.tx.rglob("*.rsb"))
    assert not list(bob.spool.rx.rglob("*.rsb"))
    config.write_text(plain)
    bob = Home.open(bob.path)
    left, right = asyncio.run(session(alice, bob, push=True))
    assert left is not None and right is not None and right.received == 1
    assert delivered(bob) == {"note.txt": hashlib.sha256(b"a message").digest()}


class Recorder(Progress):
    """What a progress listener hears, per lane, in order."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, int]] = []

    def planned(self, lane: str, *, bundles: int, total_bytes: int) -> None:
        self.heard.append(("planned", lane, total_bytes))

    def started(self, lane: str, name: str, total_bytes: int, *, done_bytes: int = 0) -> None:
        self.heard.append(("started", lane, total_bytes))

    def moved(self, lane: str, count: int) -> None:
        self.heard.append(("moved", lane, count))

    def finished(self, lane: str, *, complete: bool = True) -> None:
        self.heard.append(("finished" if complete else "abandoned", lane, 0))


def test_a_pushed_bundle_shows_in_both_progress_lanes(tmp_path: Path) -> None:
    """A push is planned, started, moved and finished like a requested bundle, on the
    sender's lane 'to bob' and the receiver's 'from alice'."""
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"a message", "note.txt")
    (path,) = alice.spool.tx.rglob("*.rsb")
    size = path.stat().st_size
    sending, receiving = Recorder(), Recorder()

    async def run() -> tuple[LinkReport, LinkReport]:
        a_sock, b_sock = socket.socketpair()
        a_reader, a_writer = await asyncio.open_connection(sock=a_sock)
        b_reader, b_writer = await asyncio.open_connection(sock=b_sock)
        now = int(time.time())
        left = Link(alice, alice.peers.find("bob"), now=now, progress=sending)
        right = Link(bob, bob.peers.find("alice"), now=now, progress=receiving)
        left.peer_takes_push = right.peer_takes_push = True
        reports = await asyncio.wait_for(
            asyncio.gather(left.run(a_reader, a_writer), right.run(b_reader, b_writer)), 60
        )
        a_writer.close()
        b_writer.close()
        return reports

    left, right = asyncio.run(run())
    assert left.released == right.received == 1
    lanes = [("to bob", sending), ("from alice", receiving)]
    for lane, recorder in lanes:
        assert [item for item in recorder.heard if item[1] == lane] == [
            ("planned", lane, size),
            ("started", lane, size),
            ("moved", lane, size),
            ("finished", lane, 0),
        ]


def test_a_pushed_bundle_is_delivered_at_once_and_a_bad_one_takes_the_ordinary_way(
    tmp_path: Path,
) -> None:
    """A small bundle pushed whole is handed to the node's delivery before anything goes
    into rx/ (no partial copy, no toss), and confirmed once delivered. A damaged one is
    declined there without a word, taken into rx/ as usual, and the toss quarantines it."""
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"a message", "note.txt")
    events: list[toss.TossEvent] = []
    left, right = asyncio.run(session(alice, bob, stream=streaming(bob, events), push=True))
    assert left is not None and right is not None
    assert left.released == right.received == 1
    assert [type(event).__name__ for event in events] == ["Delivered"]
    assert (bob.incoming_dir("alice") / "note.txt").read_bytes() == b"a message"
    assert not list(bob.spool.rx.rglob("*.rsb"))
    assert toss.toss(bob, now=int(time.time())) == []

    queue(alice, "bob", b"another message", "spoilt.txt")
    (bundle,) = alice.spool.tx.rglob("*.rsb")
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 1  # the last chunk's tag
    bundle.write_bytes(bytes(data))
    events.clear()
    left, right = asyncio.run(session(alice, bob, stream=streaming(bob, events), push=True))
    assert left is not None and right is not None
    assert left.released == right.received == 1
    assert events == []
    assert len(list(bob.spool.rx.rglob("*.rsb"))) == 1
    (rejected,) = toss.toss(bob, now=int(time.time()))
    assert isinstance(rejected, toss.Rejected) and rejected.action == "quarantined"
    assert not (bob.incoming_dir("alice") / "spoilt.txt").exists()


@pytest.mark.parametrize("old_side", ["caller", "answerer"])
def test_a_node_from_before_short_pushes_is_pushed_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old_side: str
) -> None:
    """Over the real Noise handshake, a node that announces PUSH only (01, as nodes did
    before SHORT PUSH) and knows no other bit is sent full pushes; messages cross both
    ways, and neither side writes a short push."""
    alice, bob = make_pair(tmp_path)
    queue(alice, "bob", b"to bob", "to-bob.txt")
    queue(bob, "alice", b"to alice", "to-alice.txt")
    only_push = bytes([handshake.FEATURE_PUSH])
    if old_side == "caller":
        finish = handshake.Initiator.finish

        def first_message(self: handshake.Initiator) -> bytes:
            return bytes(self._connection.write_message(only_push))

        def finished(self: handshake.Initiator, reply: bytes) -> handshake.Cipher:
            cipher = finish(self, reply)
            self.peer_features &= handshake.FEATURE_PUSH  # the one bit it knows
            return cipher

        monkeypatch.setattr(handshake.Initiator, "first_message", first_message)
        monkeypatch.setattr(handshake.Initiator, "finish", finished)
    else:

        def accept(self: handshake.Responder) -> tuple[bytes, handshake.Cipher]:
            self.peer_features &= handshake.FEATURE_PUSH
            reply = bytes(self._connection.write_message(only_push))
            return reply, handshake.Cipher(self._connection)

        monkeypatch.setattr(handshake.Responder, "accept", accept)
    short: list[bytes] = []
    encode_short = session_module._encode_short_push

    def counted(push: link_module.Push, recipient: NodeId) -> bytes | None:
        frame = encode_short(push, recipient)
        if frame is not None:
            short.append(frame)
        return frame

    monkeypatch.setattr(session_module, "_encode_short_push", counted)

    async def run() -> tuple[LinkReport, LinkReport]:
        a_sock, b_sock = socket.socketpair()
        a_reader, a_writer = await asyncio.open_connection(sock=a_sock)
        b_reader, b_writer = await asyncio.open_connection(sock=b_sock)
        now = int(time.time())

        async def caller() -> LinkReport:
            channel = await secure.call(
                alice.identity, bob.card(now=now).public.exchange_public, a_reader, a_writer
            )
            link = Link(alice, alice.peers.find("bob"), now=now)
            link.peer_takes_push = channel.peer_takes_push
            link.peer_takes_short_push = channel.peer_takes_short_push
            report = await link.run(channel, channel)
            a_writer.close()
            return report

        async def answerer() -> LinkReport:
            _key, responder = await secure.answer(bob.identity, b_reader, b_writer)
            channel = secure.accept(responder, b_reader, b_writer)
            link = Link(bob, bob.peers.find("alice"), now=now)
            link.peer_takes_push = channel.peer_takes_push
            link.peer_takes_short_push = channel.peer_takes_short_push
            report = await link.run(channel, channel, persistent=True)
            b_writer.close()
            return report

        answering = asyncio.create_task(answerer())
        left = await asyncio.wait_for(caller(), 60)
        right = await asyncio.wait_for(answering, 60)
        return left, right

    left, right = asyncio.run(run())
    assert short == []
    assert left.released == right.received == 1
    assert right.released == left.received == 1
    assert delivered(bob) == {"to-bob.txt": hashlib.sha256(b"to bob").digest()}
    toss.toss(alice, now=int(time.time()))
    assert (alice.incoming_dir("bob") / "to-alice.txt").read_bytes() == b"to alice"
