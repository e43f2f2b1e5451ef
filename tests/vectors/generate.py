"""Write the known-answer vectors in tests/vectors/*.json (docs/protocol.md, "Test vectors").

Run by hand, from the project root, after a deliberate format change:

    .venv/bin/python tests/vectors/generate.py

Everything is deterministic: identities come from fixed seeds, each bundle
from a fixed ephemeral secret, and `now` is a constant. ChaCha20-Poly1305
nonces are chunk counters and Ed25519 signatures are deterministic, so the
same inputs always give the same bytes. If running this changes a vector,
the wire format changed: that needs a new version (docs/protocol.md,
"Versions"), not a new golden file.

Bundles of a megabyte or more are not stored as hex: their payload is a
repeated byte ("payload_repeat" x "payload_bytes") and the bundle is given by
its clear part, each chunk's size and tag, and the SHA-256 of all its bytes.

Onion packets (onions.json) also take their filler from fixed labels, so the
random parts a sender draws are fixed too.
"""

from __future__ import annotations

import dataclasses
import email
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rise_dtn.core import ack, bundle, card, mailpart, onion, parts, sealing
from rise_dtn.core.bundle import MAC_BYTES, SLOT_BYTES, ContentKind, Meta, Sealer
from rise_dtn.core.encoding import canonical
from rise_dtn.core.identity import (
    NODE_ID_PERSON,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Identity,
    exchange_public_for,
    x25519,
)
from rise_dtn.core.onion import Hop, OnionPeeler, OnionSealer, SlotKind

HERE = Path(__file__).resolve().parent
NOW = 1_700_000_000  # 2023-11-14T22:13:20Z
LIFETIME_SECONDS = 30 * 86400  # the default lifetime
DEFAULT_NICE = 16  # the default priority: one byte on the wire
INLINE_LIMIT_BYTES = 4096  # bundles larger than this are described, not inlined


def secret(label: str) -> bytes:
    """A fixed 32-byte secret: SHA-256 of a readable label."""
    return hashlib.sha256(f"rise-dtn test vector: {label}".encode()).digest()


IDENTITIES = {
    name: Identity.from_seeds(secret(f"{name} signing seed"), secret(f"{name} exchange secret"))
    for name in ("alice", "bob")
}

# Relays for the onion vectors only: the other files keep naming alice and bob.
RELAYS = {
    name: Identity.from_seeds(secret(f"{name} signing seed"), secret(f"{name} exchange secret"))
    for name in ("carol", "dave")
}
# Each hop's cleartext expiry is the bundle's less a jitter (protocol.md section 20.9).
ONION_JITTER_SECONDS = {"carol": 1234, "dave": 567, "bob": 89}

MESSAGE_100 = (
    b"Meet at the old mill at dawn. Bring the radio, two spare batteries "
    b"and the USB stick. -- A (v1 test)"
)
assert len(MESSAGE_100) == 100

SMALL_FILE = b"# shopping\n- rice 5 kg\n- lamp oil\n- 2x AA batteries\n"


def identity_record(identity: Identity) -> dict[str, str]:
    public = identity.public
    return {
        "signing_seed_hex": identity.signing_seed.hex(),
        "exchange_secret_hex": identity.exchange_secret.hex(),
        "signing_public_hex": public.signing_public.hex(),
        "exchange_public_hex": public.exchange_public.hex(),
        "node_id_hex": identity.node_id.raw.hex(),
        "node_id": str(identity.node_id),
    }


def seal_all(sealer: Sealer, payload: bytes) -> bytes:
    """The whole bundle: clear part, then the payload cut into chunks and sealed."""
    parts = [sealer.clear_part(len(payload))]
    first = sealer.first_payload_bytes
    pieces = [payload[:first]]
    pieces += [
        payload[start : start + sealing.CHUNK_BYTES]
        for start in range(first, len(payload), sealing.CHUNK_BYTES)
    ]
    for number, piece in enumerate(pieces):
        parts.append(sealer.seal(piece, final=number == len(pieces) - 1))
    return b"".join(parts)


