"""Contact cards: rise_dtn.core.card. Every decoding failure is a PeerError."""

from __future__ import annotations

import base64

import pytest
from test_codec_support import ALICE, BOB, MALLORY, NOW

from rise_dtn.core.card import (
    ARMOR_BEGIN,
    ARMOR_END,
    CARD_MAGIC,
    CARD_SIGNATURE_CONTEXT,
    CARD_VERSION,
    MAX_CARD_BYTES,
    Card,
    check_name,
)
from rise_dtn.core.encoding import canonical, strict_loads
from rise_dtn.core.errors import PeerError, UsageError

ADDRESSES = (("tcp", "alice.example:5454"), ("dir", "/media/stick"))


def alice_card() -> Card:
    return Card.create(ALICE, name="alice", addresses=ADDRESSES, now=NOW)


def card_fields(card: Card | None = None) -> list[object]:
    value = strict_loads(
        (card or alice_card()).to_bytes(), max_bytes=MAX_CARD_BYTES, error=PeerError, what="card"
    )
    assert isinstance(value, list)
    return value


def encode(fields: list[object]) -> bytes:
    return canonical(fields)  # type: ignore[arg-type]


def signed_by(identity: object, fields: list[object]) -> bytes:
    """Re-sign the first seven fields with `identity` and encode the card."""
    body = encode(fields[:7])
    return encode([*fields[:7], identity.sign(CARD_SIGNATURE_CONTEXT + body)])  # type: ignore[attr-defined]


# Round trips


def test_bytes_round_trip() -> None:
    card = alice_card()
    decoded = Card.from_bytes(card.to_bytes())
    assert decoded == card
    assert decoded.node_id == ALICE.node_id
    assert decoded.addresses == ADDRESSES
    assert decoded.created == NOW
    assert decoded.to_bytes() == card.to_bytes()


def test_card_without_addresses() -> None:
    card = Card.create(BOB, name="bob", now=0)
    assert Card.from_bytes(card.to_bytes()) == card


def test_armor_round_trip() -> None:
    card = alice_card()
    text = card.armor()
    assert text.startswith(ARMOR_BEGIN + "\n")
    assert text.endswith(ARMOR_END + "\n")
    assert "Name: alice\n" in text
    assert f"Node: {ALICE.node_id}\n" in text
    assert all(len(line) <= 64 for line in text.splitlines())
    assert Card.from_text(text) == card


def test_armor_inside_a_mail_with_crlf_and_indentation() -> None:
    text = alice_card().armor()
    mail = "Hi Bob,\r\nhere is my card:\r\n\r\n" + text.replace("\n", "\r\n   ") + "\r\nCheers\r\n"
    assert Card.from_text(mail) == alice_card()


def test_armor_without_headers_and_with_unknown_headers() -> None:
    lines = alice_card().armor().splitlines()
    bare = "\n".join(line for line in lines if ":" not in line)
    assert Card.from_text(bare) == alice_card()
    commented = "\n".join([lines[0], "Comment: met at the station", *lines[1:]])
    assert Card.from_text(commented) == alice_card()


def test_the_first_of_two_cards_is_read() -> None:
    text = alice_card().armor() + Card.create(BOB, name="bob", now=NOW).armor()
    assert Card.from_text(text) == alice_card()


# Signatures and tampering


def test_bad_self_signature() -> None:
    fields = card_fields()
    signature = bytearray(fields[7])  # type: ignore[arg-type]
    signature[0] ^= 1
    fields[7] = bytes(signature)
    with pytest.raises(PeerError, match="bad signature"):
        Card.from_bytes(encode(fields))


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (2, "bob"),  # the card now claims another name
        (5, [["tcp", "mallory.example:5454"]]),
        (5, []),
        (6, NOW + 1),
        (3, MALLORY.public.signing_public),
        (4, MALLORY.public.exchange_public),
    ],
    ids=["name", "address", "no-address", "created", "signing-key", "exchange-key"],
)
def test_tampered_signed_field(index: int, value: object) -> None:
    fields = card_fields()
    fields[index] = value
    with pytest.raises(PeerError, match="bad signature"):
        Card.from_bytes(encode(fields))


def test_card_signed_by_someone_else() -> None:
    # Alice's keys, Mallory's signature: a forgery.
    with pytest.raises(PeerError, match="bad signature"):
        Card.from_bytes(signed_by(MALLORY, card_fields()))


