"""Two nodes through one shared mailbox of the real Dovecot, with the installed commands.

alice and bob share a folder of one account (a dead drop): each names it as
the other's address in config.toml, and reads the password from the
environment. A message and a 30 MiB file split over four mails go one way,
acks come back; `rise-imap --watch` takes mail as IDLE announces it; a
wrong password and an unverified server end in one line and exit status 4,
a missing password in one line and exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import BIN, Node, command_env
from tests.mailserver import HOST, Dovecot, Postfix

DEADLINE_SECONDS = 60.0  # bounds a wait for the watching node; never reached when all is well
BIG_FILE_BYTES = 30 * (1 << 20)
PART_BYTES = 8 * (1 << 20)  # four mails for the big file: the split and reassembly for real


def share(dovecot: Dovecot, pair: tuple[Node, Node], *, ca_file: bool = True) -> str:
    """Point alice and bob at one fresh folder; the address they use."""
    user = dovecot.users["alice"]
    folder = f"e2e-{uuid.uuid4().hex[:12]}"
    address = f"imaps://{user.address.replace('@', '%40')}@{HOST}:{dovecot.imaps_port}/{folder}"
    for node, other in (pair, pair[::-1]):
        config = node.home / "config.toml"
        lines = [
            "",
            "[mailbox]",
            'password_env = "RISE_TEST_MAIL_PASSWORD"',
            f"part_bytes = {PART_BYTES}",
        ]
        if ca_file:
            lines.append(f"ca_file = {json.dumps(str(dovecot.ca_file))}")
        lines += ["", f"[peers.{other.name}]", f"address = {json.dumps(address)}", ""]
        config.write_text(config.read_text() + "\n".join(lines))
    return address


def imap(
    node: Node, *args: str, password: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [str(BIN / "rise-imap"), *args],
        env=command_env(node.home, RISE_TEST_MAIL_PASSWORD=password),
        capture_output=True,
        timeout=300,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_a_message_and_a_30_mib_file_through_one_shared_mailbox(
    dovecot: Dovecot, pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, bob = pair
    password = dovecot.users["alice"].password
    share(dovecot, pair)
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _block in range(BIG_FILE_BYTES // (1 << 20)):
            out.write(os.urandom(1 << 20))
    alice.run("rise-send", "-q", str(big), "bob")
    alice.run("rise-send", "-q", "-", "bob", input=b"the file is on its way\n")
    imap(alice, "-q", password=password)
    taken = imap(bob, "--toss", password=password)
    assert b"alice: received 2 (30.0 MiB)" in taken.stderr, taken.stderr
    assert sha256(bob.incoming / "alice" / "big.bin") == sha256(big)
    listing = json.loads(bob.run("rise", "inbox", "--json").stdout)
    shown = bob.run("rise", "inbox", "show", listing[0]["bundle_id"][:6])
    assert shown.stdout == b"the file is on its way\n"
    acked = imap(alice, password=password)
    assert b"confirmed 2" in acked.stderr, acked.stderr
    stat = json.loads(alice.run("rise-stat", "--json").stdout)
    assert stat["sent"]["delivered"] == 2 and stat["neighbours"][0]["waiting"] == 0
    assert not list((bob.spool / "tmp" / "mail").rglob("*.data"))  # nothing left half-taken


def test_watch_takes_mail_as_idle_tells_of_it(dovecot: Dovecot, pair: tuple[Node, Node]) -> None:
    alice, bob = pair
    password = dovecot.users["alice"].password
    share(dovecot, pair)
    watcher = subprocess.Popen(
        [str(BIN / "rise-imap"), "--watch", "--toss"],
        env=command_env(bob.home, RISE_TEST_MAIL_PASSWORD=password),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        alice.run("rise-send", "-q", "-", "bob", input=b"are you there?\n")
        imap(alice, "-q", password=password)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not json.loads(bob.run("rise", "inbox", "--json").stdout):
            assert watcher.poll() is None, watcher.communicate()[1]
            assert time.monotonic() < deadline, "the watching node never took the mail"
            time.sleep(0.1)  # a poll with a bound: delivery is the watcher's, in its own time
        while json.loads(alice.run("rise-stat", "--json").stdout)["sent"]["delivered"] != 1:
            assert time.monotonic() < deadline, "the watching node's ack never came back"
            imap(alice, "-q", password=password)
    finally:
        watcher.send_signal(signal.SIGTERM)
        _out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err.decode()
    assert b"Traceback" not in err


@pytest.mark.parametrize(
    ("fault", "status", "expected"),
    [
        ("password", 4, "refused the login"),
        ("certificate", 4, "certificate did not verify"),
        ("no password", 2, "$RISE_TEST_MAIL_PASSWORD is not set"),
    ],
)
def test_a_refused_login_or_server_is_one_line_and_its_status(
    dovecot: Dovecot, pair: tuple[Node, Node], fault: str, status: int, expected: str
) -> None:
    alice, _bob = pair
    password = dovecot.users["alice"].password
    share(dovecot, pair, ca_file=fault != "certificate")
    given = {"password": "wrong", "no password": ""}.get(fault, password)
    result = imap(alice, password=given, check=False)
    assert result.returncode == status
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0] and password not in lines[0]


def test_two_mailboxes_through_smtp_submission(
    dovecot: Dovecot, postfix: Postfix, pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """Each node reads its own mailbox and mails the other's address by submission to
    the real Postfix (STARTTLS, AUTH), which delivers into Dovecot by LMTP."""
    alice, bob = pair
    for node, other in (pair, pair[::-1]):
        user, to = dovecot.users[node.name], dovecot.users[other.name]
        password_file = tmp_path / f"{node.name}-password"
        password_file.write_text(user.password + "\n")
        password_file.chmod(0o600)
        mine = f"imaps://{user.address}@{HOST}:{dovecot.imaps_port}/INBOX"
        lines = [
            "",
            "[mailbox]",
            f"password_file = {json.dumps(str(password_file))}",
            f"ca_file = {json.dumps(str(dovecot.ca_file))}",
            f'smtp = "smtp://{HOST}:{postfix.submission_port}"',
            f"to = {json.dumps(to.address)}",
            "part_bytes = 400000",
            "",
            f"[peers.{other.name}]",
            f"address = {json.dumps(mine)}",
            "",
        ]
        config = node.home / "config.toml"
        config.write_text(config.read_text() + "\n".join(lines))
    data = os.urandom(1_000_000)  # three mails
    (tmp_path / "report.bin").write_bytes(data)
    alice.run("rise-send", "-q", str(tmp_path / "report.bin"), "bob")
    alice.run("rise-send", "-q", "-", "bob", input=b"by submission\n")
    alice.run("rise-imap", "-q")
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (bob.incoming / "alice" / "report.bin").exists():
        assert time.monotonic() < deadline, "the submitted mails never reached bob"
        bob.run("rise-imap", "-q", "--toss")  # a poll with a bound: Postfix's queue decides
    assert (bob.incoming / "alice" / "report.bin").read_bytes() == data
    while json.loads(alice.run("rise-stat", "--json").stdout)["sent"]["delivered"] != 2:
        assert time.monotonic() < deadline, "bob's ack never came back by submission"
        alice.run("rise-imap", "-q")
    shown = bob.run("rise", "inbox", "--json").stdout
    assert len(json.loads(shown)) == 1


def test_cards_by_mail_are_saved_never_trusted(
    dovecot: Dovecot, postfix: Postfix, tmp_path: Path
) -> None:
    """carol mails her card to dave's address by submission; dave picks it up from his
    INBOX: saved for `rise peer add`, not added. Other mail there is left as it was."""
    from tests.conftest import make_node

    carol, dave = make_node(tmp_path, "carol"), make_node(tmp_path, "dave")
    for node in (carol, dave):
        user = dovecot.users["carol" if node is carol else "bob"]
        password_file = tmp_path / f"{node.name}-password"
        password_file.write_text(user.password + "\n")
        password_file.chmod(0o600)
        lines = [
            "",
            "[mailbox]",
            f"password_file = {json.dumps(str(password_file))}",
            f"ca_file = {json.dumps(str(dovecot.ca_file))}",
            f'smtp = "smtp://{HOST}:{postfix.submission_port}"',
            f"to = {json.dumps(dovecot.users['alice'].address)}",
            "",
        ]
        config = node.home / "config.toml"
        config.write_text(config.read_text() + "\n".join(lines))
    bob = dovecot.users["bob"]
    carols = f"imaps://{dovecot.users['carol'].address}@{HOST}:{dovecot.imaps_port}/INBOX"
    daves = f"imaps://{bob.address}@{HOST}:{dovecot.imaps_port}/INBOX"
    sent = carol.run("rise-imap", "--send-card", "--to", bob.address, carols)
    assert bob.address in sent.stderr.decode()
    deadline = time.monotonic() + DEADLINE_SECONDS
    saved = b""
    while not saved:
        assert time.monotonic() < deadline, "the card never arrived"
        saved = dave.run("rise-imap", "--cards", "-q", daves).stdout  # Postfix's queue decides
    name, node_id, path = saved.decode().split()
    assert (name, node_id) == ("carol", carol.node_id)
    assert json.loads(dave.run("rise", "peer", "list", "--json").stdout) == []
    dave.run("rise", "peer", "add", path)
    assert [
        row["name"] for row in json.loads(dave.run("rise", "peer", "list", "--json").stdout)
    ] == ["carol"]


def test_kill_9_at_any_moment_of_a_pass_loses_and_repeats_nothing(
    dovecot: Dovecot, pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """rise-imap killed (SIGKILL) mid-pass on both sides, at moments spread over a pass
    that appends and fetches a file in many parts: in the end the file arrives once,
    intact, and both spools check clean."""
    alice, bob = pair
    password = dovecot.users["alice"].password
    share(dovecot, pair)
    for node in pair:
        config = node.home / "config.toml"
        config.write_text(
            config.read_text().replace(f"part_bytes = {PART_BYTES}", "part_bytes = 300000")
        )
    data = os.urandom(3 * (1 << 20))
    (tmp_path / "killed.bin").write_bytes(data)
    alice.run("rise-send", "-q", str(tmp_path / "killed.bin"), "bob")
    env = {node.name: command_env(node.home, RISE_TEST_MAIL_PASSWORD=password) for node in pair}
    for delay in (0.05, 0.15, 0.3, 0.45, 0.6, 0.8):
        for node in (alice, bob):
            process = subprocess.Popen(
                [str(BIN / "rise-imap"), "-q", "--toss"],
                env=env[node.name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.kill()  # SIGKILL: no clean-up of any kind
                process.wait()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while json.loads(alice.run("rise-stat", "--json").stdout)["sent"]["delivered"] != 1:
        assert time.monotonic() < deadline, "the file never got through after the kills"
        imap(bob, "-q", "--toss", password=password)
        imap(alice, "-q", "--toss", password=password)
    assert sorted(path.name for path in (bob.incoming / "alice").iterdir()) == ["killed.bin"]
    assert (bob.incoming / "alice" / "killed.bin").read_bytes() == data
    for node in pair:
        node.run("rise-check")


def test_rise_call_with_a_mailbox_address(dovecot: Dovecot, pair: tuple[Node, Node]) -> None:
    """The mailbox is one more carrier to rise-call: NAME and an imaps:// address."""
    alice, bob = pair
    password = dovecot.users["alice"].password
    address = share(dovecot, pair)
    alice.run("rise-send", "-q", "-", "bob", input=b"called through a mailbox\n")
    env = command_env(alice.home, RISE_TEST_MAIL_PASSWORD=password)
    called = subprocess.run(
        [str(BIN / "rise-call"), "bob", address],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert called.returncode == 0, called.stderr.decode()
    assert b"bob: received 0 (0 B), sent 1" in called.stderr
    imap(bob, "-q", "--toss", password=password)
    listing = json.loads(bob.run("rise", "inbox", "--json").stdout)
    assert [row["sender"] for row in listing] == ["alice"]
