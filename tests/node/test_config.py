"""config.toml is read strictly: a wrong type or value stops the command with the key named.

Each case writes a real config.toml beside a fresh node's and loads it as
every command does (defect 10 of issue 9: `nice = true` and
`[relay] max_bytes = -1` were accepted).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rise_dtn.core.errors import UsageError
from rise_dtn.node import config, config_mistakes
from tests.conftest import run

GiB = 1 << 30


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "config.toml"
    path.write_text('[node]\nname = "alice"\n' + text)
    return config.load(path)


REFUSED = {
    "nice = true": (
        "[send]\nnice = true\n",
        "[send] nice: must be an integer from 0 to 255, not true",
    ),
    "nice = 256": (
        "[send]\nnice = 256\n",
        "[send] nice: must be an integer from 0 to 255, not 256",
    ),
    "nice = 1.5": (
        "[send]\nnice = 1.5\n",
        "[send] nice: must be an integer from 0 to 255, not 1.5",
    ),
    "hops = false": (
        "[send]\nhops = false\n",
        "[send] hops: must be an integer from 0 to 8, not false",
    ),
    "copies = 0": ("[send]\ncopies = 0\n", "[send] copies: must be an integer from 1 to 4, not 0"),
    "lifetime = '30 days'": (
        '[send]\nlifetime = "30 days"\n',
        '[send] lifetime: not a duration: "30 days" (use e.g. 30d, 12h, 90m, 3600)',
    ),
    "lifetime = true": (
        "[send]\nlifetime = true\n",
        "[send] lifetime: not a duration: true (use e.g. 30d, 12h, 90m, 3600)",
    ),
    "lifetime = 0": (
        "[send]\nlifetime = 0\n",
        "[send] lifetime: duration out of range: 0 (1 second to 10 years)",
    ),
    "max_bytes = -1": (
        "[relay]\nmax_bytes = -1\n",
        "[relay] max_bytes: not a size: -1 (a size is never negative)",
    ),
    "max_bytes = 0": (
        "[relay]\nmax_bytes = 0\n",
        "[relay] max_bytes: must be a size of at least 1 bytes"
        " (e.g. 500K, 100MB, 512MiB, 1G, 1 GiB), not 0",
    ),
    "max_bytes = true": (
        "[relay]\nmax_bytes = true\n",
        "[relay] max_bytes: not a size: true (e.g. 500K, 100MB, 512MiB, 1G, 1 GiB)",
    ),
    "max_bytes = '1 GB of disk'": (
        '[relay]\nmax_bytes = "1 GB of disk"\n',
        '[relay] max_bytes: not a size: "1 GB of disk" (e.g. 500K, 100MB, 512MiB, 1G, 1 GiB)',
    ),
    "max_bundles = -1": (
        "[relay]\nmax_bundles = -1\n",
        "[relay] max_bundles: must be an integer from 1 to 1000000000, not -1",
    ),
    "enabled = 1": ("[relay]\nenabled = 1\n", "[relay] enabled: must be true or false, not 1"),
    "map size = true": (
        "[map]\nsize = true\n",
        "[map] size: must be an integer from 1 to 64, not true",
    ),
    "map refresh = '1 hour'": (
        '[map]\nrefresh = "1 hour"\n',
        '[map] refresh: not a duration: "1 hour" (use e.g. 30d, 12h, 90m, 3600)',
    ),
    "partial_lifetime = '7 days'": (
        '[spool]\npartial_lifetime = "7 days"\n',
        '[spool] partial_lifetime: not a duration: "7 days" (use e.g. 30d, 12h, 90m, 3600)',
    ),
    "partial_lifetime = 0": (
        "[spool]\npartial_lifetime = 0\n",
        "[spool] partial_lifetime: duration out of range: 0 (1 second to 10 years)",
    ),
    "partial_lifetime = true": (
        "[spool]\npartial_lifetime = true\n",
        "[spool] partial_lifetime: not a duration: true (use e.g. 30d, 12h, 90m, 3600)",
    ),
    "incoming = 5": ("[toss]\nincoming = 5\n", "[toss] incoming: must be a string, not 5"),
    "address = 5": ("[node.addresses]\ntcp = 5\n", "[node.addresses] tcp: must be a string, not 5"),
    "peer relay_max_bytes = -5": (
        "[peers.bob]\nrelay_max_bytes = -5\n",
        "[peers.bob] relay_max_bytes: not a size: -5 (a size is never negative)",
    ),
    "peer relay_max_bundles = true": (
        "[peers.bob]\nrelay_max_bundles = true\n",
        "[peers.bob] relay_max_bundles: must be an integer from 0 to 1000000000, not true",
    ),
    "peer max_rate = 100": (
        "[peers.bob]\nmax_rate = 100\n",
        "[peers.bob] max_rate: rate too low: 100 (at least 1K bytes per second)",
    ),
    "min_free = -1": (
        "[spool]\nmin_free = -1\n",
        "[spool] min_free: not a size: -1 (a size is never negative)",
    ),
    "peer receive_max_bytes = true": (
        "[peers.bob]\nreceive_max_bytes = true\n",
        "[peers.bob] receive_max_bytes: not a size: true (e.g. 500K, 100MB, 512MiB, 1G, 1 GiB)",
    ),
    "hops = '2'": (
        '[send]\nhops = "2"\n',
        '[send] hops: must be an integer from 0 to 8, not "2" (a number is written without quotes)',
    ),
    "max_bundles = '-5'": (
        '[relay]\nmax_bundles = "-5"\n',
        '[relay] max_bundles: must be an integer from 1 to 1000000000, not "-5"'
        " (a number is written without quotes)",
    ),
    "enabled = 'true'": (
        '[relay]\nenabled = "true"\n',
        '[relay] enabled: must be true or false, not "true" (written without quotes)',
    ),
    "addresses = 'tcp://x'": (
        'addresses = "tcp://x"\n',
        '[node] addresses: must be a table ([node.addresses] and its keys below it), not "tcp://x"',
    ),
    "[peers] bob = 1": (
        "[peers]\nbob = 1\n",
        "[peers] bob: must be a table ([peers.bob] and its keys below it), not 1",
    ),
    "peer keep_link = 'yes'": (
        '[peers.bob]\nkeep_link = "yes"\n',
        '[peers.bob] keep_link: must be true or false, not "yes"',
    ),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_wrong_value_is_refused_naming_its_key(tmp_path: Path, case: tuple[str, str]) -> None:
    text, message = case
    with pytest.raises(UsageError) as refused:
        load(tmp_path, text)
    assert refused.value.message == f"{tmp_path / 'config.toml'}: invalid setting: {message}"


SIZES = {
    "1024": 1024,
    '"0"': 0,
    '"100"': 100,
    '"100B"': 100,
    '"500K"': 500 * 1024,
    '"500k"': 500 * 1024,
    '"2M"': 2 << 20,
    '"1G"': GiB,
    '"1GB"': 10**9,
    '"1 GiB"': GiB,
    '"512MiB"': 512 << 20,
    '"1.5G"': GiB * 3 // 2,
    '"2 TB"': 2 * 10**12,
    '"1Gi"': GiB,
    '" 10 KB "': 10_000,
}


@pytest.mark.parametrize("written", SIZES, ids=SIZES.keys())
def test_sizes_as_in_dd(tmp_path: Path, written: str) -> None:
    loaded = load(tmp_path, f"[peers.bob]\nrelay_max_bytes = {written}\n")
    assert loaded.peer("bob").relay_max_bytes == SIZES[written]


@pytest.mark.parametrize("written", ['"1iB"', '"1 G B"', '"1KK"', '"-1K"', '"1e3"', '"0x10"'])
def test_not_a_size(tmp_path: Path, written: str) -> None:
    with pytest.raises(UsageError, match=r"\[relay\] max_bytes: not a size: "):
        load(tmp_path, f"[relay]\nmax_bytes = {written}\n")


def test_the_defaults_and_good_values_still_load(tmp_path: Path) -> None:
    assert load(tmp_path, "") == config.Config(name="alice")
    loaded = load(
        tmp_path,
        '[send]\nnice = 0\nlifetime = "12h"\nhops = 2\n'
        '[relay]\nenabled = true\nmax_bytes = "2GiB"\nmax_bundles = 5\n'
        "[peers.bob]\nrelay_max_bytes = 0\nrelay_max_bundles = 0\nkeep_link = true\n",
    )
    assert (loaded.nice, loaded.lifetime_seconds, loaded.hops) == (0, 12 * 3600, 2)
    assert config.Config(name="alice").partial_lifetime_seconds == 7 * 86400
    assert (
        load(tmp_path, '[spool]\npartial_lifetime = "2d"\n').partial_lifetime_seconds == 2 * 86400
    )
    assert loaded.relay == config.RelaySettings(enabled=True, max_bytes=2 * GiB, max_bundles=5)
    assert loaded.peer("bob") == config.PeerSettings(
        relay_max_bytes=0, relay_max_bundles=0, keep_link=True
    )


def test_room_to_receive_a_peer_overrides_the_spool(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        '[spool]\nmin_free = 0\nreceive_max_bytes = "1G"\n[peers.bob]\nreceive_max_bytes = 0\n',
    )
    assert loaded.min_free_bytes == 0
    assert (loaded.receive_max("bob"), loaded.receive_max("carol")) == (0, GiB)
    defaults = load(tmp_path, "")
    assert (defaults.min_free_bytes, defaults.receive_max("bob")) == (100 << 20, None)


def test_a_command_refuses_nice_true_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    run("rise", "init", "--name", "alice", home=home)
    path = home / "config.toml"
    path.write_text(path.read_text().replace("nice = 16", "nice = true"))
    refused = run("rise", "card", home=home, check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode().splitlines() == [
        f"rise: {path}: invalid setting: [send] nice: must be an integer from 0 to 255, not true"
    ]


def test_part_sizes_load_and_name_their_key(tmp_path: Path) -> None:
    """[send] part_size and [toss] parts_max_bytes (split files, protocol.md section 25)."""
    loaded = load(tmp_path, '[send]\npart_size = "1GB"\n[toss]\nparts_max_bytes = "2GiB"\n')
    assert (loaded.part_bytes, loaded.parts_max_bytes) == (10**9, 2 * GiB)
    unset = load(tmp_path, "")
    assert (unset.part_bytes, unset.parts_max_bytes) == (None, config.DEFAULT_PARTS_MAX_BYTES)
    with pytest.raises(UsageError, match=r"\[send\] part_size: must be a size of at least 65536"):
        load(tmp_path, '[send]\npart_size = "1K"\n')


def test_the_template_lists_the_schemes_it_is_given_and_still_loads(tmp_path: Path) -> None:
    """A plugin's scheme is listed beside the built-ins; with none given, the command."""
    many = ["tcp", "dir", "lora+mesh", *(f"scheme{number}" for number in range(12))]
    text = config.render("alice", schemes=many)
    comment = text[text.index("# where to reach bob") : text.index("# keep_link")]
    listed = " ".join(line.strip("# ") for line in comment.splitlines())
    assert listed.endswith(": " + ", ".join(f"{scheme}:" for scheme in sorted(many)))
    assert all(len(line) <= 80 for line in comment.splitlines()[1:])
    assert "(`rise carriers` lists them)" in config.render("alice")
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert config.load(path) == config.Config(name="alice")


