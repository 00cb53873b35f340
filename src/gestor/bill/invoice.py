"""A billing period's electricity bill as a Spanish retailer computes it for a 2.0TD household
under simplified compensation: the lines and the total, in EUR, from hourly import and surplus.

The order (each line rounded half-up to the cent before the next uses it, as bills print them):

1. **Energy term** = sum over hours of import kWh x that hour's import price (PVPC: ESIOS 1001;
   a fixed contract: its P1/P2/P3 price by :func:`gestor.tariff.calendar.period_2_0td`), before
   taxes.
2. **Compensation** = sum over hours of surplus kWh x that hour's surplus price (PVPC: ESIOS
   1739; a fixed contract: its EUR/kWh), **capped at the energy term**. RD 244/2019 art. 14.3:
   "En ningún caso el valor económico de la energía horaria excedentaria podrá ser superior al
   valor económico de la energía horaria consumida de la red en el periodo de facturación, el cual
   no podrá ser superior a un mes." The cap is on the energy term only: the power term, the
   rental and the taxes are never compensated. The compensation is a discount on the energy term,
   so it lowers the base of both taxes below (the bills of PVPC and free-market retailers show the
   taxes after it).
3. **Power term** = per 2.0TD power period, kW x days x EUR/kW·year / days of that year (the
   regulated peajes + cargos of :data:`gestor.bill.rates.POWER_TERM` by date, plus the
   retailer's margin; or the contract's own price).
4. **Electricity tax** (IEE) = rate x (power term + energy term - compensation), never less
   than 1 EUR/MWh of the imported energy (Ley 38/1992 arts. 97-99; rates by date, prorated by
   days when the period crosses a change: :data:`gestor.bill.rates.ELECTRICITY_TAX`).
5. **Meter rental** = days x EUR/day (not in the IEE's base).
6. **VAT** = rate x (everything above): :data:`gestor.bill.rates.VAT`, by the period's last day.
7. **Virtual battery** (a retailer's option, not the regulation): the compensation over the cap
   is kept in euros and discounts this and later bills' totals down to 0 €, the rest carried
   (Próxima Energía, https://www.proximaenergia.com/bateria-virtual/: "Aplica los excedentes en
   forma de descuento, tanto en la misma factura, como en otras facturas posteriores"; uEnergía,
   https://www.uenergia.es/es/bateria-virtual/: the excess "carga la batería virtual" and "se
   descargará para abaratar la factura siempre que fuera posible"). Assumption: the stored euros
   are the pre-tax excess and discount the total after VAT; retailers' fees for the option are
   not modelled.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from gestor.bill import rates


def cents(x: float) -> float:
    """``x`` EUR rounded half-up to the cent (how a bill prints each line)."""
    return float(Decimal(repr(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Hour:
    """One settlement period of the bill: its start (aware), the Wh imported and exported (both
    >= 0; the distributor's hourly net, not gross flows) and its prices in EUR/kWh, before taxes."""

    start: datetime
    import_wh: float
    surplus_wh: float
    import_eur_per_kwh: float
    surplus_eur_per_kwh: float


@dataclass(frozen=True)
class Contract:
    """What a bill needs beside the hours (``bill:`` in settings.yaml, :class:`gestor.settings.models.BillSettings`).

    Attributes:
        power_p1_kw, power_p2_kw: contracted power in 2.0TD power periods P1 (punta-llano) and P2 (valle), kW.
        power_p1_eur_per_kw_year, power_p2_eur_per_kw_year: the contract's power prices; None: the
            regulated peajes + cargos by date (:data:`gestor.bill.rates.POWER_TERM`) + ``power_margin_eur_per_kw_year``.
        power_margin_eur_per_kw_year: the retailer's margin on P1 power (PVPC: 3.113), added to the regulated P1 price.
        meter_rental_eur_per_day: the meter's rental.
        virtual_battery: keep the compensation over the cap for later bills (module docstring, 7).
    """

    power_p1_kw: float = 4.6
    power_p2_kw: float = 4.6
    power_p1_eur_per_kw_year: float | None = None
    power_p2_eur_per_kw_year: float | None = None
    power_margin_eur_per_kw_year: float = 0.0
    meter_rental_eur_per_day: float = 0.026630
    virtual_battery: bool = False


@dataclass(frozen=True)
class Line:
    """One line of the bill: what, EUR (rounded to the cent; a discount is negative), how."""

    label: str
    eur: float
    detail: str = ""


@dataclass(frozen=True)
class Bill:
    """A billing period's bill (module docstring). ``lines`` in the bill's order; ``total_eur``
    what is paid; the ``*_eur`` fields are the lines' amounts (compensation as a positive amount)."""

    first_day: date
    last_day: date
    import_wh: float
    surplus_wh: float
    energy_eur: float
    compensation_uncapped_eur: float
    compensation_eur: float
    capped: bool
    power_eur: float
    tax_eur: float
    rental_eur: float
    vat_eur: float
    total_before_battery_eur: float
    battery_in_eur: float = 0.0
    battery_used_eur: float = 0.0
    battery_after_eur: float = 0.0
    lines: tuple[Line, ...] = field(default_factory=tuple)

    @property
    def total_eur(self) -> float:
        """What the household pays, EUR."""
        return cents(self.total_before_battery_eur - self.battery_used_eur)

    def text(self) -> str:
        """The bill as lines of text, one per line, then the total."""
        out = [f"Bill {self.first_day.isoformat()} to {self.last_day.isoformat()}: "
               f"{self.import_wh / 1000:.3f} kWh imported, {self.surplus_wh / 1000:.3f} kWh surplus"]
        out += [f"  {ln.label:<28} {ln.eur:>9.2f} EUR  {ln.detail}" for ln in self.lines]
        out.append(f"  {'Total':<28} {self.total_eur:>9.2f} EUR")
        return "\n".join(out)


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of calendar month ``"YYYY-MM"`` at local midnight in ``tz``. Raises ValueError
    naming the value and the form allowed."""
    try:
        y, m = (int(x) for x in month.split("-"))
        first = date(y, m, 1)
    except (ValueError, TypeError):
        raise ValueError(f"--month: must be YYYY-MM, e.g. 2022-05 (got {month!r})") from None
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return (datetime(first.year, first.month, 1, tzinfo=tz), datetime(nxt.year, nxt.month, 1, tzinfo=tz))


def _power_lines(c: Contract, first: date, last: date, r: Callable[[float], float] = cents) -> tuple[float, list[Line]]:
    """The power term (module docstring, 3): one line per power period and price row (``r``: the rounding)."""
    lines: list[Line] = []
    total = 0.0
    own = (c.power_p1_eur_per_kw_year, c.power_p2_eur_per_kw_year)
    if None in own:
        parts = rates.days_by_row(rates.POWER_TERM, first, last,
                                  "power term (set bill.power_p1_eur_per_kw_year and bill.power_p2_eur_per_kw_year)")
        rows = [(n, (r[2][0] + c.power_margin_eur_per_kw_year, r[2][1]), r[3]) for n, r in parts]
    else:
        rows = [((last - first).days + 1, (float(own[0]), float(own[1])), "contract")]  # type: ignore[arg-type]
    d = first
    for n, (p1, p2), src in rows:
        year_days = 366 if calendar.isleap(d.year) else 365
        for name, kw, price in (("P1", c.power_p1_kw, p1), ("P2", c.power_p2_kw, p2)):
            eur = r(kw * n * price / year_days)
            total += eur
            lines.append(Line(f"Power term {name}", eur, f"{kw:g} kW x {n} d x {price:.6f} EUR/kW·year / {year_days} ({src})"))
        d += timedelta(days=n)
    return r(total), lines


def _tax(base_eur: float, import_wh: float, first: date, last: date,
         r: Callable[[float], float] = cents) -> tuple[float, str]:
    """The electricity tax (module docstring, 4), prorated by days over its rate rows (``r``: the rounding)."""
    days = (last - first).days + 1
    parts = rates.days_by_row(rates.ELECTRICITY_TAX, first, last, "electricity tax")
    by_rate = sum(base_eur * r[2] * n / days for n, r in parts)
    floor = rates.ELECTRICITY_TAX_MIN_EUR_PER_MWH * import_wh / 1e6
    how = " + ".join(f"{r[2] * 100:.8g} % x {n}/{days} d ({r[3]})" for n, r in parts)
    if floor > by_rate:
        return r(floor), f"minimum {rates.ELECTRICITY_TAX_MIN_EUR_PER_MWH:g} EUR/MWh x {import_wh / 1e6:.6f} MWh"
    return r(by_rate), f"{how} of {base_eur:.2f} EUR"


def bill(hours: Iterable[Hour], c: Contract, first: date, last: date, battery_eur: float = 0.0,
         exact: bool = False) -> Bill:
    """The bill of days ``first``..``last`` (both included) from ``hours`` (those inside it; the
    caller selects them) under contract ``c``; ``battery_eur``: the virtual battery's balance
    before this bill (EUR, >= 0). Module docstring for each line and its source. ``exact``: no
    line rounded to the cent (to rank runs that differ by less than a cent: ``gestor tune
    --bill``; the printed bill is rounded). Raises
    ValueError when a rate is unknown for a day of the period (naming the day and the setting to
    give) or an input is negative."""
    if last < first:
        raise ValueError(f"bill: last day {last} is before first day {first}")
    if battery_eur < 0:
        raise ValueError(f"bill: virtual battery balance must be >= 0 EUR (got {battery_eur})")
    r: Callable[[float], float] = float if exact else cents
    imp_wh = sur_wh = energy = comp = 0.0
    for h in hours:
        if h.import_wh < 0 or h.surplus_wh < 0:
            raise ValueError(f"bill: hour {h.start.isoformat()}: import_wh and surplus_wh must be >= 0 "
                             f"(got {h.import_wh}, {h.surplus_wh})")
        imp_wh += h.import_wh
        sur_wh += h.surplus_wh
        energy += h.import_wh / 1000.0 * h.import_eur_per_kwh
        comp += h.surplus_wh / 1000.0 * h.surplus_eur_per_kwh
    energy, comp_all = r(energy), r(comp)
    compensation = min(comp_all, energy)
    capped = comp_all > energy
    power, lines = _power_lines(c, first, last, r)
    lines = [Line("Energy term", energy, f"{imp_wh / 1000:.3f} kWh at the hours' prices"),
             Line("Compensation", -compensation,
                  f"{sur_wh / 1000:.3f} kWh worth {comp_all:.2f} EUR" + (", capped at the energy term (RD 244/2019 art. 14.3)"
                                                                       if capped else ""))] + lines
    tax, how = _tax(r(power + energy - compensation), imp_wh, first, last, r)
    lines.append(Line("Electricity tax", tax, how))
    days = (last - first).days + 1
    rental = r(days * c.meter_rental_eur_per_day)
    lines.append(Line("Meter rental", rental, f"{days} d x {c.meter_rental_eur_per_day:g} EUR/d"))
    base = r(energy - compensation + power + tax + rental)
    row = rates.on(rates.VAT, last, "VAT")
    reduced = row[2] < rates.VAT_GENERAL and rates.reduced_vat_applies(last, max(c.power_p1_kw, c.power_p2_kw))
    vat_rate = row[2] if reduced else rates.VAT_GENERAL
    vat = r(base * vat_rate)
    lines.append(Line("VAT", vat, f"{vat_rate * 100:g} % of {base:.2f} EUR ({row[3] if reduced else 'Ley 37/1992 art. 90'})"))
    total = r(base + vat)
    b_in = r(comp_all - compensation) if c.virtual_battery else 0.0
    balance = r(battery_eur + b_in)
    used = min(balance, total) if c.virtual_battery else 0.0
    if c.virtual_battery:
        lines.append(Line("Virtual battery", -used, f"{b_in:.2f} EUR in, {battery_eur:.2f} EUR before, "
                                                      f"{r(balance - used):.2f} EUR carried"))
    return Bill(first, last, imp_wh, sur_wh, energy, comp_all, compensation, capped, power, tax, rental, vat, total,
                b_in, used, r(balance - used), tuple(lines))


def bills_by_month(hours: Sequence[Hour], c: Contract, tz: ZoneInfo, battery_eur: float = 0.0,
                   whole_months: bool = True) -> list[Bill]:
    """One bill per calendar month (local ``tz``) that ``hours`` touch, in order, the virtual
    battery's balance carried from each to the next. ``whole_months`` False: each bill covers
    only the local days its hours touch (a partial billing period, as at a contract's start or
    end: the fixed terms by those days). Raises ValueError as :func:`bill`."""
    months: dict[tuple[int, int], list[Hour]] = {}
    days: dict[tuple[int, int], list[date]] = {}
    for h in hours:
        t = h.start.astimezone(tz)
        months.setdefault((t.year, t.month), []).append(h)
        days.setdefault((t.year, t.month), []).append(t.date())
    out = []
    for (y, m), hs in sorted(months.items()):
        first, last = ((date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])) if whole_months
                       else (min(days[(y, m)]), max(days[(y, m)])))
        b = bill(hs, c, first, last, battery_eur)
        battery_eur = b.battery_after_eur
        out.append(b)
    return out


def hours_of(starts: Sequence[datetime], balance_wh: Sequence[float],
             prices: Callable[[datetime], tuple[float, float]]) -> list[Hour]:
    """Bill hours from settlement periods' net balances (Wh, export +; DESIGN.md §2): a positive
    balance is surplus, a negative one import; ``prices(start)`` gives (import, surplus) EUR/kWh."""
    out = []
    for t, b in zip(starts, balance_wh):
        imp, sur = prices(t)
        out.append(Hour(t, max(-b, 0.0), max(b, 0.0), imp, sur))
    return out
