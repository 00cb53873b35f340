"""Steering by the compensation cap in ``gestor simulate`` (issue 35, ``bill.steer_by_cap``): the
month so far's energy term and compensation, from the closed settlement periods at the bill's
prices (:func:`gestor.sim.billing.prices_at`), and at each new period every heater's and
charger's reserve scaled by :func:`gestor.core.setpoint.reserve_scale` on what a kWh of surplus
is worth now (:func:`gestor.core.setpoint.surplus_value_eur_per_kwh`). Batteries keep their law.
The month starts at the recording's start when the recording starts inside it."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

from gestor.core.balance import PeriodSummary, settled_wh
from gestor.core.setpoint import reserve_scale, surplus_value_eur_per_kwh
from gestor.settings import Settings
from gestor.sim.billing import p3_eur_per_kwh, prices_at
from gestor.sim.devices import SimDevice
from gestor.sim.inputs import Prices


class CapSteer:
    """The month so far against the cap, and the devices' laws it gives (module docstring).
    ``log``: (period start, epoch s; month energy EUR; month compensation EUR; scale) per period."""

    def __init__(self, s: Settings, prices: Prices, devs: Sequence[SimDevice]) -> None:
        self.s, self.prices = s, prices
        self.base = {d.name: d.law for d in devs}
        self.month: tuple[int, int] | None = None
        self.energy_eur = self.compensation_eur = 0.0
        self.period_start_s: float | None = None
        self.log: list[tuple[float, float, float, float]] = []

    def _month(self, p_start) -> None:
        t = p_start.astimezone(self.s.tz)
        if (t.year, t.month) != self.month:
            self.month, self.energy_eur, self.compensation_eur = (t.year, t.month), 0.0, 0.0

    def closed(self, periods: Iterable[PeriodSummary]) -> None:
        """Book closed periods into the month so far."""
        for p in periods:
            self._month(p.start)
            _, imp, sur = self.prices.at(p.start, p.end)
            imp, sur = prices_at(self.s, p.start, imp, sur)
            exp_wh, imp_wh = settled_wh(p.balance_wh)
            self.energy_eur += imp_wh / 1000.0 * imp
            self.compensation_eur += exp_wh / 1000.0 * sur

    def apply(self, devs: Sequence[SimDevice], period: PeriodSummary) -> None:
        """At the first cycle of ``period`` (the running one), set each heater's and charger's law."""
        k = period.start.timestamp()
        if k == self.period_start_s:
            return
        self.period_start_s = k
        self._month(period.start)
        _, imp, sur = self.prices.at(period.start, period.end)
        imp, sur = prices_at(self.s, period.start, imp, sur)
        now = surplus_value_eur_per_kwh(sur, self.energy_eur, self.compensation_eur, self.s.bill.virtual_battery)
        scale = reserve_scale(imp, p3_eur_per_kwh(self.s), sur, now)
        self.log.append((k, self.energy_eur, self.compensation_eur, scale))
        for d in devs:
            if d.battery is None:
                base = self.base[d.name]
                d.law = replace(base, reserve_wh_per_h=base.reserve_wh_per_h * scale)
