"""SunSpec meters over Modbus TCP with ``pysunspec2`` (optional extra ``sunspec``; 1.3): the grid
meter of a Fronius (its Smart Meter behind the Datamanager, unit 240), SMA, SolarEdge, Kostal and
the others that speak SunSpec.

Discovery (pysunspec2 1.3.7 ``sunspec2/modbus/client.py`` ``SunSpecModbusClientDevice.scan``): the
'SunS' marker at base address 40000, 0 or 50000, then the chain of models up to the end model
0xFFFF. The meter is the first model 201, 202, 203 or 204 (integer + scale factor: single-phase,
split-phase, wye, delta) or 211-214 (the same in float32) of unit ``unit_id``; without
``unit_id`` the units 1, 240, 126, 71 and 2 are tried in that order (the inverter's own unit,
Fronius' meter, SMA's SunSpec unit, Kostal's, a second device). Discovery runs once, at the first
connection; the unit and the model's address are remembered, and each read after it is one
request for the model (re-discovered only if that model is gone).

Points (pysunspec2 ``sunspec2/models/json/model_203.json``, the SunSpec meter models): ``W`` "Total
Real Power" (W, scaled by ``W_SF``), ``TotWhImp`` "Total Real Energy Imported" and ``TotWhExp``
"Total Real Energy Exported" (Wh, acc32, scaled by ``TotWh_SF``); pysunspec2 applies the scale
factors (``cvalue``). Sign: the SunSpec meter models count ``W`` positive when the meter imports
(power delivered from the grid into the site). The model JSON states no sign for ``W`` ("Total
Real Power"), but its reactive-energy points place it: ``TotVArhImpQ1`` / ``TotVArhExpQ4`` are
quadrants 1 and 4 of the four-quadrant metering convention (IEC 62053-23), the quadrants where
active power is imported, i.e. ``W`` > 0; Fronius' "Datamanager Modbus TCP & RTU" register map
says the same of its Smart Meter (positive: consumption from the grid). So ``net_w = -W``
(DESIGN.md section 2). A point that reads "not
implemented" (0x8000 for int16, 0 for acc32 ... : pysunspec2 makes it None) is a failed read,
never a zero.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any, Literal

from pydantic import Field

from drivers import DriverContext
from drivers.meters.base import MeterError, MeterSettings, Reading, register_meter
from drivers.modbus import EXCEPTION_CODES

log = logging.getLogger("gestor.sunspec")
METER_MODELS = (201, 202, 203, 204, 211, 212, 213, 214)
SCAN_UNITS = (1, 240, 126, 71, 2)   # without unit_id: tried once, at the first connection
DISCOVERY_BUDGET_S = 25.0            # no further unit tried after this: a cycle fits the 60 s watchdog


class SunSpecSettings(MeterSettings):
    """``driver: sunspec``. ``unit_id``: the Modbus unit of the meter's models (Fronius: 240 for the
    Smart Meter behind the Datamanager); None: discovered at the first connection (SCAN_UNITS).
    ``timeout_s``: bound on each Modbus request, s."""

    driver: Literal["sunspec"] = "sunspec"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(502, gt=0, lt=65536)
    unit_id: int | None = Field(None, ge=1, le=247)
    timeout_s: float = Field(2.0, gt=0, le=10)
    counter_step_wh: float = Field(1.0, gt=0, le=1000)  # the counters' step, Wh: 10^TotWh_SF (0 on most: 1 Wh)

    @property
    def counter_resolution_wh(self) -> float:
        """The meter's energy counters' step, Wh (``counter_step_wh``): ``TotWh_SF`` is 0 on most
        meters (1 Wh counts); a read that finds a coarser one logs a warning saying what to set."""
        return self.counter_step_wh


    def describe(self, unit: int | None = None) -> str:
        u = unit if unit is not None else self.unit_id
        return f"sunspec {self.host}:{self.port} unit {'?' if u is None else u}"


class SunSpecMeter:
    """Reads a SunSpec meter model. Raises MeterError (naming the link and the reason) on any failure."""

    def __init__(self, s: SunSpecSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self.unit: int | None = s.unit_id   # the unit found by discovery, remembered
        self._device: Any = None            # sunspec2 SunSpecModbusClientDeviceTCP, connected
        self._model: Any = None             # its meter model
        self._connected = False
        self._warned_step = False           # the counter-step warning, given once

    def _discover(self) -> None:
        """Connect, find the 'SunS' marker and the first meter model: on ``unit_id``, or on the
        first of SCAN_UNITS that has one. A unit is first asked for the marker at 40000 (one
        request: a silent unit costs one ``timeout_s``); pysunspec2's scan then walks the models
        (from 40000, or from 0 and 50000 when 40000 is not the marker). Units are no longer tried
        once DISCOVERY_BUDGET_S have passed (by the daemon's clock). Raises MeterError saying what
        each unit answered."""
        from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP
        units = (self.unit,) if self.unit is not None else SCAN_UNITS
        why: list[str] = []
        start = self.clock.monotonic()
        for unit in units:
            if self.clock.monotonic() - start > DISCOVERY_BUDGET_S:
                why.append(f"units {', '.join(map(str, units[units.index(unit):]))} not tried: discovery "
                           f"took more than {DISCOVERY_BUDGET_S:g} s (set meter.unit_id)")
                break
            d = SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr=self.s.host, ipport=self.s.port,
                                             timeout=self.s.timeout_s)
            try:
                d.connect()
                marker = d.read(40000, 2)
                d.base_addr_list = [40000] if marker[:4] == b"SunS" else [0, 50000]
                d.scan(connect=False, full_model_read=False)
                found = [m for mid in METER_MODELS for m in d.models.get(mid, [])]
                if found:
                    self._device, self._model, self.unit = d, min(found, key=lambda m: m.model_addr), unit
                    self._connected = True
                    return
                ids = sorted(k for k in d.models if isinstance(k, int))
                why.append(f"unit {unit}: SunSpec models {ids}, no meter model (201-204, 211-214)")
            except Exception as e:  # pysunspec2 raises its own SunSpecModbusClient* and ModbusClient* errors
                why.append(f"unit {unit}: {_reason(e)}")
            d.disconnect()
        raise MeterError(f"sunspec {self.s.host}:{self.s.port}: no SunSpec meter found ({'; '.join(why)})")

    def read(self) -> Reading:
        try:
            if self._model is None:
                self._discover()
            elif not self._connected:
                self._device.connect()
            self._connected = True
            self._model.read()
            pts = self._model.points
            model_id = int(self._model.model_id)
            if pts["ID"].value != model_id:   # the device's model chain changed: discover again
                found = pts["ID"].value
                self.close()
                self._device = self._model = None
                raise MeterError(f"{self.s.describe(self.unit)}: model {model_id} is gone from its address "
                                 f"(reads model id {found}); discovering again at the next read")
            values = {name: pts[name].cvalue for name in ("W", "TotWhImp", "TotWhExp")}
            self._check_step(pts.get("TotWh_SF"))
        except MeterError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise MeterError(f"{self.s.describe(self.unit)}: {_reason(e)}") from None
        at = self.clock.now()
        bad = [n for n, v in values.items() if v is None or not math.isfinite(float(v))]
        if bad:
            raise MeterError(f"{self.s.describe(self.unit)}: model {model_id} point(s) {', '.join(bad)} read "
                             "'not implemented' (0x8000 or its type's like): no meter value")
        return Reading(at=at, net_w=-float(values["W"]), import_wh_total=float(values["TotWhImp"]),
                       export_wh_total=float(values["TotWhExp"]))

    def _check_step(self, sf_point: Any) -> None:
        """Warn once when the counters count coarser steps (10^TotWh_SF Wh) than ``counter_step_wh``:
        the frozen-counter check would then see counters stand still while power flows."""
        sf = None if sf_point is None else sf_point.value
        if sf is None or self._warned_step:
            return
        step_wh = 10.0 ** int(sf)
        if step_wh > self.s.counter_step_wh:
            self._warned_step = True
            log.warning("%s: the energy counters count %g Wh steps (TotWh_SF %d): set meter.counter_step_wh: %g",
                        self.s.describe(self.unit), step_wh, int(sf), step_wh)

    def close(self) -> None:
        """Close the connection (the discovered unit and model are kept: the next read reconnects)."""
        self._connected = False
        if self._device is not None:
            self._device.disconnect()


def _reason(e: BaseException) -> str:
    """One line from pysunspec2's exception (its scan error has line breaks), with the meaning of a
    Modbus exception code it quotes ("Modbus exception 6" -> device busy)."""
    text = " ".join(str(e).split())[:200]
    text = re.sub(r"Modbus exception:? (\d+)",
                  lambda m: f"{m.group(0)} ({EXCEPTION_CODES.get(int(m.group(1)), 'unknown')})", text)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@register_meter("sunspec", SunSpecSettings)
def _open(s: SunSpecSettings, ctx: DriverContext) -> SunSpecMeter:
    return SunSpecMeter(s, ctx)
