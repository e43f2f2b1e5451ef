"""Run a command so that it and everything it starts can be stopped without a trace.

Usage: python tests/reaper.py COMMAND [ARG ...]   (started in a new session)

Direwolf's transmit pipe starts `sh` and `socat` children. Killed with
their process group, they are orphans, and on a machine whose init does
not reap orphans they stay as zombies forever. This wrapper makes itself
the child subreaper (prctl PR_SET_CHILD_SUBREAPER), so orphans of its
command become its children; on SIGTERM it SIGKILLs every other process of
its process group, reaps all of them and exits 0. It exits with the
command's status if the command ends on its own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def kill_group_but_me() -> None:
    group, me = os.getpgrp(), os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid_text, rest = stat.read_text().split(" ", 1)
            fields = rest.rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if int(fields[2]) == group and int(pid_text) != me:
            try:
                os.kill(int(pid_text), signal.SIGKILL)
            except ProcessLookupError:
                pass


def reap_all() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def stop(_number: int, _frame: object) -> None:
    kill_group_but_me()
    reap_all()
    sys.exit(0)


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    signal.signal(signal.SIGTERM, stop)
    command = subprocess.Popen(sys.argv[1:])
    status = command.wait()
    kill_group_but_me()
    reap_all()
    sys.exit(status)


if __name__ == "__main__":
    main()
