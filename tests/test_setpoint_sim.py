"""The battery and the EV charger (gestor/core/devices.py, their models in gestor/sim/models.py)
played by ``gestor simulate`` in a house with that one device (gestor.sim.devices.one_device_house):
hand-computed cases and real recordings, what a user would notice (a battery never leaves its SoC
limits and loses what its efficiency says; it ends the periods it can at zero; a car is never
charged below 6 A, between steps or while away; a command takes effect at the cycle that makes it)."""
from __future__ import annotations

import math
from array import array
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from drivers.meters.replay import ReplayData
from gestor.core.devices import Battery, EvCharger, OnOff
from gestor.core.setpoint import SetpointLaw
from gestor.settings import parse_settings
from gestor.sim.models import BatteryModel, EvModel, EvSession, daily_sessions, had_room
from gestor.sim.devices import one_device_house, simulated_device
from gestor.sim.simulate import Prices, replay_settings_for, simulate
from tests.conftest import DATA, EXAMPLE, example_raw

MADRID = ZoneInfo("Europe/Madrid")
BAT = Battery(2500.0, 2500.0, 5000.0, 10.0, 100.0, 0.9)


def _settings():
    return parse_settings(example_raw(), "settings.yaml", EXAMPLE)


def run(data, s, kind, name="battery", soc_pct=50.0, start=None, end=None, ev_sessions=None):
    """``gestor simulate`` on ``data`` in the house of ``s`` with ``kind`` alone (no on/off load),
    targeting 0 Wh per period with no reserve, deadband or reversal wait."""
    h = one_device_house(s, name, simulated_device(kind, soc_pct), reserve_wh_per_h=0, deadband_w=0,
                         min_reversal_s=0)
    return simulate(data, h, Prices(h), start, end, ev_sessions=None if ev_sessions is None else {name: ev_sessions})


@pytest.fixture(scope="module")
def sunny():
    """A sunny June recording (three days) and the battery replayed on it."""
    s = _settings()
    data = ReplayData.load(replay_settings_for(DATA / "house-2022-06-11_13.csv"))
    return s, data, run(data, s, BAT)


def _hourly(t: float) -> tuple[float, float]:
    k = t // 3600 * 3600
    return k, k + 3600


# --- the kinds --------------------------------------------------------------------------------

