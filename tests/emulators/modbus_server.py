"""A real pymodbus 3.16 server (TCP on loopback, or RTU on one end of a socat pseudo-terminal
pair) serving meter registers whose values the test sets while it runs.

Values are set as numbers per (function, address) and encoded on every request with the
declared type and word order, so the client under test decodes real Modbus frames.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

_DT = {"int16": ModbusTcpClient.DATATYPE.INT16, "uint16": ModbusTcpClient.DATATYPE.UINT16,
       "int32": ModbusTcpClient.DATATYPE.INT32, "uint32": ModbusTcpClient.DATATYPE.UINT32,
       "float32": ModbusTcpClient.DATATYPE.FLOAT32}

# Eastron SDM630 (Modbus protocol v1.5): input registers, float32 high word first
EASTRON_LAYOUT = {("input", a): ("float32", "big") for a in (0x000C, 0x000E, 0x0010, 0x0034, 0x0048, 0x004A)}


class RegisterServer:
    """Serve ``layout`` {(function, address): (type, word_order)}; set values with :meth:`set`.

    ``function`` is "input", "holding" or "coil". Registers outside the layout but inside
    0..``size`` read as 0 (as on real meters); beyond ``size`` they are illegal addresses.
    """

    def __init__(self, layout: dict[tuple[str, int], tuple[str, str]], device_id: int = 1,
                 size: int = 0x0200, coils: int = 16) -> None:
        self.layout = layout
        self.device_id = device_id
        self.values: dict[tuple[str, int], float] = {k: 0.0 for k in layout}
        self.coils = [False] * coils
        self.coil_writes: list[tuple[int, bool]] = []
        self.register_writes: list[tuple[int, list[int]]] = []   # (address, raw values), function 6/16
        self.requests = 0
        self.freeze_coils = False  # a stuck relay: writes are acknowledged but do nothing
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._socat: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None
        self.client_port: str | None = None

    def set(self, **by_name: float) -> None:
        raise NotImplementedError

    def set_value(self, function: str, address: int, value: float) -> None:
        self.values[(function, address)] = value

    # subclasses: a device's own behaviour around each request (timers, state machines)
    def on_write(self, address: int, values: list[int]) -> None:
        pass

    def on_request(self) -> None:
        pass

    # --- pymodbus plumbing -------------------------------------------------------------------
    async def _action(self, function_code, start_address, address, count, registers, set_values):  # noqa: ANN001
        self.requests += 1
        if function_code in (1, 5, 15):  # coils
            if set_values is not None:
                bits = set_values if isinstance(set_values, list) else [set_values]
                for i, b in enumerate(bits):
                    self.coil_writes.append((address + i, bool(b)))
                    if not self.freeze_coils:
                        self.coils[address + i] = bool(b)
                set_values[:] = [self.coils[address + i] for i in range(len(bits))]
            packed = SimUtils.bitsToRegisters(list(self.coils))
            registers[: len(packed)] = packed
            return None
        function = "input" if function_code == 4 else "holding"
        if function_code in (6, 16) and set_values is not None:   # holding registers written
            self.register_writes.append((address, list(set_values)))
            for (fn, addr), (dtype, order) in self.layout.items():
                off = addr - address
                if fn == "holding" and 0 <= off and off + (2 if "32" in dtype else 1) <= len(set_values):
                    regs = set_values[off: off + (2 if "32" in dtype else 1)]
                    self.values[(fn, addr)] = ModbusTcpClient.convert_from_registers(
                        list(regs), _DT[dtype], word_order=order)
            self.on_write(address, list(set_values))
        self.on_request()
        for (fn, addr), (dtype, order) in self.layout.items():
            if fn != function:
                continue
            regs = ModbusTcpClient.convert_to_registers(
                _cast(self.values[(fn, addr)], dtype), _DT[dtype], word_order=order)
            off = addr - start_address
            if 0 <= off and off + len(regs) <= len(registers):
                registers[off: off + len(regs)] = regs
        return None

    def _device(self) -> SimDevice:
        regs = [SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)]
        coils = [SimData(0, count=len(self.coils), values=False, datatype=DataType.BITS)]
        return SimDevice(self.device_id, simdata=(coils, list(coils), list(regs), list(regs)),
                         action=self._action)

    def _run(self, make) -> None:  # noqa: ANN001
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def start() -> None:
                self._server = make()
                ready.set()
                await self._server.serve_forever()

            try:
                loop.run_until_complete(start())
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        ready.wait(10)
        time.sleep(0.2)

    def start_tcp(self, port: int, host: str = "127.0.0.1") -> "RegisterServer":
        """Serve Modbus TCP on ``host:port`` (a test LAN's host gives its own address)."""
        self.address = (host, port)
        self._run(lambda: ModbusTcpServer(self._device(), address=self.address))
        wait_port(port, host)
        return self

    def start_rtu(self, tmp: Path) -> "RegisterServer":
        """Start socat (a pty pair) and the server on one end; the client uses ``client_port``."""
        if not shutil.which("socat"):
            raise RuntimeError("socat is not installed (./install.sh --test installs it)")
        server_end, self.client_port = str(tmp / "meter-server"), str(tmp / "meter-client")
        if self._socat is None:
            self._socat = subprocess.Popen(
                ["socat", f"pty,raw,echo=0,link={server_end}", f"pty,raw,echo=0,link={self.client_port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                if Path(server_end).exists() and Path(self.client_port).exists():
                    break
                time.sleep(0.05)
        self._run(lambda: ModbusSerialServer(self._device(), port=server_end, baudrate=9600))
        return self

    def stop_server(self) -> None:
        """Stop answering (the device is gone); socat stays so the port still exists."""
        if self._loop and self._server:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:
                pass
        if self._thread:
            self._thread.join(5)
        self._server = None

    def close(self) -> None:
        self.stop_server()
        if self._socat:
            self._socat.terminate()
            self._socat.wait(5)
            self._socat = None


class MyPvElwa(RegisterServer):
    """my-PV AC ELWA 2 with control type "Modbus TCP": holding 1000 Power W (R/W), 1001
    Temperature 1 in 0.1 °C; register 1000 drops to 0 when not written again within
    ``power_timeout_s`` (the device's "Power timeout"), counted on ``clock`` (monotonic s)."""

    def __init__(self, power_timeout_s: float, clock, rated_w: int = 3000) -> None:  # noqa: ANN001
        super().__init__({("holding", 1000): ("uint16", "big"), ("holding", 1001): ("uint16", "big")}, size=1100)
        self.power_timeout_s = power_timeout_s
        self.clock = clock
        self.rated_w = rated_w
        self.written_at: float | None = None
        self.set_value("holding", 1001, 523)   # 52.3 °C

    def on_write(self, address: int, values: list[int]) -> None:
        if address <= 1000 < address + len(values):
            self.written_at = self.clock()
            self.values[("holding", 1000)] = min(self.values[("holding", 1000)], self.rated_w)

    def on_request(self) -> None:
        self.expire()

    def expire(self) -> None:
        if self.written_at is not None and self.clock() - self.written_at >= self.power_timeout_s:
            self.values[("holding", 1000)], self.written_at = 0, None

    def power_w(self) -> float:
        self.expire()
        return self.values[("holding", 1000)]


def _cast(v: float, dtype: str) -> float | int:
    return float(v) if dtype == "float32" else int(round(v))


def wait_port(port: int, host: str = "127.0.0.1") -> None:
    """Return once ``host:port`` accepts a TCP connection (polled, at most ~25 s); else RuntimeError."""
    import socket
    for _ in range(100):
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"modbus server did not listen on {port}")


__all__ = ["RegisterServer", "MyPvElwa", "EASTRON_LAYOUT", "ExcCodes"]
