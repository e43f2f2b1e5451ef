"""Which neighbours a medium serves: the only ones whose bundles and acks go onto it.

A relay holds packets for several neighbours. If it wrote all of them onto
every stick, the holder of the r1-r2 stick would see the packets r1 holds
for bob (by folder and by size), and learn both ends of a route that the
relay table of docs/threat-model.md says no single relay learns. So a medium
carries only what is meant for the neighbours it serves, chosen in this
order:

1. `rise-xfer --for-all`: every neighbour (the operator's explicit choice);
2. `rise-xfer --for NAME` (repeatable): those neighbours;
3. `[peers.NAME] media = ["/media/usb-r2"]` in config.toml: the neighbours
   whose media name this directory;
4. a node that relays nothing: every neighbour. Its spool holds only its
   own bundles, so a stick shows no more than who it exchanges with, as
   before; a two-node sneakernet, or an end node beside its relay, needs
   no setting;
5. a relay with exactly one neighbour: that one;
6. any other relay: nobody. Bundles and acks for us are still taken in.

Nothing on the medium itself decides: its folders are whatever its holder
made them, so a folder named after bob must never make a relay write bob's
packets there. Taking in is never restricted: reading tells the holder nothing.
This module only chooses; it never touches the medium.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from rise_dtn.core.errors import UsageError
from rise_dtn.core.identity import NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer


@dataclasses.dataclass(frozen=True, slots=True)
class Audience:
    """What the operator said about a medium: named neighbours, or everyone."""

    names: tuple[str, ...] = ()
    everyone: bool = False


UNNAMED = Audience()  # nothing said on the command line: rules 3 to 6


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """The neighbours a medium serves, and why (for the note a user sees)."""

    peers: dict[NodeId, Peer]
    because: str


def served(home: Home, directory: Path, audience: Audience) -> Served:
    """The neighbours `directory` serves (module docstring); UsageError for an unknown name."""
    peers = {peer.node_id: peer for peer in home.peers.all()}
    if audience.everyone:
        return Served(peers, "--for-all")
    if audience.names:
        chosen = [home.peers.find(name) for name in audience.names]
        return Served({peer.node_id: peer for peer in chosen}, "--for")
    configured = {
        node_id: peer
        for node_id, peer in peers.items()
        if any(_same_place(directory, Path(path)) for path in home.config.peer(peer.name).media)
    }
    if configured:
        return Served(configured, "[peers.NAME] media")
    if not home.config.relay.enabled:
        return Served(peers, "not a relay")
    if len(peers) == 1:
        return Served(peers, "the only neighbour")
    return Served({}, "a relay, none named")


def _same_place(directory: Path, configured: Path) -> bool:
    try:
        return os.path.samefile(directory, configured.expanduser())
    except OSError:
        return os.path.abspath(directory) == os.path.abspath(configured.expanduser())


def nobody_line(directory: Path, neighbours: int) -> str:
    return (
        f"a relay writes for no neighbour on {directory} until told which of its "
        f"{neighbours} it serves: --for NAME, [peers.NAME] media, or --for-all"
    )


def check_names(home: Home, audience: Audience) -> None:
    """Refuse an unknown --for name before anything is done (exit status 2)."""
    if audience.everyone and audience.names:
        raise UsageError("--for and --for-all exclude each other")
    for name in audience.names:
        home.peers.find(name)
