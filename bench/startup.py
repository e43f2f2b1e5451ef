"""Start-up of a one-off command: what a cron job or a mail gateway pays per message.

    .venv/bin/python bench/startup.py                 # 21 runs of each, NNCP too
    .venv/bin/python bench/startup.py --repeat 51 --json bench/results/startup-$(date +%F).json

Each figure is a real process of the installed command, timed from just
before the fork to its exit (steps.run_step: `sync` first, untimed; CPU from
wait4; peak RSS from GNU time), over fresh two-node networks built by
nodes.py (alice and bob that trust each other, and NNCP's pair). The rows,
run in turn (rise-dtn, NNCP, rise-dtn, ...) so that drift in the machine's
load touches both alike:

1. `rise-send - bob` with a 100-byte message on stdin and no daemon running
   (RISE_NO_DAEMON=1, so a daemon elsewhere cannot take the work), against
   `nncp-file - bob:msg`. The issue's target: under 150 ms.
2. The same `rise-send` while alice's `rise-daemon` runs: the command hands
   its work to the daemon's warm worker (rise_dtn/node/warm.py).
3. `rise-xfer --version` against `nncp-file -version`: start-up alone.
4. `python -c pass` with the same interpreter: the floor under every
   rise-dtn figure.

Medians, with the minimum and maximum; rise/NNCP is the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine
from nodes import NncpNetwork, RiseNetwork
from run import rise_bin_dir
from steps import StepResult, gnu_time, run_step

REPO = Path(__file__).resolve().parents[1]
MESSAGE_BYTES = 100
SEND_TARGET_SECONDS = 0.150


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs of each command (default 21)")
    parser.add_argument("--no-nncp", action="store_true", help="rise-dtn only")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    return parser.parse_args(argv)


def summary(results: list[StepResult]) -> dict[str, float]:
    walls = [result.seconds for result in results]
    return {
        "median_ms": statistics.median(walls) * 1000,
        "min_ms": min(walls) * 1000,
        "max_ms": max(walls) * 1000,
        "cpu_ms": statistics.median(result.cpu_seconds for result in results) * 1000,
        "rss_mib": max(result.max_rss_mib for result in results),
    }


class Daemon:
    """alice's rise-daemon on a loopback port, until its worker's socket answers."""

    def __init__(self, rise: RiseNetwork) -> None:
        self.process = subprocess.Popen(
            [rise.command("rise-daemon"), "--home", str(rise.alice), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not (rise.alice / "send.sock").exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit("rise-daemon's send worker never listened")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, dict[str, dict[str, float]]]:
    bin_dir, time_binary = rise_bin_dir(), gnu_time()
    rise = RiseNetwork(scratch / "rise", scratch / "rise-medium", bin_dir)
    rise.setup()
    nncp = None if args.no_nncp else NncpNetwork(scratch / "nncp", scratch / "nncp-medium")
    if nncp is not None:
        nncp.setup()
    message = scratch / "message"
    message.write_bytes(b"m" * MESSAGE_BYTES)
    logs = scratch / "logs"
    alone = {**os.environ, "RISE_NO_DAEMON": "1"}
    commands: dict[str, dict[str, tuple[list[str], Path | None, dict[str, str] | None]]] = {
        "send 100 B, no daemon": {
            "rise-dtn": (rise.steps("-")[0][1], message, alone),
        },
        "--version": {"rise-dtn": ([rise.command("rise-xfer"), "--version"], None, None)},
        "python -c pass": {"rise-dtn": ([sys.executable, "-c", "pass"], None, None)},
    }
    if nncp is not None:
        commands["send 100 B, no daemon"]["NNCP"] = (nncp.steps("-")[0][1], message, None)
        commands["--version"]["NNCP"] = (["nncp-file", "-version"], None, None)
    runs: dict[str, dict[str, list[StepResult]]] = {row: {} for row in commands}
    for _ in range(args.repeat + 1):  # the first round warms the page cache, not counted
        for row, tools in commands.items():
            for tool, (argv, stdin, env) in tools.items():
                result = run_step(
                    row, argv, log_dir=logs, stdin=stdin, env=env, time_binary=time_binary
                )
                runs[row].setdefault(tool, []).append(result)
    daemon = Daemon(rise)
    try:
        handed = "send 100 B, daemon up (warm worker)"
        runs[handed] = {"rise-dtn": []}
        for _ in range(args.repeat + 1):
            result = run_step(
                handed, rise.steps("-")[0][1], log_dir=logs, stdin=message, time_binary=time_binary
            )
            runs[handed]["rise-dtn"].append(result)
    finally:
        daemon.stop()
    return {
        row: {tool: summary(results[1:]) for tool, results in tools.items()}
        for row, tools in runs.items()
    }


def report(figures: dict[str, dict[str, dict[str, float]]], repeat: int) -> None:
    print(f"   {repeat} runs each (after one not counted); wall from fork to exit, ms")
    heads = " ".join(f"{name:>7s}" for name in ("median", "min", "max", "CPU", "RSS MiB"))
    print(f"   {'command':38s} {'tool':9s} {heads}")
    for row, tools in figures.items():
        for tool, figure in tools.items():
            print(
                f"   {row:38s} {tool:9s} {figure['median_ms']:7.1f} {figure['min_ms']:7.1f} "
                f"{figure['max_ms']:7.1f} {figure['cpu_ms']:7.1f} {figure['rss_mib']:7.1f}"
            )
        if "NNCP" in tools:
            ratio = tools["NNCP"]["median_ms"] / tools["rise-dtn"]["median_ms"]
            print(f"   {'':38s} rise/NNCP speed {ratio:.2f}x")
    send = figures["send 100 B, no daemon"]["rise-dtn"]["median_ms"]
    verdict = "MET" if send < SEND_TARGET_SECONDS * 1000 else "NOT MET"
    target = f"{SEND_TARGET_SECONDS * 1000:.0f} ms"
    print(f"   rise-send 100 B without a daemon, target < {target}: {verdict}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.no_nncp and shutil.which("nncp-file") is None:
        print("NNCP not installed: rise-dtn only", file=sys.stderr)
        args.no_nncp = True
    args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="rise-startup-", dir=args.workdir))
    info = machine.describe(rise_bin_dir(), scratch, REPO)
    info["command"] = " ".join([".venv/bin/python", "bench/startup.py", *(argv or sys.argv[1:])])
    print("rise-dtn start-up benchmark")
    for key, value in info.items():
        print(f"  {key:13s} {value}")
    try:
        figures = measure(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(figures, args.repeat)
    print(f"load at the end {machine.load_average()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {"machine": info, "repeat": args.repeat, "figures": figures}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
