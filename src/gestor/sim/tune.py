"""Choosing a policy's parameters on data it is then not scored on.

Every candidate (a grid per policy, :data:`GRIDS`) is simulated once on every recording; the
results are kept per local day. A fold holds some days out (a whole file for the
leave-one-file-out of ``benchmarks/policies.py --cv``; every k-th day for ``gestor tune``), the
candidate with the best :func:`score` on the other days is chosen, and it is scored on the days
held out. The figures a household should believe are the held-out ones.

The score is money (issue 33): the fewest EUR a day (:func:`gestor.sim.books.money_eur`: import ×
its price less export × the surplus price, less the energy the loads and heaters took worth the
P3 price), within the bound on switching of issue 12: every switch a day over 20 costs 1 EUR a
day, more than any candidate saves, so a candidate over the bound loses to one within it. A Wh
imported costs about what a captured Wh saves; the old goal of 20 Wh a day of extra import was a
number of ours. The perfect-foresight benchmark a choice is reported against
(:func:`gestor.sim.money.versus_foresight`) is the same for every candidate on the same days,
so scoring by EUR is scoring by EUR over perfect foresight.

``gestor tune --bill`` (issue 35) scores by the bill's euros of each month instead
(:mod:`gestor.sim.tune_bill`: the compensation capped at the month's energy term, with taxes):
:func:`evaluate` with ``bill=True`` keeps each day's :class:`gestor.sim.tune_bill.DayEuros` beside
its totals, :func:`cross_validate` with ``euros`` fills :attr:`Sums.bill_eur` and
:func:`score` with ``by_bill`` reads it; the switching bound is the same.
"""
from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

from drivers.meters.replay import ReplayData
from gestor.settings import Settings
from gestor.bill.invoice import Contract
from gestor.sim.simulate import Prices, Totals, simulate
from gestor.sim.tune_bill import DayEuros, bill_eur, day_euros

GOAL_SWITCHES_PER_DAY = 20.0
GOAL_IMPORT_WH_PER_DAY = 20.0   # issue 12's goal, still shown beside the money
SWITCH_OVER_BOUND_EUR = 1.0     # EUR a day per switch a day over the bound (module docstring)

# Candidates per policy: every combination of these values (the others stay as configured).
GRIDS: dict[str, dict[str, list[Any]]] = {
    "time_to_consume": {"end_at_wh": [0, 25, 50, 100], "on_min_wh": [75, 150, 300], "time_factor": [1.0, 1.25]},
    "steady_surplus": {"window_s": [150, 300, 600], "margin_wh": [5, 30, 60, 100], "doubt": [0.0, 1.0, 2.0],
                       "carry_wh": [0, 30]},
}
# A setpoint device's (``setpoints[i]``) candidates: the Wh kept banked per hour left in the period
DEVICE_GRID: dict[str, list[Any]] = {"reserve_wh_per_h": [0, 50, 100, 150, 200, 300]}


@dataclass
class Sums:
    """Totals added over days: Wh, switches, days (periods / periods a day), EUR
    (``money_eur``: :attr:`Totals.money_eur`; ``over_eur``: over perfect foresight, when the
    caller measured it, :func:`gestor.sim.money.versus_foresight`; ``bill_eur``: the bill's, when
    the caller priced the days, :func:`gestor.sim.tune_bill.bill_eur`)."""

    captured_wh: float = 0.0
    bound_wh: float = 0.0
    extra_import_wh: float = 0.0
    switches: int = 0
    days: float = 0.0
    money_eur: float = 0.0
    over_eur: float = 0.0
    bill_eur: float = 0.0

    def add(self, t: Totals, period_s: int) -> "Sums":
        for name in ("captured_wh", "bound_wh", "extra_import_wh", "switches", "money_eur"):
            setattr(self, name, getattr(self, name) + getattr(t, name))
        self.days += t.periods * period_s / 86400
        return self

    def merge(self, o: "Sums") -> "Sums":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(o, f.name))
        return self

    @property
    def eur_per_day(self) -> float:
        return self.money_eur / self.days if self.days else 0.0

    @property
    def bill_eur_per_day(self) -> float:
        return self.bill_eur / self.days if self.days else 0.0

    @property
    def captured_pct(self) -> float:
        return 100.0 * self.captured_wh / self.bound_wh if self.bound_wh > 0 else 100.0

    @property
    def switches_per_day(self) -> float:
        return self.switches / self.days if self.days else 0.0

    @property
    def import_wh_per_day(self) -> float:
        return self.extra_import_wh / self.days if self.days else 0.0


def score(s: Sums, by_bill: bool = False) -> float:
    """Higher is better: minus the EUR a day (the uncapped money, or ``by_bill`` the bill's), less
    1 EUR a day per switch a day over :data:`GOAL_SWITCHES_PER_DAY` (module docstring)."""
    eur = s.bill_eur_per_day if by_bill else s.eur_per_day
    return -eur - SWITCH_OVER_BOUND_EUR * max(0.0, s.switches_per_day - GOAL_SWITCHES_PER_DAY)


