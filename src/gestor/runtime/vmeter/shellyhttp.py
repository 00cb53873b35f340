"""The Shelly Pro 3EM's RPC over HTTP (:class:`ShellyHttpServer`: ``GET /shelly``,
``GET /rpc/<Method>?id=0``, JSON-RPC over ``POST /rpc``, and the WebSocket handshake on
``GET /rpc`` handed to :class:`~gestor.runtime.vmeter.websocket.ShellyWebSockets`) and over UDP
(:class:`ShellyUdpServer`). Bounds: see :mod:`gestor.runtime.virtualmeter`."""
from __future__ import annotations

import http.server
import io
import json
import logging
import math
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wsproto.utilities import generate_accept_token

from gestor.runtime.daemon import GestorError
from gestor.runtime.vmeter.base import json_bytes, listen_failure
from gestor.runtime.vmeter.shelly import INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, RpcError, ShellyRpc
from gestor.runtime.vmeter.websocket import ShellyWebSockets
from gestor.settings import listen_address

log = logging.getLogger("gestor.virtualmeter")

MAX_REQUEST_BYTES = 8 * 1024
MAX_BODY_BYTES = 4 * 1024
READ_DEADLINE_S = 3.0
LINGER_S, LINGER_BYTES = 1.0, 64 * 1024  # after a refusal (413): what is read and dropped before closing
HTTP_THREADS = 4
HTTP_QUEUE = 16
MAX_DATAGRAM_BYTES = 1024
UDP_ANSWERS_PER_S = 10
UDP_SENDERS = 64


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
    ws: ShellyWebSockets  # idem

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
        data = json_bytes(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 -- http.server's name
        url = urlsplit(self.path)
        if url.path == "/rpc" and self.command == "GET" and "websocket" in self.headers.get("Upgrade", "").lower():
            return self._websocket()
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

    def _websocket(self) -> None:
        """The WebSocket handshake (RFC 6455, version 13), then the connection is the hub's:
        refused with 503 without a fresh reading or with :data:`~.websocket.WS_CLIENTS` clients."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        if self.headers.get("Sec-WebSocket-Version", "") != "13" or not 16 <= len(key) <= 64:
            self.send_response(426 if key else 400)
            self.send_header("Sec-WebSocket-Version", "13")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        v = self.rpc.meter.view()
        if v.stale is not None:
            return self._send(503, {"code": UNAVAILABLE, "message": f"no meter reading: {v.stale}"})
        if not self.ws.has_room():
            return self._send(503, {"code": UNAVAILABLE, "message": "too many WebSocket clients"})
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode())
        self.end_headers()
        self.wfile.flush()
        self.server.detach(self.request)  # type: ignore[attr-defined] -- _PooledHTTPServer's
        self.ws.adopt(self.request)

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
        self._detached_lock = threading.Lock()
        self.detached: set[Any] = set()  # connections handed to the WebSocket hub
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: its getfqdn() may wait on DNS
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def detach(self, request: Any) -> None:
        """``request`` is not closed when its handler returns (a WebSocket, the hub's now)."""
        with self._detached_lock:
            self.detached.add(request)

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
            with self._detached_lock:
                handed = request in self.detached
                self.detached.discard(request)
            if not handed:  # a WebSocket is the hub's now: not closed here
                self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)


class ShellyHttpServer:
    """The Shelly Pro 3EM's RPC over HTTP on ``listen`` (HOST:PORT), in a thread."""

    def __init__(self, rpc: ShellyRpc, listen: str) -> None:
        self.listen = listen
        self.ws = ShellyWebSockets(rpc)
        handler = type("Handler", (_Handler,), {"rpc": rpc, "ws": self.ws})
        try:
            self.httpd = _PooledHTTPServer(listen_address(listen), handler)
        except OSError as e:
            raise GestorError(f"cannot listen on {listen} (TCP): {listen_failure(e)}") from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="vm-shelly-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]  # type: ignore[return-value]

    def start(self) -> "ShellyHttpServer":
        self.ws.start()
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive() and self.ws.alive()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        self.ws.stop()


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
            raise GestorError(f"cannot listen on {host}:{port} (UDP): {listen_failure(e)}") from None
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
                self.sock.sendto(json_bytes(frame), addr)
            except OSError as e:
                log.debug("shelly udp: cannot answer %s: %s", addr, e)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()

