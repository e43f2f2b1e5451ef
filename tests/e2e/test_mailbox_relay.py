"""An email-carried relay: a -> r1 -> r2 -> b, where r1 and r2 meet only in a mailbox.

a reaches r1 over TCP (r1's rise-daemon), r1 and r2 share a folder of the
real Dovecot (rise-imap on both), r2 and b share a stick (rise-xfer). A
message and a file sent over two relays arrive at b, and b's receipts come
all the way back to a. Every step is an installed command; the network
and its first maps are built as in tests/e2e/relay_network.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import BIN, command_env
from tests.e2e.relay_network import MIB, Network, digest
from tests.mailserver import HOST, Dovecot

ROUNDS = 8  # each round moves everything one hop or more; four hops and back need fewer


@pytest.mark.slow
def test_a_relay_that_lives_behind_an_email_account(dovecot: Dovecot, tmp_path: Path) -> None:
    net = Network.build(
        tmp_path,
        relays=["r1", "r2"],
        ends=["a", "b"],
        links=[("a", "r1"), ("r1", "r2"), ("r2", "b")],
        correspondents=[("a", "b")],
    )
    user = dovecot.users["carol"]
    password = tmp_path / "mail-password"
    password.write_text(user.password + "\n")
    password.chmod(0o600)
    folder = f"relay-{uuid.uuid4().hex[:12]}"
    address = f"imaps://{user.address}@{HOST}:{dovecot.imaps_port}/{folder}"
    for me, other in (("r1", "r2"), ("r2", "r1")):
        config = net[me].home / "config.toml"
        config.write_text(
            config.read_text()
            + f"\n[mailbox]\npassword_file = {json.dumps(str(password))}\n"
            + f"ca_file = {json.dumps(str(dovecot.ca_file))}\n"
            + f"\n[peers.{other}]\naddress = {json.dumps(address)}\n"
        )
    daemon = subprocess.Popen(
        [str(BIN / "rise-daemon"), "--listen", "127.0.0.1:0"],
        env=command_env(net["r1"].home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert daemon.stderr is not None
        line = daemon.stderr.readline().decode()  # bounded: the daemon prints this first
        assert "listening on 127.0.0.1:" in line, line
        port = line.strip().rsplit(":", 1)[1]
        data = os.urandom(3 * MIB)
        source = tmp_path / "over-mail.bin"
        source.write_bytes(data)
        ids = [
            net.send("a", "b", source).stdout.decode().split()[0],
            net.send("a", "b", b"hello through a mailbox\n").stdout.decode().split()[0],
        ]
        stick = str(net.stick("r2", "b"))
        for _round in range(ROUNDS):
            net["a"].run("rise-call", "--toss", "-q", "r1", f"tcp://127.0.0.1:{port}")
            net["r1"].run("rise-imap", "-q", "--toss")
            net["r2"].run("rise-imap", "-q", "--toss")
            net["r2"].run("rise-xfer", "-q", "--toss", "--for", "b", stick)
            net["b"].run("rise-xfer", "-q", "--toss", "--for", "r2", stick)
            status = net.status("a")
            if all(status[bundle_id]["state"] == "delivered" for bundle_id in ids):
                break
        assert net.incoming("b", "a") == {"over-mail.bin": digest(data)}
        assert net.inbox("b") == [b"hello through a mailbox\n"]
        status = net.status("a")
        assert [status[bundle_id]["state"] for bundle_id in ids] == ["delivered", "delivered"]
        assert [status[bundle_id]["routes"] for bundle_id in ids] == [[["r1", "r2"]]] * 2
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
