"""Three hops with every daemon up: A -> R1 -> R2 -> B over kept TCP links, as real processes.

Each node runs `rise-daemon`; each holds a link to its next neighbour open
(`--link`). Nobody calls by hand: a bundle that `rise-send` queues is
offered at once on A's link, each relay tosses what arrives and offers the
forward on its next link in the same session, and B's receipts come back the
same way. The first maps travel by stick (tests/e2e/relay_network.py); from
then on only the daemons move anything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import BIN, command_env
from tests.e2e.relay_network import MIB, Network, digest
from tests.postgres import IndexUrls

CHAIN = {
    "relays": ["r1", "r2"],
    "ends": ["a", "b"],
    "links": [("a", "r1"), ("r1", "r2"), ("r2", "b")],
    "correspondents": [("a", "b")],
}
WAIT_SECONDS = 120.0


def wait_for(what: str, check: Callable[[], bool], *, seconds: float = WAIT_SECONDS) -> None:
    """Poll `check` until true (bounded): the daemons work on their own time."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Daemons:
    """rise-daemon processes, one per node, each listening on a free port of 127.0.0.1."""

    def __init__(self, net: Network, log_dir: Path) -> None:
        self.net = net
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, *links: str, env: Mapping[str, str] | None = None) -> None:
        """Start `name`'s daemon, keeping a link to each of `links` (already started);
        `env`: more environment for it (this start only)."""
        self.run(name, "127.0.0.1:0", links, env=env)
        log = self.log_dir / f"{name}.log"
        wait_for(
            f"{name}'s daemon to listen", lambda: "listening on" in log.read_text(), seconds=30
        )
        line = next(line for line in log.read_text().splitlines() if "listening on" in line)
        self.ports[name] = int(line.strip().rsplit(":", 1)[1])

    def run(
        self,
        name: str,
        listen: str,
        links: tuple[str, ...],
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        args = [f"--link={peer}=127.0.0.1:{self.ports[peer]}" for peer in links]
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [str(BIN / "rise-daemon"), "--listen", listen, *args],
                env=command_env(self.net[name].home, **(env or {})),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            assert process.wait(timeout=30) == 0, self.log(name)


@contextlib.contextmanager
def chain(
    tmp_path: Path,
    index_urls: IndexUrls | None = None,
    *,
    env: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[tuple[Network, Daemons]]:
    """The chain a -> r1 -> r2 -> b, each daemon started; `env`: more environment for
    some of them, by name (their first start only)."""
    net = Network.build(tmp_path, **CHAIN, index_urls=index_urls)  # type: ignore[arg-type]
    daemons = Daemons(net, tmp_path)
    extra = env or {}
    try:
        daemons.start("b", env=extra.get("b"))
        daemons.start("r2", "b", env=extra.get("r2"))
        daemons.start("r1", "r2", env=extra.get("r1"))
        daemons.start("a", "r1", env=extra.get("a"))
        yield net, daemons
    finally:
        daemons.stop()


def delivered_status(net: Network, bundle_id: str) -> bool:
    return net.status("a").get(bundle_id, {}).get("state") == "delivered"


@pytest.mark.slow
def test_message_and_50_mib_file_cross_three_hops_with_receipts(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    payload = os.urandom(50 * MIB)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    with chain(tmp_path, index_urls) as (net, daemons):
        message_id = net.send("a", "b", b"hello over three live hops\n").stdout.split()[0]
        file_id = net.send("a", "b", source).stdout.split()[0]
        wait_for("the message at b", lambda: net.inbox("b") != [])
        wait_for("the file at b", lambda: net.incoming("b", "a") == {"big.bin": digest(payload)})
        for bundle_id in (message_id.decode(), file_id.decode()):
            wait_for(f"b's receipt for {bundle_id}", lambda b=bundle_id: delivered_status(net, b))
        wait_for("every spool to empty", lambda: _quiet(net))
    assert net.inbox("b") == [b"hello over three live hops\n"]
    for name in ("a", "r1", "r2", "b"):
        log = daemons.log(name)
        assert "Traceback" not in log, log
    # Nobody called by hand and no stick moved anything after the first maps:
    # the relays forwarded on their kept links.
    assert "delivered" in daemons.log("b")


def _quiet(net: Network) -> bool:
    try:
        net.assert_quiet()
    except AssertionError:
        return False
    return True


@pytest.mark.slow
def test_a_relay_restarted_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path, index_urls: IndexUrls
) -> None:
    """Kill -9 R1's daemon while messages flow; its successor picks up, all arrive once."""
    with chain(tmp_path, index_urls) as (net, daemons):
        texts = [f"message {number}\n".encode() for number in range(20)]
        for text in texts[:10]:
            net.send("a", "b", text)
        daemons.processes["r1"].send_signal(signal.SIGKILL)
        daemons.processes["r1"].wait(timeout=10)
        for text in texts[10:]:
            net.send("a", "b", text)
        # The same port, so that a's kept link finds it again on its next dial.
        daemons.run("r1", f"127.0.0.1:{daemons.ports['r1']}", ("r2",))
        wait_for("all twenty messages at b", lambda: len(net.inbox("b")) >= len(texts))
        wait_for("every spool to empty", lambda: _quiet(net))
        assert net.inbox("b") == sorted(texts)
    check = net["r1"].run("rise-check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
