"""The serial carrier: live links over serial cables, KISS TNCs (serial or TCP) and LoRa modems.

`CARRIER` is what the entry point registers; it calls. Answering on a port
is `rise-serial`'s (carriers/serial/session.py). Addresses and link
profiles: carriers/serial/profile.py; the ARQ: core/arq.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rise_dtn.carriers.base import NO_HOOKS, Exchanged, Hooks, Kind

if TYPE_CHECKING:
    from rise_dtn.carriers.address import Address
    from rise_dtn.node.home import Home
    from rise_dtn.node.peers import Peer


class SerialLink:
    """`serial:/dev/ttyX?baud=9600`, `kiss:/dev/ttyX`, `kiss+tcp://HOST:8001`: call the node
    at the other end of a cable or radio link (it runs rise-serial)."""

    name = "serial"
    schemes = ("serial", "kiss", "kiss+tcp")
    summary = (
        "live links over serial cables and KISS TNCs (packet radio, LoRa), Noise-authenticated"
    )
    kind = Kind.LINK

    def check(self, address: Address) -> None:
        from rise_dtn.carriers.serial.profile import spec_of

        spec_of(address)

    def exchange(
        self, home: Home, peer: Peer, address: Address, *, now: int, hooks: Hooks = NO_HOOKS
    ) -> Exchanged:
        from rise_dtn.carriers.live.exchange import run_call
        from rise_dtn.carriers.serial import session
        from rise_dtn.carriers.serial.profile import spec_of

        spec = spec_of(address)
        return run_call(
            lambda toss, stream: session.call(
                home, peer, spec, toss=toss, stream=stream, now=now, progress=hooks.progress
            ),
            hooks,
        )


CARRIER = SerialLink()
