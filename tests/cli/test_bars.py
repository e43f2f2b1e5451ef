"""cli/bars.py's accounting: what each lane's bars say after planned/started/moved/finished.

The bars draw into a StringIO (no terminal size: 80 columns); the last state
of each bar is what tqdm leaves when it closes, so nothing depends on timing.
The clock is a parameter, for the rule that small work stays silent.
"""

from __future__ import annotations

import io

from rise_dtn.cli import bars
from rise_dtn.core.progress import NO_PROGRESS

MIB = 1 << 20


def last_states(text: str) -> list[str]:
    """Each bar's last drawn state: the last carriage-return segment of each line."""
    return [line.split("\r")[-1].strip() for line in text.split("\n") if line.strip()]


def test_a_lane_counts_its_bundles_and_bytes_to_the_end() -> None:
    out = io.StringIO()
    with bars.Bars(out) as drawn:
        drawn.planned("to bob", bundles=2, total_bytes=3 * MIB)
        for name, size in (("first", MIB), ("second", 2 * MIB)):
            with drawn.item("to bob", name, size) as moved:
                for _block in range(size // (MIB // 4)):
                    moved(MIB // 4)
    final = last_states(out.getvalue())[-1]
    assert final.startswith("to bob (2/2): 100%|")
    assert "3.0 MiB / 3.0 MiB" in final
    assert "  first:" in out.getvalue() and "  second:" in out.getvalue()  # per-bundle bars


def test_an_abandoned_bundle_leaves_the_work_ahead() -> None:
    out = io.StringIO()
    with bars.Bars(out) as drawn:
        drawn.planned("from bob", bundles=2, total_bytes=4 * MIB)
        drawn.started("from bob", "cut", 2 * MIB)
        drawn.moved("from bob", MIB)
        drawn.finished("from bob", complete=False)  # the link went: 1 MiB of it never came
        with drawn.item("from bob", "whole", 2 * MIB):
            pass  # moved in one go: finished counts what was not reported
    final = last_states(out.getvalue())[-1]
    assert final.startswith("from bob: 100%|")  # one bundle done: no count shown
    assert "3.0 MiB / 3.0 MiB" in final


def test_a_resumed_bundle_counts_only_what_moves_now() -> None:
    out = io.StringIO()
    with bars.Bars(out) as drawn:
        drawn.planned("to bob", bundles=1, total_bytes=2 * MIB)
        with drawn.item("to bob", "resumed", 5 * MIB, done_bytes=3 * MIB) as moved:
            moved(2 * MIB)
    final = last_states(out.getvalue())[-1]
    assert final.startswith("to bob: 100%|") and "2.0 MiB / 2.0 MiB" in final


def test_unplanned_work_is_planned_as_it_starts() -> None:
    out = io.StringIO()
    with bars.Bars(out) as drawn:
        for name in ("a", "b"):
            with drawn.item("tossing", name, 2 * MIB) as moved:
                moved(2 * MIB)
    final = last_states(out.getvalue())[-1]
    assert "4.0 MiB / 4.0 MiB" in final and "100%" in final


def test_small_work_stays_silent_until_it_is_slow() -> None:
    now = [100.0]
    out = io.StringIO()
    drawn = bars.Bars(out, clock=lambda: now[0])
    drawn.started("to bob", "chat", 300)
    drawn.moved("to bob", 100)
    assert out.getvalue() == ""  # a message: no bar, and tqdm is not needed
    drawn.write("a line of talk")
    assert out.getvalue() == "a line of talk\n"
    now[0] += bars.SLOW_SECONDS  # a radio link: the same bytes, a second later
    drawn.moved("to bob", 100)
    drawn.finished("to bob")
    drawn.close()
    final = last_states(out.getvalue())[-1]
    assert final.startswith("to bob: 100%|") and "300 B / 300 B" in final


def test_no_bars_without_a_terminal_or_with_q() -> None:
    assert bars.for_command(quiet=False) is NO_PROGRESS  # pytest's stderr is no terminal
    assert not bars.wanted(quiet=False, stream=io.StringIO())

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert bars.wanted(quiet=False, stream=Terminal())
    assert not bars.wanted(quiet=True, stream=Terminal())
