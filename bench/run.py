"""rise-dtn benchmark: end-to-end throughput, peak memory and size overhead, next to NNCP.

    ./dev bench                          # 256 MiB and 1 GiB, NNCP too if installed
    ./dev bench --sizes 64M,256M,1G --repeat 3 --json bench/results/today.json
    ./dev bench --no-nncp --workdir /mnt/usb

One delivery = three steps of the installed commands as a user's cron lines
run them, each timed on its own (see bench/README.md for how to read the output):

    send            rise-send FILE bob          nncp-file FILE bob:
    xfer out        rise-xfer DIR (on alice)    nncp-xfer -mkdir DIR (alice)
    xfer in + toss  rise-xfer --toss DIR (bob)  nncp-xfer DIR && nncp-toss (bob)

The medium (the "USB stick") is on another filesystem than the spools, as a
real stick is: /dev/shm where it is one; the same filesystem is a second row.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import install
import machine
import report
from nodes import NncpNetwork, RiseNetwork
from report import MB, Run, Summary
from steps import StepFailed, gnu_time, run_step

REPO = Path(__file__).resolve().parent.parent
MESSAGE_BYTES = 100
OVERHEAD_TARGET = 160  # bytes a 100-byte message may grow by (the target)
NNCP_COMMANDS = ("nncp-cfgnew", "nncp-file", "nncp-xfer", "nncp-toss")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

Network = RiseNetwork | NncpNetwork


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """'256M' -> 256 MiB; K, M, G, T are binary (KiB, MiB, GiB, TiB); no unit = bytes."""
    match = _SIZE.match(text)
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 64M, 256M, 1G)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def add_scratch_options(parser: argparse.ArgumentParser, *, workdir: Path) -> None:
    """--workdir, --json and --keep, as the relay and online benches take them."""
    parser.add_argument(
        "--workdir",
        type=Path,
        default=workdir,
        help=f"scratch directory parent, on a fast filesystem (default: {workdir})",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./dev bench",
        description="Time send -> xfer -> xfer -> toss with rise-dtn (and NNCP, if present).",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("256M,1G"),
        help="comma-separated payload sizes, binary units (default: 256M,1G)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="make the scratch directory in here (default: the system temp dir, e.g. /tmp)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per size and tool; each step's time is the median over them (default: 1)",
    )
    parser.add_argument(
        "--medium",
        metavar="DIR",
        help="put the transfer directory (the 'USB stick') only in here, e.g. a mounted stick, "
        "or 'same' for the spools' filesystem; default: /dev/shm (another filesystem, as a "
        "stick is), then the spools' filesystem as a second row",
    )
    parser.add_argument("--no-nncp", action="store_true", help="do not run NNCP")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never try `apt-get install nncp` (done only as root, when nncp-file is missing); "
        "not about --install",
    )
    install.add_option(parser)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not args.sizes:
        parser.error("--sizes is empty")
    return args


def rise_bin_dir() -> Path:
    """The installed commands: next to this interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent
    if (here / "rise-send").exists():
        return here
    found = shutil.which("rise-send")
    if found is None:
        raise SystemExit("rise-send not found: run ./dev setup (or pip install -e .)")
    return Path(found).parent


def apt_install(package: str) -> str | None:
    """`apt-get install PACKAGE` (with one `apt-get update` retry); None if it worked, else why."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    say(f"trying `apt-get install {package}`")
    try:
        done = subprocess.run(install, env=env, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:  # often just stale package lists
            subprocess.run(
                ["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=False
            )
            done = subprocess.run(install, env=env, capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
    return None


def may_install(args: argparse.Namespace) -> bool:
    return not args.no_install and os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_nncp(args: argparse.Namespace) -> tuple[bool, str | None]:
    """(use NNCP?, note for the output)."""
    if args.no_nncp:
        return False, "NNCP not run (--no-nncp)."
    if all(shutil.which(name) for name in NNCP_COMMANDS):
        return True, None
    if not may_install(args):
        return False, "NNCP not installed (`apt-get install nncp`): rise-dtn only."
    failure = apt_install("nncp")
    if failure is not None or not all(shutil.which(name) for name in NNCP_COMMANDS):
        return False, f"NNCP skipped: apt-get install nncp failed ({failure})."
    return True, "NNCP was installed by this run (apt-get install nncp)."


def ensure_gnu_time(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(GNU time binary or None, note for the output)."""
    found = gnu_time()
    if found is None and may_install(args) and apt_install("time") is None:
        found = gnu_time()
    if found is None:
        return None, (
            "GNU time (/usr/bin/time) is missing, so RSS is wait4's ru_maxrss, which Linux "
            "seeds with the benchmark's own size at exec: an upper bound (apt-get install time)."
        )
    return found, None


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    factories: list[Callable[[Path, Path], Network]]  # (root, medium) -> network
    scratch: Path
    media: list[tuple[str, Path | None]]  # (row label, medium parent; None: the scratch's)
    repeat: int
    keep: bool
    time_binary: str | None


