"""A link cut again and again mid-transfer: the file still arrives once, intact."""

from __future__ import annotations

import hashlib
import os
import random
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Node

pytestmark = pytest.mark.slow


class CuttingProxy:
    """Forwards 127.0.0.1 connections to `target`, cutting each after a random byte budget."""

    def __init__(self, target: int, *, seed: int, budget: tuple[int, int]) -> None:
        self.target = target
        self.random = random.Random(seed)
        self.budget = budget
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while self.running:
            try:
                client, _address = self.listener.accept()
            except TimeoutError:
                continue
            budget = self.random.randint(*self.budget)
            threading.Thread(target=self._pipe, args=(client, budget), daemon=True).start()

    def _pipe(self, client: socket.socket, budget: int) -> None:
        server = socket.create_connection(("127.0.0.1", self.target))
        ends = {client: server, server: client}
        moved = 0
        try:
            while True:
                ready, _w, _x = select.select(list(ends), [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if moved + len(data) >= budget:
                        ends[sock].sendall(data[: budget - moved])
                        self.cuts += 1
                        return
                    moved += len(data)
                    ends[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in ends:
                sock.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def proxy(daemon: tuple[subprocess.Popen[bytes], int]) -> Iterator[CuttingProxy]:
    cutter = CuttingProxy(daemon[1], seed=7, budget=(200_000, 3_000_000))
    yield cutter
    cutter.close()


def test_fifty_mib_through_thirty_cuts(
    pair: tuple[Node, Node], proxy: CuttingProxy, tmp_path: Path
) -> None:
    alice, bob = pair
    payload = os.urandom(50 * (1 << 20))
    (tmp_path / "big.bin").write_bytes(payload)
    alice.run("rise-send", "-q", str(tmp_path / "big.bin"), "bob")
    calls = 0
    while calls < 200:  # bounded; each call resumes from where the last was cut
        calls += 1
        result = alice.run(
            "rise-call", "-q", "bob", "--address", f"127.0.0.1:{proxy.port}", check=False
        )
        if result.returncode == 0 and not list((alice.spool / "tx").rglob("*.rsb")):
            break
    assert proxy.cuts >= 30, f"only {proxy.cuts} cuts in {calls} calls"
    target = bob.incoming / "alice" / "big.bin"
    for _attempt in range(400):  # the daemon tosses after the last session
        if target.exists():
            break
        threading.Event().wait(0.05)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert [path.name for path in (bob.incoming / "alice").iterdir()] == ["big.bin"]
