"""A house behind a Shelly Pro 3EM (the HTTP emulator), for the frozen-meter and counter tests
(issue 32 items 2 and 3).

Each :meth:`ShellyHouse.feed` (call it every tick, before monitoring reads) sets the emulator to the
house as it is: ``base_w`` (import-positive, what the house draws without the managed loads and
devices, minus its PV) plus the simulated loads that are on and the simulated setpoint devices'
power (their state files, as the replay meter adds them), with a watt of noise (a real meter's
power never holds to the watt for long). Its counters count that power exactly (Wh, with decimals,
as a Shelly's do). Faults, as a meter would show them:

* ``frozen``: the Shelly answers a cached value: neither its power nor its counters move (the
  house goes on: the counters jump to the truth when it thaws);
* ``counters_stuck``: its power moves, its counters do not;
* ``creep_w``: the export counter over-reads by this many W on top of the truth.

``true_net_wh`` is the energy the house really exchanged (export-positive), for the invariants.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from drivers.relays.simulated import simulated_loads_power_w
from drivers.setpoints.simulated import simulated_setpoints_power_w
from gestor.clock import SimClock
from tests.emulators.http_devices import ShellyPro3EM


class ShellyHouse:
    def __init__(self, dev: ShellyPro3EM, clock: SimClock, run_dir: Path, base_w: float) -> None:
        self.dev, self.clock, self.run_dir = dev, clock, Path(run_dir)
        self.base_w = base_w
        self.frozen = False
        self.counters_stuck = False
        self.creep_w = 0.0
        self.import_wh, self.export_wh = 20_000.0, 5_000.0   # the truth
        self.phantom_wh = 0.0                                 # what the export counter over-reads
        self.true_net_wh = 0.0
        self._last: datetime | None = None
        self._import_w = 0.0   # the house's power since the last feed, import-positive
        self._ticks = 0

    def house_w(self) -> float:
        """W the house imports now (negative: exports), with the managed loads and devices."""
        at_s = self.clock.now().timestamp()
        return self.base_w + simulated_loads_power_w(self.run_dir, at_s) + simulated_setpoints_power_w(self.run_dir, at_s)

    def feed(self) -> None:
        now = self.clock.now()
        if self._last is not None:  # the energy of the power held since the last feed
            dt_h = (now - self._last).total_seconds() / 3600.0
            self.import_wh += max(self._import_w, 0.0) * dt_h
            self.export_wh += max(-self._import_w, 0.0) * dt_h
            self.phantom_wh += self.creep_w * dt_h
            self.true_net_wh -= self._import_w * dt_h
        self._last = now
        self._ticks += 1
        self._import_w = self.house_w() + (0.5 if self._ticks % 2 else -0.5)  # a watt of noise
        if self.frozen:
            return  # the cached answer: nothing moves
        self.dev.phases_w = [self._import_w, 0.0, 0.0]
        if not self.counters_stuck:
            self.dev.total_act_wh, self.dev.total_act_ret_wh = self.import_wh, self.export_wh + self.phantom_wh


class CountingMeter:
    """Wraps a meter driver (the replay meter) into a meter with energy counters that count its
    power (Wh with decimals, as a Shelly's, over the clock's monotonic time: a wall-clock step counts
    nothing), with issue 32's faults: ``frozen`` (it answers its last reading again, stamped now: a
    cached value), ``counters_stuck``, and ``creep_w`` (signed: + the export counter over-reads by
    that many W, - the import counter). A failed read of the driver is passed on."""

    def __init__(self, inner, clock: SimClock) -> None:
        self.inner, self.clock = inner, clock
        self.frozen = False
        self.counters_stuck = False
        self.creep_w = 0.0
        self.import_wh, self.export_wh = 20_000.0, 5_000.0
        self._shown = (self.import_wh, self.export_wh)
        self._net_w: float | None = None
        self._mono = clock.monotonic()
        self._last = None

    def read(self):
        from dataclasses import replace
        mono = self.clock.monotonic()
        if self._net_w is not None:  # the power held since the last read (and the creep)
            dt_h = (mono - self._mono) / 3600.0
            self.import_wh += (max(-self._net_w, 0.0) + max(-self.creep_w, 0.0)) * dt_h
            self.export_wh += (max(self._net_w, 0.0) + max(self.creep_w, 0.0)) * dt_h
        self._mono = mono
        if self.frozen and self._last is not None:
            return replace(self._last, at=self.clock.now())
        r = self.inner.read()
        self._net_w = r.net_w
        if not self.counters_stuck:
            self._shown = (self.import_wh, self.export_wh)
        self._last = replace(r, import_wh_total=self._shown[0], export_wh_total=self._shown[1])
        return self._last

    def close(self) -> None:
        self.inner.close()
