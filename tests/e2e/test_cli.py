"""What every installed command answers before it touches a node: --version and --help."""

from __future__ import annotations

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
