"""Readings are checked against physics before anything uses them (issue 23, class 1): a meter
counter that jumps by more than the connection can carry never becomes the period's balance.
Real parts: a Shelly Pro 3EM emulator on loopback HTTP, the daemons' own cycles on a simulated
clock, the simulated relays."""
from __future__ import annotations

import logging
import math
from datetime import timedelta

import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.core.balance import Balance
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from tests.conftest import free_port, make_settings
from tests.emulators.http_devices import ShellyPro3EM
from tests.integration.test_safety import T0


def test_an_export_counter_glitch_of_a_million_wh_never_keeps_the_loads_on(tmp_path, caplog):
    """Shelly EM with use_counters: 10 min exporting 5 kW (both loads go on), then the house
    imports 3 kW and, in one reading, the export counter jumps +1,000,000 Wh (3.6 GW for a
    second). Before: that became the period's balance (+999,963 Wh) and both loads stayed on."""
    dev = ShellyPro3EM(free_port()).start()
    try:
        s = make_settings(tmp_path, meter_section={"driver": "shelly_em", "host": f"127.0.0.1:{dev.port}",
                                                   "use_counters": True})
        clock = SimClock(T0)
        mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
        dev.total_act_wh, dev.total_act_ret_wh = 5000.0, 7000.0
        state = {"last": clock.now(), "net_w": 5000.0, "glitched": False}
        import_from = T0 + timedelta(minutes=10)

        def feed() -> None:  # the device's counters follow its power; one glitch after the import starts
            now = clock.now()
            dt_h = (now - state["last"]).total_seconds() / 3600.0
            state["last"] = now
            net = state["net_w"]
            if net >= 0:
                dev.total_act_ret_wh += net * dt_h
            else:
                dev.total_act_wh += -net * dt_h
            state["net_w"] = 5000.0 if now < import_from else -3000.0
            dev.phases_w = [-state["net_w"], 0.0, 0.0]  # Shelly: import-positive
            if now >= import_from + timedelta(seconds=20) and not state["glitched"]:
                dev.total_act_ret_wh += 1_000_000.0
                state["glitched"] = True

        on_at_import = []
        trace = []

        def record() -> None:
            trace.append((clock.now(), [ld.on for ld in mgr.loads], mgr.balance.balance_wh))
            if clock.now() == import_from:
                on_at_import.extend(ld.on for ld in mgr.loads)

        mgr.start()
        with caplog.at_level(logging.WARNING, "gestor"):
            run_lockstep(clock, [(5, feed), (5, mon.cycle), (10, mgr.cycle), (10, record)],
                         T0 + timedelta(minutes=13))
        mgr.stop()
        assert state["glitched"]
        assert on_at_import == [True, True]  # the surplus ran both loads before the import
        # 3 kW of import: every load off within 90 s (steady_surplus's 150 s median needs that long
        # to see it), and off for the rest of the period
        late = [(t, on) for t, on, _ in trace if t >= import_from + timedelta(seconds=90)]
        assert late and all(not any(on) for _, on in late), late
        # the period's balance stays what the connection can carry: 10 min x 5 kW at most
        assert max(b for _, _, b in trace) < 5000.0 * 13 / 60
        assert "export_wh_total rose" in caplog.text and "max_abs_power_w=50000 W can carry" in caplog.text
    finally:
        dev.stop()


def test_the_balance_never_takes_a_counter_step_the_connection_cannot_carry():
    """A counter step beyond max_power_w over the interval is integrated from net_w instead (a
    reading that reaches managing some other way than through monitoring's check)."""
    b = Balance(3600, "Europe/Madrid", 120.0, max_power_w=10_000.0)
    t0 = T0.timestamp()
    b.update_s(t0, -3000.0, None, None, 100.0, 200.0)
    b.update_s(t0 + 10, -3000.0, None, None, 108.4, 1_000_200.0)   # +1e6 Wh export in 10 s: refused
    assert math.isclose(b.balance_wh, -3000.0 * 10 / 3600)
    b.update_s(t0 + 20, -3000.0, None, None, 116.7, 1_000_200.0)   # plausible again: counters
    assert math.isclose(b.balance_wh, -3000.0 * 10 / 3600 - 8.3, rel_tol=1e-9)
    b.update_s(t0 + 30, -3000.0, None, None, 116.7 + 30.0, 1_000_200.0)  # 30 Wh in 10 s = 10.8 kW: within slack
    assert b.current.source == "counters"


def test_a_negative_energy_counter_is_a_failed_read_where_it_is_read():
    """A register map with ``sign: -1`` on a counter gave readings monitoring stored and managing
    refused as out of bounds (a stale meter for ever, found only there): now monitoring's check
    refuses them at once, one line naming the counter."""
    import pytest

    from drivers.meters.base import CheckedMeter, MeterError, Reading

    class Device:  # a meter answering what a wrong map makes of its registers
        def read(self) -> Reading:
            return Reading(T0, -500.0, import_wh_total=-1234.5, export_wh_total=10.0)

        def close(self) -> None:
            pass

    with pytest.raises(MeterError, match="import_wh_total is negative"):
        CheckedMeter(Device(), 50_000.0).read()