def bundle_vector(
    name: str,
    comment: str,
    *,
    meta: Meta,
    payload: bytes,
    priority: int,
    repeat: bytes | None = None,
) -> dict[str, Any]:
    sender, recipient = IDENTITIES["alice"], IDENTITIES["bob"]
    ephemeral_secret = secret(f"ephemeral secret for {name}")
    expiry = NOW + LIFETIME_SECONDS
    sealer = Sealer(
        sender=sender,
        recipient=recipient.public,
        meta=meta,
        expiry=expiry,
        priority=priority,
        ephemeral_secret=ephemeral_secret,
    )
    data = seal_all(sealer, payload)
    clear = bundle.parse_clear(data)
    ephemeral_public = exchange_public_for(ephemeral_secret)
    recipient_public = recipient.public.exchange_public
    shared = x25519(ephemeral_secret, recipient_public)
    meta_bytes = meta.encode()
    signed = bundle.signed_message(recipient.node_id, expiry, ephemeral_public, meta_bytes)
    body_bytes = clear.header.body_length - len(ephemeral_public)
    count = sealing.chunk_count(body_bytes)
    assert count is not None
    chunks = []
    for index in range(count):
        start = clear.size + index * sealing.SEALED_CHUNK_BYTES
        sealed = data[start : start + sealing.SEALED_CHUNK_BYTES]
        chunks.append(
            {
                "index": index,
                "final": index == count - 1,
                "nonce_hex": (index.to_bytes(11, "big") + bytes([index == count - 1])).hex(),
                "sealed_bytes": len(sealed),
                "tag_hex": sealed[-sealing.TAG_BYTES :].hex(),
            }
        )
    record: dict[str, Any] = {
        "name": name,
        "comment": comment,
        "sender": "alice",
        "recipient": "bob",
        "now": NOW,
        "expiry": expiry,
        "priority": priority,
        "ephemeral_secret_hex": ephemeral_secret.hex(),
        "ephemeral_public_hex": ephemeral_public.hex(),
        "bundle_id_hex": clear.bundle_id.raw.hex(),
        "bundle_id": str(clear.bundle_id),
        "meta": {"kind": int(meta.kind), "name": meta.name, "size": meta.size},
        "meta_hex": meta_bytes.hex(),
        "payload_bytes": len(payload),
    }
    if repeat is None:
        record["payload_hex"] = payload.hex()
    else:
        assert payload == repeat * len(payload)
        record["payload_repeat"] = repeat.hex()
    record |= {
        "shared_secret_hex": shared.hex(),
        "body_key_hex": sealing.derive_key(shared, ephemeral_public, recipient_public).hex(),
        "chunk0_aad_hex": clear.header.binding(ephemeral_public).hex(),
        "signed_message_hex": signed.hex(),
        "signature_hex": sender.sign(signed).hex(),
        "hop_header_hex": data[bundle.PREFIX_BYTES : clear.size - len(ephemeral_public)].hex(),
        "body_length": clear.header.body_length,
        "chunk_count": count,
        "first_payload_bytes": sealer.first_payload_bytes,
        "chunks": chunks,
        "clear_hex": data[: clear.size].hex(),
        "bundle_bytes": len(data),
        "bundle_sha256": hashlib.sha256(data).hexdigest(),
        "overhead_bytes": len(data) - len(payload),
    }
    if len(data) <= INLINE_LIMIT_BYTES:
        record["bundle_hex"] = data.hex()
    return record


def chunk0_filler_size() -> int:
    """Payload bytes that exactly fill chunk 0 of a message bundle."""
    probe = Sealer(
        sender=IDENTITIES["alice"],
        recipient=IDENTITIES["bob"].public,
        meta=Meta(ContentKind.MESSAGE),
        expiry=NOW + LIFETIME_SECONDS,
        priority=DEFAULT_NICE,
        ephemeral_secret=secret("probe"),
    )
    return probe.first_payload_bytes


