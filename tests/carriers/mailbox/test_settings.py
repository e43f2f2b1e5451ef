"""Mailbox addresses and [mailbox] settings: what parses, and one-line refusals for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rise_dtn.carriers.address import Address
from rise_dtn.carriers.mailbox.settings import place_of, settings_for
from rise_dtn.core.errors import UsageError


def test_the_forms_of_an_address() -> None:
    place = place_of(Address("imaps", "alice%40example.org@mail.example.org/Drafts"))
    assert (place.user, place.host, place.port, place.folder) == (
        "alice@example.org", "mail.example.org", 993, "Drafts",
    )  # fmt: skip
    place = place_of(Address("imap", "alice@example.org@[::1]:1143"))
    assert (place.implicit_tls, place.user, place.host, place.port, place.folder) == (
        False, "alice@example.org", "::1", 1143, "INBOX",
    )  # fmt: skip


@given(st.text(max_size=80), st.sampled_from(["imap", "imaps"]))
def test_any_target_parses_or_is_a_one_line_usage_error(target: str, scheme: str) -> None:
    try:
        place = place_of(Address(scheme, target))
    except UsageError as exc:
        assert "\n" not in exc.message
        return
    assert place.host and 1 <= place.port < 65536 and place.folder


@pytest.mark.parametrize(
    ("table", "wanted"),
    [
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"fingerprint": "abc"}, "not a SHA-256 fingerprint"),
        ({"smtp": "smtp://h:25"}, "smtp and to go together"),
        ({"smtp": "ftp://h", "to": "b@h"}, "smtp: use smtps://"),
        ({"max_message_bytes": "1K"}, "out of range"),
        ({"subject": "two\nlines"}, "printable"),
        ({"user": 5}, r"^\[mailbox\] user: must be a string, not 5$"),
    ],
)
def test_bad_settings_are_one_line(table: dict[str, object], wanted: str) -> None:
    place = place_of(Address("imaps", "me@example.org@mail.example.org"))
    with pytest.raises(UsageError, match=wanted) as refused:
        settings_for(table, place, "bob")
    assert "\n" not in refused.value.message


def test_an_unknown_key_names_its_table_and_the_nearest_known_one() -> None:
    place = place_of(Address("imaps", "me@example.org@mail.example.org"))
    for table, message in [
        (
            {"fingerprnt": "ab"},
            "unknown key 'fingerprnt' in [mailbox], did you mean 'fingerprint'?",
        ),
        (
            {"bob": {"subjet": "x"}},
            "unknown key 'subjet' in [mailbox.bob], did you mean 'subject'?",
        ),
        ({"colour": "blue"}, "unknown key 'colour' in [mailbox]"),
    ]:
        with pytest.raises(UsageError) as refused:
            settings_for(table, place, "bob")
        assert refused.value.message == f"{message} (see rise-config(5))"
    assert settings_for({"carol": {"subjet": "x"}}, place, "bob")  # carol's table: not bob's


def test_a_neighbours_table_overrides_the_defaults() -> None:
    place = place_of(Address("imaps", "me@example.org@mail.example.org"))
    table = {"subject": "Scans", "bob": {"subject": "Photos", "user": "other@example.org"}}
    assert settings_for(table, place, "bob").style.subject == "Photos"
    assert settings_for(table, place, "bob").user == "other@example.org"
    assert settings_for(table, place, "carol").style.subject == "Scans"
    assert settings_for(table, place, "carol").sender == "me@example.org"


def test_pair_keys_follow_protocol_24_7(tmp_path: Path) -> None:
    """Both ends derive the same key per direction, the two directions differ, and the
    value is the spec's formula, computed here with another X25519 (cryptography's)."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    from rise_dtn.carriers.mailbox.exchange import pair_key
    from tests.carriers.contract import network, peer_of

    net = network(tmp_path)
    alice_sees_bob, bob_sees_alice = peer_of(net.alice, net.bob), peer_of(net.bob, net.alice)
    assert alice_sees_bob is not None and bob_sees_alice is not None
    a, b = net.alice.identity, net.bob.identity
    forward = pair_key(a, alice_sees_bob, sender=a.node_id, recipient=b.node_id)
    assert forward == pair_key(b, bob_sees_alice, sender=a.node_id, recipient=b.node_id)
    assert forward != pair_key(a, alice_sees_bob, sender=b.node_id, recipient=a.node_id)
    shared = X25519PrivateKey.from_private_bytes(a.exchange_secret).exchange(
        X25519PublicKey.from_public_bytes(b.public.exchange_public)
    )
    expected = hashlib.blake2b(
        a.node_id.raw + b.node_id.raw, digest_size=32, key=shared, person=b"rise-mail-pair"
    ).digest()
    assert forward == expected
