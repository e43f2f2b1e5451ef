"""rise-call picks the carrier by the address's scheme: given, or set in config.toml."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from tests.conftest import BIN, Node


def test_tcp_address_as_argument(
    pair: tuple[Node, Node], daemon: tuple[subprocess.Popen[bytes], int]
) -> None:
    alice, _bob = pair
    _process, port = daemon
    alice.run("rise-send", "-q", "-", "bob", input=b"by url")
    alice.run("rise-call", "-q", "bob", f"tcp://127.0.0.1:{port}")
    assert not list((alice.spool / "tx").rglob("*.rsb"))


def test_exec_address_in_config(pair: tuple[Node, Node]) -> None:
    alice, bob = pair
    command = shlex.join([str(BIN / "rise-daemon"), "--stdio", "--home", str(bob.home)])
    config = alice.home / "config.toml"
    config.write_text(
        config.read_text() + f"\n[peers.bob]\naddress = {json.dumps('exec:' + command)}\n"
    )
    alice.run("rise-send", "-q", "-", "bob", input=b"over the configured pipe")
    alice.run("rise-call", "-q", "bob")
    assert not list((alice.spool / "tx").rglob("*.rsb"))


def test_dir_address_exchanges_with_a_folder_for_that_neighbour(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, bob = pair
    folder = tmp_path / "usb"
    folder.mkdir()
    alice.run("rise-send", "-q", "-", "bob", input=b"on the stick")
    alice.run("rise-call", "-q", "bob", f"dir:{folder}")
    bob.run("rise-xfer", "-q", "--toss", str(folder))
    assert b"on the stick" in b"".join(path.read_bytes() for path in (bob.home / "inbox").iterdir())


def test_one_address_only_and_unknown_schemes_are_one_line(pair: tuple[Node, Node]) -> None:
    alice, _bob = pair
    both = alice.run("rise-call", "bob", "tcp://h:1", "--command", "true", check=False)
    assert both.returncode == 2 and "give one address" in both.stderr.decode()
    unknown = alice.run("rise-call", "bob", "pigeon://loft", check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.decode().count("\n") == 1
    installed = "installed: dir:, exec:, imap:, imaps:, kiss:, kiss+tcp:, serial:, ssh:, tcp:"
    assert installed in unknown.stderr.decode()
