"""The day's books of managing: what a user sees counted, and what survives a restart.

:class:`Books` keeps the confirmed switches of each load today (local day), the Energy
dashboard's totals (Wh over the closed periods, only ever increasing: the net, settled import and
export, the meter's production and consumption once it gives them), each load's energy (Wh), the
last closed period's balance (Wh), today's saving (EUR: the cost without gestor minus the cost
with it, over today's closed periods) and the recent closed periods. Closing a settlement period
books it and stores its ``period`` point (Wh, EUR at the period's prices, EUR/kWh). Nothing here
raises on a store or price failure: the store spools, the prices fall back to the fixed ones.
:meth:`Books.to_state` and :meth:`Books.restore` carry the books across a restart (in
``managing.json``).
"""
from __future__ import annotations

import logging
from collections import deque
from datetime import date, datetime
from typing import TYPE_CHECKING, Callable, Sequence

from drivers.store.influx import Store, point
from gestor.core.balance import PeriodSummary, settled_wh
from gestor.core.control import LoadState
from gestor.core.setpoint import MonthCap

if TYPE_CHECKING:
    from drivers.meters.base import Reading
    from gestor.runtime.statefiles import ManagingFile
    from gestor.settings import Settings

log = logging.getLogger("gestor.managing")
# s before a settlement period's end by which its settled counters have stepped (issue 32 item 9):
# Home Assistant books a counter's step in the hour it receives it, so the step must come inside
# the period it belongs to, with a margin for the publish and the broker
SETTLE_LEAD_S = 10.0
PricesOf = Callable[[float, float], "tuple[float, float, str]"]


def _iso(v: object) -> str | None:
    return None if v is None else v.isoformat()  # type: ignore[attr-defined]


