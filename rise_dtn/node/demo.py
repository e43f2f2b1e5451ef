"""`rise demo`: a small network on this machine, built and driven step by step.

It uses the same services as the commands (init, peer add, send, xfer,
toss, stat), so a demo that works is a smoke test of the real thing.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from rise_dtn.core.errors import UsageError
from rise_dtn.node import inbox, routed, send, status, toss, xfer
from rise_dtn.node.home import CONFIG_FILE, Home

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


def _neighbours(first: Home, second: Home, *, now: int) -> None:
    """Two nodes that meet: swap cards and mark each other as relays where they relay."""
    _exchange_cards(first, second, now=now)
    for home, other in ((first, second), (second, first)):
        if other.config.relay.enabled:
            home.peers.set_relay(other.config.name, relay=True)


def _make_relay(home: Home) -> Home:
    config = home.path / CONFIG_FILE
    config.write_text(config.read_text().replace("# enabled = true", "enabled = true"))
    return Home.open(home.path)


def _carry(origin: Home, destination: Home, stick: Path, *, now: int, say: Say) -> None:
    """One trip of a stick: origin writes, destination takes and tosses, origin reads the acks."""
    report = xfer.exchange(origin, stick, move=False, now=now)
    say(f"  {origin.config.name}: rise-xfer {stick.name}  -> wrote {report.sent} bundle(s)")
    events: list[toss.TossEvent] = []
    report = xfer.exchange(
        destination,
        stick,
        move=False,
        now=now,
        toss=lambda: events.extend(toss.toss(destination, now=now)),
    )
    say(f"  {destination.config.name}: rise-xfer --toss {stick.name}  -> took {report.received}")
    for event in events:
        if isinstance(event, toss.Delivered):
            say(f"    delivered {event.kind.name.lower()} from {event.sender}: {event.path}")
        else:
            say(f"    {event.action}: {event.reason}")
    report = xfer.exchange(origin, stick, move=False, now=now)
    if report.released:
        say(f"  {origin.config.name}: rise-xfer {stick.name}  -> {report.released} confirmed")


def _prepare(directory: Path) -> None:
    marker = directory / DEMO_MARKER
    if directory.exists() and any(directory.iterdir()):
        if not marker.exists():
            raise UsageError(
                f"{directory} is not empty and not a rise demo; give an empty or new --dir"
            )
        shutil.rmtree(directory)  # our own previous demo network
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("built by `rise demo`; the next demo run replaces this directory\n")


def run(directory: Path, *, now: int, say: Say) -> None:
    """Build alice, two relays and bob; send a message and a file over the relays."""
    _prepare(directory)
    rng = random.SystemRandom()
    say(f"1. Four nodes in {directory} (rise init): alice, relay1, relay2, bob")
    alice = Home.create(directory / "alice", name="alice")
    relay1 = _make_relay(Home.create(directory / "relay1", name="relay1"))
    relay2 = _make_relay(Home.create(directory / "relay2", name="relay2"))
    bob = Home.create(directory / "bob", name="bob")
    chain = [alice, relay1, relay2, bob]
    for home in chain:
        say(f"  {home.config.name:<7} = {home.identity.node_id}")
    say("2. Neighbours swap cards (rise card | rise peer add --relay -):")
    say("   alice -- relay1 -- relay2 -- bob; relays have [relay] enabled = true")
    sticks = []
    for first, second in itertools.pairwise(chain):
        _neighbours(first, second, now=now)
        stick = directory / f"stick-{first.config.name}-{second.config.name}"
        stick.mkdir()
        sticks.append(stick)
    say("   alice and bob swap cards too; bob's card names relay2 as its relay (via)")
    bob_card = bob.card(now=now, via=[relay2.identity.node_id])
    alice.peers.add(bob_card, name=None, self_id=alice.identity.node_id, replace=True)
    bob.peers.add(alice.card(now=now), name=None, self_id=bob.identity.node_id, replace=True)
    say("3. relay1 tells alice which relays it knows (a map bundle, on the first stick)")
    _carry(relay1, alice, sticks[0], now=now, say=say)
    say("4. alice sends bob a message and a 3 MiB file over 2 relays (rise-send --hops 2)")
    bob_peer = alice.peers.find("bob")
    two_hops = routed.RouteOptions(hops=2)
    queued = routed.queue_routed(
        alice,
        bob_peer,
        io.BytesIO(b"Hello Bob, the meeting is at six.\n"),
        options=send.SendOptions(),
        route=two_hops,
        now=now,
        rng=rng,
    )
    names = {home.identity.node_id: home.config.name for home in chain}
    path = " -> ".join(names[relay] for relay in queued.copies[0].relays)
    say(f"  message {queued.bundle_id}: a route drawn for it alone: alice -> {path} -> bob")
    payload = os.urandom(DEMO_FILE_BYTES)
    source = directory / "photo.jpg"
    source.write_bytes(payload)
    with open(source, "rb") as handle:
        routed.queue_routed(
            alice,
            bob_peer,
            handle,
            options=send.SendOptions(name="photo.jpg"),
            route=two_hops,
            now=now,
            rng=rng,
        )
    say("5. The sticks travel hop by hop; each relay peels one layer (rise-xfer --toss)")
    for (origin, destination), stick in zip(itertools.pairwise(chain), sticks, strict=True):
        _carry(origin, destination, stick, now=now, say=say)
    delivered = bob.incoming_dir("alice") / "photo.jpg"
    same = hashlib.sha256(delivered.read_bytes()).digest() == hashlib.sha256(payload).digest()
    say(f"  bob's copy of photo.jpg is {'identical' if same else 'DIFFERENT'} (sha256)")
    for message in inbox.messages(bob):
        say(f"  bob's inbox: from {message.sender_name}: {message.path.read_text().strip()!r}")
    say("6. bob's signed receipts travel back over the relays")
    backwards = list(zip(itertools.pairwise(reversed(chain)), reversed(sticks), strict=True))
    for (origin, destination), stick in backwards:
        _carry(origin, destination, stick, now=now, say=say)
    say("7. alice sees both delivered (rise status):")
    for row in status.sent_status(alice, now=now):
        say(f"  {row.bundle_id}  {row.state}  via {' -> '.join(row.routes[0])}")
    say(f"Done. Try: RISE_HOME={directory / 'bob'} rise inbox")
    say(f"     and: RISE_HOME={directory / 'alice'} rise map")
    if not same:
        raise RuntimeError("the demo file arrived damaged")
