"""Onion packets (core/onion.py, docs/protocol.md section 20): wrap, peel, tamper, fuzz.

`peel` does what a relay's toss does with a packet file (node/toss/relay.py),
minus the spool: parse the clear part, read the routing header, check its
MAC, read the slot, re-wrap the payload and check its tag. Decoding a
packet is decoding untrusted bytes: every failure must be a BundleError
(STYLE.md section 4), which `only()` and the tamper tests hold.

Every Hypothesis test is deterministic in CI (the `ci` profile, tests/properties.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rise_dtn.core import onion
from rise_dtn.core.bundle import (
    MAC_BYTES,
    MAX_CLEAR_BYTES,
    MAX_EXPIRY,
    MAX_ROUTE_SLOTS,
    SLOT_BYTES,
    HopHeader,
    parse_clear,
)
from rise_dtn.core.card import Card
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError
from rise_dtn.core.identity import PUBLIC_KEY_BYTES, BundleId, Identity, NodeId
from rise_dtn.core.onion import (
    COMMITMENT_BYTES,
    MIN_PAYLOAD_BYTES,
    Hop,
    OnionPeeler,
    OnionSealer,
    Slot,
    SlotKind,
    commitment_for,
    padded_payload_bytes,
)
from rise_dtn.node.toss import control
from tests.properties import examples, untrusted

FUZZ = settings(
    max_examples=examples(150),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(FUZZ, max_examples=examples(60))

NOW = 1_700_000_000
# Expiries between 2**31 and 2**32 - 1 all take five CBOR bytes, so every
# hop's clear part has the same length (protocol.md section 20.1).
EXPIRY = NOW + 30 * 86_400
NODES = [
    Identity.from_seeds(bytes([0x20 + number]) * 32, bytes([0x40 + number]) * 32)
    for number in range(MAX_ROUTE_SLOTS)
]
STRANGER = Identity.from_seeds(bytes([0x7E]) * 32, bytes([0x7F]) * 32)
EPHEMERAL = bytes([0x11]) * 32
# Low-order X25519 points (RFC 7748 section 6.1; Bernstein's list): each makes
# the shared secret all zero, whatever the secret scalar.
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


@dataclasses.dataclass(frozen=True)
class Peeled:
    """What one hop made of a packet."""

    slot: Slot
    bundle_id: BundleId
    next_bundle_id: BundleId
    payload: bytes  # the payload as peeled: the next hop's, or the destination's plaintext
    next_packet: bytes | None  # None where the packet ends


def hops_for(
    route: Sequence[Identity],
    *,
    cancel: bool = False,
    expiries: Sequence[int] | None = None,
    priorities: Sequence[int] | None = None,
) -> list[Hop]:
    forward, last = (
        (SlotKind.CANCEL_FORWARD, SlotKind.CANCEL_END)
        if cancel
        else (SlotKind.FORWARD, SlotKind.DELIVER)
    )
    return [
        Hop(
            node.node_id,
            node.public.exchange_public,
            last if position == len(route) - 1 else forward,
            expiries[position] if expiries else EXPIRY - position,
            priorities[position] if priorities else 16,
            hashlib.blake2b(bytes([position]), digest_size=COMMITMENT_BYTES).digest(),
        )
        for position, node in enumerate(route)
    ]


def seal(
    hops: Sequence[Hop],
    payload: bytes,
    *,
    slots: int | None = None,
    ephemeral: bytes = EPHEMERAL,
    block_bytes: int = 1 << 16,
) -> tuple[OnionSealer, bytes]:
    """The first hop's packet, the payload zero-padded to its bucket and fed in blocks."""
    slots = slots or len(hops)
    padded = padded_payload_bytes(len(payload))
    sealer = OnionSealer(
        hops,
        slots=slots,
        payload_bytes=padded,
        ephemeral_secret=ephemeral,
        filler=hashlib.shake_256(b"filler" + ephemeral).digest(slots * SLOT_BYTES),
    )
    plain = payload + bytes(padded - len(payload))
    body = b"".join(
        sealer.transform(plain[start : start + block_bytes])
        for start in range(0, len(plain), block_bytes)
    )
    clear = sealer.clear()
    assert len(clear) == sealer.clear_bytes
    return sealer, clear + body


