"""The carrier session protocol, sans I/O: offer, request from offset, data, stored, done, ping.

One state machine for every live carrier (TCP, pipes, serial): the carrier
feeds received bytes in with `receive_data()`, takes decoded peer events
out with `next_event()`, and turns our own events into bytes with `send()`.
It never touches sockets, files or the clock (STYLE.md, "One facade per
conversation"; the model is h11). Both directions run at once: each side
offers its bundles and requests the peer's.

Wire format (docs/protocol.md, "Session"): frames of a 4-byte big-endian
length, then canonical CBOR `[type, ...]`. A receiver confirms a bundle with
STORED only once it is durable; the sender then releases it. After a cut,
the next session's REQUEST names the offset to resume from. GONE withdraws
an offer whose bundle expired or was cancelled meanwhile.

A small bundle may travel as PUSH, its offer and all its bytes in one frame,
to a peer that said in the handshake that it takes pushes: a round trip
saved, which on a slow radio is seconds. The receiver still judges it by
its id first (a bundle it has is dropped and confirmed), and still confirms
it only once it is durable.

A PUSH of a bundle addressed to the receiving peer itself may go in its
short form (type 9, to a peer that takes it): without the bundle id (the
receiver hashes it from E), the magic and the recipient (the receiver
itself) and the body length (the frame's), 47 bytes less for a message:
on a 9600 bit/s line that is 49 ms of a message's 0.3 s. The receiver
rebuilds the exact bundle, so what is judged, stored and confirmed is
byte for byte what was queued.

A session may live as long as the link: DONE means "nothing more from me
for now", and a later OFFER opens it again (a relay's forward, a message
just sent). DONE carries how many frames its sender has seen, so each side
can tell when both are idle *and* neither owes the other a reply: that is
when a one-shot call hangs up (`finished`). PING keeps an idle link alive.
"""

from __future__ import annotations

import dataclasses
import enum

import cbor2

from rise_dtn.core import bundle as bundles
from rise_dtn.core.encoding import canonical, strict_loads
from rise_dtn.core.errors import BundleError, PeerError
from rise_dtn.core.identity import PUBLIC_KEY_BYTES, BundleId, NodeId

# 256 KiB of bundle per DATA frame: large enough for line rate on a LAN,
# small enough that a 300 bit/s radio link can interleave an urgent offer.
MAX_DATA_BYTES = 256 * 1024
MAX_FRAME_BYTES = MAX_DATA_BYTES + 64  # a DATA frame's CBOR framing is < 40 bytes
MAX_OFFERS_PENDING = 4096  # a peer cannot make us track unbounded state
MAX_BUNDLE_BYTES = 1 << 50  # as in bundle.MAX_BODY_BYTES: refuses absurd claims
LENGTH_BYTES = 4
MAX_FRAME_COUNT = 1 << 63  # DONE's count: more frames than any link will ever carry
# The largest bundle a PUSH carries: a message or a small file. Larger ones
# are offered: a receiver that already has one would otherwise read it all
# for nothing, and the round trip an offer costs is small beside its bytes.
MAX_PUSH_BYTES = 4096


class FrameType(enum.IntEnum):
    OFFER = 1
    REQUEST = 2
    DATA = 3
    STORED = 4
    DONE = 5
    PING = 6
    GONE = 7
    PUSH = 8
    SHORT_PUSH = 9  # a PUSH without what the receiver knows already (protocol.md 17.5)


@dataclasses.dataclass(frozen=True, slots=True)
class Offer:
    """'I have this bundle for you': its id, total size and priority."""

    bundle_id: BundleId
    size: int
    priority: int


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """'Send me this bundle from `offset`' (offset == size: 'I already have it')."""

    bundle_id: BundleId
    offset: int


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    bundle_id: BundleId
    offset: int
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Push:
    """'Here is this whole bundle': its offer and all its bytes at once, with no REQUEST.

    Only to a peer that takes pushes (its handshake said so). The receiver
    answers with STORED alone, once the bundle is durable or settled.
    """

    bundle_id: BundleId
    priority: int
    payload: bytes

    @property
    def offer(self) -> Offer:
        """The offer this push stands for."""
        return Offer(self.bundle_id, len(self.payload), self.priority)


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """'I have stored this bundle durably': the sender may release it."""

    bundle_id: BundleId


