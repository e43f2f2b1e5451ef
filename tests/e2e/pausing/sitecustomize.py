"""Stops a `rise-daemon` at a named step of a transfer, for tests/e2e/test_online_relay_faults.py.

Python imports `sitecustomize` at start-up from a directory on PYTHONPATH.
A test starts one daemon with this directory there, E2E_PAUSE_AT set to a
step (JSON) and E2E_PAUSED to a file name. When that daemon reaches the
step it writes the file and stops itself with SIGSTOP, every thread at
once; the test waits for the file, then kills the daemon with SIGKILL. So
the kill lands in the chosen moment however loaded the machine is: a test
that watched the spools for a window of a few milliseconds in a 24 MiB
transfer missed it now and then.

The steps ("bytes" counts bundle bytes; paths are globs under the home):
  {"step": "partial", "bytes": N}   the live link writes its partial copy at
      offset N or past (its earlier writes settled, a checkpoint among them)
  {"step": "tmp", "path": GLOB, "bytes": N}   a file written atomically, whose
      tmp file matches GLOB, holds N bytes (the toss's forward or delivery)
  {"step": "data", "bytes": N}   the live link is about to send a DATA frame
      at offset N or past
  {"step": "stored", "bytes": N}   the live link heard STORED for a bundle of N
      bytes or more and has not released its copy
  {"step": "receipt", "after": PATH}   the toss is about to queue a receipt,
      PATH (under the home) being there

Only the process started with E2E_PAUSE_AT stops: the variables and this
directory are taken out of its environment, so its children never see
them, and a process forked from it does not stop. Nothing here changes
what the daemon does up to the step.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
from pathlib import Path
from typing import Any


def _without_this_directory(path_list: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.pathsep.join(
        entry for entry in path_list.split(os.pathsep) if os.path.abspath(entry) != here
    )


def _stop(marker: Path, pid: int) -> None:
    """Say so (the file appears whole, by rename), then stop the whole process."""
    if os.getpid() != pid:
        return  # a forked child
    written = marker.with_name(marker.name + ".writing")
    written.write_text(f"{pid}\n")
    os.replace(written, marker)
    os.kill(pid, signal.SIGSTOP)


def _arm(step: dict[str, Any], marker: Path) -> None:
    pid = os.getpid()
    kind = step["step"]
    if kind == "partial":
        from rise_dtn.carriers.live import link

        write_partial = link._PartialFile.write

        async def partial_write(self: Any, offset: int, payload: bytes) -> None:
            if offset >= step["bytes"]:
                await self.settle()
                _stop(marker, pid)
            await write_partial(self, offset, payload)

        link._PartialFile.write = partial_write  # type: ignore[method-assign]
    elif kind == "tmp":
        from rise_dtn.store import atomic

        write_atomic = atomic.AtomicFile.write

        def atomic_write(self: Any, data: Any) -> None:
            write_atomic(self, data)
            if self._written >= step["bytes"] and fnmatch.fnmatch(
                str(self.tmp), "*/" + step["path"]
            ):
                _stop(marker, pid)

        atomic.AtomicFile.write = atomic_write  # type: ignore[method-assign]
    elif kind == "data":
        from rise_dtn.core import session

        send_data = session.Session.send_data

        def data_sent(self: Any, event: Any) -> Any:
            if event.offset >= step["bytes"]:
                _stop(marker, pid)
            return send_data(self, event)

        session.Session.send_data = data_sent  # type: ignore[method-assign]
    elif kind == "stored":
        from rise_dtn.carriers.live import link

        on_stored = link.Link._on_stored

        def stored_heard(self: Any, stored: Any) -> None:
            path = self._offered.get(stored.bundle_id)
            if path is not None and path.stat().st_size >= step["bytes"]:
                _stop(marker, pid)
            on_stored(self, stored)

        link.Link._on_stored = stored_heard  # type: ignore[method-assign]
    elif kind == "receipt":
        from rise_dtn.node.toss import control

        send_receipt = control.send_receipt

        def receipt_sent(home: Any, **keywords: Any) -> None:
            if (home.path / step["after"]).exists():
                _stop(marker, pid)
            send_receipt(home, **keywords)

        control.send_receipt = receipt_sent
    else:
        raise ValueError(f"E2E_PAUSE_AT: no step {kind!r}")


def _from_environment() -> None:
    step, marker = os.environ.pop("E2E_PAUSE_AT", None), os.environ.pop("E2E_PAUSED", None)
    os.environ["PYTHONPATH"] = _without_this_directory(os.environ.get("PYTHONPATH", ""))
    if not os.environ["PYTHONPATH"]:
        del os.environ["PYTHONPATH"]
    if step is not None and marker is not None:
        _arm(json.loads(step), Path(marker))


_from_environment()
