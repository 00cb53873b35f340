"""Wibeee (Circutor / Smilics, formerly Mirubee) energy meters over their local HTTP: ``GET
/en/status.xml`` (the page the device's own web interface polls; the one pywibeee 0.1.8's
``WibeeeAPI.async_fetch_status`` and Home Assistant's wibeee integration read).

Fields (``<response>``'s children, per phase ``N`` = 1..3, ``4`` the device's total; units as
Home Assistant's ``homeassistant/components/wibeee/const.py`` declares them):
``faseN_p_activa`` W, ``faseN_factor_potencia`` (power factor), ``faseN_energia_activa`` Wh.

**Sign.** Circutor publishes no sign convention for ``status.xml``. What real devices do: the
active power is a magnitude, and the **sign of the power factor gives the direction**, negative
while the phase exports ("Si powerFactor es negativo está volcando, positivo consumiendo":
FreeDS, the Spanish PV surplus diverter that reads Wibeees, ``src/wibeee.ino``, which also keeps a
recorded WBB answer). So, per phase, ``import_w = |p_activa|`` when ``factor_potencia >= 0`` and
``-|p_activa|`` when it is negative; a negative ``p_activa`` with a positive power factor is
contradictory and a failed read. ``net_w = -sum(import_w)`` over the phases the grid crosses.

**Which phase is the grid.** ``phases: 1`` (Wibeee 1Ph / BOX mono: the clamp on the incoming
line) reads ``fase1``; ``phases: 3`` (Wibeee 3Ph) nets ``fase1`` + ``fase2`` + ``fase3``, as the
Spanish utility meter nets the phases. ``fase4`` (the device's total) is not used: in the
recorded WBB answer it is not the sum of the phases (2,802 W against 950 W), and its sign is
undocumented. ``energia_activa`` is one counter per phase with no direction (no separate export
counter), so no import/export counters are reported: gestor integrates ``net_w``.

Not on pywibeee (0.1.8): it reads the same page, but every failure becomes ``None`` with the
reason only in a debug log (a busy device, a refused connection and a garbled page are then one
and the same), it retries with sleeps inside the read, and it reads the body without a size bound.
This driver uses :class:`drivers.http.Device` (total deadline, 1 MB body cap, one error sentence).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Literal

from pydantic import Field

from drivers import DriverContext
from drivers.http import DeviceHost, Device, HttpError
from drivers.meters.base import MeterError, MeterSettings, Reading, register_meter


class WibeeeSettings(MeterSettings):
    driver: Literal["wibeee"] = "wibeee"
    host: DeviceHost  # the Wibeee's IP address or name
    port: int = Field(80, ge=1, le=65535)       # its HTTP port
    timeout_s: float = Field(3.0, gt=0, le=20)  # the whole read, s
    phases: Literal[1, 3] = 1                    # 1: fase1 is the grid; 3: fase1-3 netted


class WibeeeMeter:
    """Reads a Wibeee's ``status.xml``. Raises MeterError with the URL and the reason."""

    def __init__(self, s: WibeeeSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self.url = f"http://{s.host}:{s.port}/en/status.xml"
        self.device = Device()

    def read(self) -> Reading:
        where = f"wibeee {self.s.host}: {self.url}"
        try:
            body = self.device.get_bytes(self.url, self.s.timeout_s)
        except HttpError as e:
            raise MeterError(f"wibeee {self.s.host}: {e}") from None
        fields = parse_status(body, where)
        import_w = sum(phase_import_w(fields, n, where) for n in range(1, self.s.phases + 1))
        return Reading(at=self.clock.now(), net_w=-import_w)

    def close(self) -> None:
        self.device.close()


def parse_status(body: bytes, where: str) -> dict[str, str]:
    """``status.xml``'s ``<response>`` children as {tag: text}; MeterError if it is not that XML
    (an HTML page, a truncated body) or declares a DTD (entities are never expanded)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise MeterError(f"{where}: the answer declares a DTD or entities ({len(body)} bytes): refused")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise MeterError(f"{where}: the answer is not complete XML ({e}; {len(body)} bytes)") from None
    if root.tag != "response":
        raise MeterError(f"{where}: the answer is <{root.tag[:40]}>, not Wibeee's <response> (an HTML page?)")
    return {child.tag: (child.text or "").strip() for child in root}


def field_value(fields: dict[str, str], name: str, where: str) -> float:
    """``fields[name]`` as a finite number, or MeterError naming the field and its text."""
    text = fields.get(name)
    if text is None:
        raise MeterError(f"{where}: the answer lacks <{name}>")
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise MeterError(f"{where}: <{name}> is {text[:40]!r}, not a number")
    return v


def phase_import_w(fields: dict[str, str], n: int, where: str) -> float:
    """Phase ``n``'s power, W, import-positive: ``|faseN_p_activa|`` signed by the power factor's
    sign (negative = exporting; see the module doc)."""
    p = field_value(fields, f"fase{n}_p_activa", where)
    pf = field_value(fields, f"fase{n}_factor_potencia", where)
    if p < 0 < pf:
        raise MeterError(f"{where}: fase{n}_p_activa {p:g} W is negative but fase{n}_factor_potencia {pf:g} is "
                         "positive: the direction is contradictory")
    return -abs(p) if pf < 0 or p < 0 else abs(p)


@register_meter("wibeee", WibeeeSettings)
def _open(s: WibeeeSettings, ctx: DriverContext) -> WibeeeMeter:
    return WibeeeMeter(s, ctx)
