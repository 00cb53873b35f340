"""The setpoint law (gestor/core/setpoint.py) on hand-computed numbers, the Modulating device kind,
and a modulating heater replayed on a real day (gestor/sim/setpoint.py) against the on/off one."""
from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from drivers.meters.replay import ReplayData
from gestor.core.control import LoadState
from gestor.core.devices import Modulating, OnOff
from gestor.core.guards import LoadLimits
from gestor.core.setpoint import SetpointLaw, next_setpoint_w
from gestor.settings import parse_settings
from gestor.sim.setpoint import simulate_setpoint
from gestor.sim.simulate import Prices, replay_settings_for, simulate
from tests.conftest import DATA, EXAMPLE, example_raw

LAW = SetpointLaw(0.0, 2000.0)


def test_absorbs_the_present_surplus_plus_the_banked_balance_spread_over_the_time_left():
    # 1000 W on, 500 W still exported, 100 Wh banked, half an hour left: 1000 + 500 + 100 * 3600 / 1800
    assert LAW.next_w(balance_wh=100.0, net_w=500.0, setpoint_w=1000.0, remaining_s=1800.0) == 1700.0


def test_a_period_owing_import_makes_the_setpoint_drop():
    # 50 Wh owed with 10 minutes left: 50 * 3600 / 600 = 300 W must be exported on top of a zero net
    assert LAW.next_w(balance_wh=-50.0, net_w=0.0, setpoint_w=1000.0, remaining_s=600.0) == 700.0


def test_the_reserve_shrinks_to_zero_at_the_period_end():
    law = SetpointLaw(0.0, 2000.0, reserve_wh_per_h=300.0)
    assert law.reserve_wh(3600.0) == 300.0
    assert law.reserve_wh(1800.0) == 150.0
    assert law.reserve_wh(0.0) == 0.0
    # half an hour left: 150 Wh kept, so (100 - 150) * 3600 / 1800 = -100 W
    assert law.next_w(100.0, 500.0, 1000.0, 1800.0) == 1400.0
    # the last instant: nothing kept, the balance spread over min_remaining_s (60 s): 1000 + 500 + 10 * 60
    assert law.next_w(10.0, 500.0, 1000.0, 0.0) == 2000.0
    assert law.next_w(1.0, 0.0, 1000.0, 0.0) == 1060.0


def test_clamps_to_the_range():
    assert LAW.next_w(0.0, 3000.0, 1000.0, 1800.0) == 2000.0
    assert LAW.next_w(-100.0, -500.0, 300.0, 1800.0) == 0.0
    battery = SetpointLaw(-2500.0, 2500.0)
    assert battery.next_w(-100.0, -500.0, 300.0, 1800.0) == -400.0


def test_a_change_within_the_deadband_is_not_made_unless_it_reaches_a_bound():
    law = SetpointLaw(0.0, 2000.0, deadband_w=50.0)
    assert law.next_w(0.0, 30.0, 1000.0, 1800.0) == 1000.0    # 1030: within 50 W
    assert law.next_w(0.0, 60.0, 1000.0, 1800.0) == 1060.0    # 1060: beyond
    assert law.next_w(0.0, -100.0, 30.0, 1800.0) == 0.0      # to idle, however small the step
    assert law.next_w(0.0, 100.0, 1980.0, 1800.0) == 2000.0  # to full power likewise


def test_the_change_is_rate_limited():
    law = SetpointLaw(0.0, 2000.0, ramp_w_per_s=10.0)
    assert law.next_w(100.0, 500.0, 1000.0, 1800.0, dt_s=10.0) == 1100.0  # 1700 wanted, 100 W allowed
    assert law.next_w(-50.0, 0.0, 1000.0, 600.0, dt_s=5.0) == 950.0       # 700 wanted, 50 W allowed
    assert law.next_w(100.0, 500.0, 1000.0, 1800.0, dt_s=math.inf) == 1700.0


def test_the_one_call_form_and_bad_parameters():
    assert next_setpoint_w(100.0, 500.0, 1000.0, 1800.0, 0.0, 2000.0, reserve_wh_per_h=300.0) == 1400.0
    for kw, word in (({"min_w": 10.0, "max_w": 0.0}, "min_w"), ({"reserve_wh_per_h": -1.0}, "reserve_wh_per_h"),
                     ({"deadband_w": -1.0}, "deadband_w"), ({"ramp_w_per_s": 0.0}, "ramp_w_per_s"),
                     ({"min_remaining_s": 0.0}, "min_remaining_s")):
        args = {"min_w": 0.0, "max_w": 2000.0, **kw}
        with pytest.raises(ValueError, match=word):
            SetpointLaw(**args)


def test_modulating_kind_takes_its_setpoint_within_its_range_and_on_off_is_unchanged():
    m = Modulating(2000.0)
    assert m.options_w == (0.0, 2000.0)
    assert [m.taken_w(x) for x in (None, False, True, 750.0, 2500.0, -3.0)] == [0.0, 0.0, 2000.0, 750.0, 2000.0, 0.0]
    assert m == Modulating(2000.0) and m != OnOff(2000.0) and hash(m) == hash(Modulating(2000.0))
    with pytest.raises(ValueError, match="max_w"):
        Modulating(0.0)
    assert OnOff(1000.0).options_w == (0.0, 1000.0) and OnOff(1000.0).taken_w(True) == 1000.0
    cfg = parse_settings(example_raw(), "settings.yaml", EXAMPLE).loads[0]
    ld = LoadState(cfg, LoadLimits.of(cfg), on=True, kind=Modulating(2000.0))
    assert ld.options_w == (0.0, 2000.0) and ld.taken_w == 2000.0
    assert LoadState(cfg, LoadLimits.of(cfg), on=True).kind == OnOff(cfg.power_w)


def test_a_modulating_heater_ends_most_periods_of_a_real_day_nearer_zero_than_the_on_off_loads():
    s = parse_settings(example_raw(), "settings.yaml", EXAMPLE)
    data = ReplayData.load(replay_settings_for(DATA / "house-2022-06-11_13.csv"))
    a = datetime.fromisoformat("2022-06-12T00:00:00+02:00")
    b = a + timedelta(days=1)
    onoff = simulate(data, s, Prices(s), a, b)
    heater = simulate_setpoint(data, s, Prices(s), max_w=2000.0, reserve_wh_per_h=300.0, deadband_w=0.0,
                               delay_cycles=1, start=a, end=b)
    assert len(heater.periods) == len(onoff.periods) == 24
    pairs = [(h, o) for h, o in zip(heater.periods, onoff.periods) if o.bound_wh > 0]
    assert len(pairs) >= 8  # a sunny June day: surplus in many hours
    nearer = sum(abs(h.balance_wh) < abs(o.balance_wh) for h, o in pairs)
    assert nearer > len(pairs) / 2
    # it takes more of the surplus than the on/off loads and imports no more for it (that day:
    # 98.3 % and 40 Wh against 95.5 % and 58 Wh)
    assert heater.totals.captured_pct > onoff.totals.captured_pct
    assert heater.totals.extra_import_wh <= onoff.totals.extra_import_wh
    # its energy is accounted as simulate accounts a load's: production - base - device = net
    for p in heater.periods:
        assert p.balance_without_wh - p.load_wh["heater"] == pytest.approx(p.balance_wh, abs=1e-6)
    # without the reserve the device takes everything the bound allows
    greedy = simulate_setpoint(data, s, Prices(s), 2000.0, 0.0, 0.0, start=a, end=b)
    assert greedy.totals.captured_pct > heater.totals.captured_pct
