"""Modbus TCP across the local network: port 502 (SunSpec, and Huawei's SDongle) and 6607
(a Huawei SUN2000's own network port), through pymodbus (a base dependency).

- SunSpec: holding registers 40000, 0 or 50000 hold the marker ``SunS`` (0x5375 0x6E53)
  (SunSpec Information Model Specification, "SunSpec Device Map": the base addresses a client
  tries) → ``driver: sunspec`` with its ``unit_id``.
- Huawei: holding registers 30000-30014 are the model name, a string (huawei-solar 2.5.0,
  ``huawei_solar/registers.py``, ``MODEL_NAME``: ``StringRegister(30000, 15)``), e.g.
  "SUN2000-5KTL-L1" → ``driver: huawei``. A dongle wants a second after a connect before it
  answers (huawei-solar's ``DEFAULT_WAIT``): the probe waits HUAWEI_WAIT_S.

Bounded: a TCP connect per address and port within ``connect_timeout_s``, at most ``parallel`` at
once; each open port probed with ``timeout_s`` per request, no retries, at most MAX_OPEN ports.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterable

from gestor.setup.found import Found

PORTS = (502, 6607)
SUNSPEC_BASES = (40000, 0, 50000)
SUNSPEC_MARKER = [0x5375, 0x6E53]     # "SunS"
SUNSPEC_UNITS = (1, 126)              # 1: Fronius, SolarEdge, Kostal; 126: SMA (their Modbus docs)
HUAWEI_MODEL_NAME = (30000, 15)       # huawei_solar/registers.py MODEL_NAME
HUAWEI_UNITS = (1, 0)                 # 1: the inverter behind a dongle; 0: the dongle itself
HUAWEI_WAIT_S = 1.0
MAX_OPEN = 16


async def _open(host: str, port: int, timeout_s: float, sem: asyncio.Semaphore) -> tuple[str, int] | None:
    async with sem:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, asyncio.TimeoutError):
            return None
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout_s)
        except (OSError, asyncio.TimeoutError):
            pass
        return host, port


def open_ports(hosts: Iterable[str], ports: Iterable[int] = PORTS, connect_timeout_s: float = 0.5,
               parallel: int = 64) -> list[tuple[str, int]]:
    """(host, port) pairs that accept a TCP connection, in address order, at most MAX_OPEN."""
    async def scan() -> list[tuple[str, int] | None]:
        sem = asyncio.Semaphore(max(1, parallel))
        return await asyncio.gather(*(_open(h, p, connect_timeout_s, sem) for h in hosts for p in ports))
    return [x for x in asyncio.run(scan()) if x is not None][:MAX_OPEN]


def _text(registers: list[int]) -> str:
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def probe(host: str, port: int, timeout_s: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> Found | None:
    """What the Modbus server at ``host:port`` is: a SunSpec device, a Huawei, or None."""
    from pymodbus.client import ModbusTcpClient
    from pymodbus.exceptions import ModbusException

    client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)

    def read(address: int, count: int, unit: int) -> list[int] | None:
        try:
            rr = client.read_holding_registers(address, count=count, device_id=unit)
        except (ModbusException, OSError, ValueError):
            return None
        return None if rr.isError() else list(rr.registers)[:count]

    try:
        if not client.connect():
            return None
        if port == 502:
            for unit in SUNSPEC_UNITS:
                for base in SUNSPEC_BASES:
                    if read(base, 2, unit) == SUNSPEC_MARKER:
                        return Found("meter", {"driver": "sunspec", "host": host, "port": port, "unit_id": unit},
                                     f"SunSpec device at {host}:{port} unit {unit} (marker at {base})", "modbus",
                                     extra="sunspec")
        sleep(HUAWEI_WAIT_S)
        for unit in HUAWEI_UNITS:
            regs = read(*HUAWEI_MODEL_NAME, unit)
            name = _text(regs) if regs else ""
            if name.upper().startswith(("SUN2000", "SUN5000", "SDONGLE")):
                return Found("meter", {"driver": "huawei", "host": host, "port": port, "unit_id": unit},
                             f"Huawei {name[:30]} at {host}:{port} unit {unit}", "modbus", extra="huawei")
        return None
    finally:
        client.close()


def scan(network: ipaddress.IPv4Network, connect_timeout_s: float = 0.5, parallel: int = 64,
         skip: Iterable[str] = ()) -> list[Found]:
    """Every SunSpec or Huawei device on ``network`` (its hosts, but those in ``skip``: this
    machine's own addresses)."""
    hosts = [str(h) for h in network.hosts() if str(h) not in set(skip)]
    out = []
    for host, port in open_ports(hosts, PORTS, connect_timeout_s, parallel):
        f = probe(host, port)
        if f is not None and all(o.section.get("host") != host for o in out):
            out.append(f)
    return out
