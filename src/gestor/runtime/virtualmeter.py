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
* Shelly UDP: no answer, as from a meter that is off. An error datagram is not understood by
  every battery firmware, and one that read the missing power as 0 would hold on a stale zero.
* SDM630 Modbus: exception response 0x04 (server device failure) to every read. No register
  value could do: a value of import makes a charger or diverter back off but a battery discharge
  more; a value of export the other way round. An exception is a failed read for every kind.

Signs: gestor's ``net_w`` is export-positive; both emulated meters are import-positive (Shelly's
``act_power`` > 0 and Eastron's power > 0 with the meter wired as its datasheet shows are import,
as ``drivers.meters.shelly_em`` and ``drivers.meters.eastron`` read them): the power is
converted once, in :meth:`View.import_w`. Phases are not measured by gestor: the power is shown
split equally over the three phases (their signed sum is the total, netted as the utility nets
them), at a nominal 230 V and 50 Hz, power factor 1 and current ``|P| / 230 V``. The energy
counters are the real meter's when its readings carry them, else 0.

The servers (each off when its setting is null; bound to 127.0.0.1 unless set otherwise):

* :class:`ShellyHttpServer`: the Shelly Pro 3EM's Gen2 RPC over HTTP (``GET /shelly``,
  ``GET /rpc/<Method>?id=0``, JSON-RPC over ``POST /rpc``) for ``Shelly.GetDeviceInfo``,
  ``Shelly.GetStatus``, ``EM.GetStatus`` and ``EMData.GetStatus``. ``http.server`` with a pool of
  :data:`HTTP_THREADS` threads (and :data:`HTTP_QUEUE` connections waiting for one; more are
  closed at once), one request per connection, a request (line, headers and body) of at most
  :data:`MAX_REQUEST_BYTES` (413 past it; a body of at most :data:`MAX_BODY_BYTES`) that must
  arrive whole within :data:`READ_DEADLINE_S`.
* :class:`ShellyUdpServer`: the same RPC as JSON datagrams (``{"id":1,"method":"EM.GetStatus",
  "params":{"id":0}}``) on each of ``shelly_udp_ports``, answered to the sender; a datagram over
  :data:`MAX_DATAGRAM_BYTES` is dropped, and at most :data:`UDP_ANSWERS_PER_S` a second are
  answered to each sender (the rest dropped: an answer is larger than its question).
* :class:`Sdm630Server`: the Eastron SDM630's input registers (function 04; float32, high word
  first) over Modbus TCP with pymodbus's server, at unit ``unit_id``; other functions are
  refused (illegal function), at most :data:`MODBUS_CONNECTIONS` connections are kept (a new one
  closes the least recently active).