def invalid_bundles(good: bytes) -> list[dict[str, str]]:
    """Mutations of a good bundle, each with the rise-dtn error it must raise."""
    clear = bundle.parse_clear(good)
    header_start = bundle.PREFIX_BYTES
    header = bytearray(good[header_start : clear.size - 32])
    # The header is [recipient, expiry, priority, body_length]: 0x84, 0x50 +
    # 16 bytes, 0x1a + 4 bytes, priority (1 byte below 24), 0x18 + 1 byte.
    assert header[0] == 0x84 and header[18] == 0x1A and header[23] < 24 and header[24] == 0x18
    priority_at = header_start + 23
    length_at = header_start + 25

    def patched(offset: int, value: int) -> bytes:
        mutated = bytearray(good)
        mutated[offset] = value
        return bytes(mutated)

    def with_expiry(encoded: bytes) -> bytes:
        """The good bundle with the expiry field (header bytes 18..22) re-encoded."""
        return good[: header_start + 18] + encoded + good[header_start + 23 :]

    long_expiry = with_expiry(b"\x1b" + bytes(4) + bytes(header[19:23]))
    return [
        {
            "name": "bad-magic",
            "bundle_hex": (b"RSX" + good[3:]).hex(),
            "error": "bad magic",
        },
        {
            "name": "unsupported-version",
            "bundle_hex": patched(3, 3).hex(),
            "error": "unsupported bundle version 3",
        },
        {
            "name": "non-canonical-header",
            "comment": "expiry as a uint64 (0x1b) where a uint32 (0x1a) is shortest",
            "bundle_hex": long_expiry.hex(),
            "error": "not valid canonical CBOR",
        },
        {
            "name": "expiry-out-of-range",
            "comment": "expiry 2**63, one more than the largest allowed",
            "bundle_hex": with_expiry(canonical(1 << 63)).hex(),
            "error": "out-of-range fields",
        },
        {
            "name": "bignum-expiry",
            "comment": "expiry 2**64 can only be written as a tag-2 bignum: tags are refused",
            "bundle_hex": with_expiry(bytes.fromhex("c249010000000000000000")).hex(),
            "error": "not valid CBOR",
        },
        {
            "name": "impossible-body-length",
            "comment": "body_length 48 = E + a bare 16-byte tag: no chunk can be that small",
            "bundle_hex": patched(length_at, 48).hex(),
            "error": "does not match the chunk framing",
        },
        {
            "name": "priority-changed",
            "comment": "priority is in the chunk-0 associated data",
            "bundle_hex": patched(priority_at, good[priority_at] ^ 1).hex(),
            "error": "chunk 0 fails authentication",
        },
        {
            "name": "tag-flipped",
            "bundle_hex": patched(len(good) - 1, good[-1] ^ 0x80).hex(),
            "error": "chunk 0 fails authentication",
        },
        {
            "name": "truncated",
            "bundle_hex": good[:-1].hex(),
            "error": "truncated",
        },
        {
            "name": "trailing-byte",
            "bundle_hex": (good + b"\x00").hex(),
            "error": "trailing",
        },
    ]


def bundles_file() -> dict[str, Any]:
    filler = chunk0_filler_size()
    vectors = [
        bundle_vector(
            "message-100",
            "a 100-byte message at the default priority: exactly 160 bytes of overhead",
            meta=Meta(ContentKind.MESSAGE),
            payload=MESSAGE_100,
            priority=DEFAULT_NICE,
        ),
        bundle_vector(
            "file-small",
            "a small named file with its size, at a two-byte priority",
            meta=Meta(ContentKind.FILE, "shopping.txt", len(SMALL_FILE)),
            payload=SMALL_FILE,
            priority=200,
        ),
        bundle_vector(
            "file-no-size",
            "a named file read from a pipe: the metadata has no size",
            meta=Meta(ContentKind.FILE, "notes.md"),
            payload=b"piped\n",
            priority=0,
        ),
        bundle_vector(
            "message-empty",
            "an empty message: chunk 0 holds only the inner header",
            meta=Meta(ContentKind.MESSAGE),
            payload=b"",
            priority=DEFAULT_NICE,
        ),
        bundle_vector(
            "chunk0-full",
            "a message that exactly fills chunk 0: one full, final chunk",
            meta=Meta(ContentKind.MESSAGE),
            payload=b"\xab" * filler,
            priority=DEFAULT_NICE,
            repeat=b"\xab",
        ),
        bundle_vector(
            "two-chunks",
            "a file of CHUNK_BYTES + 100 bytes: chunk 0 full, chunk 1 final",
            meta=Meta(ContentKind.FILE, "big.bin", sealing.CHUNK_BYTES + 100),
            payload=b"\xcd" * (sealing.CHUNK_BYTES + 100),
            priority=DEFAULT_NICE,
            repeat=b"\xcd",
        ),
    ]
    good = bytes.fromhex(vectors[0]["bundle_hex"])
    return {
        "description": "rise-dtn bundle v1 known-answer vectors (docs/protocol.md)",
        "generator": "tests/vectors/generate.py",
        "constants": {
            "chunk_bytes": sealing.CHUNK_BYTES,
            "tag_bytes": sealing.TAG_BYTES,
            "sealed_chunk_bytes": sealing.SEALED_CHUNK_BYTES,
        },
        "identities": {name: identity_record(ident) for name, ident in IDENTITIES.items()},
        "bundles": vectors,
        "invalid": invalid_bundles(good),
    }


