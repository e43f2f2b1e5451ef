"""The TCP carrier: live links over TCP, Noise-authenticated both ways (and LAN discovery).

`CARRIER` is what the entry point registers; it dials. Answering is
rise-daemon's (carriers/tcp/daemon.py), which no other carrier shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rise_dtn.carriers.base import NO_HOOKS, Exchanged, Hooks, Kind

if TYPE_CHECKING:
    from rise_dtn.carriers.address import Address
    from rise_dtn.node.home import Home
    from rise_dtn.node.peers import Peer


class TcpLink:
    """`tcp://HOST[:PORT]` (or the older HOST:PORT): call a neighbour's rise-daemon."""

    name = "tcp"
    schemes = ("tcp",)
    summary = "live links over TCP to a rise-daemon, encrypted and authenticated (Noise IK)"
    kind = Kind.LINK

    def check(self, address: Address) -> None:
        from rise_dtn.carriers.address import host_port

        host_port(address)

    def exchange(
        self, home: Home, peer: Peer, address: Address, *, now: int, hooks: Hooks = NO_HOOKS
    ) -> Exchanged:
        from rise_dtn.carriers.address import host_port
        from rise_dtn.carriers.live.exchange import run_call
        from rise_dtn.carriers.tcp import online

        host, port = host_port(address)
        return run_call(
            lambda toss, stream: online.call(
                home, peer, host, port, toss=toss, stream=stream, now=now, progress=hooks.progress
            ),
            hooks,
        )


CARRIER = TcpLink()
