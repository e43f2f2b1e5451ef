"""rise-dtn relay benchmark: the [relays] issue's figures, next to NNCP's transitional packets.

    .venv/bin/python bench/relays.py                  # 10,000 bundles, 256 MiB and 1 GiB, NNCP too
    .venv/bin/python bench/relays.py --count 2000 --sizes 64M --no-nncp --json out.json

Three figures, each from fresh nodes made with the tools' own commands
(`rise init`, `rise card | rise peer add -`, `nncp-cfgnew`):

1. overhead: the size of a 100-byte message as `rise-send` queues it, direct
   and over 1..4 relays (`--hops N`), before and after bucket padding, per
   extra relay; NNCP's packet in the spool for 0..4 vias (`nncp-file -via`).
2. toss rate: 10,000 one-relay packets carried into a relay's spool by
   `rise-xfer`, then ONE timed `rise-toss` on the relay forwards them all;
   NNCP: `nncp-toss` on a transit node with 10,000 transitional packets.
3. two relays: a file from a over r1 and r2 to b over three directory
   carriers, every step a timed real process (wall, MB/s, peak RSS).

Packets for figure 2 are generated in a child process with the library (10,000
`rise-send` processes would take an hour): that is set-up, never timed. Every
timed figure is a real process of the installed command, started through GNU
time for its peak RSS, as in bench/run.py (see bench/README.md).

The scratch directory defaults to bench-scratch/ next to the repository, not
the temp directory: /tmp here takes ~600 us to create a file, which would be
billed to every step that handles 10,000 packets.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import install
import machine
from nodes import parse_cfgnew
from report import MB, human_size
from run import (
    INSTALLS,
    add_scratch_options,
    choose_media,
    make_payload,
    parse_sizes,
    rise_bin_dir,
    say,
    sha256_file,
)
from steps import StepFailed, StepResult, gnu_time, run_setup, run_step

REPO = Path(__file__).resolve().parent.parent
# /tmp here creates files at ~600 us each; 10,000 packets x a few files per step would time it.
DEFAULT_WORKDIR = REPO.parent / "bench-scratch"
MESSAGE_BYTES = 100
MAX_HOPS = 4
HOP_TARGET_BYTES = 120  # the target: at most this per extra relay, before padding
TOSS_TARGET_PER_SECOND = 2000
BASELINE_RUNS = 3  # rise-toss on an empty spool, median: the start-up to subtract
NNCP_PUBLIC = ("id", "exchpub", "signpub", "noisepub")
NNCP_COMMANDS = ("nncp-cfgnew", "nncp-file", "nncp-xfer", "nncp-toss")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/relays.py",
        description="Relay figures: per-hop overhead, relay toss rate, a file over two relays.",
    )
    parser.add_argument(
        "--count", type=int, default=10_000, help="bundles for the toss rate (default 10000)"
    )
    parser.add_argument(
        "--nncp-count",
        type=int,
        help="transitional packets for NNCP's toss rate (default: --count); each is one "
        "nncp-file process, about 10 ms",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("256M,1G"),
        help="file sizes sent over two relays, binary units (default: 256M,1G)",
    )
    add_scratch_options(parser, workdir=DEFAULT_WORKDIR)
    parser.add_argument("--no-nncp", action="store_true", help="do not run NNCP")
    install.add_option(parser)
    args = parser.parse_args(argv)
    if args.nncp_count is None:
        args.nncp_count = args.count
    if args.count < 1 or args.nncp_count < 1:
        parser.error("--count and --nncp-count must be at least 1")
    return args


def files_under(directory: Path) -> dict[Path, int]:
    """{path: size} of the regular files below `directory`.

    Symlinks are not followed (NNCP links each neighbour's name to its spool
    directory) and NNCP's tx/hdr/ header caches are not packets.
    """
    found = {}
    for top, dirs, names in os.walk(directory):
        dirs[:] = [name for name in dirs if name != "hdr" and not Path(top, name).is_symlink()]
        for name in names:
            path = Path(top, name)
            if path.is_file() and not path.is_symlink():
                found[path] = path.stat().st_size
    return found


def new_file(directory: Path, before: dict[Path, int]) -> int:
    """The size of the one file that appeared under `directory` since `before`."""
    added = {path: size for path, size in files_under(directory).items() if path not in before}
    if len(added) != 1:
        raise StepFailed(f"expected one new packet under {directory}, found {sorted(added)}")
    return next(iter(added.values()))


# --- nodes ------------------------------------------------------------------------------------


class RiseNodes:
    """rise-dtn nodes under one directory, made and introduced with the `rise` command."""

    tool = "rise-dtn"

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.ids: dict[str, str] = {}
        self.relays: set[str] = set()
        root.mkdir(parents=True)

    def cmd(self, name: str) -> str:
        return str(self.bin_dir / name)

    def home(self, name: str) -> Path:
        return self.root / name

    def init(self, name: str, *, relay: bool = False) -> None:
        argv = [self.cmd("rise"), "init", "--home", str(self.home(name)), "--name", name]
        self.ids[name] = run_setup(argv).strip()
        if relay:
            # Quotas far above the figures: a relay defers what exceeds them.
            self._edit_config(
                name,
                {
                    "# enabled = true": "enabled = true",
                    '# max_bytes = "1G"': 'max_bytes = "1000G"',
                    "# max_bundles = 10000": "max_bundles = 10000000",
                },
            )
            self.relays.add(name)

    def _edit_config(self, name: str, changes: dict[str, str]) -> None:
        path = self.home(name) / "config.toml"
        text = path.read_text()
        for old, new in changes.items():
            if f"\n{old}\n" not in text:
                raise StepFailed(f"{path}: no line {old!r} to change")
            text = text.replace(f"\n{old}\n", f"\n{new}\n", 1)
        path.write_text(text)

    def introduce(self, me: str, other: str, *, via: list[str] | None = None) -> None:
        """`me` adds `other`'s card (`--relay` if other relays); `via`: the card's relays."""
        card = [self.cmd("rise"), "card", "--home", str(self.home(other))]
        if via is not None:
            card += ["--via", ",".join(via)]
        add = [self.cmd("rise"), "peer", "add", "--home", str(self.home(me)), "-"]
        if other in self.relays:
            add.append("--relay")
        run_setup(add, stdin=run_setup(card).encode())

    def link(self, one: str, other: str) -> None:
        """Neighbours: each has the other's card."""
        self.introduce(one, other)
        self.introduce(other, one)

    def xfer(
        self, name: str, medium: Path, *, toss: bool = False, serves: str | None = None
    ) -> list[str]:
        """rise-xfer; `serves`: the neighbour the medium is for (a relay writes only for it)."""
        medium.mkdir(parents=True, exist_ok=True)
        flags = ["--toss"] if toss else []
        flags += ["--for", serves] if serves else []
        return [self.cmd("rise-xfer"), "--home", str(self.home(name)), *flags, str(medium)]

    def tx(self, name: str) -> Path:
        return self.home(name) / "spool" / "tx"