def open_packet(identity: Identity, packet: bytes) -> tuple[OnionPeeler, bytes]:
    """Parse the clear part and check the routing header: what a relay does before the payload."""
    clear = parse_clear(packet[:MAX_CLEAR_BYTES])
    if len(packet) != clear.total_bytes:
        raise BundleError(f"packet size {len(packet)} does not match its header")
    end = clear.size + clear.slots * SLOT_BYTES + MAC_BYTES
    return OnionPeeler(identity, clear, packet[clear.size : end]), packet[end:]


def peel(identity: Identity, packet: bytes, *, block_bytes: int = 1 << 16) -> Peeled:
    peeler, payload = open_packet(identity, packet)
    assert len(payload) == peeler.payload_bytes
    peeled = b"".join(
        peeler.transform(payload[start : start + block_bytes])
        for start in range(0, len(payload), block_bytes)
    )
    peeler.check_payload()
    following = peeler.next_clear() + peeled if peeler.slot.next_hop is not None else None
    return Peeled(peeler.slot, peeler.bundle_id, peeler.next_bundle_id, peeled, following)


def walk(route: Sequence[Identity], packet: bytes) -> tuple[list[bytes], list[Peeled]]:
    """Every hop's packet and what each hop made of it, following the slots."""
    packets, results = [packet], []
    by_id = {node.node_id: node for node in route}
    node = route[0]
    while True:
        result = peel(node, packets[-1])
        results.append(result)
        if result.next_packet is None:
            return packets, results
        assert result.slot.next_hop is not None
        node = by_id[result.slot.next_hop]
        packets.append(result.next_packet)


def only(error: type[Exception], decode: Callable[[], object]) -> object:
    """Run `decode`; swallow `error` (the documented one), let anything else fail the test."""
    return untrusted(decode, error)


