"""OpenEVSE charger (ESP32 WiFi firmware 4.x) over its HTTP API.

Source: OpenEVSE WiFi API, ``api.yml`` and ``models/*.yaml`` of OpenEVSE/openevse_esp32_firmware
(OpenAPI 3.0.3), and its ``web_server_claims.cpp``:

* ``GET /status``: ``state`` (EVSE state: 1 no car, 2 car connected, 3 charging, 4-11 faults,
  254 sleeping, 255 disabled), ``vehicle`` (1 a car is connected), ``status`` ("active" or
  "disabled": what the claims decided), ``pilot`` (A offered to the car), ``amp`` (charge
  current, **mA**), ``voltage`` (V).
* ``POST /claims/{client}`` with ``{"state": "active"|"disabled", "charge_current": A,
  "auto_release": false}`` answers ``{"msg": "done"}``; ``DELETE /claims/{client}`` releases it.

gestor is one *claim* client (``claim_client``, a number no other client uses), at the API
priority (500): above the charger's timer and PV divert, below its manual override, RFID and
OCPP, so a user's "charge now" on the charger's own page wins, and the read-back shows it.
``auto_release: false`` keeps the claim across unplugging (an auto-released claim would let the
next car start at the charger's default current until gestor claims again).

Idle: the claim is set to ``disabled`` (the charger pauses), never released: a released claim
hands the charger back to its default, which is to charge at full current. No device-side
timeout: the claim holds until changed (the charger's timed claims end in the same default, so
they are no dead-man). gestor's idle on exit and ``stop-loads`` (systemd ExecStopPost) are the
guard; ``DELETE /claims/<claim_client>`` hands the charger back by hand.

Auth: optional HTTP Basic (``username``/``password``; the API's machine-client scheme). ``host``
may be an ``https://`` URL (the charger serves HTTPS once a certificate is configured); the
certificate is verified.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from drivers import DriverContext
from drivers.setpoints._evse import EvseSettings, HttpCharger
from drivers.setpoints.base import SetpointError, SetpointState, register_setpoint

# EvseClient = vendor << 16 | client (evse_man.h); the firmware parses the path's number as a
# signed 32-bit long, so it must stay below 2**31. Vendor 0x0067 is no vendor OpenEVSE names.
DEFAULT_CLAIM_CLIENT = (0x0067 << 16) | 0x0001


class OpenEvseSettings(EvseSettings):
    driver: Literal["openevse"] = "openevse"
    username: str | None = None            # Basic auth, when the charger has an admin password
    password: SecretStr | None = None      # better: !secret NAME (secrets.yaml)
    claim_client: int = Field(DEFAULT_CLAIM_CLIENT, ge=1, le=2**31 - 1)


@register_setpoint("openevse", OpenEvseSettings)
class OpenEvse(HttpCharger):
    def __init__(self, s: OpenEvseSettings, ctx: DriverContext, name: str) -> None:
        super().__init__(s, "openevse", name, s.username, s.password)
        self.claim = f"/claims/{s.claim_client}"

    def _claim(self, body: dict[str, Any]) -> None:
        d = self.call("POST", self.claim, {**body, "auto_release": False})
        if not isinstance(d, dict) or d.get("msg") != "done":
            raise SetpointError(f"{self.label}: claim refused: {str(d)[:80]}")

    def charge(self, current_a: int) -> None:
        self._claim({"state": "active", "charge_current": current_a})

    def idle(self) -> None:
        self._claim({"state": "disabled"})

    def state(self) -> SetpointState:
        d = self.call("GET", "/status")
        if not isinstance(d, dict) or not isinstance(d.get("state"), int):
            raise SetpointError(f"{self.label}: /status lacks state: {str(d)[:80]}")
        st = d["state"]
        vehicle = d.get("vehicle")
        connected = bool(vehicle) if isinstance(vehicle, (int, bool)) else st in (2, 3)
        active = d["status"] == "active" if "status" in d else st not in (254, 255)
        pilot = d.get("pilot")
        if active and (isinstance(pilot, bool) or not isinstance(pilot, (int, float))):
            raise SetpointError(f"{self.label}: /status lacks pilot: {str(d)[:80]}")
        amp_ma, volts = d.get("amp"), d.get("voltage")
        if isinstance(volts, bool) or not isinstance(volts, (int, float)) or volts <= 0:
            volts = self.s.voltage_v
        power = (amp_ma / 1000.0 * volts * self.s.phases
                 if isinstance(amp_ma, (int, float)) and not isinstance(amp_ma, bool) else None)
        return SetpointState(setpoint_w=self.s.power_w(pilot) if active else 0.0, power_w=power,
                             min_w=0.0, max_w=self.s.power_w(self.s.max_current_a) if connected else 0.0,
                             connected=connected)
