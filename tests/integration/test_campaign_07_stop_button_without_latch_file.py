"""Finding 07: the stop button (and the MQTT stop) holds the loads off only while the latch file
can be written; on a read-only state directory the loads are back on 30 s later.

What happens: the SD card has gone read-only (EROFS, a common Pi failure; the README promises
both daemons keep controlling on a read-only disk). The household presses the stop button:
``Managing.emergency_stop`` logs "stop latch NOT set ... (switching off anyway)" and switches every
load off. The latch lives only in ``<state_dir>/stop.latch``; at the next cycles nothing
remembers the stop, and once ``SWITCH_FLOOR_S`` (30 s) has passed the policy switches the loads on
again. The MQTT stop (``gestor/<site>/stop/set`` STOP, Home Assistant's button) takes the same path.

Class: the emergency stop's state kept in one place that may fail (class 2 inside managing).
Consequence: a pressed emergency stop lasts 30 s; the loads run again while the household
believes them stopped (nothing on the wall says otherwise).
Severity: load left on.
"""
from __future__ import annotations

import errno
from datetime import timedelta

from gestor.runtime import latch
from gestor.sim.lockstep import run_lockstep
from tests.integration.test_faults import daemons
from tests.integration.test_safety import T0, sunny_csv


def test_a_stop_pressed_on_a_read_only_state_dir_keeps_the_loads_off(tmp_path, monkeypatch):
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30))
    tasks = [(5, mon.cycle), (10, mgr.cycle)]
    run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
    assert all(ld.on for ld in mgr.loads)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(s.paths.state_dir / "stop.latch"))

    monkeypatch.setattr(latch, "set_latch", read_only)   # the latch managing holds (gestor.runtime.latch)
    mgr.stop_button_pressed()
    assert not any(ld.on for ld in mgr.loads)
    trace = []
    run_lockstep(clock, tasks + [(10, lambda: trace.append((clock.now(), [ld.on for ld in mgr.loads])))],
                 T0 + timedelta(minutes=6))
    back_on = [(t.time(), on) for t, on in trace if any(on)]
    assert not back_on, f"loads back on after the stop button: {back_on[:3]}"