class NncpNodes:
    """NNCP nodes under one directory: `nncp-cfgnew` keys in JSON configs naming neighbours."""

    tool = "NNCP"

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        root.mkdir(parents=True)
        cfgnew = shutil.which("nncp-cfgnew") or "nncp-cfgnew"
        self.keys = {name: parse_cfgnew(run_setup([cfgnew, "-nocomments"])) for name in names}

    def cfg(self, name: str) -> str:
        return str(self.root / f"{name}.json")

    def spool(self, name: str) -> Path:
        return self.root / name / "spool"

    def incoming(self, name: str) -> Path:
        return self.root / name / "incoming"

    def configure(self, name: str, neighbours: list[str], via: dict[str, list[str]]) -> None:
        """Write `name`'s config: these neighbours, reached over `via[neighbour]` if given."""
        self.spool(name).mkdir(parents=True, exist_ok=True)
        self.incoming(name).mkdir(exist_ok=True)
        me = self.keys[name]
        neigh: dict[str, Any] = {"self": {key: me[key] for key in NNCP_PUBLIC}}
        for other in neighbours:
            entry: dict[str, Any] = {key: self.keys[other][key] for key in NNCP_PUBLIC}
            entry["incoming"] = str(self.incoming(name))
            if other in via:
                entry["via"] = via[other]
            neigh[other] = entry
        config = {
            "spool": str(self.spool(name)),
            "log": str(self.root / name / "log"),
            "self": me,
            "neigh": neigh,
        }
        path = Path(self.cfg(name))
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)

    def tx(self, name: str, neighbour: str) -> Path:
        return self.spool(name) / self.keys[neighbour]["id"] / "tx"

    def xfer(self, name: str, medium: Path, *, out: bool) -> list[str]:
        medium.mkdir(parents=True, exist_ok=True)
        direction = ["-tx", "-mkdir"] if out else ["-rx"]
        return ["nncp-xfer", "-cfg", self.cfg(name), "-noprogress", *direction, str(medium)]

    def toss(self, name: str) -> list[str]:
        return ["nncp-toss", "-cfg", self.cfg(name), "-noprogress"]