def flip(data: bytes, position: int, mask: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


# -- round trips ----------------------------------------------------------------------------


@st.composite
def routes(draw: st.DrawFn) -> tuple[list[Hop], int, bytes, bytes]:
    length = draw(st.integers(1, 8))
    slots = draw(st.integers(length, MAX_ROUTE_SLOTS))
    route = draw(st.permutations(NODES))[:length]
    cancel = draw(st.booleans())
    expiries = draw(st.lists(st.integers(1 << 31, (1 << 32) - 1), min_size=length, max_size=length))
    priority_bytes = draw(st.sampled_from([(0, 23), (24, 255)]))  # one CBOR length per packet
    priorities = draw(st.lists(st.integers(*priority_bytes), min_size=length, max_size=length))
    payload = draw(st.binary(max_size=3000))
    ephemeral = draw(st.binary(min_size=32, max_size=32))
    hops = hops_for(route, cancel=cancel, expiries=expiries, priorities=priorities)
    return hops, slots, payload, ephemeral


def check_route(hops: Sequence[Hop], slots: int, payload: bytes, packet: bytes) -> None:
    route = [next(node for node in NODES if node.node_id == hop.node_id) for hop in hops]
    packets, results = walk(route, packet)
    assert len(results) == len(hops), "the packet ends at the last hop, not before"
    for position, (hop, result) in enumerate(zip(hops, results, strict=True)):
        following = hops[position + 1] if position + 1 < len(hops) else None
        assert result.slot.kind is hop.kind
        assert result.slot.next_hop == (following.node_id if following else None)
        assert result.slot.next_expiry == (following.expiry if following else 0)
        assert result.slot.next_priority == (following.priority if following else 0)
        assert result.slot.commitment == hop.commitment
        clear = parse_clear(packets[position])
        assert clear.header == HopHeader(
            hop.node_id, hop.expiry, hop.priority, clear.header.body_length, slots
        )
        if following:
            assert result.next_bundle_id == parse_clear(packets[position + 1]).bundle_id
            mac_at = clear.size + slots * SLOT_BYTES  # clear parts are the same size
            assert result.slot.next_mac == packets[position + 1][mac_at : mac_at + MAC_BYTES]
    assert len({len(each) for each in packets}) == 1, "every hop sees the same size"
    ids = [result.bundle_id for result in results]
    assert len(set(ids)) == len(ids), "each hop sees its own bundle id"
    padded = padded_payload_bytes(len(payload))
    assert results[-1].payload == payload + bytes(padded - len(payload))
    # A replay of any hop's packet peels to the same bytes and ids: Sphinx replay detection.
    assert peel(route[0], packets[0]) == results[0]


@ROUND_TRIP
@given(routes())
@example((hops_for(NODES[:1]), 1, b"", EPHEMERAL))
@example((hops_for(NODES[:8]), 9, b"x" * 2999, EPHEMERAL))
@example((hops_for(NODES[:3], cancel=True), 3, b"", EPHEMERAL))
def test_round_trip_over_one_to_eight_hops(drawn: tuple[list[Hop], int, bytes, bytes]) -> None:
    hops, slots, payload, ephemeral = drawn
    sealer, packet = seal(hops, payload, slots=slots, ephemeral=ephemeral)
    assert parse_clear(packet).bundle_id == sealer.bundle_id
    assert len(packet) == sealer.clear_bytes + padded_payload_bytes(len(payload))
    check_route(hops, slots, payload, packet)


def test_round_trip_of_a_payload_over_a_mebibyte_in_odd_blocks() -> None:
    hops = hops_for(NODES[:4])
    payload = bytes(range(251)) * (((1 << 20) + 4000) // 251)
    assert len(payload) > 1 << 20
    _sealer, packet = seal(hops, payload, slots=6, block_bytes=65_537)
    check_route(hops, 6, payload, packet)
    # Block boundaries do not matter: the key streams and tags are continuous.
    _sealer, other = seal(hops, payload, slots=6, block_bytes=1 << 20)
    assert other == packet
    assert peel(NODES[0], packet, block_bytes=4095) == peel(NODES[0], packet)


def test_the_same_inputs_give_the_same_packet_and_another_ephemeral_another() -> None:
    hops = hops_for(NODES[:3])
    assert seal(hops, b"hi")[1] == seal(hops, b"hi")[1]
    _first, one = seal(hops, b"hi")
    _second, two = seal(hops, b"hi", ephemeral=bytes([0x12]) * 32)
    assert parse_clear(one).bundle_id != parse_clear(two).bundle_id
    assert one[64:] != two[64:]


def test_the_route_length_shows_only_as_the_slot_count() -> None:
    """Size depends on the slots and the padded payload, not on the hops actually used."""
    sizes = {len(seal(hops_for(NODES[:length]), b"m" * 300, slots=9)[1]) for length in range(1, 10)}
    assert len(sizes) == 1
    per_slot = [len(seal(hops_for(NODES[:1]), b"", slots=slots)[1]) for slots in (1, 2, 3)]
    assert per_slot[1] - per_slot[0] == per_slot[2] - per_slot[1] == SLOT_BYTES


def test_overhead_over_relays_is_74_bytes_a_hop_before_padding() -> None:
    """protocol.md section 20.8: clear part + (h + 1) * 74 + 16 + padded payload."""
    for relays in range(9):
        hops = hops_for(NODES[: relays + 1])
        sealer, packet = seal(hops, b"m" * 260)  # a 100-byte message's direct bundle
        clear = parse_clear(packet)
        assert clear.size == 4 + 28 + PUBLIC_KEY_BYTES  # body_length takes 3 CBOR bytes here
        assert len(packet) == clear.size + (relays + 1) * SLOT_BYTES + MAC_BYTES + 512
        assert len(packet) == sealer.clear_bytes + 512


def test_sealer_refuses_what_it_cannot_build() -> None:
    hops = hops_for(NODES[:3])
    filler = bytes(3 * SLOT_BYTES)
    with pytest.raises(ValueError, match="1 to `slots` hops"):
        OnionSealer(hops, slots=2, payload_bytes=512, ephemeral_secret=EPHEMERAL, filler=filler)
    with pytest.raises(ValueError, match="1 to `slots` hops"):
        OnionSealer([], slots=1, payload_bytes=512, ephemeral_secret=EPHEMERAL, filler=filler)
    with pytest.raises(ValueError, match="filler"):
        OnionSealer(hops, slots=3, payload_bytes=512, ephemeral_secret=EPHEMERAL, filler=b"")
    sealer = OnionSealer(
        hops, slots=3, payload_bytes=512, ephemeral_secret=EPHEMERAL, filler=filler
    )
    with pytest.raises(ValueError, match="not complete"):
        sealer.clear()
    with pytest.raises(ValueError, match="more payload"):
        sealer.transform(bytes(513))


def test_a_terminal_slot_has_no_next_packet() -> None:
    _sealer, packet = seal(hops_for(NODES[:1]), b"end")
    peeler, _payload = open_packet(NODES[0], packet)
    assert peeler.slot.kind is SlotKind.DELIVER and peeler.slot.next_hop is None
    with pytest.raises(ValueError, match="ends here"):
        peeler.next_clear()


# -- tampering ------------------------------------------------------------------------------

ROUTE = NODES[:3]  # two relays and the destination


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    _sealer, packet = seal(hops_for(ROUTE), b"meet at the mill at dawn")
    return walk(ROUTE, packet)[0]


def header_refusal(identity: Identity, packet: bytes) -> str | None:
    """Why the clear part or the routing header is refused (before any payload is read)."""
    try:
        open_packet(identity, packet)
    except BundleError as exc:
        return exc.message
    return None


@pytest.mark.parametrize("hop", range(len(ROUTE)))
def test_every_header_byte_flip_is_caught_by_the_hop_that_reads_it(
    packets: list[bytes], hop: int
) -> None:
    """Hop header fields, alpha, every routing slot and the MAC: refused at the MAC (or before)."""
    packet = packets[hop]
    clear = parse_clear(packet)
    alpha_at = clear.size - PUBLIC_KEY_BYTES
    header_end = clear.size + clear.slots * SLOT_BYTES + MAC_BYTES
    reasons = {
        (position, mask): header_refusal(ROUTE[hop], flip(packet, position, mask))
        for position in range(header_end)
        for mask in (0x01, 0x80, 0xFF)
    }
    assert [key for key, reason in reasons.items() if reason is None] == []
    # From alpha on nothing is parsed: only the MAC can notice, and it does.
    not_at_mac = [
        (key, reason)
        for key, reason in reasons.items()
        if key[0] >= alpha_at and "routing header MAC" not in str(reason)
    ]
    assert not_at_mac == []
    # Header fields that still parse (expiry, priority, body length values) reach the MAC too.
    assert any(
        "routing header MAC" in str(reason)
        for (position, _mask), reason in reasons.items()
        if position < alpha_at
    )


@pytest.mark.parametrize("hop", range(len(ROUTE)))
def test_every_payload_byte_flip_is_caught_by_the_payload_tag(
    packets: list[bytes], hop: int
) -> None:
    packet = packets[hop]
    clear = parse_clear(packet)
    header_end = clear.size + clear.slots * SLOT_BYTES + MAC_BYTES
    for position in range(header_end, len(packet)):
        for mask in (0x01, 0x80):
            peeler, payload = open_packet(ROUTE[hop], flip(packet, position, mask))
            peeler.transform(payload)
            with pytest.raises(BundleError, match="payload tag"):
                peeler.check_payload()


def test_a_relay_that_tags_the_payload_is_caught_by_the_next_hop(packets: list[bytes]) -> None:
    """The first relay peels honestly, then marks the payload for an accomplice."""
    forwarded = peel(ROUTE[0], packets[0]).next_packet
    assert forwarded == packets[1]
    tagged = flip(forwarded, len(forwarded) - 100, 0x04)
    peeler, payload = open_packet(ROUTE[1], tagged)
    peeler.transform(payload)
    with pytest.raises(BundleError, match="payload tag"):
        peeler.check_payload()


def test_a_packet_for_another_node_is_refused(packets: list[bytes]) -> None:
    with pytest.raises(BundleError, match="another node"):
        open_packet(ROUTE[1], packets[0])
    with pytest.raises(BundleError, match="another node"):
        open_packet(STRANGER, packets[2])


def test_a_truncated_routing_header_is_refused(packets: list[bytes]) -> None:
    clear = parse_clear(packets[0])
    routing = packets[0][clear.size : clear.size + clear.slots * SLOT_BYTES + MAC_BYTES]
    for cut in (routing[:-1], routing[:SLOT_BYTES], b"", routing + b"\x00"):
        with pytest.raises(BundleError, match="truncated"):
            OnionPeeler(ROUTE[0], clear, cut)


def test_a_direct_bundle_is_not_an_onion_packet(packets: list[bytes]) -> None:
    clear = parse_clear(packets[0])
    direct = dataclasses.replace(clear, version=1, slots=0)
    with pytest.raises(BundleError, match="not an onion packet"):
        OnionPeeler(ROUTE[0], direct, b"")


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda point: point[:4].hex())
def test_a_low_order_alpha_is_refused(packets: list[bytes], point: bytes) -> None:
    clear = parse_clear(packets[0])
    forged = packets[0][: clear.size - PUBLIC_KEY_BYTES] + point + packets[0][clear.size :]
    with pytest.raises(BundleError):
        open_packet(ROUTE[0], forged)


def test_a_non_canonical_alpha_fails_the_mac(packets: list[bytes]) -> None:
    """X25519 ignores alpha's top bit: the same shared secret under another bundle id.

    Without the MAC over alpha, flipping that bit would slip a replay past the
    bundle id check (protocol.md section 20.4).
    """
    clear = parse_clear(packets[0])
    top = clear.size - 1
    twin = flip(packets[0], top, 0x80)
    assert parse_clear(twin).bundle_id != clear.bundle_id
    assert ROUTE[0].exchange(parse_clear(twin).ephemeral_public) == ROUTE[0].exchange(
        clear.ephemeral_public
    )
    with pytest.raises(BundleError, match="routing header MAC"):
        open_packet(ROUTE[0], twin)


def test_an_unknown_slot_kind_under_a_valid_mac_is_refused() -> None:
    odd = dataclasses.replace(hops_for(NODES[:1])[0], kind=7)  # type: ignore[arg-type]
    _sealer, packet = seal([odd], b"")
    with pytest.raises(BundleError, match="unknown slot kind 7"):
        open_packet(NODES[0], packet)


# -- padding and commitments ----------------------------------------------------------------

# The first buckets: steps of 32 bytes up to 1 KiB, 64 up to 2 KiB, 128 up to 4 KiB.
FIRST_BUCKETS = [
    (0, 512),
    (1, 512),
    (260, 512),
    (512, 512),
    (513, 544),
    (544, 544),
    (545, 576),
    (1000, 1024),
    (1024, 1024),
    (1025, 1088),
    (2048, 2048),
    (2049, 2176),
    (4097, 4352),
    (65_537, 67_584),
    ((1 << 20) + 1, 1_081_344),
]


@pytest.mark.parametrize(("inner", "padded"), FIRST_BUCKETS)
def test_padded_payload_bucket_table(inner: int, padded: int) -> None:
    assert padded_payload_bytes(inner) == padded


def test_the_first_buckets() -> None:
    buckets = sorted({padded_payload_bytes(size) for size in range(2049)})
    assert buckets == [*range(512, 1024, 32), *range(1024, 2049, 64)]
    assert MIN_PAYLOAD_BYTES == 512


def test_padding_is_monotone_and_bounded_below_two_mebibytes() -> None:
    previous = MIN_PAYLOAD_BYTES
    for size in range(2 << 20):
        padded = padded_payload_bytes(size)
        assert padded >= size and padded >= previous
        previous = padded
        if size > MIN_PAYLOAD_BYTES:
            assert (padded - size) * 16 <= size  # at most 6.25 %, under the 12 % Padmé promises


@FUZZ
@given(st.integers(0, 1 << 50), st.integers(0, 1 << 20))
def test_padding_is_monotone_and_bounded(size: int, more: int) -> None:
    padded = padded_payload_bytes(size)
    assert padded >= max(size, MIN_PAYLOAD_BYTES)
    assert padded_payload_bytes(size + more) >= padded
    assert padded_payload_bytes(padded) == padded, "a bucket size is its own bucket"
    if size > MIN_PAYLOAD_BYTES:
        assert padded - size <= 0.12 * size


def test_commitment_is_blake2b_128_of_the_token() -> None:
    token = bytes(range(16))
    commitment = commitment_for(token)
    assert len(commitment) == COMMITMENT_BYTES == 16
    assert commitment == commitment_for(bytes(range(16)))
    assert commitment == hashlib.blake2b(token, digest_size=16, person=b"rise-cancel").digest()
    assert commitment != commitment_for(bytes(16)) != token


# -- fuzzing the decoders -------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_parse_clear_of_an_onion_version(tail: bytes) -> None:
    only(BundleError, lambda: parse_clear(b"RSB\x02" + tail))


HEADER_VALUES = st.one_of(
    st.binary(max_size=20),
    st.integers(-3, 1 << 64),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
)


@FUZZ
@given(st.lists(HEADER_VALUES, max_size=6), st.binary(max_size=40))
@example([NODES[0].node_id.raw, EXPIRY, 16, 1000, 3], bytes(32))
@example([NODES[0].node_id.raw, EXPIRY, 16, 32 + 74 + 16, 1], bytes(32))
@example([NODES[0].node_id.raw, MAX_EXPIRY, 255, 1 << 50, 10], bytes(32))
def test_fuzz_parse_clear_of_onion_headers(fields: list[object], tail: bytes) -> None:
    only(BundleError, lambda: parse_clear(b"RSB\x02" + canonical(fields) + tail))  # type: ignore[arg-type]


@FUZZ
@given(st.binary(min_size=SLOT_BYTES, max_size=SLOT_BYTES))
@example(bytes(SLOT_BYTES))
@example(b"\x03" + b"\xff" * (SLOT_BYTES - 1))
def test_fuzz_slot_decode(data: bytes) -> None:
    slot = only(BundleError, lambda: Slot.decode(data))
    if isinstance(slot, Slot) and slot.next_hop is not None:
        assert slot.encode() == data, "a forwarding slot round-trips byte for byte"


@st.composite
def onion_clear(draw: st.DrawFn) -> tuple[bytes, int]:
    """A well-formed clear part for NODES[0], with any alpha: (clear part, slots)."""
    slots = draw(st.integers(1, MAX_ROUTE_SLOTS))
    payload = draw(st.integers(1, 5000))
    alpha = draw(st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from(LOW_ORDER_POINTS)))
    header = HopHeader(
        NODES[0].node_id,
        draw(st.integers(0, MAX_EXPIRY)),
        draw(st.integers(0, 255)),
        PUBLIC_KEY_BYTES + slots * SLOT_BYTES + MAC_BYTES + payload,
        slots,
    )
    return header.encode() + alpha, slots


