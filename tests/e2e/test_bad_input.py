"""Hostile and broken input, through the installed commands: one line, no traceback, go on.

Each test puts a good bundle (sent with the real `rise-send`) next to bad
ones, crafted in this process with the real sealer and the nodes' real keys,
then runs `rise-xfer` and `rise-toss` as a user would. A rejected bundle
gives exactly one stderr line and exit status 3 and lands in
SPOOL/quarantine/ beside its .reason file; expired and duplicate bundles are
dropped (docs/protocol.md, section 9); the good bundle is delivered anyway.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import shutil
import time
import types
from pathlib import Path

import cbor2
import pytest

from rise_dtn.core import sealing
from rise_dtn.core.ack import Ack
from rise_dtn.core.bundle import ContentKind, HopHeader, Meta, Sealer, parse_clear
from rise_dtn.core.card import ARMOR_BEGIN, ARMOR_END, Card
from rise_dtn.core.encoding import canonical
from rise_dtn.core.identity import Identity, NodeId, PublicIdentity
from rise_dtn.node.home import Home
from tests.conftest import Node, make_node

MESSAGE = Meta(ContentKind.MESSAGE)
HOUR = 3600


# --- crafting ------------------------------------------------------------------------------------


def identity_of(node: Node) -> Identity:
    return Home(node.home).identity


def seal(
    sender: Node | Identity | types.SimpleNamespace,
    recipient: Node | PublicIdentity,
    payload: bytes = b"hello",
    *,
    meta: Meta = MESSAGE,
    expiry: int | None = None,
    priority: int = 16,
) -> tuple[str, bytes]:
    """A complete bundle made by the real sealer: (bundle id, bytes)."""
    sealer = Sealer(
        sender=identity_of(sender) if isinstance(sender, Node) else sender,  # type: ignore[arg-type]
        recipient=identity_of(recipient).public if isinstance(recipient, Node) else recipient,
        meta=meta,
        expiry=int(time.time()) + HOUR if expiry is None else expiry,
        priority=priority,
        ephemeral_secret=secrets.token_bytes(32),
    )
    first = sealer.first_payload_bytes
    pieces = [payload[:first]]
    pieces += [
        payload[i : i + sealing.CHUNK_BYTES]
        for i in range(first, len(payload), sealing.CHUNK_BYTES)
    ]
    parts = [sealer.clear_part(len(payload))]
    parts += [sealer.seal(piece, final=i == len(pieces) - 1) for i, piece in enumerate(pieces)]
    return str(sealer.bundle_id), b"".join(parts)


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[offset % len(data)] ^= mask
    return bytes(changed)


def file_meta(name: str, size: int) -> Meta:
    return Meta(ContentKind.FILE, name, size)  # Meta.encode checks nothing: hostile on purpose


def folder(stick: Path, to: Node, sender: Node) -> Path:
    path = stick / "rise-dtn" / to.node_id / sender.node_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def rx(node: Node, sender: Node) -> Path:
    path = node.spool / "rx" / sender.node_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def tree(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


def stderr_lines(result: object) -> list[str]:
    text = result.stderr.decode()  # type: ignore[attr-defined]
    assert "Traceback" not in text
    return text.splitlines()


def quarantined(node: Node) -> dict[str, str]:
    """{file name: reason} of everything in the quarantine; every bundle has a reason."""
    directory = node.spool / "quarantine"
    bundles = {path.name for path in directory.glob("*.rsb")}
    reasons = {path.name[: -len(".reason")] for path in directory.glob("*.rsb.reason")}
    assert bundles == reasons
    return {name: (directory / f"{name}.reason").read_text() for name in bundles}


def send_good(alice: Node, tmp_path: Path, name: str = "good.txt") -> tuple[bytes, str]:
    """Queue a file with the real `rise-send`: (payload, bundle id)."""
    payload = b"the good one\n"
    (tmp_path / name).write_bytes(payload)
    result = alice.run("rise-send", str(tmp_path / name), "bob")
    return payload, result.stdout.decode().strip()


def acked_ids(stick: Path, receiver: Node, sender: Node) -> set[str]:
    """The bundle ids in the receiver's acks for the sender on the stick, verified."""
    ids: set[str] = set()
    me = NodeId.parse(sender.node_id)
    for path in folder(stick, sender, receiver).glob("*.rsa"):
        ack = Ack.decode(path.read_bytes(), sender=identity_of(receiver).public, recipient=me)
        ids.update(str(bundle_id) for bundle_id in ack.bundle_ids)
    return ids


