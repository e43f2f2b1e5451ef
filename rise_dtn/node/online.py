"""Calls and the daemon: live sessions with neighbours over TCP, each Noise-authenticated.

`call()` dials one neighbour; `serve()` answers many at once (asyncio). A
caller whose key is not in the peer book is cut off after the first
handshake message, before any bundle moves (default deny). One misbehaving
caller (garbage, a stall, a huge claimed frame) ends its own session with a
log line, never the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

from rise_dtn.carriers import secure
from rise_dtn.core.errors import PeerError, RiseError, UsageError
from rise_dtn.node.home import Home
from rise_dtn.node.link import Link, LinkReport
from rise_dtn.node.peers import Peer

DEFAULT_PORT = 5454
Log = Callable[[str], None]


def parse_address(text: str, *, listening: bool = False) -> tuple[str, int]:
    """'host:port', '[::1]:port', or a bare host (port 5454); port 0 only to listen."""
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


def address_of(peer: Peer, override: str | None) -> tuple[str, int]:
    if override:
        return parse_address(override)
    for carrier, address in peer.card.addresses:
        if carrier == "tcp":
            return parse_address(address)
    raise UsageError(f"no TCP address for {peer.name}: give --address HOST:PORT")


async def call(home: Home, peer: Peer, host: str, port: int) -> LinkReport:
    """Dial `peer` over TCP, authenticate both ways, exchange everything both ways."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise PeerError(f"cannot reach {peer.name} at {host}:{port}: {exc.strerror}") from None
    try:
        return await call_over(home, peer, reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def call_over(
    home: Home, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> LinkReport:
    """A session as the caller over any byte streams (TCP, a pipe to `ssh ... --stdio`)."""
    try:
        channel = await secure.call(home.identity, peer.card.public.exchange_public, reader, writer)
        link = Link(home, peer, now=int(time.time()))
        return await link.run(channel, channel)
    except (TimeoutError, ConnectionError) as exc:
        raise PeerError(f"link to {peer.name} failed: {exc or type(exc).__name__}") from None


async def call_command(home: Home, peer: Peer, command: str) -> LinkReport:
    """Run the operator's `command` (e.g. 'ssh relay rise-daemon --stdio'); talk over its pipes."""
    process = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        return await call_over(home, peer, process.stdout, process.stdin)
    finally:
        process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(process.wait(), 30)


async def answer_stdio(home: Home, *, log: Log) -> None:
    """One session as the answering side over stdin/stdout (`rise-daemon --stdio`)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    try:
        await _answer(home, reader, writer, log=log)
    finally:
        writer.close()


async def serve(
    home: Home,
    host: str,
    port: int,
    *,
    log: Log,
    stop: asyncio.Event,
    ready: Callable[[int], None] = lambda _port: None,
) -> None:
    """Answer neighbours until `stop` is set."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        where = writer.get_extra_info("peername")
        try:
            await _answer(home, reader, writer, log=log)
        except (RiseError, TimeoutError, ConnectionError, OSError) as exc:
            message = exc.message if isinstance(exc, RiseError) else type(exc).__name__
            await asyncio.to_thread(log, f"{where}: session ended: {message}")
        finally:
            writer.close()

    server = await asyncio.start_server(session, host, port)
    sockets = server.sockets or ()
    ready(sockets[0].getsockname()[1] if sockets else port)
    async with server:
        await stop.wait()


async def _answer(
    home: Home, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, log: Log
) -> None:
    caller_key, responder = await secure.answer(home.identity, reader, writer)
    peer = next((p for p in home.peers.all() if p.card.public.exchange_public == caller_key), None)
    if peer is None:
        raise PeerError("refused a caller whose key is not in the peer book")
    channel = secure.accept(responder, reader, writer)
    link = Link(home, peer, now=int(time.time()))
    report = await link.run(channel, channel)
    # The log callback tosses what came (rise-daemon): in a thread, so that a
    # long toss never stalls the other sessions' event loop.
    await asyncio.to_thread(
        log,
        f"{peer.name}: received {report.received} ({report.received_bytes} bytes), "
        f"sent {report.sent} ({report.sent_bytes} bytes), confirmed {report.released}",
    )
