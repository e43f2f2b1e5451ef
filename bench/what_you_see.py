"""What a user sees: rise-call over a shaped link and rise-xfer to a stick, captured from tmux.

    .venv/bin/python bench/what_you_see.py                 # 200 MiB, 5 Mbit/s, /dev/shm stick
    .venv/bin/python bench/what_you_see.py --size 20M --rate 50e6 --every 2

Two fresh nodes (alice, bob) made with the installed commands. bob's
rise-daemon listens on loopback behind bench/shaper.py's token bucket; alice
queues SIZE for bob and runs `rise-call bob tcp://...` in a tmux pane of
100x12, whose screen (what a terminal shows, carriage returns resolved) is
captured every EVERY seconds and once at the end. Then alice queues SIZE
again and runs `rise-xfer` to a stick on /dev/shm, captured the same way,
and bob takes it with `rise-xfer --toss`. The captures are printed as text,
ready for docs/cookbook.md ("What you see").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import parse_sizes
from shaper import Shaper

BIN = Path(sys.executable).parent
COLUMNS, ROWS = 100, 12


def rise(*args: str, home: Path, stdin: bytes | None = None) -> str:
    env = dict(os.environ, RISE_HOME=str(home), RISE_NO_DAEMON="1")
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]], input=stdin, capture_output=True, env=env, check=True
    )
    return done.stdout.decode()


def screen(session: str) -> str:
    shown = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, check=True, text=True
    ).stdout
    return "\n".join(line.rstrip() for line in shown.splitlines() if line.strip())


def watch(command: str, *, home: Path, every: float, title: str) -> list[tuple[float, str]]:
    """Run `command` in a fresh tmux pane; its screen every `every` s, and at the end."""
    session = f"rise-see-{os.getpid()}"
    marker = home.parent / f"{session}.done"
    marker.unlink(missing_ok=True)
    shell = (
        f"export RISE_HOME={home} RISE_NO_DAEMON=1 PATH={BIN}:$PATH; "
        f'{command}; echo "exit status $?"; touch {marker}; sleep 3600'
    )
    raw = home.parent / f"{session}.raw"
    raw.unlink(missing_ok=True)
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(COLUMNS), "-y", str(ROWS), shell],
        check=True,
    )
    # Every byte the command writes, for the bar states between two captures.
    subprocess.run(["tmux", "pipe-pane", "-t", session, f"cat >> {raw}"], check=True)
    shots: list[tuple[float, str]] = []
    start = time.monotonic()
    try:
        next_shot = start + every
        while not marker.exists():
            time.sleep(0.05)
            if time.monotonic() >= next_shot:
                shots.append((time.monotonic() - start, screen(session)))
                next_shot += every
        shots.append((time.monotonic() - start, screen(session)))
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
        marker.unlink(missing_ok=True)
    print(f"\n### {title}\n\n$ {command}\n")
    for seconds, shown in shots:
        print(f"--- after {seconds:.0f} s")
        print(shown)
    states = bar_states(raw.read_bytes().decode(errors="replace") if raw.exists() else "")
    raw.unlink(missing_ok=True)
    if states:
        print("--- some states the bars went through (carriage returns resolved)")
        print("\n".join(states))
    return shots


def bar_states(text: str, *, keep: int = 4) -> list[str]:
    """A few distinct bar lines from the raw output, first to last, evenly spaced."""
    seen: list[str] = []
    for part in re.split(r"[\r\n]|\x1b\[A", text):
        line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", part).rstrip()
        if "%|" in line and (not seen or seen[-1] != line):
            seen.append(line)
    if len(seen) <= keep:
        return seen
    step = (len(seen) - 1) / (keep - 1)
    return [seen[round(index * step)] for index in range(keep)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_sizes, default=parse_sizes("200M"))
    parser.add_argument("--rate", type=float, default=5e6, help="link bit/s (default 5e6)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between captures")
    parser.add_argument("--stick", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--no-call", action="store_true", help="only the stick")
    args = parser.parse_args()
    size = args.size[0]
    root = Path(tempfile.mkdtemp(prefix="rise-see-"))
    stick = Path(tempfile.mkdtemp(prefix="rise-see-stick-", dir=args.stick))
    daemon = None
    try:
        alice, bob = root / "alice", root / "bob"
        rise("rise", "init", "--name", "alice", home=alice)
        rise("rise", "init", "--name", "bob", home=bob)
        rise("rise", "peer", "add", "-", home=bob, stdin=rise("rise", "card", home=alice).encode())
        rise("rise", "peer", "add", "-", home=alice, stdin=rise("rise", "card", home=bob).encode())
        payload = root / "payload.bin"
        with open(payload, "wb") as out:
            for _block in range(size // (1 << 20)):
                out.write(os.urandom(1 << 20))
        if not args.no_call:
            rise("rise-send", "-q", str(payload), "bob", home=alice)
            daemon = subprocess.Popen(
                [str(BIN / "rise-daemon"), "--listen", "127.0.0.1:0"],
                env=dict(os.environ, RISE_HOME=str(bob)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            assert daemon.stderr is not None
            port = int(daemon.stderr.readline().decode().strip().rsplit(":", 1)[1])
            with Shaper(("127.0.0.1", port), args.rate) as shaper:
                watch(
                    f"rise-call bob tcp://127.0.0.1:{shaper.port}",
                    home=alice,
                    every=args.every,
                    title=f"rise-call, {size >> 20} MiB over a {args.rate / 1e6:g} Mbit/s link",
                )
        rise("rise-send", "-q", str(payload), "bob", home=alice)
        every = max(0.2, args.every / 100)
        watch(f"rise-xfer {stick}", home=alice, every=every, title="rise-xfer, out to the stick")
        watch(f"rise-xfer --toss {stick}", home=bob, every=every, title="rise-xfer --toss, in")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(stick, ignore_errors=True)


if __name__ == "__main__":
    main()