# --- rejected by rise-xfer: the clear part -------------------------------------------------------


def test_xfer_quarantines_bad_clear_parts_and_takes_the_rest(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    carol = make_node(tmp_path, "carol")
    good, good_id = send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))
    _, sound = seal(alice, bob)
    clear = parse_clear(sound)
    longer = dataclasses.replace(
        clear.header, body_length=clear.header.body_length + 3 * sealing.SEALED_CHUNK_BYTES
    )
    oversized_header = canonical([b"\x00" * 200, 1, 1, 100])
    bad = {  # file name on the stick -> (bytes, what the reason must say)
        "truncated": (sound[: len(sound) // 2], "truncated"),
        "cut-in-header": (sound[:20], "truncated"),
        "empty": (b"", "truncated"),
        "magic": (flip(sound, 0), "bad magic"),
        "version": (b"RSB\x03" + sound[4:], "unsupported bundle version 3"),
        "version-255": (b"RSB\xff" + sound[4:], "unsupported bundle version 255"),
        "recipient-byte": (flip(sound, 10), "for another node"),
        "for-carol": (seal(alice, carol)[1], f"for another node ({carol.node_id})"),
        "big-header": (b"RSB\x01" + oversized_header + sound[-100:], "larger than 64 bytes"),
        "nested-header": (b"RSB\x01" + b"\x81" * 40 + b"\x00" + bytes(64), "nested too deeply"),
        "deep-header": (b"RSB\x01" + b"\x81" * 100_000, "bundle header"),
        "claims-more": (longer.encode() + sound[clear.size - 32 :], "header claims"),
        "trailing": (sound + b"\x00", "trailing bytes"),
        "garbage": (b"PK\x03\x04" + os.urandom(500), "bad magic"),
    }
    on_stick = folder(stick, bob, alice)
    for name, (data, _reason) in bad.items():
        (on_stick / f"{name}.rsb").write_bytes(data)
    expired_id, expired = seal(alice, bob, expiry=int(time.time()) - 10)
    (on_stick / f"{expired_id}.rsb").write_bytes(expired)

    result = bob.run("rise-xfer", "-q", "--toss", str(stick), check=False)

    assert result.returncode == 3
    lines = stderr_lines(result)
    assert len(lines) == len(bad), lines
    for name, (_data, reason) in bad.items():
        (line,) = [line for line in lines if f" {name}.rsb: " in line]
        assert line.startswith("rise-xfer: rejected: ")
        assert reason in line
    reasons = quarantined(bob)
    assert reasons.keys() == {f"{name}.rsb" for name in bad}
    for name, text in reasons.items():
        assert bad[name[:-4]][1] in text
        assert text.endswith("\n") and text.count("\n") == 1
        assert (bob.spool / "quarantine" / name).read_bytes() == bad[name[:-4]][0]
    assert not list(on_stick.glob("*.rsb"))  # bad ones moved off, the expired one removed
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
    assert not list((bob.spool / "rx").rglob("*.rsb"))
    assert acked_ids(stick, bob, alice) == {good_id}
    result = alice.run("rise-xfer", str(stick))
    assert "confirmed 1" in result.stderr.decode()


# --- rejected by rise-toss: the sealed part ------------------------------------------------------


@pytest.mark.parametrize("one_pass", [False, True], ids=["xfer then toss", "xfer --toss"])
def test_toss_quarantines_tampered_and_hostile_bundles_and_delivers_the_rest(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path, one_pass: bool
) -> None:
    """Each bad bundle is quarantined with its reason, the good one delivered: after a
    plain xfer by rise-toss, and with `rise-xfer --toss`, which delivers what it can as
    it reads the stick and leaves the rest to the same toss (one command, one pass)."""
    alice, bob = pair
    mallory, carol = make_node(tmp_path, "mallory"), make_node(tmp_path, "carol")
    good, good_id = send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))

    def sound() -> bytes:
        return seal(alice, bob)[1]

    clear = parse_clear(sound())
    priority_at = 4 + 1 + 17 + len(canonical(clear.header.expiry))  # array, recipient, expiry
    assert sound()[priority_at] == 16
    at_key, at_body = clear.size - 32, clear.size
    key_id, keyed = seal(alice, bob)
    _, two_chunks = seal(alice, bob, os.urandom(sealing.CHUNK_BYTES + 1000))
    _, for_carol = seal(alice, carol)
    rewritten = for_carol.replace(NodeId.parse(carol.node_id).raw, NodeId.parse(bob.node_id).raw)
    forger = types.SimpleNamespace(
        node_id=NodeId.parse(alice.node_id), sign=identity_of(mallory).sign
    )
    outside = tmp_path / "evil-absolute"
    hostile_names = {
        "dotdot": "../evil-up",
        "dotdot2": "../../evil-up2",
        "absolute": str(outside),
        "slash": "sub/evil",
        "backslash": "..\\evil-bs",
        "nul": "evil\x00.txt",
        "newline": "evil\nrise-toss: fake line",
        "dot": ".",
        "dotdot-only": "..",
        "empty-name": "",
        "dash": "-rf",
        "reserved": ".rise-tmp-evil",
        "c1": "evil\x9b",
        "long": "e" * 256,
        "huge-meta": "e" * 600,
    }
    fails = "fails authentication"
    cases: dict[str, tuple[bytes, str]] = {  # case -> (bundle, what the reason says)
        "header-byte": (flip(sound(), priority_at), f"chunk 0 {fails}"),
        "expiry-byte": (flip(sound(), priority_at - 1), f"chunk 0 {fails}"),
        "ephemeral-key": (flip(keyed, at_key + 7), f"chunk 0 {fails}"),
        "first-chunk": (flip(sound(), at_body + 3), f"chunk 0 {fails}"),
        "last-byte": (flip(sound(), -1, 0x80), f"chunk 0 {fails}"),
        "last-byte-of-2": (flip(two_chunks, -1), f"chunk 1 {fails}"),
        "wrong-key": (rewritten, f"chunk 0 {fails}"),
        "unknown-sender": (seal(carol, bob)[1], f"unknown sender {carol.node_id}"),
        "forged": (seal(forger, bob)[1], "bad signature"),
        "size-claim": (
            seal(alice, bob, b"short", meta=file_meta("claims.txt", 5000))[1],
            "payload is 5 bytes, the sender signed 5000",
        ),
        "size-claim-2": (
            seal(alice, bob, two_chunks[: 1 << 20], meta=file_meta("claims2.txt", 1 << 30))[1],
            "the sender signed 1073741824",
        ),
    }
    for case, name in hostile_names.items():
        reason = "longer than 255" if case == "long" else "unsafe file name"
        if case == "huge-meta":
            reason = "bundle metadata"
        cases[case] = (seal(alice, bob, b"x", meta=file_meta(name, 1))[1], reason)
    on_stick = folder(stick, bob, alice)
    ids = {}
    for case, (data, _reason) in cases.items():
        bundle_id = str(parse_clear(data).bundle_id)
        ids[bundle_id] = case
        # A byte flipped in E on the way changes the id; the file keeps its old name.
        name = key_id if case == "ephemeral-key" else bundle_id
        (on_stick / f"{name}.rsb").write_bytes(data)
    assert len(ids) == len(cases)
    # A folder of a node bob does not know stays on the stick, untouched.
    stranger_id, stranger_bundle = seal(mallory, bob)
    (folder(stick, bob, mallory) / f"{stranger_id}.rsb").write_bytes(stranger_bundle)

    acks = folder(stick, alice, bob)  # with --toss, the ack for the good one is left at once
    before = tree(tmp_path)
    if one_pass:
        result = bob.run("rise-xfer", "-q", "--toss", str(stick), check=False)
    else:
        result = bob.run("rise-xfer", "-q", str(stick), check=False)
        assert result.returncode == 0, result.stderr
        assert stderr_lines(result) == []
        assert len(list((bob.spool / "rx").rglob("*.rsb"))) == len(cases) + 1
        before = tree(tmp_path)
        result = bob.run("rise-toss", "-q", check=False)
    assert (folder(stick, bob, mallory) / f"{stranger_id}.rsb").exists()

    assert result.returncode == 3
    lines = stderr_lines(result)
    assert len(lines) == len(cases), lines
    read_off_the_stick = set()
    for bundle_id, case in ids.items():
        # With --toss, one over a sealed chunk (1 MiB) is proved bad as it is read off the
        # stick, by rise-xfer, which quarantines it there and then (never copied into rx/).
        read_bad = f"rise-xfer: rejected: {bundle_id}.rsb: "
        (line,) = [
            line for line in lines if line.startswith((f"rise-toss: {bundle_id}: ", read_bad))
        ]
        if one_pass and line.startswith(read_bad):
            read_off_the_stick.add(case)
        else:
            assert "rejected: " in line and line.endswith("(quarantined)")
        assert cases[case][1] in line, (case, line)
    assert read_off_the_stick == ({"last-byte-of-2", "size-claim-2"} if one_pass else set())
    reasons = quarantined(bob)
    assert reasons.keys() == {f"{bundle_id}.rsb" for bundle_id in ids}
    for name, text in reasons.items():
        assert cases[ids[name[:-4]]][1] in text
        assert text.count("\n") == 1
    assert not list((bob.spool / "rx").rglob("*.rsb"))

    # Nothing was written anywhere but the good file in incoming/alice/ (and the spool).
    def an_ack(path: Path) -> bool:
        return one_pass and (acks.is_relative_to(path) or path.is_relative_to(acks))

    written = {
        path
        for path in tree(tmp_path) - before
        if bob.spool not in (tmp_path / path).parents and not an_ack(tmp_path / path)
    }
    assert written == {Path("bob/incoming/alice"), Path("bob/incoming/alice/good.txt")}
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
    assert not outside.exists()
    assert not list(tmp_path.rglob("evil*"))
    assert not Path("/evil-up2").exists()
    assert not list((bob.incoming / "alice").glob(".rise-tmp-*"))
    # A second toss finds nothing left to do; only the good bundle is acked.
    assert bob.run("rise-toss", "-q").stderr == b""
    bob.run("rise-xfer", "-q", str(stick))
    assert acked_ids(stick, bob, alice) == {good_id}
    # The copies already rejected are taken off the stick, so that alice writes hers again.
    assert not list(on_stick.glob("*.rsb"))


