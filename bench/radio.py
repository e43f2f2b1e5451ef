"""rise-dtn radio benchmark: the serial carrier over a paced pty link (tests/radiolink.py).

    .venv/bin/python bench/radio.py                        # everything, about 15 minutes
    .venv/bin/python bench/radio.py --only message --repeat 5
    .venv/bin/python bench/radio.py --only goodput --json out.json

Real processes of the installed commands on both sides (by default this
checkout built into a wheel and installed in a venv of its own, as a user
installs it; `--install dev` times the dev venv's editable install, whose
import hook costs each command ~11 ms: bench/install.py): bob's `rise-serial`
answers on one end of two socat pty pairs joined by the relay of
tests/radiolink.py, which paces to a bit rate at 8N1 (10 bits a byte: 960
bytes/s each way at 9600), loses frames at a set rate and can be half
duplex. The issue's figures (issue 13):

1. message, cold: a 100-byte message, timed from just before alice's
   `rise-send` is forked until it is in bob's inbox/ (polled every 2 ms),
   with `rise-call` started as soon as rise-send exits: session start
   (Noise handshake) included.
2. message, link up: alice keeps a link with `rise-serial PORT --link bob`,
   which offers what is queued as it is queued; the same clock. Each is
   sent as soon as the last one is in the inbox, unless `--gap` asks for
   quiet first (the last one's STORED and DONE then leave the line: on a
   radio they would otherwise hold the channel ahead of the next message).
   rise-send's own time (fork to exit) is timed too, and each figure is
   also given without it: the link's part, where process start-up (worked
   on elsewhere) does not count.
3. goodput: a 256 KiB file, timed from `rise-call`'s start until the file
   is in bob's incoming/ (sha256 checked after), as payload bytes per
   second over the line's 960; on a clean line and at 5% frame loss each
   way.
4. LoRa-like: 1758 bit/s, 240-byte payloads (253-byte frames), half
   duplex with a 0.1 s turn-around (profile `lora`): the cold message and
   a 16 KiB file's goodput.
5. Direwolf (`--only direwolf`): two real Direwolf 1.6 TNCs on the
   simulated channel of tests/direwolf.py (fast channel access), AFSK 1200
   and G3RUH 9600. In the same run: raw KISS throughput (20 frames of 200
   random bytes sent at once from A's KISS port, timed until B's has them
   all), a file over rise-call/rise-serial through the KISS TCP ports
   (16 KiB at 1200, 64 KiB at 9600) as a share of that raw figure, and a
   100-byte message over a link already up (`rise-serial --link`).

Timing is the wall clock on a machine that may be shared: report medians
of several runs, and say so.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import install  # noqa: E402

from tests.direwolf import AFSK_1200, G3RUH_9600, KissClient, running_link  # noqa: E402
from tests.radiolink import LinkProfile, PacedLink, paced_link  # noqa: E402

# The bin/ directory of the rise commands timed: the wheel venv, or the dev venv's (--install).
COMMANDS = {"bin": Path(sys.executable).parent}
POLL_SECONDS = 0.002
DEADLINE_SECONDS = 1200.0
MESSAGE_BYTES = 100
FILE_BYTES = 256 * 1024
LORA_FILE_BYTES = 16 * 1024


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def env_of(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RISE_HOME"] = str(home)
    env["PATH"] = f"{COMMANDS['bin']}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(home: Path, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        [str(COMMANDS["bin"] / args[0]), *args[1:]],
        env=env_of(home),
        input=stdin,
        capture_output=True,
        check=False,
        timeout=DEADLINE_SECONDS,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


def nodes(base: Path) -> tuple[Path, Path]:
    homes = []
    for name in ("alice", "bob"):
        run(base / name, "rise", "init", "--name", name)
        homes.append(base / name)
    alice, bob = homes
    run(alice, "rise", "peer", "add", "-", stdin=run(bob, "rise", "card").encode())
    run(bob, "rise", "peer", "add", "-", stdin=run(alice, "rise", "card").encode())
    return alice, bob


@contextlib.contextmanager
def serial_process(home: Path, *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [str(COMMANDS["bin"] / "rise-serial"), *args], env=env_of(home), stderr=stderr
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def wait_for(condition: Callable[[], bool]) -> float:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("nothing arrived before the deadline")
        time.sleep(POLL_SECONDS)
    return time.monotonic()


def inbox_count(home: Path) -> int:
    """Messages in the inbox; not a delivery's temporary file (".rise-tmp-..."), which is
    there before the message is whole and durable."""
    inbox = home / "inbox"
    if not inbox.is_dir():
        return 0
    return sum(1 for path in inbox.iterdir() if not path.name.startswith("."))


SENDS: list[float] = []  # rise-send's own time, fork to exit, of every message timed


def send_message(alice: Path) -> None:
    started = time.monotonic()
    run(alice, "rise-send", "-q", "-", "bob", stdin=os.urandom(MESSAGE_BYTES))
    SENDS.append(time.monotonic() - started)


def message_cold(alice: Path, bob: Path, link: PacedLink, options: str) -> float:
    before = inbox_count(bob)
    started = time.monotonic()
    send_message(alice)
    # The clock stops when the message is in the inbox, not when the call ends
    # (its goodbyes and the receipt's turn come after).
    calling = subprocess.Popen(
        [
            str(COMMANDS["bin"] / "rise-call"),
            *("-q", "bob", "--address", f"serial:{link.a_path}?{options}"),
        ],
        env=env_of(alice),
    )
    arrived = wait_for(lambda: inbox_count(bob) > before) - started
    if calling.wait(timeout=DEADLINE_SECONDS) != 0:
        raise RuntimeError("rise-call failed")
    return arrived


GAP = {"seconds": 0.0}  # --gap: quiet time before each message over a kept link


def message_linked(alice: Path, bob: Path) -> float:
    time.sleep(GAP["seconds"])  # the last message's goodbyes (STORED, DONE) end meanwhile
    before = inbox_count(bob)
    started = time.monotonic()
    send_message(alice)
    return wait_for(lambda: inbox_count(bob) > before) - started


def median_after_send(times: list[float], sends: list[float]) -> float:
    """The median of each message's time less its own rise-send's: the link's part."""
    return statistics.median(total - send for total, send in zip(times, sends, strict=True))


