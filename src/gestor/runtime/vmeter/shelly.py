"""The Shelly Pro 3EM's Gen2 RPC (:class:`ShellyRpc`), whatever the transport (HTTP, UDP,
WebSocket): the methods Home Assistant's Shelly integration (aioshelly's ``RpcDevice``) asks while
it adds a device and follows it, and those zero-export devices poll.

The shapes follow Shelly's Gen2 API documentation (Shelly.GetDeviceInfo, Shelly.GetConfig,
Shelly.GetStatus, Shelly.GetComponents, Shelly.ListMethods, Sys.GetStatus, Sys.GetConfig,
EM.GetStatus, EM.GetConfig, EMData.GetStatus, Script.List) and aioshelly's own test fixtures
(tests/rpc_device/fixtures/*/Shelly.GetConfig and Shelly.GetComponents: ``{"components": [],
"cfg_rev": n, "offset": 0, "total": 0}``); not checked against a device."""
from __future__ import annotations

import hashlib
import socket
from typing import Any, Callable

from gestor.runtime.vmeter.base import NOMINAL_HZ, NOMINAL_V, View, VirtualMeter

# The Pro 3EM's model and application names; a firmware id in the firmware's form (build date /
# version - commit), invented: Home Assistant reads the date to tell an old firmware (aioshelly:
# 2024-02-13 or later also means Shelly.GetComponents is asked).
SHELLY_MODEL, SHELLY_APP, SHELLY_VER = "SPEM-003CEBEU", "Pro3EM", "1.4.4"
SHELLY_FW_ID = "20241011-114455/1.4.4-gestor0"
CFG_REV = 1  # the configuration never changes: one revision

# Shelly Gen2 RPC error codes (gRPC-style: -103 invalid argument, -105 not found, -114 unavailable)
# and the RPC layer's 404 "No handler for <method>"; over a GET the HTTP status says the same
# (400, 404, 503). Taken from Shelly's API documentation, not checked against a device.
INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, NO_HANDLER = -103, -105, -114, 404


class RpcError(Exception):
    """A Shelly RPC error: ``code`` (Shelly's), ``http`` (the status of a GET), ``message``."""

    def __init__(self, code: int, http: int, message: str) -> None:
        super().__init__(message)
        self.code, self.http, self.message = code, http, message


def device_identity(site: str) -> tuple[str, str]:
    """(MAC, device id) of the emulated Shelly: a locally administered MAC derived from the host
    and the site, the same at every start (a battery remembers the meter it paired with)."""
    digest = hashlib.sha256(f"gestor-virtual-meter/{socket.gethostname()}/{site}".encode()).digest()
    mac = "02" + digest[:5].hex().upper()
    return mac, f"shellypro3em-{mac.lower()}"


def _p(w: float) -> float:
    return float(round(w, 1))


def em_status(v: View) -> dict[str, Any]:
    """``EM.GetStatus`` (Shelly Gen2 API, the EM component's status) of a fresh view."""
    phase = v.import_w / 3.0
    out: dict[str, Any] = {"id": 0}
    for p in "abc":
        out.update({f"{p}_current": round(abs(phase) / NOMINAL_V, 3), f"{p}_voltage": NOMINAL_V,
                    f"{p}_act_power": _p(phase), f"{p}_aprt_power": _p(abs(phase)),
                    f"{p}_pf": 1.0 if phase else 0.0, f"{p}_freq": NOMINAL_HZ})
    out.update({"n_current": None, "total_current": round(3 * abs(phase) / NOMINAL_V, 3),
                "total_act_power": _p(v.import_w), "total_aprt_power": _p(abs(v.import_w)),
                "user_calibrated_phase": []})
    return out


