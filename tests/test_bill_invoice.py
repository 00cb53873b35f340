"""The bill as a retailer computes it (gestor.bill.invoice, issue 35): months worked by hand, step
by step in each test's docstring, from the published rules the module docstring cites (RD
244/2019 art. 14.3 for the cap; Ley 38/1992 art. 99 and the RDLs for the electricity tax; Ley
37/1992 art. 90 and the RDLs for VAT; the BOE's peajes + cargos for the power term; the meter's
regulated rental 0.81 EUR/month, Orden ITC/3860/2007, = 0.02663 EUR/day). Each line is rounded to
the cent before the next uses it. The prices are flat so the arithmetic fits in a docstring:
import 0.15 EUR/kWh, surplus 0.05 EUR/kWh before taxes; 4.6 kW in P1 and P2; PVPC's margin
3.113 EUR/kW·year on P1 power."""
from __future__ import annotations

import calendar
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from gestor.bill import rates
from gestor.bill.invoice import Contract, Hour, bill, bills_by_month, hours_of, month_bounds

TZ = ZoneInfo("Europe/Madrid")
PVPC_MARGIN = 3.113


def _month(y: int, m: int, import_kwh: float, surplus_kwh: float) -> list[Hour]:
    """A month's hours reduced to one importing and one exporting hour (the bill only sums them)."""
    return [Hour(datetime(y, m, 1, 0, tzinfo=TZ), import_kwh * 1000, 0, 0.15, 0.05),
            Hour(datetime(y, m, 1, 12, tzinfo=TZ), 0, surplus_kwh * 1000, 0.15, 0.05)]


def _bill(y: int, m: int, import_kwh: float, surplus_kwh: float, **kw):
    c = Contract(power_margin_eur_per_kw_year=PVPC_MARGIN, **kw)
    return bill(_month(y, m, import_kwh, surplus_kwh), c, date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1]))


def test_may_2025_below_the_cap_worked_by_hand():
    """May 2025, 31 days, 200 kWh imported, 300 kWh surplus.

    1. energy term 200 x 0.15 = 30.00
    2. compensation 300 x 0.05 = 15.00 <= 30.00: not capped
    3. power P1: 4.6 kW x 31 d x (22.958932 + 3.971618 + 3.113 = 30.043550) / 365 = 11.7376 -> 11.74
       power P2: 4.6 x 31 x (0.442165 + 0.255423 = 0.697588) / 365 = 0.2725 -> 0.27; power 12.01
    4. IEE 5.11269632 % x (30.00 - 15.00 + 12.01 = 27.01) = 1.38094 -> 1.38 (> 1 EUR/MWh x 0.2 MWh)
    5. rental 31 x 0.02663 = 0.82553 -> 0.83
    6. VAT 21 % (2025: general) x (15.00 + 12.01 + 1.38 + 0.83 = 29.22) = 6.1362 -> 6.14
    total 29.22 + 6.14 = 35.36 EUR
    """
    b = _bill(2025, 5, 200, 300)
    assert (b.energy_eur, b.compensation_eur, b.capped) == (30.00, 15.00, False)
    assert (b.power_eur, b.tax_eur, b.rental_eur, b.vat_eur) == (12.01, 1.38, 0.83, 6.14)
    assert b.total_eur == 35.36
    assert "Compensation" in b.text() and "35.36" in b.text()


def test_may_2025_reaching_the_cap_worked_by_hand():
    """May 2025, 200 kWh imported, 800 kWh surplus: the cap of RD 244/2019 art. 14.3.

    1. energy term 30.00; 2. compensation 800 x 0.05 = 40.00 > 30.00: capped at 30.00 (10.00 lost)
    3. power 12.01 (as above); 4. IEE 5.11269632 % x (30.00 - 30.00 + 12.01) = 0.61403 -> 0.61
    5. rental 0.83; 6. VAT 21 % x (0 + 12.01 + 0.61 + 0.83 = 13.45) = 2.8245 -> 2.82
    total 13.45 + 2.82 = 16.27 EUR; the same month with 1000 kWh of surplus costs the same.
    """
    b = _bill(2025, 5, 200, 800)
    assert (b.compensation_uncapped_eur, b.compensation_eur, b.capped) == (40.00, 30.00, True)
    assert (b.tax_eur, b.vat_eur, b.total_eur) == (0.61, 2.82, 16.27)
    assert _bill(2025, 5, 200, 1000).total_eur == 16.27


