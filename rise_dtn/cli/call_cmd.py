"""rise call / rise-call: exchange bundles with a neighbour now.

The address's scheme chooses the carrier (carriers/registry.py); this file
only parses and prints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rise_dtn.carriers import registry
from rise_dtn.carriers.address import Address
from rise_dtn.carriers.base import Carrier, Hooks
from rise_dtn.carriers.tcp import discovery, online
from rise_dtn.cli.common import home_option, now, open_home, progress_bars, quiet_option, say
from rise_dtn.core.errors import ExitCode, RiseError, UsageError
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer

DISCOVERY_SECONDS = 12.0  # beacons come every 5 s: two chances to hear one


@click.command("call")
@click.argument("node")
@click.argument("address_given", metavar="[ADDRESS]", required=False)
@click.option(
    "--address",
    help="Where to reach NODE: tcp://HOST[:PORT] (or HOST:PORT), ssh://[USER@]HOST[:PORT][/HOME], "
    "exec:COMMAND, dir:/PATH, imaps://USER@HOST/FOLDER (rise-imap(1)), or serial:DEVICE, "
    "kiss:DEVICE, kiss+tcp://HOST:PORT (rise-serial(1)) (default: [peers.NODE] address, "
    "then the tcp address on "
    "NODE's card). The same as the ADDRESS argument.",
)
@click.option(
    "--command",
    help="Talk over the pipes of this shell command, e.g. 'ssh relay rise-daemon --stdio' "
    "(the same as the address exec:COMMAND).",
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
    address_given: str | None,
    address: str | None,
    command: str | None,
    discover_on: str,
    toss_too: bool,
    home_path: Path | None,
    quiet: bool,
) -> None:
    """Call NODE and exchange everything queued both ways, in priority order.

    The address's scheme chooses the carrier (see `rise carriers`). Over
    TCP and pipes the link is encrypted and both nodes prove their keys
    (Noise IK) before any bundle moves; each bundle is confirmed only once
    the other side has stored it durably, and a call cut at any byte
    resumes where it stopped on the next call. A dir: address makes one
    rise-xfer pass over that folder, writing only for NODE.

    \b
    Examples:
      rise-call bob tcp://bob.example.org:5454
      rise-call relay ssh://rise@relay.example.org
      rise-call relay --command 'ssh relay.example.org rise-daemon --stdio'
      rise-call bob dir:/media/usb
      rise-call bob 'serial:/dev/ttyUSB0?baud=9600'
    """
    home = open_home(home_path)
    peer = home.peers.find(node)
    given = _given(address_given, address, command)
    found = registry.load()
    for problem in found.problems:
        say(f"rise-call: {problem}")
    home.prewarm_index()  # SQLAlchemy's import overlaps the dial and the handshake
    rejected, toss, stream = [0], None, None
    if toss_too:
        from rise_dtn.cli.toss_cmd import stream_now, toss_now, toss_reporter  # late: the index

        rejected, on_event = toss_reporter(quiet)
        toss = toss_now(home, on_event)
        stream = stream_now(home, on_event)
    with online.call_lock(home, peer):  # never two calls to one neighbour (cron, rise-caller)
        try:
            carrier, where = _where(home, peer, given, discover_on, found)
            with progress_bars(quiet=quiet) as bars:
                hooks = Hooks(toss=toss, stream=stream, quiet=quiet, progress=bars)
                report = carrier.exchange(home, peer, where, now=now(), hooks=hooks)
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
        for line in report.rejected:
            say(f"rejected: {line}")
    if toss is not None:
        toss()  # anything a cut left behind in rx/
    if report.rejected or rejected[0]:
        raise SystemExit(int(ExitCode.REJECTED))


def _given(positional: str | None, address: str | None, command: str | None) -> str | None:
    """The one address the command line gave, if any (ADDRESS, --address, --command)."""
    given = [text for text in (positional, address) if text]
    if command:
        given.append(f"exec:{command}")
    if len(given) > 1:
        raise UsageError("give one address: ADDRESS, --address or --command")
    return given[0] if given else None


def _where(
    home: Home, peer: Peer, given: str | None, discover_on: str, found: registry.Registry
) -> tuple[Carrier, Address]:
    """The given address, the config's, the card's, or the one the peer announces on the LAN."""
    chosen = found.choose(
        given=given, configured=home.config.peer(peer.name).address, card=peer.card.addresses
    )
    if chosen is not None:
        return chosen
    where = asyncio.run(discovery.find(home, peer, listen=discover_on, timeout=DISCOVERY_SECONDS))
    if where is None:
        raise UsageError(
            f"no address for {peer.name}: give one (rise-call {peer.name} tcp://HOST:PORT,"
            f" or dir:, ssh:, serial:, see `rise carriers`), set [peers.{peer.name}] address"
            f" in config.toml, or run its daemon with --announce"
            f" (listened {DISCOVERY_SECONDS:g} s)"
        )
    host, port = where
    return found.resolve(f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}")
