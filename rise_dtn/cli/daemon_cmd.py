"""rise daemon / rise-daemon: answer neighbours' calls over TCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rise_dtn.cli.common import home_option, open_home, say, stop_event_on_signals
from rise_dtn.cli.toss_cmd import session_logger
from rise_dtn.node import discovery, online


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
@click.option("--no-toss", is_flag=True, help="Leave received bundles in the spool for rise-toss.")
@home_option
def daemon_cmd(
    listen: str,
    stdio: bool,
    announce: bool,
    announce_to: str,
    no_toss: bool,
    home_path: Path | None,
) -> None:
    """Answer calls from neighbours: exchange bundles both ways, toss what arrives.

    Only nodes in the peer book get past the handshake (default deny). Each
    session is logged on stderr; SIGTERM or Ctrl-C stops the daemon.
    """
    home = open_home(home_path)
    host, port = online.parse_address(listen, listening=True)
    log = session_logger(home, toss_after=not no_toss)

    if stdio:
        asyncio.run(online.answer_stdio(home, log=log))
        return

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

        await online.serve(home, host, port, log=log, stop=stop, ready=ready)
        for task in beacons:
            await task

    asyncio.run(main())
