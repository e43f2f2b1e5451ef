"""The daemon's warm send worker always stops when the daemon stops."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# Started and stopped at once, again and again, as a daemon that cannot bind
# its port does: a SIGTERM landing in the new worker's at-fork hooks was
# ignored there, and the daemon then waited for the worker for ever.
SCRIPT = """
import logging, signal, sys
from pathlib import Path
from rise_dtn.cli import main
from rise_dtn.node import warm
logging.getLogger("rise").addHandler(logging.StreamHandler())  # the hooks have a lock to reinit
signal.signal(signal.SIGTERM, main._terminate)  # as every rise command runs
home = Path(sys.argv[1])
for _ in range(int(sys.argv[2])):
    warm.stop(home, warm.start(home, command=lambda argv: 0, preload=lambda: None))
print("stopped every time")
"""


def test_a_worker_stopped_right_after_it_started_always_stops(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), "300"],
        capture_output=True,
        timeout=120,  # a hang fails here instead of stopping the suite
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    assert result.stdout.decode().strip() == "stopped every time"
    assert not (tmp_path / "send.sock").exists()


SPARE_SCRIPT = """
import os, sys, time
from pathlib import Path
from rise_dtn.node import warm
home = Path(sys.argv[1])
worker = warm.start(home, command=lambda argv: 0, preload=lambda: None)
children = Path(f"/proc/{worker}/task/{worker}/children")
deadline = time.monotonic() + 60
while not children.read_text().split():
    assert time.monotonic() < deadline, "the worker never forked its spare"
    time.sleep(0.01)
(spare,) = children.read_text().split()
warm.stop(home, worker)
print(spare)
"""


def test_the_spare_child_goes_with_the_worker(tmp_path: Path) -> None:
    """The child the worker forks ahead (waiting for the next rise-send) must not outlive
    it: an idle spare dies with the worker, as the worker dies with the daemon."""
    result = subprocess.run(
        [sys.executable, "-c", SPARE_SCRIPT, str(tmp_path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    stat = Path(f"/proc/{int(result.stdout)}/stat")
    deadline = time.monotonic() + 60  # bounded: the kernel delivers the death signal
    while True:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # dead, waiting for init to reap it
        except FileNotFoundError:
            break  # dead and reaped
        assert time.monotonic() < deadline, "the spare outlived its worker"
        time.sleep(0.01)
