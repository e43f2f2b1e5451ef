"""The Direwolf link of the over-the-air tests: one per test module (scope="module").

Each module gets a link of its own on purpose: a TNC transmits what it
queued even after its client is gone, and such a late frame must not
reach another module's KISS client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.direwolf import AFSK_1200, G3RUH_9600, DirewolfLink, Modem, link_or_skip


@pytest.fixture(
    scope="module", params=[AFSK_1200, G3RUH_9600], ids=lambda modem: f"{modem.baud}-baud"
)
def link(request: pytest.FixtureRequest) -> Iterator[DirewolfLink]:
    modem: Modem = request.param
    with link_or_skip(modem) as running:
        yield running