def tx_packets(directory: Path) -> int:
    """Packets queued in a tx directory (NNCP keeps header caches in tx/hdr/, not packets)."""
    if not directory.is_dir():
        return 0
    return sum(1 for path in directory.iterdir() if path.is_file())


# --- 1. overhead per relay ------------------------------------------------------------------------


def rise_overhead(root: Path, bin_dir: Path, message: bytes) -> list[int]:
    """Packet sizes of one message queued direct and over 1..MAX_HOPS relays (`--hops N`).

    a is a neighbour of relays r1..r4, which form a chain r1-r2-r3-r4; b is next
    to r4, so the only route of N relays is r(5-N) .. r4. a learns the chain's
    links from the relays' maps (`rise map --refresh`, carried by rise-xfer).
    """
    nodes = RiseNodes(root, bin_dir)
    relays = [f"r{number}" for number in range(1, MAX_HOPS + 1)]
    nodes.init("a")
    nodes.init("b")
    for relay in relays:
        nodes.init(relay, relay=True)
    for relay in relays:
        nodes.link("a", relay)
    for left, right in itertools.pairwise(relays):
        nodes.link(left, right)
    nodes.link("b", relays[-1])
    nodes.introduce("a", "b", via=[relays[-1]])
    medium = root / "medium"
    for relay in relays:
        run_setup([nodes.cmd("rise"), "map", "--refresh", "--home", str(nodes.home(relay))])
        run_setup(nodes.xfer(relay, medium, serves="a"))
    run_setup(nodes.xfer("a", medium, toss=True))
    sizes = []
    for hops in range(MAX_HOPS + 1):
        before = files_under(nodes.tx("a"))
        argv = [nodes.cmd("rise-send"), "--home", str(nodes.home("a")), "-q"]
        argv += ["--hops", str(hops)] if hops else []
        run_setup([*argv, "-", "b"], stdin=message)
        sizes.append(new_file(nodes.tx("a"), before))
    return sizes


def nncp_overhead(root: Path, message: Path) -> list[int]:
    """NNCP packet sizes in a's spool for `nncp-file -via r1,..,rN MESSAGE b:` (N = 0..4)."""
    relays = [f"r{number}" for number in range(1, MAX_HOPS + 1)]
    nodes = NncpNodes(root, ["a", "b", *relays])
    nodes.configure("a", [*relays, "b"], {})
    sizes = []
    for hops in range(MAX_HOPS + 1):
        via = ",".join(relays[:hops]) if hops else "-"
        before = files_under(nodes.spool("a"))
        argv = ["nncp-file", "-cfg", nodes.cfg("a"), "-noprogress", "-quiet", "-via", via]
        run_setup([*argv, str(message), f"b:msg{hops}"])
        sizes.append(new_file(nodes.spool("a"), before))
    return sizes


def overhead_rows(sizes: list[int], *, padded_from: int | None) -> list[dict[str, int]]:
    """Per relay count: wire bytes, bytes before padding, and the step from one relay fewer.

    `padded_from`: the direct bundle's size L; onion packets carry it padded to
    padded(L) (protocol.md 20.5), so before padding = wire - padded(L) + L.
    None: the tool does not pad.
    """
    padding = 0
    if padded_from is not None:
        from rise_dtn.core.onion import padded_payload_bytes

        padding = padded_payload_bytes(padded_from) - padded_from
    rows: list[dict[str, int]] = []
    for hops, wire in enumerate(sizes):
        unpadded = wire - padding if hops else wire
        row = {"relays": hops, "wire_bytes": wire, "unpadded_bytes": unpadded}
        if rows:
            row["per_hop_wire"] = wire - rows[-1]["wire_bytes"]
            row["per_hop_unpadded"] = unpadded - rows[-1]["unpadded_bytes"]
        rows.append(row)
    return rows