NEAREST = {
    "[relays]": ("[relays]\nenabled = true\n", "unknown section [relays], did you mean [relay]?"),
    "[Send]": ("[Send]\nnice = 1\n", "unknown section [Send], did you mean [send]?"),
    "[peer.bob]": (
        '[peer.bob]\naddress = "x"\n',
        "unknown section [peer], did you mean [peers.bob]?",
    ),
    "[call]": ('[call]\nnode = "bob"\n', "unknown section [call], did you mean [[calls]]?"),
    "[colours]": ("[colours]\nred = 1\n", "unknown section [colours]"),
    "enable": (
        "[relay]\nenable = true\n",
        "unknown key 'enable' in [relay], did you mean 'enabled'?",
    ),
    "adress": (
        '[peers.bob]\nadress = "tcp://x"\n',
        "unknown key 'adress' in [peers.bob], did you mean 'address'?",
    ),
    "colour": ("[toss]\ncolour = 1\n", "unknown key 'colour' in [toss]"),
    "hops appended below [spool]": (
        "[spool]\nmin_free = 0\nhops = 2\n",
        "unknown key 'hops' in [spool]: put it below [send]",
    ),
    "lifetime in [spool]": (
        '[spool]\nlifetime = "1d"\n',
        "unknown key 'lifetime' in [spool]: put it below [send] or [map]",
    ),
    "address in [toss]": (
        '[toss]\naddress = "tcp://x"\n',
        "unknown key 'address' in [toss]: put it below [peers.NAME]",
    ),
    "nice in [peers.bob]": (
        "[peers.bob]\nnice = 3\n",
        "unknown key 'nice' in [peers.bob]: put it below [send]",
    ),
    "name in [peers.bob]": ('[peers.bob]\nname = "Bob"\n', "unknown key 'name' in [peers.bob]"),
}


