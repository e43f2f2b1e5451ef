"""Run one benchmark step as a real child process and measure it.

Each step is `subprocess.Popen` + `os.wait4(pid, 0)`: the wall time runs from
just before the fork to the moment the child has exited (interpreter start-up
and every fsync included), and wait4 hands back the child's rusage (CPU time,
blocks read and written). `sync` is called before the clock starts, so dirty
pages left by the previous step (or by writing the payload) are not flushed
on this step's time.

Peak memory needs care. Linux keeps a process's ru_maxrss across execve and
seeds it, at exec, with the high-water mark of the memory it had before: for
a child that subprocess starts with vfork, that is the *benchmark's* memory
(tens of MiB once it has hashed a payload), so wait4's ru_maxrss of a small
Go program reads as the benchmark's size. The step is therefore started
through GNU time (`/usr/bin/time -f %M`), a small C program that forks the
command from its own ~1 MiB and reports that child's ru_maxrss (from its own
wait4). Without GNU time the raw wait4 figure is kept and flagged as an upper
bound.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

GNU_TIME = "/usr/bin/time"


def gnu_time() -> str | None:
    """The GNU time binary if it works here (`-f %M -o FILE`), else None."""
    path = GNU_TIME if os.access(GNU_TIME, os.X_OK) else shutil.which("time")
    if path is None:
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        try:
            done = subprocess.run(
                [path, "-f", "%M", "-o", out.name, "true"],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        text = out.read().strip()
    return path if done.returncode == 0 and text.isdigit() else None


class StepFailed(RuntimeError):
    """A timed command exited non-zero: the benchmark stops rather than report nonsense."""


@dataclasses.dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    argv: list[str]
    seconds: float  # wall time, fork to exit
    max_rss_kib: int  # ru_maxrss of the command (Linux: KiB), see the module doc
    user_seconds: float
    system_seconds: float
    blocks_in: int  # ru_inblock, 512-byte units read from storage
    blocks_out: int  # ru_oublock, 512-byte units written to storage
    stdout: str

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds

    @property
    def max_rss_mib(self) -> float:
        return self.max_rss_kib / 1024


def run_step(
    step: str,
    argv: list[str],
    *,
    log_dir: Path,
    stdin: Path | None = None,
    env: dict[str, str] | None = None,
    time_binary: str | None = None,
) -> StepResult:
    """Run `argv` to completion, timed; raise StepFailed on a non-zero exit.

    With `time_binary` (GNU time) the command runs under it and its peak RSS
    is the one GNU time reports; otherwise it is wait4's (an upper bound).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    slug = step.replace(" ", "-")
    out_path, err_path = log_dir / f"{slug}.stdout", log_dir / f"{slug}.stderr"
    rss_path = log_dir / f"{slug}.rss"
    command = argv
    if time_binary is not None:
        command = [time_binary, "-f", "%M", "-o", str(rss_path), *argv]
    stdin_handle = open(stdin, "rb") if stdin is not None else None  # noqa: SIM115
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            os.sync()
            start = time.perf_counter()
            child = subprocess.Popen(
                command,
                stdin=stdin_handle if stdin_handle is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
            )
            _pid, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - start
            child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdin_handle is not None:
            stdin_handle.close()
    if child.returncode != 0:
        tail = err_path.read_text(errors="replace")[-2000:]
        raise StepFailed(
            f"{step}: {' '.join(argv)} exited with {child.returncode}\n{tail}".rstrip()
        )
    max_rss_kib = usage.ru_maxrss
    if time_binary is not None:
        max_rss_kib = int(rss_path.read_text().split()[-1])
    return StepResult(
        step=step,
        argv=argv,
        seconds=seconds,
        max_rss_kib=max_rss_kib,
        user_seconds=usage.ru_utime,
        system_seconds=usage.ru_stime,
        blocks_in=usage.ru_inblock,
        blocks_out=usage.ru_oublock,
        stdout=out_path.read_text(errors="replace"),
    )


def run_setup(argv: list[str], *, stdin: bytes | None = None) -> str:
    """An untimed set-up command; returns its stdout, raises with its stderr on failure."""
    done = subprocess.run(
        argv,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise StepFailed(
            f"set-up: {' '.join(argv)} exited with {done.returncode}\n"
            + done.stderr.decode(errors="replace")[-2000:]
        )
    return done.stdout.decode(errors="replace")
