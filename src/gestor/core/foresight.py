"""The perfect-foresight benchmark: what a controller that knew every period's surplus in advance
would have run, so that each policy can be read against the best possible.

Its goal is the field's: the largest captured surplus with **zero extra import** and, among the
schedules that reach it, the **fewest switches**.

Model (exact for it). Period ``k`` (duration ``T_k`` s) has the surplus without gestor ``S_k`` Wh
(its net balance with no managed load). Load ``j`` (``P_j`` W) runs ``x_jk`` s in it; the loads
take ``E_k = Σ_j P_j x_jk / 3600`` Wh. Zero extra import means ``E_k <= max(S_k, 0)``, so the
largest capture takes ``E_k = min(max(S_k, 0), Σ_{j allowed} P_j T_k / 3600)`` in every period:
the bound of the simulator's reports, less what the windows forbid. What remains is the switches.
At each period boundary a load is on or off; inside a period it is off (``x = 0``), on throughout
(``x = T``) or partly on, its run placed against a boundary where it is on, so that:

=============  ========  =========  ========
boundaries     off       partly on  on
=============  ========  =========  ========
off → off      0         2          2
on → on        2         2          0
off → on       1         1          1
on → off       1         1          1
=============  ========  =========  ========

A run carried across a boundary costs nothing there. A dynamic programme over the periods, with
the loads' states at each boundary as its state (``2^n``; all off at the start), picks for every
period the classes (off / partly / on) whose energy range ``[Σ_on P T, Σ_on P T + Σ_partly P T]``
holds ``E_k`` at the least switches: exact, ``O(K 4^n 3^n)`` for ``K`` periods, a year of two
loads in a fraction of a second. Partly-on loads share the rest in priority order.

Guards: a load is only planned in periods that lie wholly inside its ``windows`` (a period a
window cuts is left to the loads it allows). ``min_on_s``/``min_off_s`` and
``max_switches_per_period`` are not constraints of the programme; the schedule is then played by
the simulator through the ordinary guards, which hold it to them.

The schedule is played on the daemons' own timing by :func:`gestor.sim.simulate.foresight` (a switch
happens at a managing cycle: runs are shrunk to the cycles inside them, the simulator integrates
the readings as for any policy), so the benchmark's row in every report is measured exactly like
a policy's. The grid costs it a little capture (runs shrunk by up to one cycle at each end) and
may add a few Wh of import where a run ends between two readings.
"""
from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Sequence

OFF, PARTLY, ON = 0, 1, 2
# switches inside a period by (state at its start, state at its end, class): the table above
_COST = {(0, 0, OFF): 0, (0, 0, PARTLY): 2, (0, 0, ON): 2,
         (1, 1, OFF): 2, (1, 1, PARTLY): 2, (1, 1, ON): 0}


def _cost(a: int, b: int, c: int) -> int:
    return 1 if a != b else _COST[(a, b, c)]


@dataclass(frozen=True)
class Period:
    """A settlement period: epoch seconds [start_s, end_s), the surplus without gestor (Wh), and
    which loads may run in it (in the loads' order)."""

    start_s: float
    end_s: float
    surplus_wh: float
    allowed: tuple[bool, ...]


@dataclass
class Plan:
    """The benchmark's schedule. ``runs[j]``: load ``j``'s on-intervals (epoch s, [on, off));
    ``switches``: the programme's count; ``energy_wh``: what it plans the loads to take."""

    runs: list[list[tuple[float, float]]]
    switches: int
    energy_wh: float
    per_period_wh: list[float] = field(default_factory=list)


