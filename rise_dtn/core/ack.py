"""Hop acks: a neighbour's signed statement "I have stored these bundles".

On carriers without a live session (a USB stick, a mailbox) the receiver
leaves an ack file for the sender, who then releases the bundles from its
spool. An ack names only bundle ids that this one link saw, so it tells
nothing about routes (docs/protocol.md, "Hop acks"). It must be signed: a
forged ack would make a sender delete bundles that never arrived.
"""

from __future__ import annotations

import dataclasses

from rise_dtn.core.encoding import canonical, strict_loads
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import (
    NODE_ID_BYTES,
    SIGNATURE_BYTES,
    BundleId,
    Identity,
    NodeId,
    PublicIdentity,
)

MAGIC = b"RSA"
VERSION = 1
SIGNATURE_CONTEXT = b"rise-dtn hop ack v1\x00"
# 4096 ids x 17 bytes is 70 KiB: one xfer's worth; more go in further files.
MAX_IDS = 4096
MAX_ACK_BYTES = 4 + 32 + MAX_IDS * (NODE_ID_BYTES + 1) + 16 + SIGNATURE_BYTES


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """A verified hop ack from `sender` to `recipient`."""

    sender: NodeId
    recipient: NodeId
    created: int
    bundle_ids: tuple[BundleId, ...]

    def _body(self) -> bytes:
        return canonical(
            [
                self.sender.raw,
                self.recipient.raw,
                self.created,
                [bid.raw for bid in self.bundle_ids],
            ]
        )

    def encode(self, identity: Identity) -> bytes:
        if identity.node_id != self.sender:
            raise ValueError("an ack is signed by its sender")
        if not 0 < len(self.bundle_ids) <= MAX_IDS:
            raise ValueError(f"an ack names 1..{MAX_IDS} bundles")
        body = self._body()
        return MAGIC + bytes([VERSION]) + body + identity.sign(SIGNATURE_CONTEXT + body)

    @classmethod
    def decode(cls, data: bytes, *, sender: PublicIdentity, recipient: NodeId) -> Ack:
        """Parse and verify an ack that `sender` wrote for `recipient`."""
        if len(data) > MAX_ACK_BYTES:
            raise BundleError("ack is too large")
        if data[:3] != MAGIC:
            raise BundleError("not a rise-dtn ack (bad magic)")
        if len(data) < 4 + SIGNATURE_BYTES + 1 or data[3] != VERSION:
            raise BundleError("truncated ack or unsupported ack version")
        body, signature = data[4:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
        value = strict_loads(body, max_bytes=MAX_ACK_BYTES, error=BundleError, what="ack")
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not all(isinstance(part, bytes) and len(part) == NODE_ID_BYTES for part in value[:2])
            or not isinstance(value[2], int)
            or isinstance(value[2], bool)
            or value[2] < 0
            or not isinstance(value[3], list)
            or not 0 < len(value[3]) <= MAX_IDS
            or not all(isinstance(bid, bytes) and len(bid) == NODE_ID_BYTES for bid in value[3])
        ):
            raise BundleError("ack is malformed")
        ack = cls(
            NodeId(value[0]), NodeId(value[1]), value[2], tuple(BundleId(b) for b in value[3])
        )
        if ack.sender != sender.node_id or ack.recipient != recipient:
            raise BundleError("ack names the wrong sender or recipient")
        sender.verify(SIGNATURE_CONTEXT + body, signature, error=BundleError)
        return ack