def test_june_2022_reduced_rates_and_the_tax_minimum_worked_by_hand():
    """June 2022 (30 days): IEE 0.5 % (RDL 17/2021 as extended by RDL 11/2022) below its minimum,
    VAT 10 % (RDL 12/2021 as extended by RDL 6/2022; 4.6 kW <= 10 kW, May 2022's day-ahead price >
    45 EUR/MWh). 200 kWh imported, 300 kWh surplus.

    1. energy 30.00; 2. compensation 15.00
    3. power P1 4.6 x 30 x (22.988256 + 4.970533 + 3.113 = 31.071789) / 365 = 11.7476 -> 11.75;
       P2 4.6 x 30 x (0.938890 + 0.319666 = 1.258556) / 365 = 0.4758 -> 0.48; power 12.23
    4. IEE 0.5 % x (15.00 + 12.23 = 27.23) = 0.136, below the minimum 1 EUR/MWh x 0.2 MWh = 0.20
    5. rental 30 x 0.02663 = 0.7989 -> 0.80
    6. VAT 10 % x (15.00 + 12.23 + 0.20 + 0.80 = 28.23) = 2.823 -> 2.82; total 31.05 EUR
    """
    b = _bill(2022, 6, 200, 300)
    assert (b.power_eur, b.tax_eur, b.rental_eur, b.vat_eur, b.total_eur) == (12.23, 0.20, 0.80, 2.82, 31.05)
    assert "minimum" in [ln for ln in b.lines if ln.label == "Electricity tax"][0].detail


def test_vat_2024_follows_the_previous_months_wholesale_price():
    """RDL 8/2023: 10 % in 2024 only when the month before the period's last day averaged more than
    45 EUR/MWh (OMIE: Feb 2024 40.1 -> March's bill at 21 %; June 2024 > 45 -> July's at 10 %), and
    only up to 10 kW."""
    assert rates.reduced_vat_applies(date(2024, 3, 31), 4.6) is False
    assert rates.reduced_vat_applies(date(2024, 7, 31), 4.6) is True
    assert rates.reduced_vat_applies(date(2024, 7, 31), 10.35) is False
    assert "21 %" in [ln for ln in _bill(2024, 3, 200, 0).lines if ln.label == "VAT"][0].detail
    assert "10 %" in [ln for ln in _bill(2024, 7, 200, 0).lines if ln.label == "VAT"][0].detail


def test_a_tax_change_inside_the_period_is_prorated_by_days():
    """September 2021 is not in the power table, so the contract's own power price is given: the
    IEE is 5.11269632 % for 15 days and 0.5 % for 15 (RDL 17/2021 from 16 Sept 2021).
    Base 30.00 - 0 + power (4.6 x 30 x 30 / 365 = 11.3425 -> 11.34, twice: 22.68) = 52.68;
    IEE 52.68 x (0.0511269632 x 15/30 + 0.005 x 15/30) = 1.47835 -> 1.48."""
    b = _bill(2021, 9, 200, 0, power_p1_eur_per_kw_year=30.0, power_p2_eur_per_kw_year=30.0)
    assert (b.power_eur, b.tax_eur) == (22.68, 1.48)


def test_a_date_without_a_known_power_price_names_the_day_and_the_setting():
    with pytest.raises(ValueError, match=r"bill.power_p1_eur_per_kw_year.*no rate known for 2026-01-01"):
        _bill(2026, 1, 200, 0)


def test_the_virtual_battery_keeps_the_excess_and_carries_it_to_the_next_months_bill():
    """May 2025: 200 kWh imported, 1400 kWh surplus worth 70.00, capped at 30.00: 40.00 EUR go to
    the virtual battery. The bill before it is 16.27 (as in the capped month above); the battery
    pays it all: 0.00 paid, 40.00 - 16.27 = 23.73 carried. June 2025 (30 days), 200 kWh imported,
    none exported: energy 30.00; power P1 4.6 x 30 x 30.04355 / 365 = 11.3589 -> 11.36, P2 0.2638
    -> 0.26 (11.62); IEE 5.11269632 % x 41.62 = 2.12790 -> 2.13; rental 0.80; VAT 21 % x 44.55 =
    9.3555 -> 9.36; total 53.91, of which the battery pays 23.73: 30.18 paid, 0 carried."""
    c = Contract(power_margin_eur_per_kw_year=PVPC_MARGIN, virtual_battery=True)
    may, june = bills_by_month(_month(2025, 5, 200, 1400) + _month(2025, 6, 200, 0), c, TZ)
    assert (may.battery_in_eur, may.battery_used_eur, may.total_eur, may.battery_after_eur) == (40.00, 16.27, 0.00, 23.73)
    assert (june.total_before_battery_eur, june.battery_used_eur, june.total_eur, june.battery_after_eur) == (53.91, 23.73, 30.18, 0.0)
    plain = bills_by_month(_month(2025, 5, 200, 1400) + _month(2025, 6, 200, 0), Contract(power_margin_eur_per_kw_year=PVPC_MARGIN), TZ)
    assert [b.total_eur for b in plain] == [16.27, 53.91]


def test_hours_from_net_balances_and_month_bounds_across_dst():
    """A period's balance (export +) is surplus when positive, import when negative; October 2022
    holds the 25-hour day and ends at local midnight."""
    t0 = datetime(2022, 10, 30, 0, tzinfo=TZ)
    hs = hours_of([t0, t0], [-500.0, 250.0], lambda t: (0.2, 0.05))
    assert [(h.import_wh, h.surplus_wh) for h in hs] == [(500.0, 0.0), (0.0, 250.0)]
    a, b = month_bounds("2022-10", TZ)
    assert b.timestamp() - a.timestamp() == 31 * 86400 + 3600
    with pytest.raises(ValueError, match=r"--month: must be YYYY-MM.*'2022/10'"):
        month_bounds("2022/10", TZ)
