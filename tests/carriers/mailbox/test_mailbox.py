"""The mailbox carrier against the real Dovecot: trust, errors, and faults injected for real.

Each test works in a fresh folder of the shared test server. The two nodes
(alice and bob of tests/carriers/contract.py) share the folder, as two
people sharing a dead-drop mailbox do. Faults are real: a wrong password,
a certificate nobody vouched for, another IMAP client deleting or
duplicating mails, a quota on the test user, foreign and malformed mails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import ssl
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from rise_dtn.carriers.address import Address
from rise_dtn.carriers.base import Exchanged
from rise_dtn.carriers.mailbox import CARRIER
from rise_dtn.core.errors import ExitCode, PeerError, RiseError, UsageError
from rise_dtn.node.home import Home
from tests.carriers.contract import (
    Network,
    delivered,
    network,
    payload,
    peer_of,
    queue,
    queued,
    toss_all,
)
from tests.mailserver import HOST, QUOTA_BYTES, QUOTA_USER, Dovecot, MailUser
from tests.properties import examples

CLIENT_TIMEOUT_SECONDS = 30.0


class Shared:
    """A fresh folder of one test user, and the nodes configured to share it."""

    def __init__(self, dovecot: Dovecot, base: Path, *, user: str = "alice") -> None:
        self.dovecot = dovecot
        self.user: MailUser = dovecot.users[user]
        self.folder = f"mbx-{uuid.uuid4().hex[:12]}"
        self.password_file = base / "password"
        self.password_file.write_text(self.user.password + "\n")
        self.password_file.chmod(0o600)
        self.net: Network = network(base / "nodes")

    def address(self, port: int | None = None) -> Address:
        user = self.user.address.replace("@", "%40")
        return Address("imaps", f"{user}@{HOST}:{port or self.dovecot.imaps_port}/{self.folder}")

    def configure(self, home: Home, **extra: object) -> None:
        settings = {
            "password_file": str(self.password_file),
            "ca_file": str(self.dovecot.ca_file),
            **extra,
        }
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
        path = home.path / "config.toml"
        text = path.read_text(encoding="utf-8").split("\n[mailbox]\n")[0]
        path.write_text(f"{text}\n[mailbox]\n{lines}", encoding="utf-8")
        home.__dict__.pop("config", None)

    def exchange(self, home: Home, other: Home, *, port: int | None = None) -> Exchanged:
        peer = peer_of(home, other)
        assert peer is not None
        return CARRIER.exchange(home, peer, self.address(port), now=int(time.time()))

    def client(self) -> IMAPClient:
        client = IMAPClient(
            HOST, port=self.dovecot.imaps_port, ssl=True, ssl_context=self.dovecot.ssl_context(),
            timeout=CLIENT_TIMEOUT_SECONDS,
        )  # fmt: skip
        client.login(self.user.address, self.user.password)
        if not client.folder_exists(self.folder):
            client.create_folder(self.folder)
        client.select_folder(self.folder)
        return client


@pytest.fixture
def shared(dovecot: Dovecot, tmp_path: Path) -> Iterator[Shared]:
    made = Shared(dovecot, tmp_path)
    for home in (made.net.alice, made.net.bob):
        made.configure(home)
    yield made
    with contextlib.suppress(Exception):
        client = made.client()
        client.close_folder()
        client.delete_folder(made.folder)
        client.logout()


def round_trip(shared: Shared, rounds: int = 4) -> None:
    """alice and bob take turns over the mailbox, each tossing, until nothing is queued."""
    alice, bob = shared.net.alice, shared.net.bob
    for _round in range(rounds):
        shared.exchange(alice, bob)
        shared.exchange(bob, alice)
        toss_all(bob, alice)
        if not queued(alice, bob) and not queued(bob, alice):
            return


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# Trust and errors: one line each, with the exit code rise-call(1) documents.


def test_a_wrong_password_is_one_line_exit_4(shared: Shared) -> None:
    shared.password_file.write_text("not-the-password\n")
    with pytest.raises(PeerError) as refused:
        shared.exchange(shared.net.alice, shared.net.bob)
    assert refused.value.exit_code == ExitCode.PEER
    assert "refused the login" in refused.value.message
    assert "\n" not in refused.value.message and "not-the-password" not in refused.value.message


def test_a_certificate_nobody_vouched_for_is_refused(shared: Shared) -> None:
    shared.configure(shared.net.alice, ca_file="")  # the system's trust store only
    with pytest.raises(PeerError) as refused:
        shared.exchange(shared.net.alice, shared.net.bob)
    assert "certificate did not verify" in refused.value.message
    assert refused.value.exit_code == ExitCode.PEER and "\n" not in refused.value.message


def test_a_pinned_fingerprint_is_enough_and_a_wrong_one_refused(shared: Shared) -> None:
    pem = shared.dovecot.cert_file.read_text()
    right = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    shared.configure(shared.net.alice, ca_file="", fingerprint=f"sha256:{right}")
    shared.exchange(shared.net.alice, shared.net.bob)  # no CA, but the pin: trusted
    shared.configure(shared.net.alice, ca_file="", fingerprint="ab" * 32)
    with pytest.raises(PeerError) as refused:
        shared.exchange(shared.net.alice, shared.net.bob)
    assert "not the pinned one" in refused.value.message


def test_a_password_file_others_can_read_is_refused(shared: Shared) -> None:
    shared.password_file.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        shared.exchange(shared.net.alice, shared.net.bob)


def test_the_password_from_the_environment(shared: Shared, monkeypatch: pytest.MonkeyPatch) -> None:
    shared.configure(shared.net.alice, password_file="", password_env="RISE_TEST_MAIL_PASSWORD")
    with pytest.raises(UsageError, match="RISE_TEST_MAIL_PASSWORD is not set"):
        shared.exchange(shared.net.alice, shared.net.bob)
    monkeypatch.setenv("RISE_TEST_MAIL_PASSWORD", shared.user.password)
    shared.exchange(shared.net.alice, shared.net.bob)


def test_an_unreachable_server_is_one_line(shared: Shared) -> None:
    with contextlib.closing(__import__("socket").socket()) as closed:
        closed.bind((HOST, 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(RiseError) as failed:
            shared.exchange(shared.net.alice, shared.net.bob, port=port)
    assert failed.value.message.startswith("cannot reach the mailbox")


# Other people's mail, split bundles, and faults.


def test_other_mail_is_never_touched(shared: Shared) -> None:
    client = shared.client()
    try:
        others = (
            b"From: a@example.test\r\nMessage-ID: <x1@example.test>\r\nSubject: hi\r\n\r\nhi\r\n"
        )
        client.append(shared.folder, others)
        (uid,) = client.search(["ALL"])
        before = client.fetch([uid], ["FLAGS", "BODY.PEEK[]"])[uid]
        data = payload("beside-others", 30_000)
        queue(shared.net.alice, shared.net.bob, data, "note.bin")
        round_trip(shared)
        assert delivered(shared.net.bob, "alice") == {"note.bin": digest(data)}
        client.noop()
        after = client.fetch([uid], ["FLAGS", "BODY.PEEK[]"])[uid]
        assert after == before and b"\\Seen" not in after[b"FLAGS"]
        assert client.search(["ALL"]) == [uid]  # ours are gone, theirs stays
    finally:
        client.logout()


def test_a_bundle_split_over_many_mails_arrives_whole(shared: Shared) -> None:
    for home in (shared.net.alice, shared.net.bob):
        shared.configure(home, part_bytes=40_000)
    data = payload("split", 250_000)
    queue(shared.net.alice, shared.net.bob, data, "split.bin")
    client = shared.client()
    try:
        report = shared.exchange(shared.net.alice, shared.net.bob)
        client.noop()
        assert len(client.search(["ALL"])) == 7, report  # 250,000 bytes and a header in 40,000s
    finally:
        client.logout()
    round_trip(shared)
    assert delivered(shared.net.bob, "alice") == {"split.bin": digest(data)}
    assert not queued(shared.net.alice, shared.net.bob)


def test_duplicated_mails_deliver_once(shared: Shared) -> None:
    """Another client copies every mail (a provider's retry, a restored backup)."""
    for home in (shared.net.alice, shared.net.bob):
        shared.configure(home, part_bytes=40_000)
    data = payload("twice", 100_000)
    queue(shared.net.alice, shared.net.bob, data, "twice.bin")
    shared.exchange(shared.net.alice, shared.net.bob)
    client = shared.client()
    try:
        uids = client.search(["ALL"])
        raws = client.fetch(uids, ["BODY.PEEK[]"])
        for uid in uids:
            client.append(shared.folder, raws[uid][b"BODY[]"])
    finally:
        client.logout()
    round_trip(shared)
    assert delivered(shared.net.bob, "alice") == {"twice.bin": digest(data)}
    assert shared.client().search(["ALL"]) == []


def test_mails_deleted_by_another_client_are_mailed_again(shared: Shared) -> None:
    for home in (shared.net.alice, shared.net.bob):
        shared.configure(home, part_bytes=40_000)
    data = payload("deleted", 100_000)
    queue(shared.net.alice, shared.net.bob, data, "again.bin")
    shared.exchange(shared.net.alice, shared.net.bob)
    client = shared.client()
    try:
        uids = client.search(["ALL"])
        client.delete_messages(uids[:1])  # someone else removes one part
        client.expunge()
    finally:
        client.logout()
    report = shared.exchange(shared.net.bob, shared.net.alice)  # bob takes what is left
    assert report.received == 0
    report = shared.exchange(shared.net.alice, shared.net.bob)
    assert any("deleted by someone else" in note for note in report.notes), report.notes
    round_trip(shared)
    assert delivered(shared.net.bob, "alice") == {"again.bin": digest(data)}


def test_foreign_and_malformed_mails_of_ours_get_one_line(shared: Shared) -> None:
    """A mail under our tag that does not read (altered on the way) is dropped with a line."""
    data = payload("altered", 20_000)
    queue(shared.net.alice, shared.net.bob, data, "altered.bin")
    shared.exchange(shared.net.alice, shared.net.bob)
    client = shared.client()
    try:
        (uid,) = client.search(["ALL"])
        raw = bytearray(client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"])
        middle = raw.index(b"\r\n\r\n", raw.index(b"base64")) + 200
        raw[middle] = ord("A") if raw[middle] != ord("A") else ord("B")
        client.delete_messages([uid])
        client.expunge()
        client.append(shared.folder, bytes(raw))
        truncated = bytes(raw[: len(raw) // 2])
        client.append(shared.folder, truncated)
    finally:
        client.logout()
    report = shared.exchange(shared.net.bob, shared.net.alice)
    assert report.received == 0
    faults = sorted(line.split(": ")[1].split()[0] for line in report.rejected)
    assert faults == ["foreign", "truncated"], report.rejected
    assert all("\n" not in line for line in report.rejected)
    assert shared.client().search(["ALL"]) == []
    assert queued(shared.net.alice, shared.net.bob), "the sender let go of an unacked bundle"
    shared.exchange(shared.net.bob, shared.net.alice)  # the next pass clears what they left
    assert not list((shared.net.bob.spool.tmp / "mail").rglob("*.data"))


def test_a_mailbox_over_quota_keeps_the_rest_queued(dovecot: Dovecot, tmp_path: Path) -> None:
    shared = Shared(dovecot, tmp_path, user=QUOTA_USER)
    for home in (shared.net.alice, shared.net.bob):
        shared.configure(home)
    small, large = payload("small", 5_000), payload("large", 200_000)
    queue(shared.net.alice, shared.net.bob, small, "small.bin")
    large_id = queue(shared.net.alice, shared.net.bob, large, "large.bin")
    report = shared.exchange(shared.net.alice, shared.net.bob)
    assert report.sent == 1 and any("quota" in note.lower() for note in report.notes), report
    assert large_id in queued(shared.net.alice, shared.net.bob)
    round_trip(shared, rounds=3)  # the small one, bob's ack, alice's release
    assert delivered(shared.net.bob, "alice") == {"small.bin": digest(small)}
    assert set(queued(shared.net.alice, shared.net.bob)) == {large_id}
    with contextlib.suppress(Exception):
        client = shared.client()
        client.close_folder()
        client.delete_folder(shared.folder)
        client.logout()


def test_a_connection_cut_at_random_bytes_loses_nothing(shared: Shared) -> None:
    """Cuts in both directions, at bytes drawn once (seeded): each pass that fails
    leaves nothing torn; the bundles arrive once, intact."""
    import random

    from tests.cutproxy import cut_proxy

    for home in (shared.net.alice, shared.net.bob):
        shared.configure(home, part_bytes=30_000)
    files = {f"cut-{n}.bin": payload(f"cut{n}", 20_000 + n * 25_000) for n in range(3)}
    for name, data in files.items():
        queue(shared.net.alice, shared.net.bob, data, name)
    draw = random.Random(1729)
    alice, bob = shared.net.alice, shared.net.bob
    with cut_proxy(shared.dovecot.imaps_port) as proxy:
        for _round in range(12):
            for home, other in ((alice, bob), (bob, alice)):
                direction = draw.choice(("upstream_bytes", "downstream_bytes"))
                proxy.cut.upstream_bytes = proxy.cut.downstream_bytes = None
                setattr(proxy.cut, direction, draw.randrange(1, 120_000))
                with contextlib.suppress(PeerError):
                    shared.exchange(home, other, port=proxy.port)
                toss_all(home)
    assert proxy.cuts_made > 0
    round_trip(shared)
    assert delivered(bob, "alice") == {name: digest(data) for name, data in files.items()}
    assert not queued(alice, bob)
    assert os.listdir(bob.spool.quarantine_dir) == []


def test_watch_reconnects_after_a_cut_and_takes_mail_as_idle_tells(shared: Shared) -> None:
    """The IDLE connection is cut (the proxy resets it): the watch reconnects, then
    a pass runs when Dovecot announces the mail alice leaves."""
    import threading

    from rise_dtn.carriers.mailbox import targets, watch
    from rise_dtn.carriers.mailbox.settings import place_of, settings_for
    from tests.cutproxy import cut_proxy

    alice, bob = shared.net.alice, shared.net.bob
    peer = peer_of(bob, alice)
    assert peer is not None
    lines: list[str] = []
    passes: list[Exchanged] = []

    def run_passes() -> None:
        passes.append(shared.exchange(bob, alice))
        toss_all(bob)

    with cut_proxy(shared.dovecot.imaps_port) as proxy:
        place = place_of(shared.address(proxy.port))
        settings = settings_for(bob.config.mailbox, place, peer.name)
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch.watch,
            args=([settings], run_passes),
            kwargs={"stop": stop, "poll_seconds": 3600.0, "log": lines.append},
        )
        watcher.start()
        try:
            deadline = time.monotonic() + 60
            while not (passes and proxy.cut_now()):  # the first pass ran; IDLE is up or coming
                assert time.monotonic() < deadline, "the watch never connected"
                time.sleep(0.05)  # a poll with a bound
            while not any("again" in line or "reconnecting" in line for line in lines):
                assert time.monotonic() < deadline, lines
                time.sleep(0.05)
            time.sleep(0.5)  # let the new IDLE start: mail before it is taken by the pass anyway
            data = payload("while-watching", 2_000)
            queue(alice, bob, data, "watched.bin")
            shared.exchange(alice, bob)
            while "watched.bin" not in delivered(bob, "alice"):
                assert time.monotonic() < deadline, f"never delivered; {lines}"
                time.sleep(0.05)
        finally:
            stop.set()
            watcher.join(30)
    assert not watcher.is_alive()
    assert delivered(bob, "alice") == {"watched.bin": digest(data)}
    assert all("\n" not in line and "Traceback" not in line for line in lines)
    assert targets  # the module rise-imap uses to choose what the watch serves


def test_a_bundle_with_no_room_stays_in_the_mailbox(shared: Shared) -> None:
    alice, bob = shared.net.alice, shared.net.bob
    data = payload("roomy", 50_000)
    queue(alice, bob, data, "roomy.bin")
    shared.exchange(alice, bob)
    config = bob.path / "config.toml"
    text = config.read_text()
    config.write_text(
        text.replace("\n[mailbox]\n", '\n[peers.alice]\nreceive_max_bytes = "1K"\n\n[mailbox]\n')
    )
    bob.__dict__.pop("config", None)
    bob.__dict__.pop("bundles", None)  # its room rules are read from the config
    report = shared.exchange(bob, alice)
    assert report.received == 0 and any("no room" in note for note in report.notes), report
    client = shared.client()
    try:
        assert len(client.search(["ALL"])) == 1, "the mail left the mailbox unstored"
    finally:
        client.logout()
    config.write_text(text)
    bob.__dict__.pop("config", None)
    bob.__dict__.pop("bundles", None)
    round_trip(shared)
    assert delivered(bob, "alice") == {"roomy.bin": digest(data)}


@settings(max_examples=examples(8), suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(0, 50_000),
    part_bytes=st.integers(3_000, 20_000),
    order=st.randoms(use_true_random=False),
    batches=st.integers(1, 3),
)
def test_parts_in_any_order_over_any_passes_deliver_once(
    dovecot: Dovecot, size: int, part_bytes: int, order: random.Random, batches: int
) -> None:
    """The sender's mails re-appended by another client in any order, some twice, and
    taken over several passes: the bundle is delivered once, intact, then acked."""
    with tempfile.TemporaryDirectory() as scratch:
        shared = Shared(dovecot, Path(scratch))
        alice, bob = shared.net.alice, shared.net.bob
        for home in (alice, bob):
            shared.configure(home, part_bytes=part_bytes)
        data = payload(f"order-{size}", size)
        queue(alice, bob, data, "any.bin")
        shared.exchange(alice, bob)
        client = shared.client()
        try:
            uids = client.search(["ALL"])
            raws = [raw[b"BODY[]"] for raw in client.fetch(uids, ["BODY.PEEK[]"]).values()]
            client.delete_messages(uids)
            client.expunge()
            mails = raws + order.sample(raws, k=order.randint(0, len(raws)))  # some twice
            order.shuffle(mails)
            cut = sorted(order.randint(0, len(mails)) for _batch in range(batches - 1))
            for start, end in zip([0, *cut], [*cut, len(mails)], strict=True):
                for raw in mails[start:end]:
                    client.append(shared.folder, raw)
                shared.exchange(bob, alice)
        finally:
            client.logout()
        round_trip(shared)
        assert delivered(bob, "alice") == {"any.bin": digest(data)}
        assert not queued(alice, bob)
        assert shared.client().search(["ALL"]) == []


def test_a_pass_classifies_each_mail_once(shared: Shared) -> None:
    """Other mail is looked at (its Message-ID) by the first pass only: later passes
    fetch headers of new UIDs alone, and list ours from the scan cache."""
    from rise_dtn.carriers.mailbox.connection import open_mailbox
    from rise_dtn.carriers.mailbox.exchange import state_of
    from rise_dtn.carriers.mailbox.settings import place_of, settings_for

    alice, bob = shared.net.alice, shared.net.bob
    client = shared.client()
    try:
        for number in range(3):
            client.append(shared.folder, f"Message-ID: <m{number}@x.test>\r\n\r\nhi\r\n".encode())
        queue(alice, bob, payload("cached", 3000), "cached.bin")
        shared.exchange(alice, bob)
        peer = peer_of(bob, alice)
        assert peer is not None
        shared.exchange(bob, alice)  # takes alice's mail: classifies all four
        validity = int(client.select_folder(shared.folder, readonly=True)[b"UIDVALIDITY"])
        settings = settings_for(bob.config.mailbox, place_of(shared.address()), "alice")
        where = f"{settings.user} {settings.place.host}:{settings.place.port} {shared.folder}"
        highest, ours = state_of(bob, peer).scan_cache(where, validity)
        # A fresh folder: the three others are UIDs 1-3, alice's mail 4 (taken, deleted).
        assert client.search(["ALL"]) == [1, 2, 3]
        assert highest == 4 and set(ours) == {4}  # ours listed from the cache while it is there
        mailbox = open_mailbox(
            settings_for(bob.config.mailbox, place_of(shared.address()), "alice")
        )
        try:
            assert mailbox.scan(after=highest, known={}) == []  # nothing new: no header fetched
        finally:
            mailbox.close()
    finally:
        client.logout()


def test_a_part_again_under_another_message_id_is_a_duplicate(shared: Shared) -> None:
    """A copy of a part under a new tagged Message-ID (only a key holder can make one):
    read, found to repeat a part on disk, one `duplicate` line, deleted; delivered once."""
    from rise_dtn.carriers.mailbox.exchange import pair_key, state_of
    from rise_dtn.core.mailpart import MailKeys, message_id_for

    alice, bob = shared.net.alice, shared.net.bob
    for home in (alice, bob):
        shared.configure(home, part_bytes=20_000)
    data = payload("again", 30_000)
    queue(alice, bob, data, "again.bin")
    shared.exchange(alice, bob)
    peer = peer_of(alice, bob)
    assert peer is not None
    keys = MailKeys.derive(
        pair_key(alice.identity, peer, sender=alice.identity.node_id, recipient=peer.node_id)
    )
    client = shared.client()
    try:
        first, second = client.search(["ALL"])
        raw = client.fetch([first], ["BODY.PEEK[]"])[first][b"BODY[]"]
        client.delete_messages([second])  # bob takes part 1 now, part 2 never: incomplete
        client.expunge()
        report = shared.exchange(bob, alice)
        assert report.received == 0 and not report.rejected
        old = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0]
        again = raw.replace(old, message_id_for(os.urandom(12), keys, "example.test").encode())
        client.append(shared.folder, again)
        report = shared.exchange(bob, alice)
        assert [line.split(": ")[1].split()[0] for line in report.rejected] == ["duplicate"]
        peer_back = peer_of(bob, alice)
        assert peer_back is not None
        assert len(list(state_of(bob, peer_back).folder.glob("in-*.data"))) == 1
    finally:
        client.logout()
    round_trip(shared)  # alice sees a part gone, mails it again whole
    assert delivered(bob, "alice") == {"again.bin": digest(data)}


def test_acks_stay_owed_while_the_mailbox_is_full(dovecot: Dovecot, tmp_path: Path) -> None:
    shared = Shared(dovecot, tmp_path, user=QUOTA_USER)
    alice, bob = shared.net.alice, shared.net.bob
    for home in (alice, bob):
        shared.configure(home)
    data = payload("owed", 2_000)
    queue(alice, bob, data, "owed.bin")
    shared.exchange(alice, bob)
    shared.exchange(bob, alice)
    toss_all(bob)  # bob owes alice an ack now
    client = shared.client()
    try:
        filler = b"Message-ID: <filler@x.test>\r\n\r\n" + b"x" * 1000 + b"\r\n"
        for _mail in range(QUOTA_BYTES // len(filler) + 2):  # someone else's mail fills it
            try:
                client.append(shared.folder, filler)
            except IMAPClientError:
                break
        else:
            raise AssertionError("the quota never refused a mail")
        report = shared.exchange(bob, alice)
        assert any("the acks stay owed" in note for note in report.notes), report
        client.delete_messages(client.search(["ALL"]))
        client.expunge()
    finally:
        client.logout()
    round_trip(shared, rounds=2)
    assert delivered(bob, "alice") == {"owed.bin": digest(data)}
    assert not queued(alice, bob), "the ack never went once there was room"
    with contextlib.suppress(Exception):
        client = shared.client()
        client.close_folder()
        client.delete_folder(shared.folder)
        client.logout()


def test_imap_with_starttls(shared: Shared) -> None:
    """imap:// on the plain port: STARTTLS, verified against the CA, then the same pass."""
    alice, bob = shared.net.alice, shared.net.bob
    data = payload("starttls", 10_000)
    queue(alice, bob, data, "starttls.bin")
    user = shared.user.address.replace("@", "%40")
    plain = Address("imap", f"{user}@{HOST}:{shared.dovecot.imap_port}/{shared.folder}")
    for home, other in ((alice, bob), (bob, alice), (alice, bob)):
        peer = peer_of(home, other)
        assert peer is not None
        CARRIER.exchange(home, peer, plain, now=int(time.time()))
        toss_all(home)
    assert delivered(bob, "alice") == {"starttls.bin": digest(data)}


def test_taken_mails_can_be_moved_instead_of_deleted(shared: Shared) -> None:
    alice, bob = shared.net.alice, shared.net.bob
    kept = f"{shared.folder}-kept"
    shared.configure(bob, move_to=kept)
    data = payload("kept", 5_000)
    queue(alice, bob, data, "kept.bin")
    round_trip(shared)
    assert delivered(bob, "alice") == {"kept.bin": digest(data)}
    client = shared.client()
    try:
        assert client.search(["ALL"]) == []
        client.select_folder(kept, readonly=True)
        assert len(client.search(["ALL"])) == 1  # alice's mail; bob's ack was deleted by her
        client.close_folder()
        client.delete_folder(kept)
    finally:
        client.logout()


def test_an_append_cut_mid_mail_leaves_no_mail(shared: Shared) -> None:
    """Our APPEND (RFC 3502's form, LITERAL+: the mail goes without waiting for the
    server's go-ahead) cut mid-mail by the proxy: Dovecot keeps nothing of it."""
    from rise_dtn.carriers.mailbox.connection import open_mailbox
    from rise_dtn.carriers.mailbox.settings import place_of, settings_for
    from tests.cutproxy import cut_proxy

    raw = b"Message-ID: <cut@x.test>\r\n\r\n" + (b"QUJD" * 19 + b"\r\n") * 4000  # 312 kB
    with cut_proxy(shared.dovecot.imaps_port) as proxy:
        proxy.cut.upstream_bytes = 100_000  # past TLS and login (a few kB), inside the mail
        place = place_of(shared.address(proxy.port))
        mailbox = open_mailbox(settings_for(shared.net.alice.config.mailbox, place, "bob"))
        try:
            with pytest.raises(PeerError):
                mailbox.append(raw)
            assert proxy.cuts_made == 1
        finally:
            mailbox.close()
    client = shared.client()
    try:
        assert client.search(["ALL"]) == []
    finally:
        client.logout()


def test_many_connections_opening_a_missing_folder_at_once_all_succeed(shared: Shared) -> None:
    """The folder is made by whichever CREATE comes first; the others find it made (the
    watch's IDLE connection and a pass used to race there: ALREADYEXISTS ended the pass)."""
    import threading

    from rise_dtn.carriers.mailbox.connection import ensure_folder

    clients = []
    for _ in range(6):
        client = IMAPClient(
            HOST, port=shared.dovecot.imaps_port, ssl=True,
            ssl_context=shared.dovecot.ssl_context(), timeout=CLIENT_TIMEOUT_SECONDS,
        )  # fmt: skip
        client.login(shared.user.address, shared.user.password)
        clients.append(client)
    start = threading.Barrier(len(clients))
    failures: list[BaseException] = []

    def open_it(client: IMAPClient) -> None:
        start.wait(timeout=30)
        try:
            ensure_folder(client, shared.folder)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=open_it, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert all(client.folder_exists(shared.folder) for client in clients)
    for client in clients:
        client.logout()
