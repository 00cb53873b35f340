"""A relay's read-back is not the only truth (issue 23, class 5): a relay that reads off while its
own meter, or the grid meter, still sees the load is not believed. Real parts: a Shelly Gen2
emulator on loopback HTTP, the replay meter with the simulated relays' power, the daemons' own
cycles on a simulated clock."""
from __future__ import annotations

import logging
from datetime import timedelta

from gestor.sim.lockstep import run_lockstep
from gestor.runtime.livestate import set_latch
from tests.conftest import free_port
from tests.emulators.http_devices import ShellyRelayDevice
from tests.integration.test_faults import daemons
from tests.integration.test_safety import T0, sunny_csv


def test_a_shelly_that_reads_off_while_its_meter_shows_the_load_is_not_believed(tmp_path, caplog):
    dev = ShellyRelayDevice(free_port(), 2, load_w=1000.0).start()
    try:
        loads = [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "shelly", "host": f"127.0.0.1:{dev.port}"}}]
        s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30), loads=loads)
        tasks = [(5, mon.cycle), (10, mgr.cycle)]
        run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
        assert dev.is_on() and mgr.loads[0].on
        dev.stuck, dev.lies = True, True   # welded, and answering output: false (apower still 1000 W)
        set_latch(s.paths.state_dir, clock.now(), "test")
        n = len(dev.requests)
        with caplog.at_level(logging.WARNING, "gestor"):
            run_lockstep(clock, tasks, T0 + timedelta(minutes=6))
        assert mgr.loads[0].on is None  # unknown, never "off"
        assert "relay reads off but its meter shows 1000 W drawn: not believed" in caplog.text
        offs = [r for r in dev.requests[n:] if "on=false" in r]
        assert len(offs) >= 3  # commanded off again and again (with backoff)
    finally:
        dev.stop()


def test_a_welded_contactor_that_reads_off_is_seen_by_the_grid_meter(tmp_path, caplog):
    """A GPIO-style relay reads back its own coil: off. The replay meter still adds the load's
    1000 W (it is on): within two readings managing says so loudly and commands it off again."""
    loads = [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "simulated", "fault": "welded_reads_off"}}]
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30), loads=loads)
    tasks = [(5, mon.cycle), (10, mgr.cycle)]
    run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
    assert mgr.loads[0].on
    set_latch(s.paths.state_dir, clock.now(), "test")
    with caplog.at_level(logging.INFO, "gestor"):
        run_lockstep(clock, tasks, T0 + timedelta(minutes=4))
    assert "reported off, but the meter did not see its 1000 W go (net power rose +0 W)" in caplog.text
    assert caplog.text.count("load water_heater OFF:") == 2  # the off, and once more


def test_a_relay_whose_load_really_goes_off_raises_no_alarm(tmp_path, caplog):
    loads = [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "simulated"}}]
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30), loads=loads)
    tasks = [(5, mon.cycle), (10, mgr.cycle)]
    run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
    assert mgr.loads[0].on
    set_latch(s.paths.state_dir, clock.now(), "test")
    with caplog.at_level(logging.INFO, "gestor"):
        run_lockstep(clock, tasks, T0 + timedelta(minutes=4))
    assert mgr.loads[0].on is False and "did not see" not in caplog.text


def test_an_honest_shelly_whose_meter_lags_its_output_is_confirmed_off(tmp_path):
    """A real Shelly's apower follows its output about a second late: the "not believed" check
    reads again (up to 2 s) before it concludes, so an honest off is confirmed, by stop-loads and
    by managing alike, without a false alarm."""
    import stop_loads
    from drivers.relays.shelly import ShellyRelaySettings
    from tests.integration.test_campaign_02_renewal_switches_back_on import LaggingShelly
    dev = LaggingShelly(free_port()).start()
    dev.lag_s = 1.2
    try:
        dev._set(True, None)
        t = stop_loads.Target("water_heater", ShellyRelaySettings(host=f"127.0.0.1:{dev.port}"), 1000.0)
        [r] = stop_loads.stop_all([t], stop_loads.Paths(tmp_path / "state", tmp_path / "run"), timeout_s=5.0)
        assert r.confirmed, r.error
        assert not dev.is_on()
    finally:
        dev.stop()
