"""go-e Charger (hardware V3 and later: HOME+/HOMEfix V3, Gemini) over its local HTTP API v2.

Source: goecharger/go-eCharger-API-v2, ``http-en.md`` (``GET /api/status?filter=k1,k2``,
``GET /api/set?key=json-value``) and ``apikeys-en.md``:

* ``amp`` (R/W, uint8): requested current, A, 6..32.
* ``frc`` (R/W): force state, 0 neutral, 1 off, 2 on.
* ``alw`` (R, bool): whether the car is allowed to charge now.
* ``car`` (R): 0 unknown/error, 1 idle (no car), 2 charging, 3 waiting for the car, 4 complete,
  5 error; a car is connected in 2, 3 and 4.
* ``nrg`` (R, array): U L1..L3, N (V); I L1..L3 (A); P L1..L3, N, **total** (W, index 11); pf.

``amp``, not ``amx``: the v2 document lists no ``amx`` (API v1's "not written to EEPROM"
current); go-e's answer on the v2 repository (issues 23 and 112) is that V3 hardware stores
``amp`` in wear-levelled flash, so frequent changes are fine. ``/api/set`` answers an object with
``true`` per key it accepted, or an error string for the key.

Setting: ``amp=A&frc=2`` (charge at A); below 6 A and idle: ``frc=1`` (off). No device-side
timeout: the charger holds ``frc`` and ``amp`` until changed; gestor's idle on exit and
``stop-loads`` (systemd ExecStopPost) are the guard. The HTTP API v2 must be enabled in the go-e
app; it has no password (keep the charger on a trusted network).
"""
from __future__ import annotations

from typing import Any, Literal

from drivers import DriverContext
from drivers.setpoints._evse import EvseSettings, HttpCharger
from drivers.setpoints.base import SetpointError, SetpointState, register_setpoint

FRC_OFF, FRC_ON = 1, 2
CAR_CONNECTED = (2, 3, 4)
NRG_TOTAL_W = 11


class GoeSettings(EvseSettings):
    driver: Literal["goe"] = "goe"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@register_setpoint("goe", GoeSettings)
class Goe(HttpCharger):
    def __init__(self, s: GoeSettings, ctx: DriverContext, name: str) -> None:
        super().__init__(s, "go-e", name)

    def _set(self, **keys: int) -> None:
        d = self.call("GET", "/api/set?" + "&".join(f"{k}={v}" for k, v in keys.items()))
        bad = {k: d.get(k) for k in keys} if isinstance(d, dict) else d
        if not isinstance(bad, dict) or any(v is not True for v in bad.values()):
            raise SetpointError(f"{self.label}: /api/set refused: {str(bad)[:80]}")

    def charge(self, current_a: int) -> None:
        self._set(amp=current_a, frc=FRC_ON)

    def idle(self) -> None:
        self._set(frc=FRC_OFF)

    def state(self) -> SetpointState:
        d = self.call("GET", "/api/status?filter=car,alw,amp,frc,nrg")
        if not isinstance(d, dict) or not _num(d.get("amp")) or not isinstance(d.get("alw"), bool):
            raise SetpointError(f"{self.label}: /api/status lacks amp or alw: {str(d)[:80]}")
        nrg = d.get("nrg")
        power = float(nrg[NRG_TOTAL_W]) if isinstance(nrg, list) and len(nrg) > NRG_TOTAL_W \
            and _num(nrg[NRG_TOTAL_W]) else None
        connected = d.get("car") in CAR_CONNECTED
        return SetpointState(setpoint_w=self.s.power_w(d["amp"]) if d["alw"] else 0.0, power_w=power,
                             min_w=0.0, max_w=self.s.power_w(self.s.max_current_a) if connected else 0.0,
                             connected=connected)
