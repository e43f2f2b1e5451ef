"""One logged-in IMAP connection to a mailbox, through IMAPClient, with one-line errors.

TLS is always on and verified: against the system's trust store, a
configured CA file, or a pinned SHA-256 fingerprint of the server's
certificate, checked before the password is sent. imap:// addresses
require STARTTLS; there is no plaintext mode.

It only ever reads other people's mail with BODY.PEEK (never setting
\\Seen), and removes only the mails it names, by UID EXPUNGE (a plain
EXPUNGE would also remove mails another client marked \\Deleted). Every
failure leaves here as a PeerError or UsageError with one line that never
holds the password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import imaplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import NoReturn

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from rise_dtn.carriers.mailbox.settings import Settings
from rise_dtn.core.errors import PeerError, RiseError

# A mail is pulled in slices: memory stays bounded by this. Each FETCH costs imaplib a
# round trip and a copy of its literal; 4 MiB keeps that to 7 commands a 25 MB mail.
FETCH_SLICE_BYTES = 4 << 20
IDLE_CHECK_SECONDS = 1.0  # how soon a watch notices it was told to stop
SCAN_BATCH = 500  # UIDs per FETCH of Message-IDs: a mailbox of 100,000 mails is 200 commands
_QUOTA_WORDS = ("quota", "overquota", "limit", "too big", "too large")


class MailboxFull(PeerError):
    """The server refused an APPEND for room (over quota, or a mail over its size limit)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Mail:
    """A mail in the folder as the scan saw it: only its UID, Message-ID and size."""

    uid: int
    message_id: str
    size: int


class Mailbox:
    """A selected folder on a logged-in connection (use `open_mailbox`)."""

    def __init__(self, client: IMAPClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.writable = False  # EXAMINEd until a deletion needs SELECT
        self.uid_validity = 0  # the folder's UIDVALIDITY: UIDs mean the same while it holds
        self.highest_uid = 0  # the highest UID the last scan saw

    @property
    def where(self) -> str:
        return str(self.settings.place)

    def scan(self, *, after: int = 0, known: dict[int, Mail] | None = None) -> list[Mail]:
        """Every mail not marked deleted, by UID, with its Message-ID (headers alone, peeked).

        Headers are fetched only for UIDs above `after` (the highest an earlier pass
        classified, in this UIDVALIDITY): at or below it, only the mails in `known`
        (those that were ours) are listed, so a pass over a mailbox of thousands of
        other mails fetches nothing of them again. UIDs only grow for new mail.
        """
        known = known or {}
        with self.failures("listing the mails"):
            uids = sorted(self.client.search(["NOT", "DELETED"]))
            found = [known[uid] for uid in uids if uid <= after and uid in known]
            fresh = [uid for uid in uids if uid > after]
            for start in range(0, len(fresh), SCAN_BATCH):
                batch = fresh[start : start + SCAN_BATCH]
                items = ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]", "RFC822.SIZE"]
                fetched = self.client.fetch(batch, items)
                for uid in batch:
                    data = fetched.get(uid, {})
                    header = data.get(b"BODY[HEADER.FIELDS (MESSAGE-ID)]", b"") or b""
                    size = data.get(b"RFC822.SIZE", 0)
                    found.append(Mail(uid, _message_id(header), int(size or 0)))
        self.highest_uid = max(uids, default=after)
        return found

    def read(self, mail: Mail) -> Iterator[bytes]:
        """The raw mail in slices (BODY.PEEK: never marks it \\Seen); stops early if it shrank."""
        offset = 0
        while offset < mail.size:
            item = f"BODY.PEEK[]<{offset}.{FETCH_SLICE_BYTES}>"
            with self.failures("reading a mail"):
                fetched = self.client.fetch([mail.uid], [item]).get(mail.uid, {})
            data = fetched.get(f"BODY[]<{offset}>".encode())
            if not data:
                return  # gone, or shorter than it said: the reader reports it truncated
            offset += len(data)
            yield bytes(data)

    def append(self, raw: bytes) -> None:
        """APPEND one mail (no flags). Where the server offers MULTIAPPEND, in RFC 3502's
        form with one mail: IMAPClient sends it as it is, where its `append` goes through
        imaplib, which first rewrites every line end with a regular expression (a
        quarter of a second per 25 MB; ours are all CRLF already). That form returns
        the server's answer instead of raising on NO, so it is checked here."""
        folder = self.settings.place.folder
        try:
            if self.client.has_capability("MULTIAPPEND"):
                status, data = self.client.multiappend(folder, [raw])
                if _text(status).upper() != "OK":
                    self._refused(" ".join(_text(item) for item in data) or _text(status))
            else:
                self.client.append(folder, raw)
        except IMAPClientError as exc:
            self._refused(one_line(exc))
        except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error) as exc:
            self._raise(exc, "appending a mail")

    def _refused(self, text: str) -> NoReturn:
        line = " ".join(text.split())[:300]
        if any(word in line.lower() for word in _QUOTA_WORDS):
            raise MailboxFull(f"{self.where} refused a mail: {line}") from None
        raise PeerError(f"{self.where}: appending a mail failed: {line}") from None

    def take_away(self, uids: list[int]) -> None:
        """Mails whose bundle is stored: deleted, or first copied into [mailbox] move_to
        (for people who want to keep a record; created if missing)."""
        target = self.settings.move_to
        if uids and target:
            with self.failures(f"moving mails to {target}"):
                ensure_folder(self.client, target)
                self.client.copy(uids, target)
        self.delete(uids)

    def delete(self, uids: list[int]) -> None:
        """Remove exactly these mails (flag \\Deleted, then UID EXPUNGE where the server can)."""
        if not uids:
            return
        with self.failures("deleting mails"):
            if not self.writable:
                self.client.select_folder(self.settings.place.folder)
                self.writable = True
            self.client.add_flags(uids, [b"\\Deleted"], silent=True)
            # Asked after login: servers list UIDPLUS only then. Without it the mails
            # stay flagged (the scan skips them) rather than expunge anyone else's.
            if self.client.has_capability("UIDPLUS"):
                self.client.uid_expunge(uids)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """IDLE until new mail (EXISTS), `stop`, or `seconds` (then IDLE is re-issued by the
        caller, before the server's time-out); True if new mail came.

        IMAPClient's idle_check swallows an end of file: a check that comes back
        empty before its time-out may be a dead connection, so IDLE is ended
        and a NOOP asked, which raises (a PeerError) if the connection is gone.
        """
        deadline = time.monotonic() + seconds
        with self.failures("waiting for mail"):
            self.client.idle()
            idling = True
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    started = time.monotonic()
                    responses = self.client.idle_check(timeout=IDLE_CHECK_SECONDS)
                    if any(b"EXISTS" in response for response in responses):
                        return True
                    if not responses and time.monotonic() - started < IDLE_CHECK_SECONDS / 2:
                        idling = False
                        self.client.idle_done()
                        _status, untagged = self.client.noop()
                        if any(b"EXISTS" in response for response in untagged):
                            return True
                        self.client.idle()
                        idling = True
            finally:
                if idling:
                    self.client.idle_done()
        return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.logout()
        with contextlib.suppress(Exception):
            self.client.shutdown()

    @contextlib.contextmanager
    def failures(self, doing: str) -> Iterator[None]:
        try:
            yield
        except RiseError:
            raise
        except (IMAPClientError, OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error) as exc:
            self._raise(exc, doing)

    def _raise(self, exc: BaseException, doing: str) -> NoReturn:
        raise PeerError(f"{self.where}: {doing} failed: {one_line(exc)}") from None


