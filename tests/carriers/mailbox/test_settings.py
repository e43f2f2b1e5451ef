"""Mailbox addresses and [mailbox] settings: what parses, and one-line refusals for the rest."""

from __future__ import annotations

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
    ],
)
def test_bad_settings_are_one_line(table: dict[str, object], wanted: str) -> None:
    place = place_of(Address("imaps", "me@example.org@mail.example.org"))
    with pytest.raises(UsageError, match=wanted) as refused:
        settings_for(table, place, "bob")
    assert "\n" not in refused.value.message


def test_a_neighbours_table_overrides_the_defaults() -> None:
    place = place_of(Address("imaps", "me@example.org@mail.example.org"))
    table = {"subject": "Scans", "bob": {"subject": "Photos", "user": "other@example.org"}}
    assert settings_for(table, place, "bob").style.subject == "Photos"
    assert settings_for(table, place, "bob").user == "other@example.org"
    assert settings_for(table, place, "carol").style.subject == "Scans"
    assert settings_for(table, place, "carol").sender == "me@example.org"
