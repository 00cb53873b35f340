"""Control policies: pure functions of a frozen :class:`Snapshot` → one :class:`Wish` per load.

They do no I/O and keep no hidden clock or state, so managing, the simulator and the tests run the
very same code. Every wish that changes a load carries the reason that will be logged.

The three policies come from the bachelor's thesis this project grows from ("Gestor Energètic",
UPC Manresa, 2022, ``sim/lib/sim/Simulator.py``), generalised from two loads to N loads stacked in
priority order (the order of ``loads`` in settings.yaml):

* ``hysteresis``: per load, on when ``balance_wh >= on_above_wh``, off when
  ``balance_wh <= off_below_wh``.
* ``min_on_time``: switch a load on when the surplus so far would run it for at least ``min_on_s``
  (``balance_wh / power_w * 3600 >= min_on_s``), keep it on that long, then off unless the surplus
  still covers another ``min_on_s``.
* ``time_to_consume`` (the thesis's best): project the period's final balance

  - ``none``:    ``projected_wh = balance_wh``
  - ``average``: ``projected_wh = balance_wh / elapsed_s * period_s``
  - ``instant``: ``projected_wh = balance_wh + net_w * remaining_s / 3600``

  The next load (first one off, in priority order) goes on when ``projected_wh >= on_min_wh`` and
  the projection would run it for the rest of the period:
  ``projected_wh / power_w * 3600 >= remaining_s * time_factor``. The last load that is on goes off
  when, even without it, the period would end at or below ``end_at_wh``:
  ``balance_wh + (net_w + power_w) * remaining_s / 3600 <= end_at_wh``. At most one load changes
  per cycle, as in the thesis.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from gestor.settings import PolicySettings


@dataclass(frozen=True)
class LoadView:
    """A load as a policy sees it. ``since``: when it last switched (None: not since start)."""

    name: str
    power_w: float
    on: bool
    since: datetime | None = None
    on_above_wh: float | None = None
    off_below_wh: float | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything a policy may use. Powers W (export-positive), energies Wh, times aware."""

    now: datetime
    period_start: datetime
    period_end: datetime
    balance_wh: float
    net_w: float
    loads: tuple[LoadView, ...]

    @property
    def period_s(self) -> float:
        return (self.period_end - self.period_start).total_seconds()

    @property
    def elapsed_s(self) -> float:
        return max((self.now - self.period_start).total_seconds(), 0.0)

    @property
    def remaining_s(self) -> float:
        return max((self.period_end - self.now).total_seconds(), 0.0)


@dataclass(frozen=True)
class Wish:
    load: str
    on: bool
    reason: str = ""


def projected_wh(s: Snapshot, mode: str) -> float:
    """The period's projected final balance, Wh (see module docstring for the three modes)."""
    if mode == "none":
        return s.balance_wh
    if mode == "average":
        if s.elapsed_s < 1.0:
            return s.balance_wh
        return s.balance_wh / s.elapsed_s * s.period_s
    if mode == "instant":
        return s.balance_wh + s.net_w * s.remaining_s / 3600.0
    raise ValueError(f"unknown projection {mode!r}")


def _keep(s: Snapshot) -> dict[str, Wish]:
    return {ld.name: Wish(ld.name, ld.on) for ld in s.loads}


def time_to_consume(s: Snapshot, p: PolicySettings) -> list[Wish]:
    wishes = _keep(s)
    proj = projected_wh(s, p.projection)
    rem = s.remaining_s
    nxt = next((ld for ld in s.loads if not ld.on), None)
    last_on = next((ld for ld in reversed(s.loads) if ld.on), None)
    if nxt is not None:
        run_s = proj / nxt.power_w * 3600.0
        if proj >= p.on_min_wh and run_s >= rem * p.time_factor:
            wishes[nxt.name] = Wish(nxt.name, True,
                                    f"projected {proj:+.0f} Wh covers {nxt.power_w:.0f} W for "
                                    f"{rem:.0f} s left (time_to_consume, {p.projection})")
            return list(wishes.values())
    if last_on is not None:
        if_off = s.balance_wh + (s.net_w + last_on.power_w) * rem / 3600.0
        if if_off <= p.end_at_wh:
            wishes[last_on.name] = Wish(last_on.name, False,
                                        f"without it the period would end at {if_off:+.0f} Wh <= "
                                        f"end_at {p.end_at_wh:+.0f} Wh (time_to_consume)")
    return list(wishes.values())


def hysteresis(s: Snapshot, p: PolicySettings) -> list[Wish]:
    wishes = _keep(s)
    for ld in s.loads:
        if ld.on_above_wh is None or ld.off_below_wh is None:
            continue
        if not ld.on and s.balance_wh >= ld.on_above_wh:
            wishes[ld.name] = Wish(ld.name, True, f"balance {s.balance_wh:+.0f} Wh >= on_above "
                                                  f"{ld.on_above_wh:+.0f} Wh (hysteresis)")
        elif ld.on and s.balance_wh <= ld.off_below_wh:
            wishes[ld.name] = Wish(ld.name, False, f"balance {s.balance_wh:+.0f} Wh <= off_below "
                                                   f"{ld.off_below_wh:+.0f} Wh (hysteresis)")
    return list(wishes.values())


def min_on_time(s: Snapshot, p: PolicySettings) -> list[Wish]:
    wishes = _keep(s)
    budget_wh = s.balance_wh
    for ld in s.loads:
        need_wh = ld.power_w * p.min_on_s / 3600.0
        if ld.on:
            ran_s = (s.now - ld.since).total_seconds() if ld.since else p.min_on_s
            if ran_s >= p.min_on_s and budget_wh < need_wh:
                wishes[ld.name] = Wish(ld.name, False,
                                       f"ran {ran_s:.0f} s >= min_on {p.min_on_s:.0f} s and balance "
                                       f"{budget_wh:+.0f} Wh < {need_wh:.0f} Wh for another run (min_on_time)")
            continue
        if budget_wh >= need_wh:
            wishes[ld.name] = Wish(ld.name, True,
                                   f"balance {budget_wh:+.0f} Wh runs {ld.power_w:.0f} W for "
                                   f"{budget_wh / ld.power_w * 3600:.0f} s >= min_on {p.min_on_s:.0f} s (min_on_time)")
            budget_wh -= need_wh
    return list(wishes.values())


POLICIES: dict[str, Callable[[Snapshot, PolicySettings], list[Wish]]] = {
    "time_to_consume": time_to_consume,
    "hysteresis": hysteresis,
    "min_on_time": min_on_time,
}


def decide(s: Snapshot, p: PolicySettings) -> list[Wish]:
    """Run the configured policy; one Wish per load, in the loads' order."""
    return POLICIES[p.name](s, p)