# --- bad files straight in rx/: toss checks the clear part again ---------------------------------


def test_toss_rechecks_files_in_rx(pair: tuple[Node, Node], stick: Path, tmp_path: Path) -> None:
    alice, bob = pair
    good, good_id = send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    sound_id, sound = seal(alice, bob)
    clear = parse_clear(sound)
    longer = dataclasses.replace(clear.header, body_length=clear.header.body_length + 17)
    expired_id, expired = seal(alice, bob, expiry=int(time.time()) - 1)
    absurd = HopHeader(clear.header.recipient, clear.header.expiry, 1, 1 << 49)
    bad = {
        "truncated": (sound[:-1], "truncated", "quarantined"),
        "version": (b"RSB\x07" + sound[4:], "unsupported bundle version 7", "quarantined"),
        "claims-more": (longer.encode() + sound[clear.size - 32 :], "header claims", "quarantined"),
        "absurd-size": (absurd.encode() + sound[clear.size - 32 :], "bundle", "quarantined"),
    }
    folder_rx = rx(bob, alice)
    names = {}
    for case, (data, *_rest) in bad.items():
        name = secrets.token_hex(8)
        names[name] = case
        (folder_rx / f"{name}.rsb").write_bytes(data)
    # Dropped, and still acked by the id inside, whatever the file is called.
    (folder_rx / "copy-of-old.rsb").write_bytes(expired)
    assert sound_id not in names

    result = bob.run("rise-toss", check=False)

    assert result.returncode == 3
    lines = stderr_lines(result)
    assert [line for line in lines if line.startswith("delivered file from alice")]
    assert [line for line in lines if "dropped" in line] == ["copy-of-old: dropped: expired"]
    rejected = [line for line in lines if "rejected" in line]
    assert len(rejected) == len(bad)
    assert len(lines) == len(bad) + 2
    for name, case in names.items():
        (line,) = [line for line in rejected if line.startswith(f"rise-toss: {name}: ")]
        assert bad[case][1] in line
    assert quarantined(bob).keys() == {f"{name}.rsb" for name in names}
    assert not list(folder_rx.iterdir())
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
    result = bob.run("rise-xfer", "-q", str(stick), check=False)
    assert result.returncode == 0, result.stderr
    assert acked_ids(stick, bob, alice) == {good_id, expired_id}


