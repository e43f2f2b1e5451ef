"""Carriers found by entry point: rise-dtn's own, another package's, and broken ones."""

from __future__ import annotations

import json
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from rise_dtn.carriers import registry
from rise_dtn.carriers.base import Carrier, Kind
from rise_dtn.carriers.directory import CARRIER as DIRECTORY
from rise_dtn.carriers.mailbox import CARRIER as MAILBOX
from rise_dtn.carriers.serial import CARRIER as SERIAL
from rise_dtn.carriers.stream import CARRIER as STREAM
from rise_dtn.carriers.tcp import CARRIER as TCP
from rise_dtn.core.errors import UsageError
from tests.conftest import command_env, run

BUILT_IN: tuple[Carrier, ...] = (
    DIRECTORY,
    TCP,
    STREAM,
    SERIAL,
    MAILBOX,
)  # mypy checks they implement it


def test_the_built_in_carriers_are_registered() -> None:
    found = registry.load()
    assert not found.problems
    assert {item.carrier.name: item.source.split()[0] for item in found.carriers} == {
        "directory": "rise-dtn",
        "tcp": "rise-dtn",
        "stream": "rise-dtn",
        "serial": "rise-dtn",
        "mailbox": "rise-dtn",
    }
    assert found.schemes == [
        "dir",
        "exec",
        "imap",
        "imaps",
        "kiss",
        "kiss+tcp",
        "serial",
        "ssh",
        "tcp",
    ]
    assert {carrier.kind for carrier in BUILT_IN} == {Kind.PLACE, Kind.LINK}


def test_addresses_choose_carriers() -> None:
    found = registry.load()
    assert found.resolve("tcp://h:1")[0] is TCP
    assert found.resolve("h:1")[0] is TCP  # the old form
    assert found.resolve("ssh://h")[0] is STREAM
    assert found.resolve("exec:cat")[0] is STREAM
    assert found.resolve("dir:/media/usb")[0] is DIRECTORY
    assert found.resolve("imaps://me@mail.example.org")[0] is MAILBOX
    with pytest.raises(UsageError, match="unknown scheme pigeon:"):
        found.resolve("pigeon://loft")


def test_a_card_never_makes_us_run_a_command() -> None:
    found = registry.load()
    card = [("exec", "rm -rf ~"), ("dir", "/etc"), ("tcp", "h:7")]
    chosen = found.choose(given=None, configured=None, card=card)
    assert chosen is not None and str(chosen[1]) == "tcp://h:7"
    assert found.choose(given=None, configured=None, card=card[:2]) is None
    assert found.choose(given="dir:/x", configured="h:1", card=card)[1].scheme == "dir"  # type: ignore[index]


def _entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=registry.GROUP)


def test_broken_plugins_are_skipped_with_one_line() -> None:
    found = registry.load(
        [
            _entry("tcp", "rise_dtn.carriers.tcp:CARRIER"),
            _entry("gone", "rise_dtn.carriers.no_such_module:CARRIER"),
            _entry("json", "json:dumps"),
            _entry("thief", "rise_dtn.carriers.tcp:CARRIER"),  # tcp again: already taken
        ]
    )
    assert [item.carrier.name for item in found.carriers] == ["tcp"]
    reasons = {problem.name: problem.reason for problem in found.problems}
    assert reasons["gone"].startswith("cannot be loaded: ModuleNotFoundError")
    assert reasons["json"].startswith("not a carrier (lacks name")
    assert "thief" in reasons
    assert all("\n" not in str(problem) for problem in found.problems)


PLUGIN = """
from rise_dtn.carriers.base import Exchanged, Kind


class Pigeon:
    name = "pigeon"
    schemes = ("pigeon",)
    summary = "bundles tied to a bird's leg"
    kind = Kind.PLACE

    def check(self, address):
        pass

    def exchange(self, home, peer, address, *, now, hooks=None):
        return Exchanged(notes=("the bird flew",))


CARRIER = Pigeon()
"""


def _install_plugin(site: Path) -> None:
    """A real distribution on the path: its metadata and entry points, as pip leaves them."""
    site.mkdir()
    (site / "rise_pigeon.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "rise_pigeon-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rise-pigeon\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(
        "[rise_dtn.carriers]\npigeon = rise_pigeon:CARRIER\nbroken = rise_pigeon_gone:CARRIER\n"
    )


def test_rise_carriers_lists_another_packages_carrier_and_names_a_broken_one(
    tmp_path: Path,
) -> None:
    _install_plugin(tmp_path / "site")
    env = command_env(PYTHONPATH=str(tmp_path / "site"))
    result = run("rise", "carriers", env=env, check=False)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 1
    assert "pigeon" in out and "rise-pigeon 1.2" in out and "tcp:" in out
    assert err.count("\n") == 1 and "'broken'" in err and "ModuleNotFoundError" in err
    assert "Traceback" not in err
    listed = json.loads(run("rise", "carriers", "--json", env=env, check=False).stdout)
    assert {row["name"] for row in listed["carriers"]} == {
        "directory",
        "tcp",
        "stream",
        "serial",
        "mailbox",
        "pigeon",
    }


def test_rise_call_uses_a_plugins_scheme(pair: tuple[object, object], tmp_path: Path) -> None:
    alice, _bob = pair
    _install_plugin(tmp_path / "site")
    env = command_env(alice.home, PYTHONPATH=str(tmp_path / "site"))  # type: ignore[attr-defined]
    result = run("rise-call", "bob", "pigeon:coop", env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "received 0" in result.stderr.decode()
    unknown = run("rise-call", "bob", "owl:tree", env=env, check=False)
    assert unknown.returncode == 2
    assert "unknown scheme owl:" in unknown.stderr.decode() and "pigeon:" in unknown.stderr.decode()
