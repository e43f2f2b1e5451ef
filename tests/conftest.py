"""Shared test helpers: real nodes driven by the installed commands, as a user would."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.postgres import index_urls, postgres  # noqa: F401 - fixtures for every test
from tests.properties import CI_PROFILE, FUZZ_PROFILE, TALLY, Tally

settings.load_profile(CI_PROFILE)  # `--hypothesis-profile=fuzz` (./dev fuzz) replaces it

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


# Every property's examples, counted for the line `./dev fuzz` ends with.


def _counting(inner_test: Callable[..., object]) -> Callable[..., object]:
    def counted(*args: object, **kwargs: object) -> object:
        TALLY.examples += 1
        return inner_test(*args, **kwargs)

    counted.counts_examples = True  # type: ignore[attr-defined]
    return counted


def _start_order(item: pytest.Item) -> int:
    """Long runs first: under pytest-xdist the suite then ends on short tests, not on a 40 s one."""
    if item.get_closest_marker("slow") is not None:
        return 0
    return 1 if "/e2e/" in item.nodeid or item.nodeid.startswith("tests/carriers/") else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_start_order)  # stable, and the same in every xdist worker
    for item in items:
        # `hypothesis.inner_test` is the documented place to wrap what runs per example.
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is not None and not hasattr(handle.inner_test, "counts_examples"):
            handle.inner_test = _counting(handle.inner_test)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if getattr(getattr(item, "obj", None), "hypothesis", None) is not None:
        TALLY.properties += 1
    yield


_STARTED = pytest.StashKey[float]()
_WORKERS = pytest.StashKey[Tally]()  # what pytest-xdist workers tried, summed in the controller


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STARTED] = time.monotonic()
    config.stash[_WORKERS] = Tally()


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tally"] = dataclasses.asdict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    node.config.stash[_WORKERS].add(getattr(node, "workeroutput", {}).get("tally", {}))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    total = Tally()
    total.add(dataclasses.asdict(TALLY))
    total.add(dataclasses.asdict(config.stash[_WORKERS]))
    if total.properties == 0:
        return
    profile = settings.get_current_profile_name()
    line = (
        f"hypothesis profile {profile!r}: {total.examples:,} examples of"
        f" {total.properties} properties, {total.decoder_inputs:,} decoder inputs"
    )
    if profile == FUZZ_PROFILE:  # only properties ran: the rate means something
        minutes = max(time.monotonic() - config.stash[_STARTED], 1e-9) / 60
        line += f", in {minutes:.1f} min ({total.decoder_inputs / minutes:,.0f} a minute)"
    terminalreporter.write_line(line)
