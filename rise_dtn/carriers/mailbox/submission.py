"""Sending mails by SMTP submission (RFC 6409) to the neighbour's own address.

For neighbours who each read their own mailbox: we mail into theirs by
submission to our provider, as any mail client does, instead of APPENDing
into a mailbox we share. TLS is required and verified as for IMAP
(connection.py): `smtps://` is implicit TLS (port 465), `smtp://` requires
STARTTLS (port 587); AUTH uses the mailbox's user and password. Failures
leave as one-line PeerErrors; a refusal for size or quota as MailboxFull.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl

from rise_dtn.carriers.mailbox.connection import MailboxFull, check_pin, one_line, tls_context
from rise_dtn.carriers.mailbox.settings import Settings
from rise_dtn.core.errors import PeerError

# 452/552: insufficient storage, or over the recipient's quota or size limit (RFC 5321).
ROOM_CODES = (452, 552)


class Submission:
    """One logged-in SMTP submission session (use `open_submission`)."""

    def __init__(self, smtp: smtplib.SMTP, settings: Settings) -> None:
        self.smtp = smtp
        self.settings = settings
        assert settings.smtp is not None
        self.where = f"{settings.smtp.host}:{settings.smtp.port}"

    def send(self, raw: bytes, *, recipient: str) -> None:
        try:
            refused = self.smtp.sendmail(self.settings.sender, [recipient], raw)
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            reason = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
            text = f"{exc.smtp_code} {reason}"
            if exc.smtp_code in ROOM_CODES:
                raise MailboxFull(f"{self.where} refused a mail: {one_line_text(text)}") from None
            raise PeerError(f"{self.where}: sending a mail failed: {one_line_text(text)}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PeerError(f"{self.where} refused the recipient {recipient}: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise PeerError(f"{self.where}: sending a mail failed: {one_line(exc)}") from None
        if refused:
            raise PeerError(f"{self.where} refused the recipient {recipient}")

    def close(self) -> None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self.smtp.quit()
        with contextlib.suppress(OSError):
            self.smtp.close()


def open_submission(settings: Settings, password: str) -> Submission:
    server = settings.smtp
    assert server is not None
    where = f"{server.host}:{server.port}"
    context = tls_context(settings)
    smtp: smtplib.SMTP
    try:
        if server.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=settings.timeout_seconds, context=context
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=settings.timeout_seconds)
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                smtp.close()
                raise PeerError(f"{where} offers no STARTTLS: refusing to log in in the clear")
            smtp.starttls(context=context)
            smtp.ehlo()
    except ssl.SSLCertVerificationError as exc:
        raise PeerError(
            f"{where}: the server's certificate did not verify ({exc.verify_message}); "
            "for a self-signed server set [mailbox] ca_file or fingerprint"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise PeerError(f"cannot reach the submission server at {where}: {one_line(exc)}") from None
    if settings.fingerprint is not None:
        sock = smtp.sock
        try:
            check_pin(sock, settings.fingerprint, where)
        except PeerError:
            smtp.close()
            raise
    try:
        smtp.login(settings.user, password)
    except smtplib.SMTPAuthenticationError:
        smtp.close()
        raise PeerError(
            f"{where} refused the login of {settings.user} (check the password)"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise PeerError(f"{where}: logging in failed: {one_line(exc)}") from None
    return Submission(smtp, settings)


def one_line_text(text: str) -> str:
    lines = text.strip().splitlines()
    return " ".join(line.strip() for line in lines)[:300] if lines else "no reason given"
