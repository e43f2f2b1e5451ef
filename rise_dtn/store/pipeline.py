"""A background writer: the disk writes while the caller seals or opens the next chunk.

Sealing and writing each take a comparable time per megabyte, and both
release the GIL (libsodium through cffi, write(2) in the kernel), so doing
them in two threads nearly halves the wall time of a large send or toss.
The queue is bounded, so memory stays at a few chunks whatever the size.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

QUEUE_CHUNKS = 4  # 4 MiB in flight: enough to smooth the disk, flat in file size

# glibc's mallopt(3) parameters, and the values a streamed bundle wants.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A block of a streamed bundle (1 MiB, a sealed chunk 16 bytes more) comes
# from the heap, not from an mmap of its own...
HEAP_BLOCK_MAX_BYTES = 2 << 20
# ...and the heap keeps this much free at its top instead of handing it back.
HEAP_KEEP_BYTES = 8 << 20


@functools.cache
def reuse_block_memory() -> None:
    """Let the few megabytes of blocks in flight be reused, not faulted in afresh.

    By default glibc maps every allocation of a MiB or more on its own and
    unmaps it when freed (or trims the heap as soon as 2 MiB lie free at
    its top), so each block read, peeled, opened or written takes fresh
    pages that the kernel must fault in and zero: 227,000 page faults and
    half a second of system time to deliver 1 GiB (bench/README.md, relay
    figures). From the heap, with a few blocks' worth kept, the same pages
    serve every block, and the peak memory stays as it was (a bounded
    number of blocks is ever alive). A hint, once per process; without
    glibc, nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(None).mallopt
        mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_MAX_BYTES)
        mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP_BYTES)


Item = TypeVar("Item")


class BackgroundWriter(Generic[Item]):
    """`with BackgroundWriter(out.write) as write: write(chunk)`; errors resurface in the caller.

    An item is a block to write, or what the writer turns into one (a sealed
    chunk it opens first: node/toss/deliver.py)."""

    def __init__(self, write: Callable[[Item], object]) -> None:
        reuse_block_memory()
        self._write = write
        self._queue: queue.Queue[Item | None] = queue.Queue(QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rise-writer", daemon=True)

    def __enter__(self) -> Callable[[Item], None]:
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

    def put(self, data: Item) -> None:
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