def make_payload(path: Path, size: int) -> str:
    """Random (incompressible) bytes; returns the sha256. Left in the page cache (warm)."""
    digest = hashlib.sha256()
    block = 16 << 20
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            data = os.urandom(min(block, remaining))
            out.write(data)
            digest.update(data)
            remaining -= len(data)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()


def deliver(
    network: Network,
    case: str,
    payload: Path,
    digest: str,
    *,
    message: bool,
    log_dir: Path,
    time_binary: str | None,
) -> Run:
    """Set up a fresh pair of nodes, run the four timed steps, verify what bob got."""
    network.setup()
    results = []
    bundle_bytes = 0
    linked: dict[str, bool] = {}
    held = None  # the queued bundle, kept open so that its inode is not reused
    try:
        for step, argv in network.steps("-" if message else str(payload)):
            say(f"  {network.tool:<8} {case:<16} {step} ...")
            results.append(
                run_step(
                    step,
                    argv,
                    log_dir=log_dir,
                    stdin=payload if message else None,
                    time_binary=time_binary,
                )
            )
            if step == "send":
                queued = network.queued()
                if len(queued) != 1:
                    raise StepFailed(f"{network.tool}: expected 1 queued bundle, found {queued}")
                held = open(queued[0], "rb")  # noqa: SIM115 - closed below
                bundle_bytes = os.fstat(held.fileno()).st_size
            elif held is not None and step in ("xfer out", "xfer in + toss"):
                where = network.medium if step == "xfer out" else network.bob
                linked[step] = _holds_inode(where, os.fstat(held.fileno()))
    finally:
        if held is not None:
            held.close()
    target = network.delivered(None if message else payload.name, results[0].stdout)
    if not target.is_file() or sha256_file(target) != digest:
        raise StepFailed(f"{network.tool}: {target} is missing or differs from the payload")
    return Run(network.tool, case, payload.stat().st_size, bundle_bytes, results, linked)


def _holds_inode(directory: Path, info: os.stat_result) -> bool:
    """Is the sent bundle's inode (not a copy of it) somewhere under `directory`?"""
    for path in directory.rglob("*"):
        try:
            found = path.lstat()
        except FileNotFoundError:
            continue
        if (found.st_dev, found.st_ino) == (info.st_dev, info.st_ino):
            return True
    return False


def run_case(
    settings: Settings,
    case: str,
    payload: Path,
    digest: str,
    *,
    message: bool,
    medium_parent: Path | None,
) -> list[list[Run]]:
    """`repeat` deliveries per tool, the tools interleaved; [runs of tool 0, runs of tool 1].

    `medium_parent`: where the medium goes (None: inside the scratch directory)."""
    runs: list[list[Run]] = [[] for _ in settings.factories]
    for attempt in range(settings.repeat):
        for index, factory in enumerate(settings.factories):
            root = settings.scratch / f"net-{attempt}-{index}"
            medium = root / "medium"
            if medium_parent is not None:
                medium = medium_parent / f"{settings.scratch.name}-{root.name}"
            network = factory(root, medium)
            try:
                runs[index].append(
                    deliver(
                        network,
                        case,
                        payload,
                        digest,
                        message=message,
                        log_dir=root / "logs",
                        time_binary=settings.time_binary,
                    )
                )
            finally:
                if not settings.keep:
                    shutil.rmtree(root, ignore_errors=True)
                    shutil.rmtree(medium, ignore_errors=True)
    return runs


def rss_floor(time_binary: str) -> float:
    """Peak RSS (MiB) that GNU time reports for `true`: the smallest figure it can show."""
    with tempfile.TemporaryDirectory() as logs:
        return run_step("floor", ["true"], log_dir=Path(logs), time_binary=time_binary).max_rss_mib


def choose_media(option: str | None, scratch: Path) -> list[tuple[str, Path | None]]:
    """(label, medium parent) rows: another filesystem first, as a real stick is."""
    if option == "same":
        return [("", None)]
    if option is not None:
        medium = Path(option)
        medium.mkdir(parents=True, exist_ok=True)
        return [("", medium)]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != scratch.stat().st_dev:
        return [("", shm), (" same fs", None)]
    return [(" same fs", None)]


