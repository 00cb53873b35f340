"""Shelly relays over the local HTTP API, each "on" with a device-side auto-off timer.

* Generation 2+ (Shelly Plus/Pro 1, 1PM, 2PM, Plug S Gen2...; ``generation: 2``):
  ``GET /rpc/Switch.Set?id=N&on=true&toggle_after=S`` and ``GET /rpc/Switch.GetStatus?id=N``
  (``output`` bool, ``apower`` W where the device meters). Shelly Gen2 API docs, "Switch".
* Generation 1 (Shelly 1, 1PM, 2.5, Plug S; ``generation: 1``): ``GET /relay/N?turn=on&timer=S``
  (answers ``ison``), ``GET /relay/N`` and ``GET /status`` (``meters[N].power`` W on PM models).
  Shelly Gen1 API docs, "/relay/{index}".

Dead-man timer: every "on" carries ``timer``/``toggle_after`` = the rest of the settlement period
plus a margin, and managing renews it every cycle (``refresh_on_cycle``). If the Pi, the network
or managing dies, the Shelly switches the load off by itself at the latest at the end of the
period plus the margin. The timer is always sent with an "on", whole seconds rounded up, within
[``AUTO_OFF_FLOOR_S``, ``min(max_auto_off_s, AUTO_OFF_CEILING_S)``]: no setting and no caller can
leave it out (an "on" without ``auto_off_s`` gets the ceiling).
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, SecretStr

from drivers import DriverContext, secret
from drivers.http import Device, HttpError
from drivers.relays.base import RelayError, RelaySettings, register_relay


class ShellyRelaySettings(RelaySettings):
    driver: Literal["shelly"] = "shelly"
    host: str
    generation: Literal[1, 2] = 2
    channel: int = Field(0, ge=0, le=15)  # switch id / relay index (a Pro 4PM has 0-3)
    username: str | None = None           # Gen1 basic auth; Gen2 digest (user "admin")
    password: SecretStr | None = None     # better: !secret NAME (secrets.yaml)
    # cap of the dead-man timer, s: at least a minute (the device counts whole seconds; a timer
    # under a cycle would switch the load off between renewals), at most two hours
    max_auto_off_s: float = Field(4200.0, ge=60, le=7200)

    def relay_key(self) -> tuple[Any, ...] | None:
        return ("shelly", self.host.strip().lower(), self.generation, self.channel)

    def relay_label(self) -> str:
        return f"shelly {self.host} channel {self.channel}"


AUTO_OFF_FLOOR_S = 60.0      # shortest timer sent: managing's renewal (every cycle, <= 30 s) arrives in time
AUTO_OFF_CEILING_S = 7200.0  # longest: two hourly settlement periods


def dead_man_s(auto_off_s: float | None, max_auto_off_s: float) -> int:
    """The device-side timer sent with an "on", s: ``auto_off_s`` (None: the longest allowed)
    within [AUTO_OFF_FLOOR_S, min(max_auto_off_s, AUTO_OFF_CEILING_S)], rounded up to whole
    seconds (the Shelly APIs take integers; 0 would mean no timer at all)."""
    ceiling = max(min(max_auto_off_s, AUTO_OFF_CEILING_S), AUTO_OFF_FLOOR_S)
    want = ceiling if auto_off_s is None or not math.isfinite(auto_off_s) else auto_off_s
    return math.ceil(min(max(want, AUTO_OFF_FLOOR_S), ceiling))


@register_relay("shelly", ShellyRelaySettings)
class ShellyRelay:
    refresh_on_cycle = True

    def __init__(self, s: ShellyRelaySettings, ctx: DriverContext, load: str, power_w: float) -> None:
        self.s = s
        self.load = load
        self.base = f"http://{s.host}"
        self.device = Device(s.username, secret(s.password), digest=s.generation == 2)
        self.measured_power_w: float | None = None
        self.auto_off_s: float | None = None

    def _get(self, path: str) -> dict:
        try:
            d = self.device.get_json(self.base + path, self.s.timeout_s)
        except HttpError as e:
            raise RelayError(f"shelly relay {self.load}: {e}") from None
        if not isinstance(d, dict):
            raise RelayError(f"shelly relay {self.load}: {path}: unexpected answer {d!r:.80}")
        return d

    def set(self, on: bool, auto_off_s: float | None = None) -> None:
        timer = dead_man_s(auto_off_s, self.s.max_auto_off_s) if on else None
        n = self.s.channel
        if self.s.generation == 2:
            q = f"/rpc/Switch.Set?id={n}&on={'true' if on else 'false'}"
            self._get(q + (f"&toggle_after={timer}" if timer else ""))
        else:
            q = f"/relay/{n}?turn={'on' if on else 'off'}"
            d = self._get(q + (f"&timer={timer}" if timer else ""))
            if "ison" in d and bool(d["ison"]) != on:
                raise RelayError(f"shelly relay {self.load}: answered ison={d['ison']} to turn={'on' if on else 'off'}")
        self.auto_off_s = timer

    def state(self) -> bool:
        n = self.s.channel
        if self.s.generation == 2:
            d = self._get(f"/rpc/Switch.GetStatus?id={n}")
            if "output" not in d:
                raise RelayError(f"shelly relay {self.load}: Switch.GetStatus lacks output")
            p = d.get("apower")
            self.measured_power_w = float(p) if isinstance(p, (int, float)) else None
            return bool(d["output"])
        d = self._get(f"/relay/{n}")
        if "ison" not in d:
            raise RelayError(f"shelly relay {self.load}: /relay/{n} lacks ison")
        try:
            meters = self._get("/status").get("meters") or []
            p = meters[n].get("power") if n < len(meters) else None
            self.measured_power_w = float(p) if isinstance(p, (int, float)) else None
        except RelayError:
            self.measured_power_w = None
        return bool(d["ison"])

    def close(self) -> None:
        self.device.close()