def test_card_signature_over_the_body_without_context() -> None:
    fields = card_fields()
    fields[7] = ALICE.sign(encode(fields[:7]))
    with pytest.raises(PeerError, match="bad signature"):
        Card.from_bytes(encode(fields))


def test_every_single_byte_flip_is_refused() -> None:
    data = alice_card().to_bytes()
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= 0x01
        with pytest.raises(PeerError):
            Card.from_bytes(bytes(changed))


def test_truncated_and_extended_cards_are_refused() -> None:
    data = alice_card().to_bytes()
    for size in range(len(data)):
        with pytest.raises(PeerError):
            Card.from_bytes(data[:size])
    with pytest.raises(PeerError):
        Card.from_bytes(data + b"\x00")


# Malformed fields (validly signed, so only the field check can refuse them)


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (2, "../alice", "invalid name"),
        (2, "alice\n", "invalid name"),
        (2, "", "invalid name"),
        (2, "a" * 65, "invalid name"),
        (2, ".", "invalid name"),
        (2, 7, "malformed fields"),
        (3, ALICE.public.signing_public[:31], "malformed public keys"),
        (4, ALICE.public.exchange_public + b"\x00", "malformed public keys"),
        (3, "key", "malformed public keys"),
        (5, {}, "malformed addresses"),
        (5, [["tcp"]], "malformed addresses"),
        (5, [["tcp", "a", "b"]], "malformed addresses"),
        (5, [["tcp", ""]], "malformed addresses"),
        (5, [["", "host"]], "malformed addresses"),
        (5, [["tcp", "h" * 257]], "malformed addresses"),
        (5, [["tcp", b"host"]], "malformed addresses"),
        (5, [("tcp", f"host{n}") for n in range(33)], "malformed addresses"),
        (6, -1, "malformed fields"),
        (6, True, "malformed fields"),
        (6, "now", "malformed fields"),
    ],
    ids=repr,
)
def test_malformed_field_with_a_valid_signature(index: int, value: object, message: str) -> None:
    fields = card_fields()
    fields[index] = [list(pair) for pair in value] if isinstance(value, list) else value
    with pytest.raises(PeerError, match=message):
        Card.from_bytes(signed_by(ALICE, fields))


def test_card_size_limit() -> None:
    addresses = tuple(("c" * 256, f"{n:03d}" + "a" * 253) for n in range(32))
    card = Card.create(ALICE, name="alice", addresses=addresses, now=NOW)
    assert len(card.to_bytes()) > MAX_CARD_BYTES
    with pytest.raises(PeerError, match="too large"):
        Card.from_bytes(card.to_bytes())
    small = tuple((f"c{n}", "a" * 200) for n in range(32))
    card = Card.create(ALICE, name="alice", addresses=small, now=NOW)
    assert Card.from_bytes(card.to_bytes()) == card


@pytest.mark.parametrize(
    "fields",
    [
        ["rise-dtn bundle", CARD_VERSION],
        [CARD_MAGIC],
        [CARD_MAGIC, CARD_VERSION, "alice"],
        [b"rise-dtn card", CARD_VERSION, "alice", b"", b"", [], 0, b""],
    ],
    ids=repr,
)
def test_not_a_card(fields: list[object]) -> None:
    with pytest.raises(PeerError, match="not a rise-dtn card"):
        Card.from_bytes(encode(fields))


@pytest.mark.parametrize("version", [0, 2, 255, True, "1", None], ids=repr)
def test_unsupported_card_version(version: object) -> None:
    fields = card_fields()
    fields[1] = version
    with pytest.raises(PeerError, match="unsupported card version"):
        Card.from_bytes(signed_by(ALICE, fields))


def test_signature_of_the_wrong_type() -> None:
    fields = card_fields()
    fields[7] = "signature"
    with pytest.raises(PeerError, match="malformed signature"):
        Card.from_bytes(encode(fields))


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"\x00", b"\x9f\xff", b"\x81" * 5000, canonical({"magic": CARD_MAGIC})],
    ids=repr,
)
def test_not_cbor_or_not_a_list(data: bytes) -> None:
    with pytest.raises(PeerError):
        Card.from_bytes(data)


def test_oversized_card() -> None:
    with pytest.raises(PeerError, match="too large"):
        Card.from_bytes(bytes(MAX_CARD_BYTES + 1))


# Armor


