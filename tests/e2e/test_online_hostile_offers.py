"""A known neighbour turned hostile, against a real rise-daemon over a real socket.

The hostile side holds alice's key and speaks the real handshake and session
frames (rise_dtn.carriers.live.secure, rise_dtn.core.session), but sends what
rise-call never would: an offer re-made with another size (defect 6 of issue
9: once a traceback), an empty offer and 200 bundles begun and never
finished (defect 7: `No such file or directory`, and 200 orphaned partial
copies), and a bundle that expired on the way (live links had no expiry
check). bob is the installed `rise-daemon`; what it did is read from its
log, its spool and `rise-check`.
"""

from __future__ import annotations

import asyncio
import collections
import io
import os
import signal
import subprocess
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from rise_dtn.carriers.live import secure
from rise_dtn.core.identity import BundleId
from rise_dtn.core.live_policy import MAX_ARRIVING, MAX_PARTIALS_KEPT
from rise_dtn.core.session import Data, Done, Event, NeedData, Offer, Request, Session, Stored
from rise_dtn.node.home import Home
from rise_dtn.node.send import send
from tests.conftest import Node

WAIT_SECONDS = 30  # bound on every wait for the daemon; a healthy one answers in milliseconds
DAY = 86400
E = TypeVar("E", bound=Event)


class Hostile:
    """alice's key and the real wire format, driven by hand."""

    def __init__(self, alice: Node, port: int) -> None:
        home = Home.open(alice.home)
        self._identity = home.identity
        self._bob_public = home.peers.find("bob").card.public.exchange_public
        self._port = port
        self.session = Session()
        self._events: collections.deque[Event] = collections.deque()

    async def __aenter__(self) -> Hostile:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._channel = await secure.call(self._identity, self._bob_public, reader, self._writer)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def send(self, *events: Event) -> None:
        for event in events:
            self._channel.write(self.session.send(event))
        await self._channel.drain()

    async def expect(self, kind: type[E], bundle_id: BundleId | None = None) -> E:
        """The next `kind` event from bob (others skipped); fails if bob hangs up first."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                while self._events:
                    event = self._events.popleft()
                    if isinstance(event, kind) and (
                        bundle_id is None or getattr(event, "bundle_id", None) == bundle_id
                    ):
                        return event
                data = await self._channel.read()
                assert data, f"bob hung up while we waited for {kind.__name__}"
                self._take(data)

    async def hung_up(self) -> None:
        """Read until bob closes the link (bounded)."""
        async with asyncio.timeout(WAIT_SECONDS):
            try:
                while data := await self._channel.read():
                    self._take(data)
            except (ConnectionError, OSError):
                return

    def _take(self, data: bytes) -> None:
        self.session.receive_data(data)
        while not isinstance(event := self.session.next_event(), NeedData):
            self._events.append(event)


def queued(alice: Node) -> tuple[BundleId, bytes]:
    """The one bundle alice queued for bob, as bytes (its id is its file name)."""
    (path,) = (alice.spool / "tx").rglob("*.rsb")
    return BundleId.parse(path.name.removesuffix(".rsb")), path.read_bytes()


async def send_bundle(peer: Hostile, bundle_id: BundleId, body: bytes, *, start: int = 0) -> None:
    for offset in range(start, len(body), 65536):
        await peer.send(Data(bundle_id, offset, body[offset : offset + 65536]))


def stopped_log(process: subprocess.Popen[bytes]) -> str:
    """The daemon's log, once it stopped as a user stops it."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert process.stderr is not None
    return process.stderr.read().decode()