def overhead(scratch: Path, bin_dir: Path, *, nncp: bool) -> dict[str, Any]:
    say("1. overhead: a 100-byte message direct and over 1..4 relays")
    message = scratch / "message.bin"
    message.write_bytes(os.urandom(MESSAGE_BYTES))
    rise_sizes = rise_overhead(scratch / "overhead-rise", bin_dir, message.read_bytes())
    result: dict[str, Any] = {
        "message_bytes": MESSAGE_BYTES,
        "rise-dtn": overhead_rows(rise_sizes, padded_from=rise_sizes[0]),
    }
    if nncp:
        result["NNCP"] = overhead_rows(
            nncp_overhead(scratch / "overhead-nncp", message), padded_from=None
        )
    return result


# --- 2. relay toss rate -------------------------------------------------------------------------


def generate(home_path: Path, peer_name: str, count: int) -> None:
    """Queue `count` 100-byte messages for `peer_name` over one relay, in this process.

    Set-up, not a measurement: durability is skipped (fsync a no-op, SQLite
    synchronous=OFF) and paid once by the sync below: 10,000 packets take
    under a minute instead of several. Runs in a child (`relays.py
    _generate`), so the benchmark process never imports or patches rise_dtn.
    """
    from rise_dtn.node.home import Home
    from rise_dtn.node.send import routed, send
    from rise_dtn.store import index

    def fast_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()

    os.fsync = lambda _fd: None
    index._sqlite_pragmas = fast_pragmas
    home = Home.open(home_path)
    try:
        peer = home.peers.find(peer_name)
        rng = random.Random(1)
        now = int(time.time())
        for _number in range(count):
            routed.queue_routed(
                home,
                peer,
                io.BytesIO(os.urandom(MESSAGE_BYTES)),
                options=send.SendOptions(),
                route=routed.RouteOptions(hops=1),
                now=now,
                rng=rng,
            )
    finally:
        home.close()
    os.sync()


def timed(step: str, argv: list[str], root: Path, time_binary: str | None) -> StepResult:
    say(f"   {step}")
    return run_step(step, argv, log_dir=root / "logs", time_binary=time_binary)


def rise_toss_rate(root: Path, bin_dir: Path, count: int, time_binary: str | None) -> dict:
    nodes = RiseNodes(root, bin_dir)
    nodes.init("a")
    nodes.init("r", relay=True)
    nodes.init("b")
    nodes.link("a", "r")
    nodes.link("r", "b")
    nodes.introduce("b", "a")
    nodes.introduce("a", "b", via=["r"])
    toss = [nodes.cmd("rise-toss"), "--home", str(nodes.home("r")), "-q"]
    empty = [timed("rise-toss, empty spool", toss, root, time_binary) for _ in range(BASELINE_RUNS)]
    say(f"   generating {count:,} one-relay packets in-process (untimed)")
    started = time.perf_counter()
    run_setup([sys.executable, __file__, "_generate", str(nodes.home("a")), "b", str(count)])
    generated = time.perf_counter() - started
    medium = root / "medium"
    carry = [
        timed("rise-xfer out (a)", nodes.xfer("a", medium), root, time_binary),
        timed("rise-xfer in (r)", nodes.xfer("r", medium, serves="a"), root, time_binary),
    ]
    received = files_under(nodes.home("r") / "spool" / "rx")
    if len(received) != count:
        raise StepFailed(f"r has {len(received)} packets in rx/, expected {count}")
    queued = tx_packets(nodes.tx("r") / nodes.ids["b"])  # rise-xfer may queue a map for b
    tossed = timed("rise-toss (r)", toss, root, time_binary)
    forwarded = tx_packets(nodes.tx("r") / nodes.ids["b"]) - queued
    if forwarded != count:
        raise StepFailed(f"r forwarded {forwarded} packets to b, expected {count}")
    return toss_result(count, tossed, empty, carry, generated=generated)


