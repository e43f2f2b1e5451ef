"""rise call / rise-call: exchange bundles with a neighbour over TCP, now."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rise_dtn.cli.common import home_option, human_bytes, open_home, quiet_option, say
from rise_dtn.cli.toss_cmd import finish_with_toss
from rise_dtn.core.errors import UsageError
from rise_dtn.node import discovery, online
from rise_dtn.node.caller import call_lock
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer

DISCOVERY_SECONDS = 12.0  # beacons come every 5 s: two chances to hear one


@click.command("call")
@click.argument("node")
@click.option("--address", help="HOST:PORT to dial (default: the tcp address on NODE's card).")
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
@click.option("--toss", "toss_too", is_flag=True, help="Toss what arrived when the call ends.")
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
    with call_lock(home, peer):  # never two calls to one neighbour (cron, rise-caller)
        if command is not None:
            report = asyncio.run(online.call_command(home, peer, command))
        else:
            host, port = _where(home, peer, address, discover_on)
            report = asyncio.run(online.call(home, peer, host, port))
    if not quiet:
        say(
            f"{peer.name}: received {report.received} ({human_bytes(report.received_bytes)}), "
            f"sent {report.sent} ({human_bytes(report.sent_bytes)}), "
            f"confirmed {report.released}"
        )
    finish_with_toss(home, rejected=len(report.rejected), toss_too=toss_too, quiet=quiet)


def _where(home: Home, peer: Peer, address: str | None, discover_on: str) -> tuple[str, int]:
    """The given address, the card's, or the one the peer announces on the LAN."""
    try:
        return online.address_of(peer, address)
    except UsageError:
        found = asyncio.run(
            discovery.find(home, peer, listen=discover_on, timeout=DISCOVERY_SECONDS)
        )
        if found is None:
            raise UsageError(
                f"no address for {peer.name}: give --address, put one on its card, "
                f"or run its daemon with --announce (listened {DISCOVERY_SECONDS:g} s)"
            ) from None
        return found
