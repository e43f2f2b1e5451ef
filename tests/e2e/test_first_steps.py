"""What a new user sees on a new node: every empty listing says so, and what comes next."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import BIN, Node, command_env, make_node, run
from tests.radiolink import open_raw, start_pty_pair


def test_a_new_node_says_what_to_do_next(tmp_path: Path) -> None:
    home = tmp_path / "carol"
    created = run("rise", "init", "--name", "carol", home=home)
    assert created.stderr.decode().splitlines()[-1] == (
        "next: `rise card` prints your card; `rise peer add CARD` trusts a neighbour's card"
    )
    bob = make_node(tmp_path, "bob")
    run("rise", "peer", "add", "-", home=home, input=bob.card())
    said = {
        args: run("rise", *args, home=home)
        for args in (("queue",), ("queue", "--for", "bob"), ("status",), ("inbox",))
    }
    assert all(result.stdout == b"" for result in said.values())  # stdout stays data
    assert {args: result.stderr.decode() for args, result in said.items()} == {
        ("queue",): "nothing waits here\n",
        ("queue", "--for", "bob"): "nothing waits for or from bob\n",
        ("status",): "nothing sent from this node yet: `rise-send FILE NODE`\n",
        ("inbox",): "no messages\n",
    }


def test_the_config_template_lists_every_installed_address_scheme(tmp_path: Path) -> None:
    """Taken from the carriers installed when `rise init` runs, so the list cannot drift."""
    home = tmp_path / "erin"
    run("rise", "init", "--name", "erin", home=home)
    installed = json.loads(run("rise", "carriers", "--json").stdout)["carriers"]
    schemes = sorted(scheme for carrier in installed for scheme in carrier["schemes"])
    assert {"tcp", "ssh", "exec", "dir", "imaps", "serial", "kiss", "kiss+tcp"} <= set(schemes)
    text = (home / "config.toml").read_text()
    comment = text[text.index("# where to reach bob") : text.index("# keep_link")]
    assert " ".join(line.strip("# ") for line in comment.splitlines()) == (
        "where to reach bob; the schemes installed (`rise carriers`): "
        + ", ".join(f"{scheme}:" for scheme in schemes)
    )
    assert all(len(line) <= 80 for line in comment.splitlines()[1:])  # wrapped


def test_a_misspelt_config_section_names_the_one_meant(tmp_path: Path) -> None:
    carol = make_node(tmp_path, "carol")
    path = carol.home / "config.toml"
    written = path.read_text()
    path.write_text(written + "\n[relays]\nenabled = true\n")
    refused = carol.run("rise", "card", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        f"rise: {path}: unknown section [relays], did you mean [relay]? (see rise-config(5))\n"
    )
    path.write_text(written + '\n[peers.bob]\nadress = "tcp://bob.example.org"\n')
    refused = carol.run("rise-send", "-", "bob", input=b"hi\n", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        f"rise-send: {path}: unknown key 'adress' in [peers.bob], did you mean 'address'?"
        " (see rise-config(5))\n"
    )


def test_a_misspelt_mailbox_or_calls_key_names_the_one_meant(tmp_path: Path) -> None:
    """[mailbox] and [[calls]] are checked by their carriers, in the same words."""
    carol = make_node(tmp_path, "carol")
    path = carol.home / "config.toml"
    written = path.read_text()
    path.write_text(written + '\n[mailbox]\npasword_file = "~/.mail-password"\n')
    refused = carol.run("rise-imap", "--cards", "imaps://me@mail.example.org", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        "rise-imap: unknown key 'pasword_file' in [mailbox], did you mean 'password_file'?"
        " (see rise-config(5))\n"
    )
    path.write_text(written + '\n[[calls]]\nnode = "bob"\ncorn = "*/10 * * * *"\n')
    refused = carol.run("rise-caller", "--now", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        "rise-caller: unknown key 'corn' in [[calls]], did you mean 'cron'? (see rise-config(5))\n"
    )
    path.write_text(written + '\n[[calls]]\nnode = "bob"\ncron = "0 * * * *"\nwindow = 22\n')
    refused = carol.run("rise-caller", "--now", check=False)  # it called at any hour
    assert refused.returncode == 2
    assert refused.stderr.decode() == "rise-caller: [[calls]] window: must be a string, not 22\n"


def test_a_table_appended_twice_says_which_line_to_edit(tmp_path: Path) -> None:
    """The template `rise init` wrote has a [relay] already; a user appends another."""
    carol = make_node(tmp_path, "carol")
    path = carol.home / "config.toml"
    written = path.read_text()
    path.write_text(written + "\n[relay]\nenabled = true\n")
    refused = carol.run("rise", "card", check=False)
    assert refused.returncode == 2
    first = written.splitlines().index("[relay]") + 1
    appended = len(written.splitlines()) + 2
    assert refused.stderr.decode() == (
        f"rise: {path} line {appended}: [relay] appears twice:"
        f" edit the one on line {first} instead of adding another\n"
    )


def test_a_size_without_quotes_says_to_quote_it(tmp_path: Path) -> None:
    carol = make_node(tmp_path, "carol")
    path = carol.home / "config.toml"
    lines = path.read_text().splitlines()
    number = next(index for index, line in enumerate(lines, 1) if "# min_free" in line)
    lines[number - 1] = "min_free = 100MB"
    path.write_text("\n".join(lines) + "\n")
    refused = carol.run("rise", "card", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        f"rise: {path} line {number}: [spool] min_free = 100MB: text goes in quotes:"
        ' min_free = "100MB"\n'
    )


def test_a_key_appended_at_the_end_says_which_table_it_goes_below(tmp_path: Path) -> None:
    """The template ends in [spool]: a `hops = 2` added at the bottom lands there."""
    carol = make_node(tmp_path, "carol")
    path = carol.home / "config.toml"
    path.write_text(path.read_text() + "hops = 2\n")
    refused = carol.run("rise", "card", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        f"rise: {path}: unknown key 'hops' in [spool]: put it below [send] (see rise-config(5))\n"
    )


def test_sending_a_directory_says_how_to_pack_it(pair: tuple[Node, Node]) -> None:
    alice, _ = pair
    folder = alice.home.parent / "my photos"
    folder.mkdir()
    refused = alice.run("rise-send", str(folder), "bob", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        f"rise-send: {folder} is a directory; a bundle carries one file:"
        f" tar cf - '{folder}' | rise-send --name 'my photos.tar' - bob\n"
    )
    assert alice.run("rise", "queue").stdout == b""  # nothing was queued


def test_rise_status_takes_the_start_of_an_id(pair: tuple[Node, Node]) -> None:
    """As rise queue and rise inbox do: 4 characters or more, one match."""
    alice, _ = pair
    bundle_id = alice.run("rise-send", "-q", "-", "bob", input=b"hi\n").stdout.decode().strip()
    assert alice.run("rise", "status", bundle_id).stdout.decode().startswith(bundle_id)
    assert alice.run("rise", "status", bundle_id[:6]).stdout.decode().startswith(bundle_id)
    too_short = alice.run("rise", "status", bundle_id[:3], check=False)
    assert too_short.returncode == 2
    assert too_short.stderr.decode() == (
        f"rise: give at least 4 characters of a bundle id, not {bundle_id[:3]!r}\n"
    )
    other = "zzzz" if not bundle_id.startswith("zzzz") else "2222"
    unknown = alice.run("rise", "status", other, check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.decode() == (
        f"rise: no bundle {other} was sent from this node (a file or message;"
        " `rise status` lists them all)\n"
    )


def test_rise_check_says_what_to_run_next(pair: tuple[Node, Node]) -> None:
    alice, _ = pair
    alice.run("rise-send", "-q", "-", "bob", input=b"soon damaged\n")
    (bundle,) = (alice.home / "spool" / "tx").glob("*/*.rsb")
    bundle.write_bytes(bundle.read_bytes()[:50])  # as a failing disk might leave it

    found = alice.run("rise-check", check=False)
    assert found.returncode == 3
    assert found.stderr.decode() == "1 spool file(s) checked: problems (run rise-check --repair)\n"
    repaired = alice.run("rise-check", "--repair", check=False)
    assert repaired.returncode == 3
    assert repaired.stderr.decode() == (
        "1 spool file(s) checked: problems, repaired as above (run rise-check again to confirm)\n"
    )
    assert alice.run("rise-check").stderr.decode() == "0 spool file(s) checked: clean\n"


def test_a_call_with_no_address_says_where_to_give_one(pair: tuple[Node, Node]) -> None:
    alice, _ = pair
    # a card without addresses and no config: rise-call listens for a beacon, then says how
    failed = alice.run("rise-call", "--discover-on", "127.0.0.1:0", "bob", check=False)
    assert failed.returncode == 2
    assert failed.stderr.decode() == (
        "rise-call: no address for bob: give one (rise-call bob tcp://HOST:PORT, or dir:,"
        " ssh:, serial:, see `rise carriers`), set [peers.bob] address in config.toml,"
        " or run its daemon with --announce (listened 12 s)\n"
    )


def test_rise_serial_on_a_bare_device_names_the_schemes(tmp_path: Path) -> None:
    carol = make_node(tmp_path, "carol")
    refused = carol.run("rise-serial", "/dev/ttyUSB0", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        "rise-serial: not an address: '/dev/ttyUSB0' (a serial port is"
        " 'serial:/dev/ttyUSB0?baud=9600', a KISS TNC on it 'kiss:/dev/ttyUSB0')\n"
    )


def test_a_call_to_a_port_where_nothing_listens_says_what_to_check(
    pair: tuple[Node, Node],
) -> None:
    alice, _ = pair
    with socket.socket() as taken:  # a port of our own, bound and never listening
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        refused = alice.run("rise-call", "bob", f"tcp://127.0.0.1:{port}", check=False)
    assert refused.returncode != 0
    assert (
        f"cannot reach bob at 127.0.0.1:{port}: nothing listens there (is rise-daemon "
        "running on bob, with --listen on that port?)"
    ) in refused.stderr.decode()


def test_a_call_whose_command_cannot_start_says_so(pair: tuple[Node, Node]) -> None:
    """Not "the node closed the link during the handshake": the node was never reached."""
    alice, _ = pair
    missing = alice.run("rise-call", "bob", "--command", "rise-daemonx --stdio", check=False)
    assert missing.returncode == 2
    assert missing.stderr.decode().splitlines()[-1] == (  # below the shell's own line
        "rise-call: cannot start the command 'rise-daemonx --stdio':"
        " rise-daemonx: not found in any folder of PATH"
    )
    script = alice.home.parent / "daemon"
    script.write_text("#!/bin/sh\nexec rise-daemon --stdio\n")  # not made executable
    refused = alice.run("rise-call", "-q", "bob", "--command", f"{script} --stdio", check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        f"rise-call: cannot start the command '{script} --stdio': {script}: Permission denied\n"
    )
    # as over ssh: the command starts, but the one it runs does not (exit status 127)
    inner = alice.run("rise-call", "-q", "bob", "--command", "env rise-daemonx", check=False)
    assert inner.returncode == 2
    assert inner.stderr.decode().splitlines()[-1] == (
        "rise-call: the command 'env rise-daemonx' exited 127: a program it runs was not found"
        " (its own message says which)"
    )
    assert "rise-daemonx" in inner.stderr.decode().splitlines()[0]  # env's message, kept by -q


SERIAL_DEADLINE_SECONDS = 120.0  # for the caller's first frame, on a loaded machine


def test_a_serial_call_that_nobody_answers_says_what_to_check(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """A real pty pair with nothing at the far end: no rise-serial, or a radio switched off."""
    alice, _ = pair
    socat, here, _there = start_pty_pair(tmp_path / "socat.log")
    try:
        silent = alice.run("rise-call", "bob", f"serial:{here}?giveup=1", check=False)
    finally:
        socat.terminate()
        socat.wait()
    assert silent.returncode == 4
    assert silent.stderr.decode() == (
        f"rise-call: link to bob failed: nothing answered on {here} in 1 s: is rise-serial"
        " running at the other end, is this the right port, with the same baud= (9600) at both"
        " ends, and is the radio or modem on?\n"
    )


def test_a_serial_call_that_hears_only_noise_names_the_baud_rate(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    """What a far end at another baud rate sends: bytes, and never a frame that checks."""
    alice, _ = pair
    socat, here, there = start_pty_pair(tmp_path / "socat.log")
    far = open_raw(there)
    noise = bytes(range(256)) * 2  # FENDs among them: "frames" whose CRC fails
    try:
        calling = subprocess.Popen(
            [str(BIN / "rise-call"), "bob", f"serial:{here}?giveup=5&baud=115200"],
            env=command_env(alice.home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + SERIAL_DEADLINE_SECONDS
        while not select.select([far], [], [], 0.05)[0]:  # a poll with a deadline
            assert time.monotonic() < deadline, "the call sent nothing"
        os.read(far, 4096)  # its first frame: the call is up and listening
        os.write(far, noise)
        _, stderr = calling.communicate(timeout=SERIAL_DEADLINE_SECONDS)
    finally:
        os.close(far)
        socat.terminate()
        socat.wait()
    assert calling.returncode == 4
    assert stderr.decode() == (
        f"rise-call: link to bob failed: only noise on {here} in 5 s (512 bytes, no frame):"
        " does the other end use the same baud= (115200) and link profile?\n"
    )