@dataclasses.dataclass(frozen=True, slots=True)
class Gone:
    """'I offered this bundle but no longer have it' (expired or cancelled since): forget it."""

    bundle_id: BundleId


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """'Nothing is in flight on my side and I have nothing more to offer for now.'

    `seen` counts the peer's frames other than DONE and PING this side
    had received when it said so: a DONE that has seen all of ours promises
    that no reply to them is still coming.
    """

    seen: int


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """'Still here': keeps an idle link from being cut by the peer's idle timeout."""


class NeedData:
    """No complete frame yet: feed more bytes."""


NEED_DATA = NeedData()
Event = Offer | Request | Data | Stored | Gone | Done | Ping | Push


@dataclasses.dataclass(slots=True)
class _Incoming:
    """A bundle the peer offered us."""

    size: int
    next_offset: int | None = None  # set once we request it


@dataclasses.dataclass(slots=True)
class _Outgoing:
    """A bundle we offered the peer."""

    size: int
    requested_from: int | None = None
    next_offset: int = 0


class Session:
    """One side of a session. Our events go through `send`; the peer's come from `next_event`."""

    def __init__(self, *, me: NodeId | None = None) -> None:
        # Our node id: a short PUSH (type 9) leaves out its recipient, which is
        # us. Without it (a session that never announced the feature) type 9 is
        # unknown.
        self.me = me
        # The peer's node id once its handshake said it takes short pushes:
        # then a push of a bundle addressed to it goes short.
        self.short_push_to: NodeId | None = None
        self._buffer = bytearray()
        self._start = 0  # frames before this offset in _buffer are consumed
        self._incoming: dict[BundleId, _Incoming] = {}
        self._outgoing: dict[BundleId, _Outgoing] = {}
        self.sent_count = 0  # our frames other than DONE and PING
        self.received_count = 0  # the peer's
        self._peer_done_seen: int | None = None  # the peer's last word was DONE(seen)
        self._done_at: tuple[int, int] | None = None  # (sent, received) at our last DONE

    # The peer's side.

    def receive_data(self, data: bytes) -> None:
        if self._start:
            # Drop consumed frames only when new bytes come: one move per read,
            # not one per frame.
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def next_event(self) -> Event | NeedData:
        """The next event from the peer, checked against the session state."""
        start = self._start
        if len(self._buffer) - start < LENGTH_BYTES:
            return NEED_DATA
        length = int.from_bytes(self._buffer[start : start + LENGTH_BYTES], "big")
        if not 0 < length <= MAX_FRAME_BYTES:
            raise PeerError(f"protocol error: frame of {length} bytes")
        end = start + LENGTH_BYTES + length
        if len(self._buffer) < end:
            return NEED_DATA
        frame = bytes(memoryview(self._buffer)[start + LENGTH_BYTES : end])
        self._start = end
        event = _decode_data(frame) or _decode(frame, me=self.me)
        self._check_incoming(event)
        return event

    def _check_incoming(self, event: Event) -> None:
        if isinstance(event, Ping):
            return
        if isinstance(event, Done):
            if event.seen > self.sent_count:
                raise PeerError("protocol error: done has seen frames never sent")
            self._peer_done_seen = event.seen
            return
        self.received_count += 1
        self._peer_done_seen = None
        if isinstance(event, Offer):
            if len(self._incoming) >= MAX_OFFERS_PENDING:
                raise PeerError("protocol error: too many offers pending")
            self._incoming.setdefault(event.bundle_id, _Incoming(event.size))
        elif isinstance(event, Push):
            if len(self._incoming) >= MAX_OFFERS_PENDING:
                raise PeerError("protocol error: too many offers pending")
            # Offered, requested and arrived at once; an offer of it still
            # arriving stands, as for a second OFFER (the policy ignores this).
            size = len(event.payload)
            self._incoming.setdefault(event.bundle_id, _Incoming(size, next_offset=size))
        elif isinstance(event, Request):
            outgoing = self._outgoing.get(event.bundle_id)
            if outgoing is None or not 0 <= event.offset <= outgoing.size:
                raise PeerError("protocol error: request for a bundle not offered")
            outgoing.requested_from = outgoing.next_offset = event.offset
        elif isinstance(event, Data):
            incoming = self._incoming.get(event.bundle_id)
            if incoming is None or incoming.next_offset is None:
                raise PeerError("protocol error: data for a bundle not requested")
            end = event.offset + len(event.payload)
            if event.offset != incoming.next_offset or end > incoming.size:
                raise PeerError("protocol error: data out of order or past the end")
            incoming.next_offset = end
        elif isinstance(event, Gone):
            if self._incoming.pop(event.bundle_id, None) is None:
                raise PeerError("protocol error: gone for a bundle not offered")
        elif self._outgoing.pop(event.bundle_id, None) is None:
            raise PeerError("protocol error: stored for a bundle not offered")

    # Our side.

    def send(self, event: Event) -> bytes:
        """Encode one of our events, after checking it makes sense now."""
        if isinstance(event, Data):
            return b"".join(self.send_data(event))
        if isinstance(event, Done):
            if event.seen != self.received_count or not self.idle:
                raise ValueError("done must count every frame received, with nothing in flight")
            self._done_at = (self.sent_count, self.received_count)
        elif not isinstance(event, Ping):
            self._check_outgoing(event)
            self.sent_count += 1
        frame = None
        if isinstance(event, Push) and self.short_push_to is not None:
            frame = _encode_short_push(event, self.short_push_to)
        if frame is None:
            frame = _encode(event)
        return len(frame).to_bytes(LENGTH_BYTES, "big") + frame

    def send_data(self, event: Data) -> tuple[bytes, bytes]:
        """A DATA frame as (framing, payload), so that the payload is never copied to encode it."""
        self._check_outgoing(event)
        self.sent_count += 1
        head = _data_head(event.bundle_id, event.offset, len(event.payload))
        return (len(head) + len(event.payload)).to_bytes(LENGTH_BYTES, "big") + head, event.payload

    def done(self) -> Done:
        """Our DONE as of now (send it only when `idle`)."""
        return Done(self.received_count)

    def _check_outgoing(self, event: Offer | Request | Data | Stored | Gone | Push) -> None:
        if isinstance(event, Offer):
            self._outgoing.setdefault(event.bundle_id, _Outgoing(event.size))
        elif isinstance(event, Push):
            if event.bundle_id in self._outgoing or not 0 < len(event.payload) <= MAX_PUSH_BYTES:
                raise ValueError("push only a small bundle not offered already")
            size = len(event.payload)
            self._outgoing[event.bundle_id] = _Outgoing(size, requested_from=0, next_offset=size)
        elif isinstance(event, Gone):
            if self._outgoing.pop(event.bundle_id, None) is None:
                raise ValueError("cannot withdraw a bundle not offered")
        elif isinstance(event, Request):
            incoming = self._incoming.get(event.bundle_id)
            if incoming is None or not 0 <= event.offset <= incoming.size:
                raise ValueError("cannot request a bundle the peer did not offer")
            incoming.next_offset = event.offset
        elif isinstance(event, Data):
            outgoing = self._outgoing.get(event.bundle_id)
            if outgoing is None or outgoing.requested_from is None:
                raise ValueError("cannot send data the peer did not request")
            if event.offset != outgoing.next_offset or len(event.payload) > MAX_DATA_BYTES:
                raise ValueError("data must follow on from the last offset, in small frames")
            outgoing.next_offset += len(event.payload)
        else:
            incoming = self._incoming.pop(event.bundle_id, None)
            if incoming is None or incoming.next_offset != incoming.size:
                raise ValueError("cannot confirm a bundle not completely received")

    def waiting_for_peer(self) -> bool:
        """True while a bundle we requested is still arriving."""
        return any(
            item.next_offset is not None and item.next_offset < item.size
            for item in self._incoming.values()
        )

    @property
    def idle(self) -> bool:
        """Nothing in flight: all we offered is confirmed, all we requested is in and confirmed."""
        return not self._outgoing and not any(
            item.next_offset is not None for item in self._incoming.values()
        )

    @property
    def peer_done(self) -> bool:
        return self._peer_done_seen is not None

    @property
    def done_is_current(self) -> bool:
        """Our last DONE still holds: nothing sent or received since (pings aside)."""
        return self._done_at == (self.sent_count, self.received_count)

    @property
    def finished(self) -> bool:
        """Both sides are idle and neither owes the other a reply: a one-shot call may hang up.

        The peer's last word was DONE having seen everything we sent, and our
        own DONE since has seen everything it sent; so nothing of ours is
        still unanswered and nothing of its is still unanswered by us.
        """
        return self.idle and self.done_is_current and self._peer_done_seen == self.sent_count


