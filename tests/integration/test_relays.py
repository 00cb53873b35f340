"""Relay drivers against real parts (gpiozero's MockFactory pins, Shelly emulators on loopback
HTTP, a pymodbus server with coils) driven by the real managing daemon on a simulated clock, and
the guards a user relies on: overrides, windows, priority, max switches, daily minimum run,
relay faults with retry and backoff, the stop button."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

import managing
import monitoring
from drivers.store.influx import InfluxStore, NullStore
from gestor.cli import main as gestor_main
from gestor.clock import SimClock
from gestor.runtime.livestate import is_latched
from gestor.sim.lockstep import run_lockstep
from gestor.core.policies import Wish
from tests.conftest import free_port, make_settings, settings_file, write_csv
from tests.emulators.http_devices import ShellyRelayDevice
from tests.emulators.modbus_server import RegisterServer
from tests.integration.test_safety import HEADER, T0, sunny_csv

UTC = timezone.utc


@pytest.fixture
def pins():
    prev = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = prev


def daemons(tmp_path, csv, loads, **overrides):
    s = make_settings(tmp_path, meter={"path": str(csv)}, loads=loads, **overrides)
    clock = SimClock(T0)
    store = overrides.pop("_store", None) or NullStore()
    mon = monitoring.Monitoring(s, clock, store)
    mgr = managing.Managing(s, clock, store)
    return s, clock, mon, mgr


def two_loads(relay_a: dict, relay_b: dict, **extra) -> list[dict]:
    return [{"name": "water_heater", "power_w": 1000, "relay": relay_a, **extra},
            {"name": "pool_pump", "power_w": 700, "relay": relay_b, **extra}]


def levels(pin) -> list[bool]:
    out = [bool(s.state) for s in pin.states]
    return [v for i, v in enumerate(out) if i == 0 or out[i - 1] != v]


# --- drivers ---------------------------------------------------------------------------------
def test_gpio_relays_pin_history_off_on_off(tmp_path, pins):
    csv = sunny_csv(tmp_path / "sun.csv", 20)
    s, clock, mon, mgr = daemons(tmp_path, csv, two_loads({"driver": "gpio", "pin": 17},
                                                         {"driver": "gpio", "pin": 27, "active_high": False}))
    mgr.start()
    p17, p27 = pins.pin(17), pins.pin(27)
    assert p17.state is False and p27.state is True   # both relays off from the start (27 is active-low)
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=5))
    assert all(ld.on for ld in mgr.loads)
    assert p17.state is True and p27.state is False
    mgr.stop()
    assert levels(p17) == [False, True, False]        # never on before the policy, off at exit
    # before the claim the line is an undriven input (reads low); claimed, it is driven high = off
    assert levels(p27) == [False, True, False, True]


def test_shelly_gen2_relays_carry_a_refreshed_dead_man_timer(tmp_path, influxd, influx_db):
    a, b = ShellyRelayDevice(free_port(), 2, 998.0).start(), ShellyRelayDevice(free_port(), 2, 702.0).start()
    try:
        csv = sunny_csv(tmp_path / "sun.csv", 20)
        store = InfluxStore.from_settings(make_settings(tmp_path, influxd, influx_db).store).open()
        s = make_settings(tmp_path, influxd, influx_db, meter={"path": str(csv)},
                          loads=two_loads({"driver": "shelly", "host": f"127.0.0.1:{a.port}"},
                                          {"driver": "shelly", "host": f"127.0.0.1:{b.port}"}))
        clock = SimClock(T0)
        mon, mgr = monitoring.Monitoring(s, clock, store), managing.Managing(s, clock, store)
        mgr.start()
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=5))
        assert a.is_on() and b.is_on()
        # every cycle renews the timer: the rest of the hour plus 3 cycles, shrinking as the hour goes
        assert len(a.timers) >= 20
        assert a.timers[-1] == pytest.approx(3600 - 5 * 60 + 30, abs=15)
        assert a.timers[0] > a.timers[-1]
        mgr.stop()
        assert not a.is_on() and not b.is_on()
        assert store.flush(30)
        store.close()
        c = influxd.client(influx_db)
        pts = list(c.query("SELECT measured_power_w FROM load WHERE \"load\"='water_heater' AND \"on\"=true").get_points())
        c.close()
        assert pts and all(p["measured_power_w"] == 998.0 for p in pts)
    finally:
        a.stop()
        b.stop()


def test_shelly_switches_itself_off_when_the_pi_dies(tmp_path):
    """The device's own timer, on the simulated clock: the shortest cap (60 s) is what managing
    sends; after managing dies nobody renews it, and the Shelly is off within it."""
    dev = ShellyRelayDevice(free_port(), 1).start()
    try:
        csv = sunny_csv(tmp_path / "sun.csv", 20)
        s, clock, mon, mgr = daemons(tmp_path, csv, [
            {"name": "water_heater", "power_w": 1000,
             "relay": {"driver": "shelly", "generation": 1, "host": f"127.0.0.1:{dev.port}", "max_auto_off_s": 60}}])
        dev.clock = clock.monotonic
        mgr.start()
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=2))
        mgr.cycle()  # its last renewal
        assert dev.is_on() and dev.timers[-1] == 60
        # managing dies here: nobody renews the timer
        clock.advance(59)
        assert dev.is_on()
        clock.advance(1)
        assert not dev.is_on()
    finally:
        dev.stop()


def test_the_dead_man_timer_is_always_sent_within_its_floor_and_ceiling():
    """An "on" always carries a whole-second timer within [60, min(max_auto_off_s, 7200)] s:
    int(0.5) = 0 once meant no timer at all (issue 23, class 3)."""
    from drivers.relays.shelly import dead_man_s
    assert dead_man_s(0.5, 4200) == 60
    assert dead_man_s(None, 4200) == 4200 and dead_man_s(float("inf"), 1e9) == 7200
    assert dead_man_s(3630.2, 4200) == 3631 and dead_man_s(3630.2, 600) == 600
    assert dead_man_s(-5, 60) == 60


def test_modbus_coil_relays_and_a_stuck_coil(tmp_path, caplog):
    srv = RegisterServer({}).start_tcp(free_port())
    try:
        csv = sunny_csv(tmp_path / "sun.csv", 20)
        link = {"driver": "modbus_coil", "host": "127.0.0.1", "port": srv.address[1]}
        s, clock, mon, mgr = daemons(tmp_path, csv, two_loads({**link, "coil": 0}, {**link, "coil": 1}))
        mgr.start()
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=3))
        assert srv.coils[:2] == [True, True]
        srv.freeze_coils = True   # welded contacts: writes acknowledged, state stays on
        with caplog.at_level(logging.INFO, "gestor"):
            assert mgr.stop() is False
        assert "relay reads on after commanding off" in caplog.text
        assert all(ld.on is None for ld in mgr.loads)
    finally:
        srv.close()


# --- faults: retried with backoff, logged, stored, off -----------------------------------------
def test_relay_fault_is_retried_with_backoff_logged_and_stored(tmp_path, influxd, influx_db, caplog):
    dev = ShellyRelayDevice(free_port(), 2).start()
    ok = ShellyRelayDevice(free_port(), 2).start()
    try:
        csv = sunny_csv(tmp_path / "sun.csv", 30)
        store = InfluxStore.from_settings(make_settings(tmp_path, influxd, influx_db).store).open()
        s = make_settings(tmp_path, influxd, influx_db, meter={"path": str(csv)},
                          loads=two_loads({"driver": "shelly", "host": f"127.0.0.1:{dev.port}", "timeout_s": 0.3},
                                          {"driver": "shelly", "host": f"127.0.0.1:{ok.port}"}),
                          managing={"relay_retry_max_s": 80})
        clock = SimClock(T0)
        mon, mgr = monitoring.Monitoring(s, clock, store), managing.Managing(s, clock, store)
        mgr.start()
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=3))
        assert dev.is_on()
        dev.stop()   # the water heater's Shelly drops off the network
        n0 = len(dev.requests)
        attempts: list[datetime] = []

        def watch():
            if mgr.loads[0].failures and (not attempts or mgr.loads[0].failures > len(attempts)):
                attempts.append(clock.now())
        with caplog.at_level(logging.INFO, "gestor"):
            run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle), (10, watch)], T0 + timedelta(minutes=12))
            gaps = [(b - a).total_seconds() for a, b in zip(attempts, attempts[1:])]
            assert gaps[:3] == [10, 20, 40] and max(gaps) <= 80   # backoff, capped
            assert mgr.loads[0].on is None and ok.is_on()          # the other load is not affected
            dev.start()
            run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=15))
        assert len(dev.requests) > n0
        assert "load water_heater FAILED (1 in a row)" in caplog.text and "retry in 20 s" in caplog.text
        assert "relay confirmed again" in caplog.text
        assert mgr.loads[0].on is not None
        mgr.stop()
        assert store.flush(30)
        store.close()
        c = influxd.client(influx_db)
        bad = list(c.query("SELECT * FROM decision WHERE ok=false").get_points())
        c.close()
        assert bad and all(p["load"] == "water_heater" and p["error"] for p in bad)
    finally:
        dev.stop()
        ok.stop()


# --- guards ----------------------------------------------------------------------------------
def sim(tmp_path, csv, minutes, loads, start=T0, **overrides):
    s = make_settings(tmp_path, meter={"path": str(csv)}, loads=loads, **overrides)
    clock = SimClock(start)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    trace: list[tuple[datetime, tuple, tuple]] = []
    mgr.start()
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle),
                         (10, lambda: trace.append((clock.now(), tuple(ld.on for ld in mgr.loads),
                                                    tuple(ld.reason for ld in mgr.loads))))],
                 start + timedelta(minutes=minutes))
    mgr.stop()
    return s, mgr, trace


SIM = {"driver": "simulated"}


def test_override_on_off_auto_and_expiry(tmp_path, capsys):
    csv = sunny_csv(tmp_path / "sun.csv", 60)
    f = settings_file(tmp_path, meter_updates={"path": str(csv), "loop": True})
    s = make_settings(tmp_path, meter={"path": str(csv)})
    clock = SimClock(T0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    mgr.start()
    tasks = [(5, mon.cycle), (10, mgr.cycle)]
    run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
    assert [ld.on for ld in mgr.loads] == [True, True]
    assert gestor_main(["override", "water_heater", "off", "--config", str(f)]) == 0
    assert "manual override off" in capsys.readouterr().out
    run_lockstep(clock, tasks, T0 + timedelta(minutes=4))
    assert [ld.on for ld in mgr.loads] == [False, True]
    assert "manual override off" in mgr.loads[0].reason
    assert gestor_main(["override", "water_heater", "auto", "--config", str(f)]) == 0
    run_lockstep(clock, tasks, T0 + timedelta(minutes=5))
    assert mgr.loads[0].on is True
    assert gestor_main(["override", "nope", "on", "--config", str(f)]) == 1
    assert "no load named 'nope'" in capsys.readouterr().err
    assert gestor_main(["override", "pool_pump", "on", "--for", "soon", "--config", str(f)]) == 1


def test_override_on_without_surplus_for_a_while(tmp_path):
    from gestor.runtime.overrides import set_override
    night = write_csv(tmp_path / "night.csv", HEADER, [
        f"{T0 + timedelta(seconds=10 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,0,0,0,-500" for i in range(6 * 40)])
    s = make_settings(tmp_path, meter={"path": str(night)})
    set_override(s.paths.state_dir, "pool_pump", "on", T0, timedelta(minutes=20))
    s, mgr, trace = sim(tmp_path, night, 30, s.model_dump()["loads"])
    on = [t for t, st, _ in trace if st[1]]
    assert on and on[0] - T0 <= timedelta(seconds=10) and T0 + timedelta(minutes=19) < on[-1] <= T0 + timedelta(minutes=20)
    assert all(not st[0] for _, st, _ in trace)              # the other load follows the policy: off
    assert "manual override on until" in [r for t, st, r in trace if st[1]][0][1]


def test_windows_switch_off_at_the_end_of_a_window(tmp_path):
    csv = sunny_csv(tmp_path / "sun.csv", 30)   # T0 is 12:00 in Madrid (CEST)
    loads = [{"name": "water_heater", "power_w": 1000, "relay": SIM, "windows": ["12:05-12:15"]},
             {"name": "pool_pump", "power_w": 700, "relay": SIM}]
    s, mgr, trace = sim(tmp_path, csv, 25, loads)
    wh_on = [t for t, st, _ in trace if st[0]]
    assert wh_on[0] >= T0 + timedelta(minutes=5) and wh_on[-1] < T0 + timedelta(minutes=15)
    assert any("outside its windows 12:05-12:15" in r[0] for t, st, r in trace if t > T0 + timedelta(minutes=15))
    assert all(st[1] for t, st, _ in trace if t > T0 + timedelta(minutes=1))   # no window: unaffected


def test_what_managing_commands_outside_a_window_says_why(tmp_path):
    # every cycle before and after the window, the heater is commanded off "outside its windows",
    # also in the cycles where nothing changes (the core works those reasons out only when asked)
    csv = sunny_csv(tmp_path / "sun.csv", 30)   # T0 is 12:00 in Madrid (CEST)
    loads = [{"name": "water_heater", "power_w": 1000, "relay": SIM, "windows": ["12:05-12:15"]},
             {"name": "pool_pump", "power_w": 700, "relay": SIM}]
    s = make_settings(tmp_path, meter={"path": str(csv)}, loads=loads)
    clock = SimClock(T0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    out: list[tuple[datetime, Wish]] = []
    mgr.start()
    run_lockstep(clock, [(5, mon.cycle), (10, lambda: out.append((clock.now(), mgr.cycle()[0])))],
                 T0 + timedelta(minutes=25))
    mgr.stop()
    outside = [w for t, w in out if T0 + timedelta(seconds=30) <= t < T0 + timedelta(minutes=5)
               or t >= T0 + timedelta(minutes=15)]
    assert len(outside) > 80 and all(not w.on and w.reason == "outside its windows 12:05-12:15" for w in outside), \
        {(w.on, w.reason) for w in outside}
    assert any(w.on for t, w in out)  # and inside it the sun runs it


def test_priority_puts_the_pool_pump_first(tmp_path):
    # 1400 W produced, 500 W base: 900 W surplus, room for the 700 W pump, not the 1000 W heater
    rows = [f"{T0 + timedelta(seconds=10 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,1400,0,0,900" for i in range(6 * 30)]
    csv = write_csv(tmp_path / "mild.csv", HEADER, rows)
    base = [{"name": "water_heater", "power_w": 1000, "relay": SIM}, {"name": "pool_pump", "power_w": 700, "relay": SIM}]
    _, mgr, trace = sim(tmp_path / "a", csv, 20, base)
    first = next(st for t, st, _ in trace if any(st))
    assert [ld.name for ld in mgr.loads] == ["water_heater", "pool_pump"] and first == (True, False)
    prio = [{**base[0], "priority": 2}, {**base[1], "priority": 1}]
    _, mgr, trace = sim(tmp_path / "b", csv, 20, prio)
    first = next(st for t, st, _ in trace if any(st))
    assert [ld.name for ld in mgr.loads] == ["pool_pump", "water_heater"] and first == (True, False)


def test_max_switches_per_period_holds_a_flapping_load(tmp_path):
    # surplus that comes and goes every 2 minutes
    rows = [f"{T0 + timedelta(seconds=10 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,{4000 if (i // 12) % 2 == 0 else 0},0,0,0"
            for i in range(6 * 60)]
    csv = write_csv(tmp_path / "flap.csv", HEADER, rows)
    load = {"name": "water_heater", "power_w": 1000, "relay": SIM}
    _, free, _ = sim(tmp_path / "a", csv, 50, [load])
    s = make_settings(tmp_path / "b", meter={"path": str(csv)}, loads=[{**load, "max_switches_per_period": 3}])
    clock = SimClock(T0)
    mon, held = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    reasons: list[str] = []
    held.start()
    run_lockstep(clock, [(5, mon.cycle), (10, lambda: reasons.extend(w.reason for w in held.cycle()))],
                 T0 + timedelta(minutes=50))
    assert free.relays.switches_total > 6
    # the cap stops switches on; the off that follows the third switch is still allowed (a cap
    # never keeps a load importing), so at most 3 + 1
    assert held.relays.switches_total <= 4
    assert any("max_switches_per_period 3 reached: stays off" in r for r in reasons)


def cloudy_min_run_day(tmp_path, **settings) -> list[tuple[datetime, bool, str]]:
    """A cloudy Monday (2026-11-23): no surplus at all; the water heater needs 2 h by 21:00 local
    (CET). managing and monitoring every 30 s from local midnight to 21:30; (time, on, reason)
    every 30 s. ``settings`` are merged into the settings (e.g. prices)."""
    start = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)           # 00:00 Madrid
    rows = [f"{start + timedelta(seconds=60 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,400,0,0,0,-400"
            for i in range(60 * 22)]
    csv = write_csv(tmp_path / "cloudy.csv", HEADER, rows)
    loads = [{"name": "water_heater", "power_w": 1000, "relay": SIM, "min_run_s": 7200, "min_run_by": "21:00"}]
    s = make_settings(tmp_path, meter={"path": str(csv)}, loads=loads, monitoring={"interval_s": 30},
                      managing={"interval_s": 30, "stale_after_s": 300}, **settings)
    clock = SimClock(start)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    trace = []
    mgr.start()
    run_lockstep(clock, [(30, mon.cycle), (30, mgr.cycle),
                         (30, lambda: trace.append((clock.now(), mgr.loads[0].on, mgr.loads[0].reason)))],
                 start + timedelta(hours=21, minutes=30))
    mgr.stop()
    return trace


def test_daily_minimum_runs_in_the_cheapest_hours_before_the_deadline(tmp_path):
    trace = cloudy_min_run_day(tmp_path)
    on = [t for t, o, _ in trace if o]
    # P3 (valle) is 00-08 h on weekdays: the latest two P3 hours, 06:00-08:00 local = 05-07 UTC
    assert on[0] == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    assert on[-1] == datetime(2026, 11, 23, 6, 59, 30, tzinfo=UTC)
    assert len(on) == 240  # one trace every 30 s for 2 h
    assert "daily minimum" in next(r for t, o, r in trace if o) and "P3" in next(r for t, o, r in trace if o)


# --- stop button -----------------------------------------------------------------------------
def test_stop_button_sets_the_latch_and_switches_off(tmp_path, pins):
    csv = sunny_csv(tmp_path / "sun.csv", 20)
    s, clock, mon, mgr = daemons(tmp_path, csv, two_loads(SIM, SIM), managing={"stop_button_pin": 22})
    mgr.start()
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=3))
    assert all(ld.on for ld in mgr.loads)
    pins.pin(22).drive_low()       # pressed (pull-up, button to ground)
    deadline = time.monotonic() + 2
    while any(ld.on for ld in mgr.loads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(ld.on for ld in mgr.loads) and is_latched(s.paths.state_dir)
    pins.pin(22).drive_high()
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=6))
    assert not any(ld.on for ld in mgr.loads)     # the latch holds after release of the button
    mgr.stop()
