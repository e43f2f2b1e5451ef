"""Calls and the daemon: live sessions with neighbours over TCP, each Noise-authenticated.

`call()` dials one neighbour; `serve()` answers many at once (asyncio) and
`keep_link()` holds a link open to one. A caller whose key is not in the
peer book is cut off after the first handshake message, before any bundle
moves (default deny). One misbehaving caller (garbage, a stall, a huge
claimed frame) ends its own session with a log line, never the daemon.

The daemon's links share a `Hub`: it tosses what any link receives (one
toss at a time, in a thread) and then wakes every link, so a relay's
forward leaves on the next hop's live link within the same session; a disk
watcher on spool/tx/ wakes the link a local `rise-send` queued for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import random
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from rise_dtn.carriers.live import program, secure
from rise_dtn.carriers.live.link import Link, LinkReport, Stream, Toss
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.errors import BusyError, NoSpaceError, PeerError, RiseError, UsageError
from rise_dtn.core.identity import NodeId
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.core.units import human_bytes
from rise_dtn.node.config import PeerSettings
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss.toss_events import Source, Streamed
from rise_dtn.store import locks

DEFAULT_PORT = 5454
Log = Callable[[str], None]
# A kept link that drops is dialled again after 1 s, doubling to 5 minutes
# while the neighbour stays unreachable (with jitter, so that a relay that
# comes back is not hit by all its neighbours in the same second).
REDIAL_FIRST_SECONDS = 1.0
REDIAL_MAX_SECONDS = 300.0
SHUTDOWN_SECONDS = 10.0  # how long a stopping daemon waits for its sessions to wind down


class Hub:
    """What a daemon's sessions share: the live link per neighbour, and one toss at a time."""

    def __init__(
        self,
        home: Home,
        *,
        toss: Callable[[], None] | None,
        log: Log,
        stream: Callable[[ClearPart, NodeId, Source], Streamed] | None = None,
        relay: Callable[[bytes, NodeId], NodeId | None] | None = None,
    ) -> None:
        """`relay(packet, neighbour)` forwards a small pushed onion packet at once and names
        the next hop, or declines (None) and the packet goes through rx/ and the toss."""
        self.home = home
        self.log = log
        self._toss_function = toss
        self._stream_function = stream
        self._relay_function = relay
        self._links: dict[NodeId, tuple[Link, NodeId]] = {}
        self._toss_lock = asyncio.Lock()
        self._toss_requested = 0
        self._toss_done = 0
        self._observer: object | None = None

    def new_link(self, peer: Peer, *, caller: NodeId) -> Link:
        """A link for a session just authenticated; an older one to the same peer is closed.

        Two daemons that dial each other at once keep the link the smaller
        node id dialled, both sides alike, and refuse the other.
        """
        self.check_new(peer, caller=caller)
        old = self._links.get(peer.node_id)
        if old is not None:
            old[0].close()
        toss = self.toss if self._toss_function is not None else None
        stream = self.stream if self._stream_function is not None else None
        relay = self.relay if self._relay_function is not None else None
        link = Link(
            self.home,
            peer,
            now=int(time.time()),
            toss=toss,
            stream=stream,
            relay=relay,
            log=lambda line: self.log(f"{peer.name}: {line}"),
        )
        self._links[peer.node_id] = (link, caller)
        return link

    def check_new(self, peer: Peer, *, caller: NodeId) -> None:
        """PeerError if a session `caller` dialled would lose to the live one (glare)."""
        old = self._links.get(peer.node_id)
        if old is not None and old[1] != caller and old[1] == min(old[1], caller):
            raise PeerError(f"{peer.name} already has a live link")

    def forget(self, link: Link) -> None:
        current = self._links.get(link.peer.node_id)
        if current is not None and current[0] is link:
            del self._links[link.peer.node_id]

    @property
    def tosses(self) -> bool:
        return self._toss_function is not None

    def has_link(self, peer: Peer) -> bool:
        return peer.node_id in self._links

    def poke(self, node_id: NodeId | None = None) -> None:
        """Wake the link to `node_id` (all links if None): something may wait in tx/ for it."""
        for neighbour, (link, _caller) in list(self._links.items()):
            if node_id is None or neighbour == node_id:
                link.poke()

    def close_all(self) -> None:
        for link, _caller in list(self._links.values()):
            link.close()

    async def toss(self) -> None:
        """Toss everything received so far; several links asking at once share one toss."""
        assert self._toss_function is not None
        self._toss_requested += 1
        wanted = self._toss_requested
        async with self._toss_lock:
            if self._toss_done >= wanted:
                return  # a toss that started after our request has covered it
            covers = self._toss_requested
            await asyncio.to_thread(self._toss_function)
            self._toss_done = covers
        self.poke()  # forwards, receipts and acks may now wait for any neighbour

    async def stream(self, clear: ClearPart, neighbour: NodeId, source: Source) -> Streamed:
        """Deliver a large bundle while its link still receives it (in a thread)."""
        assert self._stream_function is not None
        streamed = await asyncio.to_thread(self._stream_function, clear, neighbour, source)
        if streamed.done:
            self.poke()  # its receipt may now wait for a neighbour
        return streamed

    async def relay(self, packet: bytes, neighbour: NodeId) -> bool:
        """Forward a pushed packet in a thread (fsyncs), then wake only its next hop's link."""
        assert self._relay_function is not None
        next_hop = await asyncio.to_thread(self._relay_function, packet, neighbour)
        if next_hop is None:
            return False
        self.poke(next_hop)
        return True

    def watch_tx(self) -> None:
        """Wake links when another process (rise-send, rise-toss) queues for a neighbour."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        loop = asyncio.get_running_loop()
        tx = self.home.spool.tx
        hub = self

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                neighbour = _neighbour_of(tx, str(event.dest_path or event.src_path))
                loop.call_soon_threadsafe(hub.poke, neighbour)

        try:
            tx.mkdir(mode=0o700, parents=True, exist_ok=True)
            observer = Observer()
            observer.schedule(Wake(), str(tx), recursive=True)
            observer.daemon = True
            observer.start()
        except OSError:
            return  # out of inotify watches: the links' periodic rescans still work
        self._observer = observer

    def stop_watching(self) -> None:
        observer = self._observer
        if observer is not None:
            with contextlib.suppress(RuntimeError):
                observer.stop()  # type: ignore[attr-defined]
                observer.join(timeout=2)  # type: ignore[attr-defined]


def _neighbour_of(tx: Path, path: str) -> NodeId | None:
    """The neighbour whose tx/ folder `path` is in; None (wake all) if it is not clear."""
    try:
        return NodeId.parse(Path(path).relative_to(tx).parts[0])
    except (ValueError, IndexError, UsageError):
        return None


@contextlib.contextmanager
def call_lock(home: Home, peer: Peer) -> Iterator[None]:
    """Never two calls to one neighbour at once (cron, rise-caller, a kept link, a user)."""
    with locks.held(home.spool.lock_path(f"call-{peer.node_id}"), what=f"a call to {peer.name}"):
        yield


def parse_address(text: str, *, listening: bool = False) -> tuple[str, int]:
    """'host:port', '[::1]:port', or a bare host (port 5454); port 0 only to listen.

    `tcp://` in front is the same address in the one form every carrier
    shares (carriers/address.py); another scheme is not a TCP address.
    """
    if "://" in text:
        scheme, _slashes, rest = text.partition("://")
        if scheme.lower() != "tcp":
            raise UsageError(f"not a TCP address: {text!r} (use tcp://HOST:PORT)")
        text = rest.rstrip("/")
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise UsageError(f"not an address: {text!r} (use HOST:PORT)") from None
    if not host or not (0 if listening else 1) <= number < 65536:
        raise UsageError(f"not an address: {text!r} (use HOST:PORT)")
    return host, number


def address_of(
    peer: Peer, override: str | None, settings: PeerSettings | None = None
) -> tuple[str, int]:
    """Where to dial `peer`: the given address, then [peers.NAME] address, then its card's."""
    if override:
        return parse_address(override)
    if settings is not None and settings.address:
        return parse_address(settings.address)
    for carrier, address in peer.card.addresses:
        if carrier == "tcp":
            return parse_address(address)
    raise NoAddress(f"no TCP address for {peer.name}: give --address HOST:PORT")