def _uint_head(value: int, major: int) -> bytes:
    """The canonical CBOR head of a uint (major 0) or a byte string's length (major 2)."""
    head = bytearray(cbor2.dumps(value))
    head[0] |= major << 5
    return bytes(head)


def _data_head(bundle_id: BundleId, offset: int, length: int) -> bytes:
    """Canonical CBOR of [3, id, offset, payload], up to where the payload's bytes begin."""
    return _DATA_PREFIX + bundle_id.raw + _uint_head(offset, 0) + _uint_head(length, 2)


# array(4), uint 3, bstr(16): how every DATA frame begins.
_DATA_PREFIX = bytes([0x84, FrameType.DATA, 0x50])


def _decode_data(frame: bytes) -> Data | None:
    """DATA, the frame that carries the bulk, decoded without copying its payload through CBOR.

    Returns None for any frame that is not exactly a canonical DATA frame;
    the general decoder then decodes it or says what is wrong with it.
    """
    if not frame.startswith(_DATA_PREFIX) or len(frame) < 21:
        return None
    bundle_id = BundleId(frame[3:19])
    offset_bytes = _head_bytes(frame[19])
    if offset_bytes is None or len(frame) < 19 + offset_bytes + 1:
        return None
    offset = _head_value(frame, 19, offset_bytes)
    at = 19 + offset_bytes
    length_bytes = _head_bytes(frame[at] ^ 0x40) if frame[at] >> 5 == 2 else None
    if length_bytes is None:
        return None
    length = _head_value(frame, at, length_bytes)
    payload_at = at + length_bytes
    if len(frame) - payload_at != length or not 0 < length <= MAX_DATA_BYTES:
        return None
    if frame[19:payload_at] != _uint_head(offset, 0) + _uint_head(length, 2):
        return None  # not the shortest form: not canonical
    if offset > MAX_BUNDLE_BYTES:
        return None
    return Data(bundle_id, offset, frame[payload_at:])


