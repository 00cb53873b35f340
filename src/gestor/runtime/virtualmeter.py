"""``gestor virtual-meter``: a grid meter for zero-export devices, showing the real net power
corrected by the settlement period's balance (:func:`gestor.core.virtualmeter.virtual_net_w`), so
that a device holding it at zero settles the period at ``virtual_meter.target_wh``.

What is shown (:class:`VirtualMeter`, read at every request through the injected clock, cached
for :data:`CACHE_S`):

* the newest reading monitoring published (``run_dir/reading.json``, :func:`read_live`), if it
  is at most ``virtual_meter.stale_after_s`` old (default 3 x ``monitoring.interval_s``; the age
  as managing measures it, :func:`reading_age`: the worse of the wall and monotonic clocks);
* corrected by the period's balance: managing's (``run_dir/managing.json``: ``balance_wh`` up to
  its last accounted reading ``reading_at``) plus the readings monitoring published since
  (:func:`gestor.core.virtualmeter.balance_since`); in the first seconds of a period, before
  managing has cycled into it, the balance starts from 0. When managing is not running, has not
  published for 3 of its intervals, or published another period, nothing is corrected: the
  device sees the plain net power, as it would on the real meter (and the log says so once).

**No fresh reading, or the stop latch set: the devices get no meter**, never a stale zero (a
zero-export device shown 0 W holds its power where it is, whatever the house does). To a device
it is the meter gone, as when the real one is unplugged; what it does then is its firmware's
fallback for a lost meter (check it for each device before relying on it):

* Shelly HTTP: an RPC error, HTTP 503 with ``{"code": -114, "message": ...}`` (Shelly's
  "unavailable"); JSON-RPC over ``POST /rpc``: an ``error`` frame. A failed read to any client.
  Shelly WebSocket: every client is closed and a new one refused (503): Home Assistant shows the
  device unavailable until a reading is fresh again.
* Shelly UDP: no answer, as from a meter that is off. An error datagram is not understood by
  every battery firmware, and one that read the missing power as 0 would hold on a stale zero.
* SDM630 Modbus: exception response 0x04 (server device failure) to every read (another unit
  id gets 0x0B, a gateway's "no response", at once: :mod:`gestor.runtime.vmeter.sdm630`). No register
  value could do: a value of import makes a charger or diverter back off but a battery discharge
  more; a value of export the other way round. An exception is a failed read for every kind.

Signs: gestor's ``net_w`` is export-positive; both emulated meters are import-positive (Shelly's
``act_power`` > 0 and Eastron's power > 0 with the meter wired as its datasheet shows are import,
as ``drivers.meters.shelly_em`` and ``drivers.meters.eastron`` read them): the power is
converted once, in :meth:`View.import_w`. Phases are not measured by gestor: the power is shown
split equally over the three phases (their signed sum is the total, netted as the utility nets
them), at a nominal 230 V and 50 Hz, power factor 1 and current ``|P| / 230 V``. The energy
counters are the real meter's when its readings carry them, else 0.

The servers (each off when its setting is null; bound to 127.0.0.1 unless set otherwise), in
:mod:`gestor.runtime.vmeter` (the reading: ``base``; the Shelly RPC: ``shelly``, over HTTP and
UDP: ``shellyhttp``, over a WebSocket: ``websocket``; the SDM630: ``sdm630``):

* :class:`ShellyHttpServer`: the Shelly Pro 3EM's Gen2 RPC over HTTP (``GET /shelly``,
  ``GET /rpc/<Method>?id=0``, JSON-RPC over ``POST /rpc``, a WebSocket on ``GET /rpc`` pushing
  ``NotifyStatus`` on every new reading: what Home Assistant's Shelly integration needs) for
  ``Shelly.GetDeviceInfo``, ``Shelly.GetConfig``, ``Shelly.GetStatus``, ``Shelly.GetComponents``,
  ``Shelly.ListMethods``, ``Sys.GetConfig``, ``Sys.GetStatus``, ``EM.GetConfig``,
  ``EM.GetStatus``, ``EMData.GetStatus`` and ``Script.List``. ``http.server`` with a pool of
  :data:`HTTP_THREADS` threads (and :data:`HTTP_QUEUE` connections waiting for one; more are
  closed at once), one request per connection, a request (line, headers and body) of at most
  :data:`MAX_REQUEST_BYTES` (413 past it; a body of at most :data:`MAX_BODY_BYTES`) that must
  arrive whole within :data:`READ_DEADLINE_S`.
* :class:`ShellyUdpServer`: the same RPC as JSON datagrams (``{"id":1,"method":"EM.GetStatus",
  "params":{"id":0}}``) on each of ``shelly_udp_ports``, answered to the sender; a datagram over
  :data:`MAX_DATAGRAM_BYTES` is dropped, and at most :data:`UDP_ANSWERS_PER_S` a second are
  answered to each sender (the rest dropped: an answer is larger than its question).
* :class:`Sdm630Server`: the Eastron SDM630's input registers (function 04; float32, high word
  first), every one of its map, and its holding registers (function 03, with the serial number)
  over Modbus TCP with pymodbus's server, at unit ``unit_id``; writes are refused (illegal
  function), at most :data:`MODBUS_CONNECTIONS` connections are kept (a new one
  closes the least recently active).
"""
from __future__ import annotations

import logging
import re
import signal
import threading
from typing import Any

