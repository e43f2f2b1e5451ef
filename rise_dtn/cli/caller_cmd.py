"""rise caller / rise-caller: run the calls listed in config.toml on their schedules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from rise_dtn.carriers.base import NO_HOOKS, Hooks
from rise_dtn.carriers.live import caller
from rise_dtn.carriers.live.schedule import parse_calls
from rise_dtn.cli.common import (
    home_option,
    log_options,
    open_home,
    quiet_option,
    say,
    setup_logging,
    stop_event_on_signals,
)
from rise_dtn.cli.toss_cmd import session_logger, toss_now, toss_reporter
from rise_dtn.core.errors import ExitCode


@click.command("caller")
@click.option(
    "--now", "right_now", is_flag=True, help="Make every listed call once, now, and exit."
)
@click.option("--no-toss", is_flag=True, help="Leave received bundles in the spool for rise-toss.")
@quiet_option
@log_options
@home_option
def caller_cmd(
    right_now: bool,
    no_toss: bool,
    quiet: bool,
    verbose: int,
    log_file: Path | None,
    home_path: Path | None,
) -> None:
    """Call neighbours on the schedules in config.toml ([[calls]]), retrying with backoff.

    Each [[calls]] table names a node, a cron schedule (local time) and
    optionally an address or a command and a daily window. A failed call is
    retried after 30 s, 1 min, 2 min, ... up to an hour, never past its next
    scheduled time. Plain cron lines calling `rise-call` work too; both take
    the same per-neighbour lock, so two calls to one neighbour never overlap.
    """
    setup_logging("rise-caller", verbose=verbose, quiet=quiet, log_file=log_file)
    home = open_home(home_path)
    plans = parse_calls(list(home.config.calls))
    if not plans:
        say("no [[calls]] in config.toml: nothing to do (see rise-config(5))")
        return
    log = session_logger(home, toss_after=not no_toss)
    _rejected, on_event = toss_reporter(False)
    # Tossed during each call: receipts and forwards leave before it hangs up.
    hooks = NO_HOOKS if no_toss else Hooks(toss=toss_now(home, on_event))

    if right_now:
        failed = asyncio.run(caller.run_all_now(home, plans, log=log, hooks=hooks))
        if failed:
            raise SystemExit(int(ExitCode.PEER))
        return

    async def main() -> None:
        stop = stop_event_on_signals()
        say(f"{len(plans)} call(s) scheduled (Ctrl-C to stop)")
        await caller.run_schedule(home, plans, stop=stop, log=log, hooks=hooks)

    asyncio.run(main())