def plan(periods: Sequence[Period], powers_w: Sequence[float]) -> Plan:
    """The fewest-switch schedule that takes ``E_k`` (module docstring) in every period.

    Args:
        periods: consecutive settlement periods, oldest first.
        powers_w: the loads' rated powers, W, in priority order (> 0).
    Returns:
        the :class:`Plan`. Raises ValueError for a load power <= 0.
    """
    n = len(powers_w)
    if any(p <= 0 for p in powers_w):
        raise ValueError("load powers must be > 0 W")
    states = list(itertools.product((0, 1), repeat=n))
    classes = list(itertools.product((OFF, PARTLY, ON), repeat=n))
    INF = math.inf
    cost = {(a, b, cl): sum(_cost(x, y, k) for x, y, k in zip(a, b, cl))
            for a in states for b in states for cl in classes}
    best: dict[tuple[int, ...], float] = {st: (0.0 if not any(st) else INF) for st in states}  # all off at the start
    back: list[dict[tuple, tuple]] = []   # per period: end state → (start state, classes)
    targets = []
    for p in periods:
        T = p.end_s - p.start_s
        cap_ws = sum(P * T for P, ok in zip(powers_w, p.allowed) if ok)
        e_ws = min(max(p.surplus_wh, 0.0) * 3600.0, cap_ws)
        targets.append(e_ws)
        feasible = []
        for cl in classes:
            if any(c != OFF and not ok for c, ok in zip(cl, p.allowed)):
                continue
            lo = sum(P * T for P, c in zip(powers_w, cl) if c == ON)
            hi = lo + sum(P * T for P, c in zip(powers_w, cl) if c == PARTLY)
            if lo <= e_ws * (1 + 1e-12) + 1e-9 and e_ws <= hi * (1 + 1e-12) + 1e-9:
                feasible.append(cl)
        nxt: dict[tuple, float] = {}
        bk: dict[tuple, tuple] = {}
        for b in states:
            for a in states:
                if best[a] == INF:
                    continue
                for cl in feasible:
                    switches = best[a] + cost[(a, b, cl)]
                    if switches < nxt.get(b, INF):
                        nxt[b], bk[b] = switches, (a, cl)
        best = {st: nxt.get(st, INF) for st in states}
        back.append(bk)
    end = min(states, key=lambda st: (best[st], sum(st)))
    total = best[end]
    # walk back: the state at every boundary and each period's classes
    chosen: list[tuple[tuple, tuple, tuple]] = []
    b = end
    for bk in reversed(back):
        a, cl = bk[b]
        chosen.append((a, b, cl))
        b = a
    chosen.reverse()
    runs: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    on_since: list[float | None] = [None] * n
    per_period = []
    for p, (a, b, cl), e_ws in zip(periods, chosen, targets):
        T = p.end_s - p.start_s
        rest = e_ws - sum(P * T for P, c in zip(powers_w, cl) if c == ON)
        x = []
        for P, c in zip(powers_w, cl):
            if c == ON:
                x.append(T)
            elif c == PARTLY:
                xj = min(T, max(rest, 0.0) / P)
                rest -= P * xj
                x.append(xj)
            else:
                x.append(0.0)
        per_period.append(sum(P * xj for P, xj in zip(powers_w, x)) / 3600.0)
        for j in range(n):
            for on, off in _segments(a[j], b[j], x[j], p.start_s, p.end_s):
                if on_since[j] is None and on is not None:
                    on_since[j] = on
                since = on_since[j]
                if off is not None and since is not None:
                    if off > since:
                        runs[j].append((since, off))
                    on_since[j] = None
    for j in range(n):
        since = on_since[j]
        if since is not None:
            runs[j].append((since, math.inf))
    return Plan(runs, int(total), sum(per_period), per_period)


def _segments(a: int, b: int, x: float, t0: float, t1: float) -> list[tuple[float | None, float | None]]:
    """A load's switches inside [t0, t1) as (on at, off at) events, None where the run goes on
    past a boundary: state ``a`` at t0, ``b`` at t1, ``x`` s on."""
    T = t1 - t0
    if x <= 0:
        return [(None, t0)] * a + [(t1, None)] * b
    if x >= T:
        return [(t0, None)] * (1 - a) + [(None, t1)] * (1 - b)
    if (a, b) == (0, 0):
        return [(t1 - x, t1)]
    if (a, b) == (0, 1):
        return [(t1 - x, None)]
    if (a, b) == (1, 0):
        return [(None, t0 + x)]
    return [(None, t0 + x), (t1, None)]  # on → on, off in between


class Scheduled:
    """A planned schedule as a policy for the control core: at ``now_s`` each load is wished on
    inside one of its runs, shrunk to the managing cycles inside it (``cycle_s`` from ``t0_s``:
    on at the first cycle at or after the run's start, off at the last cycle at or before its
    end)."""

    def __init__(self, plan_: Plan, names: Sequence[str], t0_s: float, cycle_s: float) -> None:
        self.names = list(names)
        self.on: list[list[float]] = []   # per load: sorted switch instants, on at even indices
        for runs in plan_.runs:
            flips: list[float] = []
            for a, b in runs:
                on = t0_s + math.ceil((a - t0_s) / cycle_s - 1e-9) * cycle_s
                # off at the last cycle at or before the run's end: no energy past it
                off = t0_s + math.floor((b - t0_s) / cycle_s + 1e-9) * cycle_s if math.isfinite(b) else math.inf
                if off > on:
                    flips += [on, off] if math.isfinite(off) else [on]
            self.on.append(flips)
        # (views, t): the last call asked for nothing with these loads' views, and no run starts or
        # ends before t. Invariant: a call before t with the very same view objects (the core
        # builds new ones only when a load changes; held loads left out make a new tuple of the
        # same objects) asks for nothing either, so it answers at once.
        self._quiet_until: tuple[tuple, float] = ((), -math.inf)

    def __call__(self, s, p) -> list:
        now = s.now_s
        seen, until = self._quiet_until
        if now < until and len(s.loads) == len(seen) and all(a is b for a, b in zip(s.loads, seen)):
            return []
        from gestor.core.policies import Wish
        out = []
        until = math.inf
        by_name = {v.name: v for v in s.loads}
        for j, name in enumerate(self.names):
            v = by_name.get(name)
            if v is None:
                continue
            flips = self.on[j]
            i = bisect_right(flips, now)  # wanted on inside [flips[i - 1], flips[i]) when i is odd
            if (i % 2 == 1) != v.on:
                out.append(Wish(name, not v.on, "perfect-foresight schedule"))
            elif i < len(flips):
                until = min(until, flips[i])
        self._quiet_until = (s.loads, until) if not out else ((), -math.inf)
        return out
