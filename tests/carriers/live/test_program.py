"""Which program a link's command names, and the system's reason it did not start."""

from __future__ import annotations

from pathlib import Path

import pytest

from rise_dtn.carriers.live import program


def test_a_command_that_started_is_not_diagnosed() -> None:
    for status in (None, 0, 1, 4, 255):
        assert program.not_started("rise-daemonx --stdio", status) is None


def test_the_program_is_looked_for_as_the_shell_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runnable, unrunnable = tmp_path / "runs", tmp_path / "bin" / "stays"
    unrunnable.parent.mkdir()
    runnable.write_text("#!/bin/sh\n")
    runnable.chmod(0o755)
    unrunnable.write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}:{unrunnable.parent}:{tmp_path}")
    assert program.not_started("GREETING=hi  nowhere --stdio", 127) == (
        "cannot start the command 'GREETING=hi  nowhere --stdio':"
        " nowhere: not found in any folder of PATH",
        True,
    )
    assert program.not_started("stays", 126) == (
        f"cannot start the command 'stays': {unrunnable}: Permission denied",
        True,
    )
    assert program.not_started(f"'{tmp_path}' x", 126) == (
        f"cannot start the command \"'{tmp_path}' x\": {tmp_path}: Is a directory",
        True,
    )
    # the program is there: what failed is a program it runs, which its own message names
    assert program.not_started("runs", 127) == (
        "the command 'runs' exited 127: a program it runs was not found"
        " (its own message says which)",
        False,
    )


@pytest.mark.parametrize(
    "command",
    ["exec nowhere", "cd /x && nowhere", "$HOME/nowhere", "~/nowhere", "(nowhere)", "'open"],
)
def test_what_the_shell_resolves_itself_is_left_to_its_own_message(command: str) -> None:
    reason, names_the_program = program.not_started(command, 127) or ("", True)
    assert not names_the_program
    assert reason.startswith(f"the command {command!r} exited 127")
