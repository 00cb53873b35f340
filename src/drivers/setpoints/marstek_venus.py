"""Marstek Venus E / C (v1/v2 firmware register map) plug-in battery as a battery whose power
gestor sets, over Modbus: RTU on the battery's RS-485 port (115200 8N1 by default), or TCP
through an RS-485/Ethernet or Wi-Fi gateway (Elfin EW11, PUSR DR134, ...; ``transport: tcp``).

Source: Marstek's Modbus register list for the Venus E/C (v1/v2), as published by Marstek to its
users and transcribed in the community integrations (ViperRNMC/marstek_venus_modbus
``registers/e_v12.yaml``, evcc's ``marstek-venus`` template). Holding registers (read FC03,
write FC06), big-endian, device id 1 by default:

=====  =========================  =============  ==================================================
reg    name                       type, unit     values
=====  =========================  =============  ==================================================
32104  battery SOC                uint16, 1 %
32202  AC power                   int32, 1 W     + discharging (supplies), - charging (takes)
42000  RS485 control mode         uint16         0x55AA (21930) on, 0x55BB (21947) off; the 42xxx
                                                 commands act only while it is on
42010  forced charge/discharge    uint16         0 stop, 1 charge, 2 discharge
42020  forced charging power      uint16, 1 W    0..2500
42021  forced discharging power   uint16, 1 W    0..2500
=====  =========================  =============  ==================================================

(32102, int32 W, is the battery's DC power; gestor wants the house side, the AC power at the
plug, so it reads 32202 with the sign turned: + takes, - supplies.) Venus E v3 firmware moved
the measurements (SOC 34002/37005, AC power 30006): this map is not for it.

A command: RS485 control mode on if it is not (read first, written only then), the power
(42020 or 42021, whole W), then the direction (42010); 0 W is 42010 = 0 with the control kept.
**Idle**: 42010 = 0 (stop forcing), then 42000 = 0x55BB: the battery is back in its own work mode
(43000: manual, anti-feed or trade, as its app set it); nothing is written when the control mode
is already off.

**Device-side timeout**: the document gives none: a forced charge or discharge holds until it is
changed (or the SOC cutoffs 44000/44001 stop it). ``hold_s`` is None; the guard is gestor's own:
managing refreshes the setpoint each cycle, and its exit, a stale meter, the stop latch and
``stop-loads`` call :meth:`MarstekVenus.idle`. A gestor killed without its exit leaves the last
force running until the battery's own cutoff.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from drivers import DriverContext
from drivers.modbus import ModbusClient, ModbusIOError, ModbusLink, decode
from drivers.setpoints._battery import BatteryLimits, checked_soc_pct
from drivers.setpoints._modbus import ModbusSetpointSettings
from drivers.setpoints.base import SetpointError, SetpointState, register_setpoint

REG_SOC, REG_AC_POWER = 32104, 32202
REG_CONTROL, REG_FORCE, REG_CHARGE_W, REG_DISCHARGE_W = 42000, 42010, 42020, 42021
CONTROL_ON, CONTROL_OFF = 0x55AA, 0x55BB
STOP, CHARGE, DISCHARGE = 0, 1, 2
REQUESTS = 5                      # Modbus requests in the longest command (state)


class MarstekVenusSettings(BatteryLimits, ModbusSetpointSettings):
    driver: Literal["marstek_venus"] = "marstek_venus"
    baudrate: int = Field(115200, gt=0)                  # rtu (the battery's default)
    max_charge_w: float = Field(2500.0, ge=0, le=2500)
    max_discharge_w: float = Field(2500.0, ge=0, le=2500)
    min_soc_pct: float = Field(12.0, ge=0, le=100)       # 12: the lowest discharge cutoff the battery offers


@register_setpoint("marstek_venus", MarstekVenusSettings)
class MarstekVenus:
    """A Marstek Venus E/C in RS485 control mode while gestor sets it. ``hold_s`` None: no
    device-side timeout.

    Raises SetpointError (every method): no answer within ``timeout_s`` (each of the at most 5
    requests of a command has a fifth of it), a Modbus exception, a state of charge that is not
    0..100 % or a force mode that is not 0, 1 or 2.
    """

    hold_s: float | None = None

    def __init__(self, s: MarstekVenusSettings, ctx: DriverContext, name: str) -> None:
        self.s = s
        self.name = name
        link = {k: getattr(s, k) for k in ModbusLink.model_fields}
        link["timeout_s"] = s.timeout_s / (REQUESTS * (s.retries + 1))
        self.client = ModbusClient(ModbusLink(**link))

    def _fail(self, e: Exception) -> SetpointError:
        return SetpointError(f"marstek_venus ({self.name}): {e}")

    def _read(self, address: int, count: int = 1) -> list[int]:
        return self.client.read_registers("holding", address, count)

    def _soc_pct(self) -> float:
        return checked_soc_pct(decode(self._read(REG_SOC), "uint16"), f"register {REG_SOC}")

    def _write(self, address: int, value: int) -> None:
        self.client.write_registers(address, [value])

    def set_power_w(self, power_w: float, hold_s: float | None = None) -> float:
        """Force the battery to take ``power_w`` W (+ charge, - discharge), whole W toward 0, clamped to
        the power limits and the state-of-charge limits. Returns the setpoint written, W.
        ``hold_s`` is ignored (the battery has no timeout)."""
        try:
            target = int(self.s.clamp_w(power_w, self._soc_pct()))  # whole W toward 0: never past a limit
            if decode(self._read(REG_CONTROL), "uint16") != CONTROL_ON:
                self._write(REG_CONTROL, CONTROL_ON)
            if target > 0:
                self._write(REG_CHARGE_W, target)
                self._write(REG_FORCE, CHARGE)
            elif target < 0:
                self._write(REG_DISCHARGE_W, -target)
                self._write(REG_FORCE, DISCHARGE)
            else:
                self._write(REG_FORCE, STOP)
        except (ModbusIOError, SetpointError) as e:
            raise self._fail(e) from None
        return float(target)

    def idle(self) -> None:
        """Stop forcing and hand control back (RS485 control mode off)."""
        try:
            if decode(self._read(REG_CONTROL), "uint16") == CONTROL_ON:
                self._write(REG_FORCE, STOP)
                self._write(REG_CONTROL, CONTROL_OFF)
        except ModbusIOError as e:
            raise self._fail(e) from None

    def state(self) -> SetpointState:
        """AC power at the plug (house side), state of charge, and the forced setpoint: 0 while
        the RS485 control mode is off or the force is stopped."""
        try:
            soc = self._soc_pct()
            power_w = -decode(self._read(REG_AC_POWER, 2), "int32")
            setpoint = 0.0
            if decode(self._read(REG_CONTROL), "uint16") == CONTROL_ON:
                force = int(decode(self._read(REG_FORCE), "uint16"))
                if force not in (STOP, CHARGE, DISCHARGE):
                    raise SetpointError(f"register {REG_FORCE} (force mode) reads {force}, not 0, 1 or 2")
                charge_w, discharge_w = self._read(REG_CHARGE_W, 2)
                setpoint = {STOP: 0.0, CHARGE: float(charge_w), DISCHARGE: -float(discharge_w)}[force]
        except (ModbusIOError, SetpointError) as e:
            raise self._fail(e) from None
        lo, hi = self.s.range_w(soc)
        return SetpointState(setpoint_w=setpoint, power_w=power_w, min_w=lo, max_w=hi, soc_pct=soc)

    def close(self) -> None:
        self.client.close()
