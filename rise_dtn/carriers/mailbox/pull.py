"""Taking what a neighbour mailed us: parts to disk, whole bundles into rx/, acks to releases.

Only mails whose Message-ID carries the neighbour's tag for us are read
(core/mailpart.is_ours, on the headers the scan peeked at); every other
mail is never fetched, flagged or moved. A part is written at its offset
and fsynced before it is listed (state.py); a whole bundle goes into rx/
through the bundle transaction, and only then are its mails deleted. A
mail of ours that does not read (malformed, truncated, foreign, a
duplicate part) gets one line and is deleted: it can never become sound,
and its sender mails the bundle again when no ack comes (exchange.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from rise_dtn.carriers.mailbox.connection import Mail, Mailbox
from rise_dtn.carriers.mailbox.state import Incoming, MailState
from rise_dtn.core import ack as ack_codec
from rise_dtn.core import bundle as bundle_codec
from rise_dtn.core.errors import BundleError, StorageError
from rise_dtn.core.mailpart import MailError, MailFault, MailKeys, PartHeader
from rise_dtn.core.mailreader import MailReader
from rise_dtn.core.progress import NO_PROGRESS, Progress
from rise_dtn.core.units import human_bytes
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.store import locks
from rise_dtn.store.atomic import storage_error
from rise_dtn.store.spool import BUNDLE_SUFFIX, parse_clear_file
from rise_dtn.store.transaction import Release, Verdict, commit_partial

# An incomplete transfer is given up after this long: its sender mails the bundle
# again (a new transfer) when parts go missing, so the old one never completes.
STALE_TRANSFER_SECONDS = 30 * 86400


@dataclasses.dataclass(slots=True)
class Pulled:
    received: int = 0
    received_bytes: int = 0
    released: int = 0
    rejected: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class Puller:
    home: Home
    peer: Peer
    mailbox: Mailbox
    state: MailState
    keys: MailKeys
    now: int
    say: Callable[[str], None]
    progress: Progress = NO_PROGRESS  # a mail at a time (lane "from NAME"), as it is read

    def pull(self, mails: list[Mail], report: Pulled) -> None:
        """Take every part not on disk yet, then finish every transfer that is whole."""
        transfers = self.state.incoming()
        self.state.remove_unlisted_data(set(transfers))  # parts of mails that did not verify
        for transfer, incoming in list(transfers.items()):
            gone = not incoming.complete and not self.state.data_path(transfer).exists()
            if gone or self.now - incoming.first_seen > STALE_TRANSFER_SECONDS:
                # Its data is gone (removed by hand), or its other parts never came in a
                # month (the sender mailed the bundle again under a new transfer id).
                report.notes.append(f"{self.mailbox.where}: gave up an incomplete transfer")
                del transfers[transfer]
                self.state.forget_incoming(transfer)
                self._delete_listed(incoming, mails)
        on_disk = {mid for incoming in transfers.values() for mid in incoming.parts.values()}
        lane = f"from {self.peer.name}"
        todo = [mail for mail in mails if mail.message_id not in on_disk]
        self.progress.planned(lane, bundles=len(todo), total_bytes=sum(m.size for m in todo))
        for mail in mails:
            if mail.message_id in on_disk:
                continue  # its part is on disk (or a second copy of that mail: deleted below)
            try:
                with self.progress.item(lane, f"mail {mail.uid}", mail.size) as moved:
                    transfer = self._take_part(mail, transfers, moved=moved)
            except NoRoom as exc:
                report.notes.append(exc.message)  # its sender keeps it; taken once there is room
                continue
            except MailError as exc:
                report.rejected.append(f"{self.mailbox.where} mail {mail.uid}: {exc.message}")
                self.mailbox.delete([mail.uid])
                continue
            on_disk.add(mail.message_id)
            self.state.save_incoming(transfers[transfer])
        for incoming in transfers.values():
            if not incoming.complete:
                continue
            try:
                self._finish(incoming, report)
            except NoRoom as exc:
                report.notes.append(exc.message)
                continue
            self._delete_listed(incoming, mails)
            self.state.forget_incoming(incoming.transfer)

    def _delete_listed(self, incoming: Incoming, mails: list[Mail]) -> None:
        """Take away the mails of a transfer's listed parts (every copy of each)."""
        listed = set(incoming.parts.values())
        self.mailbox.take_away([mail.uid for mail in mails if mail.message_id in listed])

    def _take_part(
        self,
        mail: Mail,
        transfers: dict[str, Incoming],
        *,
        moved: Callable[[int], object] = lambda _count: None,
    ) -> str:
        """Read one mail; its slice lands at its offset in the transfer's data file, fsynced."""
        reader = MailReader(self.keys)
        fd: int | None = None
        header: PartHeader | None = None
        try:
            for chunk in self.mailbox.read(mail):
                moved(len(chunk))
                body = reader.feed(chunk)
                if fd is None and reader.header is not None:
                    header = reader.header
                    fd = self._open_for(header, mail, transfers)
                    if fd >= 0:
                        os.lseek(fd, header.offset, os.SEEK_SET)
                if body and fd is not None and fd >= 0:
                    _write_all(fd, body)
            header = reader.finish()
            if fd is not None and fd >= 0:
                os.fsync(fd)
        except OSError as exc:
            raise storage_error(exc, "receiving a mail") from None
        finally:
            if fd is not None and fd >= 0:
                os.close(fd)
        transfer = header.transfer_id.hex()
        incoming = transfers[transfer]
        if header.index in incoming.parts:
            raise MailError(MailFault.DUPLICATE, f"part {header.index + 1} already arrived")
        incoming.parts[header.index] = mail.message_id
        return transfer

    def _open_for(self, header: PartHeader, mail: Mail, transfers: dict[str, Incoming]) -> int:
        """The data file to write this part into (-1: read it, keep nothing: a duplicate)."""
        transfer = header.transfer_id.hex()
        incoming = transfers.get(transfer)
        if incoming is None:
            full = self.home.bundles.room_for(header.total_bytes, self.peer.node_id)
            if full is not None:  # checked again when the bundle is admitted
                raise NoRoom(f"{self.mailbox.where} mail {mail.uid}: {full.reason}; left there")
            incoming = Incoming(
                transfer, header.count, header.total_bytes, header.part_bytes, {}, self.now
            )
            transfers[transfer] = incoming
        elif not incoming.agrees(header):
            raise MailError(MailFault.MALFORMED, "a part that disagrees with its transfer")
        if header.index in incoming.parts:
            return -1  # never overwrite a part on disk with one not yet verified
        self.state.ensure()
        return os.open(
            self.state.data_path(transfer), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600
        )

    def _finish(self, incoming: Incoming, report: Pulled) -> None:
        path = self.state.data_path(incoming.transfer)
        try:
            with open(path, "rb") as handle:
                magic = handle.read(len(bundle_codec.MAGIC))
        except FileNotFoundError:
            return  # taken in by a pass that stopped before deleting its mails
        except OSError as exc:
            raise storage_error(exc, "reading a mailed bundle") from None
        if magic == ack_codec.MAGIC:
            self._take_ack(path, incoming, report)
        else:
            self._take_bundle(path, report)

    def _take_ack(self, path: Path, incoming: Incoming, report: Pulled) -> None:
        me, peer = self.home.identity.node_id, self.peer
        try:
            if incoming.total_bytes > ack_codec.MAX_ACK_BYTES:
                raise BundleError(f"an ack of {incoming.total_bytes} bytes is too long")
            ack = ack_codec.Ack.decode(path.read_bytes(), sender=peer.card.public, recipient=me)
        except BundleError as exc:
            report.rejected.append(
                f"{self.mailbox.where}: ack from {peer.name} rejected: {exc.message}"
            )
            return
        with locks.held(
            self.home.spool.lock_path(f"tx-{peer.node_id}"), wait_seconds=30, what=f"tx/{peer.name}"
        ):
            for bundle_id in ack.bundle_ids:
                if self.home.bundles.release(peer.node_id, bundle_id, Release.ACKED, now=self.now):
                    report.released += 1
                self.state.forget_outgoing(f"out-{bundle_id}")
        self.say(f"ack from {peer.name}: {len(ack.bundle_ids)} bundle(s) confirmed")

    def _take_bundle(self, path: Path, report: Pulled) -> None:
        peer, where = self.peer, self.mailbox.where
        try:
            with open(path, "rb") as handle:
                clear, size = parse_clear_file(handle)
        except BundleError as exc:
            report.rejected.append(f"{where}: a bundle from {peer.name}: {exc.message}")
            self.home.bundles.quarantine(path, f"mailed by {peer.name}: {exc.message}")
            return
        except OSError as exc:
            raise storage_error(exc, "reading a mailed bundle") from None
        shown = f"{where}: {clear.bundle_id} from {peer.name}"
        admission = self.home.bundles.admit(
            clear,
            size,
            peer.node_id,
            now=self.now,
            write=lambda target: commit_partial(path, target),
        )
        verdict = admission.verdict
        if verdict is Verdict.NOT_FOR_US:
            report.rejected.append(f"{shown}: {admission.reason}")
            named = path.with_name(f"{clear.bundle_id}{BUNDLE_SUFFIX}")  # quarantined by its id
            path.rename(named)
            self.home.bundles.quarantine(named, admission.reason)
        elif verdict is Verdict.NO_ROOM:
            # Its mails stay: the next pass, after rise-toss has made room, takes it.
            raise NoRoom(f"{shown}: {admission.reason}; left in the mailbox")
        elif verdict is Verdict.TAKE:
            report.received += 1
            report.received_bytes += size
            self.say(f"received {clear.bundle_id} from {peer.name} ({human_bytes(size)})")
        else:
            # Already here, already delivered (its ack is owed again) or expired.
            report.notes.append(f"{shown}: {admission.reason}, dropped")
            path.unlink(missing_ok=True)


class NoRoom(StorageError):
    """A whole bundle the spool has no room for: it stays in the mailbox, unacked."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