class NoAddress(UsageError):
    """Nothing says where the peer is (as opposed to an address that is malformed)."""


async def call(
    home: Home,
    peer: Peer,
    host: str,
    port: int,
    *,
    toss: Toss | None = None,
    stream: Stream | None = None,
    now: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> LinkReport:
    """Dial `peer` over TCP, authenticate both ways, exchange everything both ways.

    `now` is the clock the link starts from (default: the system's).
    """
    reader, writer = await _dial(peer, host, port)
    try:
        link = Link(
            home,
            peer,
            now=_now() if now is None else now,
            toss=toss,
            stream=stream,
            progress=progress,
        )
        return await call_over(home, peer, reader, writer, link=link)
    finally:
        await _close(writer)


async def _dial(
    peer: Peer, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        raise PeerError(
            f"cannot reach {peer.name} at {host}:{port}: nothing listens there "
            f"(is rise-daemon running on {peer.name}, with --listen on that port?)"
        ) from None
    except OSError as exc:
        raise PeerError(f"cannot reach {peer.name} at {host}:{port}: {exc.strerror}") from None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


def _now() -> int:
    return int(time.time())


async def call_over(
    home: Home,
    peer: Peer,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    link: Link | Callable[[], Link],
    persistent: bool = False,
) -> LinkReport:
    """A session as the caller over any byte streams (TCP, a pipe to `ssh ... --stdio`).

    `link` may be a factory, so that a daemon registers the link only once
    the neighbour has proved its key.
    """
    try:
        channel = await secure.call(home.identity, peer.card.public.exchange_public, reader, writer)
        session = link if isinstance(link, Link) else link()
        session.peer_takes_push = channel.peer_takes_push
        session.peer_takes_short_push = channel.peer_takes_short_push
        return await session.run(channel, channel, persistent=persistent)
    except (TimeoutError, ConnectionError) as exc:
        raise PeerError(f"link to {peer.name} failed: {str(exc) or type(exc).__name__}") from None


async def call_command(
    home: Home,
    peer: Peer,
    command: str,
    *,
    toss: Toss | None = None,
    stream: Stream | None = None,
    quiet: bool = False,
    now: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> LinkReport:
    """Run the operator's `command` (e.g. 'ssh relay rise-daemon --stdio'); talk over its pipes.

    `quiet` (rise-call -q, for cron): what the command prints on stderr (the
    far daemon's session lines, ssh's banners) is kept back, and shown only
    if the call fails, where it usually says why (a refused ssh key).
    """
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if quiet else None,
    )
    assert process.stdin is not None and process.stdout is not None
    kept: collections.deque[bytes] = collections.deque(maxlen=KEPT_STDERR_LINES)
    keeping = (
        asyncio.create_task(_keep_lines(process.stderr, kept))
        if process.stderr is not None
        else None
    )
    try:
        link = Link(
            home,
            peer,
            now=_now() if now is None else now,
            toss=toss,
            stream=stream,
            progress=progress,
        )
        return await call_over(home, peer, process.stdout, process.stdin, link=link)
    except RiseError:
        # A command that could not start reads as a refusal by the node: say what it was.
        process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 30)
        unstarted = program.not_started(command, process.returncode)
        if unstarted is None or not unstarted[1]:
            await _show_kept(keeping, kept)
        if unstarted is not None:
            raise UsageError(unstarted[0]) from None
        raise
    except BaseException:
        await _show_kept(keeping, kept)
        raise
    finally:
        process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(process.wait(), 30)
        if keeping is not None:
            keeping.cancel()


KEPT_STDERR_LINES = 50  # of a quiet call's command, shown if the call fails


async def _show_kept(keeping: asyncio.Task[None] | None, kept: collections.deque[bytes]) -> None:
    """Print what a quiet call's command said on stderr, once the call has failed."""
    if keeping is None:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(keeping), 2)
    for line in kept:
        sys.stderr.buffer.write(line if line.endswith(b"\n") else line + b"\n")
    sys.stderr.flush()


