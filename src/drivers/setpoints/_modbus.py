"""The settings of a setpoint device reached over Modbus (a Marstek Venus, a my-PV AC ELWA 2):
one place for what identifies and names it."""
from __future__ import annotations

from drivers.modbus import ModbusLink
from drivers.setpoints.base import SetpointSettings


class ModbusSetpointSettings(SetpointSettings, ModbusLink):
    """A setpoint driver's settings with its Modbus link (:class:`drivers.modbus.ModbusLink`)."""

    def device_key(self) -> tuple:
        """The Modbus unit (:meth:`drivers.modbus.ModbusLink.link_key`): two sections on one unit
        are the same device."""
        return self.link_key()

    def device_label(self) -> str:
        return f"{self.driver} at {self.describe()}"
