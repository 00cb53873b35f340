"""The Eastron SDM630 over Modbus TCP (:class:`Sdm630Server`, pymodbus's server): every input
register of Eastron's "SDM630 Modbus Protocol" (V1.5/V2) map (function 04) and its holding
registers (function 03: the settings, read only here, and the serial number at 0xFC00), as the
``sdm_modbus`` package (0.7.0, ``sdm_modbus/sdm.py``, class SDM630) reads them all; float32,
high word first (the serial number: uint32).

What gestor does not measure is derived from what it does, as the whole meter is: the power is
split equally over the three phases at a nominal 230 V (L-L 230 x sqrt(3) V) and 50 Hz, power
factor 1 (no reactive power or energy, phase angles and THD 0, no neutral current); the demand
registers hold the present power and current (no demand history is kept: each maximum is the
present value); the energy counters are the real meter's, a third on each phase (0 without).

Answers that are not a value:

* no fresh reading, or the latch set: exception 0x04 (server device failure) to every read at
  the meter's unit: a failed read for every kind of device (see :mod:`gestor.runtime.virtualmeter`);
* another unit id: exception 0x0B (gateway target device failed to respond), at once: what a
  Modbus TCP gateway answers for a unit that is not on its RS-485 line (a real SDM630 there
  would not answer), so a client set to the wrong unit reads an error that says so, not the
  stale meter's 0x04 and not a time-out that looks like a network fault;
* a write, or another function: 0x01 (illegal function; the settings are not emulated);
* an address the map does not have: 0x02 (illegal address).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import socket
import struct
import threading
import time
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gestor.runtime.daemon import GestorError
from gestor.runtime.vmeter.base import NOMINAL_HZ, NOMINAL_V, View, VirtualMeter, probe_tcp
from gestor.settings import listen_address

log = logging.getLogger("gestor.virtualmeter")

MODBUS_CONNECTIONS = 8
SDM630_REGISTERS = 0x0200  # input registers 0x0000-0x01FF answer (those not in the map read 0, as on the meter)
# the holding registers: (first address, registers) blocks; the rest is an illegal address
HOLDING_BLOCKS = [(0x0000, 0x0028), (0xF910, 2), (0xFC00, 2)]


def sdm630_registers(v: View) -> dict[int, float]:
    """The SDM630's input registers (address: value) for a fresh view, every one of the V2 map
    (sdm_modbus 0.7.0's SDM630 table). Power import-positive, as ``drivers.meters.eastron``
    reads it (its map); energies in kWh, kVArh, kVAh."""
    p = v.import_w / 3.0
    amps = abs(p) / NOMINAL_V
    pf = 1.0 if p else 0.0
    imp, exp = (v.import_wh_total or 0.0) / 1000.0, (v.export_wh_total or 0.0) / 1000.0
    ll = NOMINAL_V * math.sqrt(3.0)
    regs: dict[int, float] = {}
    for i in range(3):
        regs.update({0x0000 + 2 * i: NOMINAL_V, 0x0006 + 2 * i: amps,    # phase voltage V, current A
                     0x000C + 2 * i: p, 0x0012 + 2 * i: abs(p),          # phase active W, apparent VA
                     0x0018 + 2 * i: 0.0, 0x001E + 2 * i: pf,            # phase reactive VAr, power factor
                     0x0024 + 2 * i: 0.0,                                # phase angle, degrees
                     0x00C8 + 2 * i: ll,                                 # L1-L2, L2-L3, L3-L1 voltage V
                     0x00EA + 2 * i: 0.0, 0x00F0 + 2 * i: 0.0,           # phase voltage, current THD %
                     0x0102 + 2 * i: amps, 0x0108 + 2 * i: amps,         # phase current demand, its maximum A
                     0x014E + 2 * i: 0.0,                                # line voltage THD %
                     0x015A + 2 * i: imp / 3, 0x0160 + 2 * i: exp / 3,   # phase import, export kWh
                     0x0166 + 2 * i: (imp + exp) / 3,                    # phase total kWh
                     0x016C + 2 * i: 0.0, 0x0172 + 2 * i: 0.0, 0x0178 + 2 * i: 0.0})  # phase kVArh
    regs.update({0x002A: NOMINAL_V, 0x002E: amps, 0x0030: 3 * amps,     # average volts, average / sum of currents
                 0x0034: v.import_w, 0x0038: abs(v.import_w), 0x003C: 0.0,  # total system power W, VA, VAr
                 0x003E: pf, 0x0042: 0.0, 0x0046: NOMINAL_HZ,           # total power factor, phase angle, Hz
                 0x0048: imp, 0x004A: exp,                              # import, export active energy kWh
                 0x004C: 0.0, 0x004E: 0.0,                              # import, export reactive energy kVArh
                 0x0050: imp + exp, 0x0052: (imp + exp) * 1000.0 / NOMINAL_V,  # apparent kVAh, charge Ah
                 0x0054: v.import_w, 0x0056: abs(v.import_w),           # total power demand W, its maximum VA
                 0x0058: max(v.import_w, 0.0), 0x005A: max(v.import_w, 0.0),    # import demand, maximum W
                 0x005C: max(-v.import_w, 0.0), 0x005E: max(-v.import_w, 0.0),  # export demand, maximum W
                 0x0064: abs(v.import_w), 0x0066: abs(v.import_w),      # VA demand, its maximum
                 0x0068: 0.0, 0x006A: 0.0,                              # neutral current demand, maximum A
                 0x00CE: ll, 0x00E0: 0.0,                               # average L-L volts, neutral current A
                 0x00F8: 0.0, 0x00FA: 0.0, 0x00FE: pf,                  # average THD V, A %; total power factor
                 0x0154: 0.0,                                           # average line voltage THD %
                 0x0156: imp + exp, 0x0158: 0.0})                       # total kWh, total kVArh
    return regs


def serial_number(site: str) -> int:
    """The emulated meter's serial number (uint32 at 0xFC00): from the host and the site, the same
    at every start (as :func:`~gestor.runtime.vmeter.shelly.device_identity`)."""
    digest = hashlib.sha256(f"gestor-virtual-meter/{socket.gethostname()}/{site}/sdm630".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100_000_000  # eight digits, as printed on the meter


def sdm630_holding(unit_id: int, max_power_w: float) -> dict[int, float]:
    """The SDM630's holding registers (address: float32 value; the serial number apart): its
    settings as Eastron's map gives them (demand period 60 min, system type 3 = 3 phase 4 wire,
    pulse width 200 ms, parity index 0 = none / 1 stop bit, the unit id, baud index 2 = 9600)."""
    return {0x0000: 0.0, 0x0002: 60.0, 0x0006: NOMINAL_V, 0x0008: max_power_w / (3 * NOMINAL_V),
            0x000A: 3.0, 0x000C: 200.0, 0x0012: 0.0, 0x0014: float(unit_id), 0x001C: 2.0,
            0x0024: max_power_w, 0xF910: 0.0}


def _float_regs(x: float) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return hi, lo


class Sdm630Server:
    """An Eastron SDM630 at ``unit_id`` on ``listen`` (HOST:PORT), Modbus TCP, pymodbus's server
    in its own thread and event loop."""

    def __init__(self, meter: VirtualMeter, listen: str, unit_id: int) -> None:
        self.meter, self.listen, self.unit_id = meter, listen, unit_id
        self.host, self.port = listen_address(listen)
        probe_tcp(self.host, self.port, listen)  # a one-line error now, not a pymodbus warning later
        logging.getLogger("pymodbus").setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL)
        self.holding = sdm630_holding(unit_id, meter.vm.max_power_w)
        self.serial = serial_number(meter.s.site)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="vm-sdm630", daemon=True)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: Any) -> Any:
        if function_code not in (3, 4) or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # reads only: the SDM630's settings are not emulated
        v = self.meter.view()
        if v.stale is not None:
            return ExcCodes.DEVICE_FAILURE
        values = sdm630_registers(v) if function_code == 4 else self.holding
        for addr, value in values.items():
            if 0 <= addr - start_address < len(registers) - 1:
                registers[addr - start_address], registers[addr - start_address + 1] = _float_regs(value)
        if function_code == 3 and 0 <= 0xFC00 - start_address < len(registers) - 1:
            registers[0xFC00 - start_address], registers[0xFC01 - start_address] = divmod(self.serial, 0x10000)
        return None

    @staticmethod
    async def _other_unit(*_: Any) -> Any:
        return ExcCodes.GATEWAY_NO_RESPONSE

    def _devices(self) -> list[SimDevice]:
        regs = DataType.REGISTERS
        meter = SimDevice(self.unit_id, simdata=(
            [SimData(0, count=1, values=0, datatype=DataType.BITS)],         # coils: illegal function
            [SimData(0, count=1, values=0, datatype=DataType.BITS)],         # discrete inputs: idem
            [SimData(a, count=n, values=0, datatype=regs) for a, n in HOLDING_BLOCKS],
            [SimData(0, count=SDM630_REGISTERS, values=0, datatype=regs)]), action=self._action)
        # unit 0 is pymodbus's "any other unit": every address, answered 0x0B by its action
        others = SimDevice(0, simdata=[SimData(0, count=0x10000, values=0, datatype=regs)], action=self._other_unit)
        return [meter, others]

    def _main(self) -> None:
        class Server(ModbusTcpServer):
            def callback_new_connection(self):  # noqa: ANN202 -- pymodbus's
                # over the limit: the least recently active connection makes room for the new one
                while len(self.active_connections) >= MODBUS_CONNECTIONS:
                    oldest = min(self.active_connections.values(), key=lambda c: getattr(c, "last_active", 0.0))
                    oldest.close()
                    self.active_connections.pop(oldest.unique_id, None)
                handler = super().callback_new_connection()
                handler.last_active = time.monotonic()
                feed = handler.callback_data

                def callback_data(data: bytes, addr: tuple | None = None) -> int:
                    handler.last_active = time.monotonic()
                    return feed(data, addr)
                handler.callback_data = callback_data
                return handler

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def run() -> None:
            self._server = Server(self._devices(), address=(self.host, self.port))
            await self._server.serve_forever(background=True)
            self._ready.set()
            await self._server.serving

        try:
            loop.run_until_complete(run())
        except BaseException as e:  # noqa: BLE001 -- reported by start()
            self._error = e
        finally:
            self._ready.set()
            loop.close()

    def start(self) -> "Sdm630Server":
        self.thread.start()
        self._ready.wait(10)
        if self._error is not None or not self.thread.is_alive():
            raise GestorError(f"cannot listen on {self.listen} (Modbus TCP): {self._error or 'the server did not start'}")
        return self

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and self.thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 -- stopping anyway
                pass
        self.thread.join(5)