@pytest.mark.parametrize("case", NEAREST.values(), ids=NEAREST.keys())
def test_an_unknown_name_says_which_known_one_is_nearest(
    tmp_path: Path, case: tuple[str, str]
) -> None:
    text, message = case
    with pytest.raises(UsageError) as refused:
        load(tmp_path, text)
    assert refused.value.message == f"{tmp_path / 'config.toml'}: {message} (see rise-config(5))"


TWICE = {
    "[relay] twice": (
        "[relay]\nenabled = true\n\n[relay]\nmax_bytes = 1\n",
        "line 6: [relay] appears twice: edit the one on line 3 instead of adding another",
    ),
    "[peers.bob] twice": (
        '[peers.bob]\nkeep_link = true\n[ peers . "bob" ]  # again\n',
        "line 5: [peers.bob] appears twice: edit the one on line 3 instead of adding another",
    ),
    "a dotted key, then its table": (
        '[node.addresses]\ntcp = "x"\n[peers]\nbob.keep_link = true\n[peers.bob]\n',
        "line 7: [peers.bob] appears twice: edit the one above instead of adding another",
    ),
    "[calls] below [[calls]]": (
        '[[calls]]\nnode = "bob"\n[calls]\n',
        "line 5: [calls] below [[calls]]: write [[calls]] for each one",
    ),
}


