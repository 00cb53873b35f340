"""my-PV AC ELWA 2 (and AC THOR, same registers) immersion heater over Modbus TCP.

Registers (holding, unsigned 16-bit, protocol addresses; read with function 03, written with 16):

* 1000 Power, W (R/W): the power the heater takes, 0..rated (3000 or 3500 W on an ELWA 2, 3000
  on an AC THOR, 9000 on an AC THOR 9s); written only to RAM (the flash-buffered settings are
  elsewhere); read back, the power it is set to now.
* 1001 Temperature 1, 0.1 °C (R).

Source: my-PV's Modbus register list as used by evcc's ``charger/mypv.go`` and
``templates/definition/charger/ac-elwa-2.yaml`` (evcc PR 14504, "Add my-PV ELWA 2 charger",
which writes 1000 rather than 1081 because 1000 is not written to flash), and the earlier
ELWA-E register list (1000 Power W R/W, 1001 water temperature 0.1 °C). my-PV's own PDF was not
in the reference corpus; check the addresses against the register list of your firmware.

Device-side timeout: with control type "Modbus TCP" (set in the heater's web interface) the
heater drops register 1000 to 0 W by itself when it is not written again within its "Power
timeout" ("Zeitablauf Ansteuerung"), also set in the web interface and not readable over Modbus
(evcc PR 22715). ``power_timeout_s`` must be that value: it is the driver's ``hold_s`` (the
guard gestor counts on), and managing rewrites the setpoint every cycle (``refresh_on_cycle``),
so set the device's timeout to a few cycles. A ``hold_s`` asked of :meth:`set_power_w` cannot
change it. Idle: 0 W.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from drivers import DriverContext
from drivers.modbus import ModbusClient, ModbusIOError
from drivers.setpoints._modbus import ModbusSetpointSettings
from drivers.setpoints.base import SetpointError, SetpointState, register_setpoint

REG_POWER_W = 1000
REG_TEMP1_DC = 1001    # 0.1 °C


class MypvElwaSettings(ModbusSetpointSettings):
    driver: Literal["mypv_elwa"] = "mypv_elwa"
    max_power_w: int = Field(3000, gt=0, le=9000)       # rated power of the heater, W
    power_timeout_s: float = Field(ge=5, le=3600)       # the device's "Power timeout", s (its web page)


@register_setpoint("mypv_elwa", MypvElwaSettings)
class MypvElwa:
    refresh_on_cycle = True

    def __init__(self, s: MypvElwaSettings, ctx: DriverContext, name: str) -> None:
        self.s = s
        self.label = f"my-PV {name}"
        self.hold_s: float | None = s.power_timeout_s
        self.temperature_c: float | None = None
        self.client = ModbusClient(s)

    def set_power_w(self, power_w: float, hold_s: float | None = None) -> float:
        watts = int(min(max(power_w, 0.0), float(self.s.max_power_w))) if power_w == power_w else 0
        try:
            self.client.write_registers(REG_POWER_W, [watts])
        except ModbusIOError as e:
            raise SetpointError(f"{self.label}: {e}") from None
        return float(watts)

    def idle(self) -> None:
        self.set_power_w(0.0)

    def state(self) -> SetpointState:
        try:
            power, temp = self.client.read_registers("holding", REG_POWER_W, 2)
        except ModbusIOError as e:
            raise SetpointError(f"{self.label}: {e}") from None
        if power > self.s.max_power_w:
            raise SetpointError(f"{self.label}: register {REG_POWER_W} reads {power} W, above max_power_w "
                                f"{self.s.max_power_w}: wrong device or register map?")
        self.temperature_c = temp / 10.0
        return SetpointState(setpoint_w=float(power), power_w=None, min_w=0.0, max_w=float(self.s.max_power_w))

    def close(self) -> None:
        self.client.close()
