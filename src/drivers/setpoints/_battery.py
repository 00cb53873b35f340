"""What every battery setpoint driver shares: its power and state-of-charge limits (settings), the
range they leave at a given state of charge, and the per-request timeout of a command made of
several Modbus requests. Not a driver (the registry skips ``_`` modules)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.setpoints.base import SetpointError


class BatteryLimits(BaseModel):
    """Limits gestor holds a battery to, on top of the device's own.

    Attributes:
        max_charge_w: the most it is set to take, W (house side, +).
        max_discharge_w: the most it is set to supply, W (house side, -).
        min_soc_pct: at or below this state of charge, %, it is never set to discharge.
        max_soc_pct: at or above this state of charge, %, it is never set to charge.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    max_charge_w: float = Field(2500.0, ge=0, le=30000)
    max_discharge_w: float = Field(2500.0, ge=0, le=30000)
    min_soc_pct: float = Field(10.0, ge=0, le=100)
    max_soc_pct: float = Field(100.0, ge=0, le=100)

    @model_validator(mode="after")
    def _soc_order(self) -> "BatteryLimits":
        if self.min_soc_pct >= self.max_soc_pct:
            raise ValueError(f"min_soc_pct ({self.min_soc_pct:g}) must be below max_soc_pct ({self.max_soc_pct:g})")
        return self

    def range_w(self, soc_pct: float | None) -> tuple[float, float]:
        """(min_w, max_w) the battery may be set to at ``soc_pct`` (None: unknown, the power
        limits alone): no discharge at or below min_soc_pct, no charge at or above max_soc_pct."""
        lo, hi = -self.max_discharge_w, self.max_charge_w
        if soc_pct is not None and soc_pct <= self.min_soc_pct:
            lo = 0.0
        if soc_pct is not None and soc_pct >= self.max_soc_pct:
            hi = 0.0
        return lo, hi

    def clamp_w(self, power_w: float, soc_pct: float | None) -> float:
        """``power_w`` held to :meth:`range_w` at ``soc_pct``."""
        lo, hi = self.range_w(soc_pct)
        return min(max(float(power_w), lo), hi)


def checked_soc_pct(value: float, where: str) -> float:
    """A state of charge read from ``where``, %, or SetpointError when it is not one (a wrong
    register map or scale reads as 250 % or 6553.5 %, never as a silent 0)."""
    if not 0.0 <= value <= 100.0:
        raise SetpointError(f"{where}: state of charge reads {value:g} %, not 0..100 (wrong unit id or register map?)")
    return value
