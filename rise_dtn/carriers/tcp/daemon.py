"""rise-daemon's body: listen, keep links, announce; the command line only parses and prints.

It owns the order the daemon needs: the send worker is forked before the
event loop starts any thread (node/warm.py), links to keep are resolved
(and refused with one line) before anything listens, and every task stops
on SIGTERM or Ctrl-C through the one `stop` event.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from rise_dtn.carriers.tcp import discovery, online
from rise_dtn.core.errors import UsageError
from rise_dtn.node.home import Home


@dataclasses.dataclass(frozen=True, slots=True)
class DaemonPlan:
    """What one rise-daemon does: where it listens, whom it keeps links to, if it announces."""

    listen: tuple[str, int] | None  # None: answer no calls, only keep links
    keep: dict[str, tuple[str, int]]
    announce_to: str | None = None  # where beacons go; None: no beacons


def kept_links(home: Home, given: tuple[str, ...]) -> dict[str, tuple[str, int]]:
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


async def serve(
    hub: online.Hub,
    plan: DaemonPlan,
    *,
    stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:
    """Listen and keep links until `stop` is set; announce on the LAN if the plan says so."""
    beacons: list[asyncio.Task[None]] = []

    def ready(bound: int) -> None:
        assert plan.listen is not None
        say(f"listening on {plan.listen[0]}:{bound}")
        if plan.announce_to is not None:
            beacons.append(
                asyncio.get_running_loop().create_task(
                    discovery.announce(hub.home, port=bound, target=plan.announce_to, stop=stop)
                )
            )

    if plan.listen is None:
        say(f"keeping links to {', '.join(sorted(plan.keep))}; answering no calls")
    await online.serve(hub, plan.listen, stop=stop, ready=ready, keep=plan.keep)
    for task in beacons:
        await task
