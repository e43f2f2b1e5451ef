"""Every command has help text and a man page that mentions each of its options.

The commands are read in-process through click's API (no subprocess), so a
new command, subcommand or option without documentation fails here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from rise_dtn.cli.main import group
from rise_dtn.node import config

ROOT = Path(__file__).resolve().parents[1]
MAN = ROOT / "man"
GROUP_SCRIPT = "rise"
ALIAS_PREFIX = "rise-"
FONT_ESCAPE = re.compile(r"\\f(?:\[[A-Z]*\]|[BIRP])")  # \fB, \fI, \fR, \fP, \f[B]
TEMPLATE_KEY = re.compile(r"^#?\s*([a-z_]+)\s*=", re.MULTILINE)
TEMPLATE_TABLE = re.compile(r"^#?\s*\[([a-z_]+)", re.MULTILINE)


def console_scripts() -> list[str]:
    """Every command installed: entry points, and scripts (rise-send is one, for its start-up)."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)
    scripts = project["tool"]["setuptools"].get("script-files", [])
    return sorted([*project["project"]["scripts"], *(Path(path).name for path in scripts)])


def man_text(name: str) -> str:
    """A man page's source with roff escapes that hide plain words undone."""
    text = (MAN / name).read_text(encoding="utf-8")
    return FONT_ESCAPE.sub("", text.replace("\\-", "-").replace("\\&", ""))


def subcommands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every subcommand path below `command`, e.g. ("peer",), ("peer", "add")."""
    if not isinstance(command, click.Group):
        return
    context = click.Context(command)
    for name in command.list_commands(context):
        child = command.get_command(context, name)
        child_path = (*path, name)
        assert child is not None, f"{' '.join(child_path)} is listed but cannot be loaded"
        yield child_path
        yield from subcommands(child, child_path)


def resolve(path: tuple[str, ...]) -> click.Command:
    command: click.Command = group
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"no command {' '.join(path)}"
        command = found
    return command


def long_options(command: click.Command) -> list[str]:
    return sorted(
        {
            option
            for param in command.params
            for option in (*param.opts, *param.secondary_opts)
            if option.startswith("--")
        }
    )


def alias_command(script: str) -> click.Command:
    """The command behind a `rise-<verb>` script: the group's <verb>."""
    return resolve((script.removeprefix(ALIAS_PREFIX),))


ALIASES = [script for script in console_scripts() if script.startswith(ALIAS_PREFIX)]
SUBCOMMANDS = list(subcommands(group))


def test_there_is_something_to_check() -> None:
    assert GROUP_SCRIPT in console_scripts()
    assert ALIASES
    assert ("peer", "add") in SUBCOMMANDS


@pytest.mark.parametrize("script", console_scripts())
def test_every_console_script_has_a_man_page(script: str) -> None:
    page = MAN / f"{script}.1"
    assert page.is_file(), f"{script} has no man page {page.relative_to(ROOT)}"
    title = script.upper().replace("-", "\\-")  # as in ".TH RISE\-SEND 1"
    assert f".TH {title} 1" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_is_in_rise_1(path: tuple[str, ...]) -> None:
    assert f"rise {' '.join(path)}" in man_text("rise.1"), f"rise.1 never mentions {path}"


@pytest.mark.parametrize("path", [(), *SUBCOMMANDS], ids=lambda path: " ".join(("rise", *path)))
def test_every_option_of_rise_is_in_rise_1(path: tuple[str, ...]) -> None:
    text = man_text("rise.1")
    missing = [option for option in long_options(resolve(path)) if option not in text]
    assert not missing, f"rise {' '.join(path)}: rise.1 does not document {missing}"


@pytest.mark.parametrize("script", ALIASES)
def test_every_option_of_an_alias_is_in_its_page(script: str) -> None:
    text = man_text(f"{script}.1")
    missing = [option for option in long_options(alias_command(script)) if option not in text]
    assert not missing, f"{script}.1 does not document {missing}"


@pytest.mark.parametrize("path", [(), *SUBCOMMANDS], ids=lambda path: " ".join(("rise", *path)))
def test_every_command_has_help_text(path: tuple[str, ...]) -> None:
    command = resolve(path)
    assert (command.help or "").strip(), f"rise {' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert (param.help or "").strip(), f"rise {' '.join(path)} {param.opts} has no help"


@pytest.mark.parametrize("page", ["rise.7", "rise-config.5"])
def test_concept_and_config_pages_exist(page: str) -> None:
    assert (MAN / page).is_file()


def test_every_config_key_is_in_rise_config_5() -> None:
    """Each key of the template is a bold term in rise-config(5), each table a heading."""
    keys = set(TEMPLATE_KEY.findall(config.TEMPLATE))
    tables = set(TEMPLATE_TABLE.findall(config.TEMPLATE))
    assert {"name", "lifetime", "nice", "on_delivery"} <= keys  # the regexes still work
    assert {"node", "send", "toss", "spool", "peers"} <= tables
    text = man_text("rise-config.5")
    missing = sorted(
        key for key in keys if not re.search(rf"^\.BR? {re.escape(key)}\b", text, re.MULTILINE)
    )
    missing += sorted(f"[{table}]" for table in tables if f".SS [{table}" not in text)
    assert not missing, f"rise-config.5 does not document {missing}"


@pytest.mark.parametrize("page", sorted(path.name for path in MAN.glob("*.[0-9]")))
def test_every_man_page_has_the_usual_sections(page: str) -> None:
    text = man_text(page)
    for section in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ):
        assert f".SH {section}\n" in text or f'.SH "{section}"\n' in text, (
            f"{page} has no {section} section"
        )