def candidates(policy: str, grid: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as ``policy.KEY`` overrides."""
    g = grid if grid is not None else GRIDS[policy]
    keys = list(g)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(g[k] for k in keys))]


_WORK: tuple | None = None  # (datas, make_settings, battery_capacity_wh, bill): inherited by the forked workers
Results = list[list[dict[str, Totals]]]
Euros = list[list[dict[str, DayEuros]]]


def _one(task: tuple[int, int, dict]) -> tuple[int, int, dict[str, Totals], dict[str, DayEuros]]:
    ci, fi, params = task
    datas, make, capacity, by_bill = _WORK  # type: ignore[misc]
    s = make(params)
    r = simulate(datas[fi], s, Prices(s), battery_capacity_wh=capacity)
    return ci, fi, r.days, day_euros(r.periods, s) if by_bill else {}


def evaluate(datas: Sequence[ReplayData], make: Callable[[dict], Settings], cands: Sequence[dict],
             jobs: int = 1, progress: bool = True,
             battery_capacity_wh: float | None = None) -> Results:
    """``out[c][f]``: candidate ``c`` simulated on recording ``f``, its totals per local day.
    ``make(params)`` builds the settings of a candidate (with setpoint devices or without:
    ``battery_capacity_wh`` for a battery with a real driver, see :func:`simulate`). Runs in
    ``jobs`` forked processes."""
    return evaluate_bill(datas, make, cands, jobs, progress, battery_capacity_wh, False)[0]


def evaluate_bill(datas: Sequence[ReplayData], make: Callable[[dict], Settings], cands: Sequence[dict],
                  jobs: int = 1, progress: bool = True, battery_capacity_wh: float | None = None,
                  by_bill: bool = True) -> tuple[Results, Euros]:
    """:func:`evaluate`, and (``by_bill``) each run's days as the bill sees them,
    ``euros[c][f]`` (:func:`gestor.sim.tune_bill.day_euros`; empty without ``by_bill``)."""
    global _WORK
    tasks = [(ci, fi, p) for ci, p in enumerate(cands) for fi in range(len(datas))]
    out: Results = [[{} for _ in datas] for _ in cands]
    euros: Euros = [[{} for _ in datas] for _ in cands]
    _WORK = (datas, make, battery_capacity_wh, by_bill)
    done = 0

    def tick() -> None:
        if progress:
            bar = "#" * int(30 * done / len(tasks))
            print(f"\r[{bar:<30}] {done}/{len(tasks)} runs ({jobs} jobs)   ", end="", file=sys.stderr, flush=True)
    try:
        tick()
        if jobs <= 1:
            for t in tasks:
                ci, fi, days, eu = _one(t)
                out[ci][fi], euros[ci][fi] = days, eu
                done += 1
                tick()
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                for fut in as_completed([pool.submit(_one, t) for t in tasks]):
                    ci, fi, days, eu = fut.result()
                    out[ci][fi], euros[ci][fi] = days, eu
                    done += 1
                    tick()
    finally:
        _WORK = None
        if progress:
            print(file=sys.stderr)
    return out, euros


def sums(days: dict[str, Totals] | Sequence[dict[str, Totals]], period_s: int,
         keep: Callable[[str], bool] = lambda d: True) -> Sums:
    """Add up the days ``keep`` accepts, of one recording or several."""
    many = [days] if isinstance(days, dict) else list(days)
    s = Sums()
    for dd in many:
        for day, t in dd.items():
            if keep(day):
                s.add(t, period_s)
    return s


@dataclass
class Fold:
    held_out: str
    chosen: dict[str, Any]
    train: Sums
    test: Sums


def cross_validate(results: Results, cands: Sequence[dict], groups: list[str],
                   group_of: Callable[[int, str], str], period_s: int,
                   euros: Euros | None = None, contract: Contract | None = None) -> list[Fold]:
    """One fold per group: choose on every other group's days, score on the group's.
    ``group_of(file index, day)`` names the group a day belongs to. With ``euros`` (from
    :func:`evaluate_bill`) and the bill's ``contract``: chosen by the bill's euros (module
    docstring), :attr:`Sums.bill_eur` filled in the train and test sums."""
    folds = []
    by_bill = euros is not None
    for g in groups:
        def out_g(fi: int, d: str) -> bool:
            return group_of(fi, d) != g

        def in_g(fi: int, d: str) -> bool:
            return group_of(fi, d) == g
        train_bill = bill_eur(euros, contract or Contract(), out_g) if euros is not None else None

        def train(c: int) -> Sums:
            s = _sum_where(results[c], period_s, out_g)
            if train_bill is not None:
                s.bill_eur = train_bill[c]
            return s
        best = max(range(len(cands)), key=lambda c: (score(train(c), by_bill), -c))
        test = _sum_where(results[best], period_s, in_g)
        if euros is not None:
            test.bill_eur = bill_eur(euros, contract or Contract(), in_g)[best]
        folds.append(Fold(g, cands[best], train(best), test))
    return folds


def _sum_where(per_file: list[dict[str, Totals]], period_s: int, keep: Callable[[int, str], bool]) -> Sums:
    s = Sums()
    for fi, days in enumerate(per_file):
        for d, t in days.items():
            if keep(fi, d):
                s.add(t, period_s)
    return s


def frontier(points: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """The (switches/day, captured %) points no other point beats on both (fewer or equal
    switches and more or equal capture), by switches."""
    out: list[tuple[float, float, Any]] = []
    best = -math.inf
    for sw, cap, tag in sorted(points, key=lambda p: (p[0], -p[1])):
        if cap > best:
            out.append((sw, cap, tag))
            best = cap
    return out