# --- damaged on the stick: the sender's good copy gets through later ------------------------------


def test_bundle_damaged_on_the_stick_is_delivered_on_a_later_trip(
    pair: tuple[Node, Node], stick: Path
) -> None:
    alice, bob = pair
    texts = {b"chunk byte flipped", b"key byte flipped"}
    ids = [alice.run("rise-send", "-", "bob", input=text).stdout.decode().strip() for text in texts]
    alice.run("rise-xfer", "-q", str(stick))
    on_stick = folder(stick, bob, alice)
    for bundle_id, in_key in zip(ids, (False, True), strict=True):
        path = on_stick / f"{bundle_id}.rsb"
        data = path.read_bytes()
        offset = parse_clear(data).size - 20 if in_key else -1
        # Same name, same size, wrong bytes, changed in place (bit rot, or
        # whoever holds the stick): the stick is on the spools' filesystem,
        # and alice's own copy must not change with it.
        with open(path, "r+b") as handle:
            handle.seek(offset % len(data))
            handle.write(flip(data, offset)[offset % len(data) :][:1])

    trips = []
    for _trip in range(4):
        result = bob.run("rise-xfer", "-q", "--toss", str(stick), check=False)
        assert "Traceback" not in result.stderr.decode()
        trips.append(result.returncode)
        alice.run("rise-xfer", "-q", str(stick))
        inbox = bob.run("rise", "inbox", "--json").stdout
        if inbox.count(b'"bundle_id"') == 2:
            break
    else:
        raise AssertionError(f"never delivered; bob's xfer exit statuses: {trips}")
    assert trips[0] == 3  # the damaged copies were rejected first
    assert len(quarantined(bob)) == 2
    assert not list((bob.spool / "rx").rglob("*.rsb"))
    assert not list(on_stick.glob("*.rsb"))
    stat = alice.run("rise-stat", "--json").stdout
    assert b'"waiting": 0' in stat


