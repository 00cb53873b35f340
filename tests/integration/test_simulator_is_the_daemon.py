"""The simulator is the daemon (issue 11): a whole real day replayed through the real monitoring
and managing (simulated clock, replay meter, simulated relays, a real InfluxDB) switches the
loads at the very instants ``gestor simulate`` does, and every settlement period ends at the same
balance, to 1e-6 Wh."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import managing
import monitoring
from drivers.meters.replay import ReplayData
from drivers.store.influx import EPOCH, InfluxStore
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from gestor.sim.simulate import Prices, simulate
from tests.conftest import DATA, make_settings

UTC = timezone.utc


def _a_day_of_the_daemons(s):
    """The real monitoring and managing on settings ``s`` for one day of its replay meter's
    recording from its first sample (simulated clock, lockstep): (data, start, until, managing,
    store), the store still open."""
    data = ReplayData.load(s.meter)
    start = data.first
    until = start + timedelta(days=1)
    store = InfluxStore.from_settings(s.store).open()
    clock = SimClock(start)
    mon, mgr = monitoring.Monitoring(s, clock, store), managing.Managing(s, clock, store)
    mgr.start()
    run_lockstep(clock, [(s.monitoring.interval_s, mon.cycle), (s.managing.interval_s, mgr.cycle)], until)
    return data, start, until, mgr, store


def _daemon_switches(c) -> list:
    """The switches managing stored: (instant, load, on), in order."""
    return [(datetime.fromtimestamp(p["time"] / 1000, UTC), p["load"], p["on"]) for p in c.query(
        "SELECT \"on\", \"load\" FROM decision WHERE switched = 1 ORDER BY time", epoch="ms").get_points()]


def _daemon_setpoints(c) -> list:
    """The setpoints managing stored: (epoch ms, device, W), in order."""
    return [(p["time"], p["device"], p["setpoint_w"]) for p in c.query(
        "SELECT setpoint_w, device FROM setpoint ORDER BY time", epoch="ms").get_points()]


def _sim_setpoints(r, before: datetime) -> list:
    """The simulator's setpoint commands before ``before``: (epoch ms, device, W), the last one per
    instant and device (InfluxDB keeps one point per instant and tags: the start's idle and the
    first cycle's command, both at the first sample's instant, are one point there, the later one)."""
    ms = timedelta(milliseconds=1)
    last_at = {((t - EPOCH) // ms, name): w for t, name, w in r.setpoint_log if t < before}
    return [(k, name, w) for (k, name), w in last_at.items()]


def _daemon_period_balances(c) -> dict:
    """The closed periods' net balances managing stored, Wh, by start (epoch ms)."""
    return {p["time"]: p["balance_wh"] for p in c.query(
        "SELECT balance_wh FROM period ORDER BY time", epoch="ms").get_points()}


