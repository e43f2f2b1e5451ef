"""The contract every carrier passes: one suite, real I/O, parametrised over the installed carriers.

A *rig* puts one carrier between real nodes (real homes in a temporary
directory): a real directory for the directory carrier (on another file
system, /dev/shm, where there is one), real 127.0.0.1 sockets for TCP, real
subprocess pipes to the installed `rise-daemon --stdio` for the stream
carrier. The cases know nothing of the carrier; they queue bundles, run
sessions through the rig, toss, and look at both spools:

- offer, receive: what each side queued arrives intact, both ways;
- confirm: the sender's tx/ copy goes only once the receiver holds it
  durably (checked after every session, cut or not);
- resume: a session cut at byte 0, 1, the middle or the last byte of the
  bundle still ends, later, in exactly one intact delivery;
- duplicate: a bundle the receiver already delivered, offered again, is
  confirmed again and delivered once;
- expired: refused, with a one-line reason;
- garbage: raw garbage on the carrier and a bundle with a damaged body
  are refused (quarantined), with one-line reasons, and the rest goes on;
- wrong recipient: a bundle for another node is quarantined, never delivered;
- unknown sender: nothing from a node the receiver does not know gets in.

To add a carrier, write a rig (`Rig.session` below, with its cut and its
garbage) and add it to RIGS in test_contract.py, which fails for an
installed carrier that has none. A case a carrier cannot pass yet is named
in MISSING with the reason, and skipped, never marked xfail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from pathlib import Path
from typing import Protocol

from rise_dtn.carriers.base import Exchanged
from rise_dtn.core.identity import NodeId
from rise_dtn.node.home import Home
from rise_dtn.node.peers import Peer
from rise_dtn.node.send import send
from rise_dtn.node.toss import toss

# Cases a carrier does not pass yet, each with why. The lead removes an
# entry when the work it waits for is merged.
MISSING: dict[tuple[str, str], str] = {}

CASES = (
    "offer",
    "receive",
    "confirm",
    "resume-at-0",
    "resume-at-1",
    "resume-at-mid",
    "resume-at-last",
    "duplicate",
    "expired",
    "garbage",
    "wrong-recipient",
    "unknown-sender",
)
PAYLOAD_BYTES = 300_000  # large enough that a cut in the middle falls mid-bundle on every rig
ROUNDS = 4  # a place needs three rounds to confirm (bundle, toss, ack); links need one


@dataclasses.dataclass
class Session:
    """What one session did: the caller's report or its one-line error, the answerer's lines."""

    caller: Exchanged | None
    error: str | None
    answerer_lines: list[str]


class Rig(Protocol):
    """One carrier between real nodes (test_contract.py has one per carrier)."""

    def session(
        self,
        caller: Home,
        answerer: Home,
        *,
        now: int | None = None,
        cut_at: int | None = None,
        garbage: bytes | None = None,
    ) -> Session:
        """One exchange that `caller` starts and `answerer` takes part in.

        `now`: the caller's clock (default: the real one; the answerer's is
        always real). `cut_at`: cut what the caller sends after this many
        bytes (a link dropped, a stick pulled). `garbage`: first put these
        bytes on the carrier for the answerer, as an attacker could.
        RiseErrors of the caller are caught into `Session.error`.
        """
        ...

    def close(self) -> None: ...


@dataclasses.dataclass
class Network:
    alice: Home
    bob: Home
    carol: Home  # alice knows carol; bob does not
    eve: Home  # eve knows bob; bob does not know eve


def network(base: Path) -> Network:
    homes = {name: Home.create(base / name, name=name) for name in ("alice", "bob", "carol", "eve")}
    now = int(time.time())

    def add(home: str, other: str) -> None:
        homes[home].peers.add(
            homes[other].card(now=now),
            name=None,
            self_id=homes[home].identity.node_id,
            replace=False,
        )

    for home, other in (("alice", "bob"), ("bob", "alice"), ("alice", "carol"), ("eve", "bob")):
        add(home, other)
    return Network(**homes)


def peer_of(home: Home, other: Home) -> Peer | None:
    wanted = other.identity.node_id
    return next((peer for peer in home.peers.all() if peer.node_id == wanted), None)


def queue(
    sender: Home, to: Home, payload: bytes, name: str, *, now: int | None = None, lifetime: int = 0
) -> str:
    """Queue a file for `to`; its bundle id."""
    peer = peer_of(sender, to)
    assert peer is not None
    options = send.SendOptions(name=name, lifetime_seconds=lifetime or None)
    queued = send.queue(
        sender,
        peer,
        io.BytesIO(payload),
        options=options,
        now=now if now is not None else int(time.time()),
    )
    return str(queued.bundle_id)


def queued(home: Home, to: Home) -> dict[str, Path]:
    folder = home.spool.tx_dir(to.identity.node_id)
    return (
        {path.name.split(".")[0]: path for path in folder.glob("*.rsb")} if folder.is_dir() else {}
    )


def received(home: Home) -> set[str]:
    return {path.name.split(".")[0] for path in home.spool.rx.rglob("*.rsb")}


def quarantined(home: Home) -> dict[str, str]:
    """Bundle file stem -> its one-line reason."""
    return {
        path.name.split(".")[0]: path.read_text(encoding="utf-8")
        for path in home.spool.quarantine_dir.glob("*.reason")
    }


def delivered(home: Home, sender: str) -> dict[str, bytes]:
    """The files delivered from `sender` (local name) -> their SHA-256."""
    folder = home.incoming_dir(sender)
    if not folder.is_dir():
        return {}
    return {path.name: hashlib.sha256(path.read_bytes()).digest() for path in folder.iterdir()}


def was_delivered(home: Home, bundle_id: str) -> bool:
    seen = home.index.seen_state(bundle_id)
    return seen is not None and seen.state == "delivered"


def toss_all(*homes: Home) -> None:
    for home in homes:
        toss.toss(home, now=int(time.time()))


def check_confirmed_only_when_held(sender: Home, receiver: Home, ids: set[str]) -> None:
    """The confirm rule: each id gone from the sender's tx/ is held by the receiver
    (durable in rx/, delivered, or set aside in quarantine)."""
    waiting = set(queued(sender, receiver))
    held = received(receiver) | set(quarantined(receiver))
    for bundle_id in ids - waiting:
        assert bundle_id in held or was_delivered(receiver, bundle_id), (
            f"{bundle_id} left the sender's tx/ before the receiver held it"
        )


def check_lines(session: Session) -> None:
    """Whatever went wrong was said in one line each, never a traceback."""
    lines = [*session.answerer_lines, *([session.error] if session.error else [])]
    if session.caller is not None:
        lines += [*session.caller.rejected, *session.caller.notes]
    for line in lines:
        assert "Traceback" not in line and "\n" not in line.strip(), line


def settle(rig: Rig, sender: Home, receiver: Home, ids: set[str]) -> list[Session]:
    """Sessions (each followed by both tosses) until neither side has anything queued."""
    sessions = []
    for _round in range(ROUNDS):
        session = rig.session(sender, receiver)
        sessions.append(session)
        check_lines(session)
        check_confirmed_only_when_held(sender, receiver, ids)
        toss_all(receiver, sender)
        if not queued(sender, receiver) and not queued(receiver, sender):
            break
    return sessions


def payload(seed: str, size: int = PAYLOAD_BYTES) -> bytes:
    """Deterministic bytes that differ per seed (no two files alike)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=64).digest()
        counter += 1
    return bytes(out[:size])


