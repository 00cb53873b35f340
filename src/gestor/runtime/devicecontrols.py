"""The household's controls of each setpoint device (issue 32 item 11), set from Home Assistant
over MQTT and obeyed by managing's setpoint law (:meth:`gestor.runtime.setpoints.Setpoints.apply`).

Per device, kept in ``state_dir/device-controls.json`` (they survive restarts, as the loads'
overrides in ``overrides.json``):

- ``mode``: ``auto`` (the law decides), ``idle`` (held at its idle); a battery also
  ``charge_only`` (setpoint clamped to >= 0 W: never supplies) and ``discharge_only`` (<= 0 W:
  never takes);
- ``min_soc_pct``: a battery's minimum state of charge, %: at or below it the battery does not
  discharge (setpoint >= 0 W);
- ``target_wh``: the balance each settlement period should end at, Wh (the setting
  ``setpoints[].target_wh`` until set).

The stop latch and a stale meter win over every control: the device is idle whatever its mode.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gestor.files import atomic_write_text, read_small_text
from gestor.runtime.statefiles import MAX_STATE_BYTES, DeviceControlsFile, parse_state, read_state

FILE = "device-controls.json"
MODES = ("auto", "idle")
BATTERY_MODES = ("auto", "idle", "charge_only", "discharge_only")
TARGET_LIMIT_WH = 10_000.0   # |target_wh| a command may set, Wh (Home Assistant's number's range)


@dataclass(frozen=True)
class DeviceControl:
    """One device's controls (see the module); None: not set (the settings' value)."""

    mode: str = "auto"
    min_soc_pct: float | None = None
    target_wh: float | None = None

    def narrow(self, lo_w: float, hi_w: float, soc_pct: float | None) -> tuple[float, float]:
        """The range ``lo_w..hi_w`` (W, + taken) the law may use under these controls."""
        if self.mode == "charge_only" or (self.min_soc_pct is not None and soc_pct is not None
                                          and soc_pct <= self.min_soc_pct):
            lo_w = max(lo_w, 0.0)
        if self.mode == "discharge_only":
            hi_w = min(hi_w, 0.0)
        return lo_w, max(lo_w, hi_w)

    def describe(self) -> str:
        parts = [f"mode {self.mode}"]
        if self.min_soc_pct is not None:
            parts.append(f"min SoC {self.min_soc_pct:g} %")
        return ", ".join(parts)


def read_controls(state_dir: Path) -> dict[str, DeviceControl]:
    """Each device's controls as written (a damaged file is logged, moved aside: no controls)."""
    f = read_state(Path(state_dir) / FILE, DeviceControlsFile, wrap="entries")
    if f is None:
        return {}
    return {name: DeviceControl(e.mode, None if e.min_soc_pct is None else float(e.min_soc_pct),
                                None if e.target_wh is None else float(e.target_wh))
            for name, e in f.entries.items()}


def check_control(name: str, battery: bool, key: str, text: str) -> str | float:
    """The value of control ``key`` (``mode``, ``min_soc``, ``target``) of device ``name`` from
    a command's ``text``. Raises ValueError naming the device, key, value and what is allowed."""
    if key == "mode":
        allowed = BATTERY_MODES if battery else MODES
        if text not in allowed:
            raise ValueError(f"device {name}: mode {text[:40]!r} must be one of {', '.join(allowed)}")
        return text
    if key in ("min_soc", "target"):
        if key == "min_soc" and not battery:
            raise ValueError(f"device {name}: min_soc is only for a battery")
        try:
            v = float(text[:40])
        except ValueError:
            v = float("nan")
        lo, hi = (0.0, 100.0) if key == "min_soc" else (-TARGET_LIMIT_WH, TARGET_LIMIT_WH)
        if not lo <= v <= hi:   # also NaN
            raise ValueError(f"device {name}: {key} {text[:40]!r} must be a number from {lo:g} to {hi:g}")
        return v
    raise ValueError(f"device {name}: no control {key!r} (controls: mode, min_soc, target)")


def set_control(state_dir: Path, name: str, key: str, value: str | float, now: datetime, by: str = "") -> DeviceControl:
    """Write control ``key`` (checked by :func:`check_control`) of device ``name``; returns its
    controls now. Raises OSError when the state directory cannot be written."""
    path = Path(state_dir) / FILE
    try:
        raw = json.loads(read_small_text(path, MAX_STATE_BYTES))
        parse_state(json.dumps(raw), DeviceControlsFile, wrap="entries")
    except (OSError, ValueError, RecursionError):
        raw = {}   # missing or damaged: start a clean file
    entry = raw.setdefault(name, {})
    field = {"mode": "mode", "min_soc": "min_soc_pct", "target": "target_wh"}[key]
    entry.update({field: value, "by": by, "set_at": now.isoformat()})
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(raw, indent=1))
    return read_controls(state_dir).get(name, DeviceControl())
