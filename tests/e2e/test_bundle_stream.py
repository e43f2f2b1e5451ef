"""rise-bundle: a one-way stream of bundles through a pipe and a file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import BIN, Node, command_env


def test_pipe_between_two_nodes_delivers(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, bob = pair
    payload = os.urandom(2 * (1 << 20) + 9)
    (tmp_path / "x.bin").write_bytes(payload)
    alice.run("rise-send", "-q", str(tmp_path / "x.bin"), "bob")
    alice.run("rise-send", "-q", "-", "bob", input=b"a message")
    writer = subprocess.Popen(
        [str(BIN / "rise-bundle"), "--out", "-", "--to", "bob"],
        env=command_env(alice.home),
        stdout=subprocess.PIPE,
    )
    reader = subprocess.run(
        [str(BIN / "rise-bundle"), "--in", "-", "--toss", "-q"],
        env=command_env(bob.home),
        stdin=writer.stdout,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert writer.wait(timeout=60) == 0
    assert reader.returncode == 0, reader.stderr
    assert (bob.incoming / "alice" / "x.bin").read_bytes() == payload
    # One-way: alice keeps her copies until --move.
    assert len(list((alice.spool / "tx").rglob("*.rsb"))) == 2


def test_file_stream_with_move_and_strangers_skipped(
    pair: tuple[Node, Node], node_factory: object, tmp_path: Path
) -> None:
    alice, bob = pair
    carol = node_factory("carol")  # type: ignore[operator]
    carol.run("rise", "peer", "add", "-", input=bob.card())
    carol.run("rise-send", "-q", "-", "bob", input=b"from a stranger")
    alice.run("rise-send", "-q", "-", "bob", input=b"from a friend")
    tape = tmp_path / "tape.rss"
    alice.run("rise-bundle", "-q", "--out", str(tape), "--move")
    assert not list((alice.spool / "tx").rglob("*.rsb"))
    stranger_tape = tmp_path / "stranger.rss"
    carol.run("rise-bundle", "-q", "--out", str(stranger_tape))
    result = bob.run("rise-bundle", "--in", str(stranger_tape))
    assert b"unknown node" in result.stderr
    bob.run("rise-bundle", "-q", "--in", str(tape), "--toss")
    assert b'"sender": "alice"' in bob.run("rise", "inbox", "--json").stdout
    assert b"carol" not in bob.run("rise", "inbox", "--json").stdout


def test_truncated_stream_is_a_clear_error(pair: tuple[Node, Node], tmp_path: Path) -> None:
    alice, bob = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"x" * 5000)
    tape = tmp_path / "tape.rss"
    alice.run("rise-bundle", "-q", "--out", str(tape))
    tape.write_bytes(tape.read_bytes()[:-3000])
    result = bob.run("rise-bundle", "--in", str(tape), check=False)
    assert result.returncode == 3
    assert result.stderr.decode().count("\n") == 1
    assert b"truncated" in result.stderr
    assert not list((bob.spool / "rx").rglob("*.rsb"))
    bad = tmp_path / "not-a-stream"
    bad.write_bytes(b"hello")
    result = bob.run("rise-bundle", "--in", str(bad), check=False)
    assert result.returncode == 2


def test_a_stream_over_the_receive_quota_says_what_was_not_taken(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    alice, bob = pair
    config = bob.home / "config.toml"
    config.write_text(config.read_text() + '\n[peers.alice]\nreceive_max_bytes = "64K"\n')
    (tmp_path / "big.bin").write_bytes(os.urandom(100 * 1024))
    alice.run("rise-send", "-q", str(tmp_path / "big.bin"), "bob")
    alice.run("rise-send", "-q", "-", "bob", input=b"a message")
    tape = tmp_path / "tape.rss"
    alice.run("rise-bundle", "-q", "--out", str(tape))
    result = bob.run("rise-bundle", "-q", "--in", str(tape), "--toss", check=False)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 5, lines
    assert len(lines) == 2, lines
    assert lines[0].startswith("rise-bundle: not taken: ")
    assert "no room: over the receive quota" in lines[0]
    assert lines[1].startswith("rise-bundle: no room in the spool for 1 bundle(s)")
    assert b'"size": 9' in bob.run("rise", "inbox", "--json").stdout  # the rest went on
    assert not (bob.incoming / "alice" / "big.bin").exists()
    config.write_text(config.read_text().replace('"64K"', '"1M"'))
    bob.run("rise-bundle", "-q", "--in", str(tape), "--toss")  # written again: taken once
    assert (bob.incoming / "alice" / "big.bin").stat().st_size == 100 * 1024