def node_id(home: Home) -> NodeId:
    return home.identity.node_id


# The cases. Each takes a rig and a fresh network; `run_case` picks one by name.


def case_offer(rig: Rig, net: Network) -> None:
    """Everything queued is offered and arrives intact, whatever its priority."""
    files = {
        f"file-{number}.bin": payload(f"offer{number}", 1000 + number * 70_000)
        for number in range(3)
    }
    ids = {queue(net.alice, net.bob, data, name) for name, data in files.items()}
    settle(rig, net.alice, net.bob, ids)
    assert delivered(net.bob, "alice") == {
        name: hashlib.sha256(data).digest() for name, data in files.items()
    }
    assert not queued(net.alice, net.bob)


def case_receive(rig: Rig, net: Network) -> None:
    """The caller also receives what the answerer has for it, in the same exchange."""
    mine = payload("from-alice")
    theirs = payload("from-bob", 50_000)
    ids = {queue(net.alice, net.bob, mine, "mine.bin")}
    back = {queue(net.bob, net.alice, theirs, "theirs.bin")}
    settle(rig, net.alice, net.bob, ids)
    check_confirmed_only_when_held(net.bob, net.alice, back)
    assert delivered(net.alice, "bob") == {"theirs.bin": hashlib.sha256(theirs).digest()}
    assert delivered(net.bob, "alice") == {"mine.bin": hashlib.sha256(mine).digest()}
    assert not queued(net.bob, net.alice)


