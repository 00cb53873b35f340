"""The perfect-foresight benchmark of a battery and of a modulating heater: the schedule that
minimises the money paid over a run, knowing every settlement period's surplus in advance, as a
linear programme (issue 26 section 1). Solved with SciPy's ``scipy.optimize.linprog``, method
``"highs"`` (the HiGHS dual simplex / interior point solvers), on sparse constraint matrices.

SciPy is heavy (0.3 s and 40 MB to import): it is imported inside the functions, so only the
command or benchmark that calls them pays for it, never the daemons. It is the optional extra
``lp`` (``pip install gestor[lp]``).

Units: Wh per period, EUR per kWh, EUR. Signs: ``surplus_wh`` is a period's balance without the
device, export-positive (DESIGN.md section 2: > 0 surplus, < 0 deficit).

Battery formulation, per period ``p`` (variables all >= 0):

    minimise   sum_p  import_price_p * import_p / 1000  -  surplus_price_p * export_p / 1000
    subject to surplus_p - charge_p + discharge_p = export_p - import_p         (the period's net)
               soc_p = soc_{p-1} + eta * charge_p - discharge_p / eta          (soc_{-1}: the start)
               charge_p <= max_charge_wh,  discharge_p <= max_discharge_wh
               min_wh <= soc_p <= max_wh    (soc_last >= soc_end_min_wh when given)

with ``eta = sqrt(efficiency)`` (the round-trip efficiency split evenly, as
:class:`gestor.core.devices.Battery` does) and ``soc_p`` the stored Wh at the period's end. The
monthly cap on the compensation (RD 244/2019 art. 14.3) is not modelled: the cost is the plain
import cost less the compensation. A period's import and export are both >= 0; as long as no
surplus price exceeds its import price, an optimum never has both > 0 in one period.

Heater formulation (0..``max_wh`` per period, its heat worth ``value_eur_per_kwh``):

    minimise   sum_p  import_price_p * import_p / 1000 - surplus_price_p * export_p / 1000
                      - value_eur_per_kwh * heat_p / 1000
    subject to surplus_p - heat_p = export_p - import_p,   0 <= heat_p <= max_wh
               sum_{p in day d} heat_p <= cap_wh_per_day     (optional)

The value stands for what the heat would cost otherwise (e.g. the P3 price of a night timer):
with it above the surplus price and below the import price, the heater takes the surplus and
never imports for heat. Its reported cost is the money paid alone (without the value term).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence


@dataclass
class LpSchedule:
    """The optimal schedule, per period (lists as long as the input), Wh; ``cost_eur`` the money
    paid (import cost less compensation, no monthly cap). A battery's ``charge_wh``,
    ``discharge_wh``, ``soc_wh`` (stored at the period's end); a heater's ``heat_wh`` (and empty
    battery lists)."""

    import_wh: list[float]
    export_wh: list[float]
    cost_eur: float
    charge_wh: list[float]
    discharge_wh: list[float]
    soc_wh: list[float]
    heat_wh: list[float]


def _per_period(x: float | Sequence[float], n: int, name: str) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)] * n
    out = [float(v) for v in x]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values for {n} periods")
    return out


def _check_prices(imp: list[float], sur: list[float]) -> None:
    for p, (a, b) in enumerate(zip(imp, sur)):
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"period {p}: prices must be finite (import {a}, surplus {b})")
        if b > a:
            raise ValueError(f"period {p}: surplus price {b} above the import price {a}: the LP would be unbounded "
                             f"(import and export at once)")


def _cost(imp: list[float], sur: list[float], import_wh: list[float], export_wh: list[float]) -> float:
    return sum(a * i - b * e for a, b, i, e in zip(imp, sur, import_wh, export_wh)) / 1000.0


def battery_lp(surplus_wh: Sequence[float], import_eur_per_kwh: float | Sequence[float],
               surplus_eur_per_kwh: float | Sequence[float], capacity_wh: float,
               max_charge_wh: float | Sequence[float], max_discharge_wh: float | Sequence[float],
               efficiency: float = 0.9, soc_start_pct: float = 50.0, min_soc_pct: float = 10.0,
               max_soc_pct: float = 100.0, soc_end_min_pct: float | None = None) -> LpSchedule:
    """The battery's perfect-foresight schedule (module docstring's formulation).

    Args:
        surplus_wh: per settlement period, the house's balance without the battery, Wh (export +).
        import_eur_per_kwh, surplus_eur_per_kwh: per period (or one for all), EUR/kWh; a surplus
            price never above the import price.
        capacity_wh: Wh; min_soc_pct..max_soc_pct, soc_start_pct, soc_end_min_pct (None: free): %.
        max_charge_wh, max_discharge_wh: per period (or one for all), house-side Wh (e.g.
            ``max_charge_w * period_s / 3600``).
        efficiency: round trip, in (0, 1].
    Returns:
        :class:`LpSchedule`. An empty input gives empty lists and 0 EUR.
    Raises:
        ValueError: inconsistent lengths or limits, a surplus price above the import price, or
            HiGHS finding no optimum (its message).
    """
    n = len(surplus_wh)
    if n == 0:
        return LpSchedule([], [], 0.0, [], [], [], [])
    if not 0.0 < efficiency <= 1.0:
        raise ValueError(f"efficiency {efficiency} must be in (0, 1]")
    if not (capacity_wh > 0 and 0.0 <= min_soc_pct <= soc_start_pct <= max_soc_pct <= 100.0):
        raise ValueError(f"need capacity_wh > 0 and 0 <= min_soc_pct <= soc_start_pct <= max_soc_pct <= 100 "
                         f"(got {capacity_wh}, {min_soc_pct}, {soc_start_pct}, {max_soc_pct})")
    imp = _per_period(import_eur_per_kwh, n, "import_eur_per_kwh")
    sur = _per_period(surplus_eur_per_kwh, n, "surplus_eur_per_kwh")
    _check_prices(imp, sur)
    cmax = _per_period(max_charge_wh, n, "max_charge_wh")
    dmax = _per_period(max_discharge_wh, n, "max_discharge_wh")
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    eta = math.sqrt(efficiency)
    lo_wh, hi_wh = capacity_wh * min_soc_pct / 100.0, capacity_wh * max_soc_pct / 100.0
    s0 = capacity_wh * soc_start_pct / 100.0
    C, D, S, I, E = (k * n for k in range(5))  # noqa: E741 -- the variables' blocks: charge, discharge, soc, import, export
    rows, cols, vals = [], [], []
    b_eq = np.empty(2 * n)
    for p in range(n):
        # net: -charge + discharge - export + import = -surplus
        rows += [p] * 4
        cols += [C + p, D + p, E + p, I + p]
        vals += [-1.0, 1.0, -1.0, 1.0]
        b_eq[p] = -float(surplus_wh[p])
        # soc: soc_p - soc_{p-1} - eta charge_p + discharge_p / eta = 0 (soc_{-1} = s0 on the right)
        r = n + p
        rows += [r] * 3
        cols += [S + p, C + p, D + p]
        vals += [1.0, -eta, 1.0 / eta]
        if p:
            rows.append(r)
            cols.append(S + p - 1)
            vals.append(-1.0)
            b_eq[r] = 0.0
        else:
            b_eq[r] = s0
    a_eq = coo_matrix((vals, (rows, cols)), shape=(2 * n, 5 * n)).tocsr()
    cost = np.zeros(5 * n)
    cost[I:I + n] = np.asarray(imp) / 1000.0
    cost[E:E + n] = -np.asarray(sur) / 1000.0
    bounds = ([(0.0, c) for c in cmax] + [(0.0, d) for d in dmax] + [(lo_wh, hi_wh)] * n
              + [(0.0, None)] * (2 * n))
    if soc_end_min_pct is not None:
        end_wh = capacity_wh * soc_end_min_pct / 100.0
        if not lo_wh <= end_wh <= hi_wh:
            raise ValueError(f"soc_end_min_pct {soc_end_min_pct} must be within {min_soc_pct}..{max_soc_pct}")
        bounds[S + n - 1] = (end_wh, hi_wh)
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise ValueError(f"battery LP: {res.message}")
    x = res.x.tolist()
    import_wh, export_wh = list(x[I:I + n]), list(x[E:E + n])
    return LpSchedule(import_wh, export_wh, _cost(imp, sur, import_wh, export_wh), list(x[C:C + n]),
                      list(x[D:D + n]), list(x[S:S + n]), [])


def heater_lp(surplus_wh: Sequence[float], import_eur_per_kwh: float | Sequence[float],
              surplus_eur_per_kwh: float | Sequence[float], max_wh: float | Sequence[float],
              value_eur_per_kwh: float, days: Sequence[Hashable] | None = None,
              cap_wh_per_day: float | Mapping[Hashable, float] | None = None) -> LpSchedule:
    """A modulating heater's perfect-foresight schedule (module docstring's formulation).

    Args:
        surplus_wh: per period, the house's balance without the heater, Wh (export +).
        import_eur_per_kwh, surplus_eur_per_kwh: per period (or one for all), EUR/kWh.
        max_wh: the most it takes in a period, Wh (its power × the period), per period or one.
        value_eur_per_kwh: what its heat is worth, EUR/kWh (>= 0).
        days, cap_wh_per_day: with both, the heat of the periods of one day (equal ``days``
            labels, e.g. local dates) is at most ``cap_wh_per_day`` Wh, or, a mapping, at most
            its value for that label (an EV's session: the Wh its car wants).
    Returns:
        :class:`LpSchedule` with ``heat_wh``; ``cost_eur`` the money paid (the heat's value left out).
    Raises:
        ValueError: inconsistent lengths, a surplus price above the import price, or no optimum.
    """
    n = len(surplus_wh)
    if n == 0:
        return LpSchedule([], [], 0.0, [], [], [], [])
    imp = _per_period(import_eur_per_kwh, n, "import_eur_per_kwh")
    sur = _per_period(surplus_eur_per_kwh, n, "surplus_eur_per_kwh")
    _check_prices(imp, sur)
    hmax = _per_period(max_wh, n, "max_wh")
    if not value_eur_per_kwh >= 0:
        raise ValueError(f"value_eur_per_kwh {value_eur_per_kwh} must be >= 0")
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    H, I, E = 0, n, 2 * n  # noqa: E741
    rows, cols, vals = [], [], []
    for p in range(n):  # -heat - export + import = -surplus
        rows += [p] * 3
        cols += [H + p, E + p, I + p]
        vals += [-1.0, -1.0, 1.0]
    a_eq = coo_matrix((vals, (rows, cols)), shape=(n, 3 * n)).tocsr()
    b_eq = -np.asarray([float(v) for v in surplus_wh])
    a_ub = b_ub = None
    if cap_wh_per_day is not None and days is not None:
        if len(days) != n:
            raise ValueError(f"days has {len(days)} labels for {n} periods")
        index: dict[Hashable, int] = {}
        r_ub = [index.setdefault(d, len(index)) for d in days]
        a_ub = coo_matrix(([1.0] * n, (r_ub, list(range(n)))), shape=(len(index), 3 * n)).tocsr()
        if isinstance(cap_wh_per_day, Mapping):
            b_ub = np.asarray([float(cap_wh_per_day[d]) for d in index])
        else:
            b_ub = np.full(len(index), float(cap_wh_per_day))
    cost = np.zeros(3 * n)
    cost[H:H + n] = -value_eur_per_kwh / 1000.0
    cost[I:I + n] = np.asarray(imp) / 1000.0
    cost[E:E + n] = -np.asarray(sur) / 1000.0
    bounds = [(0.0, h) for h in hmax] + [(0.0, None)] * (2 * n)
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise ValueError(f"heater LP: {res.message}")
    x = res.x.tolist()
    import_wh, export_wh = list(x[I:I + n]), list(x[E:E + n])
    return LpSchedule(import_wh, export_wh, _cost(imp, sur, import_wh, export_wh), [], [], [], list(x[H:H + n]))


def period_cost_eur(balance_wh: Sequence[float], import_eur_per_kwh: Sequence[float],
                    surplus_eur_per_kwh: Sequence[float]) -> float:
    """The LP's cost of per-period balances (Wh, export +): import × import price less export ×
    surplus price, EUR, no monthly cap; to compare a simulated run with :func:`battery_lp`."""
    return sum(a * max(-b, 0.0) - s * max(b, 0.0)
               for b, a, s in zip(balance_wh, import_eur_per_kwh, surplus_eur_per_kwh)) / 1000.0
