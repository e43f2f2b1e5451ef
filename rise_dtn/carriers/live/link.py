"""One live session with an authenticated neighbour, over any pair of async byte streams.

The carrier (TCP with Noise, a pipe inside SSH, a serial line) authenticates
the neighbour and hands over a reader and a writer; this module is the I/O
driver of the sans-I/O policy `core.live_policy.LivePolicy`: it offers what
waits in tx/<neighbour>/ in priority order, requests what the neighbour
offers from the offset the policy chooses, takes each bundle into rx/
through the store's one bundle transaction (the same admission rules as a
stick: expiry, duplicates, recipient) and confirms it with STORED only once
it is durable, and releases our own bundles on the neighbour's STORED. A
link cut at any byte loses nothing: partial receptions stay in
spool/tmp/partial/ for the next session, within the policy's limits.

A partial copy is fsynced every CHECKPOINT_BYTES and its durable offset
recorded beside it; a resumed session asks only from that offset, so a
power cut never leaves unwritten (zeroed) bytes inside a bundle that
STORED then confirms.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import NoReturn, Protocol

from rise_dtn.core.bundle import MAX_CLEAR_BYTES, ClearPart, parse_clear
from rise_dtn.core.errors import BundleError, NoSpaceError, PeerError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.core.live_policy import (
    IDLE_SECONDS,
    KEEPALIVE_SECONDS,
    Arrival,
    LivePolicy,
    Reply,
    stale_partials,
)
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.core.session import (
    MAX_DATA_BYTES,
    MAX_PUSH_BYTES,
    Data,
    Event,
    Gone,
    NeedData,
    Offer,
    Push,
    Request,
    Session,
    Stored,
)
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss.toss_events import STREAM_LEFT, Source, StreamCut, Streamed
from rise_dtn.store import partials
from rise_dtn.store.atomic import DropBehind, storage_error, write_atomic
from rise_dtn.store.spool import BUNDLE_SUFFIX, QUARANTINE_KEEP_BYTES, read_clear
from rise_dtn.store.transaction import Release, Verdict, commit_partial


class ByteReader(Protocol):
    async def read(self, size: int = -1, /) -> bytes: ...


class ByteWriter(Protocol):
    def write(self, data: bytes, /) -> None: ...

    def writelines(self, data: Iterable[bytes], /) -> None: ...

    async def drain(self) -> None: ...


async def _drain_replies(writer: ByteWriter) -> None:
    """Let the receiver's replies out without waiting for the pump's DATA to leave.

    drain() waits for the whole write buffer, and the pump keeps that full
    of DATA while it sends: a receiver waiting there stops reading, and when
    both ends send large bundles each waits for the other to read, for
    ever. The replies (requests, confirmations) are small, so the receiver
    waits only when they pile up (a peer that sends but never reads).
    """
    buffered = getattr(writer, "write_buffer_size", None)  # a link over a socket has it
    if buffered is None or buffered() > REPLY_BUFFER_BYTES:
        await writer.drain()


# More than the pump alone ever leaves buffered (it drains at asyncio's high-water
# mark, with at most one DATA frame over it).
REPLY_BUFFER_BYTES = 4 << 20
READ_BYTES = 1 << 18
# fsync a partial copy every 16 MiB: a cut loses at most that much progress,
# and a large file costs 64 fsyncs per GiB rather than one per frame.
CHECKPOINT_BYTES = 16 << 20
# Bundles larger than this are written by a thread beside the event loop, at
# most PENDING_WRITES frames (2 MiB) behind the network.
BACKGROUND_BYTES = 1 << 20
PENDING_WRITES = 8
# A persistent link looks in tx/ at least this often, even with no wake-up
# from a toss or the disk watcher (events are hints; STYLE.md).
RESCAN_SECONDS = 5.0
# A kept link asks this often whether the neighbour is due a fresh map.
MAPS_CHECK_SECONDS = 300.0
Toss = Callable[[], Coroutine[None, None, None]]
# A direct bundle for this node this large is delivered while it arrives.
STREAM_BYTES = 8 << 20
Stream = Callable[[ClearPart, NodeId, Source], Coroutine[None, None, Streamed]]
# Forwards a small pushed bundle at once (the node's relay); False: take it in as usual.
Relay = Callable[[bytes, NodeId], Coroutine[None, None, bool]]
# Offers out at once, well under the 4,096 a receiver tracks (protocol.md 17.1).
MAX_OFFERS_OUT = 1024
# Bytes pushed (PUSH: offer and bytes at once) and not yet confirmed; past
# this, small bundles are offered as large ones are. It bounds what a relay
# with thousands of small bundles queues ahead of a new, more urgent one.
MAX_PUSHED_BYTES = 64 * 1024
Log = Callable[[str], None]


@dataclasses.dataclass(slots=True)
class LinkReport:
    received: int = 0
    received_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    released: int = 0
    rejected: list[str] = dataclasses.field(default_factory=list)


class RateLimit:
    """A token bucket per direction: at most `rate` bytes a second, bursts of one second."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._last = time.monotonic()

    async def spend(self, count: int) -> None:
        now = time.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= count
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


