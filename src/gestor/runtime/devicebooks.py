"""Each setpoint device's energy in and out, from the power it reads back (issue 32 item 10).

Home Assistant's Energy dashboard wants a battery's energy in and out as counters that only
increase and survive restarts. :class:`DeviceMeters` integrates the power each device reported
at its last read-back (``SetpointState.power_w``; its read-back setpoint where it measures no
power; 0 W while its idle is confirmed; nothing while its state is unknown after a failure: a
failed read is a missing reading, never a zero), held until the next read, split at the
settlement periods' bounds. It keeps each period's net Wh of the devices (+ taken), which the
books take out of the house's consumption (a battery is not consumption). The totals are kept in
``state_dir/device-energy.json`` (written at most once a minute and at each period's close; a
damaged file is logged, moved aside and the counters start from 0).

Units: W, Wh, epoch s; power from the house's side (+ taken, - supplied).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterator, Mapping

from gestor.files import WriteGuard, atomic_write_text
from gestor.runtime.statefiles import DeviceEnergyFile, read_state

log = logging.getLogger("gestor.managing")
FILE = "device-energy.json"
SAVE_EVERY_S = 60.0


def read_back_power_w(idle: bool, setpoint_w: float | None, state) -> float | None:  # noqa: ANN001
    """A device's power as it read back, W (+ taken): 0 while its idle is confirmed, None when its
    state is unknown (``setpoint_w`` None after a failure, or never read)."""
    if idle:
        return 0.0
    if setpoint_w is None or state is None:
        return None
    return float(state.power_w if state.power_w is not None else state.setpoint_w)



def period_slices(t0_s: float, t1_s: float,
                  bounds_s: Callable[[float], tuple[float, float]]) -> Iterator[tuple[float, float]]:
    """The span from epoch ``t0_s`` to ``t1_s`` cut at the settlement periods' bounds
    (``bounds_s(t)``: the (start, end) epoch s of the period holding ``t``): (period start, hours
    of the span inside it) for each period it touches, in order. Empty when ``t1_s <= t0_s``."""
    t0 = t0_s
    while t0 < t1_s:
        start, end = bounds_s(t0)
        t1 = min(end, t1_s)
        yield start, (t1 - t0) / 3600.0
        t0 = t1

class DeviceMeters:
    """The energy counters of the devices ``names``; ``bounds_s(t)``: the settlement period
    (start, end epoch s) holding ``t``."""

    def __init__(self, state_dir: Path, names: list[str], bounds_s: Callable[[float], tuple[float, float]]) -> None:
        self.path = Path(state_dir) / FILE
        self.bounds_s = bounds_s
        self.in_wh = dict.fromkeys(names, 0.0)
        self.out_wh = dict.fromkeys(names, 0.0)
        self._power: dict[str, float | None] = dict.fromkeys(names)  # W held since _at
        self._at: float | None = None        # epoch s counted up to
        self._period: dict[float, float] = {}  # period start (epoch s) → the devices' net Wh in it
        self._saved_at: float | None = None
        self._file_op = WriteGuard(log, "the device counters are kept in memory meanwhile")
        f = read_state(self.path, DeviceEnergyFile)
        if f is not None:
            for name, e in f.devices.items():
                if name in self.in_wh:
                    self.in_wh[name], self.out_wh[name] = float(e.in_wh), float(e.out_wh)

    def count(self, now_s: float, powers: Mapping[str, float | None]) -> None:
        """Integrate the power held since the last count up to ``now_s`` (split at the periods'
        bounds), then hold ``powers`` (W read back now; None: unknown, not counted)."""
        if self._at is not None and now_s > self._at:
            for start, h in period_slices(self._at, now_s, self.bounds_s):
                for name, w in self._power.items():
                    if w is None:
                        continue
                    if w > 0:
                        self.in_wh[name] += w * h
                    else:
                        self.out_wh[name] -= w * h
                    self._period[start] = self._period.get(start, 0.0) + w * h
        self._at = now_s   # (a wall clock stepped back: counting goes on from the new time)
        self._power = {name: powers.get(name) for name in self.in_wh}

    def period_wh(self, start_s: float) -> float:
        """The devices' net Wh (+ taken) so far in the period starting at epoch ``start_s``."""
        return self._period.get(start_s, 0.0)

    def close_period(self, start_s: float) -> float:
        """The devices' net Wh in the closed period ``start_s``, forgotten (with older ones)."""
        wh = self._period.pop(start_s, 0.0)
        for k in [k for k in self._period if k < start_s]:
            del self._period[k]
        return wh

    def save(self, now_s: float, force: bool = False) -> None:
        """Write the counters (atomically) when ``force`` or SAVE_EVERY_S since the last write."""
        if not force and self._saved_at is not None and abs(now_s - self._saved_at) < SAVE_EVERY_S:
            return
        self._saved_at = now_s
        data = {"devices": {n: {"in_wh": self.in_wh[n], "out_wh": self.out_wh[n]} for n in self.in_wh}}

        def write() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data))
        self._file_op(str(self.path), write)
