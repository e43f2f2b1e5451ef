"""Mailing what waits for a neighbour: bundles and acks as parts, and tidying what we mailed.

A bundle stays in tx/ until the neighbour's signed ack comes back by mail.
Each bundle is mailed once (its record in state.py); it is mailed again
only when its mails went missing before the neighbour could take them all
(someone else deleted some), or when they were all taken and no ack came
within `resend` (the neighbour's toss refused a damaged copy, or another
client deleted them). Mails of ours that no record names were left by a
pass cut mid-way; they are deleted, and what they carried is mailed again.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from typing import BinaryIO

from rise_dtn.carriers.mailbox.connection import Mail, Mailbox, MailboxFull
from rise_dtn.carriers.mailbox.state import MailState, Outgoing
from rise_dtn.carriers.mailbox.submission import Submission, open_submission
from rise_dtn.core.ack import MAX_IDS, Ack
from rise_dtn.core.errors import BundleError, RiseError
from rise_dtn.core.identity import BundleId
from rise_dtn.core.mailpart import MailKeys, encode
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.store import locks
from rise_dtn.store.spool import read_clear
from rise_dtn.store.transaction import Release


@dataclasses.dataclass(slots=True)
class Pushed:
    sent: int = 0
    sent_bytes: int = 0
    rejected: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    full: bool = False


class Outbox:
    """Where our mails go: APPENDed into the mailbox, or submitted by SMTP to the
    neighbour's address when [mailbox] smtp and to are set (opened on first use)."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.settings = mailbox.settings
        self._submission: Submission | None = None

    @property
    def by_smtp(self) -> bool:
        return self.settings.smtp is not None

    def send(self, raw: bytes) -> None:
        if self.settings.smtp is None or self.settings.to is None:
            self.mailbox.append(raw)
            return
        if self._submission is None:
            self._submission = open_submission(self.settings, self.settings.password())
        self._submission.send(raw, recipient=self.settings.to)

    def close(self) -> None:
        if self._submission is not None:
            self._submission.close()