def cards_file() -> dict[str, Any]:
    records = []
    specs: list[tuple[str, str, tuple[tuple[str, str], ...]]] = [
        ("alice", "alice", (("tcp", "alice.example.org:5454"), ("dir", "/media/usb"))),
        ("bob", "bob-relay.1", ()),
    ]
    for who, name, addresses in specs:
        identity = IDENTITIES[who]
        made = card.Card.create(identity, name=name, addresses=addresses, now=NOW)
        signed_part = canonical(
            card.Card.signed_part(name, identity.public, addresses, NOW)  # type: ignore[arg-type]
        )
        records.append(
            {
                "identity": who,
                "name": name,
                "addresses": [list(pair) for pair in addresses],
                "created": NOW,
                "node_id": str(made.node_id),
                "signed_part_hex": signed_part.hex(),
                "signature_hex": made.signature.hex(),
                "card_hex": made.to_bytes().hex(),
                "armor": made.armor(),
            }
        )
    good = bytes.fromhex(records[0]["card_hex"])
    # The version is the second array element: 0x88, 0x6d + 13 bytes, then 0x01.
    assert good[15] == card.CARD_VERSION
    wrong_version = good[:15] + b"\x02" + good[16:]
    name_at = good.index(b"alice")
    forged = good[:name_at] + b"alicf" + good[name_at + 5 :]
    return {
        "description": "rise-dtn contact card v1 known-answer vectors (docs/protocol.md)",
        "generator": "tests/vectors/generate.py",
        "identities": {name: identity_record(ident) for name, ident in IDENTITIES.items()},
        "cards": records,
        "invalid": [
            {
                "name": "unsupported-version",
                "card_hex": wrong_version.hex(),
                "error": "unsupported card version 2",
            },
            {"name": "name-changed", "card_hex": forged.hex(), "error": "bad signature"},
        ],
        "invalid_armor": [
            {
                "name": "node-header-lies",
                "comment": "headers are unsigned, but one that contradicts the card is refused",
                "armor": records[0]["armor"].replace(records[0]["node_id"], records[1]["node_id"]),
                "error": "does not match the card",
            }
        ],
    }


def acks_file(bundles: dict[str, Any]) -> dict[str, Any]:
    bob, alice = IDENTITIES["bob"], IDENTITIES["alice"]
    ids = [vector["bundle_id_hex"] for vector in bundles["bundles"][:2]]
    made = ack.Ack(
        sender=bob.node_id,
        recipient=alice.node_id,
        created=NOW + 3600,
        bundle_ids=tuple(bundle.BundleId(bytes.fromhex(bid)) for bid in ids),
    )
    data = made.encode(bob)
    body = data[4:-SIGNATURE_BYTES]
    return {
        "description": "rise-dtn hop ack v1 known-answer vectors (docs/protocol.md)",
        "generator": "tests/vectors/generate.py",
        "identities": {name: identity_record(ident) for name, ident in IDENTITIES.items()},
        "acks": [
            {
                "name": "bob-stored-two",
                "comment": "bob tells alice he stored the message-100 and file-small bundles",
                "sender": "bob",
                "recipient": "alice",
                "created": made.created,
                "bundle_ids_hex": ids,
                "body_hex": body.hex(),
                "signed_message_hex": (ack.SIGNATURE_CONTEXT + body).hex(),
                "signature_hex": data[-SIGNATURE_BYTES:].hex(),
                "ack_hex": data.hex(),
            }
        ],
        "invalid": [
            {
                "name": "unsupported-version",
                "ack_hex": (data[:3] + b"\x02" + data[4:]).hex(),
                "error": "unsupported ack version",
            },
            {
                "name": "signature-flipped",
                "ack_hex": (data[:-1] + bytes([data[-1] ^ 1])).hex(),
                "error": "bad signature",
            },
        ],
    }


