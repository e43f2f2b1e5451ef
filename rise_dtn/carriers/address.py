"""One address form for every carrier: `SCHEME:TARGET`, the scheme choosing the carrier.

    tcp://HOST[:PORT]                  a live link over TCP (port 5454 by default)
    ssh://[USER@]HOST[:PORT][/HOME]    a live link through `ssh HOST rise-daemon --stdio`
    exec:COMMAND...                    a live link over the pipes of any shell command
    dir:/PATH                          a directory or USB stick (rise-xfer's exchange)

Plugins add their own schemes (`imaps://`, `serial:`) and parse the target
themselves. Before this form existed, an address was `HOST:PORT`, `[::1]:PORT`
or a bare host, always TCP; those still mean `tcp://` (old configs and cards
keep working). This module only splits and checks text: it never dials,
opens or runs anything, and it imports nothing heavy (rise-call parses an
address before it loads a carrier).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable

from rise_dtn.core.errors import UsageError

DEFAULT_TCP_PORT = 5454  # as carriers/tcp/online.DEFAULT_PORT, without importing it
# RFC 3986 scheme syntax. A host name matches it too ("bob.example.org:5454"),
# so an old HOST:PORT form is recognised first, by its all-digit port.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_SSH = re.compile(
    r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[^\]/\s]+\]|[^:/@\s]+)(?::(?P<port>\d+))?(?P<path>/.*)?$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    """A parsed address: its scheme (lower case) and what follows `SCHEME:` (or `SCHEME://`)."""

    scheme: str
    target: str

    def __str__(self) -> str:
        slashes = "//" if self.scheme in URL_SCHEMES else ""
        return f"{self.scheme}:{slashes}{self.target}"


# Schemes written with `//` (a network location follows); the others take a
# command or a path verbatim after the colon.
URL_SCHEMES = frozenset({"tcp", "ssh", "imap", "imaps"})


def parse(text: str, *, schemes: Iterable[str] | None = None) -> Address:
    """Split `text` into scheme and target; an old HOST:PORT form is tcp.

    `schemes`, if given, are the installed ones: any other is a one-line
    UsageError that lists them.
    """
    stripped = text.strip()
    if not stripped:
        raise UsageError("empty address")
    address = _legacy(stripped)
    if address is None:
        match = _SCHEME.match(stripped)
        if match is None:
            raise UsageError(f"not an address: {text!r} (use SCHEME:TARGET, e.g. tcp://HOST:PORT)")
        scheme, target = match.group(1).lower(), match.group(2)
        if scheme in URL_SCHEMES:
            if not target.startswith("//"):
                raise UsageError(f"not an address: {text!r} (use {scheme}://...)")
            target = target[2:]
        address = Address(scheme, target)
    if schemes is not None:
        known = sorted(set(schemes))
        if address.scheme not in known:
            raise UsageError(unknown_scheme(text, address.scheme, known))
    if not address.target:
        raise UsageError(f"not an address: {text!r} (nothing after {address.scheme}:)")
    return address


def unknown_scheme(text: str, scheme: str, installed: Iterable[str]) -> str:
    """The one line for an address no installed carrier serves."""
    listed = ", ".join(f"{name}:" for name in sorted(installed)) or "none"
    return f"not an address: {text!r} (unknown scheme {scheme}:, installed: {listed})"


def _legacy(text: str) -> Address | None:
    """`HOST:PORT`, `[V6]:PORT`, a bare host: the TCP addresses of before (None if not one)."""
    if text.startswith("["):
        return Address("tcp", text)
    head, colon, port = text.partition(":")
    if not colon:
        return Address("tcp", text) if _plain_host(text) else None
    if port.isdigit() and _plain_host(head):
        return Address("tcp", text)
    return None


def _plain_host(text: str) -> bool:
    return bool(text) and all(char.isalnum() or char in ".-_" for char in text)


def host_port(address: Address, *, default_port: int = DEFAULT_TCP_PORT) -> tuple[str, int]:
    """The host and port of a `tcp://HOST[:PORT]` (or `[V6]:PORT`) target."""
    text = address.target.rstrip("/")
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise UsageError(f"not an address: {str(address)!r} (use tcp://HOST:PORT)") from None
    if not host or not 1 <= number < 65536:
        raise UsageError(f"not an address: {str(address)!r} (use tcp://HOST:PORT)")
    return host, number


@dataclasses.dataclass(frozen=True, slots=True)
class SshTarget:
    user: str | None
    host: str
    port: int | None
    home: str | None  # the remote node's home; None: its default

    def command(self, *, program: str = "rise-daemon") -> str:
        """The shell command whose pipes carry the link: ssh runs the remote stdio daemon."""
        remote = [program, "--stdio"]
        if self.home is not None:
            remote += ["--home", self.home]
        words = ["ssh"]
        if self.port is not None:
            words += ["-p", str(self.port)]
        words.append(f"{self.user}@{self.host}" if self.user else self.host)
        # ssh joins its remote words with spaces for the remote shell: quote them once for it.
        words.append(shlex.join(remote))
        return shlex.join(words)


def ssh_target(address: Address) -> SshTarget:
    """`ssh://[USER@]HOST[:PORT][/HOME]`, checked so no part can pass for an ssh option."""
    match = _SSH.match(address.target)
    if match is None:
        raise UsageError(f"not an address: {str(address)!r} (use ssh://[USER@]HOST[:PORT][/HOME])")
    user, host, port, path = match.group("user", "host", "port", "path")
    if host.startswith("-") or (user or "").startswith("-"):
        raise UsageError(f"not an address: {str(address)!r} (a host may not start with '-')")
    number = int(port) if port else None
    if number is not None and not 1 <= number < 65536:
        raise UsageError(f"not an address: {str(address)!r} (port out of range)")
    home = path if path and path != "/" else None
    if home is not None and home.startswith("/~/"):
        # ssh://host/~/rise: relative to the remote user's home, where ssh starts
        # (a quoted ~ would not be expanded by the remote shell).
        home = home[3:] or None
    return SshTarget(user, host, number, home)


def command_of(address: Address) -> str:
    """The shell command of an `exec:COMMAND` address."""
    if not address.target.strip():
        raise UsageError(f"not an address: {str(address)!r} (use exec:COMMAND)")
    return address.target


def directory_of(address: Address) -> str:
    """The path of a `dir:/PATH` address (absolute, or `~/...`)."""
    path = address.target.removeprefix("//")
    if not (path.startswith("/") or path.startswith("~")):
        raise UsageError(f"not an address: {str(address)!r} (use dir:/ABSOLUTE/PATH)")
    return path
