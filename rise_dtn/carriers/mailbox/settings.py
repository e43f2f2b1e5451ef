"""Where a mailbox is and how to log in: the address, the [mailbox] tables, the password.

    imaps://[USER@]HOST[:PORT][/FOLDER]   IMAP over TLS (port 993 by default)
    imap://[USER@]HOST[:PORT][/FOLDER]    IMAP with STARTTLS, required (port 143)

USER may be a whole address (`alice@example.org@mail.example.org` or
`alice%40example.org@mail.example.org`); FOLDER defaults to INBOX. The rest
comes from config.toml: `[mailbox]` holds the defaults, `[mailbox.NAME]`
what differs for neighbour NAME (rise-config(5)). The password is read
from a file only its owner can read, or from an environment variable;
never from the command line or the address, and it is never logged or put
in an error message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from rise_dtn.carriers.address import Address
from rise_dtn.core.errors import UsageError
from rise_dtn.core.mailpart import DEFAULT_MAX_MESSAGE_BYTES, MailStyle
from rise_dtn.node.config import as_written, parse_duration, parse_size, unknown_key

DEFAULT_STYLE = MailStyle()
IMAPS_PORT = 993
IMAP_PORT = 143
SMTPS_PORT = 465
SUBMISSION_PORT = 587
DEFAULT_FOLDER = "INBOX"
# A bundle whose mails were all taken but whose ack never came is mailed
# again after this long: the receiver's toss may have refused a damaged
# copy, or someone else deleted the mails. Long enough that a receiver that
# pulls a few times a day acks first; a duplicate costs only bandwidth.
DEFAULT_RESEND_SECONDS = 6 * 3600
# RFC 2177: a server may drop an IDLE client after 30 minutes; re-issue well before.
DEFAULT_IDLE_SECONDS = 24 * 60
DEFAULT_TIMEOUT_SECONDS = 60.0  # one socket read or write; a 25 MB APPEND is many of them
_FINGERPRINT = re.compile(r"^(?:sha256:)?((?:[0-9a-f]{2}:?){31}[0-9a-f]{2})$", re.IGNORECASE)
KEYS = {
    "user",
    "password_file",
    "password_env",
    "ca_file",
    "fingerprint",
    "from",
    "subject",
    "filename",
    "text",
    "max_message_bytes",
    "part_bytes",
    "resend",
    "idle",
    "timeout",
    "smtp",
    "to",
    "move_to",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Place:
    """The parts of a mailbox address."""

    implicit_tls: bool
    user: str
    host: str
    port: int
    folder: str

    def __str__(self) -> str:
        scheme = "imaps" if self.implicit_tls else "imap"
        user = urllib.parse.quote(self.user, safe="") + "@" if self.user else ""
        return f"{scheme}://{user}{self.host}:{self.port}/{self.folder}"


@dataclasses.dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where to submit mail: smtps://HOST[:PORT] (TLS, 465), smtp://HOST[:PORT] (STARTTLS, 587)."""

    implicit_tls: bool
    host: str
    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything one exchange with one mailbox needs (the password is read when used)."""

    place: Place
    user: str
    password_file: Path | None
    password_env: str | None
    ca_file: Path | None
    fingerprint: bytes | None  # SHA-256 of the server's certificate, pinned
    sender: str  # the From: address, and the domain of the Message-IDs
    style: MailStyle
    resend_seconds: int = DEFAULT_RESEND_SECONDS
    idle_seconds: int = DEFAULT_IDLE_SECONDS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    smtp: SmtpServer | None = None  # set: mails go by submission to `to`, not by APPEND
    to: str | None = None
    move_to: str | None = None  # a folder that keeps the mails taken (else they are deleted)

    def password(self) -> str:
        """The password, from the 0600 file or the environment variable (one-line errors)."""
        if self.password_file is not None:
            return _read_password_file(self.password_file)
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise UsageError(f"[mailbox] password_env: ${self.password_env} is not set")
            return value
        raise UsageError(
            f"no password for {self.place}: set [mailbox] password_file (mode 0600) "
            "or password_env in config.toml"
        )


def place_of(address: Address) -> Place:
    """Parse `imaps://[USER@]HOST[:PORT][/FOLDER]` (or imap://); UsageError if malformed."""
    if address.scheme not in ("imap", "imaps"):
        raise UsageError(f"not a mailbox address: {str(address)!r}")
    where, _slash, folder = address.target.partition("/")
    user, _at, hostport = where.rpartition("@")
    host, port_text = hostport, ""
    if hostport.startswith("["):
        host, _bracket, rest = hostport[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":")
    implicit = address.scheme == "imaps"
    usage = f"not an address: {str(address)!r} (use {address.scheme}://USER@HOST[:PORT][/FOLDER])"
    try:
        port = int(port_text) if port_text else (IMAPS_PORT if implicit else IMAP_PORT)
    except ValueError:
        raise UsageError(usage) from None
    plain = host.isprintable() and not any(char.isspace() for char in host)
    if not host or host.startswith("-") or not 1 <= port < 65536 or not plain:
        raise UsageError(usage)
    folder = urllib.parse.unquote(folder.rstrip("/")) or DEFAULT_FOLDER
    if not folder.isprintable():
        raise UsageError(usage)
    return Place(implicit, urllib.parse.unquote(user), host, port, folder)


def settings_for(table: dict[str, Any], place: Place, peer_name: str) -> Settings:
    """The [mailbox] defaults with [mailbox.PEER_NAME] over them, for `place`."""
    own = table.get(peer_name, {})
    if not isinstance(own, dict):
        own = {}
    merged = {key: value for key, value in table.items() if not isinstance(value, dict)}
    _check_keys(merged, "[mailbox]")
    _check_keys(own, f"[mailbox.{peer_name}]")
    merged.update(own)
    section = f"mailbox.{peer_name}" if peer_name in table else "mailbox"
    user = _text(merged, section, "user") or place.user
    if not user:
        raise UsageError(
            f"no user for {place}: put it in the address (USER@HOST) or [mailbox] user"
        )
    sender = _text(merged, section, "from") or (user if "@" in user else f"{user}@{place.host}")
    max_message = _size(merged, section, "max_message_bytes")
    part_bytes = _size(merged, section, "part_bytes")
    try:
        style = MailStyle(
            subject=_text(merged, section, "subject") or DEFAULT_STYLE.subject,
            filename=_text(merged, section, "filename") or DEFAULT_STYLE.filename,
            text=_text(merged, section, "text") or "",
            max_message_bytes=max_message or DEFAULT_MAX_MESSAGE_BYTES,
            part_bytes=part_bytes,
        )
        style.bundle_bytes_per_part()
    except UsageError as exc:
        raise UsageError(f"[{section}] {exc.message}") from None
    smtp = _smtp(merged, section)
    to = _text(merged, section, "to")
    if (smtp is None) != (to is None):
        raise UsageError(
            f"[{section}] smtp and to go together (submission to the neighbour's address)"
        )
    move_to = _text(merged, section, "move_to")
    if move_to is not None and (not move_to.isprintable() or move_to == place.folder):
        raise UsageError(f"[{section}] move_to: a printable folder name other than {place.folder}")
    return Settings(
        move_to=move_to or None,
        smtp=smtp,
        to=to,
        place=place,
        user=user,
        password_file=_path(merged, section, "password_file"),
        password_env=_text(merged, section, "password_env"),
        ca_file=_path(merged, section, "ca_file"),
        fingerprint=_fingerprint(merged, section),
        sender=sender,
        style=style,
        resend_seconds=_duration(merged, section, "resend") or DEFAULT_RESEND_SECONDS,
        idle_seconds=_duration(merged, section, "idle") or DEFAULT_IDLE_SECONDS,
        timeout_seconds=float(_duration(merged, section, "timeout") or DEFAULT_TIMEOUT_SECONDS),
    )


def _check_keys(table: dict[str, Any], section: str) -> None:
    for key in table:
        if key not in KEYS:
            raise UsageError(unknown_key(key, section, KEYS) + " (see rise-config(5))")


def _smtp(table: dict[str, Any], section: str) -> SmtpServer | None:
    text = _text(table, section, "smtp")
    if not text:
        return None
    scheme, _sep, rest = text.partition("://")
    host, _colon, port_text = rest.rstrip("/").rpartition(":") if ":" in rest else (rest, "", "")
    host = host or rest.rstrip("/")
    implicit = scheme == "smtps"
    usage = (
        f"[{section}] smtp: use smtps://HOST[:PORT] or smtp://HOST[:PORT] (STARTTLS), not {text!r}"
    )
    if scheme not in ("smtp", "smtps") or not host or "/" in host:
        raise UsageError(usage)
    try:
        port = int(port_text) if port_text else (SMTPS_PORT if implicit else SUBMISSION_PORT)
    except ValueError:
        raise UsageError(usage) from None
    if not 1 <= port < 65536:
        raise UsageError(usage)
    return SmtpServer(implicit, host, port)


def _text(table: dict[str, Any], section: str, key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"[{section}] {key}: must be a string, not {as_written(value)}")
    return value


def _path(table: dict[str, Any], section: str, key: str) -> Path | None:
    text = _text(table, section, key)
    return Path(text).expanduser() if text else None


def _size(table: dict[str, Any], section: str, key: str) -> int | None:
    if key not in table:
        return None
    try:
        return parse_size(table[key])
    except UsageError as exc:
        raise UsageError(f"[{section}] {key}: {exc.message}") from None


def _duration(table: dict[str, Any], section: str, key: str) -> int | None:
    if key not in table:
        return None
    try:
        return parse_duration(table[key])
    except UsageError as exc:
        raise UsageError(f"[{section}] {key}: {exc.message}") from None


def _fingerprint(table: dict[str, Any], section: str) -> bytes | None:
    text = _text(table, section, "fingerprint")
    if text is None:
        return None
    match = _FINGERPRINT.match(text.strip())
    if match is None:
        raise UsageError(
            f"[{section}] fingerprint: not a SHA-256 fingerprint (64 hex digits, "
            "colons allowed, e.g. from `openssl x509 -noout -fingerprint -sha256`)"
        )
    return bytes.fromhex(match.group(1).replace(":", ""))


def _read_password_file(path: Path) -> str:
    """The first line of a file that only its owner may read or write (as ssh's keys)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise UsageError(f"[mailbox] password_file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode) or mode & 0o077:
            raise UsageError(
                f"[mailbox] password_file {path}: must be a file only its owner can read "
                f"(chmod 600 {path})"
            )
        data = handle.read(4096)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if not lines or not lines[0]:
        raise UsageError(f"[mailbox] password_file {path}: empty")
    return lines[0]