@FUZZ
@given(onion_clear(), st.binary(max_size=MAX_ROUTE_SLOTS * SLOT_BYTES + MAC_BYTES + 8))
def test_fuzz_peeler_on_arbitrary_routing_bytes(drawn: tuple[bytes, int], routing: bytes) -> None:
    data, _slots = drawn
    clear = parse_clear(data)
    only(BundleError, lambda: OnionPeeler(NODES[0], clear, routing))


@FUZZ
@given(onion_clear(), st.data())
def test_fuzz_peeler_on_random_slots_under_a_valid_mac(
    drawn: tuple[bytes, int], data: st.DataObject
) -> None:
    """Past the MAC: whatever the opened slot says, only BundleError (or a next clear part)."""
    header_bytes, slots = drawn
    clear = parse_clear(header_bytes)
    beta = data.draw(st.binary(min_size=slots * SLOT_BYTES, max_size=slots * SLOT_BYTES))
    alpha = clear.ephemeral_public
    try:
        # The MAC is built with the module's own key schedule: the point is to get past it.
        keys = onion._hop_keys(NODES[0].exchange(alpha))
    except BundleError:
        return  # a low-order alpha: refused before any slot is read
    gamma = onion._mac(keys.mac, clear.header, alpha, beta)
    peeler = only(BundleError, lambda: OnionPeeler(NODES[0], clear, beta + gamma))
    if isinstance(peeler, OnionPeeler) and peeler.slot.next_hop is not None:
        following = parse_clear(peeler.next_clear())
        assert following.slots == slots
        assert following.header.recipient == peeler.slot.next_hop