def nncp_toss_rate(root: Path, count: int, time_binary: str | None) -> dict:
    nodes = NncpNodes(root, ["a", "r", "b"])
    nodes.configure("a", ["r", "b"], {"b": ["r"]})
    nodes.configure("r", ["a", "b"], {})
    nodes.configure("b", ["r", "a"], {})
    empty = [
        timed("nncp-toss, empty spool", [*nodes.toss("r"), "-quiet"], root, time_binary)
        for _ in range(BASELINE_RUNS)
    ]
    message = root / "message.bin"
    message.write_bytes(os.urandom(MESSAGE_BYTES))
    workers = 2 * (os.cpu_count() or 1)
    say(f"   generating {count:,} transitional packets: nncp-file x {count:,} ({workers} at once)")

    def one(number: int) -> None:
        argv = ["nncp-file", "-cfg", nodes.cfg("a"), "-noprogress", "-quiet"]
        run_setup([*argv, str(message), f"b:msg{number}"])

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))
    generated = time.perf_counter() - started
    medium = root / "medium"
    carry = [
        timed("nncp-xfer out (a)", nodes.xfer("a", medium, out=True), root, time_binary),
        timed("nncp-xfer in (r)", nodes.xfer("r", medium, out=False), root, time_binary),
    ]
    queued = tx_packets(nodes.tx("r", "b"))
    tossed = timed("nncp-toss (r)", [*nodes.toss("r"), "-quiet"], root, time_binary)
    forwarded = tx_packets(nodes.tx("r", "b")) - queued
    if forwarded != count:
        raise StepFailed(f"NNCP: r queued {forwarded} packets for b, expected {count}")
    return toss_result(count, tossed, empty, carry, generated=generated)


def toss_result(
    count: int,
    tossed: StepResult,
    empty: list[StepResult],
    carry: list[StepResult],
    *,
    generated: float,
) -> dict[str, Any]:
    startup = statistics.median(step.seconds for step in empty)
    return {
        "bundles": count,
        "toss_seconds": tossed.seconds,
        "toss_cpu_seconds": tossed.cpu_seconds,
        "toss_rss_mib": tossed.max_rss_mib,
        "empty_toss_seconds": startup,
        "empty_toss_rss_mib": max(step.max_rss_mib for step in empty),
        "per_second": count / tossed.seconds,
        "per_second_without_startup": count / max(tossed.seconds - startup, 1e-9),
        "generate_seconds": generated,
        "carry": [{"step": s.step, "seconds": s.seconds, "rss_mib": s.max_rss_mib} for s in carry],
    }


def toss_rate(
    scratch: Path, bin_dir: Path, counts: tuple[int, int], time_binary: str | None, *, nncp: bool
) -> dict[str, Any]:
    count, nncp_count = counts
    say(f"2. relay toss rate: {count:,} one-relay bundles, one rise-toss on the relay")
    result = {"rise-dtn": rise_toss_rate(scratch / "toss-rise", bin_dir, count, time_binary)}
    shutil.rmtree(scratch / "toss-rise", ignore_errors=True)
    if nncp:
        say(f"   NNCP: {nncp_count:,} transitional packets, one nncp-toss on the transit node")
        result["NNCP"] = nncp_toss_rate(scratch / "toss-nncp", nncp_count, time_binary)
        shutil.rmtree(scratch / "toss-nncp", ignore_errors=True)
    return result


# --- 3. a file over two relays --------------------------------------------------------------------


