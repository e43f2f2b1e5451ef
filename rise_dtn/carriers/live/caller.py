"""rise-caller: make the calls listed in config.toml on their schedules, with retries.

Every call, scheduled or by hand (rise-call), holds the lock
locks/call-<node-id>.lock, so cron, the caller and a user never run two
calls to the same neighbour at once; a call that finds the lock taken is
skipped until its next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import time
from collections.abc import Callable

from rise_dtn.carriers import registry
from rise_dtn.carriers.base import NO_HOOKS, Exchanged, Hooks
from rise_dtn.carriers.live.schedule import CallPlan, retry_delay
from rise_dtn.carriers.tcp.online import NoAddress, call_lock
from rise_dtn.core.errors import BusyError, RiseError
from rise_dtn.node.home import Home

Log = Callable[[str], None]
RECHECK_SECONDS = 60.0  # wake at least this often: clock changes, suspend and resume


async def call_plan(home: Home, plan: CallPlan, *, hooks: Hooks = NO_HOOKS) -> Exchanged:
    """One call of the plan, by whichever carrier its address names (a thread: carriers block)."""
    peer = home.peers.find(plan.node)
    given = f"exec:{plan.command}" if plan.command is not None else plan.address
    chosen = registry.load().choose(
        given=given, configured=home.config.peer(peer.name).address, card=peer.card.addresses
    )
    if chosen is None:
        raise NoAddress(f"no address for {peer.name}: set address in its [[calls]] table")
    carrier, address = chosen
    with call_lock(home, peer):
        return await asyncio.to_thread(
            carrier.exchange, home, peer, address, now=int(time.time()), hooks=hooks
        )


@dataclasses.dataclass(slots=True)
class _State:
    plan: CallPlan
    due: datetime.datetime
    failures: int = 0


async def run_schedule(
    home: Home,
    plans: list[CallPlan],
    *,
    stop: asyncio.Event,
    log: Log,
    clock: Callable[[], datetime.datetime] = datetime.datetime.now,
    hooks: Hooks = NO_HOOKS,
) -> None:
    """Call each plan's neighbour when due, until `stop` is set."""
    start = clock()
    states = [_State(plan, plan.next_due(start)) for plan in plans]
    while states and not stop.is_set():
        state = min(states, key=lambda item: item.due)
        wait = (state.due - clock()).total_seconds()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(wait, RECHECK_SECONDS))
            continue
        now = clock()
        try:
            report = await call_plan(home, state.plan, hooks=hooks)
        except BusyError as exc:
            log(f"{state.plan.node}: skipped: {exc.message}")
            state.due, state.failures = state.plan.next_due(now), 0
            continue
        except RiseError as exc:
            state.failures += 1
            retry = now + datetime.timedelta(seconds=retry_delay(state.failures))
            state.due = min(state.plan.next_due(now), retry)
            log(f"{state.plan.node}: call failed ({exc.message}); next try {state.due:%H:%M:%S}")
            continue
        state.due, state.failures = state.plan.next_due(now), 0
        log(
            f"{state.plan.node}: received {report.received}, sent {report.sent}, "
            f"confirmed {report.released}; next call {state.due:%Y-%m-%d %H:%M}"
        )


async def run_all_now(
    home: Home, plans: list[CallPlan], *, log: Log, hooks: Hooks = NO_HOOKS
) -> int:
    """Make every listed call once, now (rise-caller --now); return the number that failed."""
    failed = 0
    for plan in plans:
        try:
            report = await call_plan(home, plan, hooks=hooks)
        except RiseError as exc:
            failed += 1
            log(f"{plan.node}: call failed: {exc.message}")
            continue
        log(f"{plan.node}: received {report.received}, sent {report.sent}")
    return failed