def _head_bytes(initial: int) -> int | None:
    """How many bytes a uint head starting with `initial` takes (major type 0 only)."""
    if initial < 24:
        return 1
    return {24: 2, 25: 3, 26: 5, 27: 9}.get(initial)


def _head_value(frame: bytes, at: int, size: int) -> int:
    if size == 1:
        return frame[at] & 0x1F
    return int.from_bytes(frame[at + 1 : at + size], "big")


def _encode(event: Event) -> bytes:
    if isinstance(event, Offer):
        return canonical([FrameType.OFFER, event.bundle_id.raw, event.size, event.priority])
    if isinstance(event, Request):
        return canonical([FrameType.REQUEST, event.bundle_id.raw, event.offset])
    if isinstance(event, Data):
        return canonical([FrameType.DATA, event.bundle_id.raw, event.offset, event.payload])
    if isinstance(event, Stored):
        return canonical([FrameType.STORED, event.bundle_id.raw])
    if isinstance(event, Gone):
        return canonical([FrameType.GONE, event.bundle_id.raw])
    if isinstance(event, Push):
        return canonical([FrameType.PUSH, event.bundle_id.raw, event.priority, event.payload])
    if isinstance(event, Done):
        return canonical([FrameType.DONE, event.seen])
    return canonical([FrameType.PING])


