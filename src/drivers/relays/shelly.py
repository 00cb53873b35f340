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
period plus the margin.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from drivers import DriverContext, secret
from drivers.http import Device, HttpError
from drivers.relays.base import RelayError, RelaySettings, register_relay


class ShellyRelaySettings(RelaySettings):
    driver: Literal["shelly"] = "shelly"
    host: str
    generation: Literal[1, 2] = 2
    channel: int = Field(0, ge=0)         # switch id / relay index
    username: str | None = None           # Gen1 basic auth; Gen2 digest (user "admin")
    password: SecretStr | None = None     # better: !secret NAME (secrets.yaml)
    max_auto_off_s: float = Field(4200.0, gt=0)  # cap of the dead-man timer, s


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
        timer = None
        if on and auto_off_s is not None:
            timer = int(min(max(auto_off_s, 1.0), self.s.max_auto_off_s))
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
