"""One pass over a mailbox with one neighbour: take, toss, tidy, acks out, bundles out.

The order is the directory carrier's (docs/carriers.md, one exchange): what
waits for us comes in first, so its acks can leave in the same pass; acks
go out before bundles, so a mailbox that fills up still carries the small
acks home. A bundle leaves the spool only on a verified ack; a mail leaves
the mailbox only once what it carried is durable (pull.py, push.py).

The neighbours' mails are told apart by keys that only the two of them
hold, one per direction (protocol.md section 24.1): K = BLAKE2b-256 of
their X25519 shared secret, personalised, over both node ids in the order
sender, recipient. So one mailbox can serve any number of pairs, each
node reading only what is addressed to it, and a stranger with the
mailbox's password still cannot make a mail that we would take.
"""

from __future__ import annotations

import hashlib

from rise_dtn.carriers.base import Exchanged, Hooks
from rise_dtn.carriers.mailbox.connection import Mail, open_mailbox
from rise_dtn.carriers.mailbox.pull import Pulled, Puller
from rise_dtn.carriers.mailbox.push import Outbox, Pushed, Pusher
from rise_dtn.carriers.mailbox.settings import Settings
from rise_dtn.carriers.mailbox.state import MailState
from rise_dtn.core.identity import Identity, NodeId
from rise_dtn.core.mailpart import MailKeys, is_ours
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.store import locks

PERSON_PAIR = b"rise-mail-pair"
LOCK_WAIT_SECONDS = 60.0  # a watch and a cron pass over one mailbox take turns


def pair_key(identity: Identity, peer: Peer, *, sender: NodeId, recipient: NodeId) -> bytes:
    """The 32 bytes of key material for mails from `sender` to `recipient` (module docstring)."""
    shared = identity.exchange(peer.card.public.exchange_public)
    return hashlib.blake2b(
        sender.raw + recipient.raw, digest_size=32, key=shared, person=PERSON_PAIR
    ).digest()


def state_of(home: Home, peer: Peer) -> MailState:
    return MailState(home.spool.tmp / "mail" / str(peer.node_id))


def exchange(home: Home, peer: Peer, settings: Settings, *, now: int, hooks: Hooks) -> Exchanged:
    home.spool.check_exists()
    me = home.identity.node_id
    keys_in = MailKeys.derive(pair_key(home.identity, peer, sender=peer.node_id, recipient=me))
    keys_out = MailKeys.derive(pair_key(home.identity, peer, sender=me, recipient=peer.node_id))
    state = state_of(home, peer)
    pulled, pushed = Pulled(), Pushed()
    lock = home.spool.lock_path(f"mail-{peer.node_id}")
    with locks.held(lock, wait_seconds=LOCK_WAIT_SECONDS, what=f"the mailbox of {peer.name}"):
        mailbox = open_mailbox(settings)
        try:
            where = f"{settings.user} {settings.place.host}:{settings.place.port}"
            where += f" {settings.place.folder}"
            highest, cached = state.scan_cache(where, mailbox.uid_validity)
            known = {uid: Mail(uid, mid, size) for uid, (mid, size) in cached.items()}
            mails = mailbox.scan(after=highest, known=known)
            ours = [mail for mail in mails if is_ours(mail.message_id, keys_in)]
            mine = [mail for mail in mails if is_ours(mail.message_id, keys_out)]
            # Saved before anything is taken: a mail deleted meanwhile is only listed
            # once more, and its absence from the next SEARCH drops it.
            classified = {mail.uid: (mail.message_id, mail.size) for mail in ours + mine}
            state.save_scan(where, mailbox.uid_validity, mailbox.highest_uid, classified)
            common = dict(
                home=home,
                peer=peer,
                mailbox=mailbox,
                state=state,
                now=now,
                say=hooks.say,
                progress=hooks.progress,
            )
            Puller(keys=keys_in, **common).pull(ours, pulled)  # type: ignore[arg-type]
            if hooks.toss is not None:
                hooks.toss()
            if home.config.relay.enabled:
                from rise_dtn.node.toss import control  # late: only relays pay for routing

                for name in control.refresh_maps(home, now=now, only=peer):
                    hooks.say(f"queued a fresh map for {name}")
            outbox = Outbox(mailbox)
            try:
                pusher = Pusher(keys=keys_out, outbox=outbox, **common)  # type: ignore[arg-type]
                pusher.tidy(mine, pushed)
                pusher.give_acks(pushed)
                if not pushed.full:
                    pusher.give_bundles(pushed)
            finally:
                outbox.close()
        finally:
            mailbox.close()
    return Exchanged(
        received=pulled.received,
        received_bytes=pulled.received_bytes,
        sent=pushed.sent,
        sent_bytes=pushed.sent_bytes,
        released=pulled.released,
        rejected=tuple(pulled.rejected + pushed.rejected),
        notes=tuple(pulled.notes + pushed.notes),
    )
