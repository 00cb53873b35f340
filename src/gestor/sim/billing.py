"""Monthly bills (:mod:`gestor.bill.invoice`) of a simulated run, of the same house without
gestor and of its perfect-foresight benchmark (:func:`gestor.sim.money.versus_foresight`): what
``gestor simulate --bill`` and ``gestor bill --month`` print, and the euros of steering by the cap.

* **With gestor** (and the benchmark): each settlement period's settled import and surplus
  (:func:`gestor.core.balance.settled_wh` of its balance) at its prices.
* **Without gestor**: the balance without the loads and devices, plus what the loads and heaters
  took (:func:`gestor.sim.books.valued_wh`) bought at the P3 price in the same period, as
  ``gestor simulate``'s "without" counts it (a night timer).
* Prices: the contract's fixed ones when ``bill.energy_p*``/``bill.surplus_eur_per_kwh`` are set,
  else each period's own (stored PVPC, a prices CSV, or ``tariff.*``), taken as before taxes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Sequence

from gestor.bill.invoice import Bill, Contract, Hour, bills_by_month
from gestor.core.balance import settled_wh
from gestor.settings import Settings
from gestor.sim.books import PeriodResult, SimResult, valued_wh
from gestor.tariff.calendar import period_2_0td


def contract_of(s: Settings) -> Contract:
    """The bill's contract from the settings' ``bill:`` section."""
    b = s.bill
    return Contract(b.power_p1_kw, b.power_p2_kw, b.power_p1_eur_per_kw_year, b.power_p2_eur_per_kw_year,
                    b.power_margin_eur_per_kw_year, b.meter_rental_eur_per_day, b.virtual_battery)


def prices_at(s: Settings, start: datetime, import_eur_per_kwh: float, surplus_eur_per_kwh: float) -> tuple[float, float]:
    """(import, surplus) EUR/kWh of the period starting at ``start`` for the bill:
    :meth:`gestor.settings.bill.BillSettings.prices` on its 2.0TD period."""
    return s.bill.prices(period_2_0td(start, s.tz), import_eur_per_kwh, surplus_eur_per_kwh)


def p3_eur_per_kwh(s: Settings) -> float:
    """The night price the loads' energy is bought at without gestor, EUR/kWh."""
    return s.bill.night_eur_per_kwh(s.tariff.import_p3_eur_per_kwh)


def hours(periods: Sequence[PeriodResult], s: Settings, with_gestor: bool = True,
          balance_wh: Sequence[float] | None = None) -> list[Hour]:
    """The bill's hours of ``periods`` (module docstring): with gestor, without it, or with
    ``balance_wh`` (Wh per period, export +: a benchmark's) in place of the periods' own."""
    out = []
    p3 = p3_eur_per_kwh(s)
    for i, p in enumerate(periods):
        imp, sur = prices_at(s, p.start, p.import_price, p.surplus_price)
        b = balance_wh[i] if balance_wh is not None else (p.balance_wh if with_gestor else p.balance_without_wh)
        exp_wh, imp_wh = settled_wh(b)
        out.append(Hour(p.start, imp_wh, exp_wh, imp, sur))
        if not with_gestor and valued_wh(p) > 0:
            out.append(Hour(p.start, valued_wh(p), 0.0, p3, sur))
    return out


@dataclass(frozen=True)
class MonthBills:
    """One month's bills: with gestor, without it, and the perfect-foresight benchmark's (None when not computed)."""

    month: str
    with_gestor: Bill
    without: Bill
    foresight: Bill | None = None


def month_bills(periods: Sequence[PeriodResult], s: Settings, foresight_periods: Sequence[PeriodResult] = (),
                foresight_balance_wh: Sequence[float] = (), whole_months: bool = False) -> list[MonthBills]:
    """Per calendar month of ``periods``, the three bills (module docstring); the virtual battery
    (``bill.virtual_battery``) carried month to month in each series. ``whole_months`` False:
    each bill covers the days the periods cover (a recording of a few days is billed as a
    partial period: the fixed terms and the cap over those days). Raises ValueError as
    :func:`gestor.bill.invoice.bill` (a date without a known rate names the setting to give)."""
    c, tz, start = contract_of(s), s.tz, s.bill.virtual_battery_start_eur
    w = bills_by_month(hours(periods, s), c, tz, start, whole_months)
    wo = bills_by_month(hours(periods, s, with_gestor=False), c, tz, start, whole_months)
    fo: list[Bill | None] = [None] * len(w)
    if foresight_periods:
        fb = bills_by_month(hours(foresight_periods, s, balance_wh=foresight_balance_wh), c, tz, start, whole_months)
        fo = list(fb) if len(fb) == len(w) else fo
    return [MonthBills(a.first_day.strftime("%Y-%m"), a, b, f) for a, b, f in zip(w, wo, fo)]


def bills_of(r: SimResult, s: Settings, versus: object = None) -> list[MonthBills]:
    """``gestor simulate --bill``: each month's bills of run ``r`` (:func:`month_bills`), the
    benchmark's from ``versus`` (a :class:`gestor.sim.money.Versus`; none when it is anything
    else, e.g. the message that SciPy is missing). Raises ValueError as :func:`month_bills`."""
    # Versus is not imported: gestor.sim.money imports the simulator, which imports this module
    periods = getattr(versus, "periods", ())
    if not periods:
        return month_bills(r.periods, s)
    return month_bills(r.periods, s, periods, getattr(versus, "balance_wh", ()))


def table_rows(months: Sequence[MonthBills]) -> list[list[str]]:
    """Rows for :func:`gestor.sim.report.table`: per month the three totals and the cap's state."""
    rows = [["month", "bill with gestor", "without", "foresight", "saved", "compensation w (capped?)",
             "compensation wo (capped?)"]]
    for m in months:
        def comp(b: Bill) -> str:
            return f"{b.compensation_eur:.2f}" + (f" (cap: {b.compensation_uncapped_eur:.2f} earned)" if b.capped else "")
        rows.append([m.month, f"{m.with_gestor.total_eur:.2f}", f"{m.without.total_eur:.2f}",
                     f"{m.foresight.total_eur:.2f}" if m.foresight else "-",
                     f"{m.without.total_eur - m.with_gestor.total_eur:+.2f}", comp(m.with_gestor), comp(m.without)])
    return rows


def bill_dict(b: Bill | None) -> dict | None:
    """One bill as JSON-ready data (dates as ISO text, with its ``total_eur``)."""
    if b is None:
        return None
    d = asdict(b)
    d.update(first_day=b.first_day.isoformat(), last_day=b.last_day.isoformat(), total_eur=b.total_eur)
    return d


def billing_dict(m: MonthBills) -> dict:
    """``m`` as JSON-ready data (:func:`bill_dict` for each bill)."""
    return {"month": m.month, "with_gestor": bill_dict(m.with_gestor), "without": bill_dict(m.without),
            "foresight": bill_dict(m.foresight)}
