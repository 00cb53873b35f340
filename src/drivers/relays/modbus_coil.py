"""A relay module on Modbus (RTU or TCP): one coil per load (function 05 write single coil,
function 01 read coils to read it back). Typical boards: Waveshare "Modbus RTU Relay",
Eletechsup R4D3B16; check the coil address (0-based) in the board's manual.

A module on the same RS-485 line as the meter cannot be used by managing while monitoring owns
the port (one process per serial bus): give it its own adapter, or use an RS-485/Ethernet
gateway (``transport: tcp``), which serialises requests from both daemons.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from drivers import DriverContext
from drivers.modbus import ModbusClient, ModbusIOError, ModbusLink
from drivers.relays.base import RelayError, RelaySettings, register_relay


class ModbusCoilSettings(RelaySettings, ModbusLink):
    driver: Literal["modbus_coil"] = "modbus_coil"
    coil: int = Field(ge=0, le=65535)   # coil address, 0-based

    def relay_key(self) -> tuple[Any, ...] | None:
        return (*self.link_key(), self.coil)

    def relay_label(self) -> str:
        return f"{ModbusLink.describe(self)} coil {self.coil}"


@register_relay("modbus_coil", ModbusCoilSettings)
class ModbusCoilRelay:
    def __init__(self, s: ModbusCoilSettings, ctx: DriverContext, load: str, power_w: float) -> None:
        self.s = s
        self.load = load
        self.client = ModbusClient(s)

    def set(self, on: bool, auto_off_s: float | None = None) -> None:
        try:
            self.client.write_coil(self.s.coil, bool(on))
        except ModbusIOError as e:
            raise RelayError(f"modbus coil {self.s.coil} ({self.load}): {e}") from None

    def state(self) -> bool:
        try:
            return bool(self.client.read_coils(self.s.coil, 1)[0])
        except ModbusIOError as e:
            raise RelayError(f"modbus coil {self.s.coil} ({self.load}): {e}") from None

    def close(self) -> None:
        self.client.close()
