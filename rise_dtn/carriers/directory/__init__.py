"""The directory carrier: a USB stick, a network share, any folder two nodes can reach.

`CARRIER` is what the entry point registers. It imports the exchange only
when it runs one, so listing carriers costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rise_dtn.carriers.base import NO_HOOKS, Exchanged, Hooks, Kind

if TYPE_CHECKING:
    from rise_dtn.carriers.address import Address
    from rise_dtn.node.home import Home
    from rise_dtn.node.peers import Peer


class DirectoryPlace:
    """`dir:/PATH`: one rise-xfer pass over the folder, writing only for the neighbour called.

    Called for one neighbour (rise-call NAME dir:...), the medium serves
    that neighbour alone (carriers/directory/audience.py): a stick handed to
    bob must not carry what waits for carol.
    """

    name = "directory"
    schemes = ("dir",)
    summary = "a directory or USB stick; acks travel back as signed files (rise-xfer)"
    kind = Kind.PLACE

    def check(self, address: Address) -> None:
        from rise_dtn.carriers.address import directory_of

        directory_of(address)

    def exchange(
        self, home: Home, peer: Peer, address: Address, *, now: int, hooks: Hooks = NO_HOOKS
    ) -> Exchanged:
        from pathlib import Path

        from rise_dtn.carriers.address import directory_of
        from rise_dtn.carriers.directory import xfer
        from rise_dtn.carriers.directory.audience import Audience
        from rise_dtn.core.errors import UsageError

        directory = Path(directory_of(address)).expanduser()
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory (is the stick mounted?)")
        report = xfer.exchange(
            home,
            directory,
            move=False,
            now=now,
            say=hooks.say,
            toss=hooks.toss,
            stream=hooks.stream if hooks.toss is not None else None,
            serving=Audience(names=(peer.name,)),
            progress=hooks.progress,
        )
        return Exchanged(
            received=report.received,
            received_bytes=report.received_bytes,
            sent=report.sent,
            sent_bytes=report.sent_bytes,
            released=report.released,
            rejected=tuple(report.rejected + report.unwritten),
            notes=tuple(report.skipped),
        )


CARRIER = DirectoryPlace()
