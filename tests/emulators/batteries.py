"""Battery emulators: real pymodbus 3.16 TCP servers on loopback that keep holding registers per
unit id, with the register layout of each manufacturer's document, and record every write.

``VictronGX``: a GX device's Modbus TCP server (CCGX Modbus TCP register list): unit 100
(system 842/843, settings 2901/2902) and the vebus unit (30, 37..41). Mode 3's revert is modelled
on an injected clock: with Hub4Mode 3, setpoints not written for ``hold_s`` read 0 again.

``MarstekVenus``: a Venus E/C v1/v2 (Marstek's register list): 32102..32105, 32202/32203,
42000, 42010/42011, 42020/42021, 43000, 44000..44003; the 42010..42021 commands are ignored
(acknowledged, not applied) while the RS485 control mode (42000) is not 0x55AA.

Addresses outside the documented blocks answer "illegal data address", as a device would.
"""
from __future__ import annotations

import functools

from pymodbus.client import ModbusTcpClient
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.emulators.modbus_server import _DT, RegisterServer


class BatteryServer(RegisterServer):
    """Holding registers ``regs[unit][address]`` (raw words) in the blocks ``units`` declares
    ({unit: [(start, count), ...]}); ``writes`` lists (unit, address, words) as received."""

    def __init__(self, units: dict[int, list[tuple[int, int]]]) -> None:
        super().__init__({})
        self.units = units
        self.regs: dict[int, dict[int, int]] = {u: {a: 0 for s, n in blocks for a in range(s, s + n)}
                                                for u, blocks in units.items()}
        self.writes: list[tuple[int, int, list[int]]] = []

    def set(self, unit: int, address: int, value: float, dtype: str = "uint16") -> None:  # type: ignore[override]
        words = ModbusTcpClient.convert_to_registers(int(value), _DT[dtype])
        for i, w in enumerate(words):
            self.regs[unit][address + i] = w

    def get(self, unit: int, address: int, dtype: str = "uint16") -> float:
        n = 2 if dtype in ("int32", "uint32") else 1
        return ModbusTcpClient.convert_from_registers([self.regs[unit][address + i] for i in range(n)], _DT[dtype])

    def written(self, unit: int, address: int) -> list[list[int]]:
        """The words written to ``address`` of ``unit`` so far, in order."""
        return [w for u, a, w in self.writes if u == unit and a == address]

    # --- device behaviour (subclasses) ---------------------------------------------------------
    def tick(self) -> None:
        """Called before each request."""

    def on_write(self, unit: int, address: int, words: list[int]) -> None:
        for i, w in enumerate(words):
            self.regs[unit][address + i] = w

    # --- pymodbus plumbing -------------------------------------------------------------------
    async def _unit_action(self, unit, function_code, start_address, address, count, registers, set_values):  # noqa: ANN001
        self.requests += 1
        self.tick()
        if set_values is not None:
            words = [int(v) for v in set_values]
            self.writes.append((unit, address, words))
            self.on_write(unit, address, words)
            set_values[:] = [self.regs[unit][address + i] for i in range(len(words))]
        for a, w in self.regs[unit].items():
            registers[a - start_address] = w
        return None

    def _device(self) -> list[SimDevice]:  # type: ignore[override]  # one SimDevice per unit id
        return [SimDevice(unit, simdata=[SimData(s, count=n, values=0, datatype=DataType.REGISTERS)
                                         for s, n in sorted(blocks)],
                          action=functools.partial(self._unit_action, unit))
                for unit, blocks in self.units.items()]


class VictronGX(BatteryServer):
    SYSTEM = 100

    def __init__(self, vebus_unit: int = 227, hold_s: float = 60.0) -> None:
        super().__init__({self.SYSTEM: [(842, 2), (2700, 1), (2901, 2)], vebus_unit: [(30, 1), (37, 5)]})
        self.vebus = vebus_unit
        self.hold_s = hold_s
        self.now_s = 0.0            # the injected clock: the test moves it
        self.written_at_s = 0.0
        self.set(self.SYSTEM, 2902, 1)  # ESS with phase compensation (Mode 1)

    def tick(self) -> None:
        if self.get(self.SYSTEM, 2902) == 3 and self.now_s - self.written_at_s >= self.hold_s:
            for a in (37, 40, 41):
                self.regs[self.vebus][a] = 0

    def on_write(self, unit: int, address: int, words: list[int]) -> None:
        super().on_write(unit, address, words)
        if unit == self.vebus and address <= 37 < address + len(words):
            self.written_at_s = self.now_s


class MarstekVenus(BatteryServer):
    UNIT = 1

    def __init__(self, unit: int = 1) -> None:
        self.UNIT = unit
        super().__init__({unit: [(32102, 4), (32202, 2), (42000, 1), (42010, 2), (42020, 2), (43000, 1),
                                 (44000, 4)]})
        self.set(unit, 43000, 1)   # anti-feed, the battery's own work mode
        self.set(unit, 44001, 120)  # discharging cutoff 12.0 %

    def on_write(self, unit: int, address: int, words: list[int]) -> None:
        if 42010 <= address <= 42021 and self.regs[unit][42000] != 0x55AA:
            return  # a command while the RS485 control mode is off: acknowledged, not applied
        super().on_write(unit, address, words)


__all__ = ["BatteryServer", "VictronGX", "MarstekVenus"]
