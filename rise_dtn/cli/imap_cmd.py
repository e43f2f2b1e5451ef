"""rise imap / rise-imap: exchange with neighbours through mailboxes, once or watching (IDLE).

Which neighbours and mailboxes: carriers/mailbox/targets.py. The passes
and the watch are the carrier's; this file only parses and prints.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from rise_dtn.cli.common import (
    home_option,
    log_options,
    now,
    open_home,
    progress_bars,
    quiet_option,
    say,
    setup_logging,
    warn,
)
from rise_dtn.core.errors import ExitCode
from rise_dtn.core.units import human_bytes


@click.command("imap")
@click.argument("mailbox", required=False)
@click.option(
    "--for",
    "names",
    multiple=True,
    metavar="NAME",
    help="Exchange with this neighbour through MAILBOX (repeatable; default: the neighbours "
    "whose [peers.NAME] address is MAILBOX).",
)
@click.option("--toss", "toss_too", is_flag=True, help="Toss what arrives, so acks leave at once.")
@click.option(
    "--watch",
    is_flag=True,
    help="Keep going: a pass whenever IMAP IDLE tells of mail, or a bundle is queued.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=1.0),
    default=300.0,
    show_default=True,
    help="With --watch: a pass at least this often (seconds), whatever IDLE says.",
)
@click.option(
    "--send-card",
    is_flag=True,
    help="Mail this node's card instead: into MAILBOX, or to --to by SMTP submission.",
)
@click.option("--to", metavar="ADDRESS", help="With --send-card: the address to mail it to.")
@click.option(
    "--cards",
    is_flag=True,
    help="Pick up the cards that came to MAILBOX instead: saved for `rise peer add`, none trusted.",
)
@quiet_option
@log_options
@home_option
def imap_cmd(
    mailbox: str | None,
    names: tuple[str, ...],
    toss_too: bool,
    watch: bool,
    poll: float,
    send_card: bool,
    to: str | None,
    cards: bool,
    quiet: bool,
    verbose: int,
    log_file: Path | None,
    home_path: Path | None,
) -> None:
    """Exchange bundles with neighbours through MAILBOX (imaps://USER@HOST[:PORT][/FOLDER]).

    Without MAILBOX: every neighbour whose [peers.NAME] address is an
    imaps:// or imap:// mailbox, each through its own. Bundles and hop acks
    travel as ordinary-looking mails; other mail in the box is never read,
    flagged or moved. The password comes from [mailbox] password_file
    (mode 0600) or password_env in config.toml, never from the command line.

    \b
    Examples:
      rise-imap --toss imaps://alice%40example.org@mail.example.org/Drafts --for bob
      rise-imap --toss --watch          # as a service: IDLE on every configured mailbox
      rise-imap --send-card --to bob@example.net imaps://me%40example.org@mail.example.org
      rise-imap --cards imaps://me%40example.org@mail.example.org
    """
    from rise_dtn.carriers.mailbox import targets

    if send_card or cards:
        from rise_dtn.cli.mail_cards import card_mode  # late: only this mode needs it

        card_mode(home_path, mailbox, send=send_card, to=to, quiet=quiet)
        return

    if watch:
        setup_logging("rise-imap", verbose=verbose, quiet=quiet, log_file=log_file)
    home = open_home(home_path)
    chosen = targets.chosen(home, mailbox, names)
    home.prewarm_index()  # SQLAlchemy's import overlaps the TLS handshake and the login
    rejected = [0]
    toss = None
    if toss_too:
        from rise_dtn.cli.toss_cmd import toss_now, toss_reporter  # late: the index

        rejected, on_event = toss_reporter(quiet)
        toss = toss_now(home, on_event)
    failed = [0]  # the first failure's exit status

    def run_passes() -> None:
        with progress_bars(quiet=quiet) as bars:  # none under --watch: it logs
            reports = targets.run(
                home, chosen, now=now, toss=toss, say=say if verbose else None, progress=bars
            )
        for report in reports:
            if report.error is not None:
                failed[0] = failed[0] or report.exit_code
                warn("rise-imap", f"{report.peer}: {report.error}")
                continue
            exchanged = report.exchanged
            assert exchanged is not None
            if not quiet and (
                exchanged.received or exchanged.sent or exchanged.released or not watch
            ):
                say(
                    f"{report.peer}: received {exchanged.received} "
                    f"({human_bytes(exchanged.received_bytes)}), sent {exchanged.sent} "
                    f"({human_bytes(exchanged.sent_bytes)}), confirmed {exchanged.released}"
                )
            for line in exchanged.rejected:
                rejected[0] += 1
                warn("rise-imap", f"rejected: {line}")
            for line in exchanged.notes:
                if not quiet:
                    say(f"note: {line}")

    if not watch:
        run_passes()
        if failed[0]:
            if toss is not None:
                toss()  # what came before a pass failed is delivered all the same
            raise SystemExit(failed[0])
        if rejected[0]:
            raise SystemExit(int(ExitCode.REJECTED))
        return
    from rise_dtn.carriers.mailbox import watch as watching  # late: watchdog, for --watch only

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    watching.watch(
        targets.places(home, chosen),
        run_passes,
        stop=stop,
        poll_seconds=poll,
        log=lambda line: warn("rise-imap", line),
        queues=home.spool.tx,
    )
