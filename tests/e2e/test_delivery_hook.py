"""The on_delivery hook of config.toml: once per delivery, RISE_* variables, never in the way."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Node, command_env

HOOK = """\
import json, os, sys
record = {key: value for key, value in os.environ.items() if key.startswith("RISE_")}
record["argv"] = sys.argv[1:]
with open(os.environ["HOOK_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(int(os.environ.get("HOOK_EXIT", "0")))
"""


def three_nodes(make: Callable[[str], Node]) -> tuple[Node, Node, Node]:
    """alice and carol both trust bob, and bob trusts both."""
    alice, bob, carol = make("alice"), make("bob"), make("carol")
    bob_card = bob.card()
    for sender in (alice, carol):
        sender.run("rise", "peer", "add", "-", input=bob_card)
        bob.run("rise", "peer", "add", "-", input=sender.card())
    return alice, bob, carol


def configure(node: Node, toss: str | None, peers: dict[str, str]) -> None:
    """Set [toss] on_delivery and [peers.<name>] on_delivery in the node's config.toml."""
    config = node.home / "config.toml"
    text = config.read_text()
    if toss is not None:
        text = text.replace("[toss]\n", f"[toss]\non_delivery = {json.dumps(toss)}\n", 1)
    for name, command in peers.items():
        text += f"\n[peers.{name}]\non_delivery = {json.dumps(command)}\n"
    config.write_text(text)


def hook(tmp_path: Path, tag: str) -> str:
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    return shlex.join([sys.executable, str(script), tag])


def _env(node: Node, log: Path, **extra: str) -> dict[str, str]:
    return command_env(node.home, HOOK_LOG=str(log), **extra)


def records(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_hook_runs_once_per_delivery_with_rise_variables(
    node_factory: Callable[[str], Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob, carol = three_nodes(node_factory)
    configure(bob, hook(tmp_path, "global"), {"alice": hook(tmp_path, "alice")})
    log = tmp_path / "hook.log"
    (tmp_path / "report.txt").write_bytes(b"first report")
    sent = {
        alice.run("rise-send", str(tmp_path / "report.txt"), "bob").stdout: "file",
        alice.run("rise-send", "-", "bob", "--name", "report.txt", input=b"second").stdout: (
            "file"
        ),
        alice.run("rise-send", "-", "bob", input=b"a message").stdout: "message",
        carol.run("rise-send", "-", "bob", input=b"from carol").stdout: "message",
    }
    ids = {key.decode().strip(): kind for key, kind in sent.items()}
    for sender in (alice, carol):
        sender.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-xfer", "-q", "--toss", str(stick), env=_env(bob, log))
    assert result.stderr == b""

    got = records(log)
    assert sorted(str(row["RISE_BUNDLE_ID"]) for row in got) == sorted(ids)  # once each
    for row in got:
        bundle_id = str(row["RISE_BUNDLE_ID"])
        assert row["RISE_KIND"] == ids[bundle_id]
        assert row["RISE_HOME"] == str(bob.home)
        path = Path(str(row["RISE_PATH"]))
        assert path.is_file()
        assert row["RISE_SIZE"] == str(path.stat().st_size)
        # A per-peer hook overrides the [toss] one.
        assert row["argv"] == (["alice"] if row["RISE_SENDER"] == "alice" else ["global"])
    by_path = {Path(str(row["RISE_PATH"])).name for row in got if row["RISE_KIND"] == "file"}
    assert by_path == {"report.txt", "report.1.txt"}
    assert sorted(str(row["RISE_SENDER"]) for row in got) == ["alice", "alice", "alice", "carol"]
    messages = {
        Path(str(row["RISE_PATH"])).read_bytes() for row in got if row["RISE_KIND"] == "message"
    }
    assert messages == {b"a message", b"from carol"}

    # Nothing new to deliver: the hook does not run again.
    bob.run("rise-toss", "-q", env=_env(bob, log))
    assert len(records(log)) == len(ids)


def test_failing_or_missing_hook_does_not_stop_the_toss(
    node_factory: Callable[[str], Node], stick: Path, tmp_path: Path
) -> None:
    alice, bob, carol = three_nodes(node_factory)
    original = (bob.home / "config.toml").read_text()
    configure(
        bob,
        str(tmp_path / "no-such-hook"),  # missing: the [toss] one, used for carol
        {"alice": hook(tmp_path, "alice")},  # runs, then exits 7
    )
    log = tmp_path / "hook.log"
    for sender in (alice, carol):
        for number in range(2):
            sender.run("rise-send", "-q", "-", "bob", input=f"{sender.name} {number}".encode())
        sender.run("rise-xfer", "-q", str(stick))
    bob.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-toss", "-q", env=_env(bob, log, HOOK_EXIT="7"))
    assert result.returncode == 0  # delivered: a notifier's failure is only a warning
    lines = hook_warnings(result.stderr.decode())
    assert len(lines) == 4, lines  # one line per delivery whose hook failed
    assert sum("exited with status 7" in line for line in lines) == 2
    assert sum("could not run" in line for line in lines) == 2
    assert [row["argv"] for row in records(log)] == [["alice"], ["alice"]]
    assert len(json.loads(bob.run("rise", "inbox", "--json").stdout)) == 4

    # A command that cannot even be split is reported the same way, and a
    # per-peer on_delivery = "" turns the [toss] one off for that peer.
    (bob.home / "config.toml").write_text(original)
    configure(bob, "'unclosed", {"carol": ""})
    for sender in (alice, carol):
        sender.run("rise-send", "-q", "-", "bob", input=b"one more")
        sender.run("rise-xfer", "-q", str(stick))
    result = bob.run("rise-xfer", "-q", "--toss", str(stick), env=_env(bob, log))
    assert result.returncode == 0
    (line,) = hook_warnings(result.stderr.decode())
    assert "could not run" in line
    assert len(json.loads(bob.run("rise", "inbox", "--json").stdout)) == 6
    assert len(records(log)) == 2


def hook_warnings(text: str) -> list[str]:
    assert "Traceback" not in text
    lines = text.splitlines()
    assert all(
        line.startswith("rise-toss: ") and ": on_delivery command " in line for line in lines
    )
    return lines
