"""A token-bucket TCP proxy: a link of fixed capacity between a caller and a daemon.

Each accepted connection is relayed to the target by two threads, one per
direction; each direction has its own bucket refilled at `rate_bits` per
second (a symmetric link). A chunk read from one side is paid for before it
is written to the other: the bucket may go into debt, and the pump sleeps the
debt off, so over any interval longer than a few chunks the bytes forwarded
are capacity x time, plus at most `burst` bytes. No latency is added beyond
the pacing itself.
"""

from __future__ import annotations

import socket
import threading
import time

CHUNK = 16 * 1024


class Bucket:
    def __init__(self, rate_bits: float, burst: int) -> None:
        self.rate = rate_bits / 8  # bytes per second
        self.burst = burst
        self.tokens = float(burst)
        self.last = time.perf_counter()
        self.lock = threading.Lock()

    def take(self, size: int) -> None:
        with self.lock:
            now = time.perf_counter()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= size
            debt = -self.tokens
        if debt > 0:
            time.sleep(debt / self.rate)


class Shaper:
    """Listens on 127.0.0.1 (a free port, `self.port`) and forwards to `target`."""

    def __init__(self, target: tuple[str, int], rate_bits: float, burst: int = 2 * CHUNK) -> None:
        self.target = target
        self.rate_bits = rate_bits
        self.burst = burst
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarded = [0, 0]  # bytes caller->daemon, daemon->caller
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Shaper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = Bucket(self.rate_bits, self.burst)
            down = Bucket(self.rate_bits, self.burst)
            done = threading.Barrier(2, action=lambda c=client, s=server: (c.close(), s.close()))
            for src, dst, bucket, index in ((client, server, up, 0), (server, client, down, 1)):
                threading.Thread(
                    target=self._pump, args=(src, dst, bucket, index, done), daemon=True
                ).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        bucket: Bucket,
        index: int,
        done: threading.Barrier,
    ) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                bucket.take(len(data))
                dst.sendall(data)
                self.forwarded[index] += len(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            done.wait(timeout=600)
        except threading.BrokenBarrierError:
            pass