def case_confirm(rig: Rig, net: Network) -> None:
    """The sender keeps its copy until the receiver holds it, then lets it go."""
    data = payload("confirm")
    bundle_id = queue(net.alice, net.bob, data, "confirm.bin")
    first = rig.session(net.alice, net.bob)
    check_lines(first)
    check_confirmed_only_when_held(net.alice, net.bob, {bundle_id})
    settle(rig, net.alice, net.bob, {bundle_id})
    assert bundle_id not in queued(net.alice, net.bob)
    assert was_delivered(net.bob, bundle_id)


def case_resume(rig: Rig, net: Network, where: str) -> None:
    """A cut at any byte: the next sessions deliver the bundle once, intact."""
    data = payload("resume")
    bundle_id = queue(net.alice, net.bob, data, "resume.bin")
    size = queued(net.alice, net.bob)[bundle_id].stat().st_size
    cut_at = {"0": 0, "1": 1, "mid": size // 2, "last": size - 1}[where]
    cut = rig.session(net.alice, net.bob, cut_at=cut_at)
    check_lines(cut)
    check_confirmed_only_when_held(net.alice, net.bob, {bundle_id})
    # Every cut point falls before the bundle's last byte (a link's stream
    # carries its handshake and framing first): the cut really cut it.
    assert bundle_id not in received(net.bob) and bundle_id in queued(net.alice, net.bob)
    toss_all(net.bob)
    settle(rig, net.alice, net.bob, {bundle_id})
    assert delivered(net.bob, "alice") == {"resume.bin": hashlib.sha256(data).digest()}
    assert not queued(net.alice, net.bob)


def case_duplicate(rig: Rig, net: Network) -> None:
    """A bundle offered again after its delivery (our confirmation was lost) is
    confirmed again and delivered once."""
    data = payload("duplicate")
    bundle_id = queue(net.alice, net.bob, data, "once.bin")
    path = queued(net.alice, net.bob)[bundle_id]
    copy = path.read_bytes()
    settle(rig, net.alice, net.bob, {bundle_id})
    assert not path.exists()
    path.write_bytes(copy)  # as if the release had never happened
    settle(rig, net.alice, net.bob, {bundle_id})
    assert delivered(net.bob, "alice") == {"once.bin": hashlib.sha256(data).digest()}
    assert not queued(net.alice, net.bob), "the duplicate was never confirmed"


def case_expired(rig: Rig, net: Network) -> None:
    """A bundle whose lifetime ended is refused by the receiver, with one line.

    The sender's clock lags two days, so it still offers the bundle: the
    receiver's own check is what is tested.
    """
    past = int(time.time()) - 3 * 86400
    bundle_id = queue(
        net.alice, net.bob, payload("expired", 5000), "late.bin", now=past, lifetime=86400
    )
    session = rig.session(net.alice, net.bob, now=past + 60)
    check_lines(session)
    assert session.error is None, session.error
    assert bundle_id not in received(net.bob), "an expired bundle was admitted"
    toss_all(net.bob)
    assert not was_delivered(net.bob, bundle_id)
    assert any("expired" in line for line in session.answerer_lines), session.answerer_lines


def case_garbage(rig: Rig, net: Network) -> None:
    """Garbage on the carrier and a bundle with a damaged body are refused with one
    line each; the good bundle in the same session still arrives."""
    good = payload("good", 20_000)
    good_id = queue(net.alice, net.bob, good, "good.bin")
    damaged_id = queue(net.alice, net.bob, payload("damaged", 20_000), "damaged.bin")
    path = queued(net.alice, net.bob)[damaged_id]
    body = bytearray(path.read_bytes())
    body[-40:-8] = bytes(byte ^ 0xFF for byte in body[-40:-8])  # the last chunk and its tag
    path.write_bytes(bytes(body))
    noise = payload("noise", 4096)
    first = rig.session(net.alice, net.bob, garbage=noise)
    check_lines(first)
    assert first.error is None, first.error
    toss_all(net.bob)
    settle(rig, net.alice, net.bob, {good_id})
    assert delivered(net.bob, "alice") == {"good.bin": hashlib.sha256(good).digest()}
    assert not was_delivered(net.bob, damaged_id)
    reasons = quarantined(net.bob)
    assert damaged_id in reasons and reasons[damaged_id].count("\n") <= 1, reasons
    assert not (received(net.bob) - {good_id}), "garbage was left in rx/"


def case_wrong_recipient(rig: Rig, net: Network) -> None:
    """A bundle for another node is set aside with its reason, never delivered."""
    stray_id = queue(net.alice, net.carol, payload("for-carol", 8000), "carol.bin")
    stray = queued(net.alice, net.carol)[stray_id]
    target = net.alice.spool.tx_dir(node_id(net.bob)) / stray.name
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stray.rename(target)  # a bug or a tampered spool puts it in bob's queue
    good = payload("beside", 8000)
    good_id = queue(net.alice, net.bob, good, "beside.bin")
    settle(rig, net.alice, net.bob, {good_id})
    assert not was_delivered(net.bob, stray_id)
    assert stray_id not in received(net.bob)
    reasons = quarantined(net.bob)
    assert stray_id in reasons and reasons[stray_id].count("\n") <= 1, reasons
    assert delivered(net.bob, "alice") == {"beside.bin": hashlib.sha256(good).digest()}


def case_unknown_sender(rig: Rig, net: Network) -> None:
    """Default deny: a node the receiver never added gets nothing in, and nothing of
    its own confirmed."""
    bundle_id = queue(net.eve, net.bob, payload("from-eve", 8000), "eve.bin")
    session = rig.session(net.eve, net.bob)
    check_lines(session)
    toss_all(net.bob)
    assert not received(net.bob)
    assert not was_delivered(net.bob, bundle_id)
    assert not delivered(net.bob, "eve")
    assert bundle_id in queued(net.eve, net.bob), "an unknown node's bundle was confirmed"


def run_case(case: str, rig: Rig, net: Network) -> None:
    if case.startswith("resume-at-"):
        case_resume(rig, net, case.removeprefix("resume-at-"))
        return
    cases = {
        "offer": case_offer,
        "receive": case_receive,
        "confirm": case_confirm,
        "duplicate": case_duplicate,
        "expired": case_expired,
        "garbage": case_garbage,
        "wrong-recipient": case_wrong_recipient,
        "unknown-sender": case_unknown_sender,
    }
    cases[case](rig, net)
