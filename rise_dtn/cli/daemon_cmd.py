"""rise daemon / rise-daemon: answer neighbours' calls over TCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rise_dtn.carriers.tcp import daemon, discovery, online
from rise_dtn.cli import quick
from rise_dtn.cli.common import (
    home_option,
    log_options,
    open_home,
    quiet_option,
    say,
    setup_logging,
    stop_event_on_signals,
)
from rise_dtn.cli.toss_cmd import relay_now, stream_now, toss_now, toss_reporter
from rise_dtn.core.errors import UsageError
from rise_dtn.node import warm

DEFAULT_LISTEN = "127.0.0.1:5454"


@click.command("daemon")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to answer calls (port 0 picks a free one and prints it). Default: "
    "127.0.0.1:5454, or nowhere when the daemon only keeps links (--link, keep_link).",
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
@quiet_option
@log_options
@home_option
def daemon_cmd(
    listen: str | None,
    stdio: bool,
    announce: bool,
    announce_to: str,
    links: tuple[str, ...],
    no_toss: bool,
    no_send_worker: bool,
    quiet: bool,
    verbose: int,
    log_file: Path | None,
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
    setup_logging("rise-daemon", verbose=verbose, quiet=quiet, log_file=log_file)
    home = open_home(home_path)
    if stdio and listen is not None:
        raise UsageError("--listen answers calls over TCP, not with --stdio")
    log = say  # through `logging`: -q keeps warnings only
    _rejected, on_event = toss_reporter(False)
    hub = online.Hub(
        home,
        toss=None if no_toss else toss_now(home, on_event),
        stream=None if no_toss else stream_now(home, on_event),
        relay=None if no_toss else relay_now(home, on_event),
        log=log,
    )

    if stdio:
        if links:
            raise UsageError("--link keeps links from a listening daemon, not with --stdio")
        asyncio.run(online.answer_stdio(hub))
        return
    keep = daemon.kept_links(home, links)
    if listen is None and not keep:
        listen = DEFAULT_LISTEN
    where = online.parse_address(listen, listening=True) if listen is not None else None
    if where is None and announce:
        raise UsageError("--announce tells peers where to call: give --listen HOST:PORT")
    plan = daemon.DaemonPlan(where, keep, announce_to if announce else None)
    # Forked before the event loop starts any thread: see rise_dtn/node/warm.py.
    worker = None if no_send_worker else quick.start_worker(home.path)

    async def main() -> None:
        await daemon.serve(hub, plan, stop=stop_event_on_signals(), say=log)

    try:
        asyncio.run(main())
    finally:
        warm.stop(home.path, worker)
