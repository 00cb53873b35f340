"""Eastron SDM meters over Modbus RTU (RS-485) or TCP (through a gateway): SDM630 (three-phase),
SDM72 (three-phase), SDM120 and SDM230 (single-phase).

Register map: Eastron "SDM630 Modbus Protocol" (v1.5), "SDM120 Modbus Protocol" (v2.4),
"SDM230 Modbus Protocol" (v1.3) and "SDM72D-M Modbus Protocol" (v1.0), input registers
(function 04), each value an IEEE-754 float32 in two registers, high word first:

======  =================================  =======  ==========================
address  quantity                           unit     models
======  =================================  =======  ==========================
0x000C  phase 1 active power                W        all (single-phase: the power)
0x000E  phase 2 active power                W        SDM630, SDM72
0x0010  phase 3 active power                W        SDM630, SDM72
0x0034  total system power                 W        SDM630, SDM72
0x0048  import active energy               kWh      all
0x004A  export active energy               kWh      all
======  =================================  =======  ==========================

Power is positive when importing (flowing from the grid into the house) with the meter wired as its
datasheet shows; ``net_w = -power`` (DESIGN.md section 2). A meter mounted the other way round is
set ``sign: export_positive``. The total system power is the sum of the signed phase powers: the
phases are netted as the utility nets them. One request per read: registers 0x000C-0x004B for the
three-phase models (64 registers), 0x000C-0x000D and 0x0048-0x004B for the single-phase ones.
"""
from __future__ import annotations

from typing import Literal

from drivers import DriverContext
from drivers.meters.base import MeterError, MeterSettings, Reading, register_meter
from drivers.modbus import ModbusClient, ModbusIOError, ModbusLink, decode

THREE_PHASE = {"sdm630", "sdm72"}


class EastronSettings(MeterSettings, ModbusLink):
    driver: Literal["eastron"] = "eastron"
    model: Literal["sdm630", "sdm72", "sdm120", "sdm230"] = "sdm630"
    sign: Literal["import_positive", "export_positive"] = "import_positive"  # how the meter is mounted

    @property
    def counter_resolution_wh(self) -> float:
        """10 Wh: the SDM's energy registers count 0.01 kWh (their display's resolution)."""
        return 10.0


class EastronMeter:
    """Reads an Eastron SDM meter. Raises MeterError (with the link and the reason) on any failure."""

    def __init__(self, s: EastronSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self.client = ModbusClient(s)
        self._k = -1.0 if s.sign == "import_positive" else 1.0

    def read(self) -> Reading:
        try:
            if self.s.model in THREE_PHASE:
                regs = self.client.read_registers("input", 0x000C, 0x004C - 0x000C)
                f = lambda addr: decode(regs[addr - 0x000C: addr - 0x000C + 2], "float32")  # noqa: E731
                power_w, imp_kwh, exp_kwh = f(0x0034), f(0x0048), f(0x004A)
            else:
                p = self.client.read_registers("input", 0x000C, 2)
                e = self.client.read_registers("input", 0x0048, 4)
                power_w, imp_kwh, exp_kwh = decode(p, "float32"), decode(e[:2], "float32"), decode(e[2:], "float32")
        except ModbusIOError as e:
            raise MeterError(str(e)) from None
        at = self.clock.now()
        if imp_kwh < 0 or exp_kwh < 0:
            raise MeterError(f"energy counter is negative ({imp_kwh} / {exp_kwh} kWh): wrong register map or word order?")
        imp, exp = imp_kwh * 1000.0, exp_kwh * 1000.0
        if self.s.sign == "export_positive":
            imp, exp = exp, imp
        return Reading(at=at, net_w=self._k * power_w, import_wh_total=imp, export_wh_total=exp)

    def close(self) -> None:
        self.client.close()


@register_meter("eastron", EastronSettings)
def _open(s: EastronSettings, ctx: DriverContext) -> EastronMeter:
    return EastronMeter(s, ctx)
