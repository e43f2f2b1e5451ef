"""The mail servers and the IMAP client the mailbox carrier will stand on, proved first.

Each test is a smoke test of one thing the carrier relies on, against the
real Dovecot and Postfix of tests/mailserver.py: IMAPS with the generated
CA (and refusal without it), STARTTLS, APPEND and FETCH, SMTP submission
delivered by LMTP, IDLE, a quota that refuses an APPEND, the codec's mails
through both paths, and connections cut mid-FETCH and mid-APPEND by
tests/cutproxy.py. Every test
works in a folder of its own (or finds its mail by Message-ID), so the
session's servers can be shared.
"""

from __future__ import annotations

import contextlib
import email.message
import email.policy
import io
import os
import smtplib
import ssl
import time
import uuid
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from rise_dtn.core.mailpart import MailKeys, MailStyle, encode, is_ours
from rise_dtn.core.mailreader import Assembly, MailReader, read_part
from tests.cutproxy import CutProxy, cut_proxy
from tests.mailserver import HOST, QUOTA_BYTES, QUOTA_USER, Dovecot, MailUser, Postfix

# Dovecot tells an idling client about new mail about 0.5 s after it lands;
# the deadline only bounds a notification that never comes.
IDLE_DEADLINE_SECONDS = 10.0
DELIVERY_DEADLINE_SECONDS = 30.0  # Postfix queue -> LMTP -> Dovecot on a loaded machine
CLIENT_TIMEOUT_SECONDS = 30.0


def connect(dovecot: Dovecot, user: MailUser) -> IMAPClient:
    client = IMAPClient(
        HOST,
        port=dovecot.imaps_port,
        ssl=True,
        ssl_context=dovecot.ssl_context(),
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    client.login(user.address, user.password)
    return client


@pytest.fixture
def alice(dovecot: Dovecot) -> Iterator[IMAPClient]:
    client = connect(dovecot, dovecot.users["alice"])
    yield client
    client.logout()


def fresh_folder(client: IMAPClient) -> str:
    folder = f"test-{uuid.uuid4().hex[:12]}"
    client.create_folder(folder)
    return folder


def message(subject: str, body: bytes = b"hello\r\n", sender: str = "", to: str = "") -> bytes:
    mail = email.message.EmailMessage()
    mail["Subject"] = subject
    mail["From"] = sender or "someone@example.test"
    mail["To"] = to or "someone@example.test"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    mail.set_content(body, maintype="application", subtype="octet-stream")
    return mail.as_bytes(policy=email.policy.SMTP)


def test_append_then_fetch_over_imaps(alice: IMAPClient) -> None:
    folder = fresh_folder(alice)
    sent = message("notes", b"\x00\x01 some bytes \xff" * 100)
    alice.append(folder, sent)
    alice.select_folder(folder)
    (uid,) = alice.search(["ALL"])
    fetched = alice.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
    assert fetched == sent


def test_imap_starttls_with_the_ca(dovecot: Dovecot) -> None:
    client = IMAPClient(HOST, port=dovecot.imap_port, ssl=False, timeout=CLIENT_TIMEOUT_SECONDS)
    client.starttls(dovecot.ssl_context())
    user = dovecot.users["bob"]
    client.login(user.address, user.password)
    assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] >= 0
    client.logout()


