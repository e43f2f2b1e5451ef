"""The mailbox carrier's tests run against real servers: tests/mailserver.py."""

from tests.mailserver import dovecot, postfix  # noqa: F401 - fixtures for the mailbox tests
