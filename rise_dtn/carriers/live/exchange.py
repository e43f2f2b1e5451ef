"""A live carrier's `exchange`: one call, driven to the end on its own event loop.

The carrier interface is blocking (carriers/base.py) so that a place and a
link are called alike; a link's call is asyncio inside. This module bridges
the two: it runs the blocking toss and stream hooks in threads, as rise-call
always did, and turns the link's report into the shared `Exchanged`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

from rise_dtn.carriers.base import Exchanged, Hooks
from rise_dtn.carriers.live.link import LinkReport
from rise_dtn.carriers.live.link import Stream as LinkStream
from rise_dtn.carriers.live.link import Toss as LinkToss
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.identity import NodeId
from rise_dtn.node.toss.toss_events import Source, Streamed

Dial = Callable[[LinkToss | None, LinkStream | None], Coroutine[None, None, LinkReport]]


def run_call(dial: Dial, hooks: Hooks) -> Exchanged:
    """Run `dial(toss, stream)` to its end; the hooks, if any, run in threads meanwhile."""
    toss, stream = hooks.toss, hooks.stream

    async def toss_in_thread() -> None:
        assert toss is not None
        await asyncio.to_thread(toss)

    async def stream_in_thread(clear: ClearPart, neighbour: NodeId, source: Source) -> Streamed:
        assert stream is not None
        return await asyncio.to_thread(stream, clear, neighbour, source)

    report = asyncio.run(
        dial(
            toss_in_thread if toss is not None else None,
            stream_in_thread if stream is not None else None,
        )
    )
    return exchanged(report)


def exchanged(report: LinkReport) -> Exchanged:
    return Exchanged(
        received=report.received,
        received_bytes=report.received_bytes,
        sent=report.sent,
        sent_bytes=report.sent_bytes,
        released=report.released,
        rejected=tuple(report.rejected),
    )
