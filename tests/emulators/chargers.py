"""EV charger emulators on loopback HTTP, answering in their documented JSON shapes:

* :class:`OpenEvseDevice`: OpenEVSE WiFi firmware 4.x (``api.yml`` of
  OpenEVSE/openevse_esp32_firmware): ``GET /status``, ``GET/POST/DELETE /claims/{client}``,
  ``POST/DELETE /override``; the claim with the highest priority decides (manual override 1000,
  API claims 500), none: the charger's default (active at ``max_current_soft``).
* :class:`GoeDevice`: go-e Charger HTTP API v2 (goecharger/go-eCharger-API-v2):
  ``/api/status?filter=...`` and ``/api/set?key=json``.

Faults and reboots come from :class:`DeviceServer` (``fault``, ``raw_body``, ``stop``/``start``).
"""
from __future__ import annotations

import json

from tests.emulators.http_devices import DeviceServer

API_PRIORITY, MANUAL_PRIORITY = 500, 1000


class OpenEvseDevice(DeviceServer):
    def __init__(self, port: int, max_current_soft: int = 32, voltage: float = 230.0) -> None:
        super().__init__(port)
        self.max_current_soft = max_current_soft
        self.voltage = voltage
        self.vehicle = True
        self.claims: dict[int, dict] = {}    # client -> properties as posted
        self.override: dict | None = None

    def target(self) -> dict:
        """What the charger does now: the properties of the winning claim, or its default."""
        if self.override is not None:
            return self.override
        if self.claims:
            return self.claims[max(self.claims)]   # all API claims share a priority; any one wins
        return {"state": "active", "charge_current": self.max_current_soft}

    def status(self) -> dict:
        t = self.target()
        active = t.get("state", "active") == "active"
        pilot = min(int(t.get("charge_current") or self.max_current_soft), self.max_current_soft)
        charging = active and self.vehicle
        state = 3 if charging else (254 if not active else (2 if self.vehicle else 1))
        return {"mode": "STA", "wifi_client_connected": 1, "evse_connected": 1, "amp": pilot * 1000 if charging else 0,
                "voltage": self.voltage, "pilot": pilot, "temp": 282, "state": state,
                "status": "active" if active else "disabled", "flags": 0, "vehicle": 1 if self.vehicle else 0,
                "colour": 3, "manual_override": 1 if self.override is not None else 0, "elapsed": 3473,
                "session_energy": 25034, "total_energy": 998, "time": "2026-12-02T15:00:00Z", "offset": "+0000"}

    @staticmethod
    def _props(body: object) -> dict | None:
        if not isinstance(body, dict) or body.get("state", "active") not in ("active", "disabled"):
            return None
        cc = body.get("charge_current")
        return body if cc is None or (isinstance(cc, int) and cc >= 0) else None

    def request(self, method: str, path: str, q: dict[str, str], body: object) -> tuple[int, object]:
        if path == "/status" and method == "GET":
            return 200, self.status()
        if path.startswith("/claims/"):
            client = int(path[len("/claims/"):])
            if method == "GET":
                return (200, self.claims[client]) if client in self.claims else (404, {"msg": "Not found"})
            if method == "POST":
                props = self._props(body)
                if props is None:
                    return 400, {"msg": "Could not parse JSON"}
                self.claims[client] = props
                return 200, {"msg": "done"}
            if method == "DELETE":
                return (200, {"msg": "done"}) if self.claims.pop(client, None) else (404, {"msg": "Not found"})
        if path == "/override":
            if method == "POST":
                self.override = self._props(body)
                return 201, {"msg": "Created"}
            if method == "DELETE":
                self.override = None
                return 200, {"msg": "Deleted"}
        return 404, {"msg": "Not found"}


class GoeDevice(DeviceServer):
    def __init__(self, port: int, phases: int = 1, voltage: float = 230.0) -> None:
        super().__init__(port)
        self.amp = 16
        self.frc = 0
        self.car_connected = True
        self.allow_when_neutral = True   # frc=0: the charger's own logic (scheduler, ...) allows
        self.phases = phases
        self.voltage = voltage
        self.sets: list[dict[str, str]] = []

    def values(self) -> dict:
        alw = self.frc == 2 or (self.frc == 0 and self.allow_when_neutral)
        car = (2 if alw else 3) if self.car_connected else 1
        amps = [self.amp if car == 2 and i < self.phases else 0 for i in range(3)]
        powers = [a * self.voltage for a in amps]
        nrg = [self.voltage] * 3 + [0] + amps + powers + [0, sum(powers)] + [1, 1, 1, 0]
        return {"car": car, "alw": alw, "amp": self.amp, "frc": self.frc, "nrg": nrg, "err": 0, "fwv": "56.8",
                "acu": self.amp if alw else None, "modelStatus": 3 if self.frc == 2 else 4}

    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        if path == "/api/status":
            v = self.values()
            keys = q["filter"].split(",") if "filter" in q else list(v)
            return 200, {k: v[k] for k in keys if k in v}
        if path == "/api/set":
            self.sets.append(dict(q))
            out: dict[str, object] = {}
            for k, raw in q.items():
                try:
                    val = json.loads(raw)
                except ValueError:
                    out[k] = "could not parse json value"
                    continue
                if k == "amp" and isinstance(val, int) and 6 <= val <= 32:
                    self.amp, out[k] = val, True
                elif k == "frc" and val in (0, 1, 2):
                    self.frc, out[k] = val, True
                else:
                    out[k] = f"invalid value for {k}"
            return 200, out
        return 404, {"error": "not found"}
