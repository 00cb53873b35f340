"""Modbus glue shared by the Modbus meters (eastron, modbus_map) and the modbus_coil relay:
connection settings, one pymodbus 3.16 client per link, reads that raise one exception type with
a reason a user can act on, and reconnection after the device comes back.

pymodbus is pinned (3.16.1): its client API changed between minor releases. This module uses
``device_id=`` and ``count=`` keywords and ``client.convert_from_registers``.

A serial port is opened exclusively by pymodbus (pyserial ``exclusive=True``): one process owns a
serial bus; a second one gets "port busy" instead of corrupting the first one's frames.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

log = logging.getLogger("gestor.modbus")
# pymodbus logs every retry and frame itself; our errors say the same in one line. Its own log
# comes back with log_level DEBUG.
EXCEPTION_CODES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 6: "device busy", 10: "gateway path unavailable",
                   11: "gateway target did not respond"}

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
_DT = {"int16": ModbusTcpClient.DATATYPE.INT16, "uint16": ModbusTcpClient.DATATYPE.UINT16,
       "int32": ModbusTcpClient.DATATYPE.INT32, "uint32": ModbusTcpClient.DATATYPE.UINT32,
       "float32": ModbusTcpClient.DATATYPE.FLOAT32}
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}  # registers per value


def quiet_library_log(name: str) -> None:
    """Silence a library's own log (``pymodbus``, ``huawei_solar``: they log every retry, some with
    a traceback) unless gestor's log is at DEBUG: our MeterError says the same in one line."""
    logging.getLogger(name).setLevel(logging.DEBUG if logging.getLogger("gestor").isEnabledFor(logging.DEBUG)
                                     else logging.CRITICAL)


class ModbusIOError(Exception):
    """A Modbus exchange failed; the message names the link and the reason."""