def poll(condition: Callable[[], bool]) -> bool:
    """Wait for the daemon's toss, bounded (it runs right after the bundle is stored)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_re_offer_with_another_size_and_an_empty_offer_are_one_line_each(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    """Defect 6 (a traceback) and the empty offer of defect 7: the session goes on."""
    alice, bob = pair
    process, port = daemon
    alice.run("rise-send", "-q", "-", "bob", input=os.urandom(100_000))
    bundle_id, body = queued(alice)
    empty = BundleId(os.urandom(16))

    async def hostile() -> None:
        async with Hostile(alice, port) as peer:
            await peer.send(Offer(empty, 0, 1))
            assert (await peer.expect(Request, empty)).offset == 0
            await peer.expect(Stored, empty)  # settled: nothing to send, nothing kept
            await peer.send(Offer(bundle_id, len(body), 1))
            assert (await peer.expect(Request, bundle_id)).offset == 0
            await send_bundle(peer, bundle_id, body[:40_000])
            await peer.send(Offer(bundle_id, len(body) - 1000, 1))  # another size
            await send_bundle(peer, bundle_id, body, start=40_000)
            await peer.expect(Stored, bundle_id)

    asyncio.run(hostile())
    assert poll(lambda: any((bob.home / "inbox").glob("*.msg")))  # nothing lost
    assert not list((bob.spool / "tmp" / "partial").rglob("*.part*"))
    log = stopped_log(process)
    assert "Traceback" not in log and "ValueError" not in log
    (resized,) = [line for line in log.splitlines() if "another size" in line]
    assert f"alice: {bundle_id} offered again with another size" in resized
    assert f"({len(body) - 1000} bytes, was {len(body)}): ignored" in resized
    assert f"alice: {empty}: an empty bundle offered: refused" in log
    assert "No such file or directory" not in log


def test_a_peer_starting_many_bundles_leaves_few_partial_copies_and_stale_ones_go(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    """Defect 7: 200 bundles offered, 1 KB of each sent, in session after session."""
    alice, bob = pair
    process, port = daemon
    partial_dir = bob.spool / "tmp" / "partial" / alice.node_id

    async def session(*, bundles: int) -> None:
        async with Hostile(alice, port) as peer:
            if not bundles:
                await peer.expect(Done)  # bob's link is up: its start-up pruning is done
                return
            ids = [BundleId(os.urandom(16)) for _ in range(bundles)]
            await peer.send(*(Offer(bundle_id, 10_000, 1) for bundle_id in ids))
            for bundle_id in ids:
                await peer.expect(Request, bundle_id)
            try:
                await peer.send(*(Data(bundle_id, 0, os.urandom(1024)) for bundle_id in ids))
            except (ConnectionError, OSError):
                pass  # bob hung up on us half-way: the point
            await peer.hung_up()

    for _round in range(6):
        asyncio.run(session(bundles=200))
    copies = sorted(partial_dir.glob("*.part"))
    # Each session keeps the 16 most recent copies and lets at most 4 more begin.
    assert MAX_ARRIVING <= len(copies) <= MAX_PARTIALS_KEPT + MAX_ARRIVING
    check = bob.run("rise-check", check=False)
    assert check.returncode == 3
    assert b"stale partial copy" in check.stdout and b"more than 16 partial copies" in check.stdout

    # A week and a day later, half of them: the next session gives those up.
    old = time.time() - 8 * DAY
    for copy in copies[: len(copies) // 2]:
        os.utime(copy, (old, old))
    asyncio.run(session(bundles=0))
    left = sorted(partial_dir.glob("*.part"))
    assert left == copies[len(copies) // 2 :]
    # And the rest: rise-check says so, and --repair removes them.
    for copy in left:
        os.utime(copy, (old, old))
    check = bob.run("rise-check", check=False)
    assert check.returncode == 3
    assert check.stdout.count(b"not resumed for 8 day(s)") == len(left)
    bob.run("rise-check", "--repair", check=False)
    assert not list(partial_dir.iterdir())
    assert bob.run("rise-check", check=False).returncode == 0

    log = stopped_log(process)
    assert "Traceback" not in log
    assert log.count(f"more than {MAX_ARRIVING} bundles arriving at once") == 6


def test_an_expired_bundle_offered_over_a_live_link_is_refused(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    """As on a stick: refused, its sender told to let it go (STORED), nothing delivered."""
    alice, bob = pair
    process, port = daemon
    home = Home.open(alice.home)
    sealed = int(time.time()) - 10 * DAY  # sealed ten days ago, for one day
    for payload, name in ((b"stale news", None), (os.urandom(600_000), "stale.bin")):
        send.queue(
            home,
            home.peers.find("bob"),
            io.BytesIO(payload),
            options=send.SendOptions(name=name, lifetime_seconds=DAY),
            now=sealed,
        )
    home.close()
    bundles = [
        (BundleId.parse(path.name.removesuffix(".rsb")), path.read_bytes())
        for path in (alice.spool / "tx").rglob("*.rsb")
    ]

    async def hostile() -> None:
        async with Hostile(alice, port) as peer:
            for bundle_id, body in bundles:
                await peer.send(Offer(bundle_id, len(body), 1))
                await peer.expect(Request, bundle_id)
                await send_bundle(peer, bundle_id, body)
                await peer.expect(Stored, bundle_id)

    asyncio.run(hostile())
    log = stopped_log(process)
    assert "Traceback" not in log
    for bundle_id, _body in bundles:
        assert f"alice: {bundle_id}: expired: refused" in log
    assert not list((bob.spool / "rx").rglob("*.rsb"))
    assert not list((bob.spool / "tmp" / "partial").rglob("*.part*"))
    assert not list((bob.home / "inbox").glob("*.msg"))
    assert not list((bob.home / "incoming").rglob("stale.bin"))
