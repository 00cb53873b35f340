"""Simulated setpoint device: a battery, a modulating heater or an EV charger with no hardware, for
the shipped settings, the demo, drills and tests. Like the simulated relay
(:mod:`drivers.relays.simulated`), it keeps its state in a small file under the runtime directory,
so that managing, ``stop-loads`` and the replay meter (other processes) see the same device; with
the replay meter's ``add_simulated_loads: true`` the power it takes is added to the replayed
consumption (a battery discharging lowers it), so the balance sees what the device does
(:func:`simulated_setpoints_power_w`; the power before a change counts for a sample measured
before it).

Models (house side: + takes power, - supplies it; W, Wh, %):

* ``kind: battery``: ``-max_discharge_w..+max_charge_w``, a state of charge integrated on the
  daemon's clock between calls (``capacity_wh``, charged through sqrt(``efficiency``), discharged
  through it, so a round trip loses ``1 - efficiency``), no charge at ``max_soc_pct``, no
  discharge at ``min_soc_pct`` (the range narrows there, as a real battery's BMS narrows it).
* ``kind: heater``: ``0..max_charge_w`` (the heater's rated power).
* ``kind: ev_charger``: 0 or whole amperes ``6..max_current_a`` × ``phases`` × 230 V, while
  ``connected`` (a car is plugged in; else its range is 0..0).

Like Victron's ESS and my-PV's heater, it has a device-side timeout: a setpoint not written again
within ``hold_s`` (the settings' ``hold_s``, default 60 s, on the daemons' monotonic clock as a
device counts its own seconds) drops to idle by itself, so a managing that dies cannot leave it
charging or discharging.

``fault`` simulates a broken device: ``no_answer`` makes every call raise SetpointError;
``stuck`` accepts commands (and idle) but keeps the power it had (a contactor welded, firmware
hung); ``reads_other`` holds what is commanded but reads back a setpoint 500 W off.

State file (JSON, ``<run_dir>/sim-setpoints/<name>.json``): ``setpoint_w`` (W, in effect),
``before_w`` (W, before the last change), ``since_s`` (epoch s of the last change),
``hold_until_s``/``hold_until_mono_s`` (the timeout's end, epoch and monotonic s, or null),
``energy_wh`` (a battery's stored energy), ``at_s`` (epoch s it was integrated to).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from drivers import DriverContext
from drivers.setpoints.base import SetpointError, SetpointSettings, SetpointState, register_setpoint
from drivers.relays.simulated import answer_or_raise, read_state_or_raise, total_power_w
from gestor.files import atomic_write_text

SIM_DIR = "sim-setpoints"
EV_VOLTAGE_V = 230.0
EV_MIN_A = 6


class SimulatedSetpointSettings(SetpointSettings):
    driver: Literal["simulated"] = "simulated"
    kind: Literal["battery", "heater", "ev_charger"] = "battery"

    def device_key(self) -> None:
        """None: each simulated device is its own state file, named after its (unique) name."""
        return None
    max_charge_w: float = Field(2500.0, ge=0, le=30000)     # battery: most it takes; heater: rated power, W
    max_discharge_w: float = Field(2500.0, ge=0, le=30000)  # battery: most it supplies, W
    capacity_wh: float = Field(5000.0, gt=0, le=200000)     # battery: usable capacity, Wh
    soc_pct: float = Field(50.0, ge=0, le=100)              # battery: state of charge at first use, %
    min_soc_pct: float = Field(10.0, ge=0, le=100)
    max_soc_pct: float = Field(100.0, ge=0, le=100)
    efficiency: float = Field(0.9, gt=0, le=1)              # battery: round trip (charge x discharge)
    max_current_a: int = Field(16, ge=EV_MIN_A, le=32)      # ev_charger
    phases: Literal[1, 3] = 1                               # ev_charger
    connected: bool = True                                  # ev_charger: a car is plugged in
    hold_s: float = Field(60.0, ge=5, le=3600)              # the device-side timeout, s
    fault: Literal["none", "no_answer", "stuck", "reads_other"] = "none"

    @model_validator(mode="after")
    def _soc_order(self) -> "SimulatedSetpointSettings":
        if self.min_soc_pct >= self.max_soc_pct:
            raise ValueError(f"min_soc_pct ({self.min_soc_pct:g}) must be below max_soc_pct ({self.max_soc_pct:g})")
        return self


def _power_at(s: dict[str, Any], at_s: float) -> float:
    """W the device whose state file holds ``s`` took at epoch ``at_s``: the setpoint before the
    last change for an instant not after it (up to a minute back), else the one in effect; 0
    after its timeout ended."""
    since = s.get("since_s")
    recent = isinstance(since, (int, float)) and since - 60.0 <= at_s <= since
    w = s.get("before_w" if recent else "setpoint_w", 0.0)
    end = s.get("hold_until_s")
    if not recent and isinstance(end, (int, float)) and at_s >= end and not s.get("stuck"):
        return 0.0
    return float(w) if isinstance(w, (int, float)) and math.isfinite(w) else 0.0


def simulated_setpoints_power_w(run_dir: Path, at_s: float) -> float:
    """Total W the simulated setpoint devices took at epoch ``at_s`` (from their state files;
    negative when batteries supplied more than the others took)."""
    return total_power_w(Path(run_dir) / SIM_DIR, lambda s: _power_at(s, at_s))


@register_setpoint("simulated", SimulatedSetpointSettings)
class SimulatedSetpoint:
    """The simulated device (module docstring). Raises SetpointError with ``fault: no_answer`` or
    an unreadable state file."""

    refresh_on_cycle = True  # its timeout is renewed by writing the setpoint again, as a Victron's

    def __init__(self, s: SimulatedSetpointSettings, ctx: DriverContext, name: str) -> None:
        self.s, self.clock, self.name = s, ctx.clock, name
        self.path = Path(ctx.run_dir) / SIM_DIR / f"{name}.json"
        self.hold_s: float | None = s.hold_s

    def _check(self) -> None:
        answer_or_raise(self.s.fault, SetpointError, f"simulated setpoint {self.name}")

    def _read(self) -> dict[str, Any]:
        return read_state_or_raise(self.path, SetpointError, f"simulated setpoint {self.name}")

    def _integrated(self, st: dict[str, Any]) -> dict[str, Any]:
        """``st`` brought to now: the timeout applied, a battery's energy integrated."""
        now_s, mono = self.clock.now().timestamp(), self.clock.monotonic()
        st = dict(st)
        end = st.get("hold_until_mono_s")
        if isinstance(end, (int, float)) and mono >= end and not st.get("stuck") and st.get("setpoint_w"):
            st.update(before_w=st.get("setpoint_w", 0.0), setpoint_w=0.0, since_s=now_s, hold_until_s=None,
                      hold_until_mono_s=None)
        cap = self.s.capacity_wh
        e = st.get("energy_wh")
        e = cap * self.s.soc_pct / 100.0 if not isinstance(e, (int, float)) else float(e)
        at = st.get("at_s")
        if self.s.kind == "battery" and isinstance(at, (int, float)) and now_s > at:
            p = float(st.get("setpoint_w", 0.0))
            eta = math.sqrt(self.s.efficiency)
            e += (p * eta if p > 0 else p / eta) * (now_s - at) / 3600.0
        st["energy_wh"] = e = min(max(e, 0.0), cap)
        st["at_s"] = now_s
        p = float(st.get("setpoint_w", 0.0))
        soc = 100.0 * e / cap
        if self.s.kind == "battery" and ((p > 0 and soc >= self.s.max_soc_pct) or (p < 0 and soc <= self.s.min_soc_pct)):
            st.update(before_w=p, setpoint_w=0.0, since_s=now_s)  # its BMS stops it at the limit
        return st

    def _range_w(self, st: dict[str, Any]) -> tuple[float, float]:
        s = self.s
        if s.kind == "heater":
            return 0.0, s.max_charge_w
        if s.kind == "ev_charger":
            return (0.0, s.max_current_a * s.phases * EV_VOLTAGE_V) if s.connected else (0.0, 0.0)
        soc = 100.0 * st["energy_wh"] / s.capacity_wh
        return (0.0 if soc <= s.min_soc_pct else -s.max_discharge_w,
                0.0 if soc >= s.max_soc_pct else s.max_charge_w)

    def _clamp(self, power_w: float, st: dict[str, Any]) -> float:
        lo, hi = self._range_w(st)
        w = min(max(float(power_w), lo), hi) if power_w == power_w else 0.0
        if self.s.kind == "ev_charger":  # whole amperes, none below 6 A
            amps = math.floor(w / (self.s.phases * EV_VOLTAGE_V) + 1e-9)
            w = amps * self.s.phases * EV_VOLTAGE_V if amps >= EV_MIN_A else 0.0
        return w

    def _write(self, st: dict[str, Any], power_w: float, hold: bool) -> None:
        now_s, mono = self.clock.now().timestamp(), self.clock.monotonic()
        stuck = self.s.fault == "stuck"
        old = float(st.get("setpoint_w", 0.0))
        new = old if stuck and "setpoint_w" in st else power_w
        if new != old:
            st.update(before_w=old, since_s=now_s)
        st.update(setpoint_w=new, stuck=stuck,
                  hold_until_s=now_s + self.s.hold_s if hold and new else None,
                  hold_until_mono_s=mono + self.s.hold_s if hold and new else None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(st))

    def set_power_w(self, power_w: float, hold_s: float | None = None) -> float:
        self._check()
        st = self._integrated(self._read())
        w = self._clamp(power_w, st)
        self._write(st, w, hold=True)
        return w

    def idle(self) -> None:
        self._check()
        self._write(self._integrated(self._read()), 0.0, hold=False)

    def state(self) -> SetpointState:
        self._check()
        st = self._integrated(self._read())
        lo, hi = self._range_w(st)
        w = float(st.get("setpoint_w", 0.0))
        if self.s.fault == "reads_other":
            w += 500.0
        soc = 100.0 * st["energy_wh"] / self.s.capacity_wh if self.s.kind == "battery" else None
        return SetpointState(setpoint_w=w, power_w=w, min_w=lo, max_w=hi, soc_pct=soc,
                             connected=self.s.connected if self.s.kind == "ev_charger" else None)

    def close(self) -> None:
        pass