def open_mailbox(settings: Settings) -> Mailbox:
    """Connect, verify the server, log in and select the folder (creating it if missing)."""
    place = settings.place
    where = f"{place.host}:{place.port}"
    password = settings.password()  # a missing password is found before any connection
    client = _connect(settings, where)
    mailbox = Mailbox(client, settings)
    try:
        try:
            client.login(settings.user, password)
        except LoginError:
            raise PeerError(
                f"{where} refused the login of {settings.user} (check the password)"
            ) from None
        with mailbox.failures(f"opening folder {place.folder}"):
            ensure_folder(client, place.folder)
            # EXAMINE, read-only: a SELECT would take the \Recent flag of other people's
            # new mail for this session. Only a deletion of ours SELECTs (delete()).
            selected = client.select_folder(place.folder, readonly=True)
            mailbox.uid_validity = int(selected.get(b"UIDVALIDITY", 0) or 0)
    except BaseException:
        mailbox.close()
        raise
    return mailbox


def ensure_folder(client: IMAPClient, folder: str) -> None:
    """Create `folder` if it is missing. Another connection (the watch's IDLE, the
    neighbour's pass on a shared folder) may create it between the check and the
    CREATE: a refused CREATE of a folder that exists now is what was wanted."""
    if client.folder_exists(folder):
        return
    try:
        client.create_folder(folder)
    except IMAPClientError:
        if not client.folder_exists(folder):
            raise


def _connect(settings: Settings, where: str) -> IMAPClient:
    place = settings.place
    context = tls_context(settings)
    try:
        client = IMAPClient(
            place.host,
            port=place.port,
            ssl=place.implicit_tls,
            ssl_context=context,
            timeout=settings.timeout_seconds,
        )
        if not place.implicit_tls:
            if not client.has_capability("STARTTLS"):
                client.shutdown()
                raise PeerError(f"{where} offers no STARTTLS: refusing to log in in the clear")
            client.starttls(context)
    except ssl.SSLCertVerificationError as exc:
        raise PeerError(
            f"{where}: the server's certificate did not verify ({exc.verify_message}); "
            "for a self-signed server set [mailbox] ca_file or fingerprint"
        ) from None
    except (ssl.SSLError, OSError, IMAPClientError, imaplib.IMAP4.error) as exc:
        raise PeerError(f"cannot reach the mailbox at {where}: {one_line(exc)}") from None
    if settings.fingerprint is not None:
        try:
            check_pin(client.socket(), settings.fingerprint, where)
        except PeerError:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
    return client


def tls_context(settings: Settings) -> ssl.SSLContext:
    if settings.fingerprint is not None:
        # The pin is the trust: any certificate with exactly that hash, whoever signed it.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise PeerError(f"[mailbox] ca_file {cafile}: {one_line(exc)}") from None


def check_pin(sock: object, pinned: bytes, where: str) -> None:
    """PeerError unless the TLS socket's certificate has the pinned SHA-256."""
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    if der is None or not hmac.compare_digest(hashlib.sha256(der).digest(), pinned):
        shown = hashlib.sha256(der).hexdigest() if der else "none"
        raise PeerError(
            f"{where}: the server's certificate is not the pinned one (its SHA-256 is {shown})"
        )


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _message_id(header: bytes) -> str:
    """The Message-ID of a fetched `Message-ID:` header field ("" if none)."""
    text = header.decode("ascii", errors="replace")
    name, _colon, value = text.partition(":")
    if name.strip().lower() != "message-id":
        return ""
    return " ".join(value.split())


def one_line(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
