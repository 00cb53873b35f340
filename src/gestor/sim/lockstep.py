"""Run the daemons' cycles on a simulated clock, in one thread, in time order.

Each task is ``(interval_s, cycle)``; at equal times tasks run in the order given (monitoring
before managing, as a reading precedes the decision that uses it). With ``speed`` the run is paced
to ``speed`` simulated seconds per real second; without, it runs as fast as it can.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Callable

from gestor.clock import SimClock


def run_lockstep(clock: SimClock, tasks: list[tuple[float, Callable[[], object]]], until: datetime,
                 speed: float | None = None, on_tick: Callable[[datetime], None] | None = None,
                 tick_real_s: float = 0.25) -> None:
    t0 = clock.now()
    due = [t0 for _ in tasks]
    real0 = time.monotonic()
    last_tick = real0
    while True:
        t = min(due)
        if t >= until:
            break
        if t > clock.now():
            clock.set(t)
        if speed:
            ahead = (t - t0).total_seconds() / speed - (time.monotonic() - real0)
            if ahead > 0:
                time.sleep(ahead)
        for i, (interval_s, fn) in enumerate(tasks):
            if due[i] == t:
                fn()
                due[i] = t + timedelta(seconds=interval_s)
        if on_tick is not None and time.monotonic() - last_tick >= tick_real_s:
            last_tick = time.monotonic()
            on_tick(t)
    if until > clock.now():
        clock.set(until)
