"""A reading is attributed to the loads' state when it was measured (issue 23: runaway switching
on the installed example). The replay meter plays a sample measured at t and adds the simulated
loads' power; managing adds back the loads' power at t. When a switch fell between the sample's
time and its read, the two disagreed by the load's power; once a load switched at every cycle,
every sample disagreed and kept it switching (the water heater, every 10 s cycle after a restart).
Real parts: the daemons' own cycles, the replay meter, the simulated relays."""
from __future__ import annotations

from datetime import timedelta

import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from tests.conftest import make_settings, write_csv
from tests.integration.test_safety import HEADER, T0

BASE_NET_W = {True: 3500.0, False: -300.0}  # production 4000 or 200 W, consumption 500 W


def square_csv(path, minutes: int):
    """Sunny and overcast by turns, 3 minutes each: the loads go on and off many times."""
    rows = []
    for i in range(minutes * 6):
        t = T0 + timedelta(seconds=10 * i)
        sunny = (i // 18) % 2 == 0
        rows.append(f"{t:%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,{4000 if sunny else 200},0,0,0")
    return write_csv(path, HEADER, rows)


def test_a_reading_carries_the_loads_as_they_were_when_its_sample_was_measured(tmp_path):
    """Monitoring reads 4 s after each 10 s sample, managing decides 3 s after it (phases as after
    a restart of the daemons), so every switch falls between a sample and its read."""
    s = make_settings(tmp_path, meter={"path": str(square_csv(tmp_path / "sq.csv", 40))})
    clock = SimClock(T0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    power = {ld.name: ld.cfg.power_w for ld in mgr.loads}
    mgr.start()
    events = sorted([(k * 5 + 4, 0) for k in range(470)] + [(k * 10 + 3, 1) for k in range(235)])
    readings, switches = [], []   # (reading), (time, load, on)
    for offset_s, which in events:
        clock.set(T0 + timedelta(seconds=offset_s))
        if which == 0:
            r = mon.cycle()
            if r is not None and (not readings or r.at > readings[-1][0].at):
                readings.append((r, clock.now()))
        else:
            before = {ld.name: ld.on for ld in mgr.loads}
            mgr.cycle()
            switches += [(clock.now(), ld.name, ld.on) for ld in mgr.loads if ld.on != before[ld.name]]
    mgr.stop()

    def on_w_at(t):  # the loads' W from the switches made strictly before t
        state = dict.fromkeys(power, False)
        for when, name, on in switches:
            if when < t:
                state[name] = bool(on)
        return sum(power[n] for n, on in state.items() if on)

    between = [r for r, read_at in readings if any(r.at <= when < read_at for when, _, _ in switches)]
    assert len(switches) >= 6 and len(between) >= 3, "no switch fell between a sample and its read: no test"
    wrong = []
    for r, _ in readings:
        sunny = ((r.at - T0).total_seconds() // 10 // 18) % 2 == 0
        if abs(r.net_w + on_w_at(r.at) - BASE_NET_W[sunny]) > 1e-6:
            wrong.append((r.at, r.net_w, on_w_at(r.at)))
    assert not wrong, f"{len(wrong)} readings carry the loads of another moment: {wrong[:3]}"