def ids_file() -> dict[str, Any]:
    ephemeral = []
    for label in ("ids: first", "ids: second"):
        ephemeral_secret = secret(label)
        ephemeral_public = exchange_public_for(ephemeral_secret)
        bundle_id = bundle.bundle_id_for(ephemeral_public)
        ephemeral.append(
            {
                "ephemeral_secret_hex": ephemeral_secret.hex(),
                "ephemeral_public_hex": ephemeral_public.hex(),
                "bundle_id_hex": bundle_id.raw.hex(),
                "bundle_id": str(bundle_id),
            }
        )
    identities = {}
    for name, identity in IDENTITIES.items():
        identities[name] = identity_record(identity) | {"keyfile_hex": identity.to_keyfile().hex()}
    return {
        "description": "rise-dtn node id, bundle id and key file vectors (docs/protocol.md)",
        "generator": "tests/vectors/generate.py",
        "node_id_personalisation": NODE_ID_PERSON.decode(),
        "bundle_id_personalisation": bundle.BUNDLE_ID_PERSON.decode(),
        "identities": identities,
        "bundle_ids": ephemeral,
    }


def fixed_bytes(label: str, size: int) -> bytes:
    """`size` fixed bytes: the secrets of numbered labels, concatenated."""
    return b"".join(secret(f"{label} {number}") for number in range(size // 32 + 1))[:size]


def onion_packet(
    hops: Sequence[Hop], payload: bytes, *, ephemeral_secret: bytes, filler: bytes
) -> bytes:
    """The first hop's packet: the payload zero-padded to its bucket, then the header."""
    padded = onion.padded_payload_bytes(len(payload))
    sealer = OnionSealer(
        hops,
        slots=len(hops),
        payload_bytes=padded,
        ephemeral_secret=ephemeral_secret,
        filler=filler,
    )
    body = sealer.transform(payload + bytes(padded - len(payload)))
    return sealer.clear() + body


def onion_hop_record(name: str, identity: Identity, packet: bytes) -> tuple[dict[str, Any], bytes]:
    """What one hop sees and derives; returns the record and the peeled payload."""
    clear = bundle.parse_clear(packet)
    routing_end = clear.size + clear.slots * SLOT_BYTES + MAC_BYTES
    peeler = OnionPeeler(identity, clear, packet[clear.size : routing_end])
    peeled = peeler.transform(packet[routing_end:])
    peeler.check_payload()
    alpha = clear.ephemeral_public
    shared = identity.exchange(alpha)
    keys = onion._hop_keys(shared)  # the vectors show every intermediate value
    slot = peeler.slot
    next_name = next(
        (who for who, person in onion_people().items() if person.node_id == slot.next_hop), None
    )
    record: dict[str, Any] = {
        "node": name,
        "packet_hex": packet.hex(),
        "packet_bytes": len(packet),
        "hop_header_hex": packet[bundle.PREFIX_BYTES : clear.size - PUBLIC_KEY_BYTES].hex(),
        "expiry": clear.header.expiry,
        "priority": clear.header.priority,
        "body_length": clear.header.body_length,
        "slots": clear.slots,
        "alpha_hex": alpha.hex(),
        "bundle_id_hex": clear.bundle_id.raw.hex(),
        "bundle_id": str(clear.bundle_id),
        "routing_hex": packet[clear.size : routing_end - MAC_BYTES].hex(),
        "mac_hex": packet[routing_end - MAC_BYTES : routing_end].hex(),
        "shared_secret_hex": shared.hex(),
        "header_key_hex": keys.header.hex(),
        "mac_key_hex": keys.mac.hex(),
        "payload_key_hex": keys.payload.hex(),
        "tag_key_hex": keys.tag.hex(),
        "blinding_hex": onion._blinding(alpha, shared).hex(),
        "slot_hex": slot.encode().hex(),
        "slot": {
            "kind": int(slot.kind),
            "kind_name": slot.kind.name,
            "next_hop": next_name,
            "next_hop_hex": slot.next_hop.raw.hex() if slot.next_hop else None,
            "next_expiry": slot.next_expiry,
            "next_priority": slot.next_priority,
            "payload_tag_hex": slot.payload_tag.hex(),
            "commitment_hex": slot.commitment.hex(),
            "next_mac_hex": slot.next_mac.hex(),
        },
    }
    if slot.next_hop is not None:
        record["next_alpha_hex"] = peeler.next_clear()[
            clear.size - PUBLIC_KEY_BYTES : clear.size
        ].hex()
        record["next_bundle_id_hex"] = peeler.next_bundle_id.raw.hex()
        return record, peeler.next_clear() + peeled
    return record, peeled


def onion_people() -> dict[str, Identity]:
    return IDENTITIES | RELAYS


def onion_vector(
    name: str,
    comment: str,
    *,
    route: Sequence[str],
    kinds: tuple[SlotKind, SlotKind],
    commitments: Sequence[bytes],
    payload: bytes,
) -> dict[str, Any]:
    people = onion_people()
    expiry = NOW + LIFETIME_SECONDS
    hops = [
        Hop(
            people[who].node_id,
            people[who].public.exchange_public,
            kinds[1] if position == len(route) - 1 else kinds[0],
            expiry - ONION_JITTER_SECONDS[who],
            DEFAULT_NICE,
            commitments[position],
        )
        for position, who in enumerate(route)
    ]
    ephemeral_secret = secret(f"onion ephemeral secret for {name}")
    filler = fixed_bytes(f"onion filler for {name}", len(hops) * SLOT_BYTES)
    packet = onion_packet(hops, payload, ephemeral_secret=ephemeral_secret, filler=filler)
    records = []
    for who in route:
        record, packet = onion_hop_record(who, people[who], packet)
        records.append(record)
    return {
        "name": name,
        "comment": comment,
        "sender": "alice",
        "route": list(route),
        "now": NOW,
        "expiry": expiry,
        "hops": [
            {
                "node": who,
                "kind": int(hop.kind),
                "expiry": hop.expiry,
                "priority": hop.priority,
                "commitment_hex": hop.commitment.hex(),
            }
            for who, hop in zip(route, hops, strict=True)
        ],
        "slots": len(hops),
        "ephemeral_secret_hex": ephemeral_secret.hex(),
        "filler_hex": filler.hex(),
        "payload_hex": payload.hex(),
        "payload_bytes": len(payload),
        "padded_payload_bytes": onion.padded_payload_bytes(len(payload)),
        "packets": records,
        "final_payload_hex": packet.hex(),
    }


def invalid_onions(good: dict[str, Any]) -> list[dict[str, str]]:
    """Mutations of the first hop's packet, each with the error the hop must raise."""
    first = good["packets"][0]
    packet = bytes.fromhex(first["packet_hex"])
    clear = bundle.parse_clear(packet)
    alpha_at = clear.size - PUBLIC_KEY_BYTES
    mac_at = clear.size + clear.slots * SLOT_BYTES

    def flipped(position: int, mask: int) -> bytes:
        changed = bytearray(packet)
        changed[position] ^= mask
        return bytes(changed)

    later = dataclasses.replace(clear.header, expiry=clear.header.expiry + 1)
    hops = [
        Hop(
            onion_people()[hop["node"]].node_id,
            onion_people()[hop["node"]].public.exchange_public,
            SlotKind(hop["kind"]),
            hop["expiry"],
            hop["priority"],
            bytes.fromhex(hop["commitment_hex"]),
        )
        for hop in good["hops"]
    ]
    # A sender may write any kind byte; the MAC holds and the slot is refused.
    odd_kind = dataclasses.replace(hops[0], kind=7)
    odd = onion_packet(
        [odd_kind, *hops[1:]],
        bytes.fromhex(good["payload_hex"]),
        ephemeral_secret=secret("onion ephemeral secret for unknown-slot-kind"),
        filler=fixed_bytes("onion filler for unknown-slot-kind", len(hops) * SLOT_BYTES),
    )
    return [
        {
            "name": "mac-flipped",
            "node": "carol",
            "packet_hex": flipped(mac_at + MAC_BYTES - 1, 0x01).hex(),
            "error": "routing header MAC",
        },
        {
            "name": "slot-flipped",
            "comment": "the first byte of the routing slots: carol's slot kind, encrypted",
            "node": "carol",
            "packet_hex": flipped(clear.size, 0x01).hex(),
            "error": "routing header MAC",
        },
        {
            "name": "expiry-changed",
            "comment": "the cleartext expiry one second later: the MAC covers the hop header",
            "node": "carol",
            "packet_hex": (later.encode() + packet[alpha_at:]).hex(),
            "error": "routing header MAC",
        },
        {
            "name": "alpha-not-canonical",
            "comment": "alpha's top bit set: X25519 ignores it, the MAC and the bundle id do not",
            "node": "carol",
            "packet_hex": flipped(clear.size - 1, 0x80).hex(),
            "error": "routing header MAC",
        },
        {
            "name": "alpha-low-order",
            "comment": "alpha all zero: a low-order point, refused before any key is derived",
            "node": "carol",
            "packet_hex": (packet[:alpha_at] + bytes(32) + packet[clear.size :]).hex(),
            "error": "invalid public key",
        },
        {
            "name": "payload-flipped",
            "comment": "the last payload byte: the header passes, the payload tag does not",
            "node": "carol",
            "packet_hex": flipped(len(packet) - 1, 0x01).hex(),
            "error": "payload tag",
        },
        {
            "name": "for-another-node",
            "comment": "carol's packet handed to dave",
            "node": "dave",
            "packet_hex": packet.hex(),
            "error": "for another node",
        },
        {
            "name": "unknown-slot-kind",
            "comment": "a packet whose first slot has kind 7, under a valid MAC",
            "node": "carol",
            "packet_hex": odd.hex(),
            "error": "unknown slot kind 7",
        },
    ]


def onions_file(bundles: dict[str, Any]) -> dict[str, Any]:
    inner = bytes.fromhex(bundles["bundles"][0]["bundle_hex"])  # message-100, alice to bob
    tokens = {who: secret(f"cancel token for {who}")[: onion.COMMITMENT_BYTES] for who in RELAYS}
    data = onion_vector(
        "message-100-over-2-relays",
        "the message-100 bundle from alice to bob over carol and dave; "
        "the relays' commitments are those of the cancel tokens",
        route=("carol", "dave", "bob"),
        kinds=(SlotKind.FORWARD, SlotKind.DELIVER),
        commitments=[
            onion.commitment_for(tokens["carol"]),
            onion.commitment_for(tokens["dave"]),
            secret("onion destination commitment")[: onion.COMMITMENT_BYTES],
        ],
        payload=inner,
    )
    data["cancel_tokens_hex"] = {who: token.hex() for who, token in tokens.items()}
    data["direct_bundle_bytes"] = len(inner)
    cancel = onion_vector(
        "cancel-over-2-relays",
        "the cancel for that copy: the tokens themselves ride carol's and dave's slots",
        route=("carol", "dave"),
        kinds=(SlotKind.CANCEL_FORWARD, SlotKind.CANCEL_END),
        commitments=[tokens["carol"], tokens["dave"]],
        payload=b"",
    )
    return {
        "description": "rise-dtn onion packet (bundle v2) known-answer vectors (docs/protocol.md)",
        "generator": "tests/vectors/generate.py",
        "constants": {
            "slot_bytes": SLOT_BYTES,
            "mac_bytes": MAC_BYTES,
            "tag_bytes": onion.TAG_BYTES,
            "commitment_bytes": onion.COMMITMENT_BYTES,
            "min_payload_bytes": onion.MIN_PAYLOAD_BYTES,
            "max_route_slots": bundle.MAX_ROUTE_SLOTS,
            "personalisations": {
                "blinding": onion.PERSON_BLIND.decode(),
                "header": onion.PERSON_HEADER.decode(),
                "mac": onion.PERSON_MAC.decode(),
                "payload": onion.PERSON_PAYLOAD.decode(),
                "tag": onion.PERSON_TAG.decode(),
                "cancel": onion.PERSON_CANCEL.decode(),
                "bundle_id": bundle.BUNDLE_ID_PERSON.decode(),
            },
        },
        "identities": {name: identity_record(ident) for name, ident in onion_people().items()},
        "onions": [data, cancel],
        "invalid": invalid_onions(data),
    }


def mail_file() -> dict[str, Any]:
    """One bundle as one mail (protocol.md section 24): fixed key, draws and `now`."""
    shared = bytes(range(32))
    keys = mailpart.MailKeys.derive(shared)
    bundle = b"RSB\x01" + bytes(range(96))
    draws = [bytes([0xA0 + i for i in range(16)]), bytes([0xB0 + i for i in range(12)]),
             bytes([0xC0 + i for i in range(8)])]  # fmt: skip
    given = iter(draws)
    style = {"subject": "Files", "filename": "data.bin", "text": ""}
    mail = next(
        mailpart.encode(
            io.BytesIO(bundle), len(bundle), keys=keys, style=mailpart.MailStyle(**style),
            sender="maria.lopez@example.org", recipient="j.smith@example.net", now=NOW,
            random_bytes=lambda _size: next(given),
        )
    )  # fmt: skip
    raw = b"".join(mail.chunks)
    attachment = email.message_from_bytes(raw).get_payload()[1].get_payload(decode=True)
    return {
        "shared_key": shared.hex(),
        "keys": {"tag": keys.tag.hex(), "mask": keys.mask.hex(), "mac": keys.mac.hex()},
        "bundle": bundle.hex(),
        "random_draws": [draw.hex() for draw in draws],
        "style": style,
        "sender": "maria.lopez@example.org",
        "recipient": "j.smith@example.net",
        "now": NOW,
        "message_id": mail.message_id,
        "part_header": mail.header.encode().hex(),
        "attachment": attachment.hex(),
        "mail": raw.decode().splitlines(keepends=True),
    }


# -- parts of a split file (docs/protocol.md section 25) ------------------------------

PARTS_FILE = SMALL_FILE * 4  # 208 bytes
PARTS_PART_BYTES = 64  # a tiny part size, so the vectors stay readable; rise-send's least is 64 KiB


def parts_file() -> dict[str, Any]:
    """A 208-byte file in parts of 64 (64, 64, 64, 16), and part metadata that must be refused."""
    file_id = secret("split file id")[: parts.FILE_ID_BYTES]
    headers = parts.plan(file_id, len(PARTS_FILE), PARTS_PART_BYTES)
    vectors = []
    for header in headers:
        piece = PARTS_FILE[header.offset : header.offset + header.length]
        record = bundle_vector(
            f"part-{header.index}",
            f"part {header.index + 1} of {header.count} of shopping4.txt",
            meta=Meta(ContentKind.PART, "shopping4.txt", header.length, header),
            payload=piece,
            priority=DEFAULT_NICE,
        )
        record["part"] = {
            "file_id_hex": header.file_id.hex(),
            "index": header.index,
            "count": header.count,
            "total_bytes": header.total_bytes,
            "part_bytes": header.part_bytes,
            "offset": header.offset,
            "length": header.length,
        }
        vectors.append(record)
    fid = file_id
    invalid = [
        ("count-disagrees", [5, "a.txt", fid, 0, 3, 208, 64], "part count 3 disagrees"),
        ("index-too-large", [5, "a.txt", fid, 4, 4, 208, 64], "part index 4 is not below"),
        ("too-many-parts", [5, "a.txt", fid, 0, 65537, 65537, 1], "too many parts"),
        ("empty-file", [5, "a.txt", fid, 0, 0, 0, 64], "a file of 0 bytes"),
        ("zero-part-size", [5, "a.txt", fid, 0, 1, 208, 0], "part size is zero"),
        ("short-file-id", [5, "a.txt", fid[:15], 0, 4, 208, 64], "file id is not 16 bytes"),
        ("negative-index", [5, "a.txt", fid, -1, 4, 208, 64], "not a whole number"),
        ("boolean-count", [5, "a.txt", fid, 0, True, 208, 64], "not a whole number"),
        ("missing-field", [5, "a.txt", fid, 0, 4, 208], "malformed"),
        ("unsafe-name", [5, "../a.txt", fid, 0, 4, 208, 64], "unsafe file name"),
    ]
    return {
        "comment": "docs/protocol.md section 25: a split file and its parts, "
        "and part metadata a reader must reject",
        "identities": {name: identity_record(who) for name, who in IDENTITIES.items()},
        "file_hex": PARTS_FILE.hex(),
        "file_sha256": hashlib.sha256(PARTS_FILE).hexdigest(),
        "parts": vectors,
        "invalid_meta": [
            {"name": name, "meta_hex": canonical(fields).hex(), "reason": reason}
            for name, fields, reason in invalid
        ],
    }


def write(name: str, content: dict[str, Any]) -> None:
    path = HERE / name
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(HERE.parent.parent)}")


def main() -> None:
    bundles = bundles_file()
    write("bundles.json", bundles)
    write("cards.json", cards_file())
    write("acks.json", acks_file(bundles))
    write("ids.json", ids_file())
    write("onions.json", onions_file(bundles))
    write("mail.json", mail_file())
    write("parts.json", parts_file())


if __name__ == "__main__":
    main()
