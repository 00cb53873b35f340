"""A GoodWe inverter on UDP (port 8899, as the inverters' Wi-Fi/LAN dongle), answering the
``goodwe`` library's requests with recorded real answers (``tests/data/meters/goodwe/``, see its
SOURCE.md).

Two request families (goodwe 0.4.10, ``goodwe/protocol.py``):
* Modbus RTU over UDP (ET/EH/BT/BH and DT/MS/NS/XS): ``addr 03 offset count crc``; the answer is
  ``AA 55 addr 03 len data crc`` (CRC-16/Modbus over everything after ``AA 55``, little-endian).
  A read with no recording gets the Modbus exception ILLEGAL DATA ADDRESS, ``AA 55 addr 83 02 crc``,
  as a real inverter does for registers it lacks.
* AA55 (ES/EM/BP): ``AA 55 C0 7F payload sum``; the answer ``AA 55 7F C0 type len data sum`` (a
  plain 16-bit byte sum, big-endian). No recording: no answer.

:class:`GoodweTcp` serves the same recorded register data over Modbus TCP (the library's transport
for any port but 8899): each answer's data bytes reframed with the MBAP header (goodwe 0.4.10
``modbus.py`` ``validate_modbus_tcp_response``); no TCP answer of these inverters was recorded.

The library speaks UDP only to port 8899 (any other port is Modbus TCP), so each emulator binds
8899 on its own loopback address (127.88.x.y): tests run in parallel without a clash.

Faults (``fault``): "silent" (no answer), "drop_once" (the first answer to each request is lost,
as UDP loses it), "busy" (Modbus exception 06 SLAVE DEVICE BUSY), "truncated" (half an answer),
"bad_crc" (a flipped checksum), "other_answer" (every Modbus read answered with the recorded
answer to another read: the wrong length). (goodwe 0.4.10 does not check the ``AA 55`` itself: the
CRC covers the frame from the address on.)
"""
from __future__ import annotations

import itertools
import os
import socket
import socketserver
import threading
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "meters" / "goodwe"
PORT = 8899
_addresses = itertools.count(1)


