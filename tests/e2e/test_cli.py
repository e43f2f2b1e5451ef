"""What every installed command answers before it touches a node: --version and --help."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rise_dtn import __version__
from tests.conftest import run

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_answers_version_and_help(script: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-node-here"  # neither needs a node
    version = run(script, "--version", home=missing)
    assert version.stdout.decode() == f"rise-dtn, version {__version__}\n"
    assert version.stderr == b""
    helped = run(script, "--help", home=missing)
    assert helped.stdout.decode().startswith("Usage: ")
    assert "--version" in helped.stdout.decode()


@pytest.mark.slow
def test_man_finds_every_page_after_a_pip_install(tmp_path: Path) -> None:
    """A wheel puts the pages in <prefix>/share/man, where man(1) looks beside PATH's bin/."""
    if shutil.which("man") is None:
        pytest.skip("man(1) is not installed here (.ci/run installs man-db)")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (wheel,) = wheels.glob("rise_dtn-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for page in sorted((ROOT / "man").glob("*.[157]")):
        section = page.suffix.lstrip(".")
        found = subprocess.run(
            ["man", "-w", section, page.stem], env=env, capture_output=True, check=False, timeout=60
        )
        assert found.returncode == 0, (page.name, found.stderr)
        assert found.stdout.decode().strip() == f"{venv}/share/man/man{section}/{page.name}"
