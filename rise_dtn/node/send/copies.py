"""What a sender keeps of each copy of a bundle it sent: to follow it and to cancel it.

Apart from onion_send.py, which writes the copies, so that a direct send
records its one copy (for `rise status`) without importing the onion code.
The encoding is stored in the index (`sent.copies`) and read back by
node/status.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rise_dtn.core.encoding import canonical
from rise_dtn.core.identity import BundleId, NodeId


@dataclasses.dataclass(frozen=True, slots=True)
class Copy:
    """One copy on its way: what the sender keeps to follow and cancel it."""

    first_hop: NodeId
    packet_id: BundleId  # its id on the first hop
    relays: tuple[NodeId, ...]
    tokens: tuple[bytes, ...]  # one cancel token per relay

    def to_list(self) -> list[object]:
        return [
            self.first_hop.raw,
            self.packet_id.raw,
            [relay.raw for relay in self.relays],
            list(self.tokens),
        ]


def encode_copies(copies: Sequence[Copy]) -> bytes:
    return canonical([copy.to_list() for copy in copies])
