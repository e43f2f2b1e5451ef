"""Cards by mail: sending this node's card as a plain mail, and picking up cards that came.

A card mail is for people as much as for nodes: a short text and the
armored card (`rise card`), readable in any mail client. Picking up never
trusts anything: cards found are saved for the user to check (its node id,
by phone or in person) and add with `rise peer add FILE`, as for a card on
a stick (default deny). Finding them touches no one's mail: the server
searches (`SEARCH BODY`) for the card's first line, and only the mails it
names are fetched, with BODY.PEEK, and never flagged, moved or deleted.
"""

from __future__ import annotations

import dataclasses
import email.message
import email.utils

from rise_dtn.carriers.mailbox.connection import open_mailbox
from rise_dtn.carriers.mailbox.settings import Settings
from rise_dtn.carriers.mailbox.submission import open_submission
from rise_dtn.core.card import ARMOR_BEGIN, MAX_CARD_BYTES, Card
from rise_dtn.core.errors import PeerError
from rise_dtn.core.mailpart import POLICY

CARD_SUBJECT = "My contact card"
# A card mail is a few KiB (the armor of an 8 KiB card at most, some text,
# headers servers add): a larger one is not one we take the time to read.
MAX_CARD_MAIL_BYTES = 4 * MAX_CARD_BYTES + 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A card that arrived (verified: its signature holds), or why a mail's card did not read."""

    uid: int
    card: Card | None
    problem: str | None = None


def card_mail(settings: Settings, card_text: str, *, to: str, now: int) -> bytes:
    message = email.message.EmailMessage(policy=POLICY)
    message["From"] = settings.sender
    message["To"] = to
    message["Subject"] = CARD_SUBJECT
    message["Date"] = email.utils.formatdate(now)
    message["Message-ID"] = email.utils.make_msgid(
        domain=settings.sender.rpartition("@")[2] or None
    )
    message.set_content(
        "This is my rise-dtn contact card. Check its node id with me before you add it:\n"
        "  rise peer add this-mail.txt\n\n" + card_text
    )
    return message.as_bytes(policy=POLICY)


def send_card(settings: Settings, card_text: str, *, to: str | None, now: int) -> str:
    """Mail the card to `to` (by SMTP submission when [mailbox] smtp is set, else into the
    mailbox by APPEND, for a mailbox shared with them); where it went."""
    recipient = to or settings.to or settings.sender
    raw = card_mail(settings, card_text, to=recipient, now=now)
    if settings.smtp is not None:
        submission = open_submission(settings, settings.password())
        try:
            submission.send(raw, recipient=recipient)
        finally:
            submission.close()
        return recipient
    mailbox = open_mailbox(settings)
    try:
        mailbox.append(raw)
    finally:
        mailbox.close()
    return str(settings.place)


def pick_up(settings: Settings) -> list[Found]:
    """The cards in the mailbox's folder, verified, none trusted."""
    mailbox = open_mailbox(settings)
    found = []
    try:
        with mailbox.failures("looking for cards"):
            uids = sorted(mailbox.client.search(["NOT", "DELETED", "BODY", ARMOR_BEGIN]))
            sizes = mailbox.client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0) or 0)
            if size > MAX_CARD_MAIL_BYTES:
                found.append(Found(uid, None, f"mail {uid}: {size} bytes, too long for a card"))
                continue
            with mailbox.failures("reading a card"):
                data = mailbox.client.fetch([uid], ["BODY.PEEK[TEXT]"]).get(uid, {})
            text = _text_of(data.get(b"BODY[TEXT]", b"") or b"")
            try:
                found.append(Found(uid, Card.from_text(text)))
            except PeerError as exc:
                found.append(Found(uid, None, f"mail {uid}: {exc.message}"))
    finally:
        mailbox.close()
    return found


def _text_of(body: bytes) -> str:
    """The body as text; a quoted-printable or base64 one is decoded (the armor is ASCII)."""
    text = body.decode("utf-8", errors="replace")
    if ARMOR_BEGIN in text:
        return text
    message = email.message_from_bytes(
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body
    )
    payload = message.get_payload(decode=True)
    return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else text