@dataclasses.dataclass(frozen=True, slots=True)
class Pusher:
    home: Home
    peer: Peer
    mailbox: Mailbox
    state: MailState
    keys: MailKeys
    now: int
    say: Callable[[str], None]
    outbox: Outbox
    progress: Progress = NO_PROGRESS  # a bundle at a time (lane "to NAME"), when mailed

    def tidy(self, mails: list[Mail], report: Pushed) -> None:
        """Settle what earlier passes mailed, against the mails of ours still in the box."""
        uids_of: dict[str, list[int]] = {}
        for mail in mails:
            uids_of.setdefault(mail.message_id, []).append(mail.uid)
        named: set[str] = set()
        doomed: list[int] = []
        for record in self.state.outgoing():
            named.update(record.message_ids)
            here = [uid for mid in record.message_ids for uid in uids_of.get(mid, [])]
            left = sum(1 for mid in record.message_ids if mid in uids_of)
            if self._settled(record, left, report):
                doomed += here
                self.state.forget_outgoing(record.name)
        orphans = [mail.uid for mail in mails if mail.message_id not in named]
        if orphans:
            report.notes.append(
                f"{self.mailbox.where}: deleted {len(orphans)} mail(s) a cut pass left half-sent"
            )
        self.mailbox.delete(doomed + orphans)

    def _settled(self, record: Outgoing, left: int, report: Pushed) -> bool:
        """Whether a record is done with (its remaining mails are then deleted)."""
        if record.bundle_id is None:
            return left == 0  # an ack: done once the neighbour took it
        queued = self.home.bundles.queued_path(self.peer.node_id, BundleId.parse(record.bundle_id))
        if not queued.exists():
            return True  # acked, expired or cancelled: its mails are garbage
        if self.outbox.by_smtp:
            left = 0  # in the neighbour's mailbox, which we cannot see: the resend timer decides
        elif left == len(record.message_ids):
            return False  # still waiting for the neighbour
        if left:
            report.notes.append(
                f"{record.bundle_id}: {len(record.message_ids) - left} of its mails were "
                "deleted by someone else; mailing it again"
            )
            return True
        if self.now - record.sent_at >= self.mailbox.settings.resend_seconds:
            report.notes.append(f"{record.bundle_id}: no ack within resend; mailing it again")
            return True
        return False

    def give_acks(self, report: Pushed) -> None:
        """Mail the acks owed to this neighbour, then forget them (a repeat is harmless)."""
        me = self.home.identity.node_id
        ids = self.home.bundles.acks_due().get(self.peer.node_id, [])
        for start in range(0, len(ids), MAX_IDS):
            batch = ids[start : start + MAX_IDS]
            ack = Ack(me, self.peer.node_id, self.now, tuple(batch))
            data = ack.encode(self.home.identity)
            try:
                message_ids = self._mail(io.BytesIO(data), len(data))
            except MailboxFull as exc:
                report.full = True
                report.notes.append(f"{exc.message}; the acks stay owed")
                return
            if not self.outbox.by_smtp:  # by SMTP it is out of sight once sent
                self.state.record_outgoing(
                    bundle_id=None, message_ids=message_ids, sent_at=self.now
                )
            self.home.bundles.acks_given(self.peer.node_id, batch)
            self.say(f"mailed an ack to {self.peer.name}: {len(batch)} bundle(s)")

    def give_bundles(self, report: Pushed) -> None:
        peer = self.peer
        with locks.held(self.home.spool.lock_path(f"tx-{peer.node_id}"), what=f"tx/{peer.name}"):
            waiting = []
            for path in self.home.spool.files(self.home.spool.tx_dir(peer.node_id)):
                try:
                    clear, size = read_clear(path)
                except (BundleError, OSError) as exc:
                    reason = exc.message if isinstance(exc, BundleError) else str(exc)
                    self.home.spool.quarantine(path, f"damaged in our own spool: {reason}")
                    report.rejected.append(f"{path.name}: damaged in our spool: {reason}")
                    continue
                if clear.expired(self.now):
                    self.home.bundles.release(
                        peer.node_id, clear.bundle_id, Release.EXPIRED, now=self.now
                    )
                    continue
                if not self.state.mailed(str(clear.bundle_id)):
                    waiting.append((clear.header.priority, path, clear.bundle_id, size))
            waiting.sort(key=lambda item: item[0])  # stable: oldest first among equals
            lane = f"to {peer.name}"
            self.progress.planned(
                lane, bundles=len(waiting), total_bytes=sum(item[3] for item in waiting)
            )
            for _priority, path, bundle_id, size in waiting:
                try:
                    with open(path, "rb") as source, self.progress.item(lane, str(bundle_id), size):
                        message_ids = self._mail(source, size)
                except FileNotFoundError:
                    continue  # released meanwhile
                except MailboxFull as exc:
                    report.full = True
                    report.notes.append(f"{exc.message}; the rest stays queued")
                    return
                self.state.record_outgoing(
                    bundle_id=str(bundle_id), message_ids=message_ids, sent_at=self.now
                )
                self.home.index.count_copy(str(bundle_id))
                report.sent += 1
                report.sent_bytes += size
                self.say(f"mailed {bundle_id} to {peer.name} ({human_bytes(size)})")

    def _mail(self, source: BinaryIO, size: int) -> list[str]:
        """Append the mails of one bundle or ack; their Message-IDs. On a failure the mails
        already appended are deleted (best effort: else the next tidy finds them)."""
        settings = self.mailbox.settings
        recipient = settings.to or (settings.user if "@" in settings.user else settings.sender)
        mails = encode(
            source,
            size,
            keys=self.keys,
            style=settings.style,
            sender=settings.sender,
            recipient=recipient,
            now=self.now,
            random_bytes=os.urandom,
        )
        appended: list[str] = []
        try:
            for mail in mails:
                self.outbox.send(b"".join(mail.chunks))
                appended.append(mail.message_id)
        except RiseError:
            if appended and not self.outbox.by_smtp:
                self._delete_best_effort(appended)
            raise
        return appended

    def _delete_best_effort(self, message_ids: list[str]) -> None:
        try:
            wanted = set(message_ids)
            self.mailbox.delete(
                [mail.uid for mail in self.mailbox.scan() if mail.message_id in wanted]
            )
        except RiseError:
            pass
