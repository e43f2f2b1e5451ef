"""rise daemon / rise-daemon: answer neighbours' calls over TCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rise_dtn.carriers.tcp import discovery, online
from rise_dtn.cli.common import home_option, open_home, say, stop_event_on_signals
from rise_dtn.cli.toss_cmd import stream_now, toss_now, toss_reporter
from rise_dtn.core.errors import UsageError
from rise_dtn.node import warm
from rise_dtn.node.home import Home


@click.command("daemon")
@click.option(
    "--listen",
    default="127.0.0.1:5454",
    show_default=True,
    help="HOST:PORT to listen on (port 0 picks a free one and prints it).",
)
@click.option(
    "--stdio",
    is_flag=True,
    help="Serve one session over stdin/stdout (for rise-call --command, e.g. over SSH).",
)
@click.option(
    "--announce",
    is_flag=True,
    help="Send signed presence beacons on the LAN, so peers can call without an address.",
)
@click.option(
    "--announce-to",
    default=discovery.DEFAULT_TARGET,
    show_default=True,
    metavar="HOST:PORT",
    help="Where beacons go (a multicast group, or any address).",
)
@click.option(
    "--link",
    "links",
    multiple=True,
    metavar="NODE[=HOST:PORT]",
    help="Keep a link open to NODE, dialling again whenever it drops (repeatable; "
    "also [peers.NODE] keep_link = true). The address defaults to [peers.NODE] address, "
    "then NODE's card.",
)
@click.option("--no-toss", is_flag=True, help="Leave received bundles in the spool for rise-toss.")
@click.option(
    "--no-send-worker",
    is_flag=True,
    help="Do not keep a warm worker that runs rise-send for this node (it saves each "
    "rise-send ~0.3 s of start-up).",
)
@home_option
def daemon_cmd(
    listen: str,
    stdio: bool,
    announce: bool,
    announce_to: str,
    links: tuple[str, ...],
    no_toss: bool,
    no_send_worker: bool,
    home_path: Path | None,
) -> None:
    """Answer calls from neighbours and keep links open: bundles flow both ways as they come.

    Only nodes in the peer book get past the handshake (default deny). What
    arrives is tossed at once; what that queues for a connected neighbour (a
    relay's forward, a receipt) leaves on its link in the same session, and
    so does what rise-send queues meanwhile. Sessions are logged on stderr;
    SIGTERM or Ctrl-C stops the daemon.

    \b
    Examples:
      rise-daemon --listen 0.0.0.0:5454
      rise-daemon --link relay1=relay1.example.org:5454
      rise-daemon --stdio          (for rise-call --command 'ssh HOST rise-daemon --stdio')
    """
    home = open_home(home_path)
    host, port = online.parse_address(listen, listening=True)
    _rejected, on_event = toss_reporter(False)
    hub = online.Hub(
        home,
        toss=None if no_toss else toss_now(home, on_event),
        stream=None if no_toss else stream_now(home, on_event),
        log=say,
    )

    if stdio:
        if links:
            raise UsageError("--link keeps links from a listening daemon, not with --stdio")
        asyncio.run(online.answer_stdio(hub))
        return
    keep = _kept_links(home, links)
    # Forked before the event loop starts any thread: see rise_dtn/node/warm.py.
    worker = None if no_send_worker else warm.start(home.path)

    async def main() -> None:
        stop = stop_event_on_signals()
        beacons: list[asyncio.Task[None]] = []

        def ready(bound: int) -> None:
            say(f"listening on {host}:{bound}")
            if announce:
                beacons.append(
                    asyncio.get_running_loop().create_task(
                        discovery.announce(home, port=bound, target=announce_to, stop=stop)
                    )
                )

        await online.serve(hub, host, port, stop=stop, ready=ready, keep=keep)
        for task in beacons:
            await task

    try:
        asyncio.run(main())
    finally:
        warm.stop(home.path, worker)


def _kept_links(home: Home, given: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """--link NODE[=HOST:PORT] and [peers.NODE] keep_link, each with where to dial."""
    wanted: dict[str, str | None] = {
        name: None for name, settings in home.config.peers.items() if settings.keep_link
    }
    for item in given:
        name, _equals, given_address = item.partition("=")
        wanted[name] = given_address or wanted.get(name)
    keep = {}
    for name, override in wanted.items():
        peer = home.peers.find(name)
        try:
            keep[peer.name] = online.address_of(peer, override, home.config.peer(peer.name))
        except online.NoAddress:
            raise UsageError(
                f"no address to keep a link to {peer.name}: "
                f"use --link {peer.name}=HOST:PORT or set [peers.{peer.name}] address"
            ) from None
    return keep
