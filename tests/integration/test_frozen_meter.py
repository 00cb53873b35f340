"""Issue 32 items 2 and 3, end to end: the real daemons' cycles (monitoring reading a Shelly Pro 3EM
HTTP emulator on loopback, managing with simulated relays and a simulated battery) on a simulated
clock.

2. A frozen meter (a cached value: the same power and counters, answered for ever) goes stale:
   every load off and every setpoint device idle once its readings have been identical for
   ``meter.frozen_after_s`` (plus a monitoring and a managing cycle), logged once; so do counters
   that stand still while the power flows. And no real recording of shared/data trips the rule.
3. A counter creeping within the old slack does not become the balance: importing 200 W for a whole
   hour with a creeping export counter books about -200 Wh (it booked +20 Wh).
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import managing
import monitoring
from drivers import DriverContext
from drivers.meters.base import FROZEN_AFTER_S, CheckedMeter, MeterFrozen, Reading
from drivers.meters.replay import ReplayData, ReplaySettings
from drivers.relays.simulated import SimulatedRelay, SimulatedRelaySettings
from drivers.setpoints.simulated import SimulatedSetpoint, SimulatedSetpointSettings
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from tests.conftest import DATA, free_port, make_settings
from tests.emulators.house import ShellyHouse
from tests.emulators.http_devices import ShellyPro3EM

UTC = timezone.utc
T0 = datetime(2022, 6, 11, 10, 0, 0, tzinfo=UTC)   # 12:00 in Madrid: a period starts
BATTERY = {"driver": "simulated", "kind": "battery", "capacity_wh": 5000, "soc_pct": 50, "max_charge_w": 2500,
           "max_discharge_w": 2500, "min_soc_pct": 10, "max_soc_pct": 95, "hold_s": 30}
LOADS = [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "simulated"}},
         {"name": "pool_pump", "power_w": 700, "relay": {"driver": "simulated"}}]


class Site:
    """The daemons, the Shelly and the house behind it; ``physical``: the relays and the battery as
    they are (their state files on the same clock)."""

    def __init__(self, tmp: Path, base_w: float, use_counters: bool = True, setpoints: bool = True,
                 frozen_after_s: float | None = None, **over) -> None:
        self.dev = ShellyPro3EM(free_port()).start()
        self.s = make_settings(tmp, meter_section={"driver": "shelly_em", "host": f"127.0.0.1:{self.dev.port}",
                                                   "use_counters": use_counters, "frozen_after_s": frozen_after_s},
                               loads=LOADS, setpoints=[{"name": "battery", "device": BATTERY}] if setpoints else [], **over)
        self.clock = SimClock(T0)
        self.house = ShellyHouse(self.dev, self.clock, self.s.paths.run_dir, base_w)
        self.mon = monitoring.Monitoring(self.s, self.clock, NullStore())
        self.mgr = managing.Managing(self.s, self.clock, NullStore())
        ctx = DriverContext(self.clock, self.s.paths.run_dir, tmp)
        self.relays = [SimulatedRelay(SimulatedRelaySettings(), ctx, ld["name"], ld["power_w"]) for ld in LOADS]
        ok = {k: v for k, v in BATTERY.items() if k != "fault"}
        self.battery = (SimulatedSetpoint(SimulatedSetpointSettings.model_validate(ok), ctx, "battery")
                        if setpoints else None)
        self.closed = []   # the settlement periods managing closed (its own PeriodSummary objects)
        self._current = None
        self.mgr.start()

    def run(self, minutes: float, check=None) -> None:
        def mgr_cycle():
            self.mgr.cycle()
            cur = self.mgr.balance.current
            if self._current is not None and cur is not self._current:
                self.closed.append(self._current)
            self._current = cur
        every_s = self.s.monitoring.interval_s
        tasks = [(every_s, self.house.feed), (every_s, self.mon.cycle), (self.s.managing.interval_s, mgr_cycle)]
        if check is not None:
            tasks.append((every_s, check))
        run_lockstep(self.clock, tasks, self.clock.now() + timedelta(minutes=minutes))

    def anything_on(self) -> bool:
        """A load on (as it is, or as managing believes) or the battery holding a setpoint."""
        return (any(r.state() for r in self.relays) or any(ld.on for ld in self.mgr.loads)
                or (self.battery is not None and self.battery.state().setpoint_w != 0.0)
                or any(d.setpoint_w not in (0.0, None) for d in self.mgr.setpoints.devices))

    def close(self) -> None:
        self.mgr.stop()
        self.mon.close()
        self.dev.stop()


def test_a_frozen_shelly_switches_the_loads_off_and_idles_the_battery_once_past_the_bound(tmp_path, caplog):
    """A house exporting 4 kW: both loads on and the battery charging; then the Shelly answers a
    cached value. Nothing changes before the bound (a real meter can repeat itself for a while);
    past ``frozen_after_s`` + a monitoring and a managing cycle everything is off and idle,
    because the meter is stale (one rule); logged once. When the Shelly thaws, control resumes.
    Counters off (the driver's default)."""
    site = Site(tmp_path, base_w=-4000.0, use_counters=False)
    try:
        bound_s = site.s.meter.frozen_s(site.s.monitoring.interval_s)
        assert bound_s == FROZEN_AFTER_S == 60.0
        site.run(5)
        assert all(ld.on for ld in site.mgr.loads) and site.battery.state().setpoint_w > 0
        site.house.frozen = True
        frozen_at = site.clock.now()
        seen = {"early_on": False, "late": []}

        def check():
            since = (site.clock.now() - frozen_at).total_seconds()
            if since <= bound_s - 10:
                seen["early_on"] = seen["early_on"] or all(ld.on for ld in site.mgr.loads)
            if since > bound_s + site.s.monitoring.interval_s + site.s.managing.interval_s:
                seen["late"].append(site.anything_on())
        with caplog.at_level(logging.INFO, "gestor"):
            site.run(4, check)
            assert seen["early_on"], "the loads went off before the bound"
            assert seen["late"] and not any(seen["late"]), "a load on or the battery charging from a frozen meter"
            assert all("meter stale" in ld.reason for ld in site.mgr.loads)
            assert caplog.text.count("METER FROZEN") == 1 and "more than meter.frozen_after_s = 60 s" in caplog.text
            site.house.frozen = False
            site.run(3)
        assert "meter readings move again" in caplog.text
        assert site.battery.state().setpoint_w > 0 and not any("meter stale" in ld.reason for ld in site.mgr.loads)
    finally:
        site.close()


def test_a_bound_shorter_than_stale_after_s_is_kept(tmp_path):
    """``frozen_after_s: 30`` with ``stale_after_s: 60``: everything off and idle 30 s (+ a cycle
    each) after the values froze, not when the last good reading is 60 s old."""
    site = Site(tmp_path, base_w=-4000.0, use_counters=False, frozen_after_s=30.0)
    try:
        site.run(3)
        assert all(ld.on for ld in site.mgr.loads)
        site.house.frozen = True
        frozen_at, late = site.clock.now(), []

        def check():
            if (site.clock.now() - frozen_at).total_seconds() > 30 + 5 + 10:
                late.append(site.anything_on())
        site.run(1.5, check)
        assert late and not any(late)
    finally:
        site.close()


def test_counters_standing_still_while_the_power_flows_make_the_meter_stale(tmp_path, caplog):
    """The Shelly's power moves (1 W of noise on 300 W imported), its counters do not: once they have
    stood still for ``frozen_after_s`` while the power says more than 3 x 1 Wh went through, the
    meter is stale: no load, the battery idle."""
    site = Site(tmp_path, base_w=300.0)
    try:
        site.run(3)
        assert site.battery.state().setpoint_w < 0  # discharging into the house
        site.house.counters_stuck = True
        stuck_at = site.clock.now()
        late = []
        # 60 s (3 Wh at 300 W take 36 s), from the reading before; then a monitoring and a managing cycle
        bound_s = FROZEN_AFTER_S + site.s.monitoring.interval_s * 2 + site.s.managing.interval_s

        def check():
            if (site.clock.now() - stuck_at).total_seconds() > bound_s:
                late.append(site.anything_on())
        with caplog.at_level(logging.INFO, "gestor"):
            site.run(3, check)
        assert late and not any(late), "a load on or the battery discharging with stuck counters"
        assert "setpoint battery IDLE: meter stale (no reading, or the meter frozen)" in caplog.text
        assert caplog.text.count("METER FROZEN: meter's counters stuck") == 1
    finally:
        site.close()


def test_an_hour_importing_200_w_with_a_creeping_export_counter_books_minus_200_wh(tmp_path, caplog):
    """The issue's case through the daemons: 12:00-13:00 in Madrid, the house imports 200 W (no
    load runs, no battery), the Shelly's export counter over-reads by 210 W: within the old slack
    of 200 Wh + 10 %, it was booked +10 Wh (the issue's +20 Wh at 220 W, the slack's very edge);
    now the counters are refused within minutes, the log names both rates, and the period books
    the integrated net power. (Read every 10 s, decided every 30 s: the
    hour in half the time.)"""
    site = Site(tmp_path, base_w=200.0, setpoints=False, monitoring={"interval_s": 10},
                managing={"interval_s": 30})
    try:
        site.house.creep_w = 210.0
        with caplog.at_level(logging.ERROR, "gestor"):
            site.run(60 + 0.5)
        assert len(site.closed) == 1
        p = site.closed[0]
        assert p.complete and p.counters_refused
        assert p.balance_wh == pytest.approx(-200.0, abs=2.0)
        assert "energy counters disagree" in caplog.text and "+10 W" in caplog.text and "-200 W" in caplog.text
    finally:
        site.close()


def test_counters_that_agree_are_still_the_balance(tmp_path):
    """A quarter-hour period importing 200 W with the counters right (and the power's watt of
    noise): the period is booked from them."""
    site = Site(tmp_path, base_w=200.0, setpoints=False, billing={"period_s": 900})
    try:
        site.run(15 + 0.5)
        p = site.closed[0]
        assert p.source == "counters" and not p.counters_refused, p.refused_why
        assert p.balance_wh == pytest.approx(-50.0, abs=1.0)
    finally:
        site.close()


class _Recorded:
    """A meter that answers a recording's readings in turn (the real replay data, no clock)."""

    def __init__(self, readings) -> None:
        self.readings = iter(readings)

    def read(self) -> Reading:
        return next(self.readings)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.csv")))
def test_no_real_recording_trips_the_frozen_rule_at_its_default(name):
    """Every reading of the nine recordings (10 s samples) through the frozen check at the default
    bound: none is frozen (the longest run of identical readings is 20 s)."""
    winter = name.startswith("winter")
    s = ReplaySettings(path=DATA / name, **({"net_column": "powerLB", "net_sign": "import_positive",
                                             "consumption_column": None} if winter else
                                            {"subtract_columns": ["powerL1", "powerL2"]}))
    data = ReplayData.load(s)
    meter = CheckedMeter(_Recorded(data.readings()), s.max_abs_power_w, s.counter_resolution_wh, FROZEN_AFTER_S)
    n = 0
    while True:
        try:
            meter.read()
        except StopIteration:
            break
        except MeterFrozen as e:  # pragma: no cover - the failure
            pytest.fail(f"{name}: {e}")
        n += 1
    assert n > 5_000 and not math.isinf(FROZEN_AFTER_S)
