"""The one address form: every carrier's scheme, the old TCP forms, and one-line errors."""

from __future__ import annotations

import shlex

import pytest

from rise_dtn.carriers import address
from rise_dtn.carriers.address import Address
from rise_dtn.core.errors import UsageError

INSTALLED = ("dir", "exec", "ssh", "tcp")


@pytest.mark.parametrize(
    ("text", "scheme", "target"),
    [
        ("tcp://bob.example.org:5454", "tcp", "bob.example.org:5454"),
        ("TCP://[::1]:99", "tcp", "[::1]:99"),
        ("bob.example.org:5454", "tcp", "bob.example.org:5454"),  # the old form
        ("[::1]:5454", "tcp", "[::1]:5454"),
        ("bob.example.org", "tcp", "bob.example.org"),
        ("ssh://rise@relay:2222/srv/rise", "ssh", "rise@relay:2222/srv/rise"),
        ("exec:ssh relay rise-daemon --stdio", "exec", "ssh relay rise-daemon --stdio"),
        ("dir:/media/usb", "dir", "/media/usb"),
        ("serial:/dev/ttyUSB0", "serial", "/dev/ttyUSB0"),  # a plugin's: split, not judged
    ],
)
def test_parse(text: str, scheme: str, target: str) -> None:
    assert address.parse(text) == Address(scheme, target)


def test_round_trip() -> None:
    for text in ("tcp://h:1", "ssh://u@h", "exec:true", "dir:/x"):
        assert str(address.parse(text)) == text


@pytest.mark.parametrize("text", ["imaps://mail.example.org", "bob:notaport", "serial:/dev/tty"])
def test_an_unknown_scheme_is_one_line_naming_the_installed(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        address.parse(text, schemes=INSTALLED)
    assert "\n" not in caught.value.message
    assert "dir:, exec:, ssh:, tcp:" in caught.value.message


@pytest.mark.parametrize("text", ["", "tcp:bob", "exec:", "tcp://"])
def test_malformed(text: str) -> None:
    with pytest.raises(UsageError):
        address.parse(text, schemes=INSTALLED)


def test_host_port() -> None:
    assert address.host_port(address.parse("tcp://h")) == ("h", 5454)
    assert address.host_port(address.parse("tcp://[::1]:7")) == ("::1", 7)
    for bad in ("tcp://h:0", "tcp://h:x", "tcp://h:70000"):
        with pytest.raises(UsageError):
            address.host_port(address.parse(bad))


def test_ssh_becomes_the_remote_stdio_daemon() -> None:
    plain = address.ssh_target(address.parse("ssh://relay.example.org"))
    assert shlex.split(plain.command()) == ["ssh", "relay.example.org", "rise-daemon --stdio"]
    full = address.ssh_target(address.parse("ssh://rise@relay:2222/srv/my rise"))
    assert shlex.split(full.command()) == [
        "ssh",
        "-p",
        "2222",
        "rise@relay",
        "rise-daemon --stdio --home '/srv/my rise'",
    ]
    relative = address.ssh_target(address.parse("ssh://relay/~/rise"))
    assert relative.home == "rise"


@pytest.mark.parametrize(
    "text", ["ssh://-oProxyCommand=x", "ssh://-x@h", "ssh://h:99999", "ssh://"]
)
def test_ssh_refuses_what_could_pass_for_an_option(text: str) -> None:
    with pytest.raises(UsageError):
        address.ssh_target(address.parse(text))


def test_dir_wants_an_absolute_path() -> None:
    assert address.directory_of(address.parse("dir:/media/usb")) == "/media/usb"
    assert address.directory_of(address.parse("dir:///media/usb")) == "/media/usb"
    with pytest.raises(UsageError):
        address.directory_of(address.parse("dir:usb"))
