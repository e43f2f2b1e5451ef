"""What the figures were measured on: CPU, cores, memory, kernel, filesystem, versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def _first(path: str, key: str) -> str | None:
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        return None
    return None


def _output(argv: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = (done.stdout or done.stderr).strip()
    return text if done.returncode == 0 and text else None


def filesystem(path: Path) -> str:
    """'ext4 on /dev/vda mounted at /' for the mount holding `path`."""
    target = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts") as handle:
            for line in handle:
                device, mount, kind, *_rest = line.split()
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best[0]):
                    best = (mount, kind, device)
    except OSError:
        return "?"
    return f"{best[1]} on {best[2]} mounted at {best[0]}"


def rise_version(bin_dir: Path) -> str:
    text = _output([str(bin_dir / "rise"), "--version"])
    if text:
        return text.split()[-1]
    try:
        return metadata.version("rise-dtn")
    except metadata.PackageNotFoundError:
        return "?"


def nncp_version() -> str | None:
    if shutil.which("nncp-file") is None:
        return None
    text = _output(["nncp-file", "-version"])
    return text.splitlines()[0] if text else "?"


def git_revision(repo: Path) -> str | None:
    head = _output(["git", "rev-parse", "--short", "HEAD"], cwd=repo)
    if head is None:
        return None
    dirty = _output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe(bin_dir: Path, workdir: Path, repo: Path) -> dict[str, object]:
    memory = _first("/proc/meminfo", "MemTotal")  # "24684092 kB"
    if memory and memory.split()[0].isdigit():
        memory = f"{int(memory.split()[0]) / (1 << 20):.1f} GiB"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    try:
        pynacl = metadata.version("pynacl")
    except metadata.PackageNotFoundError:
        pynacl = "?"
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "?",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "load_average_at_start": load_average(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "rise_dtn": rise_version(bin_dir),
        "pynacl": pynacl,
        "git": git_revision(repo),
        "nncp": nncp_version(),
        "workdir": str(workdir),
        "filesystem": filesystem(workdir),
    }