def emdata_status(v: View) -> dict[str, Any]:
    """``EMData.GetStatus``: the real meter's counters (Wh), a third on each phase; 0 without."""
    imp, exp = v.import_wh_total or 0.0, v.export_wh_total or 0.0
    out: dict[str, Any] = {"id": 0}
    for p in "abc":
        out.update({f"{p}_total_act_energy": round(imp / 3.0, 2), f"{p}_total_act_ret_energy": round(exp / 3.0, 2)})
    out.update({"total_act": round(imp, 2), "total_act_ret": round(exp, 2)})
    return out


def em_config() -> dict[str, Any]:
    """``EM.GetConfig``: the EM component's settings (the documented keys; a 120 A clamp)."""
    return {"id": 0, "name": None, "blink_mode_selector": "active_energy", "phase_selector": "all",
            "monitor_phase_sequence": False, "ct_type": "120A"}


# what Shelly.ListMethods lists: every method answered here
METHODS = ["Shelly.GetDeviceInfo", "Shelly.GetConfig", "Shelly.GetStatus", "Shelly.GetComponents",
           "Shelly.ListMethods", "Sys.GetConfig", "Sys.GetStatus", "EM.GetConfig", "EM.GetStatus",
           "EMData.GetStatus", "Script.List"]


class ShellyRpc:
    """The Shelly Pro 3EM's RPC methods, whatever the transport."""

    def __init__(self, meter: VirtualMeter) -> None:
        self.meter = meter
        self.mac, self.device_id = device_identity(meter.s.site)
        self.started = meter.clock.monotonic()

    def device_info(self) -> dict[str, Any]:
        """``Shelly.GetDeviceInfo`` (and ``GET /shelly``)."""
        return {"name": "gestor virtual meter", "id": self.device_id, "mac": self.mac, "slot": 0,
                "model": SHELLY_MODEL, "gen": 2, "fw_id": SHELLY_FW_ID, "ver": SHELLY_VER, "app": SHELLY_APP,
                "auth_en": False, "auth_domain": None, "profile": "triphase"}

    def sys_config(self) -> dict[str, Any]:
        """``Sys.GetConfig``: the device's name (Home Assistant names the device with it)."""
        return {"device": {"name": "gestor virtual meter", "mac": self.mac, "fw_id": SHELLY_FW_ID,
                           "discoverable": False, "profile": "triphase"},
                "location": {"tz": self.meter.s.timezone, "lat": None, "lon": None},
                "debug": {"level": 2, "file_level": None, "mqtt": {"enable": False}, "websocket": {"enable": False},
                          "udp": {"addr": None}},
                "ui_data": {}, "rpc_udp": {"dst_addr": None, "listen_port": None},
                "sntp": {"server": None}, "cfg_rev": CFG_REV}

    def config(self) -> dict[str, Any]:
        """``Shelly.GetConfig``: every component's configuration (nothing of the cloud, MQTT or
        outbound WebSocket is on)."""
        return {"ble": {"enable": False, "rpc": {"enable": False}}, "cloud": {"enable": False, "server": None},
                "em:0": em_config(), "emdata:0": {},
                "mqtt": {"enable": False, "server": None, "client_id": self.device_id, "user": None,
                         "topic_prefix": self.device_id, "rpc_ntf": False, "status_ntf": False,
                         "enable_rpc": False, "enable_control": False},
                "sys": self.sys_config(),
                "wifi": {"sta": {"ssid": None, "is_open": True, "enable": False, "ipv4mode": "dhcp"}},
                "ws": {"enable": False, "server": None, "ssl_ca": "ca.pem"}}

    def sys_status(self) -> dict[str, Any]:
        """``Sys.GetStatus`` (the documented keys; the clock is the injected one)."""
        now = self.meter.clock.now()
        return {"mac": self.mac, "restart_required": False, "time": now.astimezone(self.meter.s.tz).strftime("%H:%M"),
                "unixtime": int(now.timestamp()), "uptime": int(self.meter.clock.monotonic() - self.started),
                "ram_size": 0, "ram_free": 0, "fs_size": 0, "fs_free": 0, "cfg_rev": CFG_REV, "kvs_rev": 0,
                "schedule_rev": 0, "webhook_rev": 0, "available_updates": {}}

    def status(self, v: View) -> dict[str, Any]:
        """``Shelly.GetStatus`` of a fresh view (and ``NotifyFullStatus``'s parameters)."""
        return {"sys": self.sys_status(), "cloud": {"connected": False}, "mqtt": {"connected": False},
                "ws": {"connected": False}, "em:0": em_status(v), "emdata:0": emdata_status(v)}

    def notify_status(self, v: View, dst: str) -> dict[str, Any]:
        """The ``NotifyStatus`` frame pushed to a WebSocket client ``dst`` on a new reading: the
        measuring components' status, stamped with the clock's epoch seconds."""
        return {"src": self.device_id, "dst": dst, "method": "NotifyStatus",
                "params": {"ts": round(self.meter.clock.now().timestamp(), 2), "em:0": em_status(v),
                           "emdata:0": emdata_status(v)}}

    def call(self, method: Any, params: Any) -> dict[str, Any]:
        """The result of ``method``. Raises RpcError (no such method, a bad id, no fresh reading)."""
        if not isinstance(method, str):
            raise RpcError(INVALID_ARGUMENT, 400, "method must be a string")
        static: dict[str, Callable[[], dict[str, Any]]] = {
            "Shelly.GetDeviceInfo": self.device_info, "Shelly.GetConfig": self.config,
            "Sys.GetConfig": self.sys_config, "Sys.GetStatus": self.sys_status,
            "Shelly.ListMethods": lambda: {"methods": list(METHODS)},
            "Script.List": lambda: {"scripts": []},  # no scripts: HA asks before it offers its own
            "Shelly.GetComponents": lambda: {"components": [], "cfg_rev": CFG_REV, "offset": 0, "total": 0}}
        if method in static:
            return static[method]()
        handlers: dict[str, Callable[[View], dict[str, Any]]] = {
            "EM.GetStatus": em_status, "EMData.GetStatus": emdata_status, "Shelly.GetStatus": self.status,
            "EM.GetConfig": lambda _v: em_config()}
        if method not in handlers:
            raise RpcError(NO_HANDLER, 404, f"No handler for {method[:64]}")
        if method != "Shelly.GetStatus":
            cid = (params or {}).get("id", 0) if isinstance(params, dict) or params is None else None
            if isinstance(cid, str) and cid.strip().isdigit():
                cid = int(cid)
            if not isinstance(cid, int) or isinstance(cid, bool):
                raise RpcError(INVALID_ARGUMENT, 400, "Argument 'id' must be a number")
            if cid != 0:
                raise RpcError(NOT_FOUND, 404, f"Argument 'id', value {cid} not found!")
        if method == "EM.GetConfig":
            return em_config()
        v = self.meter.view()
        if v.stale is not None:
            raise RpcError(UNAVAILABLE, 503, f"no meter reading: {v.stale}")
        return handlers[method](v)

    def frame(self, request: Any, silent_when_stale: bool = False) -> dict[str, Any] | None:
        """The JSON-RPC answer frame to a request frame ``{"id", "src", "method", "params"}``: its
        ``result``, or its ``error``. Without a fresh reading: the error frame, or None with
        ``silent_when_stale`` (the UDP transport then answers nothing)."""
        if not isinstance(request, dict):
            return {"id": None, "src": self.device_id, "error": {"code": INVALID_ARGUMENT, "message": "not a request"}}
        rid, src = request.get("id"), request.get("src")
        rid = rid[:64] if isinstance(rid, str) else rid
        head = {"id": rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None,
                "src": self.device_id, "dst": src[:64] if isinstance(src, str) else "unknown"}
        try:
            return {**head, "result": self.call(request.get("method"), request.get("params"))}
        except RpcError as e:
            if e.code == UNAVAILABLE and silent_when_stale:
                return None
            return {**head, "error": {"code": e.code, "message": e.message}}
