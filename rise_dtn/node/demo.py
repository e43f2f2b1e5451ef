"""`rise demo`: a small network on this machine, built and driven step by step.

It uses the same services as the commands (init, peer add, send, xfer,
toss, stat), so a demo that works is a smoke test of the real thing.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from rise_dtn.core.errors import UsageError
from rise_dtn.node import inbox, send, status, toss, xfer
from rise_dtn.node.home import Home

Say = Callable[[str], None]
DEMO_MARKER = ".rise-demo"
DEMO_FILE_BYTES = 3 * (1 << 20) + 12345  # spans several chunks


def default_directory(cwd: Path) -> Path | None:
    """spool/demo/ when run from a checkout (its contents are git-ignored)."""
    if (cwd / "spool" / "README.md").is_file() and (cwd / "pyproject.toml").is_file():
        return cwd / "spool" / "demo"
    return None


def _exchange_cards(first: Home, second: Home, *, now: int) -> None:
    first.peers.add(second.card(now=now), name=None, self_id=first.identity.node_id, replace=True)
    second.peers.add(first.card(now=now), name=None, self_id=second.identity.node_id, replace=True)


def _carry(origin: Home, destination: Home, stick: Path, *, now: int, say: Say) -> None:
    report = xfer.exchange(origin, stick, move=False, now=now)
    say(f"  {origin.config.name}: rise-xfer {stick}  -> wrote {report.sent} bundle(s)")
    events: list[toss.TossEvent] = []
    report = xfer.exchange(
        destination,
        stick,
        move=False,
        now=now,
        toss=lambda: events.extend(toss.toss(destination, now=now)),
    )
    say(f"  {destination.config.name}: rise-xfer --toss {stick}  -> took {report.received}")
    for event in events:
        if isinstance(event, toss.Delivered):
            say(f"    delivered {event.kind.name.lower()} from {event.sender}: {event.path}")
        else:
            say(f"    {event.action}: {event.reason}")
    say(f"    and left signed acks for {origin.config.name} on the stick")
    report = xfer.exchange(origin, stick, move=False, now=now)
    say(f"  {origin.config.name}: rise-xfer {stick}  -> {report.released} bundle(s) confirmed")


def run(directory: Path, *, now: int, say: Say) -> None:
    """Build alice and bob in `directory`, pass a message and a file both ways."""
    marker = directory / DEMO_MARKER
    if directory.exists() and any(directory.iterdir()):
        if not marker.exists():
            raise UsageError(
                f"{directory} is not empty and not a rise demo; give an empty or new --dir"
            )
        shutil.rmtree(directory)  # our own previous demo network
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("built by `rise demo`; the next demo run replaces this directory\n")
    stick = directory / "usb-stick"
    stick.mkdir()
    say(f"1. Two nodes in {directory}: alice and bob (rise init)")
    alice = Home.create(directory / "alice", name="alice")
    bob = Home.create(directory / "bob", name="bob")
    say(f"  alice = {alice.identity.node_id}\n  bob   = {bob.identity.node_id}")
    say("2. They swap contact cards out of band (rise card | rise peer add -)")
    _exchange_cards(alice, bob, now=now)
    say("3. alice queues a message and a 3 MiB file for bob (rise-send)")
    bob_peer = alice.peers.find("bob")
    queued = send.queue(
        alice,
        bob_peer,
        io.BytesIO(b"Hello Bob, the meeting is at six.\n"),
        options=send.SendOptions(),
        now=now,
    )
    say(f"  message bundle {queued.bundle_id}: {queued.bundle_bytes} bytes on the wire")
    payload = os.urandom(DEMO_FILE_BYTES)
    source = directory / "photo.jpg"
    source.write_bytes(payload)
    with open(source, "rb") as handle:
        queued = send.queue(
            alice, bob_peer, handle, options=send.SendOptions(name="photo.jpg"), now=now
        )
    say(f"  file bundle {queued.bundle_id}: {queued.bundle_bytes} bytes")
    say("4. The USB stick goes from alice to bob and back (rise-xfer, rise-toss)")
    _carry(alice, bob, stick, now=now, say=say)
    delivered = bob.incoming_dir("alice") / "photo.jpg"
    same = hashlib.sha256(delivered.read_bytes()).digest() == hashlib.sha256(payload).digest()
    say(f"  bob's copy of photo.jpg is {'identical' if same else 'DIFFERENT'} (sha256)")
    for message in inbox.messages(bob):
        say(f"  bob's inbox: from {message.sender_name}: {message.path.read_text().strip()!r}")
    say("5. bob answers (echo ... | rise-send - alice) and the stick goes round again")
    send.queue(
        bob,
        bob.peers.find("alice"),
        io.BytesIO(b"See you at six. -- Bob\n"),
        options=send.SendOptions(),
        now=now,
    )
    _carry(bob, alice, stick, now=now, say=say)
    for message in inbox.messages(alice):
        say(f"  alice's inbox: from {message.sender_name}: {message.path.read_text().strip()!r}")
    say("6. Nothing is left waiting (rise-stat):")
    for home in (alice, bob):
        for row in status.status(home).neighbours:
            say(
                f"  {home.config.name} -> {row.name}: waiting {row.waiting}, "
                f"delivered {row.delivered}"
            )
    say(f"Done. Try: RISE_HOME={directory / 'bob'} rise inbox")
    if not same:
        raise RuntimeError("the demo file arrived damaged")
