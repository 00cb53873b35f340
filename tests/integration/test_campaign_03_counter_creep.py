"""Finding 03: an energy counter that over-reads a little at every reading becomes the balance.

What happens: Shelly Pro 3EM with ``use_counters: true``; the house imports 3 kW the whole time
(``net_w`` -3000 W, the import counter right), but the export counter rises 150 Wh at every 5 s
reading (108 kW, more than twice ``max_abs_power_w`` = 50 kW). Each step is under the per-reading
bound (50 kW x 5 s x 1.1 + 100 Wh of "resolution" slack = 176 Wh), so CheckedMeter passes every
reading and the balance takes every step: the period's balance climbs by 1.8 kWh a minute while the
meter shows an import, and both loads are switched on and kept on.

Class: meter counters trusted blindly (class 1): the bound is per reading, and its 100 Wh slack
is granted again at every reading (at 5 s that is 72 kWh an hour of phantom energy, at 1 s
360 kWh), so "no glitch can make a period's balance larger than the connection could have
exchanged in it" (README) does not hold for a steady one. The counters are never compared with
the reading's own ``net_w``.
Consequence: both loads run while the house imports 3 kW + the loads, for the whole period.
Severity: load left on.
"""
from __future__ import annotations

from datetime import timedelta

import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from tests.conftest import free_port, make_settings
from tests.emulators.http_devices import ShellyPro3EM
from tests.integration.test_safety import T0


def test_a_creeping_export_counter_never_switches_loads_on_while_importing(tmp_path):
    dev = ShellyPro3EM(free_port()).start()
    try:
        s = make_settings(tmp_path, meter_section={"driver": "shelly_em", "host": f"127.0.0.1:{dev.port}",
                                                   "use_counters": True})
        assert s.monitoring.interval_s == 5.0 and s.meter.max_abs_power_w == 50_000.0
        clock = SimClock(T0)
        mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
        dev.total_act_wh, dev.total_act_ret_wh = 5000.0, 7000.0
        dev.phases_w = [3000.0, 0.0, 0.0]  # Shelly: import-positive: the house imports 3 kW
        state = {"last": clock.now()}

        def feed() -> None:
            now = clock.now()
            dt_h = (now - state["last"]).total_seconds() / 3600.0
            state["last"] = now
            on_w = sum(ld.cfg.power_w for ld in mgr.loads if ld.on)
            dev.phases_w = [3000.0 + on_w, 0.0, 0.0]
            dev.total_act_wh += (3000.0 + on_w) * dt_h   # the import counter is right
            dev.total_act_ret_wh += 150.0                 # the export counter creeps

        trace = []
        mgr.start()
        run_lockstep(clock, [(5, feed), (5, mon.cycle), (10, mgr.cycle),
                             (10, lambda: trace.append((clock.now(), [ld.on for ld in mgr.loads],
                                                        mgr.balance.balance_wh)))],
                     T0 + timedelta(minutes=13))
        mgr.stop()
        on = [(t, o, round(b)) for t, o, b in trace if any(o)]
        assert not on, f"loads on while the house imported >= 3 kW: first {on[0]}, {len(on)} cycles"
        # the period's balance is at most what the connection can carry in the time covered
        assert max(b for _, _, b in trace) <= 50_000.0 * 13 / 60 * 1.1 + 100.0
    finally:
        dev.stop()