def goodput(
    alice: Path, bob: Path, link: PacedLink, options: str, *, size: int, name: str
) -> tuple[float, float]:
    """(seconds, payload bytes per second / line bytes per second)."""
    data = os.urandom(size)
    source = alice.parent / name
    source.write_bytes(data)
    run(alice, "rise-send", "-q", str(source), "bob")
    target = bob / "incoming" / "alice" / name
    started = time.monotonic()
    run(alice, "rise-call", "-q", "bob", "--address", f"serial:{link.a_path}?{options}")
    seconds = wait_for(target.is_file) - started
    if hashlib.sha256(target.read_bytes()).digest() != hashlib.sha256(data).digest():
        raise RuntimeError(f"{name} arrived damaged")
    return seconds, size / seconds / link.relay.profile.bytes_per_second


RAW_FRAMES = 20
RAW_FRAME_BYTES = 200
DIREWOLF_FILE_BYTES = {1200: 16 * 1024, 9600: 64 * 1024}
DIREWOLF_PROFILES = {1200: "tnc1200", 9600: "tnc9600"}


def direwolf(base: Path, repeat: int, bauds: set[int]) -> dict[str, object]:
    results: dict[str, object] = {}
    for modem in (AFSK_1200, G3RUH_9600):
        baud = modem.baud
        if baud not in bauds:
            continue
        with running_link(modem) as radio:
            a_station, b_station = radio.stations
            sender, receiver = KissClient(a_station.kiss_port), KissClient(b_station.kiss_port)
            started = time.monotonic()
            for _ in range(RAW_FRAMES):
                sender.send(os.urandom(RAW_FRAME_BYTES))
            heard = receiver.receive(RAW_FRAMES, deadline_seconds=DEADLINE_SECONDS)
            raw_seconds = time.monotonic() - started
            sender.close()
            receiver.close()
            raw = len(heard) * RAW_FRAME_BYTES / raw_seconds
            say(f"Direwolf {baud}: raw KISS {len(heard)}/{RAW_FRAMES} frames, {raw * 8:.0f} bit/s")
            folder = Path(tempfile.mkdtemp(dir=base))
            alice, bob = nodes(folder)
            options = f"profile={DIREWOLF_PROFILES[baud]}"
            b_port = f"kiss+tcp://127.0.0.1:{b_station.kiss_port}?{options}"
            a_port = f"kiss+tcp://127.0.0.1:{a_station.kiss_port}?{options}"
            with serial_process(bob, b_port, log=folder / "bob.log"):
                size = DIREWOLF_FILE_BYTES[baud]
                data = os.urandom(size)
                (folder / "dw.bin").write_bytes(data)
                run(alice, "rise-send", "-q", str(folder / "dw.bin"), "bob")
                target = bob / "incoming" / "alice" / "dw.bin"
                started = time.monotonic()
                run(alice, "rise-call", "-q", "bob", "--address", a_port)
                seconds = wait_for(target.is_file) - started
                if target.read_bytes() != data:
                    raise RuntimeError("the file arrived damaged")
                share = size / seconds / raw
                say(
                    f"Direwolf {baud}: {size // 1024} KiB in {seconds:.1f} s,"
                    f" {size / seconds * 8:.0f} bit/s, {share:.1%} of raw KISS"
                )
                linked: list[float] = []
                sends: list[float] = []
                with serial_process(alice, a_port, "--link", "bob", log=folder / "alice.log"):
                    message_linked(alice, bob)
                    for _ in range(repeat):
                        linked.append(message_linked(alice, bob))
                        sends.append(SENDS[-1])
                        say(
                            f"Direwolf {baud}: message over the link {linked[-1]:.3f} s"
                            f" (rise-send {SENDS[-1]:.3f} s)"
                        )
            results[f"direwolf_{baud}"] = {
                "raw_bits_per_second": raw * 8,
                "file_seconds": seconds,
                "share_of_raw": share,
                "message_linked_seconds": linked,
                "message_linked_rise_send_seconds": sends,
            }
    return results


