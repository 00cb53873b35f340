"""SMA Energy Meter and Sunny Home Manager 2.0: the speedwire multicast they send by themselves
(group 239.12.255.254, UDP port 9522, about once a second; protocol 0x6069), decoded by
``pysma-plus`` (optional extra ``sma``; pinned 0.5.4, ``pysmaplus/device_em.py``
``SMAspeedwireEM``, the energy meter part of https://github.com/sbf-/pysma).

The socket is bound once, when the driver opens (port 9522 with SO_REUSEADDR, the group joined on
``interface`` or on the default route's; as the library's own ``_getDiscoverySocket`` does), and
given to the library's listener (its ``datagram_received`` decodes every datagram) on
:mod:`drivers.aio`'s loop. A read returns the newest datagram that arrived since the previous read (from the meter
``serial`` when set) and is at most ``timeout_s`` old by the daemon's clock, waiting up to
``timeout_s`` for one; otherwise it is a failed read (MeterError) that says what was heard instead
(other meters' serials, datagrams refused and why).

Values (OBIS channels, SMA's "EMETER-Protokoll-TI-en-10"; the library's ``definitions_em.py`` gives
their factors): 1:4:0 power drawn from the grid and 2:4:0 power fed into it (0.1 W, both >= 0),
1:8:0 and 2:8:0 their counters (Ws). ``net_w`` = fed in - drawn (export-positive);
``import_wh_total`` = 1:8:0, ``export_wh_total`` = 2:8:0, in Wh.

Before the library decodes a datagram, the driver checks what the library does not: its size
(at most ``MAX_DATAGRAM_BYTES``) and that it is as long as its own header says (the library would
read a cut datagram's missing values as zeros).
"""
from __future__ import annotations

import asyncio
import socket
import threading
from datetime import datetime
from ipaddress import IPv4Address
from typing import Any, Literal

from pydantic import Field

from drivers import DriverContext, aio
from drivers.meters.base import MeterError, MeterSettings, Reading, import_extra, register_meter

GROUP, PORT = "239.12.255.254", 9522
# Largest datagram accepted, bytes: an EM / HM 2.0 datagram is 600-1000 bytes (the recording in
# tests/data/meters/sma/ is 608); a bigger one is not an energy meter's.
MAX_DATAGRAM_BYTES = 2048
RECEIVE_BUFFER_BYTES = 65536  # the kernel's queue for the socket: ~100 datagrams, bytes
PROTOCOL_EM = 0x6069          # speedwire protocol id of energy meter datagrams (SMA EMETER-Protokoll-TI)
CHANNELS = {"consume_w": "1:4:0", "supply_w": "2:4:0", "import_wh": "1:8:0", "export_wh": "2:8:0"}


class SmaEmSettings(MeterSettings):
    driver: Literal["sma_em"] = "sma_em"
    serial: int | None = Field(None, ge=1, le=0xFFFFFFFF)   # which meter, when several send; None: any
    interface: IPv4Address | None = None                   # local IP to join the group on; None: default
    timeout_s: float = Field(3.0, gt=0, le=30)             # longest wait for (and age of) a datagram, s

    @property
    def counter_resolution_wh(self) -> float:
        """1 Wh: the counters are sent in Ws (SMA EMETER-Protokoll-TI)."""
        return 1.0


def check_datagram(p: bytes) -> str | None:
    """Why ``p`` cannot be an energy meter datagram (a short phrase), or None. Header layout: SMA
    EMETER-Protokoll-TI-en-10, table 1 (``SMA\\0``, tag 0x02A0, group, data length, tag 0x0010,
    protocol id at bytes 16-17; the data length counts from byte 16)."""
    if len(p) > MAX_DATAGRAM_BYTES:
        return f"oversized ({len(p)} bytes, more than {MAX_DATAGRAM_BYTES})"
    if len(p) < 28 or p[:4] != b"SMA\x00":
        return f"not speedwire (starts {p[:4]!r}, {len(p)} bytes)" if p[:4] != b"SMA\x00" else \
            f"truncated ({len(p)} bytes, less than a header)"
    need = int.from_bytes(p[12:14], "big") + 16
    if len(p) < need:
        return f"truncated ({len(p)} bytes, its header says {need})"
    return None


def factors() -> dict[str, float]:
    """The divisors of :data:`CHANNELS`' raw values, from the library (``pysmaplus/definitions_em.py``
    ``obis2sensor``): power raw / 10 = W, counters raw / 3,600,000 = kWh."""
    definitions = import_extra("pysmaplus.definitions_em", "sma", "sma_em")
    by_key = {s.key: s.factor for s in definitions.obis2sensor}
    return {k: float(by_key[c]) for k, c in CHANNELS.items()}