def check_space(scratch: Path, media: list[tuple[str, Path | None]], sizes: list[int]) -> None:
    # payload + sender spool + medium + receiver spool + delivered copy, and some slack
    needed = {scratch: 5 * max(sizes) + (256 << 20)}
    for _label, medium in media:
        if medium is not None and medium.stat().st_dev != scratch.stat().st_dev:
            needed[medium] = max(sizes) + (64 << 20)
    for where, bytes_needed in needed.items():
        free = shutil.disk_usage(where).free
        if free < bytes_needed:
            raise SystemExit(
                f"{where}: {free / 1e9:.1f} GB free, the benchmark needs about "
                f"{bytes_needed / 1e9:.1f} GB there; use smaller --sizes, another --workdir "
                "or --medium"
            )


INSTALLS = {
    "wheel": "this checkout's wheel, in a venv of its own (as a user installs it)",
    "dev": "the dev venv (editable install: ~11 ms more start-up per command)",
}


def print_header(info: dict[str, object], command: str, repeat: int) -> None:
    print("rise-dtn benchmark")
    print(f"command:    {command}")
    print(f"date:       {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"cpu:        {info['cpu']} ({info['cores']} cores, {info['usable_cores']} usable)")
    print(f"memory:     {info['memory']}; kernel {info['kernel']}")
    print(f"load:       {info['load_average_at_start']} (1, 5, 15 min, at start)")
    print(f"python:     {info['python']} ({info['python_executable']})")
    git = f", git {info['git']}" if info["git"] else ""
    print(f"rise-dtn:   {info['rise_dtn']} (pynacl {info['pynacl']}{git})")
    print(f"commands:   {INSTALLS[str(info['install'])]}")
    print(f"nncp:       {info['nncp'] or 'not used'}")
    print(f"scratch:    {info['workdir']} ({info['filesystem']})")
    same = info["medium_filesystem"] == info["filesystem"]
    where = "same filesystem as the spools" if same else str(info["medium_filesystem"])
    print(f"medium:     {info['medium']} ({where})")
    print(f"peak RSS:   {info['rss_method']}")
    runs = "1 run" if repeat == 1 else f"median of {repeat} runs, per step"
    print(f"method:     {runs}; MB = 10^6 bytes, MiB = 2^20 bytes; warm page cache")
    print()


def print_results(
    message: tuple[Summary, Summary | None],
    files: list[tuple[Summary, Summary | None]],
    notes: list[str],
) -> None:
    rise_msg, nncp_msg = message
    print(f"== size overhead of a {MESSAGE_BYTES}-byte message (stdin: rise-send - bob) ==")
    for summary in (rise_msg, nncp_msg):
        if summary is None:
            continue
        extra = summary.bundle_bytes - summary.payload_bytes
        verdict = ""
        if summary is rise_msg:
            ok = "OK" if extra <= OVERHEAD_TARGET else "OVER TARGET"
            verdict = f"   target <= {OVERHEAD_TARGET}: {ok}"
        print(
            f"{summary.tool:<9} bundle {summary.bundle_bytes:>5} bytes, "
            f"overhead {extra:>4} bytes{verdict}"
        )
    print()
    print("   same delivery, per step (fixed costs: start-up, keys, index, fsync):")
    for line in report.step_table(rise_msg, nncp_msg, throughput=False):
        print("   " + line)
    print()
    for rise, nncp in files:
        print(f"== {rise.case} payload ({rise.payload_bytes / MB:,.2f} MB) ==")
        for line in report.step_table(rise, nncp):
            print(line)
        for summary in (rise, nncp):
            if summary is not None:
                print(report.overhead_line(summary))
        for summary in (rise, nncp):
            if summary is not None:
                print(report.transfer_line(summary))
        print()
    print("== summary: end-to-end MB/s = payload / sum of the step times ==")
    for line in report.summary_table(files):
        print(line)
    print()
    print(f"load average at the end: {machine.load_average()} (1, 5, 15 min)")
    print()
    print("notes:")
    for note in notes:
        print(f"  - {note}")


NOTES = [
    "MB/s is 10^6 bytes of payload per second; RSS is the step process's peak resident set "
    "(ru_maxrss) in MiB, as GNU time reports it for the command; CPU s is its user + "
    "system time (os.wait4). On the end-to-end row, RSS is the peak over the steps.",
    "wall s runs from fork to exit of the real installed command, so interpreter start-up, "
    "imports and every fsync are included; `sync` runs before each step, untimed.",
    "the payload was just written, so it is in the page cache (warm), as are the bundles "
    "between steps; the cache is not dropped (that needs root); both tools are measured "
    "the same way on the same file.",
    "other processes on the machine add noise: compare the load average with the number "
    "of cores, and prefer --repeat 3 or more for figures to quote.",
    "speed rise/NNCP > 1 means rise-dtn is faster (NNCP time / rise-dtn time).",
    "rise-xfer keeps a sent bundle in the spool until acked, and never shares its bytes "
    "with the medium: it copies in the kernel (a reflink where the filesystem offers "
    "copy-on-write), so the transfer line must say 'copied', never 'hard-linked'; "
    "nncp-xfer copies its packet and removes it from the spool.",
    "the medium is on another filesystem than the spools (/dev/shm), as a USB stick is; "
    "rows marked 'same fs' put it on the spools' filesystem. 'xfer in + toss' is one "
    "`rise-xfer --toss` (the cookbook's cron line; a bundle for this node is delivered as "
    "it is read off the medium), and `nncp-xfer` then `nncp-toss` under one sh -c.",
    "every delivered file was checked byte-identical (sha256, computed outside the timing).",
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["./dev", "bench", *(sys.argv[1:] if argv is None else argv)])
    use_nncp, nncp_note = ensure_nncp(args)
    time_binary, time_note = ensure_gnu_time(args)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="rise-bench-", dir=args.workdir))
    bin_dir = install.commands_or_none(args.install, scratch, rise_bin_dir())
    if bin_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
        return 1
    media = choose_media(args.medium, scratch)
    notes = list(NOTES) + [note for note in (nncp_note, time_note) if note]
    factories: list[Callable[[Path, Path], Network]] = [
        lambda root, medium: RiseNetwork(root, medium, bin_dir)
    ]
    if use_nncp:
        factories.append(NncpNetwork)
    settings = Settings(factories, scratch, media, args.repeat, args.keep, time_binary)
    try:
        check_space(scratch, media, args.sizes)
        info = machine.describe(bin_dir, scratch, REPO)
        first = media[0][1] or scratch
        info["medium"] = str(first)
        info["install"] = args.install
        info["medium_filesystem"] = machine.filesystem(first)
        if not use_nncp:
            info["nncp"] = None
        info["rss_method"] = (
            f"GNU time %M ({time_binary}); a trivial command reads {rss_floor(time_binary):.1f} MiB"
            if time_binary
            else "wait4 ru_maxrss (upper bound, see notes)"
        )
        print_header(info, command, args.repeat)
        sys.stdout.flush()

        def pair(runs: list[list[Run]]) -> tuple[Summary, Summary | None]:
            summaries = [report.summarize(tool_runs) for tool_runs in runs]
            for summary, tool_runs in zip(summaries, runs, strict=True):
                results.append(report.as_json(summary, tool_runs))
            return summaries[0], summaries[1] if len(summaries) > 1 else None

        results: list[dict[str, object]] = []
        message_path = scratch / "message.bin"
        message_digest = make_payload(message_path, MESSAGE_BYTES)
        message = pair(
            run_case(
                settings,
                f"{MESSAGE_BYTES}-byte message",
                message_path,
                message_digest,
                message=True,
                medium_parent=media[0][1],
            )
        )
        files = []
        for size in args.sizes:
            case = report.human_size(size)
            payload = scratch / f"payload-{case.replace(' ', '')}.bin"
            say(f"writing a {case} random payload")
            digest = make_payload(payload, size)
            try:
                for label, medium_parent in media:
                    runs = run_case(
                        settings,
                        case + label,
                        payload,
                        digest,
                        message=False,
                        medium_parent=medium_parent,
                    )
                    files.append(pair(runs))
            finally:
                if not args.keep:
                    payload.unlink(missing_ok=True)
    except StepFailed as exc:
        say(f"benchmark failed: {exc}")
        return 1
    finally:
        if args.keep:
            say(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print_results(message, files, notes)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "command": command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": info,
            "method": {
                "repeat": args.repeat,
                "aggregate": "median per step over the runs; max RSS is the highest",
                "units": "MB = 10^6 bytes, MiB = 2^20 bytes",
            },
            "message_overhead_target_bytes": OVERHEAD_TARGET,
            "results": results,
            "notes": notes,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
