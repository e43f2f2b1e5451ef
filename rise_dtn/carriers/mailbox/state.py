"""What a node remembers between passes over a mailbox, per neighbour, in its spool.

    spool/tmp/mail/<neighbour-id>/in-<transfer>.data   bundle bytes of the parts taken so far
    spool/tmp/mail/<neighbour-id>/in-<transfer>.json   which parts, by the Message-ID of each
    spool/tmp/mail/<neighbour-id>/out-<name>.json      the Message-IDs of a bundle or ack mailed
    spool/tmp/mail/<neighbour-id>/scan.json            the UIDs already classified (a cache)

Incoming: parts of a transfer arrive over one or more passes, in any order
(a sender's APPENDs, IDLE waking us between them). Each part is written at
its offset in the data file, fsynced, and only then listed in the .json,
so a crash or a cut connection costs at most the part being read. A
listed part's mail is never fetched again; the mails go once the whole
bundle is durable in rx/ (or refused), and the files then.

Outgoing: a bundle's record is written once every part is appended, so a
mail that no record names is one this node left half-sent, and may go.
The names never start with the tmp prefix, so stale-tmp cleaners leave
them alone; writes are atomic (store/atomic.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from pathlib import Path
from typing import Any

from rise_dtn.core.mailpart import PartHeader
from rise_dtn.store.atomic import write_atomic

DATA_SUFFIX = ".data"
LIST_SUFFIX = ".json"
SCAN_FILE = "scan.json"


@dataclasses.dataclass(slots=True)
class Incoming:
    """One transfer being taken: its shape and the Message-ID of each part on disk."""

    transfer: str  # hex
    count: int
    total_bytes: int
    part_bytes: int
    parts: dict[int, str]  # part index -> Message-ID
    first_seen: int

    def agrees(self, header: PartHeader) -> bool:
        return (header.count, header.total_bytes, header.part_bytes) == (
            self.count, self.total_bytes, self.part_bytes,
        )  # fmt: skip

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.count


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """Mails this node appended for the neighbour: a bundle's parts, or an ack."""

    name: str  # the record's file stem: out-<bundle id> or out-ack-<random>
    bundle_id: str | None  # None: an ack
    message_ids: tuple[str, ...]
    sent_at: int


class MailState:
    """The files of one neighbour's folder under spool/tmp/mail/ (module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def ensure(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    # Incoming transfers.

    def data_path(self, transfer: str) -> Path:
        return self.folder / f"in-{transfer}{DATA_SUFFIX}"

    def _list_path(self, transfer: str) -> Path:
        return self.folder / f"in-{transfer}{LIST_SUFFIX}"

    def incoming(self) -> dict[str, Incoming]:
        found = {}
        for path in self._glob("in-*" + LIST_SUFFIX):
            data = _load(path)
            try:
                transfer = path.name.removeprefix("in-").removesuffix(LIST_SUFFIX)
                found[transfer] = Incoming(
                    transfer=transfer,
                    count=int(data["count"]),
                    total_bytes=int(data["total_bytes"]),
                    part_bytes=int(data["part_bytes"]),
                    parts={int(index): str(mid) for index, mid in data["parts"].items()},
                    first_seen=int(data["first_seen"]),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                self.forget_incoming(path.name.removeprefix("in-").removesuffix(LIST_SUFFIX))
        return found

    def save_incoming(self, incoming: Incoming) -> None:
        record = {
            "count": incoming.count,
            "total_bytes": incoming.total_bytes,
            "part_bytes": incoming.part_bytes,
            "parts": {str(index): mid for index, mid in sorted(incoming.parts.items())},
            "first_seen": incoming.first_seen,
        }
        self._write(self._list_path(incoming.transfer), record)

    def remove_unlisted_data(self, listed: set[str]) -> None:
        """Data files with no list beside them: written for a mail that then failed its
        MAC, or by a pass that stopped before listing the part (it is fetched again)."""
        for path in self._glob("in-*" + DATA_SUFFIX):
            if path.name.removeprefix("in-").removesuffix(DATA_SUFFIX) not in listed:
                path.unlink(missing_ok=True)

    def forget_incoming(self, transfer: str) -> None:
        self.data_path(transfer).unlink(missing_ok=True)
        self._list_path(transfer).unlink(missing_ok=True)

    # Outgoing mails.

    def outgoing(self) -> list[Outgoing]:
        found = []
        for path in self._glob("out-*" + LIST_SUFFIX):
            data = _load(path)
            try:
                bundle = data.get("bundle")
                found.append(
                    Outgoing(
                        name=path.name.removesuffix(LIST_SUFFIX),
                        bundle_id=str(bundle) if bundle is not None else None,
                        message_ids=tuple(str(mid) for mid in data["message_ids"]),
                        sent_at=int(data["sent_at"]),
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                path.unlink(missing_ok=True)  # unreadable: its mails are orphans, tidied
        return found

    def record_outgoing(
        self, *, bundle_id: str | None, message_ids: list[str], sent_at: int
    ) -> Outgoing:
        name = f"out-{bundle_id}" if bundle_id else f"out-ack-{secrets.token_hex(8)}"
        record = {"bundle": bundle_id, "message_ids": message_ids, "sent_at": sent_at}
        self._write(self.folder / f"{name}{LIST_SUFFIX}", record)
        return Outgoing(name, bundle_id, tuple(message_ids), sent_at)

    def forget_outgoing(self, name: str) -> None:
        (self.folder / f"{name}{LIST_SUFFIX}").unlink(missing_ok=True)

    def mailed(self, bundle_id: str) -> bool:
        return (self.folder / f"out-{bundle_id}{LIST_SUFFIX}").exists()

    # What the last scan classified (exchange.py): a cache, never the truth.

    def scan_cache(self, where: str, uid_validity: int) -> tuple[int, dict[int, tuple[str, int]]]:
        """(the highest UID classified, {UID: (Message-ID, size)} of ours), for this folder
        (`where`: two folders may have the same UIDVALIDITY) and UIDVALIDITY; (0, {})
        when there is none or it was for another."""
        data = _load(self.folder / SCAN_FILE)
        try:
            same = data.get("where") == where and int(data.get("uid_validity", -1)) == uid_validity
            if not (same and uid_validity):
                return 0, {}
            ours = {int(uid): (str(mid), int(size)) for uid, (mid, size) in data["ours"].items()}
            return int(data["highest"]), ours
        except (KeyError, TypeError, ValueError, AttributeError):
            return 0, {}

    def save_scan(
        self, where: str, uid_validity: int, highest: int, ours: dict[int, tuple[str, int]]
    ) -> None:
        record = {
            "where": where,
            "uid_validity": uid_validity,
            "highest": highest,
            "ours": {str(uid): [mid, size] for uid, (mid, size) in sorted(ours.items())},
        }
        self._write(self.folder / SCAN_FILE, record)

    def _glob(self, pattern: str) -> list[Path]:
        try:
            return sorted(self.folder.glob(pattern))
        except OSError:
            return []

    def _write(self, path: Path, record: dict[str, Any]) -> None:
        self.ensure()
        write_atomic(path, json.dumps(record).encode(), what="saving mailbox state", mode=0o600)


def _load(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_bytes())
        if isinstance(data, dict):
            return data
    return {}