def rise_two_relays(
    root: Path, bin_dir: Path, payload: Path, media: Path | None = None
) -> tuple[list[tuple], Path]:
    """a - r1 - r2 - b, one directory carrier per link; the timed steps and the delivered path."""
    nodes = RiseNodes(root, bin_dir)
    for name in ("a", "b"):
        nodes.init(name)
    for name in ("r1", "r2"):
        nodes.init(name, relay=True)
    for one, other in (("a", "r1"), ("r1", "r2"), ("b", "r2")):
        nodes.link(one, other)
    nodes.introduce("b", "a")
    nodes.introduce("a", "b", via=["r2"])
    sticks = [sticks_in(root, media) / f"medium-{link}" for link in ("a-r1", "r1-r2", "r2-b")]
    # r1's map tells a the link r1-r2 (and r2's card): what --via r1,r2 needs.
    run_setup([nodes.cmd("rise"), "map", "--refresh", "--home", str(nodes.home("r1"))])
    run_setup(nodes.xfer("r1", sticks[0], serves="a"))
    run_setup(nodes.xfer("a", sticks[0], toss=True))
    send = [nodes.cmd("rise-send"), "--home", str(nodes.home("a")), "-q"]
    steps = [
        ("send (a)", [*send, "--hops", "2", "--via", "r1,r2", str(payload), "b"]),
        ("xfer out (a)", nodes.xfer("a", sticks[0])),
        ("xfer --toss (r1): forward", nodes.xfer("r1", sticks[0], toss=True, serves="a")),
        ("xfer out (r1)", nodes.xfer("r1", sticks[1], serves="r2")),
        ("xfer --toss (r2): forward", nodes.xfer("r2", sticks[1], toss=True, serves="r1")),
        ("xfer out (r2)", nodes.xfer("r2", sticks[2], serves="b")),
        ("xfer --toss (b): deliver", nodes.xfer("b", sticks[2], toss=True)),
    ]
    return steps, nodes.home("b") / "incoming" / "a" / payload.name


def nncp_two_relays(
    root: Path, payload: Path, media: Path | None = None
) -> tuple[list[tuple], Path]:
    nodes = NncpNodes(root, ["a", "r1", "r2", "b"])
    nodes.configure("a", ["r1", "r2", "b"], {"b": ["r1", "r2"]})
    nodes.configure("r1", ["a", "r2"], {})
    nodes.configure("r2", ["a", "r1", "b"], {})
    nodes.configure("b", ["r2", "a"], {})
    sticks = [sticks_in(root, media) / f"medium-{link}" for link in ("a-r1", "r1-r2", "r2-b")]
    steps = [
        ("send (a)", ["nncp-file", "-cfg", nodes.cfg("a"), "-noprogress", str(payload), "b:"]),
        ("xfer out (a)", nodes.xfer("a", sticks[0], out=True)),
        ("xfer in (r1)", nodes.xfer("r1", sticks[0], out=False)),
        ("toss (r1): forward", nodes.toss("r1")),
        ("xfer out (r1)", nodes.xfer("r1", sticks[1], out=True)),
        ("xfer in (r2)", nodes.xfer("r2", sticks[1], out=False)),
        ("toss (r2): forward", nodes.toss("r2")),
        ("xfer out (r2)", nodes.xfer("r2", sticks[2], out=True)),
        ("xfer in (b)", nodes.xfer("b", sticks[2], out=False)),
        ("toss (b): deliver", nodes.toss("b")),
    ]
    return steps, nodes.incoming("b") / payload.name


def deliver(
    tool: str, root: Path, plan: tuple[list[tuple], Path], digest: str, time_binary: str | None
) -> dict[str, Any]:
    steps, target = plan
    results = [timed(f"{tool}: {step}", argv, root, time_binary) for step, argv in steps]
    if not target.is_file() or sha256_file(target) != digest:
        raise StepFailed(f"{tool}: {target} is missing or differs from the payload")
    payload_bytes = target.stat().st_size
    total = sum(result.seconds for result in results)
    return {
        "steps": [
            {
                "step": result.step.split(": ", 1)[1],
                "seconds": result.seconds,
                "mb_per_second": payload_bytes / MB / result.seconds,
                "cpu_seconds": result.cpu_seconds,
                "rss_mib": result.max_rss_mib,
            }
            for result in results
        ],
        "seconds": total,
        "mb_per_second": payload_bytes / MB / total,
        "peak_rss_mib": max(result.max_rss_mib for result in results),
    }


def sticks_in(root: Path, media: Path | None) -> Path:
    """Where a network's sticks go: on another filesystem (`media`), as real sticks are."""
    if media is None:
        return root
    return media / f"{root.parent.name}-{root.name}"