def crc16_modbus(data: bytes) -> int:
    """CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF): the checksum of goodwe's Modbus RTU
    frames (goodwe 0.4.10 ``modbus.py`` ``_modbus_checksum``; the Modbus over serial line spec)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(body: bytes) -> bytes:
    """``AA 55`` + ``body`` + its CRC (little-endian)."""
    c = crc16_modbus(body)
    return b"\xaa\x55" + body + bytes([c & 0xFF, c >> 8])


def aa55_frame(without_sum: bytes) -> bytes:
    return without_sum + (sum(without_sum) & 0xFFFF).to_bytes(2, "big")


def recorded(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text().strip())


def patch_rtu(answer: bytes, first_register: int, values: dict[int, bytes]) -> bytes:
    """A recorded Modbus RTU read answer with registers ``values`` (register → its bytes, big-endian)
    replaced and the CRC recomputed; the length stays."""
    b = bytearray(answer[2:-2])
    for reg, raw in values.items():
        at = 3 + (reg - first_register) * 2
        if at < 3 or at + len(raw) > len(b):
            raise ValueError(f"register {reg} is outside the answer")
        b[at:at + len(raw)] = raw
    return rtu_frame(bytes(b))


def et_meter(answer: bytes, net_w: int, import_wh: float, export_wh: float) -> bytes:
    """The GW20K-ET meter answer (36000 x125) with the meter's power (36005-36008 2-byte, 36019-36025
    4-byte, signed, export-positive as goodwe's et.py reads them) and its 8-byte energy counters
    (36104 export, 36120 import, 0.01 kWh) replaced."""
    phase = [net_w // 3, net_w // 3, net_w - 2 * (net_w // 3)]
    v: dict[int, bytes] = {36008: net_w.to_bytes(2, "big", signed=True),
                           36025: net_w.to_bytes(4, "big", signed=True),
                           36104: round(export_wh / 10).to_bytes(8, "big"),
                           36120: round(import_wh / 10).to_bytes(8, "big")}
    for i, p in enumerate(phase):
        v[36005 + i] = p.to_bytes(2, "big", signed=True)
        v[36019 + 2 * i] = p.to_bytes(4, "big", signed=True)
    return patch_rtu(answer, 36000, v)


def es_running(answer: bytes, net_w: int) -> bytes:
    """The GW5048-ESA running data with the grid power (byte 38, 2 bytes, its magnitude) and the
    direction (byte 80, ``grid_in_out``: 1 exporting, 2 importing) replaced (goodwe's es.py
    ``pgrid``), the byte sum recomputed."""
    b = bytearray(answer[:-2])
    b[7 + 38:7 + 40] = abs(net_w).to_bytes(2, "big", signed=True)
    b[7 + 80] = 0 if net_w == 0 else (1 if net_w > 0 else 2)
    return aa55_frame(bytes(b))


def family_answers(family: str) -> tuple[dict[tuple[int, int], bytes], dict[bytes, bytes]]:
    """The recorded answers of one inverter: ({(first register, count): answer}, {AA55 payload: answer})."""
    if family == "ET":
        return {(0x88B8, 0x21): recorded("GW20K-ET_device_info"), (0x891C, 0x7D): recorded("GW20K-ET_running_data"),
                (0x8CA0, 0x7D): recorded("GW20K-ET_meter_data"), (0x9088, 0x18): recorded("GW20K-ET_battery_info"),
                (0x89E5, 0x3D): recorded("GW20K-ET_mppt_data")}, {}
    if family == "ES":
        info = recorded("GW5048-ESA_device_info")
        return {}, {bytes.fromhex("010200"): info, bytes.fromhex("010600"): recorded("GW5048-ESA_running_data")}
    if family == "DT":
        return {(0x7531, 0x28): recorded("GW8K-DT_device_info"), (0x7594, 0x49): recorded("GW8K-DT_running_data")}, {}
    raise ValueError(f"no recordings for family {family!r}")


class GoodweUdp:
    """The emulator: a UDP socket on (127.88.x.y, 8899) answered from a thread.

    ``modbus`` and ``aa55`` (see :func:`family_answers`) may be replaced between reads (a noon, a
    night); ``requests`` counts the requests received."""

    def __init__(self, family: str, host: str | None = None) -> None:
        self.modbus, self.aa55 = family_answers(family)
        self.fault: str | None = None
        self.requests = 0
        self._dropped: set[bytes] = set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if host is not None:
            self.sock.bind((host, PORT))
        else:
            self._bind_free()
        self.host = self.sock.getsockname()[0]
        self._stop = False
        self.thread = threading.Thread(target=self._serve, name="goodwe-udp", daemon=True)
        self.thread.start()

    def _bind_free(self) -> None:
        for _ in range(200):
            n = next(_addresses) + os.getpid() * 7
            host = f"127.88.{(n // 250) % 250 + 1}.{n % 250 + 1}"
            try:
                self.sock.bind((host, PORT))
                return
            except OSError:
                continue
        raise RuntimeError("no free 127.88.x.y address for port 8899")

    def answer(self, request: bytes) -> bytes | None:
        """The answer to ``request`` (None: no answer), faults applied."""
        if len(request) == 8 and request[1] == 0x03:
            addr, first, count = request[0], int.from_bytes(request[2:4], "big"), int.from_bytes(request[4:6], "big")
            if self.fault == "busy":
                return rtu_frame(bytes([addr, 0x83, 0x06]))
            out = self.modbus.get((first, count)) or rtu_frame(bytes([addr, 0x83, 0x02]))
        elif request[:4] == b"\xaa\x55\xc0\x7f":
            out = self.aa55.get(request[4:7])
        else:
            return None
        if out is None or self.fault == "silent":
            return None
        if self.fault == "drop_once" and request not in self._dropped:
            self._dropped.add(request)
            return None
        if self.fault == "truncated":
            return out[:len(out) // 2]
        if self.fault == "bad_crc":
            return out[:-1] + bytes([out[-1] ^ 0xFF])
        if self.fault == "other_answer" and self.modbus:
            return next(a for k, a in self.modbus.items() if a != out)
        return out

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                request, peer = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            self.requests += 1
            out = self.answer(request)
            if out is not None:
                self.sock.sendto(out, peer)

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


class GoodweTcp:
    """The recorded Modbus answers of ``family`` over Modbus TCP on 127.0.0.1 (a free port): a read
    gets ``tid 0000 len unit 03 n data`` with the recording's data bytes; an unrecorded read the
    exception ILLEGAL DATA ADDRESS (``unit 83 02``)."""

    def __init__(self, family: str) -> None:
        self.modbus, _ = family_answers(family)
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                while True:
                    try:
                        req = self.request.recv(260)
                    except OSError:
                        return
                    if len(req) < 12:
                        return
                    unit, first, count = req[6], int.from_bytes(req[8:10], "big"), int.from_bytes(req[10:12], "big")
                    rtu = outer.modbus.get((first, count))
                    pdu = bytes([unit, 0x03]) + rtu[4:-2] if rtu else bytes([unit, 0x83, 0x02])
                    self.request.sendall(req[0:2] + b"\0\0" + len(pdu).to_bytes(2, "big") + pdu)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="goodwe-tcp", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