"""
from __future__ import annotations

import asyncio
import hashlib
import http.server
import io
import json
import logging
import math
import re
import signal
import socket
import socketserver
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Callable
from urllib.parse import parse_qs, urlsplit

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from gestor.clock import Clock
from gestor.core.balance import period_bounds
from gestor.core.virtualmeter import balance_since, virtual_net_w
from gestor.runtime.daemon import GestorError, run_loop
from gestor.runtime.livestate import is_latched, pid_alive, read_live, read_managing, reading_age
from gestor.runtime.statefiles import Number
from gestor.settings import Settings, listen_address

log = logging.getLogger("gestor.virtualmeter")

CACHE_S = 0.25            # a view is computed at most this often (a flood of requests reads the files once)
NOMINAL_V = 230.0
NOMINAL_HZ = 50.0
MAX_REQUEST_BYTES = 8 * 1024
MAX_BODY_BYTES = 4 * 1024
READ_DEADLINE_S = 3.0
LINGER_S, LINGER_BYTES = 1.0, 64 * 1024  # after a refusal (413): what is read and dropped before closing
HTTP_THREADS = 4
HTTP_QUEUE = 16
MAX_DATAGRAM_BYTES = 1024
UDP_ANSWERS_PER_S = 10
UDP_SENDERS = 64
MODBUS_CONNECTIONS = 8
SDM630_REGISTERS = 0x0200  # input registers 0x0000-0x01FF answer (those not served read 0, as on the meter)
# The Pro 3EM's model and application names; a firmware id in the firmware's form (build date /
# version - commit), invented: Home Assistant reads the date to tell an old firmware.
SHELLY_MODEL, SHELLY_APP, SHELLY_VER = "SPEM-003CEBEU", "Pro3EM", "1.4.4"
SHELLY_FW_ID = "20241011-114455/1.4.4-gestor0"

# Shelly Gen2 RPC error codes (gRPC-style: -103 invalid argument, -105 not found, -114 unavailable)
# and the RPC layer's 404 "No handler for <method>"; over a GET the HTTP status says the same
# (400, 404, 503). Taken from Shelly's API documentation, not checked against a device.
INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, NO_HANDLER = -103, -105, -114, 404


# --- what the meter shows -----------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """What the virtual meter shows now. ``stale`` is None when it shows a reading, else why it
    shows none (then the power fields are 0 and must not be served).

    Attributes:
        at: when it was computed (the injected clock).
        stale: why there is no meter to show, or None.
        net_w: the real net power, W, export-positive.
        virtual_net_w: what is shown, W, export-positive.
        balance_wh: the period's balance it was corrected by, Wh (None: not corrected).
        remaining_s: the period's time left, s.
        uncorrected: why it was not corrected (None when it was).
        import_wh_total, export_wh_total: the real meter's energy counters, Wh, if it has them.
        reading_age_s: the age of the reading shown, s.
    """

    at: datetime
    stale: str | None
    net_w: float = 0.0
    virtual_net_w: float = 0.0
    balance_wh: float | None = None
    remaining_s: float = 0.0
    uncorrected: str | None = None
    import_wh_total: float | None = None
    export_wh_total: float | None = None
    reading_age_s: float | None = None

    @property
    def import_w(self) -> float:
        """What is shown, import-positive (Shelly's ``act_power``, Eastron's power): the one
        conversion from gestor's export-positive ``net_w``."""
        return -self.virtual_net_w


class _Published(BaseModel):
    """The fields of managing's published state (``run_dir/managing.json``) the meter uses."""
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    at: AwareDatetime
    pid: StrictInt | None = None
    stopped: StrictBool = False
    period_start: AwareDatetime
    period_end: AwareDatetime
    balance_wh: Annotated[Number, Field(ge=-1e9, le=1e9)]
    reading_at: AwareDatetime | None = None


