"""A TCP proxy on loopback that cuts its connections after a set number of bytes.

Carriers must survive a connection dropped mid-APPEND or mid-FETCH with
nothing lost and nothing delivered twice; to test that for real, a client
talks to the real server through this proxy, which forwards bytes both
ways unchanged (TLS passes through end to end) and, when told, resets a
connection once so many bytes have gone one way. The cut is by byte count,
not by time, so a test that uses it is deterministic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
from collections.abc import Iterator

HOST = "127.0.0.1"
BUFFER_BYTES = 16 * 1024
JOIN_SECONDS = 10.0  # threads end as soon as their sockets close; this only bounds a bug


@dataclasses.dataclass
class Cut:
    """Where to cut the next connections: after so many bytes upstream (client to
    server) or downstream (server to client); None never cuts that way."""

    upstream_bytes: int | None = None
    downstream_bytes: int | None = None


class CutProxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut = Cut()
        self.cuts_made = 0
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection((HOST, self.target_port))
            cut = dataclasses.replace(self.cut)
            with self._lock:
                self._sockets += [client, server]
                for source, sink, limit in (
                    (client, server, cut.upstream_bytes),
                    (server, client, cut.downstream_bytes),
                ):
                    pump = threading.Thread(
                        target=self._pump, args=(source, sink, limit, (client, server)), daemon=True
                    )
                    self._threads.append(pump)
                    pump.start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        limit: int | None,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        sent = 0
        try:
            while data := source.recv(BUFFER_BYTES):
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: limit - sent])
                    with self._lock:
                        self.cuts_made += 1
                    break
                sink.sendall(data)
                sent += len(data)
            else:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)  # an orderly end goes on as one
                return
        except OSError:
            pass  # the other pump reset the pair
        for end in pair:
            reset(end)

    def cut_now(self) -> int:
        """Reset every connection open now (a link dropped at a moment, not a byte count,
        e.g. an idle one); how many were open."""
        with self._lock:
            ends = [end for end in self._sockets if end.fileno() != -1]
            if ends:
                self.cuts_made += 1
        for end in ends:
            reset(end)
        return len(ends) // 2

    def close(self) -> None:
        reset(self._listener)
        with self._lock:
            for end in self._sockets:
                reset(end)
            threads = [*self._threads, self._accepting]
        for thread in threads:
            thread.join(JOIN_SECONDS)


def reset(end: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped link looks to the other side.

    shutdown() first: it wakes a pump blocked in recv() on this socket, which
    close() alone does not."""
    with contextlib.suppress(OSError):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        end.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        end.close()


@contextlib.contextmanager
def cut_proxy(target_port: int) -> Iterator[CutProxy]:
    proxy = CutProxy(target_port)
    try:
        yield proxy
    finally:
        proxy.close()