class _DiskThread:
    """One thread that writes large partial copies while the event loop reads the network."""

    def __init__(self) -> None:
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(self, job: Callable[[], None]) -> concurrent.futures.Future[None]:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, "rise-link-disk")
        return self._executor.submit(job)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class _PartialFile:
    """A partial copy being received: written in order, fsynced and checkpointed every
    CHECKPOINT_BYTES. With `disk`, writes run in its thread, at most PENDING_WRITES
    frames ahead of the network (constant memory); without, in the caller's.

    `written` (guarded by `progress`) is how far the file holds the bundle's
    bytes, for a delivery that reads it while it grows (_StreamSource);
    `ended` says no more will come in this session."""

    def __init__(self, path: Path, checkpoint: Path, *, disk: _DiskThread | None) -> None:
        self.path = path
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self._checkpoint = checkpoint
        self._disk = disk
        self._pending: collections.deque[concurrent.futures.Future[None]] = collections.deque()
        self.position = self.written = self._file.tell()
        self._behind = DropBehind(self._file.fileno(), writing=True, start=self.position)
        self.progress = threading.Condition()
        self.ended = False
        # Off while the bundle is delivered as it arrives: the copy is thrown
        # away once delivered, so fsyncing it on the way only slows the
        # delivery's own writes. A cut still makes it durable (the session's
        # end), a bad bundle too (_complete); a crash resumes from further back.
        self.checkpoints = True

    async def write(self, offset: int, payload: bytes) -> None:
        if offset != self.position:
            await self.settle()
            self._file.truncate(offset)  # a torn tail from a crash is written again
            self._file.seek(offset)
            self._behind = DropBehind(self._file.fileno(), writing=True, start=offset)
            with self.progress:
                self.written = min(self.written, offset)
        end = self.position = offset + len(payload)
        checkpoint = self.checkpoints and end // CHECKPOINT_BYTES > offset // CHECKPOINT_BYTES

        def job() -> None:
            view = memoryview(payload)
            while view:
                view = view[self._file.write(view) or 0 :]
            self._behind.moved(end)
            with self.progress:
                self.written = end
                self.progress.notify_all()
            if checkpoint:
                os.fsync(self._file.fileno())
                write_atomic(self._checkpoint, f"{end}\n".encode())

        if self._disk is None:
            job()
            return
        self._pending.append(self._disk.submit(job))
        while len(self._pending) > PENDING_WRITES:
            await asyncio.wrap_future(self._pending.popleft())

    async def settle(self) -> None:
        """Wait for every write so far (an OSError from the thread is raised here)."""
        while self._pending:
            await asyncio.wrap_future(self._pending.popleft())

    def end(self) -> None:
        """No more bytes in this session (complete, withdrawn or cut): wake any reader."""
        with self.progress:
            self.ended = True
            self.progress.notify_all()

    def close(self) -> None:
        self.end()
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._file.close()


class _StreamSource:
    """The sealed chunks of a bundle still arriving, read from its partial copy as it grows."""

    def __init__(self, partial: _PartialFile, start: int) -> None:
        self._partial = partial
        self._fd = os.open(partial.path, os.O_RDONLY | os.O_CLOEXEC)
        self._offset = start
        self._behind = DropBehind(self._fd, writing=False, start=start)

    def read(self, size: int, /) -> bytes:
        end = self._offset + size
        partial = self._partial
        with partial.progress:
            while partial.written < end:
                if partial.ended:
                    raise StreamCut("the bundle stopped arriving")
                partial.progress.wait()
        data = os.pread(self._fd, size, self._offset)
        self._offset += len(data)
        self._behind.moved(self._offset)
        return data

    def finish(self) -> None:
        return None

    def close(self) -> None:
        os.close(self._fd)


