"""Two-node networks (alice -> bob over a directory) for rise-dtn and for NNCP.

Each network is built from scratch under its own directory with the tools'
own commands, exactly as a user would: `rise init`, `rise card | rise peer
add -` for rise-dtn; `nncp-cfgnew` for NNCP, whose generated keys are written
into two JSON configs (NNCP reads Hjson, a superset of JSON) that know each
other as neighbours and keep spool, log and incoming inside the directory.

A network names the timed steps of one delivery (send, xfer out of alice's
spool onto the medium, xfer from the medium into bob's spool with the toss
that delivers it) as argv lists; bench/run.py runs and times them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from steps import run_setup

STEPS = ("send", "xfer out", "xfer in + toss")
MESSAGE_NAME = "msg"  # NNCP's destination name for the stdin message


class RiseNetwork:
    tool = "rise-dtn"

    def __init__(self, root: Path, medium: Path, bin_dir: Path) -> None:
        self.root = root
        self.alice = root / "alice"
        self.bob = root / "bob"
        self.medium = medium
        self.bin_dir = bin_dir
        self.bob_id = ""

    def command(self, name: str) -> str:
        return str(self.bin_dir / name)

    def setup(self) -> None:
        self.root.mkdir(parents=True)
        self.medium.mkdir(parents=True)
        rise = self.command("rise")
        run_setup([rise, "init", "--home", str(self.alice), "--name", "alice"])
        self.bob_id = run_setup([rise, "init", "--home", str(self.bob), "--name", "bob"]).strip()
        for me, other in ((self.alice, self.bob), (self.bob, self.alice)):
            card = run_setup([rise, "card", "--home", str(other)]).encode()
            run_setup([rise, "peer", "add", "--home", str(me), "-"], stdin=card)

    def steps(self, source: str) -> list[tuple[str, list[str]]]:
        """`source` is a file path, or '-' for a message on stdin."""
        return [
            ("send", [self.command("rise-send"), "--home", str(self.alice), source, "bob"]),
            ("xfer out", [self.command("rise-xfer"), "--home", str(self.alice), str(self.medium)]),
            # What the cookbook's cron line runs: take the stick's bundles and deliver them.
            (
                "xfer in + toss",
                [self.command("rise-xfer"), "--toss", "--home", str(self.bob), str(self.medium)],
            ),
        ]

    def queued(self) -> list[Path]:
        """Bundles waiting in alice's spool for bob."""
        return sorted((self.alice / "spool" / "tx" / self.bob_id).glob("*.rsb"))

    def delivered(self, name: str | None, send_stdout: str) -> Path:
        """The delivered file (`name`) or message (None: found by the bundle id)."""
        if name is None:
            bundle_id = send_stdout.strip().splitlines()[-1]
            return self.bob / "inbox" / f"{bundle_id}.msg"
        return self.bob / "incoming" / "alice" / name


_SELF_BLOCK = re.compile(r"^\s*self:\s*\{(.*?)^\s*\}", re.S | re.M)
_KEY_LINE = re.compile(r"^\s*(\w+):\s*(\S+)\s*$", re.M)
_PUBLIC = ("id", "exchpub", "signpub", "noisepub")


def parse_cfgnew(text: str) -> dict[str, str]:
    """The `self` block of `nncp-cfgnew -nocomments` output: id and key pairs."""
    match = _SELF_BLOCK.search(text)
    if match is None:
        raise ValueError("no self block in nncp-cfgnew output")
    keys = dict(_KEY_LINE.findall(match.group(1)))
    missing = {*_PUBLIC, "exchprv", "signprv", "noiseprv"} - keys.keys()
    if missing:
        raise ValueError(f"nncp-cfgnew output lacks {sorted(missing)}")
    return keys


class NncpNetwork:
    tool = "NNCP"

    def __init__(self, root: Path, medium: Path) -> None:
        self.root = root
        self.alice = root / "alice"
        self.bob = root / "bob"
        self.medium = medium
        self.alice_cfg = root / "alice.json"
        self.bob_cfg = root / "bob.json"
        self.bob_id = ""

    def setup(self) -> None:
        self.root.mkdir(parents=True)
        self.medium.mkdir(parents=True)
        cfgnew = shutil.which("nncp-cfgnew") or "nncp-cfgnew"
        alice = parse_cfgnew(run_setup([cfgnew, "-nocomments"]))
        bob = parse_cfgnew(run_setup([cfgnew, "-nocomments"]))
        self.bob_id = bob["id"]
        for home, cfg, me, other, other_name in (
            (self.alice, self.alice_cfg, alice, bob, "bob"),
            (self.bob, self.bob_cfg, bob, alice, "alice"),
        ):
            (home / "spool").mkdir(parents=True)
            (home / "incoming").mkdir()
            config = {
                "spool": str(home / "spool"),
                "log": str(home / "log"),
                "self": me,
                "neigh": {
                    "self": {key: me[key] for key in _PUBLIC},
                    other_name: {
                        **{key: other[key] for key in _PUBLIC},
                        "incoming": str(home / "incoming"),
                    },
                },
            }
            cfg.write_text(json.dumps(config, indent=2) + "\n")
            cfg.chmod(0o600)

    def steps(self, source: str) -> list[tuple[str, list[str]]]:
        destination = "bob:" if source != "-" else f"bob:{MESSAGE_NAME}"
        alice, bob = str(self.alice_cfg), str(self.bob_cfg)
        medium = str(self.medium)
        return [
            ("send", ["nncp-file", "-cfg", alice, "-noprogress", source, destination]),
            ("xfer out", ["nncp-xfer", "-cfg", alice, "-noprogress", "-mkdir", medium]),
            # NNCP has no one command for both: the cron line is `nncp-xfer DIR && nncp-toss`.
            (
                "xfer in + toss",
                [
                    "sh",
                    "-c",
                    'nncp-xfer -cfg "$1" -noprogress "$2" && nncp-toss -cfg "$1" -noprogress',
                    "sh",
                    bob,
                    medium,
                ],
            ),
        ]

    def queued(self) -> list[Path]:
        """Packets waiting in alice's spool for bob (tx/hdr/ holds header caches, not packets)."""
        tx = self.alice / "spool" / self.bob_id / "tx"
        return sorted(path for path in tx.iterdir() if path.is_file())

    def delivered(self, name: str | None, send_stdout: str) -> Path:
        del send_stdout
        return self.bob / "incoming" / (name if name is not None else MESSAGE_NAME)
