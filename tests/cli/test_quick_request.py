"""rise-send's hand-off writes its request without the json module (rise_dtn/cli/quick.py):
whatever the arguments, the worker's json.loads must read back the very same strings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from rise_dtn.cli.quick import request_json

# Any code point, lone surrogates included: argv bytes that are not UTF-8
# reach Python as surrogate escapes, and must reach the worker unchanged.
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF))


@given(
    argv=st.lists(ANY_TEXT, max_size=6),
    cwd=ANY_TEXT,
    env=st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=4),
)
def test_the_worker_reads_back_what_rise_send_wrote(
    argv: list[str], cwd: str, env: dict[str, str]
) -> None:
    assert json.loads(request_json(argv, cwd, env)) == {"argv": argv, "cwd": cwd, "env": env}


def test_awkward_arguments_round_trip() -> None:
    argv = ['"', "\\", "\x00\n\x7f", "é", "\U0001f600", "\udcff", "--name=a b"]
    assert json.loads(request_json(argv, "/tmp/\udce9", {"RISE_X": "\\"}))["argv"] == argv


def test_the_hand_off_imports_no_socket_json_or_re() -> None:
    """What the client imports is its start-up time: `socket` and `json` (with `re`,
    `enum` and `selectors` under them) doubled a plain interpreter's. (Counted
    from after the interpreter's start: an editable install's import hook
    loads `re` itself; a wheel install does not.)"""
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from rise_dtn.cli import quick\n"
        "quick._hand_off(['--home', sys.argv[1], '-', 'bob'])\n"
        "new = set(sys.modules) - before\n"
        "heavy = ('socket', 'json', 're', 'enum', 'typing')\n"
        "print(' '.join(sorted(m for m in heavy if m in new)))\n"
    )
    found = subprocess.run(
        [sys.executable, "-I", "-c", probe, os.devnull],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == ""