async def _keep_lines(source: asyncio.StreamReader, kept: collections.deque[bytes]) -> None:
    """Read `source` to its end (so the command never blocks on a full pipe); keep the last
    lines, each cut to 1 KiB."""
    while True:
        try:
            line = await source.readline()
        except ValueError:  # a line over the reader's limit: take what is there
            line = await source.read(1024)
        if not line:
            return
        kept.append(line[:1024])


async def answer_stdio(hub: Hub) -> None:
    """One session as the answering side over stdin/stdout (`rise-daemon --stdio`)."""
    _check_stdio_is_a_pipe()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    hub.watch_tx()
    try:
        await _answer(hub, reader, writer)
    finally:
        hub.stop_watching()
        writer.close()


def _check_stdio_is_a_pipe() -> None:
    """A session needs a pipe or socket both ways (ssh gives that): the event loop cannot
    poll a file or /dev/null, and a terminal would only show the binary frames."""
    for fd, name in ((0, "standard input"), (1, "standard output")):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            mode = 0
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise UsageError(
                f"--stdio needs a pipe or socket on {name} (as `rise-call --command` or "
                "ssh gives it), not a terminal, file or device"
            )


async def serve(
    hub: Hub,
    listen: tuple[str, int] | None,
    *,
    stop: asyncio.Event,
    ready: Callable[[int], None] = lambda _port: None,
    keep: dict[str, tuple[str, int]] | None = None,
) -> None:
    """Answer neighbours (unless `listen` is None), and hold links open to the `keep` ones,
    until `stop` is set."""
    sessions: set[asyncio.Task[None]] = set()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sessions.add(task)
        where = writer.get_extra_info("peername")
        try:
            await _answer(hub, reader, writer)
        except (RiseError, TimeoutError, ConnectionError, OSError) as exc:
            hub.log(f"{where}: session ended: {_reason(exc)}")
        finally:
            sessions.discard(task)
            writer.close()

    server = None if listen is None else await _listen(session, *listen)
    if server is not None and listen is not None:
        sockets = server.sockets or ()
        ready(sockets[0].getsockname()[1] if sockets else listen[1])
    hub.watch_tx()
    if hub.tosses:
        await hub.toss()  # what a crash or --no-toss left in rx/
    keepers = [
        asyncio.create_task(keep_link(hub, hub.home.peers.find(name), where, stop=stop))
        for name, where in (keep or {}).items()
    ]
    try:
        async with server if server is not None else contextlib.nullcontext():
            await stop.wait()
            if server is not None:
                server.close()
            hub.close_all()
            pending = sessions | set(keepers)
            if pending:
                await asyncio.wait(pending, timeout=SHUTDOWN_SECONDS)
    finally:
        hub.stop_watching()
        for task in keepers:
            task.cancel()


