"""The regulated rates of a Spanish household's electricity bill, by date: one table per rate,
each row ``(first day, last day, value, source)``, both days included. Data only, plus the one
lookup (:func:`on`) and the split of a billing period by the rows it crosses (:func:`days_by_row`).

* :data:`POWER_TERM`: the 2.0TD power term's peajes (CNMC) + cargos (the ministry), EUR/kW·year,
  (P1, P2). The retailer adds its own margin (PVPC: 3.113 EUR/kW·year, ``bill.power_margin_...``).
  Values as published in the BOE references given per row; cross-checked against public tariff
  tables that list the same BOE references. 2021 and 2026 are not in the table: a bill on such a
  date needs the contract's own power prices (``bill.power_p1_eur_per_kw_year``) and says so.
* :data:`ELECTRICITY_TAX`: the Impuesto Especial sobre la Electricidad, a fraction of its base.
  Ley 38/1992 art. 99.1: 5.11269632 %; art. 99.2 (since Ley 28/2014): the tax is never below
  :data:`ELECTRICITY_TAX_MIN_EUR_PER_MWH` (1 EUR per MWh supplied, uses other than industrial).
  Temporary rates: 0.5 % from 16 Sept 2021 (RDL 17/2021), extended to 31 Dec 2023 (RDL 29/2021,
  RDL 6/2022, RDL 11/2022, RDL 20/2022); 2.5 % in Q1 2024 and 3.8 % in Q2 2024 (RDL 8/2023).
* :data:`VAT`: the reduced IVA on electricity: 10 % from 26 June 2021 (RDL 12/2021, extended by
  RDL 29/2021 and RDL 6/2022), 5 % from 1 July 2022 (RDL 11/2022, extended by RDL 20/2022),
  10 % during 2024 (RDL 8/2023); 21 % otherwise (Ley 37/1992 art. 90). The reduced rate needs a
  contracted power of at most :data:`VAT_REDUCED_MAX_KW` and an average day-ahead price (OMIE,
  Spain) above 45 EUR/MWh in the calendar month before the one holding the billing period's last
  day (RDL 12/2021 art. 1); :data:`WHOLESALE_AT_MOST_45` lists the months when it was not (OMIE's
  monthly averages: Feb 2024 40.1, Mar 20.3, Apr 13.7, May 30.4 EUR/MWh). (The 2024 rule that a
  bono social holder keeps 10 % whatever the price is not modelled.)
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Sequence, TypeVar

T = TypeVar("T")
Row = tuple[date, date, T, str]

FAR = date(2099, 12, 31)

POWER_TERM: list[Row[tuple[float, float]]] = [
    (date(2022, 1, 1), date(2022, 12, 31), (22.988256 + 4.970533, 0.938890 + 0.319666),
     "peajes: CNMC resolution BOE-A-2021-21208; cargos: Orden TED/1484/2021, BOE-A-2021-21794"),
    (date(2023, 1, 1), date(2023, 12, 31), (22.393140 + 2.989915, 1.150425 + 0.192288),
     "peajes: CNMC resolution BOE-A-2022-21799; cargos: Orden TED/1312/2022, BOE-A-2022-23737"),
    (date(2024, 1, 1), date(2024, 12, 31), (22.401746 + 2.989915, 0.776564 + 0.192288),
     "peajes: CNMC resolution BOE-A-2023-26251; cargos: Orden TED/113/2024, BOE-A-2024-2774"),
    (date(2025, 1, 1), date(2025, 12, 31), (22.958932 + 3.971618, 0.442165 + 0.255423),
     "peajes: CNMC resolution BOE-A-2024-26218; cargos: Orden TED/1487/2024, BOE-A-2024-27289"),
]

IEE_GENERAL = 0.0511269632
ELECTRICITY_TAX: list[Row[float]] = [
    (date(1998, 1, 1), date(2021, 9, 15), IEE_GENERAL, "Ley 38/1992 art. 99.1"),
    (date(2021, 9, 16), date(2023, 12, 31), 0.005,
     "RDL 17/2021 (BOE-A-2021-14974), extended by RDL 29/2021, 6/2022, 11/2022, 20/2022"),
    (date(2024, 1, 1), date(2024, 3, 31), 0.025, "RDL 8/2023 (BOE-A-2023-26452)"),
    (date(2024, 4, 1), date(2024, 6, 30), 0.038, "RDL 8/2023 (BOE-A-2023-26452)"),
    (date(2024, 7, 1), FAR, IEE_GENERAL, "Ley 38/1992 art. 99.1"),
]
ELECTRICITY_TAX_MIN_EUR_PER_MWH = 1.0   # Ley 38/1992 art. 99.2 (uses other than industrial)

VAT_GENERAL = 0.21
VAT: list[Row[float]] = [
    (date(1993, 1, 1), date(2021, 6, 25), VAT_GENERAL, "Ley 37/1992 art. 90"),
    (date(2021, 6, 26), date(2022, 6, 30), 0.10,
     "RDL 12/2021 art. 1 (BOE-A-2021-10584), extended by RDL 29/2021 and RDL 6/2022"),
    (date(2022, 7, 1), date(2023, 12, 31), 0.05, "RDL 11/2022 art. 1 (BOE-A-2022-10557), extended by RDL 20/2022"),
    (date(2024, 1, 1), date(2024, 12, 31), 0.10, "RDL 8/2023 (BOE-A-2023-26452)"),
    (date(2025, 1, 1), FAR, VAT_GENERAL, "Ley 37/1992 art. 90"),
]
VAT_REDUCED_MAX_KW = 10.0
WHOLESALE_AT_MOST_45 = frozenset({(2024, 2), (2024, 3), (2024, 4), (2024, 5)})


def on(table: Sequence[Row[T]], day: date, what: str) -> Row[T]:
    """The row of ``table`` holding ``day``. Raises ValueError naming ``what`` and the dates the
    table covers when no row does."""
    for row in table:
        if row[0] <= day <= row[1]:
            return row
    raise ValueError(f"{what}: no rate known for {day.isoformat()} (the table covers "
                     f"{table[0][0].isoformat()} to {table[-1][1].isoformat()})")


def days_by_row(table: Sequence[Row[T]], first: date, last: date, what: str) -> list[tuple[int, Row[T]]]:
    """The billing days ``first``..``last`` (both included) split by the rows they fall in:
    (days, row) in date order. Raises ValueError as :func:`on` for a day no row holds."""
    out: list[tuple[int, Row[T]]] = []
    d = first
    while d <= last:
        row = on(table, d, what)
        end = min(row[1], last)
        out.append(((end - d).days + 1, row))
        d = end + timedelta(days=1)
    return out


def reduced_vat_applies(last_day: date, power_kw: float) -> bool:
    """Whether the reduced IVA of the row holding ``last_day`` applies (module docstring: power at
    most 10 kW and the previous month's day-ahead average above 45 EUR/MWh)."""
    prev = last_day.replace(day=1) - timedelta(days=1)
    return power_kw <= VAT_REDUCED_MAX_KW and (prev.year, prev.month) not in WHOLESALE_AT_MOST_45
