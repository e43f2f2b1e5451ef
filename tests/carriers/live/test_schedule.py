"""Schedules of rise-caller: cron times, daily windows, backoff, config errors."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from rise_dtn.carriers.live.caller import run_schedule
from rise_dtn.carriers.live.schedule import (
    MAX_RETRY_SECONDS,
    CallPlan,
    parse_calls,
    parse_window,
    retry_delay,
)
from rise_dtn.core.errors import UsageError
from rise_dtn.node.home import Home


def at(hour: int, minute: int, second: int = 0) -> datetime.datetime:
    return datetime.datetime(2026, 11, 23, hour, minute, second)


def test_window_wrapping_midnight() -> None:
    window = parse_window("22:00-06:00")
    assert window.contains(at(23, 30)) and window.contains(at(5, 59))
    assert not window.contains(at(6, 0)) and not window.contains(at(12, 0))
    day = parse_window("09:00-17:30")
    assert day.contains(at(17, 29)) and not day.contains(at(17, 30))


def test_next_due_respects_cron_and_window() -> None:
    plan = CallPlan(node="bob", cron="*/10 * * * *", window=parse_window("22:00-06:00"))
    assert plan.next_due(at(22, 3)) == at(22, 10)
    assert plan.next_due(at(12, 3)) == at(22, 0)
    always = CallPlan(node="bob", cron="15 * * * *")
    assert always.next_due(at(12, 20)) == at(13, 15)


def test_retry_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(50) == MAX_RETRY_SECONDS


def test_calls_config_is_checked() -> None:
    plans = parse_calls([{"node": "bob", "cron": "0 * * * *", "address": "h:1"}])
    assert plans[0].address == "h:1"
    for bad, message in [
        ({"node": "bob"}, "needs node"),
        ({"node": "bob", "cron": "every hour"}, "not a cron"),
        ({"node": "bob", "cron": "0 * * * *", "window": "late"}, "not a time window"),
        ({"node": "bob", "cron": "0 * * * *", "colour": "red"}, "unknown key"),
        ({"node": "bob", "cron": "0 * * * *", "address": 5}, "must be a string"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_calls([bad])
    with pytest.raises(UsageError, match="tables"):
        parse_calls(["bob"])


def test_an_unknown_calls_key_names_the_nearest_known_one() -> None:
    for key, message in [
        ("adress", "unknown key 'adress' in [[calls]], did you mean 'address'?"),
        ("colour", "unknown key 'colour' in [[calls]]"),
    ]:
        with pytest.raises(UsageError) as refused:
            parse_calls([{"node": "bob", "cron": "0 * * * *", key: "x"}])
        assert refused.value.message == f"{message} (see rise-config(5))"


def test_a_wrong_calls_value_names_the_key_and_what_was_given() -> None:
    for key, value, message in [
        ("window", 22, "[[calls]] window: must be a string, not 22"),  # was ignored: any hour
        ("window", "22-6", "call to bob: window: not a time window: '22-6' (use HH:MM-HH:MM)"),
        ("command", ["ssh", "bob"], "[[calls]] command: must be a string, not ['ssh', 'bob']"),
    ]:
        with pytest.raises(UsageError) as refused:
            parse_calls([{"node": "bob", "cron": "0 * * * *", key: value}])
        assert refused.value.message == message


def test_schedule_retries_a_failing_call_with_backoff(tmp_path: Path) -> None:
    """A call that fails is retried after 30 s, then 60 s, with a clock we control."""
    home = Home.create(tmp_path / "node", name="alice")  # knows no "bob": every call fails
    plan = CallPlan(node="bob", cron="0 * * * *")
    moments = [at(12, 0), at(13, 0)]  # start, then the first due time; the test moves it on
    attempts: list[datetime.datetime] = []
    reads = [0]

    def clock() -> datetime.datetime:
        reads[0] += 1
        return moments[0] if reads[0] == 1 else moments[-1]

    async def scenario() -> None:
        stop = asyncio.Event()

        def log(line: str) -> None:
            attempts.append(moments[-1])
            assert "call failed" in line
            if len(attempts) == 3:
                stop.set()
            else:
                moments.append(moments[-1] + datetime.timedelta(seconds=retry_delay(len(attempts))))

        await asyncio.wait_for(
            run_schedule(home, [plan], stop=stop, log=log, clock=clock), timeout=10
        )

    asyncio.run(scenario())
    assert attempts == [at(13, 0), at(13, 0) + datetime.timedelta(seconds=30), at(13, 1, 30)]
