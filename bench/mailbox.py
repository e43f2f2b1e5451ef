"""The mailbox carrier's figures, against a real Dovecot (and Postfix) on loopback.

    .venv/bin/python bench/mailbox.py [--messages 20] [--size-mib 30] [--repeat 3]

- **Latency**: a 100-byte message, from `rise-send` forked on alice to the
  file in bob's inbox, while both run `rise-imap --watch --toss` (alice's
  wakes when the bundle is queued, bob's when IMAP IDLE tells of the mail). Median and p99 of
  `--messages` sends, by APPEND into one shared folder, and (as root, with
  Postfix) by SMTP submission between two mailboxes.
- **Throughput**: a `--size-mib` file through the shared folder: alice's
  `rise-imap` pass (masking, base64, APPEND) plus bob's (FETCH, checking,
  reassembly, admission), against the same mails appended and fetched by a
  bare IMAPClient loop in the same run. The ratio is bare time / carrier
  time (1.0: the carrier costs nothing over IMAP itself); `ratio_process`
  runs the bare loop as a process too (its start-up, login and imports
  counted, as the commands' are); `ratio_in_process` runs the carrier's two
  passes inside this process instead (a diagnosis: what the carrier costs
  beyond a command's start-up). The bare mails are base64-like lines, as
  ours are (random binary without line ends takes Dovecot longer and made
  the ratio look better than it is). Sealing (rise-send) and toss are
  outside all of them. The bare loop uses IMAPClient's `append`, which
  rewrites every line end through imaplib first; the carrier sends in
  RFC 3502's form where the server offers MULTIAPPEND, which skips that (a
  bare loop doing the same takes about 0.57 s instead of 0.8 s for 30 MiB
  here).

Every step is a real process of the installed commands. The machine is
whatever runs this; on a shared one, run it several times (`--repeat`)
and quote medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imapclient import IMAPClient

from tests.mailserver import HOST, Dovecot, running_dovecot, running_postfix

BIN = Path(sys.executable).parent
PART_BYTES = 18_221_235  # the default part: a 25 MB provider limit (protocol.md 24.2)
WAIT_SECONDS = 60.0


def run(
    home: Path, *args: str, data: bytes | None = None, env: dict[str, str] | None = None
) -> bytes:
    full = {**os.environ, "RISE_HOME": str(home), **(env or {})}
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]], input=data, capture_output=True, env=full, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def two_nodes(base: Path) -> tuple[Path, Path]:
    alice, bob = base / "alice", base / "bob"
    for home, name in ((alice, "alice"), (bob, "bob")):
        run(home, "rise", "init", "--name", name)
    run(alice, "rise", "peer", "add", "-", data=run(bob, "rise", "card"))
    run(bob, "rise", "peer", "add", "-", data=run(alice, "rise", "card"))
    return alice, bob


def configure(home: Path, other: str, address: str, extra: dict[str, object]) -> None:
    lines = ["", "[mailbox]", *(f"{key} = {json.dumps(value)}" for key, value in extra.items())]
    lines += ["", f"[peers.{other}]", f"address = {json.dumps(address)}", ""]
    config = home / "config.toml"
    config.write_text(config.read_text() + "\n".join(lines))


def shared_folder(dovecot: Dovecot, base: Path) -> tuple[Path, Path, dict[str, str]]:
    user = dovecot.users["alice"]
    alice, bob = two_nodes(base)
    folder = f"bench-{uuid.uuid4().hex[:8]}"
    address = f"imaps://{user.address}@{HOST}:{dovecot.imaps_port}/{folder}"
    settings = {"password_env": "BENCH_MAIL_PASSWORD", "ca_file": str(dovecot.ca_file)}
    configure(alice, "bob", address, settings)
    configure(bob, "alice", address, settings)
    return alice, bob, {"BENCH_MAIL_PASSWORD": user.password}


def watch(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "rise-imap"), "--watch", "--toss", "-q"],
        env={**os.environ, "RISE_HOME": str(home), **env},
        stderr=subprocess.DEVNULL,
    )


def inbox_count(home: Path) -> int:
    inbox = home / "inbox"
    return len(list(inbox.glob("*.msg"))) if inbox.is_dir() else 0


def latency(alice: Path, bob: Path, env: dict[str, str], count: int) -> list[float]:
    """Both nodes run `rise-imap --watch --toss`, as services do: alice's wakes when
    rise-send queues the bundle, bob's when IDLE tells of the mail."""
    watchers = [watch(alice, env), watch(bob, env)]
    seconds = []
    try:
        time.sleep(1.0)  # the watches' first passes and their IDLE
        for number in range(count):
            before = inbox_count(bob)
            started = time.perf_counter()
            run(alice, "rise-send", "-q", "-", "bob", data=os.urandom(50).hex().encode())
            deadline = started + WAIT_SECONDS
            while inbox_count(bob) <= before:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"message {number} never arrived")
                time.sleep(0.005)
            seconds.append(time.perf_counter() - started)
            time.sleep(1.0)  # bob's ack goes home before the next send
    finally:
        for watcher in watchers:
            watcher.terminate()
            watcher.wait(30)
    return seconds