@pytest.mark.parametrize("case", TWICE.values(), ids=TWICE.keys())
def test_a_table_written_twice_says_which_line_to_edit(
    tmp_path: Path, case: tuple[str, str]
) -> None:
    text, message = case
    with pytest.raises(UsageError) as refused:
        load(tmp_path, text)
    assert refused.value.message == f"{tmp_path / 'config.toml'} {message}"


def test_other_syntax_errors_keep_the_parsers_words_and_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        load(tmp_path, "[relay\n")
    assert refused.value.message.startswith(f"{tmp_path / 'config.toml'}: Expected ']'")
    assert refused.value.message.endswith("(at line 3, column 7)")


SYNTAX = {
    "min_free = 100MB": (
        "[spool]\nmin_free = 100MB\n",
        'line 4: [spool] min_free = 100MB: text goes in quotes: min_free = "100MB"',
    ),
    "lifetime = 30d  # a month": (
        "[send]\nlifetime = 30d  # a month\n",
        'line 4: [send] lifetime = 30d: text goes in quotes: lifetime = "30d"',
    ),
    "incoming = /srv/rise": (
        "[toss]\nincoming = /srv/rise\n",
        'line 4: [toss] incoming = /srv/rise: text goes in quotes: incoming = "/srv/rise"',
    ),
    "[[calls]] cron unquoted": (
        '[[calls]]\nnode = "bob"\ncron = */10 * * * *\n',
        'line 5: [[calls]] cron = */10 * * * *: text goes in quotes: cron = "*/10 * * * *"',
    ),
    "a command with quotes": (
        '[toss]\non_delivery = notify-send "new file"\n',
        'line 4: [toss] on_delivery = notify-send "new file": text goes in quotes:'
        " on_delivery = 'notify-send \"new file\"'",
    ),
    "enabled = yes": (
        "[relay]\nenabled = yes\n",
        "line 4: [relay] enabled = yes: write true or false (lower case, without quotes)",
    ),
    "keep_link = True": (
        "[peers.bob]\nkeep_link = True\n",
        "line 4: [peers.bob] keep_link = True: write true or false (lower case, without quotes)",
    ),
    "nice =": (
        "[send]\nnice =\n",
        "line 4: [send] nice: nothing after =: give a value, or delete the line",
    ),
    "curly quotes": (
        "[send]\nlifetime = \u201c12h\u201d\n",
        'line 4: [send] lifetime = \u201c12h\u201d: use straight quotes: lifetime = "12h"',
    ),
    "no closing quote": (
        '[toss]\nincoming = "/srv/rise\n',
        'line 4: [toss] incoming = "/srv/rise: the string has no closing "',
    ),
    "no closing single quote": (
        "[toss]\nincoming = '/srv/rise\n[send]\nnice = 1\n",
        "line 4: [toss] incoming = '/srv/rise: the string has no closing '",
    ),
    "a backslash": (
        '[toss]\non_delivery = "grep -q \\d"\n',
        'line 4: [toss] on_delivery = "grep -q \\d": a \\ in "..." starts an escape:'
        " use '...', or write \\\\",
    ),
    "nice set twice": (
        "[send]\nnice = 1\nhops = 2\n\nnice = 5\n",
        "line 7: [send] nice is set twice: edit the one on line 4 instead of adding another",
    ),
}


