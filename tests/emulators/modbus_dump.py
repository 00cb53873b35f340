"""A real pymodbus 3.16 server serving a register dump (holding registers, function 3) loaded from
a fixture under tests/data/meters/: a Huawei SUN2000's power-meter registers or a SunSpec device.
It can also answer "device busy" (Modbus exception 6), and :class:`DroppingServer` is a device that
accepts a connection and drops it at once.

The SunSpec layout is made from pysunspec2's model definitions (``sunspec2.device.get_model_def``),
each point encoded here with :mod:`struct` by its SunSpec type, so the client under test decodes
real Modbus frames.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

from pymodbus.constants import ExcCodes

from tests.emulators.modbus_server import RegisterServer

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "meters"

# SunSpec "not implemented" values by type (SunSpec Information Model Reference; pysunspec2 mb.py)
UNIMPL = {"int16": 0x8000, "uint16": 0xFFFF, "sunssf": 0x8000, "enum16": 0xFFFF, "bitfield16": 0xFFFF,
          "acc16": 0, "pad": 0x8000, "int32": 0x80000000, "uint32": 0xFFFFFFFF, "acc32": 0,
          "enum32": 0xFFFFFFFF, "bitfield32": 0xFFFFFFFF, "float32": 0x7FC00000}
FMT = {"int16": ">h", "sunssf": ">h", "uint16": ">H", "enum16": ">H", "bitfield16": ">H", "acc16": ">H",
       "pad": ">H", "int32": ">i", "uint32": ">I", "acc32": ">I", "enum32": ">I", "bitfield32": ">I",
       "float32": ">f"}


def load(family: str, name: str) -> dict:
    return json.loads((FIXTURES / family / f"{name}.json").read_text())


def words_of(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def huawei_words(fixture: dict) -> dict[int, int]:
    """{address: 16-bit word} from a Huawei fixture ({register: {type, value}})."""
    out: dict[int, int] = {}
    for addr, reg in fixture["registers"].items():
        fmt = {"U16": ">H", "I16": ">h", "U32": ">I", "I32": ">i"}[reg["type"]]
        for i, w in enumerate(words_of(struct.pack(fmt, reg["value"]))):
            out[int(addr) + i] = w
    return out


def _point_words(ptype: str, size: int, value) -> list[int]:  # noqa: ANN001
    if ptype == "string":
        raw = (value or "").encode("ascii")[: size * 2]
        return words_of(raw.ljust(size * 2, b"\0"))
    if value is None:
        raw = UNIMPL[ptype].to_bytes(size * 2, "big")
    else:
        raw = struct.pack(FMT[ptype], value)
    return words_of(raw)


def sunspec_words(fixture: dict) -> dict[int, int]:
    """{address: 16-bit word} of a SunSpec device: the marker at ``base``, each model laid out from
    pysunspec2's definition (its top-level points, ``L`` registers after the header), then 0xFFFF."""
    from sunspec2.device import get_model_def
    addr = fixture["base"]
    out = dict(enumerate(words_of(fixture.get("marker", "SunS").encode("ascii")), start=addr))
    addr += 2
    for model in fixture["models"]:
        words: list[int] = []
        for p in get_model_def(model["ID"])["group"]["points"]:
            size = p.get("size", 1)
            value = model.get(p["name"], p.get("value"))
            words += _point_words(p["type"], size, value)
        length = model["L"]
        words = (words + [0] * (length + 2))[: length + 2]
        words[1] = length
        out.update(enumerate(words, start=addr))
        addr += length + 2
    out[addr], out[addr + 1] = 0xFFFF, 0
    return out


class DumpServer(RegisterServer):
    """Serve ``words`` {address: word} as holding (and input) registers of unit ``device_id``;
    every other address up to 0xFFFE reads 0. ``busy``: how many requests to answer with Modbus
    exception 6 ("device busy") before answering again (-1: always)."""

    def __init__(self, words: dict[int, int], device_id: int = 1) -> None:
        super().__init__({}, device_id=device_id, size=0xFFFF)
        self.words = dict(words)
        self.busy = 0

    def load(self, words: dict[int, int]) -> None:
        """Serve another dump from the next request on (a new reading)."""
        self.words = dict(words)

    async def _action(self, function_code, start_address, address, count, registers, set_values):  # noqa: ANN001
        self.requests += 1
        if self.busy:
            self.busy -= 1 if self.busy > 0 else 0
            return ExcCodes.DEVICE_BUSY
        if function_code in (3, 4):
            for i in range(len(registers)):
                registers[i] = self.words.get(start_address + i, 0)
        return None


class DroppingServer:
    """A device that accepts each TCP connection and closes it at once (what a dongle does to a
    second client, or a device rebooting)."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)
        self.accepted = 0
        self._sock = socket.create_server(self.address)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


__all__ = ["DumpServer", "DroppingServer", "huawei_words", "sunspec_words", "load", "FIXTURES"]
