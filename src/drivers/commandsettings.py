"""The settings every commanded device's driver shares (a relay's, a setpoint device's): one place
for what :class:`drivers.relays.base.RelaySettings` and
:class:`drivers.setpoints.base.SetpointSettings` both validate."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CommandSettings(BaseModel):
    """Base of a commanded device driver's settings: ``driver`` selects the driver; ``timeout_s``
    (s, > 0, <= 20, default 3) bounds one command or read-back. Unknown keys and NaN/inf are
    refused (pydantic names the key and the value)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    driver: str
    timeout_s: float = Field(3.0, gt=0, le=20)  # total time for one command or read-back, s
