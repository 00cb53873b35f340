"""Emulators of the HTTP meter families on loopback, serving recorded real answers
(tests/data/meters/<family>/, each file citing its source): a Fronius Datamanager / Symo (Solar
API v1) and a Wibeee (``/en/status.xml``). Built on :class:`tests.emulators.http_devices.DeviceServer`:
its faults ("timeout", "503", "drop", "truncated", "garbage", "drip") and ``raw_body`` apply.

Each serves a recorded answer as is (:meth:`use`), or with its power and energy fields set
(:meth:`set_net`): what the integration tests play from the house recording.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from tests.emulators.http_devices import DeviceServer

METERS = Path(__file__).resolve().parent.parent / "data" / "meters"


def fronius_answer(name: str) -> dict:
    """A recorded Solar API answer from tests/data/meters/fronius/ (see SOURCES.md there)."""
    return json.loads((METERS / "fronius" / name).read_text())


class FroniusDatamanager(DeviceServer):
    """Solar API v1: ``GetMeterRealtimeData.cgi?Scope=Device&DeviceId=<meter_id>``,
    ``GetPowerFlowRealtimeData.fcgi`` and ``/solar_api/GetAPIVersion.cgi``; any other path is the 404 HTML page a Datamanager sends."""

    def __init__(self, port: int, meter_id: int = 0) -> None:
        super().__init__(port)
        self.meter_id = meter_id
        self.meter = fronius_answer("meter_device_0_night.json")
        self.flow = fronius_answer("powerflow_night.json")

    def use(self, when: str) -> "FroniusDatamanager":
        """Serve the recorded ``"noon"`` (export) or ``"night"`` (import) answers."""
        self.meter = fronius_answer(f"meter_device_0_{when}.json")
        self.flow = fronius_answer(f"powerflow_{when}.json")
        return self

    def set_net(self, net_w: float, import_wh: float, export_wh: float, pv_w: float | None = None) -> None:
        """The meter shows ``net_w`` (export-positive) as Fronius does (import-positive, spread over
        the phases), and the counters ``import_wh``/``export_wh``; the power flow ``pv_w``."""
        m = copy.deepcopy(self.meter)
        d = m["Body"]["Data"]
        d["PowerReal_P_Sum"] = -net_w
        for i in (1, 2, 3):
            d[f"PowerReal_P_Phase_{i}"] = -net_w / 3
        d["EnergyReal_WAC_Sum_Consumed"] = d["EnergyReal_WAC_Plus_Absolute"] = import_wh
        d["EnergyReal_WAC_Sum_Produced"] = d["EnergyReal_WAC_Minus_Absolute"] = export_wh
        self.meter = m
        f = copy.deepcopy(self.flow)
        f["Body"]["Data"]["Site"].update({"P_PV": pv_w, "P_Grid": -net_w})
        self.flow = f

    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        if path == "/solar_api/v1/GetMeterRealtimeData.cgi" and q.get("Scope") == "Device":
            if q.get("DeviceId") != str(self.meter_id):
                bad = copy.deepcopy(self.meter)
                bad["Body"]["Data"] = {}
                bad["Head"]["Status"] = {"Code": 12, "Reason": "Device not available", "UserMessage": ""}
                return 200, bad
            return 200, self.meter
        if path == "/solar_api/v1/GetPowerFlowRealtimeData.fcgi":
            return 200, self.flow
        if path == "/solar_api/GetAPIVersion.cgi":
            return 200, fronius_answer("api_version.json")
        return 404, "<html><head><title>404 Not Found</title></head><body>Not Found</body></html>"


class Wibeee(DeviceServer):
    """A Wibeee answering ``GET /en/status.xml`` with a recorded answer (text/xml)."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.content_type = "text/xml"
        self.xml = ""
        self.use("import")

    def use(self, when: str) -> "Wibeee":
        """Serve the recorded ``"import"`` or the ``"export"`` (noon) answer."""
        self.xml = (METERS / "wibeee" / f"status_{when}.xml").read_text(encoding="iso-8859-1")
        return self

    def set_phase(self, n: int, import_w: float) -> None:
        """Phase ``n`` shows ``import_w`` (import-positive) as a Wibeee does: ``p_activa`` the
        magnitude, the power factor's sign the direction."""
        pf = self.fields()[f"fase{n}_factor_potencia"]
        pf_abs = abs(float(pf)) or 0.95
        self.set_field(f"fase{n}_p_activa", f"{abs(import_w):.2f}")
        self.set_field(f"fase{n}_factor_potencia", f"{pf_abs if import_w >= 0 else -pf_abs:.3f}")

    def set_field(self, name: str, text: str) -> None:
        self.xml, n = re.subn(f"<{name}>[^<]*</{name}>", f"<{name}>{text}</{name}>", self.xml)
        assert n == 1, name

    def fields(self) -> dict[str, str]:
        return dict(re.findall(r"<(\w+)>([^<]*)</\1>", self.xml))

    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        if path == "/en/status.xml":
            return 200, self.xml.encode("iso-8859-1").decode("latin-1")
        return 404, "<html><body>404</body></html>"
