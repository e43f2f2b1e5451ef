"""Which neighbours rise-imap exchanges with, through which mailbox, and one pass over each.

Default deny, as for sticks (carriers/directory/audience.py): a mailbox
given on the command line serves only the neighbours named with --for, or
those whose [peers.NAME] address is that mailbox; a relay must not write
everyone's packets into every mailbox it can reach. Without a mailbox,
each neighbour with an imaps:// or imap:// address is served through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from rise_dtn.carriers.address import Address, parse
from rise_dtn.carriers.base import Exchanged, Hooks
from rise_dtn.carriers.mailbox import CARRIER
from rise_dtn.carriers.mailbox.settings import Settings, place_of
from rise_dtn.core.errors import RiseError, UsageError
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    peer: Peer
    address: Address


@dataclasses.dataclass(frozen=True, slots=True)
class PassReport:
    peer: str
    exchanged: Exchanged | None
    error: str | None
    exit_code: int = 0  # the error's (rise-imap exits with the first one's)


def chosen(home: Home, mailbox: str | None, names: tuple[str, ...]) -> list[Target]:
    configured = _configured(home)
    if mailbox is None:
        if names:
            wanted = {home.peers.find(name).name for name in names}
            configured = [target for target in configured if target.peer.name in wanted]
            missing = wanted - {target.peer.name for target in configured}
            if missing:
                raise UsageError(
                    f"no mailbox for {', '.join(sorted(missing))}: give MAILBOX, or set "
                    "[peers.NAME] address to an imaps:// address"
                )
        if not configured:
            raise UsageError("no neighbour has a mailbox: give MAILBOX and --for NAME")
        return configured
    address = parse(mailbox)
    place = place_of(address)
    if names:
        return [Target(home.peers.find(name), address) for name in names]
    same = [target for target in configured if place_of(target.address) == place]
    if not same:
        raise UsageError(
            f"no neighbour uses {place}: name them with --for NAME, "
            "or set [peers.NAME] address to it"
        )
    return [Target(target.peer, address) for target in same]


def _configured(home: Home) -> list[Target]:
    found = []
    for peer in home.peers.all():
        text = home.config.peer(peer.name).address
        if not text:
            continue
        address = parse(text)
        if address.scheme in CARRIER.schemes:
            place_of(address)
            found.append(Target(peer, address))
    return found


def places(home: Home, targets: list[Target]) -> list[Settings]:
    """One set of settings per distinct mailbox (for the IDLE watchers)."""
    distinct: dict[object, Settings] = {}
    for target in targets:
        settings = CARRIER.settings(home, target.peer, target.address)
        distinct.setdefault((settings.place, settings.user), settings)
    return list(distinct.values())


def run(
    home: Home,
    targets: list[Target],
    *,
    now: Callable[[], int],
    toss: Callable[[], object] | None,
    say: Callable[[str], None] | None,
    progress: Progress = NO_PROGRESS,
) -> list[PassReport]:
    """One pass per target; a failure is reported for its neighbour and the rest go on."""
    reports = []
    hooks = Hooks(toss=toss, say=say or (lambda _line: None), progress=progress)
    for target in targets:
        try:
            exchanged = CARRIER.exchange(home, target.peer, target.address, now=now(), hooks=hooks)
        except RiseError as exc:
            reports.append(PassReport(target.peer.name, None, exc.message, int(exc.exit_code)))
            continue
        reports.append(PassReport(target.peer.name, exchanged, None))
    return reports