async def _listen(
    session: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    host: str,
    port: int,
) -> asyncio.Server:
    try:
        return await asyncio.start_server(session, host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BusyError(
                f"cannot listen on {host}:{port}: the port is taken (another rise-daemon? "
                "give --listen HOST:PORT)"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, RiseError) else (str(exc) or type(exc).__name__)


async def keep_link(hub: Hub, peer: Peer, where: tuple[str, int], *, stop: asyncio.Event) -> None:
    """Hold a link to `peer` open: dial, run until cut, dial again with backoff, until `stop`.

    While up, the link holds the neighbour's call lock, so a cron `rise-call`
    to the same neighbour is refused as busy instead of fighting over it.
    """
    delay = REDIAL_FIRST_SECONDS
    while not stop.is_set():
        if hub.has_link(peer):  # it dialled us: one link per neighbour is enough
            delay = REDIAL_FIRST_SECONDS
        else:
            made: list[Link] = []
            full = False
            try:
                with call_lock(hub.home, peer):
                    report = await _kept_session(hub, peer, where, made)
                hub.log(f"{peer.name}: link closed: {_summary(report)}")
            except (RiseError, TimeoutError, ConnectionError, OSError) as exc:
                hub.log(f"{peer.name}: link down: {_reason(exc)}")
                full = isinstance(exc, NoSpaceError)  # room comes back slowly: back off too
            if made and not full:
                delay = REDIAL_FIRST_SECONDS  # it was up: a fresh outage, not a dead neighbour
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, REDIAL_MAX_SECONDS)


async def _kept_session(
    hub: Hub, peer: Peer, where: tuple[str, int], made: list[Link]
) -> LinkReport:
    """One kept session; `made` gets its link once the neighbour has proved its key."""

    def register() -> Link:
        made.append(hub.new_link(peer, caller=hub.home.identity.node_id))
        return made[-1]

    reader, writer = await _dial(peer, *where)
    try:
        return await call_over(hub.home, peer, reader, writer, link=register, persistent=True)
    finally:
        for link in made:
            hub.forget(link)
        await _close(writer)


def _summary(report: LinkReport) -> str:
    return (
        f"received {report.received} ({human_bytes(report.received_bytes)}), "
        f"sent {report.sent} ({human_bytes(report.sent_bytes)}), confirmed {report.released}"
    )


async def _answer(
    hub: Hub,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    data_bytes: int | None = None,
) -> None:
    home = hub.home
    caller_key, responder = await secure.answer(home.identity, reader, writer)
    peer = next((p for p in home.peers.all() if p.card.public.exchange_public == caller_key), None)
    if peer is None:
        raise PeerError("refused a caller whose key is not in the peer book")
    hub.check_new(peer, caller=peer.node_id)  # refuse before the caller thinks it is in
    channel = secure.accept(responder, reader, writer)
    link = hub.new_link(peer, caller=peer.node_id)
    if data_bytes is not None:
        link.data_bytes = data_bytes
    link.peer_takes_push = channel.peer_takes_push
    link.peer_takes_short_push = channel.peer_takes_short_push
    try:
        # The answering side never hangs up on its own: the caller decides
        # whether this is a one-shot call or a link kept open.
        report = await link.run(channel, channel, persistent=True)
    finally:
        hub.forget(link)
    hub.log(f"{peer.name}: {_summary(report)}")  # refusals were logged as they happened


async def answer_over(
    hub: Hub,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    data_bytes: int | None = None,
) -> None:
    """One session as the answering side over any byte streams (the serial carrier's ARQ);
    `data_bytes` as in Link.data_bytes."""
    await _answer(hub, reader, writer, data_bytes=data_bytes)