def armor_lines() -> list[str]:
    return alice_card().armor().splitlines()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        ARMOR_BEGIN,
        ARMOR_END,
        ARMOR_END + "\n" + ARMOR_BEGIN,
        ARMOR_BEGIN + "\n" + ARMOR_BEGIN.replace("BEGIN", "END "),
    ],
    ids=repr,
)
def test_missing_armor_lines(text: str) -> None:
    with pytest.raises(PeerError, match="no rise-dtn card found"):
        Card.from_text(text)


def test_end_before_begin_uses_the_end_after_begin() -> None:
    text = ARMOR_END + "\n" + alice_card().armor()
    assert Card.from_text(text) == alice_card()


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body[:-1] + "!",  # not base64
        lambda body: body[:-1],  # bad padding
        lambda body: body + "A",  # bad padding
        lambda body: body.replace(body[10], "é", 1),  # not ASCII
        lambda body: body[:20] + "\x00" + body[20:],
        lambda body: body[:20] + "=" + body[20:],
    ],
    ids=["bang", "short", "long", "non-ascii", "nul", "inner-pad"],
)
def test_corrupt_base64(change: object) -> None:
    lines = armor_lines()
    body = "".join(lines[4:-1])
    text = "\n".join([*lines[:4], change(body), lines[-1]])  # type: ignore[operator]
    with pytest.raises(PeerError, match="bad base64"):
        Card.from_text(text)


def test_armor_of_bytes_that_are_not_a_card() -> None:
    for data in (b"", b"hello", canonical([CARD_MAGIC, CARD_VERSION])):
        text = "\n".join([ARMOR_BEGIN, base64.b64encode(data).decode(), ARMOR_END])
        with pytest.raises(PeerError):
            Card.from_text(text)


def test_armor_body_with_one_flipped_letter() -> None:
    lines = armor_lines()
    letter = "B" if lines[5][3] != "B" else "C"
    lines[5] = lines[5][:3] + letter + lines[5][4:]
    with pytest.raises(PeerError):
        Card.from_text("\n".join(lines))


def test_armor_with_a_missing_line() -> None:
    lines = armor_lines()
    del lines[5]
    with pytest.raises(PeerError):
        Card.from_text("\n".join(lines))


@pytest.mark.parametrize(
    ("header", "value"),
    [("Name", "bob"), ("Node", str(BOB.node_id)), ("Name", "alice2")],
)
def test_armor_header_that_contradicts_the_card(header: str, value: str) -> None:
    # The headers are what a person compares by eye, so a lying one is refused.
    lines = [
        f"{header}: {value}" if line.startswith(f"{header}:") else line for line in armor_lines()
    ]
    with pytest.raises(PeerError, match="does not match the card"):
        Card.from_text("\n".join(lines))


def test_card_for_another_name_is_refused_in_armor() -> None:
    fields = card_fields()
    fields[2] = "bob"
    data = encode(fields)
    text = "\n".join([ARMOR_BEGIN, "Name: bob", "", base64.b64encode(data).decode(), ARMOR_END])
    with pytest.raises(PeerError, match="bad signature"):
        Card.from_text(text)


# Names


@pytest.mark.parametrize(
    "name", ["a", "A", "0", "alice", "bob-2", "node_1.local", "a" * 64, "a..", "a.-_"]
)
def test_valid_names(name: str) -> None:
    assert check_name(name, error=UsageError) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        ".hidden",
        "-flag",
        "_x",
        "a" * 65,
        "a/b",
        "../a",
        "a\\b",
        "a b",
        "a\x00",
        "alice\n",
        "alice\r",
        "\nalice",
        "ålice",
        "alice:",
    ],
    ids=repr,
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid name"):
        check_name(name, error=UsageError)
    with pytest.raises(PeerError, match="invalid name"):
        check_name(name, error=PeerError)


def test_a_card_checked_once_is_remembered_by_its_bytes_only() -> None:
    """from_bytes remembers a checked card by its exact bytes (a route, a map, a receipt
    read the same few cards again and again); a byte changed is checked anew and refused,
    however often the genuine card was read before."""
    data = Card.create(ALICE, name="alice", now=NOW).to_bytes()
    first = Card.from_bytes(data)
    assert Card.from_bytes(bytes(data)) is first
    for index in (0, len(data) // 2, len(data) - 1):
        spoilt = bytearray(data)
        spoilt[index] ^= 1
        with pytest.raises(PeerError):
            Card.from_bytes(bytes(spoilt))
    assert Card.from_bytes(data) is first
