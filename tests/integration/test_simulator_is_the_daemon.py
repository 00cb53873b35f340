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


@pytest.mark.parametrize("policy", ["time_to_consume", "steady_surplus"])
def test_a_real_day_through_the_daemons_equals_gestor_simulate(tmp_path, influxd, influx_db, policy):
    s = make_settings(tmp_path, influxd, influx_db, policy={"name": policy},
                      meter={"path": str(DATA / "house-2022-05-08_12.csv"), "loop": False})
    data = ReplayData.load(s.meter)
    start = data.first
    until = start + timedelta(days=1)
    # the daemons
    store = InfluxStore.from_settings(s.store).open()
    clock = SimClock(start)
    mon, mgr = monitoring.Monitoring(s, clock, store), managing.Managing(s, clock, store)
    mgr.start()
    run_lockstep(clock, [(s.monitoring.interval_s, mon.cycle), (s.managing.interval_s, mgr.cycle)], until)
    assert store.flush(60)
    store.close()
    c = influxd.client(influx_db)
    daemon_switches = [(datetime.fromtimestamp(p["time"] / 1000, UTC), p["load"], p["on"]) for p in c.query(
        "SELECT \"on\", \"load\" FROM decision WHERE switched = 1 ORDER BY time", epoch="ms").get_points()]
    daemon_periods = {p["time"]: p["balance_wh"] for p in c.query(
        "SELECT balance_wh FROM period ORDER BY time", epoch="ms").get_points()}
    c.close()
    # the simulator, on the same recording
    r = simulate(data, s, Prices(s), start, until)
    last_decision = until - timedelta(seconds=60)
    ms = timedelta(milliseconds=1)  # InfluxDB keeps ms
    sim_switches = [(datetime.fromtimestamp((t - EPOCH) // ms / 1000, UTC), name, on)
                    for t, name, on in r.switches if t < last_decision]
    daemon_switches = [x for x in daemon_switches if x[0] < last_decision]
    assert len(sim_switches) > 20, "a day with few switches proves little"
    assert daemon_switches == sim_switches
    sim_periods = {(p.start - EPOCH) // ms: p.balance_wh for p in r.periods}
    common = sorted(set(daemon_periods) & set(sim_periods))
    assert len(common) >= 23
    for k in common:
        assert daemon_periods[k] == pytest.approx(sim_periods[k], abs=1e-6), datetime.fromtimestamp(k / 1000, UTC)
