"""What a TOML syntax error in config.toml means, in the project's words.

tomllib says "Cannot declare ('relay',) twice (at line 40, column 7)" or
"Expected newline or end of document after a statement": true, but it
names neither the mistake (a second [relay] appended below the one `rise
init` wrote; `min_free = 100MB` without quotes) nor what to do. The common
mistakes get a line that does, naming the table and the key; any other
error keeps tomllib's own words, line number included. Only ever called on
a file that failed to parse, so nothing here costs a command that reads a
good one.
"""

from __future__ import annotations

import re

_AT = r" \(at line (\d+), column \d+\)$"
_TWICE = re.compile(r"^Cannot declare \((.*)\) twice" + _AT)
_HEADER = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\](?:\s*#.*)?$")
_DOUBLE = re.compile(r"^\s*\[\[\s*([^\[\]#]+?)\s*\]\](?:\s*#.*)?$")
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_LINE = re.compile(_AT)
_SETTING = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=\s*(.*?)\s*$")
# What a word processor or a web page makes of quotes.
_CURLY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"})
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off"}


def explain(text: str, said: str) -> str | None:
    """'line N: ...' for a mistake recognised in tomllib's message `said`, else None."""
    lines = text.split("\n")  # as tomllib counts them (splitlines also splits at \f, \x85...)
    twice = _TWICE.match(said)
    if twice:
        return _table_twice(lines, _names(twice.group(1)), int(twice.group(2)))
    at = _LINE.search(said)
    if at is not None:
        number = int(at.group(1))
    else:  # 'Expected "'" (at end of document)': a '...' never closed, on some line
        number = next((index for index, line in enumerate(lines, 1) if _unclosed(line)), 0)
    line = lines[number - 1] if 0 < number <= len(lines) else ""
    line = line.removesuffix("\r").replace("\t", " ")
    setting = _SETTING.match(line) if line.isprintable() else None
    if setting is None:
        return None  # a message quotes the line: only one that prints as one line
    key, value = setting.groups()
    where = f"line {number}: {_section(lines, number)}{key}"
    if said.startswith("Cannot overwrite a value"):
        return _key_twice(lines, key, number, where)
    return _value(where, key, value)


def _value(where: str, key: str, value: str) -> str | None:
    """What is wrong with the `value` written after `key =`, if it is the mistake."""
    if _parses(value):
        return None  # the value is sound: the mistake is another one
    bare = value.partition("#")[0].strip()  # after an unquoted value, # starts a comment
    if not bare:
        return f"{where}: nothing after =: give a value, or delete the line"
    if bare.lower() in _BOOLEAN_WORDS:
        return f"{where} = {bare}: write true or false (lower case, without quotes)"
    straight = value.translate(_CURLY)
    if straight != value and _parses(straight):
        return f"{where} = {value}: use straight quotes: {key} = {straight}"
    if value[0] in "\"'":
        if _unclosed(f"{key} = {value}"):
            return f"{where} = {value}: the string has no closing {value[0]}"
        if value[0] == '"' and "\\" in value:
            return f"{where} = {value}: a \\ in \"...\" starts an escape: use '...', or write \\\\"
        return None
    if value[0] in "[{":
        return None  # an array or inline table: tomllib's words say where
    # '...' keeps a \ or a " as it is, where "..." would read an escape or end the string
    quote = "'" if ('"' in bare or "\\" in bare) else '"'
    if quote in bare:
        return None
    return f"{where} = {bare}: text goes in quotes: {key} = {quote}{bare}{quote}"


def _key_twice(lines: list[str], key: str, number: int, where: str) -> str:
    """A key set again in its table (one uncommented in the template, and one added)."""
    start = next((index for index in range(number - 1, 0, -1) if _is_header(lines[index - 1])), 0)
    same = re.compile(rf"^\s*{re.escape(key)}\s*=")
    first = next(
        (index for index in range(start + 1, number) if same.match(lines[index - 1])), None
    )
    place = f"the one on line {first}" if first else "the one above"
    return f"{where} is set twice: edit {place} instead of adding another"


def _section(lines: list[str], number: int) -> str:
    """'[spool] ' or '[[calls]] ': the table that line `number` is in ('' before any)."""
    for line in reversed(lines[: number - 1]):
        for double in (False, True):
            names = _header(line, double=double)
            if names:
                table = _dotted(names)
                return f"[[{table}]] " if double else f"[{table}] "
    return ""


def _is_header(line: str) -> bool:
    return _header(line) is not None or _header(line, double=True) is not None


def _parses(value: str) -> bool:
    import tomllib

    try:
        tomllib.loads(f"value = {value}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def _unclosed(line: str) -> bool:
    """A `key = "...` or `key = '...` whose string does not end on its line."""
    setting = _SETTING.match(line)
    value = setting.group(2) if setting else ""
    if not value or value[0] not in "\"'" or value.startswith(('"""', "'''")):
        return False
    quote = value[0]
    rest = re.sub(r"\\.", "", value[1:]) if quote == '"' else value[1:]
    return quote not in rest


def _table_twice(lines: list[str], names: tuple[str, ...] | None, number: int) -> str | None:
    table = _dotted(names) if names else ""
    if not table or not table.isprintable():
        return None  # none, or a name with a tab or a line break in it: tomllib's words
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