def _sim_switches(r, before: datetime) -> list:
    """The simulator's switches before ``before``: (instant to the ms, as InfluxDB keeps it, load, on)."""
    ms = timedelta(milliseconds=1)
    return [(datetime.fromtimestamp((t - EPOCH) // ms / 1000, UTC), name, on) for t, name, on in r.switches if t < before]


def _assert_the_same_period_balances(daemon_periods: dict, r) -> None:
    """At least 23 periods in common, each at the same balance to 1e-6 Wh."""
    ms = timedelta(milliseconds=1)  # InfluxDB keeps ms
    sim_periods = {(p.start - EPOCH) // ms: p.balance_wh for p in r.periods}
    common = sorted(set(daemon_periods) & set(sim_periods))
    assert len(common) >= 23
    for k in common:
        assert daemon_periods[k] == pytest.approx(sim_periods[k], abs=1e-6), datetime.fromtimestamp(k / 1000, UTC)


@pytest.mark.parametrize("policy", ["time_to_consume", "steady_surplus"])
def test_a_real_day_through_the_daemons_equals_gestor_simulate(tmp_path, influxd, influx_db, policy):
    s = make_settings(tmp_path, influxd, influx_db, policy={"name": policy},
                      meter={"path": str(DATA / "house-2022-05-08_12.csv"), "loop": False})
    data, start, until, mgr, store = _a_day_of_the_daemons(s)
    assert store.flush(60)
    store.close()
    c = influxd.client(influx_db)
    daemon_switches = _daemon_switches(c)
    daemon_periods = _daemon_period_balances(c)
    c.close()
    # the simulator, on the same recording
    r = simulate(data, s, Prices(s), start, until)
    last_decision = until - timedelta(seconds=60)
    sim_switches = _sim_switches(r, last_decision)
    daemon_switches = [x for x in daemon_switches if x[0] < last_decision]
    assert len(sim_switches) > 20, "a day with few switches proves little"
    assert daemon_switches == sim_switches
    _assert_the_same_period_balances(daemon_periods, r)


def _a_day_with_devices(s, influxd, influx_db):
    """:func:`_a_day_of_the_daemons` with setpoint devices, managing stopped, then what it stored
    and the simulator's run of the same day: (managing, the daemon's switches, setpoints and
    period balances, the simulator's result, the last decision's instant)."""
    data, start, until, mgr, store = _a_day_of_the_daemons(s)
    assert mgr.stop()
    assert store.flush(60)
    store.close()
    c = influxd.client(influx_db)
    stored = _daemon_switches(c), _daemon_setpoints(c), _daemon_period_balances(c)
    c.close()
    return (mgr, *stored, simulate(data, s, Prices(s), start, until), until - timedelta(seconds=60))


# --- with a device whose power gestor sets (issue 26) -------------------------------------------
BATTERY = {"driver": "simulated", "kind": "battery", "capacity_wh": 100_000, "soc_pct": 50, "max_charge_w": 2500,
           "max_discharge_w": 2500, "min_soc_pct": 10, "max_soc_pct": 100, "efficiency": 0.9}


def test_a_real_day_with_a_battery_through_the_daemons_equals_gestor_simulate(tmp_path, influxd, influx_db):
    """One on/off load and a simulated battery (the simulated setpoint driver on the daemons' side,
    :mod:`gestor.sim.devices` on the simulator's): the same load switches, the same setpoint
    commands (instant, device, W) and the same period balances (1e-6 Wh) as the real monitoring
    and managing on the same day. The battery is big enough (100 kWh from 50 %) never to reach a
    SoC limit: there the simulated driver stops it at its next call and the simulator's battery
    at the exact instant (gestor.sim.devices' docstring), which this test does not cover."""
    s = make_settings(tmp_path, influxd, influx_db, policy={"name": "steady_surplus"},
                      meter={"path": str(DATA / "house-2022-05-08_12.csv"), "loop": False},
                      loads=[{"name": "water_heater", "power_w": 1000, "relay": {"driver": "simulated"}}],
                      setpoints=[{"name": "battery", "device": BATTERY, "reserve_wh_per_h": 100, "deadband_w": 20}])
    _, daemon_switches, daemon_setpoints, daemon_periods, r, last_decision = _a_day_with_devices(s, influxd, influx_db)
    ms = timedelta(milliseconds=1)
    sim_switches = _sim_switches(r, last_decision)
    assert daemon_switches[:-1] and [x for x in daemon_switches if x[0] < last_decision] == sim_switches
    sim_setpoints = _sim_setpoints(r, last_decision)
    daemon_setpoints = [x for x in daemon_setpoints if x[0] < (last_decision - EPOCH) // ms]
    assert len(sim_setpoints) > 100, "a day with few commands proves little"
    assert daemon_setpoints == sim_setpoints
    soc = r.devices[0]
    assert 10 < soc.soc_min_pct and soc.soc_max_pct < 100   # no SoC limit reached (see the docstring)
    _assert_the_same_period_balances(daemon_periods, r)


def test_a_sunny_day_steering_a_heater_by_the_cap_through_the_daemons_equals_gestor_simulate(tmp_path, influxd,
                                                                                              influx_db):
    """Steering by the cap (issue 35, ``bill.steer_by_cap``): a 1000 W heater alone on a sunny day
    (11 June 2022), whose month passes the compensation cap in the morning. managing books the
    month so far (gestor.runtime.books, MonthCap) and scales the heater's reserve per period
    (gestor.runtime.setpoints.Setpoints.steer) as ``gestor simulate`` does (gestor.sim.capsteer):
    the same setpoint commands and the same period balances; and steering changed them."""
    heater = {"driver": "simulated", "kind": "heater", "max_charge_w": 1000}
    s = make_settings(tmp_path, influxd, influx_db, meter={"path": str(DATA / "house-2022-06-11_13.csv"), "loop": False},
                      loads=[], setpoints=[{"name": "heater", "device": heater, "reserve_wh_per_h": 150}],
                      bill={"steer_by_cap": True})
    mgr, _, daemon_setpoints, daemon_periods, r, last_decision = _a_day_with_devices(s, influxd, influx_db)
    assert mgr.books.cap.month == "2022-06" and mgr.books.cap.compensation_eur > mgr.books.cap.energy_eur > 0
    assert mgr.setpoints.devices[0].law.reserve_wh_per_h < 150     # at the cap: a smaller reserve
    ms = timedelta(milliseconds=1)
    sim_setpoints = _sim_setpoints(r, last_decision)
    assert len(sim_setpoints) > 100, "a day with few commands proves little"
    assert [x for x in daemon_setpoints if x[0] < (last_decision - EPOCH) // ms] == sim_setpoints
    _assert_the_same_period_balances(daemon_periods, r)
    s_off = s.model_copy(update={"bill": s.bill.model_copy(update={"steer_by_cap": False})})
    off = simulate(ReplayData.load(s.meter), s_off, Prices(s), None, last_decision + timedelta(seconds=60))
    assert _sim_setpoints(off, last_decision) != sim_setpoints