class _BytesSource:
    """The sealed chunks of a bundle that arrived whole (pushed), from memory."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, size: int, /) -> bytes:
        block, self._data = self._data[:size], self._data[size:]
        return bytes(block)

    def finish(self) -> None:
        return None


class Link:
    """The spool side of one session with `peer`."""

    def __init__(
        self,
        home: Home,
        peer: Peer,
        *,
        now: int,
        idle_seconds: float = IDLE_SECONDS,
        toss: Toss | None = None,
        stream: Stream | None = None,
        relay: Relay | None = None,
        log: Log | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> None:
        """`toss`, if given, tosses what arrived; what it queues for the peer goes out at once.

        `stream`, if given, delivers a large bundle for this node while it arrives.
        `relay`, if given, is offered each pushed onion packet first: when it
        has forwarded the packet (durably), STORED confirms it and nothing
        goes into rx/. `stream` is then offered the pushed bundle whole.
        `log`, if given, hears each refused offer or bundle as it happens (a
        daemon's log); the report lists them too.
        `progress` hears each DATA frame's bytes, in lanes "to NAME" and "from NAME".
        """
        self.idle_seconds = idle_seconds
        # Bytes of bundle per DATA frame. A receiver keeps a DATA frame only
        # once all of it arrived, so on a slow line (the serial carrier sets
        # a few seconds' worth) this is what a cut can cost.
        self.data_bytes = MAX_DATA_BYTES
        # The peer takes PUSH (its handshake said so: secure.SecureChannel's
        # peer_takes_push); the carrier sets it before `run`.
        self.peer_takes_push = False
        self._pushed: dict[BundleId, int] = {}  # pushed, not yet confirmed: their sizes
        self._toss = toss
        self._stream = stream
        self._relay = relay
        self._log = log
        self._progress = progress
        self._lane_out, self._lane_in = f"to {peer.name}", f"from {peer.name}"
        self._receiving: BundleId | None = None  # the bundle the in-lane shows
        self._started = (now, time.monotonic())
        rate = home.config.peer(peer.name).max_rate_bytes
        self._limit_in = RateLimit(rate) if rate is not None else None
        self._limit_out = RateLimit(rate) if rate is not None else None
        self.home = home
        self.peer = peer
        self.policy = LivePolicy()
        # We announce short pushes in every handshake (handshake.FEATURES): a
        # short push leaves out its recipient, us.
        self.policy.session.me = home.identity.node_id
        self.report = LinkReport()
        self._offered: dict[BundleId, Path] = {}
        self._headers: dict[Path, Offer] = {}  # read once per session, not once per rescan
        self._more_to_offer = False
        self._open_partials: dict[BundleId, _PartialFile] = {}
        self._streams: dict[BundleId, asyncio.Task[Streamed]] = {}
        self._disk = _DiskThread()
        self._wake = asyncio.Event()
        self._poked = False
        self._closing = False
        self._wrote = False
        self._received_since_toss = False
        self._settling: asyncio.Task[None] | None = None
        # What the pump sends, in order: requested bundles, and pushes (their frame's
        # bytes, already counted by the session) so that they meet the same drain.
        self._requests: asyncio.Queue[Request | tuple[Push, bytes] | None] = asyncio.Queue()
        self._partial_dir = partials.partial_dir(home.spool.tmp, str(peer.node_id))

    @property
    def session(self) -> Session:
        """The wire machine under the policy."""
        return self.policy.session

    @property
    def peer_takes_short_push(self) -> bool:
        """The peer takes PUSH in its short form (secure.SecureChannel's peer_takes_short_push):
        the carrier sets it before `run`, and a push of a bundle for the peer then goes short."""
        return self.session.short_push_to is not None

    @peer_takes_short_push.setter
    def peer_takes_short_push(self, takes: bool) -> None:
        self.session.short_push_to = self.peer.node_id if takes else None

    @property
    def now(self) -> int:
        """The clock as the link sees it: the given start, advanced (persistent links live long)."""
        start, monotonic = self._started
        return start + int(time.monotonic() - monotonic)

    def _send(self, writer: ByteWriter, event: Event) -> None:
        writer.write(self.session.send(event))
        self._wrote = True

    def _note(self, line: str) -> None:
        """A refused offer or bundle: one line in the report, and in the log as it happens."""
        self.report.rejected.append(line)
        if self._log is not None:
            self._log(line)

    async def run(
        self, reader: ByteReader, writer: ByteWriter, *, persistent: bool = False
    ) -> LinkReport:
        """Exchange everything both ways, including what tossing brings on the way.

        A one-shot call returns once both sides are idle and neither owes a
        reply (`LivePolicy.may_hang_up`); a `persistent` link (a daemon's)
        stays up, offering new bundles as they are queued, until the peer
        hangs up or `close()` is called.
        """
        self._partial_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prune_partials()
        self._refresh_maps()
        self._offer_new(writer)
        await writer.drain()
        pump = asyncio.create_task(self._pump(writer))
        receiver = asyncio.create_task(self._receive(reader, writer))
        receiver.add_done_callback(lambda _task: self._wake.set())
        try:
            await self._converse(writer, receiver, persistent=persistent)
        finally:
            await self._wind_down(receiver, pump)
        return self.report

    def _prune_partials(self) -> None:
        """Give up this neighbour's partial copies the policy calls stale (too old, too many)."""
        found = partials.read_partials(self._partial_dir)
        stale = stale_partials(
            found, now=self.now, lifetime_seconds=self.home.config.partial_lifetime_seconds
        )
        for name in stale:
            with contextlib.suppress(OSError):
                partials.remove_partial(self._partial_dir / name)
        for orphan in partials.orphan_checkpoints(self._partial_dir):
            with contextlib.suppress(OSError):
                orphan.unlink()

    async def _wind_down(self, receiver: asyncio.Task[None], pump: asyncio.Task[None]) -> None:
        """Stop reading and sending, let threads finish, keep what arrived. Never raises:
        the session's own outcome (a cut, a peer's error) is what the caller hears of."""
        for out in self._open_partials.values():
            out.end()  # streamed deliveries stop where the bytes stop
        if self._receiving is not None:
            self._progress.finished(self._lane_in, complete=False)
        receiver.cancel()
        await self._requests.put(None)
        # The receiver's error, if any, was raised by _converse already; the
        # pump's (a reset while sending) says only that the link went.
        await asyncio.gather(receiver, pump, return_exceptions=True)
        # Threads cannot be cancelled: a toss and streamed deliveries finish first.
        waiting = [*self._streams.values(), *([self._settling] if self._settling else [])]
        await asyncio.gather(*waiting, return_exceptions=True)
        self._checkpoint_partials()
        self._disk.close()

    def _refresh_maps(self) -> None:
        """A relay's map for this neighbour, when one is due ([map] refresh)."""
        if self.home.config.relay.enabled:
            from rise_dtn.node.toss import control  # late: only relays pay for routing

            control.refresh_maps(self.home, now=self.now, only=self.peer)

    def poke(self) -> None:
        """Something may have been queued for this neighbour: look in tx/ again."""
        self._poked = True
        self._wake.set()

    def close(self) -> None:
        """End a persistent link at the next chance (the daemon is stopping or replaced it)."""
        self._closing = True
        self._wake.set()

    async def _converse(
        self, writer: ByteWriter, receiver: asyncio.Task[None], *, persistent: bool
    ) -> None:
        """Offer, toss and say DONE as things happen, until the session may end."""
        last_scan = last_maps = time.monotonic()
        self.policy.wrote(last_scan)
        while not self._closing:
            self._wake.clear()
            if receiver.done():
                self._start_toss()  # what arrived last is tossed all the same (wind-down waits)
                receiver.result()  # the link was cut or the peer misbehaved
                return
            self._start_toss()
            now = time.monotonic()
            if persistent and now - last_maps >= MAPS_CHECK_SECONDS:
                last_maps = now
                self._refresh_maps()  # a kept link lives longer than a map
                self._poked = True
            if self._poked or (persistent and now - last_scan >= RESCAN_SECONDS):
                self._poked = False
                last_scan = now
                self._offer_new(writer)
            word = self.policy.word(now, busy=self._busy())
            if word is not None:
                self._send(writer, word)
            if self._wrote:
                self._wrote = False
                self.policy.wrote(now)
                await writer.drain()
            if self.policy.may_hang_up(busy=self._busy(), persistent=persistent):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(RESCAN_SECONDS, KEEPALIVE_SECONDS))

    def _busy(self) -> bool:
        """A toss pending or running, or something new to offer: not quiet yet."""
        return (
            self._received_since_toss
            or (self._settling is not None and not self._settling.done())
            or self._poked
        )

    def _start_toss(self) -> None:
        """Toss what arrived (in the background), then offer what the toss queued for the peer."""
        if self._settling is not None and self._settling.done():
            settled, self._settling = self._settling, None
            settled.result()
            self._poked = True
        if self._toss is None or not self._received_since_toss or self._settling is not None:
            return
        self._received_since_toss = False
        self._settling = asyncio.create_task(self._toss())
        self._settling.add_done_callback(lambda _task: self._wake.set())

    async def _receive(self, reader: ByteReader, writer: ByteWriter) -> None:
        """Read the peer's frames and answer them; returns at end of stream."""
        while True:
            try:
                async with asyncio.timeout(self.idle_seconds):
                    data = await reader.read(READ_BYTES)
            except TimeoutError:
                raise PeerError(
                    f"{self.peer.name} sent nothing for {self.idle_seconds:g} s"
                ) from None
            if not data:
                return  # hung up, or cut: partial copies wait for the next session
            if self._limit_in is not None:
                await self._limit_in.spend(len(data))
            self.session.receive_data(data)
            await self._handle_events(writer)

    def _checkpoint_partials(self) -> None:
        """When a session ends (a cut, most often), make what arrived durable.

        A flaky link that drops every few megabytes still makes progress;
        only a crash or power cut falls back to the last periodic checkpoint.
        """
        for bundle_id in list(self._open_partials):
            with contextlib.suppress(OSError):
                self._close_partial(bundle_id)  # written here; made durable below
        for bundle_id in self.policy.arriving():
            partial = self._partial(bundle_id)
            try:
                with open(partial, "rb+") as handle:
                    os.fsync(handle.fileno())
                    end = os.fstat(handle.fileno()).st_size
                write_atomic(self._checkpoint(bundle_id), f"{end}\n".encode())
            except FileNotFoundError:
                continue  # completed (moved into rx/), refused, or never started
            except OSError:
                continue  # the next session resumes from the last checkpoint instead

    def _offer_new(self, writer: ByteWriter) -> None:
        """Offer what waits in tx/<neighbour>/ and was not offered yet, up to MAX_OFFERS_OUT.

        A relay may hold tens of thousands of packets for one neighbour; the
        rest are offered as the first ones are confirmed.
        """
        room = MAX_OFFERS_OUT - len(self._offered)
        found = self._offers()
        self._more_to_offer = len(found) > room
        for offer, path in found[: max(room, 0)]:
            self._offered[offer.bundle_id] = path
            push = self._push_of(offer, path)
            if push is None:
                self._send(writer, offer)
                continue
            self._progress.planned(self._lane_out, bundles=1, total_bytes=offer.size)
            self._requests.put_nowait((push, self.session.send(push)))

    def _push_of(self, offer: Offer, path: Path) -> Push | None:
        """The offer as a PUSH (its bytes with it, saving the round trip of REQUEST) when
        the peer takes pushes and the bundle is small; None to offer it as usual."""
        limit = min(MAX_PUSH_BYTES, self.data_bytes)
        pushed = sum(self._pushed.values())
        if not self.peer_takes_push or offer.size > limit or pushed + offer.size > MAX_PUSHED_BYTES:
            return None
        try:
            payload = path.read_bytes()
        except OSError:
            return None  # gone meanwhile: the offer's REQUEST then draws GONE
        if len(payload) != offer.size or not payload:
            return None
        self._pushed[offer.bundle_id] = offer.size
        self.report.sent += 1
        self.report.sent_bytes += offer.size
        return Push(offer.bundle_id, offer.priority, payload)

    def _offers(self) -> list[tuple[Offer, Path]]:
        spool = self.home.spool
        found = []
        listed = list(spool.files(spool.tx_dir(self.peer.node_id)))
        if len(self._headers) > len(listed):  # forget bundles that left meanwhile
            names = set(listed)
            self._headers = {path: offer for path, offer in self._headers.items() if path in names}
        offered = set(self._offered.values())
        for path in listed:
            if path in offered:
                continue
            offer = self._headers.get(path)
            if offer is None:
                try:
                    clear, size = read_clear(path)
                except (BundleError, OSError):
                    continue  # rise-check reports it; never offer a damaged bundle
                if clear.expired(self.now):
                    continue
                offer = self._headers[path] = Offer(clear.bundle_id, size, clear.header.priority)
            found.append((offer, path))
        found.sort(key=lambda item: item[0].priority)  # stable: oldest first within a priority
        return found

    async def _handle_events(self, writer: ByteWriter) -> None:
        while not isinstance(event := self.session.next_event(), NeedData):
            if isinstance(event, Data):
                await self._on_data(event, writer)
                continue  # the bulk: the conversation wakes only when a bundle completes
            self._wake.set()
            if isinstance(event, Offer):
                await self._on_offer(event, writer)
            elif isinstance(event, Push):
                await self._on_push(event, writer)
            elif isinstance(event, Request):
                self._plan_sending(event)
                await self._requests.put(event)
            elif isinstance(event, Stored):
                self._on_stored(event)
            elif isinstance(event, Gone):
                self._on_gone(event)
        await _drain_replies(writer)

    async def _on_offer(self, offer: Offer, writer: ByteWriter) -> None:
        """Answer an offer as the policy says: resume, commit, settle at once, or ignore."""
        bundle_id = offer.bundle_id
        partial = self._partial(bundle_id)
        held = self.home.bundles.judge_id(bundle_id, self.peer.node_id)
        if held.taken and offer.size and not self.policy.is_arriving(bundle_id):
            self._check_room(bundle_id, offer.size)
        held_copy = partials.read_partial(partial)
        plan, wire = self.policy.offered(
            offer, settled=None if held.taken else held.reason, partial=held_copy
        )
        writer.write(wire)
        if plan.reply is Reply.IGNORED:
            self._note(plan.reason)
            return
        if plan.reply is Reply.SETTLED:
            # A copy a crash left behind a streamed delivery goes too.
            with contextlib.suppress(OSError):
                partials.remove_partial(partial)
            if held.verdict is Verdict.RECEIVED:
                self._received_since_toss = self._toss is not None  # it may never have been
            elif held.taken:
                self._note(plan.reason)  # refused by the policy itself (an empty bundle)
            return
        try:
            if held_copy is not None:
                # Resume only from the last fsynced offset: after a power cut the
                # tail past it may hold zeros, which STORED must never confirm.
                with open(partial, "r+b") as handle:
                    handle.truncate(plan.offset)
                if held_copy.durable_bytes != plan.offset:
                    # Never let an older checkpoint vouch for bytes written after
                    # this point (a copy started again from 0 keeps its old one).
                    write_atomic(self._checkpoint(bundle_id), f"{plan.offset}\n".encode())
                os.utime(partial)  # resumed: not stale (rise-check, the next session)
        except OSError as exc:
            raise storage_error(exc, "receiving a bundle") from None
        if plan.reply is Reply.COMMIT:
            await self._complete(bundle_id, writer)
        elif offer.size > plan.offset:
            self._progress.planned(self._lane_in, bundles=1, total_bytes=offer.size - plan.offset)

    async def _on_push(self, push: Push, writer: ByteWriter) -> None:
        """A bundle offered with all its bytes: judged by its id as an offer is, then taken
        in as its one DATA frame (committed, then confirmed), or dropped and confirmed."""
        bundle_id = push.bundle_id
        held = self.home.bundles.judge_id(bundle_id, self.peer.node_id)
        if held.taken and not self.policy.is_arriving(bundle_id):
            self._check_room(bundle_id, len(push.payload))
        plan, wire = self.policy.pushed(push, settled=None if held.taken else held.reason)
        writer.write(wire)
        if plan.reply is Reply.IGNORED:
            self._note(plan.reason)
            return
        # A copy an earlier session left is replaced by the whole bundle, or
        # not needed any more.
        with contextlib.suppress(OSError):
            partials.remove_partial(self._partial(bundle_id))
        if plan.reply is Reply.SETTLED:
            if held.verdict is Verdict.RECEIVED:
                self._received_since_toss = self._toss is not None  # it may never have been
            return
        self._progress.planned(self._lane_in, bundles=1, total_bytes=len(push.payload))
        if await self._taken_at_once(push):
            # Forwarded or delivered (and recorded durably) from the frame: nothing to keep.
            self._show_arriving(Data(bundle_id, 0, push.payload))
            self.policy.arrived(bundle_id, 0, len(push.payload))
            self._receiving = None
            self._progress.finished(self._lane_in)
            self.report.received += 1
            self.report.received_bytes += len(push.payload)
            writer.write(self.policy.confirm(bundle_id))
            self._wake.set()  # a toss owes the sender a receipt now, not at the next rescan
            return
        await self._on_data(Data(bundle_id, 0, push.payload), writer)

    async def _taken_at_once(self, push: Push) -> bool:
        """Whether the node forwarded (`relay`) or delivered (`stream`) this pushed bundle
        already, durably, without it passing through rx/ and the toss: then STORED alone
        remains to do. False: nothing was done, and it is taken in as usual (protocol.md
        17.5). Only bundles whose header is for us, whole and unexpired, are asked about;
        the node judges the rest (seen before, damaged, refused)."""
        if self._relay is None and self._stream is None:
            return False
        try:
            clear = parse_clear(push.payload[:MAX_CLEAR_BYTES])
        except BundleError:
            return False  # the commit says what is wrong with it
        if (
            clear.bundle_id != push.bundle_id
            or clear.header.recipient != self.home.identity.node_id
            or clear.total_bytes != len(push.payload)
            or clear.expired(self.now)
        ):
            return False
        relay = self._relay if clear.onion else None
        if relay is not None and await relay(push.payload, self.peer.node_id):
            return True
        if self._stream is None:
            return False
        source = _BytesSource(push.payload[clear.size :])
        if not (await self._stream(clear, self.peer.node_id, source)).done:
            return False  # a bad one too: the commit quarantines it (at most its first MiB)
        # As after a bundle streamed while it arrived: a toss settles what the
        # delivery owes (a receipt for a direct bundle).
        self._received_since_toss = self._toss is not None
        return True

    def _partial(self, bundle_id: BundleId) -> Path:
        return self._partial_dir / f"{bundle_id}{partials.PARTIAL_SUFFIX}"

    def _checkpoint(self, bundle_id: BundleId) -> Path:
        return self._partial_dir / f"{bundle_id}{partials.CHECKPOINT_SUFFIX}"

    async def _on_data(self, data: Data, writer: ByteWriter) -> None:
        bundle_id = data.bundle_id
        self._show_arriving(data)
        action, complete = self.policy.arrived(bundle_id, data.offset, len(data.payload))
        if action is Arrival.WRITE and data.offset == 0 and not complete:
            # (A bundle complete in one frame is judged once, at its commit.)
            self._judge_header(bundle_id, data.payload)
            if self.policy.refused(bundle_id) is not None:
                action = Arrival.DROP
        if action is Arrival.WRITE and self._proved_bad(bundle_id):
            action = Arrival.DROP  # no more of it on our disk
        if action is Arrival.WRITE:
            await self._write(data, complete=complete)
        if complete:
            self._receiving = None
            self._progress.finished(self._lane_in)
            streamed = await self._stream_result(bundle_id)
            if streamed.bad is not None and self.policy.refused(bundle_id) is None:
                self._refuse_bad(bundle_id, streamed.bad)  # proved bad at its last chunk
            await self._complete(bundle_id, writer, delivered=streamed.done)

    def _show_arriving(self, data: Data) -> None:
        """Tell the in-lane of a DATA frame (the sender sends one bundle at a time)."""
        if data.bundle_id != self._receiving:
            if self._receiving is not None:
                self._progress.finished(self._lane_in, complete=False)
            self._receiving = data.bundle_id
            size = self.policy.size_of(data.bundle_id)
            self._progress.started(self._lane_in, str(data.bundle_id), size, done_bytes=data.offset)
        self._progress.moved(self._lane_in, len(data.payload))

    def _plan_sending(self, request: Request) -> None:
        """The bytes a request asks of us, as the out-lane's work ahead."""
        path = self._offered.get(request.bundle_id)
        offer = self._headers.get(path) if path is not None else None
        if offer is not None and offer.size > request.offset:
            self._progress.planned(
                self._lane_out, bundles=1, total_bytes=offer.size - request.offset
            )

    def _judge_header(self, bundle_id: BundleId, head: bytes) -> None:
        """The admission rules on a bundle's header, as soon as it is in: an expired bundle
        or a duplicate is refused before its body reaches the disk."""
        try:
            clear = parse_clear(head[:MAX_CLEAR_BYTES])
        except BundleError:
            return  # incomplete or bad: the commit says what is wrong with it
        if clear.bundle_id != bundle_id or clear.header.recipient != self.home.identity.node_id:
            return  # kept, and quarantined at the commit, as a stick's would be
        admission = self.home.bundles.judge(clear, self.peer.node_id, now=self.now)
        if admission.taken:
            return
        if admission.verdict is Verdict.NO_ROOM:
            self._no_room(bundle_id, admission.reason)
        self.policy.refuse(bundle_id, admission.reason)
        with contextlib.suppress(OSError):
            self._close_partial(bundle_id)
        with contextlib.suppress(OSError):
            partials.remove_partial(self._partial(bundle_id))
        if admission.verdict is Verdict.EXPIRED:
            self._note(f"{bundle_id}: {admission.reason}: refused")

    async def _write(self, data: Data, *, complete: bool) -> None:
        bundle_id = data.bundle_id
        size = self.policy.size_of(bundle_id)
        try:
            out = self._open_partials.get(bundle_id)
            if out is None:
                out = self._open_partials[bundle_id] = _PartialFile(
                    self._partial(bundle_id),
                    self._checkpoint(bundle_id),
                    disk=self._disk if size > BACKGROUND_BYTES else None,
                )
                if data.offset == 0 and size >= STREAM_BYTES:
                    self._start_stream(bundle_id, data.payload, out)
            await out.write(data.offset, data.payload)
            if complete:
                await out.settle()
                self._close_partial(bundle_id)
        except OSError as exc:
            raise storage_error(exc, "receiving a bundle") from None

    def _start_stream(self, bundle_id: BundleId, head: bytes, out: _PartialFile) -> None:
        """Begin delivering a large direct bundle for this node while it still arrives.

        The toss then overlaps the transfer instead of following it; see
        toss.deliver_streamed for why nothing is recorded before the end.
        """
        if self._stream is None:
            return
        try:
            clear = parse_clear(head[:MAX_CLEAR_BYTES])
        except BundleError:
            return  # the ordinary toss will say what is wrong with it
        if (
            clear.onion
            or clear.bundle_id != bundle_id
            or clear.header.recipient != self.home.identity.node_id
            or clear.total_bytes != self.policy.size_of(bundle_id)
        ):
            return
        source = _StreamSource(out, clear.size)
        out.checkpoints = False
        stream = self._stream

        async def run() -> Streamed:
            try:
                return await stream(clear, self.peer.node_id, source)
            finally:
                source.close()

        self._streams[bundle_id] = asyncio.create_task(run())

    async def _stream_result(self, bundle_id: BundleId) -> Streamed:
        """What the streamed delivery of a now complete bundle came to (left: none ran)."""
        task = self._streams.pop(bundle_id, None)
        if task is None:
            return STREAM_LEFT
        try:
            return await task
        except Exception:  # noqa: BLE001 - the ordinary toss then does it, and says why
            return STREAM_LEFT

    def _proved_bad(self, bundle_id: BundleId) -> bool:
        """Has the delivery streamed while it arrives proved this bundle bad? Then it is
        refused now (_refuse_bad), and the rest of it is dropped as it comes."""
        task = self._streams.get(bundle_id)
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return False
        reason = task.result().bad
        if reason is None:
            return False
        self._refuse_bad(bundle_id, reason)
        return True

    def _refuse_bad(self, bundle_id: BundleId, reason: str) -> None:
        """A bundle the streamed delivery proved bad: quarantine what arrived of it (its
        first MiB at most) and drop the rest; STORED settles it once its last byte is in.

        Not copied whole into rx/ only for the toss to quarantine it there. The
        neighbour is authenticated: sending it again would not make it good.
        """
        self.policy.refuse(bundle_id, reason)
        self._close_partial(bundle_id)
        self._quarantine(bundle_id, reason)

    def _close_partial(self, bundle_id: BundleId) -> None:
        out = self._open_partials.pop(bundle_id, None)
        if out is not None:
            try:
                out.close()
            except OSError as exc:
                raise storage_error(exc, "receiving a bundle") from None

    async def _complete(
        self, bundle_id: BundleId, writer: ByteWriter, *, delivered: bool = False
    ) -> None:
        """Take the complete bundle in through the bundle transaction, then confirm it.

        `delivered`: it was delivered while it arrived (streamed), so there
        is nothing to keep: the index says delivered, and an offer of it
        again is confirmed at once. A bundle refused on its header kept
        nothing either. Either way STORED lets the sender release it.
        """
        self._wake.set()  # the session may be idle now, and there is something to toss
        partial = self._partial(bundle_id)
        if self.policy.refused(bundle_id) is None:
            if delivered:
                size = partial.stat().st_size
                self.home.spool.remove(partial)
                self._checkpoint(bundle_id).unlink(missing_ok=True)
                self._count_received(size)
            else:
                await self._admit(bundle_id, partial)
        writer.write(self.policy.confirm(bundle_id))
        # Again, now that it is admitted: the wake above was taken while the
        # admission awaited its fsync, and without this one the toss waited for
        # the peer's next frame (a second or more on a slow radio link).
        self._wake.set()

    async def _admit(self, bundle_id: BundleId, partial: Path) -> None:
        """The complete partial copy, into rx/ by the same rules as any carrier's bundle."""
        try:
            # Large copies are fsynced in the disk thread, not on the event loop;
            # commit_partial's own fsync then finds nothing left to write.
            await asyncio.wrap_future(self._disk.submit(lambda: _fsync(partial)))
            clear, size = read_clear(partial)
            if clear.bundle_id != bundle_id:
                raise BundleError("the bundle is not what was offered")
        except BundleError as exc:
            # The link is authenticated: this is the neighbour's own bad bundle,
            # and sending it again would not help. Keep it aside and confirm.
            self._quarantine(bundle_id, exc.message)
            return
        except OSError as exc:
            raise storage_error(exc, "receiving a bundle") from None
        admission = self.home.bundles.admit(
            clear,
            size,
            self.peer.node_id,
            now=self.now,
            write=lambda target: commit_partial(partial, target),
        )
        if admission.verdict is Verdict.NOT_FOR_US:
            self._quarantine(bundle_id, admission.reason)
            return
        if admission.verdict is Verdict.NO_ROOM:
            self._no_room(bundle_id, admission.reason)  # the complete copy waits for room
        partials.remove_partial(partial)  # committed (gone already), or not wanted
        if admission.taken:
            self._count_received(size)
        elif admission.verdict is Verdict.RECEIVED:
            self._received_since_toss = self._toss is not None  # it may never have been
        elif admission.verdict is Verdict.EXPIRED:
            self._note(f"{bundle_id}: {admission.reason}: refused")

    def _check_room(self, bundle_id: BundleId, size: int) -> None:
        """Before a byte moves: would this bundle fit ([spool] min_free, receive_max_bytes)?"""
        room = self.home.bundles.room_for(size, self.peer.node_id)
        if room is not None:
            self._no_room(bundle_id, room.reason)

    def _no_room(self, bundle_id: BundleId, reason: str) -> NoReturn:
        """No room for a bundle: it stays with its sender, unconfirmed, and the session ends.

        The session has no frame that declines an offer and goes on (the
        sender would wait for an answer for ever), so the link ends, as a
        full stick's exchange does; what arrived of the bundle is kept for
        the next session, which takes it once a toss has made room.
        """
        raise NoSpaceError(
            f"{bundle_id}: {reason}; it stays with {self.peer.name} until there is room"
        )

    def _quarantine(self, bundle_id: BundleId, reason: str) -> None:
        self.home.bundles.quarantine(
            self._partial(bundle_id),
            f"received over a live link: {reason}",
            keep_bytes=QUARANTINE_KEEP_BYTES,
            name=f"{bundle_id}{BUNDLE_SUFFIX}",
        )
        self._checkpoint(bundle_id).unlink(missing_ok=True)
        self._note(f"{bundle_id}: {reason}")

    def _count_received(self, size: int) -> None:
        self.report.received += 1
        self.report.received_bytes += size
        self._received_since_toss = self._toss is not None

    def _on_gone(self, gone: Gone) -> None:
        """The peer withdrew an offer (expired or cancelled there): drop our partial copy."""
        if self.policy.withdrawn(gone.bundle_id):
            with contextlib.suppress(OSError):
                self._close_partial(gone.bundle_id)
            with contextlib.suppress(OSError):
                partials.remove_partial(self._partial(gone.bundle_id))

    def _forget_offer(self, bundle_id: BundleId) -> Path | None:
        """The offer is settled (confirmed or withdrawn): make room for the next ones."""
        path = self._offered.pop(bundle_id, None)
        self._pushed.pop(bundle_id, None)
        if path is not None:
            self._headers.pop(path, None)
            if self._more_to_offer:
                self.poke()
        return path

    def _on_stored(self, stored: Stored) -> None:
        if self._forget_offer(stored.bundle_id) is None:
            return
        if self.home.bundles.release(
            self.peer.node_id, stored.bundle_id, Release.ACKED, now=self.now
        ):
            self.report.released += 1

    async def _pump(self, writer: ByteWriter) -> None:
        """Send requested bundles, one at a time, while the reader keeps reading."""
        while (request := await self._requests.get()) is not None:
            if isinstance(request, tuple):
                await self._send_push(writer, *request)
                continue
            path = self._offered.get(request.bundle_id)
            if path is None:
                continue
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                # Expired or cancelled since we offered it: withdraw the offer.
                self._forget_offer(request.bundle_id)
                writer.write(self.session.send(Gone(request.bundle_id)))
                await writer.drain()
                continue
            size = os.fstat(handle.fileno()).st_size
            shown = self._progress.item(
                self._lane_out, str(request.bundle_id), size, done_bytes=request.offset
            )
            with handle, shown as moved:
                handle.seek(request.offset)
                offset = request.offset
                behind = DropBehind(handle.fileno(), writing=False, start=offset)
                while block := handle.read(self.data_bytes):
                    behind.moved(offset + len(block))
                    if self._limit_out is not None:
                        await self._limit_out.spend(len(block))
                    writer.writelines(
                        self.session.send_data(Data(request.bundle_id, offset, block))
                    )
                    offset += len(block)
                    await writer.drain()
                    moved(len(block))
            if request.offset < offset:
                self.report.sent += 1
                self.report.sent_bytes += offset - request.offset

    async def _send_push(self, writer: ByteWriter, push: Push, wire: bytes) -> None:
        """A pushed bundle's one frame (the session counted it when it was offered)."""
        size = len(push.payload)
        with self._progress.item(self._lane_out, str(push.bundle_id), size) as moved:
            if self._limit_out is not None:
                await self._limit_out.spend(size)
            writer.write(wire)
            await writer.drain()
            moved(size)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