def two_relays(
    scratch: Path, bin_dir: Path, sizes: list[int], time_binary: str | None, *, nncp: bool
) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        case = human_size(size)
        say(f"3. a {case} file a -> r1 -> r2 -> b over three directory carriers")
        payload = scratch / f"payload-{size}.bin"
        digest = make_payload(payload, size)
        row: dict[str, Any] = {"case": case, "payload_bytes": size}
        media = choose_media(None, scratch)[0][1]  # /dev/shm, if it is another filesystem
        row["sticks"] = str(media or scratch)
        root = scratch / f"two-relays-{size}-rise"
        row["rise-dtn"] = deliver(
            "rise-dtn", root, rise_two_relays(root, bin_dir, payload, media), digest, time_binary
        )
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(sticks_in(root, media), ignore_errors=True)
        if nncp:
            root = scratch / f"two-relays-{size}-nncp"
            plan = nncp_two_relays(root, payload, media)
            row["NNCP"] = deliver("NNCP", root, plan, digest, time_binary)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(sticks_in(root, media), ignore_errors=True)
        payload.unlink()
        rows.append(row)
    return rows


# --- output -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def print_overhead(figure: dict[str, Any]) -> None:
    print(f"1. Size of a {figure['message_bytes']}-byte message per relay on the route")
    print("   rise-dtn: `rise-send [--hops N] - b`; NNCP: `nncp-file -via r1,..,rN FILE b:`;")
    print("   bytes of the packet queued in a's spool; 'before padding' = with the direct")
    print("   bundle inside unpadded (rise-dtn pads it to a size bucket, NNCP does not pad)")
    print(
        f"   {'tool':<9} {'relays':>6} {'wire B':>7} {'+/relay':>8} "
        f"{'before padding B':>17} {'+/relay':>8}"
    )
    for tool in ("rise-dtn", "NNCP"):
        for row in figure.get(tool, []):
            step = row.get("per_hop_wire")
            unpadded_step = row.get("per_hop_unpadded")
            line = (
                f"   {tool:<9} {row['relays']:>6} {row['wire_bytes']:>7} "
                f"{'' if step is None else step:>8} {row['unpadded_bytes']:>17} "
                f"{'' if unpadded_step is None else unpadded_step:>8}"
            )
            print(line.rstrip())
    rise = figure["rise-dtn"]
    later = max(row["per_hop_unpadded"] for row in rise[2:])
    first = rise[1]["per_hop_unpadded"]
    mean = (rise[-1]["unpadded_bytes"] - rise[0]["unpadded_bytes"]) / (len(rise) - 1)
    print(f"   rise-dtn, before padding, target <= {HOP_TARGET_BYTES} B per relay:")
    print(
        f"     relays 2..{len(rise) - 1}: {later} B each (one routing slot): "
        f"{verdict(later <= HOP_TARGET_BYTES)}"
    )
    print(
        f"     relay 1: {first} B (the onion's own clear part, MAC and the destination's slot "
        f"as well): {verdict(first <= HOP_TARGET_BYTES)}"
    )
    print(f"     mean over 1..{len(rise) - 1} relays: {mean:.1f} B per relay")
    print()


def print_toss(figure: dict[str, Any]) -> None:
    print("2. Relay toss rate: one-relay bundles of 100 bytes in r's spool, ONE toss process")
    print("   rise-dtn: `rise-toss` on r forwards each to tx/<b>/; NNCP: `nncp-toss` on the")
    print("   transit node queues each transitional packet's content for b")
    print(
        f"   {'tool':<9} {'bundles':>7} {'wall s':>7} {'CPU s':>6} {'RSS MiB':>8} "
        f"{'bundles/s':>10} {'empty s':>8} {'w/o start-up':>13}"
    )
    for tool in ("rise-dtn", "NNCP"):
        row = figure.get(tool)
        if row is None:
            continue
        print(
            f"   {tool:<9} {row['bundles']:>7,} {row['toss_seconds']:>7.2f} "
            f"{row['toss_cpu_seconds']:>6.2f} {row['toss_rss_mib']:>8.1f} "
            f"{row['per_second']:>10,.0f} {row['empty_toss_seconds']:>8.3f} "
            f"{row['per_second_without_startup']:>13,.0f}"
        )
    rise = figure["rise-dtn"]
    print(
        f"   rise-dtn, target >= {TOSS_TARGET_PER_SECOND:,}/s: start-up included "
        f"{verdict(rise['per_second'] >= TOSS_TARGET_PER_SECOND)}, without "
        f"{verdict(rise['per_second_without_startup'] >= TOSS_TARGET_PER_SECOND)}"
    )
    print("   empty s = the same command on an empty spool (median of 3): its start-up;")
    print("   w/o start-up = bundles / (wall s - empty s)")
    print("   set-up, not part of the figure (generate in-process; carry as real processes):")
    for tool in ("rise-dtn", "NNCP"):
        row = figure.get(tool)
        if row is not None:
            carried = ", ".join(
                f"{c['step']} {c['seconds']:.1f} s ({row['bundles'] / c['seconds']:,.0f}/s)"
                for c in row["carry"]
            )
            print(f"     {tool:<9} generate {row['generate_seconds']:.1f} s, {carried}")
    print()