# -- maps (node/toss/control.py, protocol.md section 21) ------------------------------------------

CARD_BYTES = Card.create(NODES[0], name="relay0", addresses=(), now=NOW).to_bytes()
NODE_ID_VALUES = st.one_of(
    st.sampled_from([node.node_id.raw for node in NODES[:3]]), st.binary(max_size=17)
)
LINK_VALUES = st.one_of(
    st.lists(
        st.one_of(NODE_ID_VALUES, st.integers(-2, 300), st.booleans(), st.none()),
        max_size=4,
    ),
    st.tuples(NODE_ID_VALUES, NODE_ID_VALUES, st.integers(-2, 300)).map(list),
    HEADER_VALUES,
)
CARD_VALUES = st.one_of(
    st.just(CARD_BYTES),
    st.binary(max_size=64),
    st.integers(0, 5).map(lambda cut: CARD_BYTES[:-cut] if cut else CARD_BYTES + b"\x00"),
    HEADER_VALUES,
)


@FUZZ
@given(st.binary(max_size=300))
@example(canonical([1, [], []]))
@example(canonical([1, [[bytes(16), bytes(16), 0]], []]))
@example(canonical([1, [[bytes(16), b"\x01" * 16, 256]], []]))
@example(canonical([True, [], []]))
def test_fuzz_decode_map_bytes(payload: bytes) -> None:
    only(BundleError, lambda: control._decode_map(payload))