def _encode_short_push(push: Push, recipient: NodeId) -> bytes | None:
    """`[9, expiry, priority, E || sealed chunks]`, when the pushed bytes are a direct bundle
    for `recipient` that the receiver rebuilds exactly from that; None otherwise (an onion
    packet, a bundle for another node, a header not in its one canonical form).
    """
    payload = push.payload
    try:
        clear = bundles.parse_clear(payload[: bundles.MAX_CLEAR_BYTES])
    except BundleError:
        return None
    header = clear.header
    start = clear.size - PUBLIC_KEY_BYTES  # where E begins
    if (
        clear.onion
        or header.recipient != recipient
        or header.priority != push.priority
        or clear.bundle_id != push.bundle_id
        or clear.total_bytes != len(payload)
        or header.encode() != payload[:start]
    ):
        return None
    return canonical([FrameType.SHORT_PUSH, header.expiry, header.priority, payload[start:]])


def _rebuilt(fields: list[object], me: NodeId) -> Push:
    """The PUSH a short push stands for: the bundle as its sender queued it, for us."""
    expiry = _uint(fields[0], bundles.MAX_EXPIRY)
    priority = _uint(fields[1], 255)
    rest = fields[2]
    if not isinstance(rest, bytes) or len(rest) <= PUBLIC_KEY_BYTES:
        raise PeerError("protocol error: malformed short push frame")
    head = bundles.HopHeader(me, expiry, priority, len(rest)).encode()
    if len(head) + len(rest) > MAX_PUSH_BYTES:
        raise PeerError("protocol error: malformed short push frame")
    bundle_id = bundles.bundle_id_for(rest[:PUBLIC_KEY_BYTES])
    return Push(bundle_id, priority, head + rest)


def _uint(value: object, limit: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise PeerError("protocol error: malformed frame")
    return value


def _bundle_id(value: object) -> BundleId:
    if not isinstance(value, bytes) or len(value) != 16:
        raise PeerError("protocol error: malformed frame")
    return BundleId(value)


def _decode(frame: bytes, *, me: NodeId | None = None) -> Event:
    """One frame's event; `me`, our node id, if we take short pushes (type 9)."""
    value = strict_loads(frame, max_bytes=MAX_FRAME_BYTES, error=PeerError, what="session frame")
    if not isinstance(value, list) or not value:
        raise PeerError("protocol error: malformed frame")
    kind = _uint(value[0], 255)
    fields = value[1:]
    if kind == FrameType.SHORT_PUSH and me is not None and len(fields) == 3:
        return _rebuilt(fields, me)
    shapes = {
        FrameType.OFFER: 3,
        FrameType.REQUEST: 2,
        FrameType.DATA: 3,
        FrameType.STORED: 1,
        FrameType.GONE: 1,
        FrameType.PUSH: 3,
    }
    if kind == FrameType.DONE and len(fields) == 1:
        return Done(_uint(fields[0], MAX_FRAME_COUNT))
    if kind == FrameType.PING and not fields:
        return Ping()
    if kind not in shapes or len(fields) != shapes[FrameType(kind)]:
        raise PeerError(f"protocol error: unknown or malformed frame type {kind}")
    bundle_id = _bundle_id(fields[0])
    if kind == FrameType.OFFER:
        return Offer(bundle_id, _uint(fields[1], MAX_BUNDLE_BYTES), _uint(fields[2], 255))
    if kind == FrameType.REQUEST:
        return Request(bundle_id, _uint(fields[1], MAX_BUNDLE_BYTES))
    if kind == FrameType.DATA:
        payload = fields[2]
        if not isinstance(payload, bytes) or not 0 < len(payload) <= MAX_DATA_BYTES:
            raise PeerError("protocol error: malformed data frame")
        return Data(bundle_id, _uint(fields[1], MAX_BUNDLE_BYTES), payload)
    if kind == FrameType.GONE:
        return Gone(bundle_id)
    if kind == FrameType.PUSH:
        payload = fields[2]
        if not isinstance(payload, bytes) or not 0 < len(payload) <= MAX_PUSH_BYTES:
            raise PeerError("protocol error: malformed push frame")
        return Push(bundle_id, _uint(fields[1], 255), payload)
    return Stored(bundle_id)
