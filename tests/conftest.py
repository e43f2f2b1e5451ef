"""Shared test helpers: real nodes driven by the installed commands, as a user would."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.postgres import index_urls, postgres  # noqa: F401 - fixtures for every test

BIN = Path(sys.executable).parent  # the venv's bin/, where `rise` and `rise-*` live


def command_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RISE_HOME", None)
    if home is not None:
        env["RISE_HOME"] = str(home)
    env.update(extra)
    return env


def run(
    *args: str,
    home: Path | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run an installed command (`rise-send ...`, `rise peer add ...`) and capture it."""
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env or command_env(home),
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout.decode(errors='replace')}\n"
            f"stderr: {result.stderr.decode(errors='replace')}"
        )
    return result


@dataclasses.dataclass
class Node:
    name: str
    home: Path
    node_id: str

    def run(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return run(*args, home=self.home, **kwargs)  # type: ignore[arg-type]

    def card(self) -> bytes:
        return self.run("rise", "card").stdout

    @property
    def incoming(self) -> Path:
        return self.home / "incoming"

    @property
    def spool(self) -> Path:
        return self.home / "spool"


def make_node(base: Path, name: str) -> Node:
    home = base / name
    result = run("rise", "init", "--name", name, home=home)
    return Node(name, home, result.stdout.decode().strip())


def befriend(*nodes: Node) -> None:
    """Every node adds every other node's card."""
    for node in nodes:
        for other in nodes:
            if other is not node:
                node.run("rise", "peer", "add", "-", input=other.card())


@pytest.fixture
def node_factory(tmp_path: Path) -> Callable[[str], Node]:
    return lambda name: make_node(tmp_path, name)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Node, Node]:
    alice, bob = make_node(tmp_path, "alice"), make_node(tmp_path, "bob")
    befriend(alice, bob)
    return alice, bob


@pytest.fixture
def stick(tmp_path: Path) -> Path:
    path = tmp_path / "stick"
    path.mkdir()
    return path
