"""A relay's read-back is not the only truth (issue 23, class 5): a relay that reads off while its
own meter, or the grid meter, still sees the load is not believed. Real parts: a Shelly Gen2
emulator on loopback HTTP, the replay meter with the simulated relays' power, the daemons' own
cycles on a simulated clock."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest

import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from gestor.runtime.livestate import set_latch
from tests.conftest import free_port, make_settings
from tests.emulators.http_devices import ShellyPro3EM, ShellyRelayDevice, house_meter
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


def _latched_a_minute_after_the_sun(tmp_path, caplog, relay: dict):
    """A 1000 W water heater on ``relay`` (the simulated driver) switched on by 3 sunny minutes of
    the daemons, then the stop latch set and one more minute run with INFO logs captured: its
    managing."""
    loads = [{"name": "water_heater", "power_w": 1000, "relay": relay}]
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30), loads=loads)
    tasks = [(5, mon.cycle), (10, mgr.cycle)]
    run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
    assert mgr.loads[0].on
    set_latch(s.paths.state_dir, clock.now(), "test")
    with caplog.at_level(logging.INFO, "gestor"):
        run_lockstep(clock, tasks, T0 + timedelta(minutes=4))
    return mgr


def test_a_welded_contactor_that_reads_off_is_seen_by_the_grid_meter(tmp_path, caplog):
    """A GPIO-style relay reads back its own coil: off. The replay meter still adds the load's
    1000 W (it is on): within two readings managing says so loudly and commands it off again,
    every cycle (issue 32: not just once)."""
    mgr = _latched_a_minute_after_the_sun(tmp_path, caplog, {"driver": "simulated", "fault": "welded_reads_off"})
    assert "reported off, but the meter did not see its 1000 W go (net power rose +0 W)" in caplog.text
    assert caplog.text.count("load water_heater OFF:") == 1  # the off
    assert caplog.text.count("load water_heater OFF again") >= 3  # and again, every cycle since
    # off for the policy (its off was commanded: a meter's noise must not change control), but
    # never published as off: stop-loads cannot confirm it through managing
    assert mgr.loads[0].on is False and mgr.loads[0].reason.startswith("LYING RELAY")
    assert mgr.relays.published(0.0, {})["water_heater"]["on"] is None


def test_a_relay_whose_load_really_goes_off_raises_no_alarm(tmp_path, caplog):
    mgr = _latched_a_minute_after_the_sun(tmp_path, caplog, {"driver": "simulated"})
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


# --- issue 32, item 1: a relay found "off" while its load draws ----------------------------------
def _shelly_house(tmp_path, dev: ShellyRelayDevice, meter: ShellyPro3EM):
    """The daemons on a simulated clock with a Shelly Gen2 relay (its timer on that clock) and a
    Shelly Pro 3EM grid meter that shows the house: 4000 W produced, 500 W consumed, plus the
    load while the relay's contact is on, whatever the relay answers."""
    loads = [{"name": "water_heater", "power_w": 1000,
              "relay": {"driver": "shelly", "host": f"127.0.0.1:{dev.port}"}}]
    s = make_settings(tmp_path, meter_section={"driver": "shelly_em", "host": f"127.0.0.1:{meter.port}"},
                      loads=loads)
    clock = SimClock(T0)
    dev.clock = clock.monotonic
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    mgr.start()
    return s, clock, mgr, [(5, house_meter(meter, [dev], 500.0, 4000.0)), (5, mon.cycle), (10, mgr.cycle)]


@pytest.mark.parametrize("idle", [False, True], ids=["apower_1000", "apower_0"])
def test_a_shelly_found_off_while_its_load_draws_is_commanded_off_every_cycle(tmp_path, caplog, idle):
    """The campaign's set-up: a Shelly on, drawing 1000 W, starts answering ``output: false``
    (its meter still showing 1000 W, or 0 W as well). Before: "found OFF ... switched off outside
    gestor", no off sent, the load on until its own timer ended. Now: ERROR, off every cycle,
    the auto-off timer never renewed, the load unknown (held off)."""
    meter, dev = ShellyPro3EM(free_port()).start(), ShellyRelayDevice(free_port(), 2, load_w=1000.0).start()
    try:
        s, clock, mgr, tasks = _shelly_house(tmp_path, dev, meter)
        run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
        assert dev.is_on() and mgr.loads[0].on
        dev.lies, dev.lies_idle_w = True, idle
        n = len(dev.requests)
        with caplog.at_level(logging.INFO, "gestor"):
            run_lockstep(clock, tasks, T0 + timedelta(minutes=4))
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(e.startswith("load water_heater: LYING RELAY: ") for e in errors), errors
        sent = dev.requests[n:]
        offs = [r for r in sent if "Switch.Set" in r and "on=false" in r]
        assert len(offs) >= 4, sent           # within the minute's 6 cycles: off, and again
        assert not any("on=true" in r for r in sent)  # its timer never renewed, never switched on
        assert not dev.is_on()                # this relay obeys the off it is sent
        assert "switched off outside gestor" not in caplog.text
        assert mgr.loads[0].on is None and mgr.loads[0].reason.startswith("LYING RELAY")
    finally:
        dev.stop()
        meter.stop()