def throughput(dovecot: Dovecot, base: Path, size: int) -> dict[str, float]:
    alice, bob, env = shared_folder(dovecot, base)
    payload = base / "payload.bin"
    with payload.open("wb") as out:
        for _block in range(size // (1 << 20)):
            out.write(os.urandom(1 << 20))
    run(alice, "rise-send", "-q", str(payload), "bob")
    started = time.perf_counter()
    run(alice, "rise-imap", "-q", env=env)
    pushed = time.perf_counter()
    run(bob, "rise-imap", "-q", env=env)
    pulled = time.perf_counter()
    carrier = pulled - started
    in_process = carrier_in_process(dovecot, base / "in-process", payload)
    bare = bare_loop(dovecot, size)
    bare_as_process = bare_process(dovecot, size)
    return {
        "push_s": pushed - started,
        "pull_s": pulled - pushed,
        "carrier_s": carrier,
        "bare_s": bare,
        "ratio": bare / carrier,
        "bare_process_s": bare_as_process,
        "ratio_process": bare_as_process / carrier,
        "carrier_in_process_s": in_process,
        "ratio_in_process": bare / in_process,
    }


def carrier_in_process(dovecot: Dovecot, base: Path, payload: Path) -> float:
    """The two passes run in this process (no interpreter start-up or imports counted):
    a diagnosis of where the time goes, beside the figures from real processes."""
    from rise_dtn.carriers.mailbox import targets
    from rise_dtn.node.home import Home

    alice, bob, env = shared_folder(dovecot, base)
    run(alice, "rise-send", "-q", str(payload), "bob")
    os.environ.update(env)
    homes = [Home.open(alice), Home.open(bob)]
    for home in homes:
        home.index  # noqa: B018 - opened before the clock starts, as the commands' imports are
    started = time.perf_counter()
    for home in homes:
        chosen = targets.chosen(home, None, ())
        for report in targets.run(home, chosen, now=lambda: int(time.time()), toss=None, say=None):
            if report.error is not None:
                raise SystemExit(report.error)
    elapsed = time.perf_counter() - started
    for home in homes:
        home.close()
    return elapsed


def bare_process(dovecot: Dovecot, size: int) -> float:
    """bare_loop in a process of its own, timed from fork to exit as the commands are."""
    user = dovecot.users["bob"]
    env = {**os.environ, "BENCH_USER": user.address, "BENCH_PASSWORD": user.password}
    env["BENCH_CA"] = str(dovecot.ca_file)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--bare", str(dovecot.imaps_port), str(size)],
        env=env,
        check=True,
    )
    return time.perf_counter() - started


def bare_main(port: int, size: int) -> None:
    """The bare loop's process: nothing but IMAPClient, as a minimal client would be."""
    import ssl

    context = ssl.create_default_context(cafile=os.environ["BENCH_CA"])
    client = IMAPClient(HOST, port=port, ssl_context=context)
    client.login(os.environ["BENCH_USER"], os.environ["BENCH_PASSWORD"])
    _bare(client, size)


def bare_loop(dovecot: Dovecot, size: int) -> float:
    """The same number of mails of the same size, appended and fetched whole by IMAPClient."""
    user = dovecot.users["bob"]
    client = IMAPClient(HOST, port=dovecot.imaps_port, ssl_context=dovecot.ssl_context())
    client.login(user.address, user.password)
    started = time.perf_counter()
    _bare(client, size)
    return time.perf_counter() - started


def _bare(client: IMAPClient, size: int) -> None:
    folder = f"bare-{uuid.uuid4().hex[:8]}"
    mails = []
    left = size
    while left > 0:
        part = min(PART_BYTES, left)
        # base64's size, in lines as a mail has them (IMAP compresses nothing: any bytes do)
        lines = part * 4 // 3 // 76
        mails.append(b"Subject: bare\r\n\r\n" + (b"QUJD" * 19 + b"\r\n") * lines)
        left -= part
    client.create_folder(folder)
    for raw in mails:
        client.append(folder, raw)
    client.select_folder(folder)
    for uid in client.search(["ALL"]):
        client.fetch([uid], ["BODY.PEEK[]"])
    client.close_folder()
    client.delete_folder(folder)
    client.logout()


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"median_s": statistics.median(ordered), "p99_s": p99, "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--size-mib", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("bare_size", type=int, nargs="?", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.bare:
        bare_main(options.bare, options.bare_size)
        return
    results: dict[str, object] = {}
    with running_dovecot() as dovecot, tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        alice, bob, env = shared_folder(dovecot, base / "latency")
        results["latency_append"] = summary(latency(alice, bob, env, options.messages))
        if os.geteuid() == 0:
            with running_postfix(dovecot) as postfix:
                results["latency_smtp"] = summary(smtp_latency(dovecot, postfix, base, options))
        runs = [
            throughput(dovecot, base / f"throughput-{n}", options.size_mib << 20)
            for n in range(options.repeat)
        ]
        results["throughput_runs"] = runs
        results["throughput_ratio_median"] = statistics.median(run["ratio"] for run in runs)
        for key in ("ratio_process", "ratio_in_process"):
            results[f"throughput_{key}_median"] = statistics.median(run[key] for run in runs)
        results["mib_per_s_median"] = statistics.median(
            options.size_mib / run["carrier_s"] for run in runs
        )
    print(json.dumps(results, indent=2))


def smtp_latency(
    dovecot: Dovecot, postfix: object, base: Path, options: argparse.Namespace
) -> list[float]:
    alice, bob = two_nodes(base / "smtp")
    port = postfix.submission_port
    env = {}
    for home, me, other in ((alice, "alice", "bob"), (bob, "bob", "alice")):
        user, to = dovecot.users[me], dovecot.users[other]
        variable = f"BENCH_{me.upper()}_PASSWORD"
        env[variable] = user.password
        address = f"imaps://{user.address}@{HOST}:{dovecot.imaps_port}/INBOX"
        settings = {
            "password_env": variable,
            "ca_file": str(dovecot.ca_file),
            "smtp": f"smtp://{HOST}:{port}",
            "to": to.address,
        }
        configure(home, other, address, settings)
    return latency(alice, bob, env, options.messages)


if __name__ == "__main__":
    main()