def test_server_refused_without_its_ca(dovecot: Dovecot) -> None:
    """The default trust store does not know the test CA: a one-line verification error."""
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        IMAPClient(
            HOST,
            port=dovecot.imaps_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    line = str(refused.value)
    assert "certificate verify failed" in line
    assert "\n" not in line


def test_wrong_password_is_one_line(dovecot: Dovecot) -> None:
    user = dovecot.users["alice"]
    client = IMAPClient(
        HOST,
        port=dovecot.imaps_port,
        ssl=True,
        ssl_context=dovecot.ssl_context(),
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    with pytest.raises(LoginError) as refused:
        client.login(user.address, user.password + "x")
    assert "\n" not in str(refused.value)
    assert user.password not in str(refused.value)
    client.shutdown()


def test_smtp_submission_lands_in_the_inbox(dovecot: Dovecot, postfix: Postfix) -> None:
    alice, bob = dovecot.users["alice"], dovecot.users["bob"]
    sent = message("hello bob", sender=alice.address, to=bob.address)
    message_id = email.message_from_bytes(sent)["Message-ID"]
    with smtplib.SMTP(HOST, postfix.submission_port, timeout=CLIENT_TIMEOUT_SECONDS) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # no AUTH before TLS
        smtp.starttls(context=dovecot.ssl_context())
        smtp.ehlo()
        smtp.login(alice.address, alice.password)
        smtp.sendmail(alice.address, [bob.address], sent)
    client = connect(dovecot, bob)
    try:
        client.select_folder("INBOX", readonly=True)
        deadline = time.monotonic() + DELIVERY_DEADLINE_SECONDS
        found: list[int] = []
        while not found:
            # A poll with a deadline: delivery goes through Postfix's queue.
            found = client.search(["HEADER", "Message-ID", message_id])
            if not found:
                assert time.monotonic() < deadline, "the submitted mail never reached the INBOX"
                time.sleep(0.1)
                client.noop()
        fetched = client.fetch(found, ["BODY.PEEK[TEXT]"])[found[0]][b"BODY[TEXT]"]
        assert fetched.strip() == email.message_from_bytes(sent).get_payload().encode().strip()
    finally:
        client.logout()


def test_smtp_refuses_unauthenticated_relay(dovecot: Dovecot, postfix: Postfix) -> None:
    bob = dovecot.users["bob"]
    with smtplib.SMTP(HOST, postfix.submission_port, timeout=CLIENT_TIMEOUT_SECONDS) as smtp:
        smtp.starttls(context=dovecot.ssl_context())
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("stranger@elsewhere.test", [bob.address], message("spam"))


def test_idle_notifies_a_new_message(dovecot: Dovecot, alice: IMAPClient) -> None:
    folder = fresh_folder(alice)
    watcher = connect(dovecot, dovecot.users["alice"])
    try:
        watcher.select_folder(folder)
        watcher.idle()
        started = time.monotonic()
        alice.append(folder, message("while idling"))
        responses: list[tuple[object, ...]] = []
        while not any(b"EXISTS" in response for response in responses):
            remaining = IDLE_DEADLINE_SECONDS - (time.monotonic() - started)
            assert remaining > 0, "IDLE never reported the new message"
            responses += watcher.idle_check(timeout=remaining)
        watcher.idle_done()
    finally:
        watcher.logout()


def test_quota_refuses_an_append(dovecot: Dovecot) -> None:
    client = connect(dovecot, dovecot.users[QUOTA_USER])
    try:
        folder = fresh_folder(client)
        with pytest.raises(IMAPClientError, match=r"(?i)quota"):
            client.append(folder, message("too big", b"x" * (2 * QUOTA_BYTES)))
        client.append(folder, message("small"))  # room is still there for what fits
    finally:
        client.logout()


def test_codec_mail_survives_append_and_submission(dovecot: Dovecot, postfix: Postfix) -> None:
    """rise_dtn/core/mailpart.py's mails, through real servers, read back byte for byte:
    what servers add on the way (Received, Return-Path, Delivered-To) must not matter."""
    alice, bob = dovecot.users["alice"], dovecot.users["bob"]
    keys = MailKeys.derive(bytes(range(32)))
    bundle = bytes(range(256)) * 1000
    mails = list(
        (mail.message_id, b"".join(mail.chunks))
        for mail in encode(
            io.BytesIO(bundle), len(bundle), keys=keys, style=MailStyle(part_bytes=70_000),
            sender=alice.address, recipient=bob.address, now=int(time.time()),
            random_bytes=os.urandom,
        )
    )  # fmt: skip
    assert len(mails) == 4
    appender = connect(dovecot, bob)
    try:
        for _message_id, raw in mails[:2]:
            appender.append("INBOX", raw)
    finally:
        appender.logout()
    with smtplib.SMTP(HOST, postfix.submission_port, timeout=CLIENT_TIMEOUT_SECONDS) as smtp:
        smtp.starttls(context=dovecot.ssl_context())
        smtp.login(alice.address, alice.password)
        for _message_id, raw in mails[2:]:
            smtp.sendmail(alice.address, [bob.address], raw)
    client = connect(dovecot, bob)
    try:
        client.select_folder("INBOX", readonly=True)
        sink = io.BytesIO()
        assembly: Assembly | None = None
        deadline = time.monotonic() + DELIVERY_DEADLINE_SECONDS
        for message_id, _raw in mails:
            while not (found := client.search(["HEADER", "Message-ID", message_id])):
                assert time.monotonic() < deadline, "a submitted mail never arrived"
                time.sleep(0.1)  # a poll with a deadline: delivery goes through Postfix's queue
                client.noop()
            headers = client.fetch(found, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            field = headers[found[0]][b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode()
            assert is_ours(field.partition(":")[2], keys)
            raw = client.fetch(found, ["BODY.PEEK[]"])[found[0]][b"BODY[]"]
            header = read_part([raw], keys, sink)
            assembly = assembly or Assembly(header)
            assembly.add(header)
        assert assembly is not None and assembly.complete
        assert sink.getvalue() == bundle
    finally:
        client.logout()


def test_partial_fetch_streams_a_mail_through_the_reader(alice: IMAPClient) -> None:
    """The pull side in constant memory: FETCH BODY.PEEK[]<offset.length> in slices,
    each fed to the reader, never the whole mail in memory at once."""
    keys = MailKeys.derive(bytes(range(32)))
    bundle = os.urandom(600_000)
    mail = next(
        encode(
            io.BytesIO(bundle), len(bundle), keys=keys, style=MailStyle(), sender="a@example.test",
            recipient="b@example.test", now=int(time.time()), random_bytes=os.urandom,
        )
    )  # fmt: skip
    folder = fresh_folder(alice)
    alice.append(folder, b"".join(mail.chunks))
    alice.select_folder(folder, readonly=True)
    (uid,) = alice.search(["ALL"])
    size = alice.fetch([uid], ["RFC822.SIZE"])[uid][b"RFC822.SIZE"]
    assert size == mail.size_bytes
    reader, slice_bytes, out = MailReader(keys), 64 * 1024, io.BytesIO()
    for offset in range(0, size, slice_bytes):
        item = f"BODY.PEEK[]<{offset}.{slice_bytes}>"
        data = alice.fetch([uid], [item])[uid][f"BODY[]<{offset}>".encode()]
        out.write(reader.feed(data))
    assert reader.finish() == mail.header
    assert out.getvalue() == bundle


# Well past the TLS handshake, login and SELECT (a few KiB), well inside the mail.
CUT_AT_BYTES = 100_000
BIG_MAIL_BYTES = 300_000


def proxied(dovecot: Dovecot, proxy: CutProxy) -> IMAPClient:
    user = dovecot.users["alice"]
    client = IMAPClient(
        HOST, port=proxy.port, ssl=True, ssl_context=dovecot.ssl_context(),
        timeout=CLIENT_TIMEOUT_SECONDS,
    )  # fmt: skip
    client.login(user.address, user.password)
    return client


def test_a_fetch_cut_mid_mail_loses_nothing(dovecot: Dovecot, alice: IMAPClient) -> None:
    folder = fresh_folder(alice)
    sent = message("big", os.urandom(BIG_MAIL_BYTES))
    alice.append(folder, sent)
    with cut_proxy(dovecot.imaps_port) as proxy:
        proxy.cut.downstream_bytes = CUT_AT_BYTES
        client = proxied(dovecot, proxy)
        client.select_folder(folder, readonly=True)
        (uid,) = client.search(["ALL"])
        with pytest.raises((IMAPClientAbortError, OSError)):
            client.fetch([uid], ["BODY.PEEK[]"])
        assert proxy.cuts_made == 1
        with contextlib.suppress(OSError):
            client.shutdown()
    alice.select_folder(folder, readonly=True)
    fetched = alice.fetch([uid], ["BODY.PEEK[]", "FLAGS"])[uid]
    assert fetched[b"BODY[]"] == sent
    assert b"\\Seen" not in fetched[b"FLAGS"]


def test_an_append_cut_mid_mail_leaves_no_partial_mail(dovecot: Dovecot, alice: IMAPClient) -> None:
    folder = fresh_folder(alice)
    with cut_proxy(dovecot.imaps_port) as proxy:
        proxy.cut.upstream_bytes = CUT_AT_BYTES
        client = proxied(dovecot, proxy)
        with pytest.raises((IMAPClientAbortError, OSError)):
            client.append(folder, message("big", os.urandom(BIG_MAIL_BYTES)))
        assert proxy.cuts_made == 1
        with contextlib.suppress(OSError):
            client.shutdown()
    # Dovecot saves an APPEND only once its whole literal has arrived: never here.
    assert alice.select_folder(folder, readonly=True)[b"EXISTS"] == 0
