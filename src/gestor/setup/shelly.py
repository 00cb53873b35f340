"""Tell a Shelly's kind from its own ``GET /shelly`` answer: a grid meter (Pro 3EM, EM, 3EM:
``driver: shelly_em``) or relays (Plus/Pro 1, 2, 4, plugs: ``driver: shelly``).

Sources: Shelly Gen2+ API docs, "Shelly.GetDeviceInfo" (``/shelly`` answers the same object:
``gen``, ``app``, ``model``, ``auth_en``); Gen1 API docs, "/shelly" (``type``, ``auth``). The
``app`` and ``type`` names below are the ones those docs list per device. A Shelly not listed is
reported as found but not proposed (the driver may not know how to read it).
"""
from __future__ import annotations

from typing import Any

from gestor.setup.found import Found, json_answer

# Gen2+ ``app`` → switch channels (Shelly Gen2 API docs, "Devices")
GEN2_RELAYS = {"Plus1": 1, "Plus1PM": 1, "Plus2PM": 2, "PlusPlugS": 1, "PlusPlugIT": 1, "PlusPlugUK": 1,
               "Pro1": 1, "Pro1PM": 1, "Pro2": 2, "Pro2PM": 2, "Pro3": 3, "Pro4PM": 4, "Mini1": 1,
               "Mini1PM": 1, "Mini1G3": 1, "Mini1PMG3": 1, "S1G3": 1, "1G3": 1, "1PMG3": 1}
# Gen2+ ``app`` read by drivers/meters/shelly_em.py's generation 2 (EM.GetStatus, three phases)
GEN2_METERS = {"Pro3EM"}
# Gen1 ``type`` → (role, channels) (Shelly Gen1 API docs)
GEN1 = {"SHEM": ("meter", 1), "SHEM-3": ("meter", 1), "SHSW-1": ("relay", 1), "SHSW-PM": ("relay", 1),
        "SHSW-25": ("relay", 2), "SHPLG-S": ("relay", 1), "SHPLG-1": ("relay", 1), "SHPLG-U1": ("relay", 1),
        "SHPLG2-1": ("relay", 1), "SHSW-L": ("relay", 1)}
TIMEOUT_S = 3.0


def classify(host: str, info: Any) -> Found | None:
    """The section a Shelly at ``host`` proposes from its ``/shelly`` answer ``info``, or None
    when the device is not one gestor reads or switches."""
    if not isinstance(info, dict):
        return None
    gen = info.get("gen")
    locked = bool(info.get("auth_en") or info.get("auth"))
    notes = ("it asks for a password: answer shelly_password",) if locked else ()
    if isinstance(gen, int) and gen >= 2:
        app, model = str(info.get("app", ""))[:40], str(info.get("model", ""))[:40]
        label = f"Shelly {app} ({model}) at {host}"
        if app in GEN2_METERS:
            return Found("meter", {"driver": "shelly_em", "host": host, "generation": 2}, label, "mdns", notes=notes, needs_password=locked)
        if app in GEN2_RELAYS:
            return Found("relay", {"driver": "shelly", "host": host, "generation": 2}, label, "mdns",
                         channels=GEN2_RELAYS[app], notes=notes, needs_password=locked)
        return None
    kind = GEN1.get(str(info.get("type", ""))[:40])
    if kind is None:
        return None
    label = f"Shelly {info.get('type')} at {host}"
    if kind[0] == "meter":
        return Found("meter", {"driver": "shelly_em", "host": host, "generation": 1}, label, "mdns", notes=notes, needs_password=locked)
    return Found("relay", {"driver": "shelly", "host": host, "generation": 1}, label, "mdns",
                 channels=kind[1], notes=notes, needs_password=locked)


def identify(host: str, timeout_s: float = TIMEOUT_S) -> Found | None:
    """Ask the Shelly at ``host`` (``http://HOST/shelly``, no password needed on any generation;
    the answer at most drivers.http.MAX_BODY_BYTES, within ``timeout_s``) what it is. None when
    it does not answer or is not a device gestor knows."""
    return classify(host, json_answer(f"http://{host}/shelly", timeout_s))