class ModbusLink(BaseModel):
    """Where a Modbus device is. ``transport: tcp`` needs ``host``; ``transport: rtu`` needs
    ``serial_port`` (e.g. ``/dev/ttyUSB0``, an RS-485 adapter)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str | None = None                   # tcp: address of the meter or of the RS-485 gateway
    port: int = Field(502, gt=0, lt=65536)    # tcp port
    serial_port: str | None = None            # rtu: serial device
    baudrate: int = Field(9600, gt=0)         # rtu (Eastron default 2400 on old units; check the display)
    parity: Literal["N", "E", "O"] = "N"      # rtu
    stopbits: Literal[1, 2] = 1               # rtu
    bytesize: Literal[7, 8] = 8               # rtu
    device_id: int = Field(1, ge=0, le=247)   # Modbus unit/slave address
    timeout_s: float = Field(1.0, gt=0, le=10)       # per request, s
    retries: int = Field(1, ge=0, le=5)       # pymodbus retries per request

    @model_validator(mode="after")
    def _where(self) -> "ModbusLink":
        if self.transport == "tcp" and not self.host:
            raise ValueError("transport tcp needs host")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport rtu needs serial_port")
        return self

    def link_key(self) -> tuple:
        """What identifies the Modbus unit this link reaches (host and port, or the serial port's
        real path, and the unit id): equal keys are the same unit on the same bus."""
        where = ((self.host or "").strip().lower(), self.port) if self.transport == "tcp" else \
            (os.path.realpath(self.serial_port or ""),)
        return ("modbus", self.transport, *where, self.device_id)

    def describe(self) -> str:
        if self.transport == "tcp":
            return f"modbus tcp {self.host}:{self.port} device {self.device_id}"
        return f"modbus rtu {self.serial_port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits} device {self.device_id}"


class ModbusClient:
    """One pymodbus client for one link. Connects lazily; after any failure the socket or port is
    closed so the next call reconnects (a meter that reboots is picked up without a restart).

    Raises:
        ModbusIOError: connection refused, serial port missing or busy, timeout, a Modbus exception
            response (e.g. illegal address, wrong device id on a gateway).
    """

    def __init__(self, link: ModbusLink) -> None:
        self.link = link
        quiet_library_log("pymodbus")
        if link.transport == "tcp":
            self._client: ModbusTcpClient | ModbusSerialClient = ModbusTcpClient(
                link.host, port=link.port, timeout=link.timeout_s, retries=link.retries,
                reconnect_delay=0)
        else:
            self._client = ModbusSerialClient(
                link.serial_port, baudrate=link.baudrate, parity=link.parity, stopbits=link.stopbits,
                bytesize=link.bytesize, timeout=link.timeout_s, retries=link.retries, reconnect_delay=0)

    def _connect(self) -> None:
        if self._client.connected:
            return
        if self.link.transport == "rtu" and not os.path.exists(self.link.serial_port or ""):
            raise ModbusIOError(f"{self.link.describe()}: serial port {self.link.serial_port} does not exist "
                                "(adapter unplugged? see `ls /dev/serial/by-id/`)")
        try:
            ok = self._client.connect()
        except Exception as e:  # pyserial raises SerialException for a busy port
            ok, why = False, str(e)
        else:
            why = "connection refused or unreachable" if self.link.transport == "tcp" else "cannot open port (busy?)"
        if not ok:
            self._client.close()
            raise ModbusIOError(f"{self.link.describe()}: {why}")

    def _call(self, what: str, fn, *args, device_id: int | None = None, **kw):  # type: ignore[no-untyped-def]
        if device_id is not None and device_id != self.link.device_id:
            what = f"unit {device_id}: {what}"
        self._connect()
        try:
            rr = fn(*args, device_id=self.link.device_id if device_id is None else device_id, **kw)
        except ConnectionException:
            self._client.close()
            raise ModbusIOError(f"{self.link.describe()}: {what}: connection lost") from None
        except ModbusIOException:
            self._client.close()
            raise ModbusIOError(f"{self.link.describe()}: {what}: no answer within {self.link.timeout_s:g} s "
                                "(device off, wrong device_id, baud rate or wiring?)") from None
        except ModbusException as e:
            self._client.close()
            raise ModbusIOError(f"{self.link.describe()}: {what}: {_short(e)}") from None
        except OSError as e:
            self._client.close()
            raise ModbusIOError(f"{self.link.describe()}: {what}: {e}") from None
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise ModbusIOError(f"{self.link.describe()}: {what}: device answered Modbus exception {code} "
                                f"({EXCEPTION_CODES.get(code, 'unknown')}): wrong device_id or register map?")
        return rr

    def read_registers(self, function: Literal["holding", "input"], address: int, count: int,
                       device_id: int | None = None) -> list[int]:
        """Read ``count`` 16-bit registers from ``address`` (0-based protocol address).
        ``device_id``: another unit behind the same link (a gateway's), else the link's."""
        fn = self._client.read_input_registers if function == "input" else self._client.read_holding_registers
        rr = self._call(f"read {function} registers {address}+{count}", fn, address, count=count,
                        device_id=device_id)
        if len(rr.registers) < count:
            raise ModbusIOError(f"{self.link.describe()}: short answer: {len(rr.registers)} of {count} registers")
        return list(rr.registers[:count])

    def write_registers(self, address: int, values: list[int], device_id: int | None = None) -> None:
        """Write 16-bit holding registers from ``address``: one value with function 06, more with
        16 (one request: the device takes them together). Values are raw words (see :func:`encode`)."""
        if len(values) == 1:
            self._call(f"write register {address}", self._client.write_register, address, values[0],
                       device_id=device_id)
        else:
            self._call(f"write registers {address}+{len(values)}", self._client.write_registers, address,
                       list(values), device_id=device_id)

    def write_coil(self, address: int, value: bool) -> None:
        self._call(f"write coil {address}", self._client.write_coil, address, value)

    def read_coils(self, address: int, count: int = 1) -> list[bool]:
        rr = self._call(f"read coil {address}", self._client.read_coils, address, count=count)
        return list(rr.bits[:count])

    def close(self) -> None:
        self._client.close()


def decode(registers: list[int], data_type: DataType, word_order: Literal["big", "little"] = "big") -> float:
    """Registers → number with pymodbus's converter. ``word_order: little`` is "LSW first"
    (Carlo Gavazzi); bytes within a register are always big-endian (Modbus)."""
    return float(ModbusTcpClient.convert_from_registers(registers, _DT[data_type], word_order=word_order))


def encode(value: float, data_type: DataType, word_order: Literal["big", "little"] = "big") -> list[int]:
    """Number → registers, the inverse of :func:`decode`; integer types take the value rounded.
    Raises ValueError when it does not fit the type (e.g. -1 as uint16, 40000 as int16)."""
    v = float(value) if data_type == "float32" else int(round(value))
    try:
        return list(ModbusTcpClient.convert_to_registers(v, _DT[data_type], word_order=word_order))
    except Exception as e:  # struct.error: out of range for the type
        raise ValueError(f"{value!r} does not fit {data_type}: {e}") from None


def _short(e: Exception) -> str:
    s = str(e).removeprefix("Modbus Error: ")
    return re.sub(r"^\[[^\]]*\]\s*", "", s) or type(e).__name__
