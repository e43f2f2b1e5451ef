"""The one small interface every carrier provides, so commands and tests need not know which.

A carrier is an object with a name, the address schemes it serves, a
one-line summary, and `exchange`: one exchange with a neighbour at an
address, on behalf of a node's home. For a *place* (a directory, a mailbox)
that is one pass over the place: take what waits for us, leave what waits
for the neighbour, acks both ways. For a *link* (TCP, a pipe, a serial line)
it is one call: dial, run the session until both sides are done, hang up.
Answering calls (rise-daemon) stays with each link carrier: it needs a
listener and a hub that no place has.

Whatever the carrier, a bundle enters and leaves the spool only through the
store's bundle transaction (store/transaction.py), so the rules the contract
suite (tests/carriers/contract.py) checks are the same for all of them.

This module must stay light: the registry imports it to list carriers, and
`rise carriers` must not pay for SQLAlchemy or the event loop.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from rise_dtn.core.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from rise_dtn.carriers.address import Address
    from rise_dtn.core.bundle import ClearPart
    from rise_dtn.core.identity import NodeId
    from rise_dtn.node.home import Home
    from rise_dtn.node.peers import Peer
    from rise_dtn.node.toss.toss_events import Source, Streamed


class Kind(enum.Enum):
    """Places hold bundles while nobody is there and exchange ack bundles; links run
    the session machine with both ends talking at once (DESIGN.md, Carriers)."""

    PLACE = "place"
    LINK = "link"


Toss = Callable[[], object]
Stream = Callable[["ClearPart", "NodeId", "Source"], "Streamed"]


@dataclasses.dataclass(frozen=True, slots=True)
class Hooks:
    """What the caller lets an exchange do on the way (all optional, all blocking).

    `toss` tosses what arrived so far: a link runs it in a thread during the
    call, so receipts and forwards leave before it hangs up; a place runs it
    after taking bundles in, so the acks for them leave in the same pass.
    `stream` delivers a large bundle while a link still receives it.
    `say` gets one line per notable step (a place's progress).
    `quiet` (rise-call -q, for cron): what the carrier's helpers print (a
    command's stderr) is kept back unless the exchange fails.
    `progress` hears the bytes of each bundle moved (core/progress.py), in
    lanes "to NAME" and "from NAME".
    """

    toss: Toss | None = None
    stream: Stream | None = None
    say: Callable[[str], None] = lambda _line: None
    quiet: bool = False
    progress: Progress = NO_PROGRESS


NO_HOOKS = Hooks()


@dataclasses.dataclass(frozen=True, slots=True)
class Exchanged:
    """What one exchange did, in the terms every carrier shares."""

    received: int = 0
    received_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    released: int = 0  # our bundles the neighbour confirmed (or that left for good)
    rejected: tuple[str, ...] = ()  # one line each: refused, quarantined
    notes: tuple[str, ...] = ()  # one line each: skipped, left for later; not errors


@runtime_checkable
class Carrier(Protocol):
    """A way to move bundles between neighbours (module docstring)."""

    @property
    def name(self) -> str:
        """Its entry point name, e.g. "tcp"."""
        ...

    @property
    def schemes(self) -> tuple[str, ...]:
        """The address schemes it serves, lower case, without the colon."""
        ...

    @property
    def summary(self) -> str:
        """One line for `rise carriers`."""
        ...

    @property
    def kind(self) -> Kind: ...

    def check(self, address: Address) -> None:
        """UsageError with one line if `address` (of one of our schemes) is malformed;
        run before anything is opened, so a typo in config is found at once."""
        ...

    def exchange(
        self, home: Home, peer: Peer, address: Address, *, now: int, hooks: Hooks = NO_HOOKS
    ) -> Exchanged:
        """One exchange with `peer` at `address` (module docstring).

        `now` is the node's clock at the start (the expiry checks use it).
        Raises RiseError with a one-line message when the exchange could not
        run (unreachable, refused, a bad address); what it moved stays moved.
        """
        ...


IMPLEMENTS = ("name", "schemes", "summary", "kind", "check", "exchange")


def missing_parts(candidate: object) -> list[str]:
    """What `candidate` lacks of the interface (empty if it is a carrier)."""
    missing = [part for part in IMPLEMENTS if not hasattr(candidate, part)]
    missing += [
        part
        for part in ("check", "exchange")
        if part not in missing and not callable(getattr(candidate, part))
    ]
    if not missing:
        schemes = candidate.schemes  # type: ignore[attr-defined]
        if not (
            isinstance(schemes, tuple)
            and schemes
            and all(isinstance(scheme, str) and scheme for scheme in schemes)
        ):
            missing.append("schemes (a non-empty tuple of strings)")
        if not isinstance(candidate.name, str) or not candidate.name:  # type: ignore[attr-defined]
            missing.append("name (a string)")
    return missing
