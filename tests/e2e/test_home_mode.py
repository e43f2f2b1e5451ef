"""A node home and its config.toml must be the node user's alone (defect 5 of issue 9).

Whoever can replace config.toml chooses the `on_delivery` command the node
runs as its user; so `rise init` makes the home 0700 whatever the umask, and
every command refuses a home or config.toml that is group- or
world-writable or another user's, in one line that names the fix.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Node, command_env, make_node, run


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def refusal(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one stderr line of a refused command, without the `rise-xxx: ` before it."""
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    return line.split(": ", 1)[1]


def init_under_umask_000(home: Path) -> None:
    subprocess.run(
        ["sh", "-c", "umask 000 && exec rise init --name carol"],
        env=command_env(home),
        capture_output=True,
        check=True,
        timeout=120,
    )


def test_init_under_umask_000_makes_a_private_home(tmp_path: Path) -> None:
    home = tmp_path / "carol"
    init_under_umask_000(home)
    assert mode_of(home) == 0o700
    assert mode_of(home / "config.toml") == 0o600
    assert mode_of(home / "node.key") == 0o600
    run("rise", "card", home=home)  # and the node it made is usable


def test_init_tightens_a_folder_made_beforehand_under_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "carol"
    home.mkdir()
    home.chmod(0o777)
    init_under_umask_000(home)
    assert mode_of(home) == 0o700
    run("rise", "status", home=home)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702], ids=["777", "770", "702"])
def test_a_home_writable_by_others_is_refused_until_chmod_go_w(tmp_path: Path, mode: int) -> None:
    node = make_node(tmp_path, "carol")
    node.home.chmod(mode)
    for command in (["rise", "status"], ["rise-toss"], ["rise", "card"]):
        assert refusal(node.run(*command, check=False)) == (
            f"{node.home} is writable by others (mode {mode:o}), who could change what"
            f" this node runs; chmod go-w {node.home}"
        )
    subprocess.run(["chmod", "go-w", str(node.home)], check=True)
    node.run("rise", "status")


def test_a_group_writable_config_runs_no_delivery_hook(
    tmp_path: Path, pair: tuple[Node, Node], stick: Path
) -> None:
    """The attack of defect 5: someone else rewrites bob's on_delivery; bob's toss refuses."""
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"hello bob\n")
    alice.run("rise-xfer", "-q", str(stick))
    config = bob.home / "config.toml"
    planted = tmp_path / "planted"
    text = config.read_text().replace(
        "[toss]\n", f"[toss]\non_delivery = {json.dumps(f'touch {planted}')}\n", 1
    )
    config.write_text(text)
    config.chmod(0o660)
    assert refusal(bob.run("rise-xfer", "-q", "--toss", str(stick), check=False)) == (
        f"{config} is writable by others (mode 660), who could change what this node"
        f" runs; chmod go-w {config}"
    )
    assert not planted.exists()
    config.chmod(0o600)  # bob checked the file and keeps it: now it is his choice
    bob.run("rise-xfer", "-q", "--toss", str(stick))
    assert planted.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_config_of_another_user_is_refused(tmp_path: Path) -> None:
    node = make_node(tmp_path, "carol")
    config = node.home / "config.toml"
    os.chown(config, 65534, -1)
    assert refusal(node.run("rise", "status", check=False)) == (
        f"{config} belongs to another user (uid 65534, mode 600), who could change"
        " what this node runs; use a node of your own"
    )
