"""The commands as a user installs them: this checkout built into a wheel, in a venv of its own.

The dev venv (`./dev setup`) is an editable install: its import hook and
setuptools' distutils-precedence.pth cost every command ~11 ms of start-up
that `pip install rise-dtn` does not (a plain venv's `python -c pass` takes
~9 ms here, the dev venv's ~20 ms). For the latency figures that is a third
of the target, so they are measured on a wheel install by default.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class InstallFailed(RuntimeError):
    pass


def wheel_venv(where: Path) -> Path:
    """Build this checkout's wheel, install it with its dependencies into a new venv under
    `where`; its bin/ directory. The dependencies come from pip's index or cache, as a
    user's would."""
    wheels = where / "wheel"
    venv = where / "venv"
    print(f"building a wheel of {REPO} and installing it into {venv}", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        [sys.executable, "-m", "venv", str(venv)],
    ]
    # setuptools builds in the checkout's build/ and never empties it: a module deleted
    # from the tree since the last build would still go into the wheel.
    shutil.rmtree(REPO / "build", ignore_errors=True)
    for argv in steps:
        _run(argv)
    built = sorted(wheels.glob("rise_dtn-*.whl"))
    if len(built) != 1:
        raise InstallFailed(f"expected one rise_dtn wheel in {wheels}, found {len(built)}")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(built[0])])
    return venv / "bin"


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InstallFailed(
            f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )


def add_option(parser: argparse.ArgumentParser) -> None:
    """--install wheel|dev, the same in every benchmark that times the rise commands."""
    parser.add_argument(
        "--install",
        choices=("wheel", "dev"),
        default="wheel",
        help="the rise commands to time: this checkout built into a wheel and installed in a "
        "venv of its own, as a user installs it (default), or the dev venv's editable install",
    )


def commands(choice: str, scratch: Path, dev: Path) -> Path:
    """The bin/ directory of the commands to time: a fresh wheel venv under `scratch`, or
    `dev` (the dev venv's)."""
    return wheel_venv(scratch / "install") if choice == "wheel" else dev


def commands_or_none(choice: str, scratch: Path, dev: Path) -> Path | None:
    """`commands`, or None once a failed install has been said in one line on stderr (the
    caller removes its scratch and exits 1)."""
    try:
        return commands(choice, scratch, dev)
    except InstallFailed as exc:
        print(
            f"benchmark failed: {exc} (--install dev times the dev venv instead)",
            file=sys.stderr,
            flush=True,
        )
        return None