class Books:
    """The books of ``loads`` (their control states, in the order of priority). ``prices_of(t0,
    t1)``: the import and surplus EUR/kWh over [t0, t1) epoch s and their source
    (:meth:`gestor.runtime.pricefeed.PriceFeed.prices_of`)."""

    def __init__(self, settings: Settings, store: Store, loads: Sequence[LoadState], prices_of: PricesOf) -> None:
        self.s, self.store, self.loads, self.prices_of = settings, store, loads, prices_of
        self.tags = {"site": settings.site}
        # Wh over the closed periods, only increasing (MQTT's Energy-dashboard counters; persisted)
        self.totals: dict[str, float | None] = {"import_wh": 0.0, "export_wh": 0.0,
                                                "production_wh": None, "consumption_wh": None}
        # the same counters over the closed periods exactly as they closed (totals step ahead of
        # them at each period's last cycle: :meth:`settle`)
        self.booked: dict[str, float | None] = dict(self.totals)
        self.settled_start: datetime | None = None  # the period whose counters have stepped
        self.loads_wh: dict[str, float] = {ld.name: 0.0 for ld in settings.loads}
        self.last_period_end: datetime | None = None
        self.switches_today: dict[str, int] = {ld.name: 0 for ld in settings.loads}
        self._today: date | None = None   # the local date switches_today counts
        self.last_period_wh: float | None = None
        self.eur_saved_today = 0.0       # EUR, the closed periods of the local day (cost without - with gestor)
        self._money_day: date | None = None
        self.closed: deque[PeriodSummary] = deque(maxlen=96)  # recent closed periods (bounded: runs for years)
        self.cap = MonthCap()  # the month so far against the compensation cap, at the bill's prices (issue 35)

    def count_switch(self, name: str | None, now: datetime) -> None:
        """Count a confirmed switch of ``name`` in today's (local) switches; None: only roll the day."""
        local = now.astimezone(self.s.tz).date()
        if local != self._today:
            self._today = local   # a new day: the configured loads from 0 (a removed load's count goes)
            self.switches_today = {ld.name: 0 for ld in self.s.loads}
        if name is not None:
            self.switches_today[name] = self.switches_today.get(name, 0) + 1

    def saved_today(self, now: datetime) -> float:
        """Today's saving, EUR (0 before today's first closed period)."""
        return self.eur_saved_today if self._money_day == now.astimezone(self.s.tz).date() else 0.0

    def meter_seen(self, reading: Reading | None) -> None:
        """The meter's production/consumption: counted (and announced) from the first reading that
        gives them on."""
        if reading is None:
            return
        for kind, v in (("production", reading.production_w), ("consumption", reading.consumption_w)):
            if v is not None and self.totals.get(f"{kind}_wh") is None:
                self.totals[f"{kind}_wh"] = 0.0
            if v is not None and self.booked.get(f"{kind}_wh") is None:
                self.booked[f"{kind}_wh"] = 0.0

    def meter_has(self) -> tuple[str, ...]:
        """What the meter gives beside net power, as far as seen (the counters are kept then)."""
        return tuple(k for k in ("production", "consumption") if self.totals.get(f"{k}_wh") is not None)

    @staticmethod
    def settled_wh(p: PeriodSummary, devices_wh: float = 0.0) -> dict[str, float | None]:
        """The Energy dashboard's counters' part of period ``p`` (running or closed), Wh: its net,
        settled import and export (what the bill counts), its production, and its consumption
        without the setpoint devices (``devices_wh``: their net Wh in it, + taken, from the power
        they read back; a battery is not the house's consumption). None: the meter does not give it."""
        export_wh, import_wh = settled_wh(p.balance_wh)
        return {"import_wh": import_wh, "export_wh": export_wh,
                "production_wh": None if p.production_wh is None else max(p.production_wh, 0.0),
                "consumption_wh": None if p.consumption_wh is None else max(p.consumption_wh - devices_wh, 0.0)}

    def settle(self, cur: PeriodSummary, remaining_s: float, interval_s: float, devices_wh: float = 0.0) -> bool:
        """Step the settled counters (:attr:`totals`) for the running period ``cur`` at its last
        cycle at least SETTLE_LEAD_S before its end (``remaining_s`` s left, a cycle every
        ``interval_s`` s: the first cycle with ``remaining_s <= SETTLE_LEAD_S + interval_s``),
        with its balance as it stands: each counter becomes max(itself, the closed periods' books
        + this period so far). What the period's last seconds add (or take back) is carried into
        the next period's step; the counters never go back. So Home Assistant, which books a step
        in the hour it receives it, puts each period's energy in that period and prices it at
        that period's price (issue 32 item 9). Returns True when it stepped."""
        if cur.start == self.settled_start or remaining_s > SETTLE_LEAD_S + interval_s:
            return False
        self.settled_start = cur.start
        for k, v in self.settled_wh(cur, devices_wh).items():
            if v is not None:
                self.totals[k] = max(self.totals[k] or 0.0, (self.booked.get(k) or 0.0) + v)
        return True

    def close(self, p: PeriodSummary, devices: tuple[float, float] = (0.0, 0.0), devices_read_wh: float = 0.0) -> None:
        """Book the closed period ``p`` (each load's on-time and switches in it are taken from its
        state), store its ``period`` point and log it. ``devices``: the setpoint devices' net Wh
        in it (+ taken) and the Wh taken by those that are not batteries
        (:meth:`gestor.runtime.setpoints.Setpoints.period_energy`), for what it would have cost
        without gestor; ``devices_read_wh``: their net Wh from the power they read back (taken
        out of the consumption counter). The settled counters' books take the period as it
        closed; the published :attr:`totals` stepped at its last cycle (:meth:`settle`) and take
        the rest at the next period's step."""
        k = p.start.timestamp()
        per_load = {f"{ld.name}_wh": ld.cfg.power_w * ld.on_s.pop(k, 0.0) / 3600.0 for ld in self.loads}
        for ld in self.loads:
            ld.switches.pop(k, None)
        loads_wh = sum(per_load.values())
        self.closed.append(p)
        self.last_period_wh, self.last_period_end = p.balance_wh, p.end
        # the Energy dashboard's counters as the period closed (published at the next step)
        for k, v in self.settled_wh(p, devices_read_wh).items():
            if v is not None:
                self.booked[k] = (self.booked.get(k) or 0.0) + v
        for ld in self.loads:
            self.loads_wh[ld.name] = self.loads_wh.get(ld.name, 0.0) + per_load[f"{ld.name}_wh"]
        money = self.money(p, loads_wh, *devices)
        self.book_cap(p, money["import_eur_per_kwh"], money["surplus_eur_per_kwh"])
        extra = {"devices_wh": devices[0]} if self.s.setpoints else {}
        self.store.write([point("period", {**self.tags, "period_s": str(self.s.billing.period_s)}, {
            "balance_wh": p.balance_wh, "export_wh": p.export_wh, "import_wh": p.import_wh,
            "production_wh": p.production_wh, "consumption_wh": p.consumption_wh,
            "loads_wh": loads_wh, **per_load, **extra, "complete": p.complete, "covered_s": p.covered_s, **money},
            p.start)])
        local = p.start.astimezone(self.s.tz)
        log.info("period %s closed: balance %+.0f Wh, loads %.0f Wh%s", local.strftime("%Y-%m-%d %H:%M %Z"),
                 p.balance_wh, loads_wh, "" if p.complete else f" (incomplete: {p.covered_s:.0f} s covered)")

    def book_cap(self, p: PeriodSummary, import_eur_per_kwh: float, surplus_eur_per_kwh: float) -> None:
        """Book closed period ``p`` into the month so far (:attr:`cap`) at the bill's prices
        (:meth:`gestor.settings.bill.BillSettings.prices`)."""
        from gestor.tariff.calendar import period_2_0td
        imp, sur = self.s.bill.prices(period_2_0td(p.start, self.s.tz), import_eur_per_kwh, surplus_eur_per_kwh)
        exp_wh, imp_wh = settled_wh(p.balance_wh)
        self.cap.book(p.start.astimezone(self.s.tz).strftime("%Y-%m"), imp_wh, exp_wh, imp, sur)

    def month_bill(self, now: datetime) -> dict:
        """The month so far as the bill counts it (:attr:`cap`, its closed periods at the bill's
        prices), EUR before the fixed terms and taxes: ``energy_eur`` (the energy term),
        ``compensation_eur`` (the surplus's value, capped at the energy term: RD 244/2019 art.
        14.3), ``energy_after_compensation_eur`` (their difference, >= 0) and ``capped``. Zeros
        at the start of a month before its first closed period."""
        month = now.astimezone(self.s.tz).strftime("%Y-%m")
        energy, comp = (self.cap.energy_eur, self.cap.compensation_eur) if self.cap.month == month else (0.0, 0.0)
        paid = min(comp, energy)
        return {"month": month, "energy_eur": round(energy, 4), "compensation_eur": round(paid, 4),
                "energy_after_compensation_eur": round(energy - paid, 4), "capped": comp > energy}

    def money(self, p: PeriodSummary, loads_wh: float, devices_wh: float = 0.0, devices_need_wh: float = 0.0) -> dict:
        """The period's EUR (gestor.tariff.prices.period_money) at its real prices when the cache has
        them, else at the fixed 2.0TD ones; today's savings add up in ``eur_saved_today``.
        Without gestor the setpoint devices' ``devices_wh`` is not taken either, and what the
        ones that are not batteries took (``devices_need_wh``) is bought at the night price, as
        the loads' energy (a battery's stored energy is not valued)."""
        from gestor.tariff.prices import period_money
        t = self.s.tariff
        imp, sur, source = self.prices_of(p.start.timestamp(), p.end.timestamp())
        if devices_wh or devices_need_wh:
            m = period_money(p.balance_wh + devices_wh - devices_need_wh, loads_wh + devices_need_wh, imp, sur,
                             t.import_p3_eur_per_kwh)
            m.update(period_money(p.balance_wh, 0.0, imp, sur, 0.0), cost_without_eur=m["cost_without_eur"])
        else:
            m = period_money(p.balance_wh, loads_wh, imp, sur, t.import_p3_eur_per_kwh)
        day = p.start.astimezone(self.s.tz).date()
        if day != self._money_day:
            self._money_day, self.eur_saved_today = day, 0.0
        self.eur_saved_today += m["cost_without_eur"] - m["cost_eur"]
        return {**m, "import_eur_per_kwh": imp, "surplus_eur_per_kwh": sur, "price_source": source}

    def to_state(self) -> dict:
        """The books as ``managing.json`` holds them (:class:`gestor.runtime.statefiles.ManagingFile`)."""
        return {"totals": {k: v for k, v in self.totals.items() if v is not None},
                "booked": {k: v for k, v in self.booked.items() if v is not None},
                "settled_start": _iso(self.settled_start), "loads_wh": self.loads_wh,
                "switches_today": self.switches_today, "switches_day": _iso(self._today),
                "last_period_wh": self.last_period_wh, "last_period_end": _iso(self.last_period_end),
                "eur_saved_today": self.eur_saved_today, "money_day": _iso(self._money_day),
                "month_cap": {"month": self.cap.month, "energy_eur": self.cap.energy_eur,
                              "compensation_eur": self.cap.compensation_eur}}

    def restore(self, f: ManagingFile, now: datetime, period_start: datetime) -> None:
        """What a user sees back as it was: the Energy counters, today's switches and savings, the
        last period's balance (while it is still the last one: ``period_start`` is the current
        period's start). Counters the settings no longer have are dropped; today's switches of a
        load no longer configured are kept for the day (re-added the same day, it goes on counting)."""
        for k, v in f.totals.items():
            if k in self.totals:
                self.totals[k] = float(v)
        # the closed periods' books (files of earlier versions: the published counters were them)
        for k, v in (f.booked if f.booked else f.totals).items():
            if k in self.booked:
                self.booked[k] = float(v)
        self.settled_start = f.settled_start
        for name, v in f.loads_wh.items():
            if name in self.loads_wh:
                self.loads_wh[name] = float(v)
        today = now.astimezone(self.s.tz).date()
        if f.switches_day == today:
            self._today = today
            self.switches_today.update(f.switches_today)
        if f.money_day == today and f.eur_saved_today is not None:
            self._money_day, self.eur_saved_today = today, float(f.eur_saved_today)
        if f.month_cap is not None and f.month_cap.month == now.astimezone(self.s.tz).strftime("%Y-%m"):
            self.cap = MonthCap(f.month_cap.month, float(f.month_cap.energy_eur), float(f.month_cap.compensation_eur))
        if f.last_period_wh is not None and f.last_period_end is not None \
                and f.last_period_end == period_start:
            self.last_period_wh, self.last_period_end = float(f.last_period_wh), f.last_period_end
