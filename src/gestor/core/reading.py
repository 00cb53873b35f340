"""A meter reading, as the control core takes it: the one input from outside the core.

Signs (DESIGN.md section 2): ``net_w`` is power at the grid connection, export-positive,
``net_w = production_w - consumption_w``. Drivers (:mod:`drivers.meters`) build these from their
meter's answers and convert from its convention once; the core never reads a device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class MeterError(Exception):
    """A read failed, was partial or implausible. The message says why; the reading is missing."""


@dataclass(frozen=True)
class Reading:
    """One meter reading.

    Attributes:
        at: when the meter was read (aware datetime).
        net_w: W at the grid connection, export-positive.
        production_w: W produced by the PV system, if the meter sees it.
        consumption_w: W consumed by the house, if known.
        import_wh_total: monotonic imported-energy counter, Wh.
        export_wh_total: monotonic exported-energy counter, Wh.
    """

    at: datetime
    net_w: float
    production_w: float | None = None
    consumption_w: float | None = None
    import_wh_total: float | None = None
    export_wh_total: float | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("Reading.at must be timezone-aware")
        for name in ("net_w", "production_w", "consumption_w", "import_wh_total", "export_wh_total"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise MeterError(f"{name} is {v}, not a number")

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "net_w": self.net_w, "production_w": self.production_w,
                "consumption_w": self.consumption_w, "import_wh_total": self.import_wh_total,
                "export_wh_total": self.export_wh_total}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Reading":
        d = dict(d)
        d["at"] = datetime.fromisoformat(d["at"])
        return cls(**d)


# Counter steps: what the connection can carry in the time between two readings, times this, plus
# the counter's resolution (a quantised counter steps by up to one unit more than the energy):
# what its driver declares (MeterSettings.counter_resolution_wh), else COUNTER_SLACK_WH, 100 Wh,
# the coarsest in use (registers in tenths of a kWh, as the Carlo Gavazzi EM24's).
COUNTER_SLACK = 1.1
COUNTER_SLACK_WH = 100.0
# "A few resolutions": how many of a counter's resolution its readings may be off (its quantisation
# at both ends of an interval, both counters) before it counts as disagreeing with the meter's power
# (gestor.core.balance.agreement_wh) or as stuck while the power flows (drivers.meters.base).
COUNTER_RESOLUTIONS = 3.0


def max_counter_step_wh(max_abs_power_w: float, elapsed_s: float, resolution_wh: float = COUNTER_SLACK_WH) -> float:
    """The largest plausible rise of an energy counter in ``elapsed_s`` (s) at a connection that
    carries at most ``max_abs_power_w`` (W), for a counter that steps by ``resolution_wh`` (Wh):
    ``max_abs_power_w x elapsed_s / 3600 x 1.1 + resolution_wh`` Wh. A negative elapsed time (a
    clock step) allows only the resolution."""
    return max_abs_power_w * max(elapsed_s, 0.0) / 3600.0 * COUNTER_SLACK + resolution_wh