@pytest.mark.parametrize("case", SYNTAX.values(), ids=SYNTAX.keys())
def test_a_common_syntax_mistake_says_what_to_write(tmp_path: Path, case: tuple[str, str]) -> None:
    text, message = case
    with pytest.raises(UsageError) as refused:
        load(tmp_path, text)
    assert refused.value.message == f"{tmp_path / 'config.toml'} {message}"


def test_a_value_at_the_top_is_named_without_a_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('hops = two\n[node]\nname = "alice"\n')
    with pytest.raises(UsageError) as refused:
        config.load(path)
    assert refused.value.message == f'{path} line 1: hops = two: text goes in quotes: hops = "two"'


def test_a_key_above_every_table_says_where_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    for top, message in [
        ("hops = 2\n", "unknown key 'hops' above the first [table]: put it below [send]"),
        ("colour = 1\n", "unknown key 'colour' above the first [table]"),
    ]:
        path.write_text(top + '[node]\nname = "alice"\n')
        with pytest.raises(UsageError) as refused:
            config.load(path)
        assert refused.value.message == f"{path}: {message} (see rise-config(5))"
    path.write_text('relay = true\n[node]\nname = "alice"\n')
    with pytest.raises(UsageError) as refused:
        config.load(path)
    assert refused.value.message == (
        f"{path}: invalid setting: relay: must be a table ([relay] and its keys below it), not true"
    )


def test_a_file_not_in_utf8_names_its_line_and_a_byte_order_mark_is_no_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes('[node]\nname = "alice"\n# caf\u00e9 du coin\n'.encode("latin-1"))
    with pytest.raises(UsageError) as refused:
        config.load(path)
    assert refused.value.message == f"{path} line 3: not UTF-8 (byte 0xe9): save the file as UTF-8"
    path.write_bytes('\ufeff[node]\nname = "alice"\n'.encode())  # as some editors save it
    assert config.load(path) == config.Config(name="alice")


# The stuff of config.toml and of its common slips: headers, keys, quotes, escapes, line ends.
PIECES = [*"[]\"'=#.\\ \t\n\r\x0c\u2028\u201cab1-", "nice", "[send]", "[[calls]]", " = ", "yes"]
CONFIG_TEXT = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@given(CONFIG_TEXT)
def test_any_syntax_error_is_explained_in_one_line_or_left_as_it_was(text: str) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        explained = config_mistakes.explain(text, str(exc))
        if explained is not None:
            assert explained.startswith("line ") and explained.isprintable()
