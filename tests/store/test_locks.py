"""The per-item lock (locks.claimed): one holder at a time, and no lock files left behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from rise_dtn.core.errors import BusyError
from rise_dtn.store import locks


def test_a_claimed_name_is_refused_to_a_second_claimant_and_removed_after(tmp_path: Path) -> None:
    lock = tmp_path / "deliver-x.lock"
    with locks.claimed(lock) as first:
        assert first
        # Another open file: flock conflicts within a process as across processes.
        with locks.claimed(lock) as second:
            assert not second
        assert lock.exists()
    assert not lock.exists()
    with locks.claimed(lock) as again:
        assert again


def test_a_claimant_holding_the_old_file_of_a_removed_lock_does_not_hold_the_name(
    tmp_path: Path,
) -> None:
    """Opened just before the holder removed it: its flock succeeds on a file no name leads
    to, while a newcomer makes and locks a new one. Only the newcomer may go on."""
    lock = tmp_path / "deliver-x.lock"
    late = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)  # the old file, opened early
    try:
        with locks.claimed(lock) as newcomer:
            assert newcomer
        assert not lock.exists()
        fcntl.flock(late, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now: its holder is done
        with locks.claimed(lock) as newest:
            assert newest  # a new file under the name: the late opener's file is not it
    finally:
        os.close(late)


def _opened_by_this_process(path: Path) -> int:
    """How many descriptors of this process are open on `path`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


def test_a_waiting_holder_never_shares_a_name_that_a_claimant_removed(tmp_path: Path) -> None:
    """locks.held and locks.claimed on one name (a reassembly: each part's steps hold it,
    each toss's sweep claims it and removes the file). A holder that opened the file and
    waited while a claimant had it then locks a file no name leads to; a newcomer makes a
    new file under the name. Both went on at once: two tosses could both find the last
    part stored and deliver the file twice (f.bin and f.1.bin). Only one may go on."""
    lock = tmp_path / "parts-x.lock"
    inside, leave = threading.Event(), threading.Event()

    def waiter() -> None:
        with locks.held(lock, wait_seconds=60):
            inside.set()
            leave.wait(60)

    thread = threading.Thread(target=waiter)
    try:
        with locks.claimed(lock) as claimant:
            assert claimant
            thread.start()
            deadline = time.monotonic() + 60
            while _opened_by_this_process(lock) < 2:  # the waiter has the claimant's file open
                assert time.monotonic() < deadline
                time.sleep(0.01)
        assert inside.wait(60)
        with pytest.raises(BusyError), locks.held(lock):
            pass  # the newcomer must wait for the waiter
    finally:
        leave.set()
        thread.join(60)
    with locks.held(lock):
        pass  # free again once the waiter is done
