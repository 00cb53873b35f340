"""An SMA Energy Meter / Home Manager 2.0 on speedwire multicast (239.12.255.254:9522), sending
datagrams made from a recorded real one (tests/data/meters/sma/, SOURCE.md there).

:func:`datagram` changes only the four values the driver reads (OBIS 1:4:0, 2:4:0, 1:8:0, 2:8:0),
the timestamp (the library drops a repeat of the same sender and timestamp) and, if asked, the
serial; speedwire has no checksum and the lengths do not change. The phases' channels keep their
recorded values. Layout: SMA "EMETER-Protokoll-TI-en-10": a 28-byte header (serial at bytes 20-23,
timestamp in ms at 24-27), then channels of 4 bytes (channel, index, type, tariff) followed by
``type`` bytes of big-endian value (4: a power, 8: a counter); a software version channel
(channel 144) has 4.

Run inside a test LAN's host (``tests/netns.py``) as ``python -m tests.emulators.speedwire IP``: it
sends each line of hex read from stdin as one datagram from ``IP`` to the group and answers
``sent N`` on stdout.
"""
from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

GROUP, PORT = "239.12.255.254", 9522
RECORDED = Path(__file__).resolve().parents[1] / "data" / "meters" / "sma" / "SunnyHomeManager2.hex"


def recorded() -> bytes:
    """The recorded SHM 2.0 datagram (608 bytes): 201.1 W drawn, 0 W fed in."""
    return bytes.fromhex(RECORDED.read_text().strip())


def channels(p: bytes) -> dict[str, tuple[int, int]]:
    """{"index:type:tariff": (byte offset of the value, its size)} of a datagram's data part."""
    out: dict[str, tuple[int, int]] = {}
    end = int.from_bytes(p[12:14], "big") + 16
    pos = 28
    while pos + 4 <= end:
        ch, idx, typ, tariff = p[pos:pos + 4]
        size = typ if typ in (4, 8) else 4
        out[f"{idx}:{typ}:{tariff}"] = (pos + 4, size)
        pos += 4 + size
    return out


def datagram(base: bytes, *, consume_w: float, supply_w: float, import_wh: float, export_wh: float,
             timestamp_ms: int, serial: int | None = None) -> bytes:
    """``base`` with the powers (W, both >= 0, 0.1 W on the wire), the counters (Wh; Ws on the wire),
    the timestamp and optionally the serial replaced."""
    b = bytearray(base)
    at = channels(base)
    for key, raw in (("1:4:0", round(consume_w * 10)), ("2:4:0", round(supply_w * 10)),
                     ("1:8:0", round(import_wh * 3600)), ("2:8:0", round(export_wh * 3600))):
        off, size = at[key]
        b[off:off + size] = raw.to_bytes(size, "big")
    b[24:28] = (timestamp_ms & 0xFFFFFFFF).to_bytes(4, "big")
    if serial is not None:
        b[20:24] = serial.to_bytes(4, "big")
    return bytes(b)


def net(base: bytes, net_w: float, import_wh: float, export_wh: float, timestamp_ms: int, **kw) -> bytes:
    """:func:`datagram` for a net power (export-positive): what the meter sends as drawn / fed in."""
    return datagram(base, consume_w=max(-net_w, 0.0), supply_w=max(net_w, 0.0), import_wh=import_wh,
                    export_wh=export_wh, timestamp_ms=timestamp_ms, **kw)


def main(argv: list[str]) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("b", 1))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(argv[0]))
    sock.bind((argv[0], 0))
    n = 0
    for line in sys.stdin:
        line = line.strip()
        if line:
            sock.sendto(bytes.fromhex(line), (GROUP, PORT))
            n += 1
        print(f"sent {n}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
