"""The per-item lock (locks.claimed): one holder at a time, and no lock files left behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

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