@FUZZ
@given(
    st.one_of(st.just(1), HEADER_VALUES),
    st.lists(LINK_VALUES, max_size=70),
    st.lists(CARD_VALUES, max_size=3),
)
@example(1, [[NODES[0].node_id.raw, NODES[1].node_id.raw, 2]], [CARD_BYTES])
@example(1, [[NODES[0].node_id.raw, NODES[1].node_id.raw, 2]] * 65, [])
def test_fuzz_decode_map_structures(
    version: object, links: list[object], cards: list[object]
) -> None:
    payload = canonical([version, links, cards])  # type: ignore[list-item]
    decoded = only(BundleError, lambda: control._decode_map(payload))
    if decoded is not None:
        assert version == 1
        assert len(links) <= control.MAX_MAP_LINKS


@FUZZ
@given(st.one_of(LINK_VALUES, st.recursive(HEADER_VALUES, st.lists, max_leaves=5)))
@example([NODES[0].node_id.raw, NODES[1].node_id.raw, 255])
@example([NODES[0].node_id.raw, NODES[0].node_id.raw, 0])
@example([NODES[0].node_id.raw, NODES[1].node_id.raw, True])
def test_fuzz_decode_link(entry: object) -> None:
    link = only(BundleError, lambda: control._decode_link(entry))
    if link is not None:
        assert isinstance(entry, list)
        assert {NodeId(entry[0]), NodeId(entry[1])} == {link.a, link.b}  # type: ignore[attr-defined]


def test_decode_map_limits() -> None:
    ends = [node.node_id.raw for node in NODES[:2]]
    many = [[*ends, distance] for distance in range(control.MAX_MAP_LINKS + 1)]
    with pytest.raises(BundleError, match="map is malformed"):
        control._decode_map(canonical([1, many, []]))
    links, cards = control._decode_map(canonical([1, many[:-1], [CARD_BYTES]]))
    assert len(links) == control.MAX_MAP_LINKS and len(cards) == 1
    with pytest.raises(BundleError, match="map is malformed"):
        control._decode_map(canonical([1, [], [CARD_BYTES] * (control.MAX_MAP_CARDS + 1)]))
    with pytest.raises(BundleError, match="bad card"):
        control._decode_map(canonical([1, [], [CARD_BYTES[:-1]]]))
