"""What a long step tells whoever watches it: bytes moved, per bundle and overall.

The services and carriers that move bundles (a stick's exchange, a live
link, a toss, a send) tell a Progress as they go, in *lanes*: one line of
work each, named as the user reads it ("to bob", "from alice", "tossing").
A lane does one item (a bundle, a file) at a time; its overall total is
what was `planned` for it. They call it per block or per bundle, never per
byte, so that watching costs nothing measurable on paths that copy hundreds
of MB/s. This base class does nothing; only cli/ shows anything
(cli/bars.py, on a terminal). It must never import a progress library,
print or read the clock.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator


class Progress:
    """A listener that ignores everything; cli/bars.py draws bars from the same calls."""

    def planned(self, lane: str, *, bundles: int, total_bytes: int) -> None:
        """More work ahead in `lane`: `bundles` items of `total_bytes` in all (its overall)."""

    def started(self, lane: str, name: str, total_bytes: int, *, done_bytes: int = 0) -> None:
        """An item of `total_bytes` begins in `lane`, `done_bytes` of it moved before
        (a resumed copy: they count for the item, not for this run's overall)."""

    def moved(self, lane: str, count: int) -> None:
        """`count` more bytes of the lane's current item moved (a block's worth)."""

    def finished(self, lane: str, *, complete: bool = True) -> None:
        """The lane's current item is done (what of it was not reported as moved counts
        as moved now), or with complete=False abandoned (a cut link, a refusal)."""

    @contextlib.contextmanager
    def item(
        self, lane: str, name: str, total_bytes: int, *, done_bytes: int = 0
    ) -> Iterator[Callable[[int], None]]:
        """started ... finished around the `with`, abandoned if it raises; gives the
        per-block callback (moved, for this lane)."""
        self.started(lane, name, total_bytes, done_bytes=done_bytes)
        try:
            yield functools.partial(self.moved, lane)
        except BaseException:
            self.finished(lane, complete=False)
            raise
        self.finished(lane)


NO_PROGRESS = Progress()
