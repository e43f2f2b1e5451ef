"""The stream carrier: bundles over byte streams that are not sockets.

Two ways: a live link over the pipes of a command (`exec:COMMAND`, and
`ssh://HOST`, which runs `ssh HOST rise-daemon --stdio`), and the one-way
bundle streams of rise-bundle for tapes and pipelines (bundle_stream.py).
`CARRIER` is what the entry point registers; it makes the calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rise_dtn.carriers.base import NO_HOOKS, Exchanged, Hooks, Kind

if TYPE_CHECKING:
    from rise_dtn.carriers.address import Address
    from rise_dtn.node.home import Home
    from rise_dtn.node.peers import Peer


class PipeLink:
    """`exec:COMMAND` or `ssh://[USER@]HOST[:PORT][/HOME]`: a live link over a command's pipes."""

    name = "stream"
    schemes = ("exec", "ssh")
    summary = (
        "live links over a command's pipes: ssh to a remote rise-daemon --stdio, or any command"
    )
    kind = Kind.LINK

    def check(self, address: Address) -> None:
        self.command(address)

    def command(self, address: Address) -> str:
        """The shell command whose stdin and stdout carry the link."""
        from rise_dtn.carriers.address import command_of, ssh_target

        if address.scheme == "ssh":
            return ssh_target(address).command()
        return command_of(address)

    def exchange(
        self, home: Home, peer: Peer, address: Address, *, now: int, hooks: Hooks = NO_HOOKS
    ) -> Exchanged:
        from rise_dtn.carriers.live.exchange import run_call
        from rise_dtn.carriers.tcp import online

        command = self.command(address)
        return run_call(
            lambda toss, stream: online.call_command(
                home,
                peer,
                command,
                toss=toss,
                stream=stream,
                quiet=hooks.quiet,
                now=now,
                progress=hooks.progress,
            ),
            hooks,
        )


CARRIER = PipeLink()