def scenario(
    base: Path, profile: LinkProfile, options: str
) -> contextlib.AbstractContextManager[tuple[Path, Path, PacedLink]]:
    @contextlib.contextmanager
    def made() -> Iterator[tuple[Path, Path, PacedLink]]:
        folder = Path(tempfile.mkdtemp(dir=base))
        alice, bob = nodes(folder)
        with (
            paced_link(profile) as link,
            serial_process(bob, f"serial:{link.b_path}?{options}", log=folder / "bob.log"),
        ):
            yield alice, bob, link

    return made()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", choices=["message", "goodput", "lora", "direwolf"], action="append"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each message figure")
    parser.add_argument(
        "--modem", type=int, choices=[1200, 9600], action="append", help="Direwolf: only these"
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="seconds of quiet before each message over a kept link (default 0: each is"
        " sent as soon as the last one is in the inbox, while its STORED and DONE are"
        " still on the line)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--workdir", type=Path, default=None)
    install.add_option(parser)
    args = parser.parse_args()
    GAP["seconds"] = args.gap
    only = set(args.only or ["message", "goodput", "lora", "direwolf"])
    results: dict[str, object] = {"install": args.install}
    with tempfile.TemporaryDirectory(prefix="rise-bench-radio-", dir=args.workdir) as scratch:
        base = Path(scratch)
        if args.install == "dev":
            # The dev venv's own bytecode: with PYTHONDONTWRITEBYTECODE=1 (as CI and these
            # machines set) a checkout has none, and every rise-send would compile its
            # modules again. A wheel install has it, as pip compiles on install.
            compileall.compile_dir(REPO / "rise_dtn", quiet=1)
        bin_dir = install.commands_or_none(args.install, base, COMMANDS["bin"])
        if bin_dir is None:
            raise SystemExit(1)
        COMMANDS["bin"] = bin_dir
        say(f"timing the commands in {COMMANDS['bin']} (--install {args.install})")
        cable = LinkProfile(bits_per_second=9600)
        if "message" in only:
            cold: list[float] = []
            cold_sends: list[float] = []
            with scenario(base, cable, "baud=9600") as (alice, bob, link):
                for _ in range(args.repeat):
                    cold.append(message_cold(alice, bob, link, "baud=9600"))
                    cold_sends.append(SENDS[-1])
                    say(f"message cold at 9600: {cold[-1]:.3f} s (rise-send {SENDS[-1]:.3f} s)")
            linked: list[float] = []
            linked_sends: list[float] = []
            with scenario(base, cable, "baud=9600") as (alice, bob, link):
                keeper = f"serial:{link.a_path}?baud=9600"
                with serial_process(alice, keeper, "--link", "bob", log=base / "alice.log"):
                    message_linked(alice, bob)  # the link is up once this one is through
                    for _ in range(args.repeat):
                        linked.append(message_linked(alice, bob))
                        linked_sends.append(SENDS[-1])
                        say(
                            f"message over the link at 9600: {linked[-1]:.3f} s"
                            f" (rise-send {SENDS[-1]:.3f} s)"
                        )
            results["message_cold_seconds"] = cold
            results["message_cold_rise_send_seconds"] = cold_sends
            results["message_linked_seconds"] = linked
            results["message_linked_rise_send_seconds"] = linked_sends
            say(
                f"after rise-send exits: cold {median_after_send(cold, cold_sends):.3f} s,"
                f" over the link {median_after_send(linked, linked_sends):.3f} s (medians)"
            )
        if "goodput" in only:
            for loss in (0.0, 0.05):
                profile = LinkProfile(bits_per_second=9600, drop_rate=loss, seed=11)
                with scenario(base, profile, "baud=9600") as (alice, bob, link):
                    seconds, share = goodput(
                        alice, bob, link, "baud=9600", size=FILE_BYTES, name="big.bin"
                    )
                    stats = link.stats
                say(
                    f"256 KiB at 9600, {loss:.0%} loss: {seconds:.1f} s, goodput {share:.1%}"
                    f" (frames lost {stats['a->b'].frames_dropped} of"
                    f" {stats['a->b'].frames_dropped + stats['a->b'].frames_passed} one way,"
                    f" {stats['b->a'].frames_dropped} of"
                    f" {stats['b->a'].frames_dropped + stats['b->a'].frames_passed} back)"
                )
                results[f"goodput_{int(loss * 100)}pct"] = {"seconds": seconds, "share": share}
        if "lora" in only:
            lora = LinkProfile(bits_per_second=1758, half_duplex=True, turnaround_seconds=0.1)
            with scenario(base, lora, "profile=lora") as (alice, bob, link):
                times = []
                for _ in range(max(1, args.repeat // 2)):
                    times.append(message_cold(alice, bob, link, "profile=lora"))
                    say(f"LoRa-like message cold: {times[-1]:.3f} s")
                seconds, share = goodput(
                    alice, bob, link, "profile=lora", size=LORA_FILE_BYTES, name="lora.bin"
                )
                say(f"LoRa-like 16 KiB: {seconds:.1f} s, goodput {share:.1%}")
            results["lora"] = {"message_seconds": times, "file_seconds": seconds, "share": share}
        if "direwolf" in only:
            modems = set(args.modem or [1200, 9600])
            results.update(direwolf(base, max(1, args.repeat // 2), modems))
    for key, value in results.items():
        if isinstance(value, list) and value:
            say(f"{key}: median {statistics.median(value):.3f} s of {len(value)}")
        if isinstance(value, dict) and value.get("message_linked_seconds"):
            times = value["message_linked_seconds"]
            sends = value["message_linked_rise_send_seconds"]
            say(
                f"{key}: message over the link median {statistics.median(times):.3f} s of"
                f" {len(times)}, {median_after_send(times, sends):.3f} s after rise-send exits"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
