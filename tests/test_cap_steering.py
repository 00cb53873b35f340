"""Steering by the compensation cap (issue 35): what a kWh of surplus is worth now
(gestor.core.setpoint.surplus_value_eur_per_kwh: RD 244/2019 art. 14.3 caps the month's
compensation at its energy term) and the heater's reserve scaled by it
(gestor.core.setpoint.reserve_scale), then ``bill.steer_by_cap`` in ``gestor simulate``."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from gestor.core.setpoint import reserve_scale, surplus_value_eur_per_kwh
from gestor.core.devices import Modulating
from gestor.sim.books import valued_wh
from gestor.sim.devices import one_device_house, simulated_device
from tests.test_simulate import house_csv, run, settings


def test_surplus_is_worth_its_price_below_the_cap_and_nothing_at_it_unless_a_virtual_battery():
    assert surplus_value_eur_per_kwh(0.06, 10.0, 4.0) == 0.06          # 4 EUR earned of a 10 EUR energy term
    assert surplus_value_eur_per_kwh(0.06, 10.0, 10.0) == 0.0          # reached: one more kWh earns nothing
    assert surplus_value_eur_per_kwh(0.06, 10.0, 12.0, virtual_battery=True) == 0.06   # kept for later bills
    assert surplus_value_eur_per_kwh(0.06, 0.0, 0.0) == 0.06           # a month with nothing yet: below it


def test_the_reserve_scale_by_hand():
    """P1 0.22, heat worth P3 0.10, surplus 0.06: q before = (0.10 - 0.06) / (0.22 - 0.06) = 0.25; at
    the cap q = 0.10 / 0.22 = 0.4545; scale ln(0.4545) / ln(0.25) = 0.7885 / 1.3863 = 0.5688. In a P3
    hour (import = heat) no reserve at the cap; no change while the surplus keeps its price."""
    assert reserve_scale(0.22, 0.10, 0.06, 0.0) == pytest.approx(math.log(0.10 / 0.22) / math.log(0.25))
    assert reserve_scale(0.22, 0.10, 0.06, 0.0) == pytest.approx(0.5688, abs=1e-4)
    assert reserve_scale(0.10, 0.10, 0.06, 0.0) == 0.0
    assert reserve_scale(0.22, 0.10, 0.06, 0.06) == pytest.approx(1.0)
    assert reserve_scale(0.22, 0.05, 0.06, 0.0) == 1.0    # heat worth less than surplus: no reading, unchanged


def test_steer_by_cap_takes_more_surplus_into_the_heater_once_the_cap_is_reached(tmp_path):
    """A weekday with a steady 1200 W surplus from 10:00 to 14:00 (P1) and nothing imported: the
    compensation passes the (zero) energy term in the first hour, so from the second on the
    heater's 150 Wh/h reserve is scaled by 0.5688 (above) to 85.3 Wh/h: it keeps less banked and
    ends each period nearer zero (a steady surplus: the reserve is spent by the period's end, so
    the gain is small here: 2 Wh an hour). The first hour is the run without steering."""
    start = datetime(2026, 6, 10, 8, 0, tzinfo=timezone.utc)           # 10:00 CEST, a Wednesday
    csv = house_csv(tmp_path / "d.csv", start, 4 * 3600 - 10, lambda k: 1500, lambda k: 300)
    h = one_device_house(settings(), "heater", simulated_device(Modulating(2000.0)), reserve_wh_per_h=150)
    on = h.model_copy(update={"bill": h.bill.model_copy(update={"steer_by_cap": True})})
    r_off, r_on = run(csv, h), run(csv, on)
    heat_off = [valued_wh(p) for p in r_off.periods]
    heat_on = [valued_wh(p) for p in r_on.periods]
    assert heat_on[0] == pytest.approx(heat_off[0])                    # the first hour: below the cap, the same
    assert all(b > a + 1 for a, b in zip(heat_off[1:], heat_on[1:]))  # then more heat from the surplus ...
    assert all(0 < p.balance_wh < q.balance_wh for p, q in zip(r_on.periods[1:], r_off.periods[1:]))  # less export
    assert r_on.totals.imported_wh == r_off.totals.imported_wh == 0.0


def test_cap_steer_scales_a_heaters_reserve_not_a_batterys():
    """gestor.sim.capsteer.CapSteer: the month so far from the closed periods at the bill's prices,
    the laws set at each new period; a new month starts below the cap again."""
    from gestor.core.balance import PeriodSummary
    from gestor.core.control import Core
    from gestor.core.devices import Battery
    from gestor.sim.capsteer import CapSteer
    from gestor.sim.devices import sim_devices
    from gestor.sim.inputs import Prices
    from zoneinfo import ZoneInfo
    mad = ZoneInfo("Europe/Madrid")
    s = one_device_house(settings(), "heater", simulated_device(Modulating(2000.0)), reserve_wh_per_h=150)
    s.setpoints.append(one_device_house(settings(), "battery", simulated_device(Battery(5000, 2000, 2000)),
                                        reserve_wh_per_h=100).setpoints[0])
    devs = sim_devices(s, Core(s).bounds_s)
    steer = CapSteer(s, Prices(s), devs)
    def period(h: int, d: int = 10, m: int = 6) -> PeriodSummary:
        return PeriodSummary(datetime(2026, m, d, h, tzinfo=mad), datetime(2026, m, d, h + 1, tzinfo=mad), 0.0)
    steer.apply(devs, period(11))
    assert [d.law.reserve_wh_per_h for d in devs] == [150, 100]        # nothing booked yet: below the cap
    steer.closed([PeriodSummary(datetime(2026, 6, 10, 11, tzinfo=mad), datetime(2026, 6, 10, 12, tzinfo=mad), 500.0)])
    steer.apply(devs, period(12))                                      # 0.5 kWh x 0.06 > 0 EUR of energy: at the cap
    assert devs[0].law.reserve_wh_per_h == pytest.approx(150 * 0.5688, abs=0.02) and devs[1].law.reserve_wh_per_h == 100
    steer.apply(devs, period(0, 1, 7))                                 # July: a new month, below the cap
    assert devs[0].law.reserve_wh_per_h == 150


def test_managings_books_keep_the_month_against_the_cap_across_a_restart(tmp_path):
    """gestor.runtime.books: each closed period is booked into the month so far at the bill's
    prices (here the example's fixed ones: 22-23 h P2 0.15, surplus 0.06); managing.json keeps it;
    a restart in the same month brings it back, one in the next month starts at 0."""
    from datetime import timedelta
    from gestor.runtime.statefiles import ManagingFile
    from tests.test_runtime_books import P22, _books, _period
    s, states, store, books = _books(tmp_path)
    books.close(_period(P22, 500.0))                         # 0.5 kWh exported at 0.06 = 0.03 EUR
    books.close(_period(P22 + timedelta(hours=1), -300.0))   # 0.3 kWh imported at 0.15 = 0.045 EUR
    assert (books.cap.month, books.cap.energy_eur, books.cap.compensation_eur) == \
        ("2026-06", pytest.approx(0.045), pytest.approx(0.03))
    f = ManagingFile.model_validate({"balance": {}, **books.to_state()})
    _, _, _, again = _books(tmp_path)
    again.restore(f, P22 + timedelta(hours=3), P22 + timedelta(hours=3))
    assert (again.cap.energy_eur, again.cap.compensation_eur) == (pytest.approx(0.045), pytest.approx(0.03))
    _, _, _, july = _books(tmp_path)
    july.restore(f, datetime(2026, 7, 1, 9, tzinfo=P22.tzinfo), datetime(2026, 7, 1, 9, tzinfo=P22.tzinfo))
    assert (july.cap.month, july.cap.energy_eur) == ("", 0.0)
