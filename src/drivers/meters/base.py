"""The meter interface: one :class:`Reading` per read, or a :class:`MeterError`; never zeros
instead of a failed read.

Signs (DESIGN.md section 2): ``net_w`` is power at the grid connection, export-positive,
``net_w = production_w - consumption_w``. Drivers convert from their meter's convention once.
"""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict, Field

from drivers import Registry
# the domain's reading and its counter bounds live in the control core (re-exported here for drivers)
from gestor.core.reading import COUNTER_SLACK, COUNTER_SLACK_WH, MeterError, Reading, max_counter_step_wh

__all__ = ["COUNTER_SLACK", "COUNTER_SLACK_WH", "CheckedMeter", "METERS", "Meter", "MeterError", "MeterSettings",
           "Reading", "check_plausible", "max_counter_step_wh", "register_meter"]

if TYPE_CHECKING:
    from drivers import DriverContext


class Meter(Protocol):
    def read(self) -> Reading:
        """Read the meter now. Raises MeterError on any failure."""

    def close(self) -> None: ...


class MeterSettings(BaseModel):
    """Base of every meter driver's settings; ``driver`` selects the driver."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    driver: str
    max_abs_power_w: float = Field(50_000.0, gt=0, le=1_000_000)  # readings beyond this are implausible (MeterError)


MeterFactory = Callable[[Any, "DriverContext"], Meter]
# name → (settings model, factory); each driver module registers itself when first asked for
METERS: dict[str, tuple[type[MeterSettings], MeterFactory]] = Registry("drivers.meters", [str(Path(__file__).parent)])


def register_meter(name: str, settings_model: type[MeterSettings]) -> Callable[[MeterFactory], MeterFactory]:
    """Class decorator: register a meter driver under ``driver: name``."""

    def deco(factory: MeterFactory) -> MeterFactory:
        METERS[name] = (settings_model, factory)
        return factory

    return deco


def check_plausible(reading: Reading, max_abs_power_w: float) -> Reading:
    """Raise MeterError if any power in ``reading`` is beyond ``max_abs_power_w``."""
    for name in ("net_w", "production_w", "consumption_w"):
        v = getattr(reading, name)
        if v is not None and abs(v) > max_abs_power_w:
            raise MeterError(f"{name}={v:.0f} W is beyond max_abs_power_w={max_abs_power_w:.0f} W")
    return reading


class CheckedMeter:
    """Wraps any driver: every reading passes :func:`check_plausible`, and each energy counter must
    neither go backwards nor rise faster than the connection can carry (:func:`max_counter_step_wh`
    over the time since the last reading, ``max_abs_power_w``). Either is a failed read
    (MeterError) and the value becomes the new baseline: a one-off glitch costs two failed reads
    (the glitch, and the step back from it); a replaced or reset meter is accepted from the next
    read on (the balance handles the step, and bounds it the same way)."""

    def __init__(self, meter: Meter, max_abs_power_w: float) -> None:
        self.meter = meter
        self.max_abs_power_w = max_abs_power_w
        self._last: dict[str, float] = {}
        self._last_at: dict[str, datetime] = {}

    def baseline(self, reading: Reading) -> None:
        """Take ``reading``'s counters as the last seen (monitoring's resume after a restart)."""
        for name in ("import_wh_total", "export_wh_total"):
            v = getattr(reading, name)
            if v is not None:
                self._last[name], self._last_at[name] = v, reading.at

    def read(self) -> Reading:
        try:
            r = check_plausible(self.meter.read(), self.max_abs_power_w)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            # a driver that missed a malformed answer: still a failed read, never a crash
            raise MeterError(f"malformed answer from the meter ({type(e).__name__}: {str(e)[:120]})") from None
        bad = []
        for name in ("import_wh_total", "export_wh_total"):
            v = getattr(r, name)
            if v is None:
                continue
            if v < 0:  # an energy counter counts up from 0 (a register map's sign: -1 on it is wrong)
                bad.append(f"{name} is negative ({v:.1f} Wh): a counter counts up from 0")
                continue
            last, last_at = self._last.get(name), self._last_at.get(name)
            self._last[name], self._last_at[name] = v, r.at
            if last is None or last_at is None:
                continue
            if v < last:
                bad.append(f"{name} went backwards ({last:.1f} → {v:.1f} Wh)")
                continue
            elapsed_s = (r.at - last_at).total_seconds()
            limit = max_counter_step_wh(self.max_abs_power_w, elapsed_s)
            if v - last > limit:
                bad.append(f"{name} rose {v - last:.1f} Wh in {elapsed_s:.1f} s: more than "
                           f"max_abs_power_w={self.max_abs_power_w:.0f} W can carry ({limit:.1f} Wh)")
        if bad:
            raise MeterError("; ".join(bad))
        return r

    def close(self) -> None:
        self.meter.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.meter, name)
