"""The mailbox carrier: any IMAP mailbox as a place where bundles wait (issue 10).

`CARRIER` is what the entry point registers. It imports IMAPClient and
the exchange only when it runs one, so listing carriers costs nothing.
Addresses: `imaps://USER@HOST[:PORT][/FOLDER]` and `imap://...` (STARTTLS);
the rest of the settings are in config.toml's [mailbox] tables
(carriers/mailbox/settings.py, rise-config(5)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rise_dtn.carriers.base import NO_HOOKS, Exchanged, Hooks, Kind

if TYPE_CHECKING:
    from rise_dtn.carriers.address import Address
    from rise_dtn.carriers.mailbox.settings import Settings
    from rise_dtn.node.home import Home
    from rise_dtn.node.peers import Peer


class MailboxPlace:
    """`imaps://USER@HOST/FOLDER`: one pass over the folder for the neighbour called.

    Bundles and hop acks travel as ordinary-looking mails (protocol.md
    section 24); mails meant for others, or not ours at all, are never
    fetched, flagged or moved.
    """

    name = "mailbox"
    schemes = ("imaps", "imap")
    summary = "an IMAP mailbox (shared, or one per neighbour); acks travel back as mail"
    kind = Kind.PLACE

    def check(self, address: Address) -> None:
        from rise_dtn.carriers.mailbox.settings import place_of

        place_of(address)

    def settings(self, home: Home, peer: Peer, address: Address) -> Settings:
        from rise_dtn.carriers.mailbox.settings import place_of, settings_for

        return settings_for(home.config.mailbox, place_of(address), peer.name)

    def exchange(
        self, home: Home, peer: Peer, address: Address, *, now: int, hooks: Hooks = NO_HOOKS
    ) -> Exchanged:
        from rise_dtn.carriers.mailbox import exchange

        return exchange.exchange(
            home, peer, self.settings(home, peer, address), now=now, hooks=hooks
        )


CARRIER = MailboxPlace()
