"""A background writer: the disk writes while the caller seals or opens the next chunk.

Sealing and writing each take a comparable time per megabyte, and both
release the GIL (libsodium through cffi, write(2) in the kernel), so doing
them in two threads nearly halves the wall time of a large send or toss.
The queue is bounded, so memory stays at a few chunks whatever the size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

QUEUE_CHUNKS = 4  # 4 MiB in flight: enough to smooth the disk, flat in file size


class BackgroundWriter:
    """`with BackgroundWriter(out.write) as write: write(chunk)`; errors resurface in the caller."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rise-writer", daemon=True)

    def __enter__(self) -> Callable[[bytes], None]:
        self._thread.start()
        return self.put

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain: the caller will see the error on its next put
            try:
                self._write(item)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                self._error = exc

    def put(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc is None and self._error is not None:
            raise self._error