def test_a_battery_range_narrows_to_zero_at_its_soc_limits_and_to_the_energy_left_within_a_step():
    assert BAT.options_w == (-2500.0, 2500.0)
    assert BAT.range_w(50.0) == (-2500.0, 2500.0)
    assert BAT.range_w(10.0) == (0.0, 2500.0)       # empty: no discharge
    assert BAT.range_w(100.0) == (-2500.0, 0.0)     # full: no charge
    # 0.1 % below full = 5 Wh stored room = 5 / sqrt(0.9) house-side Wh: over 10 s, 1897 W at most
    lo, hi = BAT.range_w(99.9, 10.0)
    assert hi == pytest.approx(5.0 / math.sqrt(0.9) * 360.0) and lo == -2500.0
    assert BAT.stored_change_wh(1000.0, 3600.0) == pytest.approx(1000.0 * math.sqrt(0.9))
    assert BAT.stored_change_wh(-1000.0, 3600.0) == pytest.approx(-1000.0 / math.sqrt(0.9))
    assert BAT.taken_w(-3000.0) == -2500.0 and BAT.taken_w(None) == 0.0
    for kw in ({"capacity_wh": 0.0}, {"efficiency": 1.5}, {"min_soc_pct": 100.0}, {"max_charge_w": -1.0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            Battery(**{"max_charge_w": 1.0, "max_discharge_w": 1.0, "capacity_wh": 1.0, **kw})
    assert BAT == Battery(2500.0, 2500.0, 5000.0) and BAT != OnOff(2500.0) and hash(BAT) == hash(Battery(2500, 2500, 5000))


def test_an_ev_charger_takes_whole_amperes_from_6_a_rounded_down():
    ev = EvCharger()  # 6..16 A, one phase, 230 V
    assert ev.options_w == tuple([0.0] + [a * 230.0 for a in range(6, 17)])
    assert ev.clamp_w(1379.0) == 0.0              # 5.99 A: paused
    assert ev.clamp_w(1380.0) == 1380.0           # 6 A exactly
    assert ev.clamp_w(2000.0) == 8 * 230.0        # 8.7 A: 8 A
    assert ev.clamp_w(9000.0) == 3680.0           # 16 A at most
    three = EvCharger(6, 16, 3, 230.0)
    assert three.step_min_w == 4140.0 and three.clamp_w(5000.0) == 7 * 690.0  # 7.2 A: 7 A on each phase
    with pytest.raises(ValueError, match="phases"):
        EvCharger(phases=2)


def test_the_law_takes_a_range_for_one_call():
    law = SetpointLaw(-2500.0, 2500.0)
    assert law.next_w(0.0, 1000.0, 0.0, 1800.0) == 1000.0
    assert law.next_w(0.0, 1000.0, 0.0, 1800.0, hi_w=300.0) == 300.0    # nearly full
    assert law.next_w(0.0, -1000.0, 0.0, 1800.0, lo_w=0.0) == 0.0       # empty
    assert law.next_w(0.0, -1000.0, 0.0, 1800.0) == -1000.0             # the default range again


# --- the battery's physics, by hand ------------------------------------------------------------

def test_a_battery_stops_at_the_instant_it_is_full_or_empty():
    bat = Battery(1000.0, 1000.0, 1000.0, 0.0, 100.0, 0.81)  # eta 0.9 each way
    m = BatteryModel(bat, _hourly, soc_start_pct=50.0)
    m.advance(0.0)
    m.apply(0.0, 1000.0)          # 900 Wh stored an hour: 500 Wh of room in 2000 s
    m.advance(3600.0)
    assert m.stored_wh == 1000.0 and m.power_w == 0.0
    assert m.changes == [(0.0, 1000.0), (pytest.approx(2000.0), 0.0)]
    assert m.charged_wh == pytest.approx(1000.0 * 2000.0 / 3600.0)
    m.apply(3600.0, 500.0)        # full: the BMS refuses
    assert m.power_w == 0.0
    m.apply(3600.0, -1000.0)      # 1000 Wh stored give 900 Wh at 1000 W: empty after 3240 s
    m.advance(3 * 3600.0)
    assert m.stored_wh == 0.0 and m.changes[-1] == (pytest.approx(3600.0 + 3240.0), 0.0)
    assert m.discharged_wh == pytest.approx(900.0)
    st = m.stats()
    assert st.losses_wh == pytest.approx(555.555 - 900.0 + 500.0, abs=1e-2)
    assert st.periods[0.0].soc_start_pct == 50.0 and st.periods[0.0].soc_end_pct == 100.0
    assert st.periods[3600.0].soc_end_pct == 0.0 and st.periods[3600.0].discharged_wh == pytest.approx(900.0)
    assert st.periods[7200.0].soc_start_pct == 0.0 and st.periods[7200.0].discharged_wh == 0.0


# --- the battery on a real recording ------------------------------------------------------------

def test_a_battery_never_leaves_its_soc_limits_and_conserves_energy_with_its_losses(sunny):
    s, data, r = sunny
    b = r.devices[0]
    assert BAT.min_soc_pct - 1e-9 <= b.soc_min_pct <= b.soc_max_pct <= BAT.max_soc_pct + 1e-9
    for bp in b.periods.values():
        assert BAT.min_soc_pct - 1e-9 <= bp.soc_end_pct <= BAT.max_soc_pct + 1e-9
    eta = math.sqrt(0.9)
    stored_change = (b.soc_end_pct - b.soc_start_pct) / 100.0 * BAT.capacity_wh
    assert b.charged_wh * eta - b.discharged_wh / eta == pytest.approx(stored_change, abs=1e-6)
    assert b.losses_wh == pytest.approx(b.charged_wh * (1 - eta) + b.discharged_wh * (1 / eta - 1), abs=1e-6)
    assert b.charged_wh > 3000 and b.discharged_wh > 3000   # it worked, both ways
    assert sum(bp.charged_wh for bp in b.periods.values()) == pytest.approx(b.charged_wh)
    # the billed balance is the readings' trapezoid; the physical energy differs by sampling only
    for p in r.periods:
        assert p.balance_without_wh - p.device_wh["battery"] == pytest.approx(p.balance_wh, abs=1e-6)
        bp = b.periods[p.start.timestamp()]
        assert p.device_wh["battery"] == pytest.approx(bp.charged_wh - bp.discharged_wh, abs=15.0)


def test_a_battery_ends_the_periods_it_has_room_for_near_zero_on_a_sunny_file(sunny):
    s, data, r = sunny
    room = [p for p in r.periods if had_room(p, r.devices[0].periods[p.start.timestamp()], BAT)]
    assert len(room) >= 40 and len(r.periods) == 72
    near = [p for p in room if abs(p.balance_wh) <= 10.0]
    assert len(near) >= 0.9 * len(room)   # 48 of 48 here
    assert r.totals.imported_wh < 0.2 * r.totals.imported_without_wh   # the nights run on the day's sun
    # full in the afternoon: the rest is exported, not lost
    assert r.totals.exported_wh > 0.5 * r.totals.exported_without_wh


def test_a_command_reaches_the_battery_at_the_cycle_that_makes_it(sunny):
    """As managing writes it to the simulated driver: every change of the battery's power but its
    BMS stopping it (to 0 W) is a setpoint commanded at that instant, on a managing cycle."""
    s, data, _ = sunny
    a = datetime(2022, 6, 12, 8, tzinfo=MADRID)
    r = run(data, s, BAT, start=a, end=a + timedelta(hours=6))
    decided = {round(t.timestamp(), 6): w for t, _, w in r.setpoint_log}
    moved = [(t, w) for t, w in r.devices[0].power_changes if w != 0.0]   # 0: also the BMS stopping it
    assert len(moved) > 20
    t0 = next(x for x in data.t if x >= a.timestamp())  # the daemons start at the first sample
    for t, w in moved:
        assert decided.get(round(t, 6)) == w, (t, w)
        assert (t - t0) % s.managing.interval_s == pytest.approx(0.0, abs=1e-6), t


def _synthetic(surplus_w: list[float], t0: float = 1_654_000_000.0) -> ReplayData:
    """Ten-second samples with the given export-positive net (consumption 300 W under it)."""
    t, p, c, n = array("d"), array("d"), array("d"), array("d")
    for i, x in enumerate(surplus_w):
        t.append(t0 + 10.0 * i)
        c.append(300.0)
        p.append(300.0 + x)
        n.append(x)
    return ReplayData(Path("synthetic"), t, p, c, n)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(levels=st.lists(st.floats(-4000.0, 4000.0), min_size=2, max_size=8),
       soc=st.floats(10.0, 100.0), small=st.booleans())
def test_property_the_soc_stays_within_its_limits_for_any_surplus(levels, soc, small):
    s = _settings()
    bat = Battery(3000.0, 2000.0, 300.0 if small else 5000.0, 20.0, 90.0, 0.85)
    soc = min(max(soc, 20.0), 90.0)
    surplus = [lv for lv in levels for _ in range(180)]   # half an hour at each level
    b = run(_synthetic(surplus), s, bat, soc_pct=soc).devices[0]
    assert 20.0 - 1e-9 <= b.soc_min_pct <= b.soc_max_pct <= 90.0 + 1e-9
    eta = math.sqrt(0.85)
    assert b.charged_wh * eta - b.discharged_wh / eta == pytest.approx(
        (b.soc_end_pct - b.soc_start_pct) / 100.0 * bat.capacity_wh, abs=1e-6)


# --- the EV charger -----------------------------------------------------------------------------

def test_daily_sessions_follow_the_schedule():
    ses = daily_sessions(date(2022, 6, 10), date(2022, 6, 13), MADRID, wanted_wh=10_000.0)  # Fri..Mon
    got = [(datetime.fromtimestamp(x.arrive_s, MADRID), datetime.fromtimestamp(x.depart_s, MADRID)) for x in ses]
    assert [(a.strftime("%a %H"), b.strftime("%a %H")) for a, b in got] == [
        ("Fri 18", "Sat 08"), ("Sat 10", "Sat 20"), ("Sun 10", "Sun 20"), ("Mon 18", "Tue 08")]
    with pytest.raises(ValueError, match="overlap"):
        EvModel(EvCharger(), _hourly, [EvSession(0, 100, 1), EvSession(50, 200, 1)])


def test_an_ev_never_charges_below_6_a_between_steps_or_while_disconnected(sunny):
    s, data, _ = sunny
    ev = EvCharger(6, 16, 1, 230.0)
    first, last = date(2022, 6, 11), date(2022, 6, 13)
    sessions = daily_sessions(first, last, MADRID, wanted_wh=10_000.0,
                              weekday=(time(12), time(17)), weekend=(time(10), time(20)))
    r = run(data, s, ev, "ev", ev_sessions=sessions)
    d = r.devices[0]
    assert d.delivered_wh > 5000
    powers = [w for _, w in d.power_changes]
    assert all(w == 0.0 or 1380.0 <= w <= 3680.0 for w in powers)
    assert all(w / 230.0 == int(w / 230.0) for w in powers)                 # whole amperes
    assert all(w == 0.0 or w / 230.0 >= 6 for _, _, w in r.setpoint_log)  # nor is it ever told to
    for t, w in d.power_changes:
        if w > 0:
            assert any(x.arrive_s <= t < x.depart_s for x in d.sessions), t
    for x in d.sessions:  # at every departure it is at 0
        before = [w for t, w in d.power_changes if t <= x.depart_s]
        assert not before or before[-1] == 0.0
        assert x.delivered_wh <= x.wanted_wh + 1e-9
    # its energy is accounted as a load's: the balance with it is the balance without, less it
    for p in r.periods:
        assert p.balance_without_wh - p.device_wh["ev"] == pytest.approx(p.balance_wh, abs=1e-6)


def test_an_ev_stops_when_its_session_has_the_energy_it_wanted(sunny):
    s, data, _ = sunny
    a = datetime(2022, 6, 12, 11, tzinfo=MADRID).timestamp()
    d = run(data, s, EvCharger(), "ev", ev_sessions=[EvSession(a, a + 6 * 3600, 700.0)]).devices[0]
    x = d.sessions[0]
    assert x.delivered_wh == pytest.approx(700.0)
    last_on = max(t for t, w in d.power_changes if w > 0)
    stop = min(t for t, w in d.power_changes if t > last_on)
    assert stop < a + 2 * 3600               # a sunny noon: 700 Wh well within two hours
    assert all(w == 0.0 for t, w in d.power_changes if t >= stop)