# --- expired and replayed: dropped, not quarantined ----------------------------------------------


def test_expired_bundle_from_rise_send_is_dropped_everywhere(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    short_id = alice.run("rise-send", "--lifetime", "1", "-", "bob", input=b"soon stale")
    short = short_id.stdout.decode().strip()
    sent_at = int(time.time())
    copy = (alice.spool / "tx" / bob.node_id / f"{short}.rsb").read_bytes()
    good, _ = send_good(alice, tmp_path)
    deadline = time.monotonic() + 10
    while int(time.time()) <= sent_at + 1:  # expiry <= now: poll the clock, with a bound
        assert time.monotonic() < deadline
        time.sleep(0.05)

    result = alice.run("rise-xfer", str(stick))  # the sender gives up on it
    assert "expired 1" in result.stderr.decode()
    on_stick = folder(stick, bob, alice)
    assert not (on_stick / f"{short}.rsb").exists()
    (on_stick / f"{short}.rsb").write_bytes(copy)  # an old stick carries it anyway

    result = bob.run("rise-xfer", str(stick))
    lines = stderr_lines(result)
    assert [line for line in lines if "expired" in line and short in line]
    assert not (on_stick / f"{short}.rsb").exists()
    assert not (bob.spool / "rx" / alice.node_id / f"{short}.rsb").exists()

    (rx(bob, alice) / f"{short}.rsb").write_bytes(copy)  # or it waited in rx/ too long
    result = bob.run("rise-toss")
    lines = stderr_lines(result)
    assert f"{short}: dropped: expired" in lines
    assert len(lines) == 2  # the drop and the good delivery
    assert not list((bob.spool / "rx").rglob("*.rsb"))
    assert not quarantined(bob)
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
    assert bob.run("rise", "inbox", "--json").stdout.strip() == b"[]"


def test_replayed_bundle_is_delivered_once(
    pair: tuple[Node, Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    bundle_id = alice.run("rise-send", "-", "bob", input=b"once only").stdout.decode().strip()
    alice.run("rise-xfer", "-q", str(stick))
    on_stick = folder(stick, bob, alice) / f"{bundle_id}.rsb"
    replay = tmp_path / "replay.rsb"
    shutil.copyfile(on_stick, replay)
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    alice.run("rise-xfer", "-q", str(stick))
    assert not on_stick.exists()

    shutil.copyfile(replay, on_stick)  # the same bundle comes back on the stick
    good, _ = send_good(alice, tmp_path)
    alice.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-xfer", str(stick))
    assert "duplicates 1" in result.stderr.decode()
    assert not on_stick.exists()
    assert not (bob.spool / "rx" / alice.node_id / f"{bundle_id}.rsb").exists()

    shutil.copyfile(replay, rx(bob, alice) / f"{bundle_id}.rsb")  # and straight into rx/
    result = bob.run("rise-toss")
    lines = stderr_lines(result)
    assert f"{bundle_id}: dropped: duplicate of a bundle already delivered" in lines
    assert len(lines) == 2
    assert not list((bob.spool / "rx").rglob("*.rsb"))
    assert not quarantined(bob)
    assert (bob.incoming / "alice" / "good.txt").read_bytes() == good
    listing = bob.run("rise", "inbox", "--json").stdout
    assert listing.count(b'"bundle_id"') == 1


# --- cards ---------------------------------------------------------------------------------------


def armor_raw(data: bytes) -> bytes:
    """Armor arbitrary card bytes (no Name/Node headers, so they cannot disagree)."""
    encoded = base64.b64encode(data).decode()
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END, ""]).encode()


def test_bad_cards_are_refused_with_one_line(node_factory: object) -> None:
    alice, bob = node_factory("alice"), node_factory("bob")  # type: ignore[operator]
    text = alice.card()
    card = Card.from_text(text.decode())
    raw = card.to_bytes()
    fields = cbor2.loads(raw)
    renamed = canonical([fields[0], fields[1], "mallory", *fields[3:]])  # old signature
    lines = text.decode().splitlines()
    body = lines.index("") + 1
    cases = {
        "bad base64": text.replace(lines[body][:8].encode(), b"!!!!!!!!"),
        "truncated armor": text[: len(text) // 2] + f"\n{ARMOR_END}\n".encode(),
        "no armor": b"hello, this is my card\n",
        "empty": b"",
        "truncated binary": raw[:-10],
        "lying header": text.replace(b"Name: alice", b"Name: mallory"),
        "binary bad signature": flip(raw, len(raw) - 1),
        "armored bad signature": armor_raw(flip(raw, len(raw) - 5)),
        "renamed": armor_raw(renamed),
        "renamed binary": renamed,
        "not a card": canonical(["rise-dtn card", 1]),
        "too large": b"A" * (1 << 17),
    }
    for case, data in cases.items():
        result = bob.run("rise", "peer", "add", "-", input=data, check=False)
        assert result.returncode == 4, (case, result.returncode, result.stderr)
        assert len(stderr_lines(result)) == 1, (case, result.stderr)
        assert result.stderr.startswith(b"rise: "), case
        assert result.stdout == b"", case
    for case in ("binary bad signature", "armored bad signature", "renamed", "renamed binary"):
        result = bob.run("rise", "peer", "add", "-", input=cases[case], check=False)
        assert b"bad signature" in result.stderr, case
    assert bob.run("rise", "peer", "list", "--json").stdout.strip() == b"[]"
    assert not list((bob.home / "peers").iterdir())
    bob.run("rise", "peer", "add", "-", input=text)  # the real card still goes in
