"""rise call / rise-call: exchange bundles with a neighbour over TCP, now."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rise_dtn.carriers.tcp import discovery, online
from rise_dtn.cli.common import home_option, open_home, quiet_option, say
from rise_dtn.core.bundle import ClearPart
from rise_dtn.core.errors import ExitCode, RiseError, UsageError
from rise_dtn.core.identity import NodeId
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss.toss_events import Source

DISCOVERY_SECONDS = 12.0  # beacons come every 5 s: two chances to hear one


@click.command("call")
@click.argument("node")
@click.option(
    "--address",
    help="HOST:PORT to dial (default: [peers.NODE] address, then the tcp address on NODE's card).",
)
@click.option(
    "--command",
    help="Talk over the pipes of this shell command instead of TCP, "
    "e.g. 'ssh relay rise-daemon --stdio'.",
)
@click.option(
    "--discover-on",
    default=discovery.DEFAULT_TARGET,
    show_default=True,
    metavar="HOST:PORT",
    help="With no address known: listen here for NODE's LAN beacon (rise-daemon --announce).",
)
@click.option(
    "--toss",
    "toss_too",
    is_flag=True,
    help="Toss what arrives during the call; what that queues for NODE (receipts, "
    "a relay's forwards) goes out before hanging up.",
)
@home_option
@quiet_option
def call_cmd(
    node: str,
    address: str | None,
    command: str | None,
    discover_on: str,
    toss_too: bool,
    home_path: Path | None,
    quiet: bool,
) -> None:
    """Call NODE and exchange everything queued both ways, in priority order.

    The link is encrypted and both nodes prove their keys (Noise IK) before
    any bundle moves. Each bundle is confirmed only once the other side has
    stored it durably; a call cut at any byte resumes where it stopped on
    the next call.

    \b
    Examples:
      rise-call bob --address bob.example.org:5454
      rise-call relay --command 'ssh relay.example.org rise-daemon --stdio'
    """
    home = open_home(home_path)
    peer = home.peers.find(node)
    home.prewarm_index()  # SQLAlchemy's import overlaps the dial and the handshake
    rejected, toss, stream = [0], None, None
    if toss_too:
        from rise_dtn.cli.toss_cmd import stream_now, toss_now, toss_reporter  # late: the index

        rejected, on_event = toss_reporter(quiet)
        toss = toss_now(home, on_event)
        stream = stream_now(home, on_event)

    async def toss_in_thread() -> None:
        assert toss is not None
        await asyncio.to_thread(toss)

    async def stream_in_thread(clear: ClearPart, neighbour: NodeId, source: Source) -> bool:
        assert stream is not None
        return await asyncio.to_thread(stream, clear, neighbour, source)

    in_call = toss_in_thread if toss_too else None
    streamed = stream_in_thread if toss_too else None
    with online.call_lock(home, peer):  # never two calls to one neighbour (cron, rise-caller)
        try:
            if command is not None:
                report = asyncio.run(
                    online.call_command(
                        home, peer, command, toss=in_call, stream=streamed, quiet=quiet
                    )
                )
            else:
                host, port = _where(home, peer, address, discover_on)
                report = asyncio.run(
                    online.call(home, peer, host, port, toss=in_call, stream=streamed)
                )
        except RiseError:
            if toss is not None:
                toss()  # what arrived before the call failed is delivered all the same
            raise
    if not quiet:
        say(
            f"{peer.name}: received {report.received} ({human_bytes(report.received_bytes)}), "
            f"sent {report.sent} ({human_bytes(report.sent_bytes)}), "
            f"confirmed {report.released}"
        )
    if toss is not None:
        toss()  # anything a cut left behind in rx/
    if report.rejected or rejected[0]:
        raise SystemExit(int(ExitCode.REJECTED))


def _where(home: Home, peer: Peer, address: str | None, discover_on: str) -> tuple[str, int]:
    """The given address, the config's, the card's, or the one the peer announces on the LAN."""
    try:
        return online.address_of(peer, address, home.config.peer(peer.name))
    except online.NoAddress:
        found = asyncio.run(
            discovery.find(home, peer, listen=discover_on, timeout=DISCOVERY_SECONDS)
        )
        if found is None:
            raise UsageError(
                f"no address for {peer.name}: give --address, put one on its card, "
                f"or run its daemon with --announce (listened {DISCOVERY_SECONDS:g} s)"
            ) from None
        return found