class SmaEmMeter:
    """Reads the newest speedwire datagram of an SMA Energy Meter / Home Manager 2.0. Raises
    MeterError with a sentence when none usable arrived within ``timeout_s``."""

    def __init__(self, s: SmaEmSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self.listener: Any = None
        self._cond = threading.Condition()
        self._latest: tuple[dict[str, float], datetime] | None = None
        self._unread = False
        self._others: set[int] = set()       # serials heard that are not ours, since the last read
        self._heard: set[int] = set()        # serials read since the last read (no ``serial`` set)
        self.datagrams = 0                   # datagrams handled so far, any (for tests and live checks)
        self._refused: str | None = None     # the last refused datagram and why, since the last read
        self.where = f"sma_em {GROUP}:{PORT}" + (f" serial {s.serial}" if s.serial else "")
        try:
            self._bind()                      # listen from the start: a datagram sent before the first read counts
        except MeterError:
            pass                              # tried again, and reported, by read()

    # -- on the drivers' loop: the library's listener calls this for every datagram
    def received(self, p: bytes, addr: tuple[str, int], decode) -> dict[str, Any]:
        """Check, decode (``decode``: the library's ``datagram_received``) and keep one datagram;
        counted in :attr:`datagrams` once handled."""
        try:
            return self._received(p, addr, decode)
        finally:
            with self._cond:
                self.datagrams += 1

    def _received(self, p: bytes, addr: tuple[str, int], decode) -> dict[str, Any]:
        why = check_datagram(p)
        if why is None and int.from_bytes(p[16:18], "big") != PROTOCOL_EM:
            return {}                         # another SMA device's speedwire (inverters: 0x6065)
        data: dict[str, Any] = {}
        if why is None:
            try:
                data = decode(p, addr)
            except Exception as e:  # noqa: BLE001 - whatever the library's decoder raises on garbage: refused
                why = f"undecodable ({type(e).__name__}: {str(e)[:80]})"
        with self._cond:
            if why is not None:
                self._refused = f"{why}, from {addr[0]}"
                return {}
            if not data:
                return {}                     # a repeat (same sender and timestamp): the library drops it
            if self.s.serial is not None and data.get("serial") != self.s.serial:
                self._others.add(int(data.get("serial") or 0))
                return {}
            missing = [c for c in CHANNELS.values() if not isinstance(data.get(c), int)]
            if missing:
                self._refused = f"lacks channels {', '.join(missing)}, from {addr[0]} serial {data.get('serial')}"
                return {}
            self._heard.add(int(data.get("serial") or 0))
            self._latest = ({k: float(data[c]) for k, c in CHANNELS.items()}, self.clock.now())
            self._unread = True
            self._cond.notify_all()
        return data

    def _bind(self) -> None:
        """Bind the socket (port 9522, SO_REUSEADDR: other listeners on the Pi keep theirs; the group
        joined on ``interface``, else on the default route's) and hand it to the library's listener
        on the drivers' loop (once; again after a failure)."""
        device_em = import_extra("pysmaplus.device_em", "sma", "sma_em")
        owner = self

        class Listener(device_em.SMAspeedwireEM):  # type: ignore[name-defined,misc]
            def datagram_received(self, p: bytes, addr: tuple[str, int]) -> dict[str, Any]:
                return owner.received(p, addr, super().datagram_received)

        on = f" on interface {self.s.interface}" if self.s.interface else ""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.bind(("", PORT))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            socket.inet_aton(GROUP) + socket.inet_aton(str(self.s.interface or "0.0.0.0")))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise MeterError(f"{self.where}: cannot listen to the multicast group{on}: {e.strerror or e}") from None

        async def start() -> Any:
            lst = Listener()                  # made on the loop: the library takes the running loop
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: lst, sock=sock)
            return lst

        try:
            self.listener = aio.run(start(), 5.0)
        except (TimeoutError, OSError) as e:
            sock.close()
            raise MeterError(f"{self.where}: cannot listen to the multicast group{on}: {e}") from None

    def read(self) -> Reading:
        if self.listener is None:
            self._bind()
        with self._cond:
            if not self._fresh():
                self._unread = False
                self._cond.wait_for(self._fresh, self.s.timeout_s)
            several = sorted(self._heard) if self.s.serial is None and len(self._heard) > 1 else None
            fresh, latest = self._fresh(), self._latest
            msg = self._silence() if not fresh else None
            self._unread = False
            self._others.clear()
            self._heard.clear()
            self._refused = None
        if several:   # two meters' datagrams would be mixed: which one is the grid's?
            raise MeterError(f"{self.where}: several energy meters send (serials {', '.join(map(str, several))}): "
                             "set meter.serial to the one on the grid connection")
        if msg is not None or latest is None:
            raise MeterError(msg or self._silence())
        v, _ = latest
        f = factors()
        net_w = v["supply_w"] / f["supply_w"] - v["consume_w"] / f["consume_w"]
        return Reading(at=self.clock.now(), net_w=net_w, import_wh_total=v["import_wh"] / f["import_wh"] * 1000.0,
                       export_wh_total=v["export_wh"] / f["export_wh"] * 1000.0)

    def _fresh(self) -> bool:
        return self._unread and self._latest is not None and \
            (self.clock.now() - self._latest[1]).total_seconds() <= self.s.timeout_s

    def _silence(self) -> str:
        what = f"{self.where}: no usable energy meter datagram within {self.s.timeout_s:g} s"
        if self._others:
            what += (f"; heard only serial(s) {', '.join(str(x) for x in sorted(self._others))}"
                     " (meter.serial picks one)")
        if self._refused:
            what += f"; refused a datagram: {self._refused}"
        return what

    def close(self) -> None:
        lst, self.listener = self.listener, None
        if lst is not None and lst.transport is not None:
            aio.loop().call_soon_threadsafe(lst.transport.close)


@register_meter("sma_em", SmaEmSettings)
def _open(s: SmaEmSettings, ctx: DriverContext) -> SmaEmMeter:
    return SmaEmMeter(s, ctx)