from gestor.clock import Clock
from gestor.runtime.daemon import GestorError, run_loop
from gestor.runtime.vmeter.base import CACHE_S, NOMINAL_HZ, NOMINAL_V, View, VirtualMeter
from gestor.runtime.vmeter.sdm630 import MODBUS_CONNECTIONS, SDM630_REGISTERS, Sdm630Server, sdm630_registers
from gestor.runtime.vmeter.shelly import RpcError, ShellyRpc, em_status, emdata_status
from gestor.runtime.vmeter.shellyhttp import (HTTP_QUEUE, HTTP_THREADS, MAX_BODY_BYTES, MAX_DATAGRAM_BYTES,
                                              MAX_REQUEST_BYTES, UDP_ANSWERS_PER_S, ShellyHttpServer,
                                              ShellyUdpServer)
from gestor.runtime.vmeter.websocket import MAX_WS_MESSAGE_BYTES, WS_CLIENTS, WS_IDLE_S
from gestor.settings import Settings, listen_address

log = logging.getLogger("gestor.virtualmeter")


# --- the daemon ---------------------------------------------------------------------------------
class Servers:
    """Every server the settings ask for, started together (none if one cannot listen)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        vm = settings.virtual_meter
        self.meter = VirtualMeter(settings, clock)
        self.rpc = ShellyRpc(self.meter)
        self.shelly: ShellyHttpServer | None = None
        self.udp: list[ShellyUdpServer] = []
        self.sdm630: Sdm630Server | None = None
        try:
            if vm.shelly_listen is not None:
                self.shelly = ShellyHttpServer(self.rpc, vm.shelly_listen).start()
                host = listen_address(vm.shelly_listen)[0]
                for port in vm.shelly_udp_ports:
                    self.udp.append(ShellyUdpServer(self.rpc, host, port).start())
            if vm.sdm630_listen is not None:
                self.sdm630 = Sdm630Server(self.meter, vm.sdm630_listen, vm.unit_id).start()
        except GestorError:
            self.stop()
            raise
        self._last: tuple[str | None, str | None] | None = None

    def all(self) -> list[Any]:
        return [x for x in (self.shelly, *self.udp, self.sdm630) if x is not None]

    def check(self) -> None:
        """One watchdog cycle: every server still running (else GestorError: systemd restarts
        the unit), and a change of what is shown (stale, corrected or not) logged once."""
        dead = [type(x).__name__ for x in self.all() if not x.alive()]
        if dead:
            raise GestorError(f"virtual meter: {', '.join(dead)} stopped")
        v = self.meter.view()
        now = (_kind(v.stale), _kind(v.uncorrected))  # the reasons without their numbers (ages)
        if now != self._last:
            if v.stale is not None:
                log.warning("virtual meter: no meter for the devices: %s", v.stale)
            elif v.uncorrected is not None:
                log.warning("virtual meter: showing the plain net power (not corrected: %s)", v.uncorrected)
            else:
                log.info("virtual meter: showing the net power corrected by the period's balance")
            self._last = now

    def stop(self) -> None:
        for x in self.all():
            try:
                x.stop()
            except Exception:  # noqa: BLE001 -- stop the others anyway
                log.debug("stopping %s", x, exc_info=True)


def _kind(why: str | None) -> str | None:
    return None if why is None else re.sub(r"-?\d+(\.\d+)?", "#", why)


CHECK_S = 5.0


def serve(settings: Settings, clock: Clock, stop: threading.Event | None = None) -> None:
    """``gestor virtual-meter``: start the servers the settings ask for, then check them every
    :data:`CHECK_S` (systemd's watchdog) until SIGTERM/SIGINT or ``stop``.

    Raises:
        GestorError: a server cannot listen (one line naming the address and why), or one stopped.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():  # a SIGTERM while the servers start
        for sig in (signal.SIGTERM, signal.SIGINT):                # ends the loop (run_loop's own later)
            signal.signal(sig, lambda *_: stop.set())
    servers = Servers(settings, clock)
    vm = settings.virtual_meter
    log.info("virtual meter: %s", "; ".join(
        ([f"Shelly Pro 3EM on http://{vm.shelly_listen} (WebSocket ws://{vm.shelly_listen}/rpc)"] if vm.shelly_listen else [])
        + [f"Shelly UDP RPC on {listen_address(vm.shelly_listen)[0]}:{p}" for p in vm.shelly_udp_ports if vm.shelly_listen]
        + ([f"Eastron SDM630 on modbus tcp {vm.sdm630_listen} unit {vm.unit_id}"] if vm.sdm630_listen else [])))
    try:
        servers.check()  # what the devices are shown, in the log from the start
        run_loop(servers.check, CHECK_S, clock, stop)
    finally:
        servers.stop()


__all__ = ["View", "VirtualMeter", "ShellyRpc", "ShellyHttpServer", "ShellyUdpServer", "Sdm630Server", "Servers",
           "serve", "em_status", "emdata_status", "sdm630_registers", "RpcError", "CACHE_S", "NOMINAL_V",
           "NOMINAL_HZ", "MODBUS_CONNECTIONS", "SDM630_REGISTERS", "HTTP_QUEUE", "HTTP_THREADS", "MAX_BODY_BYTES",
           "MAX_DATAGRAM_BYTES", "MAX_REQUEST_BYTES", "UDP_ANSWERS_PER_S", "MAX_WS_MESSAGE_BYTES", "WS_CLIENTS",
           "WS_IDLE_S"]
