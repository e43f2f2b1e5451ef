"""Sessions over a serial port: `call` (rise-call, the carrier) and `answer` (rise-serial).

Both run the same Noise handshake and live session as TCP over an ArqStream
(carriers/serial/link.py), through carriers/tcp/online.py's call_over and
answer_over, so nothing about bundles is serial-specific.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from rise_dtn.carriers.live.link import Link, LinkReport, Stream, Toss
from rise_dtn.carriers.serial.link import ArqStream, Port, new_epoch, writer_of
from rise_dtn.carriers.serial.profile import SerialSpec
from rise_dtn.carriers.tcp import online
from rise_dtn.core import arq as arqmod
from rise_dtn.core.errors import FrameError, PeerError, RiseError
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer


async def call(
    home: Home,
    peer: Peer,
    spec: SerialSpec,
    *,
    toss: Toss | None = None,
    stream: Stream | None = None,
    now: int | None = None,
    link: Link | None = None,
    persistent: bool = False,
    progress: Progress = NO_PROGRESS,
) -> LinkReport:
    """Call `peer` at the other end of the port in `spec`; both directions, then hang up."""
    port = Port(spec)
    await port.open()
    try:
        arq = ArqStream(port, new_epoch())
        port.on_frame = arq.on_frame
        session = link or Link(
            home,
            peer,
            now=int(time.time()) if now is None else now,
            toss=toss,
            stream=stream,
            progress=progress,
        )
        session.data_bytes = spec.data_bytes
        try:
            report = await online.call_over(
                home, peer, arq.reader, writer_of(arq), link=session, persistent=persistent
            )
        finally:
            await arq.finish()
            arq.end()
        return report
    finally:
        await port.close()


async def answer(
    hub: online.Hub,
    spec: SerialSpec,
    *,
    stop: asyncio.Event,
    ready: Callable[[], None] | None = None,
) -> None:
    """Answer calls on one port until `stop`: one session at a time, a new epoch replacing
    the old one (the caller re-dialled after the cable came back). `ready` is called once
    the port is open."""
    port = Port(spec)
    await port.open()
    if ready is not None:
        ready()
    current: ArqStream | None = None
    task: asyncio.Task[None] | None = None

    def on_frame(frame: bytes) -> None:
        nonlocal current, task
        try:
            parsed = arqmod.decode(frame)
        except FrameError:
            return
        finished = task is not None and task.done()
        if (
            current is not None
            and parsed.epoch == current.epoch
            and not (finished and _opens(parsed))
        ):
            current.on_frame(frame)
            return
        if not _opens(parsed):
            return  # the tail of a session that is gone: its caller will give up
        if current is not None:
            current.end()  # its link sees the end of the stream and winds down
        current = ArqStream(port, parsed.epoch)
        current.on_frame(frame)
        task = asyncio.create_task(_one_session(hub, current, spec.data_bytes, after=task))

    port.on_frame = on_frame
    try:
        closed = asyncio.create_task(port.closed.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        stopping.cancel()
        if port.closed.is_set() and not stop.is_set():
            raise PeerError(f"{spec.where} closed")
    finally:
        if task is not None:
            hub.close_all()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, RiseError):
                await asyncio.wait_for(task, online.SHUTDOWN_SECONDS)
        if current is not None:
            current.end()
        await port.close()


def _opens(frame: arqmod.Data | arqmod.Ack) -> bool:
    return isinstance(frame, arqmod.Data) and frame.seq == 0


async def _one_session(
    hub: online.Hub, stream: ArqStream, data_bytes: int, *, after: asyncio.Task[None] | None
) -> None:
    """One answered session; first, the one it replaces winds down (bounded), so that
    the partial copies that session leaves are durable before this one offers to resume
    them. Meanwhile the ARQ already acknowledges the new caller's frames."""
    if after is not None:
        await asyncio.wait({after}, timeout=online.SHUTDOWN_SECONDS)
        after.cancel()  # no-op once it ended
    try:
        await online.answer_over(hub, stream.reader, writer_of(stream), data_bytes=data_bytes)
    except (RiseError, TimeoutError, ConnectionError, OSError) as exc:
        hub.log(f"session ended: {online._reason(exc)}")
    finally:
        await stream.finish()
