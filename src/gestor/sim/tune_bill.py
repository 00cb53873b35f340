"""``gestor tune --bill``: candidates scored by the bill's euros of each month (issue 35) instead
of :func:`gestor.sim.books.money_eur`'s uncapped money.

Per local day of a run, :func:`day_euros` keeps what the bill needs (:class:`DayEuros`: the
settled import and surplus Wh and their euros at the bill's prices, :func:`gestor.sim.billing.hours`,
and the Wh the loads, heaters and chargers took). These are a structure of their own: ``gestor
simulate``'s totals, its output and the reference digests do not change.

:func:`bill_eur` prices a set of days for every candidate at once. Per recording and calendar
month, it bills the kept days as one partial billing period (:func:`gestor.bill.invoice.bill`,
unrounded):

* the energy term less the compensation, **capped at the energy term** (RD 244/2019 art. 14.3);
* plus the taxes on them: the electricity tax with its 1 EUR/MWh floor, and VAT at the rates of
  the period's dates;
* less the fixed terms (the power term, the meter rental and their taxes). These are the same for
  every candidate, so they are subtracted: the figure is what the control changes.

The heat counts the same for every candidate. A candidate whose loads, heaters and chargers took
less than the most any candidate took that month buys the difference at the P3 price, as a night
timer would (``gestor simulate``'s "without gestor"). That purchase is part of the energy term, so
it also raises the cap. With no month at its cap and no taxes, this ranks candidates exactly as
the uncapped money does (the same sum plus a constant). With a virtual battery
(``bill.virtual_battery``), the compensation over the cap is kept in euros, so it counts as money.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable, Mapping, Sequence

from gestor.bill.invoice import Bill, Contract, Hour, bill
from gestor.settings import Settings
from gestor.sim.billing import hours, p3_eur_per_kwh
from gestor.sim.books import PeriodResult, valued_wh


@dataclass(frozen=True)
class DayEuros:
    """One local day of a run as the bill sees it: Wh imported and exported (settled per period),
    their euros at the bill's prices before taxes (``energy_eur``, ``compensation_eur``:
    uncapped), the Wh the loads, heaters and chargers took (``valued_wh``) and the P3 price the
    heat they did not take is bought at (EUR/kWh)."""

    import_wh: float
    surplus_wh: float
    energy_eur: float
    compensation_eur: float
    valued_wh: float
    night_eur_per_kwh: float


def day_euros(periods: Sequence[PeriodResult], s: Settings, balance_wh: Sequence[float] | None = None,
              heat_wh: Sequence[float] | None = None) -> dict[str, DayEuros]:
    """Per local day ("YYYY-MM-DD") of ``periods``, its :class:`DayEuros`. ``balance_wh`` and
    ``heat_wh`` (Wh per period): a benchmark's balance and heat in place of the periods' own
    (:class:`gestor.sim.money.Versus`)."""
    acc: dict[str, list[float]] = {}
    for i, (p, h) in enumerate(zip(periods, hours(periods, s, balance_wh=balance_wh))):
        a = acc.setdefault(p.start.astimezone(s.tz).date().isoformat(), [0.0] * 5)
        a[0] += h.import_wh
        a[1] += h.surplus_wh
        a[2] += h.import_wh / 1000.0 * h.import_eur_per_kwh
        a[3] += h.surplus_wh / 1000.0 * h.surplus_eur_per_kwh
        a[4] += heat_wh[i] if heat_wh is not None else valued_wh(p)
    p3 = p3_eur_per_kwh(s)
    return {d: DayEuros(a[0], a[1], a[2], a[3], a[4], p3) for d, a in acc.items()}


def bill_eur(euros: Sequence[Sequence[Mapping[str, DayEuros]]], c: Contract,
             keep: Callable[[int, str], bool] = lambda fi, d: True) -> list[float]:
    """Per candidate (``euros[c][f]``: candidate ``c`` on recording ``f``, by day), the bill's EUR
    of the days ``keep(f, day)`` accepts (module docstring: per recording and month, the energy
    term less the capped compensation, with taxes, the heat made equal at P3). Raises ValueError
    as :func:`gestor.bill.invoice.bill` (a date without a known rate names the setting to give)."""
    groups: dict[tuple[int, str], list[str]] = {}
    for fi, days in enumerate(euros[0] if euros else ()):
        for d in days:
            if keep(fi, d):
                groups.setdefault((fi, d[:7]), []).append(d)
    out = [0.0] * len(euros)
    for (fi, _), days in groups.items():
        first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
        heat = [sum(cand[fi][d].valued_wh for d in days if d in cand[fi]) for cand in euros]
        fixed = _variable(bill([], c, first, last, exact=True))
        for ci, cand in enumerate(euros):
            hs = [_hour(d, cand[fi][d]) for d in days if d in cand[fi]]
            short_wh = max(heat) - heat[ci]
            if short_wh > 0 and hs:   # the heat it did not take, bought at night
                p3 = cand[fi][days[0]].night_eur_per_kwh if days[0] in cand[fi] else 0.0
                hs.append(Hour(hs[0].start, short_wh, 0.0, p3, 0.0))
            out[ci] += _variable(bill(hs, c, first, last, exact=True)) - fixed
    return out


def _hour(day: str, e: DayEuros) -> Hour:
    """A day as one bill hour: its Wh and its euros (the prices their averages)."""
    return Hour(datetime.fromisoformat(day).replace(tzinfo=timezone.utc), e.import_wh, e.surplus_wh,
                e.energy_eur / (e.import_wh / 1000.0) if e.import_wh > 0 else 0.0,
                e.compensation_eur / (e.surplus_wh / 1000.0) if e.surplus_wh > 0 else 0.0)


def _variable(b: Bill) -> float:
    """What a bill costs, its virtual battery's new euros counted as money (module docstring)."""
    return b.total_before_battery_eur - b.battery_in_eur
