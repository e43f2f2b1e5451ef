"""rise serial / rise-serial: answer calls on a serial port or KISS TNC, or keep a link on it."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import click

from rise_dtn.carriers import address as addresses
from rise_dtn.carriers.tcp import online
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
from rise_dtn.cli.toss_cmd import stream_now, toss_now, toss_reporter
from rise_dtn.core.errors import RiseError, UsageError
from rise_dtn.node import warm


@click.command("serial")
@click.argument("port")
@click.option(
    "--link",
    "neighbour",
    metavar="NODE",
    help="Call NODE over the port and keep the link open, calling again whenever it drops "
    "(instead of answering).",
)
@click.option("--no-toss", is_flag=True, help="Leave received bundles in the spool for rise-toss.")
@click.option(
    "--no-send-worker",
    is_flag=True,
    help="Do not keep a warm worker that runs rise-send for this node (it saves each "
    "rise-send most of its start-up).",
)
@quiet_option
@log_options
@home_option
def serial_cmd(
    port: str,
    neighbour: str | None,
    no_toss: bool,
    no_send_worker: bool,
    quiet: bool,
    verbose: int,
    log_file: Path | None,
    home_path: Path | None,
) -> None:
    """Answer calls on PORT (a serial, kiss or kiss+tcp address), or keep a link there.

    The node at the other end calls with `rise-call NODE --address PORT`
    (its side of the cable or radio). Only nodes in the peer book get past
    the handshake (default deny); what arrives is tossed at once. SIGTERM
    or Ctrl-C stops it. Like rise-daemon, it keeps a warm worker that runs
    rise-send for this node, so a message sent while it runs starts at once.

    \b
    Examples:
      rise-serial 'serial:/dev/ttyUSB0?baud=9600'
      rise-serial 'kiss+tcp://127.0.0.1:8001?profile=tnc1200'
      rise-serial 'kiss:/dev/ttyACM0?profile=lora' --link relay1
    """
    from rise_dtn.carriers.serial import session
    from rise_dtn.carriers.serial.profile import SCHEMES, spec_of

    setup_logging("rise-serial", verbose=verbose, quiet=quiet, log_file=log_file)
    home = open_home(home_path)
    if port.startswith("/"):  # a bare device: name the schemes, not tcp://
        raise UsageError(
            f"not an address: {port!r} (a serial port is 'serial:{port}?baud=9600',"
            f" a KISS TNC on it 'kiss:{port}')"
        )
    spec = spec_of(addresses.parse(port, schemes=SCHEMES))
    _rejected, on_event = toss_reporter(False)
    hub = online.Hub(
        home,
        toss=None if no_toss else toss_now(home, on_event),
        stream=None if no_toss else stream_now(home, on_event),
        log=say,
    )
    peer = home.peers.find(neighbour) if neighbour is not None else None
    # Forked before the event loop starts any thread: see rise_dtn/node/warm.py.
    worker = None if no_send_worker else quick.start_worker(home.path)

    async def main() -> None:
        stop = stop_event_on_signals()
        hub.watch_tx()
        try:
            if hub.tosses:
                await hub.toss()  # what a crash or --no-toss left in rx/
            if peer is None:
                await session.answer(hub, spec, stop=stop)
                return
            # SIGTERM ends the kept link (its partial copies made durable), not only
            # the wait between calls.
            closer = asyncio.create_task(stop.wait())
            closer.add_done_callback(lambda _task: hub.close_all())
            delay = online.REDIAL_FIRST_SECONDS
            while not stop.is_set():
                try:
                    with online.call_lock(home, peer):
                        link = hub.new_link(peer, caller=home.identity.node_id)
                        try:
                            report = await session.call(
                                home, peer, spec, link=link, persistent=True
                            )
                        finally:
                            hub.forget(link)
                    say(f"{peer.name}: link closed: {online._summary(report)}")
                    delay = online.REDIAL_FIRST_SECONDS
                except (RiseError, TimeoutError, ConnectionError, OSError) as exc:
                    say(f"{peer.name}: link down: {online._reason(exc)}")
                try:
                    await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
                except TimeoutError:
                    pass
                delay = min(delay * 2, online.REDIAL_MAX_SECONDS)
        finally:
            hub.stop_watching()

    try:
        asyncio.run(main())
    finally:
        warm.stop(home.path, worker)
