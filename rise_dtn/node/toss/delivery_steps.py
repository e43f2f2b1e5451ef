"""What delivering a bundle (toss/deliver.py) and storing a part of a split file
(node/parts.py) share: the bundle opened, its journal entry when it leaves no file of
its own in incoming/, exact reads, and numbered names that never overwrite a file.

Below both, so that parts.py builds on these steps without importing deliver.py,
which hands it each part. Nothing here decides what a bundle is or where it goes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rise_dtn.core.bundle import Inner, Opener
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import BundleId, NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.toss.toss_events import Source
from rise_dtn.store.rows import SeenRow


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    path: Path
    neighbour: NodeId


@dataclasses.dataclass(frozen=True, slots=True)
class Opened:
    """A bundle whose first chunk opened and whose sender checked out."""

    job: Job
    opener: Opener
    inner: Inner
    peer: Peer
    hop_id: BundleId | None = None  # the onion packet's id, if it came in one

    @property
    def bundle_id(self) -> BundleId:
        return self.opener.clear.bundle_id


def journal_without_file(home: Home, opened: Opened, *, now: int, receipt: bool) -> None:
    """Journal a bundle handled with no file of its own in incoming/ (a receipt or map taken
    in, a part stored) as delivered: its ack is owed, and with `receipt`, over relays, the
    sender's receipt too; then the rx copy goes."""
    home.fast_index.record_delivering(
        SeenRow(
            bundle_id=str(opened.bundle_id),
            expiry=opened.opener.clear.header.expiry,
            state="delivering",
            sender=str(opened.peer.node_id),
            target="",
            at=now,
        )
    )
    home.fast_index.finish_delivery(
        str(opened.bundle_id),
        neighbour=str(opened.job.neighbour),
        message=None,
        now=now,
        hop_id=str(opened.hop_id) if opened.hop_id else None,
        receipt_to=str(opened.peer.node_id) if receipt and opened.hop_id else None,
    )
    home.bundles.handled(opened.job.path)


def read_exact(source: Source, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise BundleError("bundle is truncated")
    return data


MAX_NAME_BYTES = 255  # NAME_MAX on Linux and the BSDs


def numbered(path: Path, number: int) -> Path:
    """'report.pdf' -> 'report.1.pdf': an existing file is never overwritten.

    The stem is shortened (on a character boundary) where the number would
    make the name longer than a file system takes.
    """
    suffix = "".join(path.suffixes[-1:])
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tail = f".{number}{suffix}"
    room = MAX_NAME_BYTES - len(tail.encode())
    if room <= 0:  # a 250-byte "suffix": number the whole name instead
        stem, tail = "", f"{number}"
        room = MAX_NAME_BYTES - len(tail)
    stem = stem.encode()[:room].decode("utf-8", "ignore")
    return path.with_name(f"{stem}{tail}")
