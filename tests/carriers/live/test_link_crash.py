"""kill -9 of a live link's receiving end at each write step while the delivery streamed as it
arrives proves a large bundle bad (and a good one arrives beside it): no good bundle lost,
none delivered twice, and what quarantine keeps stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rise_dtn.carriers.live import link as link_module
from rise_dtn.node.home import Home
from rise_dtn.node.toss import toss
from rise_dtn.store import spool
from tests.carriers.live.test_link import make_pair, queue, session, streaming
from tests.e2e.test_crash import WriteSteps, crash_in_child, stepping

MIB = 1 << 20


@contextlib.contextmanager
def opened(path: Path) -> Iterator[Home]:
    home = Home.open(path)
    try:
        yield home
    finally:
        home.close()


@contextlib.contextmanager
def stepping_link(steps: WriteSteps) -> Iterator[WriteSteps]:
    """stepping() and the link's own writes (checkpoints) and the spool's (quarantine)."""
    saved = link_module.os, spool.os
    link_module.os = spool.os = steps  # type: ignore[assignment]
    try:
        with stepping(steps):
            yield steps
    finally:
        link_module.os, spool.os = saved


def one_session(base: Path) -> None:
    with opened(base / "alice") as alice, opened(base / "bob") as bob:
        asyncio.run(session(alice, bob, stream=streaming(bob, [])))


def crash_in_session(base: Path, at: int) -> bool:
    """A session in a forked child, SIGKILLed just before write step `at`; True if killed."""
    return crash_in_child(lambda: one_session(base), at, route=stepping_link)


def prepare(base: Path) -> bytes:
    """alice queues a good file and, after it, a large one damaged in a middle chunk."""
    alice, bob = make_pair(base)
    try:
        good = random.Random(1).randbytes(2 * MIB + 11)
        queue(alice, "bob", good, "good.bin")
        queue(alice, "bob", random.Random(2).randbytes(link_module.STREAM_BYTES + MIB), "bad.bin")
        bad = max(alice.spool.tx.rglob("*.rsb"), key=lambda path: path.stat().st_size)
        with open(bad, "r+b") as handle:
            handle.seek(bad.stat().st_size // 2)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 1]))
    finally:
        alice.close()
        bob.close()
    return good


def recover(base: Path) -> None:
    """Sessions and tosses, as a daemon would run them, until alice holds nothing."""
    for _round in range(4):
        one_session(base)
        with opened(base / "bob") as bob:
            toss.toss(bob, now=int(time.time()))
        with opened(base / "alice") as alice:
            if not list(alice.spool.tx.rglob("*.rsb")):
                return
    raise AssertionError("alice still holds bundles after 4 sessions")


@pytest.mark.slow
def test_a_crash_at_each_write_step_of_a_bad_streamed_bundle(tmp_path: Path) -> None:
    for at in range(1, 300):
        base = tmp_path / f"step{at}"
        good = prepare(base)
        crashed = crash_in_session(base, at)
        recover(base)
        incoming = base / "bob" / "incoming" / "alice"
        got = {path.name: hashlib.sha256(path.read_bytes()).digest() for path in incoming.iterdir()}
        assert got == {"good.bin": hashlib.sha256(good).digest()}, at  # once, and nothing bad
        kept = [
            path
            for path in (base / "bob" / "spool" / "quarantine").iterdir()
            if path.suffix != spool.REASON_SUFFIX
        ]
        assert kept, at  # the bad one is set aside, with its reason...
        assert all(path.stat().st_size <= MIB for path in kept), at  # ...bounded
        assert not list((base / "bob" / "spool" / "rx").rglob("*.rsb")), at
        if not crashed:
            assert at > 2, "the session took no write step at all"
            return
    raise AssertionError("the session never finished")
