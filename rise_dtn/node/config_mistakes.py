"""What a TOML syntax error in config.toml means, in the project's words.

tomllib says "Cannot declare ('relay',) twice (at line 40, column 7)": true,
but it names neither the mistake (a second [relay], appended below the one
`rise init` wrote) nor what to do. The common mistakes get a line that
does; any other error keeps tomllib's own words, line number included.
Only ever called on a file that failed to parse, so nothing here costs a
command that reads a good one.
"""

from __future__ import annotations

import re

_AT = r" \(at line (\d+), column \d+\)$"
_TWICE = re.compile(r"^Cannot declare \((.*)\) twice" + _AT)
_HEADER = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\](?:\s*#.*)?$")
_DOUBLE = re.compile(r"^\s*\[\[\s*([^\[\]#]+?)\s*\]\](?:\s*#.*)?$")
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def explain(text: str, said: str) -> str | None:
    """'line N: ...' for a mistake recognised in tomllib's message `said`, else None."""
    twice = _TWICE.match(said)
    if twice:
        return _table_twice(text.splitlines(), _names(twice.group(1)), int(twice.group(2)))
    return None


def _table_twice(lines: list[str], names: tuple[str, ...] | None, number: int) -> str | None:
    if not names:
        return None
    table = _dotted(names)
    above = list(enumerate(lines[: number - 1], start=1))
    if any(_header(line, double=True) == names for _index, line in above):
        return f"line {number}: [{table}] below [[{table}]]: write [[{table}]] for each one"
    first = next((index for index, line in above if _header(line) == names), None)
    where = f"the one on line {first}" if first else "the one above"
    return f"line {number}: [{table}] appears twice: edit {where} instead of adding another"


def _names(written: str) -> tuple[str, ...] | None:
    """The table's names from tomllib's tuple: "('peers', 'bob')" -> ('peers', 'bob')."""
    import ast

    try:
        names = ast.literal_eval(f"({written})")
    except (ValueError, SyntaxError):
        return None
    if not isinstance(names, tuple) or not all(isinstance(name, str) for name in names):
        return None
    return names


def _header(line: str, *, double: bool = False) -> tuple[str, ...] | None:
    """The names of a `[a.b]` header line (`[[a.b]]` if `double`), quotes and spaces removed."""
    match = (_DOUBLE if double else _HEADER).match(line)
    if not match:
        return None
    return tuple(part.strip().strip("\"'") for part in match.group(1).split("."))


def _dotted(names: tuple[str, ...]) -> str:
    """As written in a header: bare names as they are, any other quoted."""
    return ".".join(name if _BARE.match(name) else f'"{name}"' for name in names)
