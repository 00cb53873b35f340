"""What the EV charger drivers (openevse, goe) share: their settings (current limit, phases,
voltage), the power ↔ current conversion, and one bounded HTTP call that raises SetpointError.

A charger is set in whole amperes per phase (IEC 61851 pilot signal): ``current_a =
power_w / (voltage_v × phases)``, rounded **down** (a setpoint is what gestor may take, so never
more), within 6 A (the standard's minimum) .. ``max_current_a``; below 6 A the charger is paused
(0 W). The power it is set to is ``current_a × voltage_v × phases``.
"""
from __future__ import annotations

import math
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from drivers import secret
from drivers.http import Device, HttpError
from drivers.setpoints.base import SetpointError, SetpointSettings

MIN_CURRENT_A = 6   # IEC 61851-1: the lowest pilot current a car must follow


class EvseSettings(SetpointSettings):
    host: str                                    # "192.168.1.30", "openevse.local:8080" or "https://..."
    max_current_a: int = Field(16, ge=MIN_CURRENT_A, le=32)   # the charger's (and the circuit's) limit, A
    phases: Literal[1, 3] = 1                    # phases the car charges on
    voltage_v: float = Field(230.0, ge=100, le=260)           # phase voltage, V

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        scheme = urlsplit(v).scheme if "://" in v else "http"
        if scheme not in ("http", "https") or not v.split("://")[-1].strip("/"):
            raise ValueError(f"must be a host name or address, or an http:// or https:// URL, not {v!r}")
        return v.rstrip("/")

    def base_url(self) -> str:
        return self.host if "://" in self.host else f"http://{self.host}"

    def device_key(self) -> tuple:
        """The charger's address (scheme, host and port, case-insensitive)."""
        u = urlsplit(self.base_url())
        return ("http", u.scheme.lower(), (u.netloc or "").lower(), u.path.rstrip("/"))

    def device_label(self) -> str:
        return f"{self.driver} at {self.host}"

    def current_a(self, power_w: float) -> int:
        """Whole amperes for ``power_w`` (W, house's side): 0 (paused) below MIN_CURRENT_A."""
        a = math.floor(power_w / (self.voltage_v * self.phases)) if math.isfinite(power_w) else 0
        return 0 if a < MIN_CURRENT_A else min(a, self.max_current_a)

    def power_w(self, current_a: float) -> float:
        return current_a * self.voltage_v * self.phases


class HttpCharger:
    """One charger over HTTP: ``call`` raises SetpointError naming the charger and the reason."""

    hold_s: float | None = None      # no device-side timeout: the charger holds the last command
    refresh_on_cycle = False

    def __init__(self, s: EvseSettings, kind: str, name: str, username: str | None = None,
                 password: SecretStr | None = None) -> None:
        self.s = s
        self.label = f"{kind} {name}"
        self.device = Device(username, secret(password), digest=False)

    def set_power_w(self, power_w: float, hold_s: float | None = None) -> float:
        """Charge at the whole amperes ``power_w`` allows (paused below 6 A); returns the power
        that current is, W. ``hold_s``: ignored (no device-side timeout). Raises SetpointError."""
        amps = self.s.current_a(power_w)
        if amps == 0:
            self.idle()
            return 0.0
        self.charge(amps)
        return self.s.power_w(amps)

    def charge(self, current_a: int) -> None:
        raise NotImplementedError

    def idle(self) -> None:
        raise NotImplementedError

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self.device.request_json(method, self.s.base_url() + path, self.s.timeout_s, body)
        except HttpError as e:
            raise SetpointError(f"{self.label}: {e}") from None

    def close(self) -> None:
        self.device.close()