def print_two_relays(rows: list[dict[str, Any]]) -> None:
    sticks = rows[0]["sticks"] if rows else "-"
    print(f"3. A file a -> r1 -> r2 -> b, one directory carrier per link (sticks in {sticks})")
    print("   MB = 10^6 bytes; each step a real process; RSS = its peak (GNU time)")
    for row in rows:
        for tool in ("rise-dtn", "NNCP"):
            run = row.get(tool)
            if run is None:
                continue
            print(f"   {row['case']} {tool}")
            print(f"     {'step':<28} {'wall s':>7} {'MB/s':>8} {'CPU s':>6} {'RSS MiB':>8}")
            for step in run["steps"]:
                print(
                    f"     {step['step']:<28} {step['seconds']:>7.2f} "
                    f"{step['mb_per_second']:>8.1f} {step['cpu_seconds']:>6.2f} "
                    f"{step['rss_mib']:>8.1f}"
                )
            print(
                f"     {'end to end':<28} {run['seconds']:>7.2f} {run['mb_per_second']:>8.1f} "
                f"{'':>6} {run['peak_rss_mib']:>8.1f}"
            )
    print("   summary: end-to-end MB/s and peak RSS over the steps, per size")
    for tool in ("rise-dtn", "NNCP"):
        cells = [
            f"{row['case']}: {row[tool]['mb_per_second']:.1f} MB/s, "
            f"{row[tool]['peak_rss_mib']:.1f} MiB"
            for row in rows
            if tool in row
        ]
        if cells:
            print(f"     {tool:<9} " + "; ".join(cells))
    print()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_generate"]:
        generate(Path(argv[1]), argv[2], int(argv[3]))
        return 0
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/relays.py", *argv])
    nncp = not args.no_nncp and all(shutil.which(name) for name in NNCP_COMMANDS)
    if not args.no_nncp and not nncp:
        say("NNCP not installed (apt-get install nncp): rise-dtn only")
    time_binary = gnu_time()
    args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="rise-relays-", dir=args.workdir))
    bin_dir = install.commands_or_none(args.install, scratch, rise_bin_dir())
    if bin_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
        return 1
    info = machine.describe(bin_dir, scratch, REPO)
    info["install"] = args.install
    if not nncp:
        info["nncp"] = None
    started = time.monotonic()
    try:
        figures = {
            "overhead": overhead(scratch, bin_dir, nncp=nncp),
            "toss_rate": toss_rate(
                scratch, bin_dir, (args.count, args.nncp_count), time_binary, nncp=nncp
            ),
            "two_relays": two_relays(scratch, bin_dir, args.sizes, time_binary, nncp=nncp),
        }
    except StepFailed as exc:
        say(f"benchmark failed: {exc}")
        say(f"scratch kept in {scratch}")
        return 1
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    print("rise-dtn relay benchmark")
    print(f"  command       {command}")
    for key in ("cpu", "usable_cores", "memory", "kernel", "python", "rise_dtn", "nncp", "git"):
        print(f"  {key:<13} {info.get(key)}")
    print(f"  {'scratch':<13} {scratch} ({info.get('filesystem')})")
    print(f"  {'commands':<13} {INSTALLS[args.install]}")
    rss = f"GNU time %M ({time_binary})" if time_binary else "wait4 ru_maxrss (an upper bound)"
    print(f"  {'peak RSS':<13} {rss}; load at start {info.get('load_average_at_start')}")
    print()
    print_overhead(figures["overhead"])
    print_toss(figures["toss_rate"])
    print_two_relays(figures["two_relays"])
    print(f"load at the end {machine.load_average()}; total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"command": command, "machine": info, **figures}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
