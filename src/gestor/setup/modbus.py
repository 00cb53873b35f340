"""Modbus TCP across the local network: port 502 (SunSpec, and Huawei's SDongle) and 6607
(a Huawei SUN2000's own network port), through pymodbus (a base dependency).

- SunSpec: holding registers 40000, 0 or 50000 hold the marker ``SunS`` (0x5375 0x6E53)
  (SunSpec Information Model Specification, "SunSpec Device Map": the base addresses a client
  tries); after it, the chain of models, each ``ID``, ``L`` and ``L`` registers, up to ID 0xFFFF.
  Units 1, 240 and 126 are asked (1: the inverter of Fronius, SolarEdge, Kostal; 240: the Fronius
  Smart Meter behind the Datamanager, "Fronius Datamanager Modbus TCP & RTU"; 126: SMA) and the
  first unit whose chain has a meter model (201-204, 211-214: drivers.meters.sunspec.METER_MODELS)
  is proposed → ``driver: sunspec`` with that ``unit_id``. A SunSpec device without a meter model
  on any of them is proposed at its first unit, with a note (an inverter whose meter is not on
  Modbus: the live check will say so).
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

from drivers.meters.sunspec import METER_MODELS
from gestor.setup.found import Found

PORTS = (502, 6607)
SUNSPEC_BASES = (40000, 0, 50000)
SUNSPEC_MARKER = [0x5375, 0x6E53]     # "SunS"
SUNSPEC_UNITS = (1, 240, 126)         # 1: Fronius, SolarEdge, Kostal; 240: Fronius' Smart Meter; 126: SMA
SUNSPEC_END = 0xFFFF                  # the end model's ID
MAX_MODELS = 64                       # a model chain is walked this far at most
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
               parallel: int = 64, most: int = MAX_OPEN) -> list[tuple[str, int]]:
    """(host, port) pairs that accept a TCP connection, in address order, at most ``most``."""
    async def scan() -> list[tuple[str, int] | None]:
        sem = asyncio.Semaphore(max(1, parallel))
        return await asyncio.gather(*(_open(h, p, connect_timeout_s, sem) for h in hosts for p in ports))
    return [x for x in asyncio.run(scan()) if x is not None][:most]


def _text(registers: list[int]) -> str:
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def sunspec_models(read: Callable[[int, int], list[int] | None], base: int) -> list[int]:
    """The model IDs of the SunSpec chain whose marker is at ``base`` (``read(address, count)``
    gives holding registers or None): from ``base + 2``, each model's ``ID`` and ``L``, the next
    ``L`` registers on, until the end model, a failed read or MAX_MODELS models."""
    ids: list[int] = []
    address = base + 2
    while len(ids) < MAX_MODELS:
        header = read(address, 2)
        if header is None or len(header) < 2 or header[0] == SUNSPEC_END:
            break
        ids.append(header[0])
        address += header[1] + 2
    return ids


def sunspec_found(host: str, port: int, unit: int, base: int, models: list[int]) -> Found:
    """What a SunSpec device at ``host:port`` unit ``unit`` (marker at ``base``, ``models`` its
    chain) proposes: ``driver: sunspec`` with that unit; a note when no model is a meter's."""
    meter = [m for m in models if m in METER_MODELS]
    what = f"meter model {meter[0]}" if meter else f"models {models[:8]}, no meter model"
    notes = () if meter else (f"no SunSpec meter model (201-204, 211-214) on units {', '.join(map(str, SUNSPEC_UNITS))}: "
                              "its meter may not be on Modbus",)
    return Found("meter", {"driver": "sunspec", "host": host, "port": port, "unit_id": unit},
                 f"SunSpec device at {host}:{port} unit {unit} (marker at {base}, {what})", "modbus",
                 extra="sunspec", notes=notes)


def huawei_found(host: str, port: int, unit: int, name: str) -> Found:
    """What a Huawei answering its model name ``name`` at ``host:port`` unit ``unit`` proposes."""
    return Found("meter", {"driver": "huawei", "host": host, "port": port, "unit_id": unit},
                 f"Huawei {name[:30]} at {host}:{port} unit {unit}", "modbus", extra="huawei")


def probe(host: str, port: int, timeout_s: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> Found | None:
    """What the Modbus server at ``host:port`` is: a SunSpec device (the first of SUNSPEC_UNITS
    with a meter model, else the first with the marker), a Huawei, or None."""
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
            first: Found | None = None
            for unit in SUNSPEC_UNITS:
                base = next((b for b in SUNSPEC_BASES if read(b, 2, unit) == SUNSPEC_MARKER), None)
                if base is None:
                    continue
                models = sunspec_models(lambda a, n: read(a, n, unit), base)   # noqa: B023 (used at once)
                f = sunspec_found(host, port, unit, base, models)
                if not f.notes:
                    return f
                first = first or f
            if first is not None:
                return first
        sleep(HUAWEI_WAIT_S)
        for unit in HUAWEI_UNITS:
            regs = read(*HUAWEI_MODEL_NAME, unit)
            name = _text(regs) if regs else ""
            if name.upper().startswith(("SUN2000", "SUN5000", "SDONGLE")):
                return huawei_found(host, port, unit, name)
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