class VirtualMeter:
    """The meter's reading, from the files monitoring and managing publish, on ``clock``."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.s = settings
        self.vm = settings.virtual_meter
        self.clock = clock
        self.stale_after_s = self.vm.stale_s(settings.monitoring.interval_s)
        self.managing_fresh_s = 3.0 * settings.managing.interval_s
        self._lock = threading.Lock()
        self._cached: tuple[float, View] | None = None

    def view(self) -> View:
        """The meter now (computed at most every :data:`CACHE_S` of the clock's monotonic time).
        Never raises: a file that cannot be read is a missing one."""
        with self._lock:
            mono = self.clock.monotonic()
            if self._cached is not None and 0 <= mono - self._cached[0] < CACHE_S:
                return self._cached[1]
            try:
                v = self._compute()
            except Exception as e:  # noqa: BLE001 -- whatever it is, the devices get no meter
                log.exception("virtual meter: cannot compute the reading")
                v = View(self.clock.now(), stale=f"internal error ({type(e).__name__})")
            self._cached = (mono, v)
            return v

    def _compute(self) -> View:
        now = self.clock.now()
        if is_latched(self.s.paths.state_dir):
            return View(now, stale="the stop latch is set (stop-loads --release lifts it)")
        live = read_live(self.s.paths.run_dir)
        age = reading_age(now, live, self.clock.monotonic)
        if age is None:
            return View(now, stale="monitoring has published no reading")
        if age < 0 or age > self.stale_after_s:
            return View(now, stale=f"the newest reading is {age:.0f} s old (stale after {self.stale_after_s:g} s)",
                        reading_age_s=age)
        r = live[-1][0]
        start, end = period_bounds(now, self.s.billing.period_s, self.s.tz)
        remaining = (end - now).total_seconds()
        balance, why = self._balance(now, live, start, end)
        if balance is None:
            shown = min(max(r.net_w, -self.vm.max_power_w), self.vm.max_power_w)
        else:
            shown = virtual_net_w(r.net_w, balance, remaining, self.vm.target_wh, self.vm.min_remaining_s,
                                  self.vm.max_power_w)
        return View(now, None, r.net_w, shown, balance, remaining, why, r.import_wh_total, r.export_wh_total, age)

    def _balance(self, now: datetime, live: list, start: datetime, end: datetime) -> tuple[float | None, str | None]:
        """(the period's balance now, None) or (None, why it is not known)."""
        raw = read_managing(self.s.paths.run_dir)
        if raw is None:
            return None, "managing has published no state"
        try:
            mg = _Published.model_validate(raw)
        except ValidationError:
            return None, "managing's published state lacks the balance"
        if mg.stopped or not pid_alive(mg.pid):
            return None, "managing is not running"
        age = (now - mg.at).total_seconds()
        if not 0 <= age <= self.managing_fresh_s:
            return None, f"managing's state is {age:.0f} s old"
        if mg.period_start == start and mg.period_end == end:
            base_wh = float(mg.balance_wh)
            from_s = max(mg.reading_at, start).timestamp() if mg.reading_at is not None else start.timestamp()
        elif mg.period_end == start:  # the period has just begun: managing has not cycled into it yet
            base_wh, from_s = 0.0, start.timestamp()
        else:
            return None, "managing's published period is not this one"
        samples = [(r.at.timestamp(), r.net_w) for r, _ in live]
        return balance_since(base_wh, from_s, samples, min(now, end).timestamp(), self.s.billing.max_gap_s), None


# --- Shelly Pro 3EM: the answers ----------------------------------------------------------------
class RpcError(Exception):
    """A Shelly RPC error: ``code`` (Shelly's), ``http`` (the status of a GET), ``message``."""

    def __init__(self, code: int, http: int, message: str) -> None:
        super().__init__(message)
        self.code, self.http, self.message = code, http, message


def device_identity(site: str) -> tuple[str, str]:
    """(MAC, device id) of the emulated Shelly: a locally administered MAC derived from the host
    and the site, the same at every start (a battery remembers the meter it paired with)."""
    digest = hashlib.sha256(f"gestor-virtual-meter/{socket.gethostname()}/{site}".encode()).digest()
    mac = "02" + digest[:5].hex().upper()
    return mac, f"shellypro3em-{mac.lower()}"


def _p(w: float) -> float:
    return float(round(w, 1))


def em_status(v: View) -> dict[str, Any]:
    """``EM.GetStatus`` (Shelly Gen2 API, the EM component's status) of a fresh view."""
    phase = v.import_w / 3.0
    out: dict[str, Any] = {"id": 0}
    for p in "abc":
        out.update({f"{p}_current": round(abs(phase) / NOMINAL_V, 3), f"{p}_voltage": NOMINAL_V,
                    f"{p}_act_power": _p(phase), f"{p}_aprt_power": _p(abs(phase)),
                    f"{p}_pf": 1.0 if phase else 0.0, f"{p}_freq": NOMINAL_HZ})
    out.update({"n_current": None, "total_current": round(3 * abs(phase) / NOMINAL_V, 3),
                "total_act_power": _p(v.import_w), "total_aprt_power": _p(abs(v.import_w)),
                "user_calibrated_phase": []})
    return out


def emdata_status(v: View) -> dict[str, Any]:
    """``EMData.GetStatus``: the real meter's counters (Wh), a third on each phase; 0 without."""
    imp, exp = v.import_wh_total or 0.0, v.export_wh_total or 0.0
    out: dict[str, Any] = {"id": 0}
    for p in "abc":
        out.update({f"{p}_total_act_energy": round(imp / 3.0, 2), f"{p}_total_act_ret_energy": round(exp / 3.0, 2)})
    out.update({"total_act": round(imp, 2), "total_act_ret": round(exp, 2)})
    return out


class ShellyRpc:
    """The Shelly Pro 3EM's RPC methods, whatever the transport."""

    def __init__(self, meter: VirtualMeter) -> None:
        self.meter = meter
        self.mac, self.device_id = device_identity(meter.s.site)
        self.started = meter.clock.monotonic()

    def device_info(self) -> dict[str, Any]:
        """``Shelly.GetDeviceInfo`` (and ``GET /shelly``)."""
        return {"name": "gestor virtual meter", "id": self.device_id, "mac": self.mac, "slot": 0,
                "model": SHELLY_MODEL, "gen": 2, "fw_id": SHELLY_FW_ID, "ver": SHELLY_VER, "app": SHELLY_APP,
                "auth_en": False, "auth_domain": None, "profile": "triphase"}

    def call(self, method: Any, params: Any) -> dict[str, Any]:
        """The result of ``method``. Raises RpcError (no such method, a bad id, no fresh reading)."""
        if not isinstance(method, str):
            raise RpcError(INVALID_ARGUMENT, 400, "method must be a string")
        if method == "Shelly.GetDeviceInfo":
            return self.device_info()
        handlers: dict[str, Callable[[View], dict[str, Any]]] = {
            "EM.GetStatus": em_status, "EMData.GetStatus": emdata_status, "Shelly.GetStatus": self._status}
        if method not in handlers:
            raise RpcError(NO_HANDLER, 404, f"No handler for {method[:64]}")
        if method != "Shelly.GetStatus":
            cid = (params or {}).get("id", 0) if isinstance(params, dict) or params is None else None
            if isinstance(cid, str) and cid.strip().isdigit():
                cid = int(cid)
            if not isinstance(cid, int) or isinstance(cid, bool):
                raise RpcError(INVALID_ARGUMENT, 400, "Argument 'id' must be a number")
            if cid != 0:
                raise RpcError(NOT_FOUND, 404, f"Argument 'id', value {cid} not found!")
        v = self.meter.view()
        if v.stale is not None:
            raise RpcError(UNAVAILABLE, 503, f"no meter reading: {v.stale}")
        return handlers[method](v)

    def _status(self, v: View) -> dict[str, Any]:
        return {"sys": {"mac": self.mac, "restart_required": False, "uptime": int(self.meter.clock.monotonic() - self.started)},
                "em:0": em_status(v), "emdata:0": emdata_status(v)}

    def frame(self, request: Any, silent_when_stale: bool = False) -> dict[str, Any] | None:
        """The JSON-RPC answer frame to a request frame ``{"id", "src", "method", "params"}``: its
        ``result``, or its ``error``. Without a fresh reading: the error frame, or None with
        ``silent_when_stale`` (the UDP transport then answers nothing)."""
        if not isinstance(request, dict):
            return {"id": None, "src": self.device_id, "error": {"code": INVALID_ARGUMENT, "message": "not a request"}}
        rid, src = request.get("id"), request.get("src")
        rid = rid[:64] if isinstance(rid, str) else rid
        head = {"id": rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None,
                "src": self.device_id, "dst": src[:64] if isinstance(src, str) else "unknown"}
        try:
            return {**head, "result": self.call(request.get("method"), request.get("params"))}
        except RpcError as e:
            if e.code == UNAVAILABLE and silent_when_stale:
                return None
            return {**head, "error": {"code": e.code, "message": e.message}}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- Shelly over HTTP ---------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


class _BoundedIO(socket.SocketIO):
    """A connection's reads, bounded in bytes (:data:`MAX_REQUEST_BYTES`) and in time (all of them
    within :data:`READ_DEADLINE_S` of the first)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, "rb")
        self.conn = sock
        self.deadline = time.monotonic() + READ_DEADLINE_S
        self.budget = MAX_REQUEST_BYTES

    def readinto(self, b: Any) -> int | None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        if self.budget <= 0:
            raise _TooLarge()
        self.conn.settimeout(left)
        try:
            n = super().readinto(memoryview(b)[: self.budget])
        finally:
            self.conn.settimeout(READ_DEADLINE_S)  # the answer's writes
        self.budget -= n or 0
        return n


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "gestor-virtual-meter"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: a worker is never held by an idle client
    rpc: ShellyRpc  # set on the subclass by ShellyHttpServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_BoundedIO(self.connection), 2048)

    def handle(self) -> None:
        try:
            self.handle_one_request()
        except _TooLarge:
            self._raw(413, "Request Entity Too Large")
        except (TimeoutError, OSError):
            pass  # too slow, or gone: the connection is closed

    def _raw(self, code: int, reason: str) -> None:
        """A bare answer, then a lingering close: what the client still sends is read and dropped
        (at most :data:`LINGER_BYTES` for :data:`LINGER_S`) so that closing with unread data does
        not reset the connection before the client has read the answer."""
        try:
            self.wfile.write(f"HTTP/1.0 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            self.connection.shutdown(socket.SHUT_WR)
            end, left = time.monotonic() + LINGER_S, LINGER_BYTES
            while left > 0 and (wait := end - time.monotonic()) > 0:
                self.connection.settimeout(wait)
                chunk = self.connection.recv(min(left, 16384))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- http.server's signature
        log.debug("shelly http %s: " + format, self.client_address[0], *args)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = _json(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 -- http.server's name
        url = urlsplit(self.path)
        if url.path == "/shelly":
            return self._send(200, self.rpc.device_info())
        if not url.path.startswith("/rpc/"):
            return self._send(404, {"code": NOT_FOUND, "message": "not found"})
        try:
            q = {k: v[-1] for k, v in parse_qs(url.query, max_num_fields=8).items()}
        except ValueError:
            return self._send(400, {"code": INVALID_ARGUMENT, "message": "too many arguments"})
        try:
            return self._send(200, self.rpc.call(url.path[len("/rpc/"):], q))
        except RpcError as e:
            return self._send(e.http, {"code": e.code, "message": e.message})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/rpc":
            return self._send(404, {"code": NOT_FOUND, "message": "not found"})
        cl = self.headers.get("Content-Length", "")
        if not (cl.isascii() and cl.strip().isdigit()):  # int() would take "+5", " 5_0", "٥"
            return self._send(411 if not cl else 400, {"code": INVALID_ARGUMENT, "message": "Content-Length needed"})
        if int(cl) > MAX_BODY_BYTES:
            return self._raw(413, "Request Entity Too Large")
        try:
            request = json.loads(self.rfile.read(int(cl)))
        except (ValueError, RecursionError):
            return self._send(400, {"code": INVALID_ARGUMENT, "message": "not JSON"})
        return self._send(200, self.rpc.frame(request) or {})


class _PooledHTTPServer(http.server.HTTPServer):
    """``http.server`` on a fixed pool of threads; a connection that finds the pool and its queue
    full is closed at once."""

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._pool = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="vm-http")
        self._slots = threading.BoundedSemaphore(HTTP_THREADS + HTTP_QUEUE)
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: its getfqdn() may wait on DNS
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 -- one bad request never ends the server
            log.debug("shelly http %s: request failed", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)


class ShellyHttpServer:
    """The Shelly Pro 3EM's RPC over HTTP on ``listen`` (HOST:PORT), in a thread."""

    def __init__(self, rpc: ShellyRpc, listen: str) -> None:
        self.listen = listen
        handler = type("Handler", (_Handler,), {"rpc": rpc})
        try:
            self.httpd = _PooledHTTPServer(listen_address(listen), handler)
        except OSError as e:
            raise GestorError(f"cannot listen on {listen} (TCP): {_why(e)}") from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="vm-shelly-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]  # type: ignore[return-value]

    def start(self) -> "ShellyHttpServer":
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# --- Shelly over UDP ----------------------------------------------------------------------------
class ShellyUdpServer:
    """The Shelly RPC as JSON datagrams on ``host:port``, answered to the sender (a broadcast
    question too, when bound to 0.0.0.0); silent without a fresh reading."""

    def __init__(self, rpc: ShellyRpc, host: str, port: int) -> None:
        self.rpc = rpc
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise GestorError(f"cannot listen on {host}:{port} (UDP): {_why(e)}") from None
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._second = -1
        self._counts: dict[str, int] = {}  # answers to each sender in this second
        self.thread = threading.Thread(target=self._run, name=f"vm-shelly-udp-{port}", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    def start(self) -> "ShellyUdpServer":
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _allowed(self, who: str) -> bool:
        """At most :data:`UDP_ANSWERS_PER_S` answers a second to each sender (and senders are
        counted up to :data:`UDP_SENDERS` a second: a flood of forged addresses is dropped)."""
        sec = math.floor(self.rpc.meter.clock.monotonic())  # the injected clock's seconds
        if sec != self._second:
            self._second, self._counts = sec, {}
        n = self._counts.get(who, 0)
        if n >= UDP_ANSWERS_PER_S or (n == 0 and len(self._counts) >= UDP_SENDERS):
            return False
        self._counts[who] = n + 1
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM_BYTES + 1)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if len(data) > MAX_DATAGRAM_BYTES:
                continue
            try:
                request = json.loads(data)
            except (ValueError, RecursionError):
                continue
            frame = self.rpc.frame(request, silent_when_stale=True)
            if frame is None or not self._allowed(addr[0]):
                continue
            try:
                self.sock.sendto(_json(frame), addr)
            except OSError as e:
                log.debug("shelly udp: cannot answer %s: %s", addr, e)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


# --- Eastron SDM630 over Modbus TCP ---------------------------------------------------------------
def sdm630_registers(v: View) -> dict[int, float]:
    """The SDM630's input registers (Eastron "SDM630 Modbus Protocol" v1.5; address: value) for
    a fresh view. Power import-positive, as ``drivers.meters.eastron`` reads it (its map)."""
    p = v.import_w / 3.0
    amps = abs(p) / NOMINAL_V
    pf = 1.0 if p else 0.0
    regs = {0x0000: NOMINAL_V, 0x0002: NOMINAL_V, 0x0004: NOMINAL_V,   # phase voltages, V
            0x0006: amps, 0x0008: amps, 0x000A: amps,                  # phase currents, A
            0x000C: p, 0x000E: p, 0x0010: p,                           # phase active power, W
            0x0012: abs(p), 0x0014: abs(p), 0x0016: abs(p),            # phase apparent power, VA
            0x0018: 0.0, 0x001A: 0.0, 0x001C: 0.0,                     # phase reactive power, VAr
            0x001E: pf, 0x0020: pf, 0x0022: pf,                        # phase power factor
            0x002A: NOMINAL_V, 0x002E: amps, 0x0030: 3 * amps,         # average volts, average / sum of currents
            0x0034: v.import_w, 0x0038: abs(v.import_w), 0x003C: 0.0,  # total system power W, VA, VAr
            0x003E: pf, 0x0046: NOMINAL_HZ,                            # total power factor, frequency Hz
            0x0048: (v.import_wh_total or 0.0) / 1000.0,               # import active energy, kWh
            0x004A: (v.export_wh_total or 0.0) / 1000.0}               # export active energy, kWh
    return regs


def _float_regs(x: float) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return hi, lo


class Sdm630Server:
    """An Eastron SDM630 at ``unit_id`` on ``listen`` (HOST:PORT), Modbus TCP, pymodbus's server
    in its own thread and event loop."""

    def __init__(self, meter: VirtualMeter, listen: str, unit_id: int) -> None:
        self.meter, self.listen, self.unit_id = meter, listen, unit_id
        self.host, self.port = listen_address(listen)
        _probe_tcp(self.host, self.port, listen)  # a one-line error now, not a pymodbus warning later
        logging.getLogger("pymodbus").setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="vm-sdm630", daemon=True)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: Any) -> Any:
        if function_code != 4 or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # input registers only: the SDM630's settings are not emulated
        v = self.meter.view()
        if v.stale is not None:
            return ExcCodes.DEVICE_FAILURE
        for addr, value in sdm630_registers(v).items():
            registers[addr - start_address], registers[addr - start_address + 1] = _float_regs(value)
        return None

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

        device = SimDevice(self.unit_id, simdata=[SimData(0, count=SDM630_REGISTERS, values=0,
                                                          datatype=DataType.REGISTERS)], action=self._action)
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def run() -> None:
            self._server = Server(device, address=(self.host, self.port))
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


def _why(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return f"{e.strerror or e} (a port below 1024 needs CAP_NET_BIND_SERVICE: the systemd unit has it)"
    return e.strerror or str(e)


def _probe_tcp(host: str, port: int, listen: str) -> None:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError as e:
        raise GestorError(f"cannot listen on {listen} (TCP): {_why(e)}") from None
    finally:
        s.close()


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
        ([f"Shelly Pro 3EM on http://{vm.shelly_listen}"] if vm.shelly_listen else [])
        + [f"Shelly UDP RPC on {listen_address(vm.shelly_listen)[0]}:{p}" for p in vm.shelly_udp_ports if vm.shelly_listen]
        + ([f"Eastron SDM630 on modbus tcp {vm.sdm630_listen} unit {vm.unit_id}"] if vm.sdm630_listen else [])))
    try:
        servers.check()  # what the devices are shown, in the log from the start
        run_loop(servers.check, CHECK_S, clock, stop)
    finally:
        servers.stop()


__all__ = ["View", "VirtualMeter", "ShellyRpc", "ShellyHttpServer", "ShellyUdpServer", "Sdm630Server", "Servers",
           "serve", "em_status", "emdata_status", "sdm630_registers", "RpcError"]
