"""Euros against perfect foresight (issue 33): what a run of ``gestor simulate`` cost beside the
best any controller knowing the whole recording in advance could have done in the same house.

The measure is :func:`gestor.sim.books.money_eur` (``Totals.money_eur``), the linear programmes'
objective (:mod:`gestor.sim.lp`): import × its price less export × the surplus price per
settlement period (no monthly cap), less the energy the loads, heaters and chargers took, worth
the P3 import price. Lower is better; "over foresight" is the run's less the benchmark's (>= 0
up to the LP's relaxations).

What the benchmark plans (:func:`versus_foresight`), in the settings' order:

1. the on/off loads by the exact dynamic programme (:func:`gestor.sim.simulate.foresight`,
   played through the simulator on the daemons' timing);
2. then each setpoint device by its LP on the periods' balance the loads and the devices before
   it leave: a battery by :func:`gestor.sim.lp.battery_lp` (from its start SoC, ending with at
   least the SoC the run ended with), a heater by :func:`gestor.sim.lp.heater_lp` (its heat worth
   the P3 price), an EV charger as a heater limited to the hours its car is connected and to the
   Wh the car wants per session (its 6 A minimum relaxed).

Loads and devices are not planned jointly (the DP and the LP are separate): the benchmark is an
upper bound of the joint optimum's money for a house with both, exact for a house with one kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Sequence

from drivers.meters.replay import ReplayData
from gestor.core.control import Core
from gestor.core.devices import Battery, EvCharger, Modulating
from gestor.settings import Settings
from gestor.sim import lp
from gestor.sim.books import PeriodResult, SimResult
from gestor.sim.devices import sim_devices
from gestor.sim.inputs import Prices
from gestor.sim.models import BatteryModel, EvModel, EvSession
from gestor.sim.simulate import foresight


@dataclass
class Versus:
    """A run against its perfect-foresight benchmark, EUR (module docstring's measure).

    Attributes:
        money_eur: the run's; foresight_eur: the benchmark's; plan: what the benchmark planned.
    """

    money_eur: float
    foresight_eur: float
    plan: str
    periods: Sequence[PeriodResult] = ()        # the benchmark's periods (their starts and prices)
    balance_wh: Sequence[float] = ()            # the benchmark's net balance per period, Wh (export +)
    valued_wh: Sequence[float] = ()             # per period, the Wh its loads, heaters and chargers took

    @property
    def over_eur(self) -> float:
        """EUR the run cost more than perfect foresight."""
        return self.money_eur - self.foresight_eur


def device_lp(periods: Sequence[PeriodResult], balance_wh: Sequence[float], kind: Battery | Modulating | EvCharger,
              p3_eur_per_kwh: float, soc_start_pct: float = 50.0, soc_end_min_pct: float | None = None,
              sessions: Sequence[EvSession] = ()) -> tuple[float, list[float], float]:
    """One device's perfect-foresight LP on ``periods`` (their prices and lengths) whose balance
    without it is ``balance_wh`` (Wh, export +). Returns (the money paid, EUR, no monthly cap;
    the balance it leaves per period, Wh; the Wh a heater or charger took, 0 for a battery).
    ``sessions``: an EV charger's cars (module docstring). Raises ValueError as the LPs do."""
    imp = [p.import_price for p in periods]
    sur = [p.surplus_price for p in periods]
    hours = [(p.end - p.start).total_seconds() / 3600.0 for p in periods]
    if isinstance(kind, Battery):
        soc_end = None if soc_end_min_pct is None else min(max(soc_end_min_pct, kind.min_soc_pct), kind.max_soc_pct)
        sch = lp.battery_lp(balance_wh, imp, sur, kind.capacity_wh, [kind.max_charge_w * h for h in hours],
                            [kind.max_discharge_w * h for h in hours], kind.efficiency, soc_start_pct,
                            kind.min_soc_pct, kind.max_soc_pct, soc_end_min_pct=soc_end)
        taken_wh = 0.0
    else:
        if isinstance(kind, Modulating):
            sch = lp.heater_lp(balance_wh, imp, sur, [kind.max_w * h for h in hours], p3_eur_per_kwh)
        else:
            max_wh, labels, caps = _ev_limits(periods, kind, sessions)
            sch = lp.heater_lp(balance_wh, imp, sur, max_wh, p3_eur_per_kwh, labels, caps)
        taken_wh = sum(sch.heat_wh)
    return sch.cost_eur, [e - i for e, i in zip(sch.export_wh, sch.import_wh)], taken_wh


def _ev_limits(periods: Sequence[PeriodResult], ev: EvCharger, sessions: Sequence[EvSession],
               ) -> tuple[list[float], list[int], dict[int, float]]:
    """Per period the Wh the charger could give while a car is connected, the session it counts
    against (the one longest connected in it; -1: none) and each session's Wh wanted."""
    max_wh, labels = [], []
    caps: dict[int, float] = {-1: 0.0}
    for p in periods:
        a, b = p.start.timestamp(), p.end.timestamp()
        best, best_s, total_s = -1, 0.0, 0.0
        for j, x in enumerate(sessions):
            s = max(0.0, min(b, x.depart_s) - max(a, x.arrive_s))
            total_s += s
            if s > best_s:
                best, best_s = j, s
        max_wh.append(ev.max_w * total_s / 3600.0 if best >= 0 else 0.0)
        labels.append(best)
        if best >= 0:
            w = sessions[best].wanted_wh
            caps[best] = w if math.isfinite(w) else 1e12
    return max_wh, labels, caps


def versus_foresight(data: ReplayData, s: Settings, prices: Prices, r: SimResult, start: datetime | None = None,
                     end: datetime | None = None, ev_sessions: Mapping[str, Sequence[EvSession]] | None = None,
                     battery_capacity_wh: float | None = None, jobs: int = 1,
                     loads_foresight: SimResult | None = None) -> Versus:
    """``r`` (``gestor simulate`` of ``s`` on ``data`` over [start, end)) against perfect
    foresight in the same house (module docstring: the loads by the DP, then each device by its
    LP on what they leave). ``ev_sessions``, ``battery_capacity_wh``: as :func:`simulate`'s;
    ``loads_foresight``: the loads' DP run when the caller has it (:func:`foresight`'s result).
    Raises ValueError as the simulator and the LPs do, ImportError without SciPy (the ``lp``
    extra) when there is a device to plan."""
    p3 = s.tariff.import_p3_eur_per_kwh
    plan = []
    if s.loads:
        fr = loads_foresight if loads_foresight is not None else foresight(data, s, prices, start, end, jobs=jobs)[0]
        periods: Sequence[PeriodResult] = fr.periods
        balance = [p.balance_wh for p in fr.periods]
        money, valued_wh = fr.totals.money_eur, fr.totals.loads_wh
        heat = [p.loads_wh for p in fr.periods]
        plan.append("the on/off loads by the DP")
    else:
        periods, balance, money, valued_wh = r.periods, [p.balance_without_wh for p in r.periods], 0.0, 0.0
        heat = [0.0 for _ in r.periods]
    if s.setpoints and periods:
        ends = {d.name: d.soc_end_pct for d in r.devices}
        for d in sim_devices(s, Core(s).bounds_s, battery_capacity_wh, ev_sessions):
            m = d.model
            soc0 = m.soc_start_pct if isinstance(m, BatteryModel) else 50.0
            cars = m.sessions if isinstance(m, EvModel) else ()
            before = balance
            paid, balance, taken_wh = device_lp(periods, balance, m.kind, p3, soc0, ends.get(d.name), cars)  # type: ignore[arg-type]
            valued_wh += taken_wh
            if not isinstance(m.kind, Battery):   # a heater's or charger's Wh: what it took off the balance
                heat = [h + b - a for h, b, a in zip(heat, before, balance)]
            money = paid - p3 * valued_wh / 1000.0
            plan.append(f"{'then ' if plan else ''}{d.name} ({type(m.kind).__name__.lower()}) by its LP"
                        f"{' on what the ones before leave' if plan else ''}")
    return Versus(r.totals.money_eur, money, ", ".join(plan) or "nothing to plan", periods, list(balance), heat)
