"""rise-imap --send-card / --cards: cards by mail (carriers/mailbox/cards.py does the work).

Nothing that arrives is trusted: cards are saved under <home>/cards/ and
the user adds one with `rise peer add FILE` once its node id is checked.
"""

from __future__ import annotations

from pathlib import Path

import click

from rise_dtn.carriers.address import parse
from rise_dtn.carriers.mailbox import cards as mail_cards
from rise_dtn.carriers.mailbox.settings import place_of, settings_for
from rise_dtn.cli.common import now, open_home, say
from rise_dtn.core.errors import ExitCode, UsageError
from rise_dtn.store.atomic import write_atomic


def card_mode(
    home_path: Path | None, mailbox: str | None, *, send: bool, to: str | None, quiet: bool
) -> None:
    if send and to is None and mailbox is None:
        raise UsageError("--send-card needs MAILBOX (and --to ADDRESS to mail someone)")
    if mailbox is None:
        raise UsageError("give the MAILBOX (imaps://USER@HOST/FOLDER)")
    if to is not None and not send:
        raise UsageError("--to goes with --send-card")
    home = open_home(home_path)
    settings = settings_for(home.config.mailbox, place_of(parse(mailbox)), "")
    if send:
        if to is not None and settings.smtp is None:
            raise UsageError("--to needs [mailbox] smtp (a submission server) in config.toml")
        where = mail_cards.send_card(settings, home.card(now=now()).armor(), to=to, now=now())
        if not quiet:
            say(f"card mailed to {where}")
        return
    folder = home.path / "cards"
    problems = 0
    for found in mail_cards.pick_up(settings):
        if found.card is None:
            problems += 1
            say(f"rejected: {found.problem}")
            continue
        card = found.card
        known = home.peers.by_id(card.node_id)
        if card.node_id == home.identity.node_id or known is not None:
            if not quiet and known is not None:
                say(f"card of {known.name} ({card.node_id}): already a peer")
            continue
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{card.node_id}.card"
        write_atomic(path, card.armor().encode(), what="saving a card", mode=0o600)
        click.echo(f"{card.name} {card.node_id} {path}")
        if not quiet:
            say(
                f"card from {card.name!r} saved: check node {card.node_id} with them, then "
                f"rise peer add {path}"
            )
    if problems:
        raise SystemExit(int(ExitCode.REJECTED))
