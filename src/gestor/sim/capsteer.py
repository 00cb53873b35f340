"""Steering by the compensation cap in ``gestor simulate`` (issue 35, ``bill.steer_by_cap``): the
month so far's energy term and compensation, from the closed settlement periods at the bill's
prices (:func:`gestor.sim.billing.prices_at`), and at each new period every heater's and
charger's reserve scaled by :func:`gestor.core.setpoint.reserve_scale` on what a kWh of surplus
is worth now (:func:`gestor.core.setpoint.surplus_value_eur_per_kwh`). Batteries keep their law.
The month starts at the recording's start when the recording starts inside it."""
from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from gestor.core.balance import PeriodSummary, settled_wh
from gestor.core.setpoint import MonthCap
from gestor.settings import Settings
from gestor.sim.billing import p3_eur_per_kwh, prices_at
from gestor.sim.devices import SimDevice
from gestor.sim.inputs import Prices


class CapSteer:
    """The month so far against the cap (:class:`gestor.core.setpoint.MonthCap`), and the devices'
    laws it gives (module docstring). ``log``: (period start, epoch s; month energy EUR; month
    compensation EUR; heater reserve Wh/h set) per period."""

    def __init__(self, s: Settings, prices: Prices, devs: Sequence[SimDevice]) -> None:
        self.s, self.prices = s, prices
        self.base = {d.name: d.law for d in devs}
        self.cap = MonthCap()
        self.period_start_s: float | None = None
        self.log: list[tuple[float, float, float, float]] = []

    def _prices(self, p: PeriodSummary) -> tuple[float, float]:
        _, imp, sur = self.prices.at(p.start, p.end)
        return prices_at(self.s, p.start, imp, sur)

    def closed(self, periods: Iterable[PeriodSummary]) -> None:
        """Book closed periods into the month so far."""
        for p in periods:
            exp_wh, imp_wh = settled_wh(p.balance_wh)
            self.cap.book(month_of(p.start, self.s.tz), imp_wh, exp_wh, *self._prices(p))

    def apply(self, devs: Sequence[SimDevice], period: PeriodSummary) -> None:
        """At the first cycle of ``period`` (the running one), set each heater's and charger's law."""
        k = period.start.timestamp()
        if k == self.period_start_s:
            return
        self.period_start_s = k
        self.cap.start(month_of(period.start, self.s.tz))
        imp, sur = self._prices(period)
        for d in devs:
            if d.battery is None:
                d.law = self.cap.law(self.base[d.name], imp, p3_eur_per_kwh(self.s), sur, self.s.bill.virtual_battery)
                self.log.append((k, self.cap.energy_eur, self.cap.compensation_eur, d.law.reserve_wh_per_h))


def month_of(t: datetime, tz: ZoneInfo) -> str:
    """The local month ("YYYY-MM") of the instant ``t``."""
    return t.astimezone(tz).strftime("%Y-%m")
