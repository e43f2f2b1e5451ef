"""LAN presence beacons: "node N answers calls on port P", signed, fresh, opt-in.

A daemon started with --announce sends one every few seconds; a caller that
knows the node's card (and only then) may call it at the beacon's source
address. Strangers' beacons are ignored; a beacon older than
MAX_AGE_SECONDS is refused, so a recorded one cannot be replayed for long.
Pure: bytes and `now` in, a verified (node id, port) out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from rise_dtn.core.encoding import canonical, strict_loads
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import NODE_ID_BYTES, SIGNATURE_BYTES, Identity, NodeId, PublicIdentity

MAGIC = b"RSP\x01"
SIGNATURE_CONTEXT = b"rise-dtn presence beacon v1\x00"
MAX_AGE_SECONDS = 300  # beacons repeat every few seconds; five minutes absorbs clock skew
MAX_BEACON_BYTES = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Presence:
    node_id: NodeId
    port: int
    sent_at: int


def encode(identity: Identity, *, port: int, now: int) -> bytes:
    body = canonical([identity.node_id.raw, port, now])
    return MAGIC + body + identity.sign(SIGNATURE_CONTEXT + body)


def decode(
    data: bytes, *, known: Callable[[NodeId], PublicIdentity | None], now: int
) -> Presence | None:
    """A verified presence from a known node, or None for a stranger's beacon.

    Raises BundleError for a malformed, forged or stale beacon.
    """
    if len(data) > MAX_BEACON_BYTES or not data.startswith(MAGIC):
        raise BundleError("not a rise-dtn beacon")
    body, signature = data[len(MAGIC) : -SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    value = strict_loads(body, max_bytes=MAX_BEACON_BYTES, error=BundleError, what="beacon")
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], bytes)
        or len(value[0]) != NODE_ID_BYTES
        or not all(isinstance(field, int) and not isinstance(field, bool) for field in value[1:])
        or not 0 < value[1] < 65536
    ):
        raise BundleError("malformed beacon")
    node_id = NodeId(value[0])
    public = known(node_id)
    if public is None:
        return None  # a stranger: default deny, and no reason to say more
    public.verify(SIGNATURE_CONTEXT + body, signature, error=BundleError)
    if abs(now - value[2]) > MAX_AGE_SECONDS:
        raise BundleError("stale beacon (replayed, or a clock far off)")
    return Presence(node_id, value[1], value[2])