# --- issue 32, item 5: a stop while managing runs ---------------------------------------------
def test_a_stop_between_the_latch_check_and_the_read_back_is_the_stop_not_an_off_outside_gestor(tmp_path, caplog):
    """The web stop sets the latch and switches the relay off after managing's cycle read the
    latch and before it reads the relay back (the emulator runs the stop just before answering
    that read-back). Before: "switched off outside gestor ... left off until 13:00", and after
    ``--release`` the load stayed off until the period ended. Now: off for the stop, and back on
    soon after the release."""
    import stop_loads
    from drivers.relays.shelly import ShellyRelaySettings
    from gestor.runtime.livestate import clear_latch
    meter, dev = ShellyPro3EM(free_port()).start(), ShellyRelayDevice(free_port(), 2, load_w=1000.0).start()
    try:
        s, clock, mgr, tasks = _shelly_house(tmp_path, dev, meter)
        run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
        assert dev.is_on() and mgr.loads[0].on
        target = stop_loads.Target("water_heater", ShellyRelaySettings(host=f"127.0.0.1:{dev.port}"), 1000.0)
        stopped = []

        def web_stop() -> None:  # what gestor web's stop does: the latch first, then every relay off
            stop_loads.set_the_latch(s.paths.state_dir, "web")
            stopped.extend(stop_loads.stop_all([target], stop_loads.Paths(s.paths.state_dir, s.paths.run_dir)))

        dev.before_status = web_stop
        with caplog.at_level(logging.INFO, "gestor"):
            run_lockstep(clock, tasks, T0 + timedelta(minutes=5))
            assert stopped and stopped[0].confirmed and not dev.is_on()
            assert "found OFF under the stop latch" in caplog.text
            assert "outside gestor" not in caplog.text and "LYING" not in caplog.text
            assert mgr.loads[0].on is False and mgr.loads[0].hold_off_until is None
            clear_latch(s.paths.state_dir)   # stop-loads --release
            run_lockstep(clock, tasks, T0 + timedelta(minutes=6))
        assert dev.is_on() and mgr.loads[0].on, "held off after the release"
    finally:
        dev.stop()
        meter.stop()


def test_a_relay_still_lying_past_its_bound_is_switched_on_once_then_held_again(tmp_path, caplog):
    """A welded Shelly (its timer cannot open the contact) that answers ``output: false`` and 0 W: judged
    lying, held to its dead-man bound (the period's end + 30 s), then the policy may try it once
    more. That "on" reads off: it is sent an off at once and judged lying again, held to the new
    timer's bound, never commanded on every cycle (the session-13 finding: every 20 s, each "on"
    a fresh timer)."""
    meter, dev = ShellyPro3EM(free_port()).start(), ShellyRelayDevice(free_port(), 2, load_w=1000.0).start()
    try:
        s, clock, mgr, tasks = _shelly_house(tmp_path, dev, meter)
        run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
        assert dev.is_on() and mgr.loads[0].on
        dev.lies, dev.lies_idle_w, dev.stuck = True, True, True  # its meter shows 0 W as well
        with caplog.at_level(logging.INFO, "gestor"):
            run_lockstep(clock, tasks, T0 + timedelta(minutes=5))
            assert mgr.loads[0].reason.startswith("LYING RELAY")
            n = len(dev.requests)
            run_lockstep(clock, tasks, T0 + timedelta(minutes=75))  # past 11:00:30, well into the next hour
        ons = [r for r in dev.requests[n:] if "Switch.Set" in r and "on=true" in r]
        assert len(ons) == 1, ons   # the one try after the bound, then held to the new one (12:00:30)
        assert "and was judged lying before" in caplog.text
        assert "commanded off again at once" in caplog.text
        assert mgr.loads[0].on is None and mgr.loads[0].reason.startswith("LYING RELAY")
    finally:
        dev.stop()
        meter.stop()
