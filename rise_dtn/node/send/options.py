"""How a bundle is to travel: direct, or over relays (how many, which, how many copies).

Apart from routed.py, which does the sending, so that `rise-send` can tell a
direct send from a routed one without importing the onion and routing code
a direct send never runs (start-up is latency for a cron job).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from rise_dtn.core.errors import UsageError

if TYPE_CHECKING:
    from rise_dtn.node.home import Home

# Relays per route when routing is asked for (--copies, a receipt) but no
# --hops or [send] hops says how many: two relays is the least that keeps
# any single relay from knowing both ends.
DEFAULT_ROUTED_HOPS = 2


@dataclasses.dataclass(frozen=True, slots=True)
class RouteOptions:
    """How a bundle travels; None means the node's configured default."""

    hops: int | None = None
    copies: int | None = None
    via: tuple[str, ...] = ()
    wait: bool = False

    def routed(self, home: Home) -> bool:
        hops = self.hops if self.hops is not None else home.config.hops
        copies = self.copies if self.copies is not None else home.config.copies
        return bool(hops or self.via or copies > 1)

    def resolve(self, home: Home) -> tuple[int, int]:
        """(relays per route, copies), checked; routing implied by copies means 2 relays."""
        hops = self.hops if self.hops is not None else home.config.hops
        copies = self.copies if self.copies is not None else home.config.copies
        if self.via and copies > 1:
            raise UsageError("--via forces one route; --copies needs routes drawn from the map")
        if self.via and self.wait:
            raise UsageError("--via and --wait do not mix: a forced route exists now or not")
        if self.via:
            hops = len(self.via)
        elif not hops:
            hops = DEFAULT_ROUTED_HOPS
        return hops, copies
