"""The Shelly Pro 3EM's RPC over a WebSocket on ``/rpc`` (:class:`ShellyWebSockets`), the
transport Home Assistant's Shelly integration uses: aioshelly's ``RpcDevice.initialize()`` opens
``ws://HOST:PORT/rpc``, sends request frames ``{"id", "src", "method", "params"}`` and follows the
device on the ``NotifyStatus`` frames it pushes (without them Home Assistant keeps the first value).

* The handshake is answered by the HTTP server (:mod:`.shellyhttp`), which then hands the socket
  here; the frames are wsproto's (a maintained sans-I/O WebSocket library), one thread serves
  every client.
* A client that has sent a request with ``src`` gets ``NotifyStatus`` (``em:0``, ``emdata:0``)
  on every new reading, as a Shelly notifies the peers that identified themselves (Shelly's Gen2
  API, "Notifications").
* No fresh reading (or the latch): every WebSocket is closed (1011) and a new handshake is
  refused with 503, so Home Assistant shows the device unavailable, as on a meter gone.
* Bounds: at most :data:`WS_CLIENTS` clients (a handshake past it gets 503), a message of at
  most :data:`MAX_WS_MESSAGE_BYTES` (past it: closed, 1009), a client silent for
  :data:`WS_IDLE_S` of the injected clock (aiohttp pings every 55 s) is closed, and an answer
  that cannot be sent within :data:`WS_SEND_S` closes its client.
"""
from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime

from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, TextMessage
from wsproto.utilities import ProtocolError

from gestor.runtime.vmeter.base import json_bytes
from gestor.runtime.vmeter.shelly import ShellyRpc

log = logging.getLogger("gestor.virtualmeter")

WS_CLIENTS = 8
MAX_WS_MESSAGE_BYTES = 4 * 1024
WS_IDLE_S = 150.0
WS_SEND_S = 2.0
TICK_S = 0.1          # how often (real time) the server looks for a new reading to push


@dataclass
class _Client:
    sock: socket.socket
    conn: Connection
    last_s: float                      # the injected clock's monotonic seconds of its last frame
    src: str | None = None             # set by its first request with "src": then it is notified
    message: list[str] = field(default_factory=list)
    size: int = 0


class ShellyWebSockets:
    """Every WebSocket client of ``/rpc``, served by one thread."""

    def __init__(self, rpc: ShellyRpc) -> None:
        self.rpc = rpc
        self.clock = rpc.meter.clock
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._adopted: list[socket.socket] = []
        self._clients: dict[socket.socket, _Client] = {}
        self._stop = threading.Event()
        self._pushed: datetime | None = None
        self.thread = threading.Thread(target=self._run, name="vm-shelly-ws", daemon=True)

    def start(self) -> "ShellyWebSockets":
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive()

    def count(self) -> int:
        """The clients connected (and those handed over, not yet served)."""
        with self._lock:
            return len(self._clients) + len(self._adopted)

    def has_room(self) -> bool:
        return self.count() < WS_CLIENTS

    def adopt(self, sock: socket.socket) -> None:
        """Serve ``sock``, a connection whose handshake was answered (101)."""
        with self._lock:
            if len(self._clients) + len(self._adopted) >= WS_CLIENTS:
                sock.close()
                return
            self._adopted.append(sock)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                new, self._adopted = self._adopted, []
                for sock in new:
                    sock.settimeout(WS_SEND_S)
                    c = _Client(sock, Connection(ConnectionType.SERVER), self.clock.monotonic())
                    self._clients[sock] = c
                    self._sel.register(sock, selectors.EVENT_READ, c)
            for key, _ in self._sel.select(TICK_S):
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                self._read(key.data)
            try:
                self._tick()
            except Exception:  # noqa: BLE001 -- one bad push never ends the server
                log.exception("shelly websocket: cannot push")
        for c in list(self._clients.values()):
            self._close(c, 1001, "going away")

    def _read(self, c: _Client) -> None:
        try:
            data = c.sock.recv(16384)
        except OSError:
            data = b""
        if not data:
            return self._drop(c)
        c.last_s = self.clock.monotonic()
        try:
            c.conn.receive_data(data)
            for event in c.conn.events():
                if isinstance(event, Message):
                    if not self._message(c, event):
                        return
                elif isinstance(event, Ping):
                    self._send(c, c.conn.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self._send(c, c.conn.send(event.response()))
                    return self._drop(c)
        except ProtocolError:
            return self._drop(c)

    def _message(self, c: _Client, event: Message) -> bool:
        """One piece of a message; the request answered when it is whole. False: closed."""
        piece = event.data if isinstance(event, TextMessage) else bytes(event.data).decode("utf-8", "replace")
        c.size += len(piece)
        if c.size > MAX_WS_MESSAGE_BYTES:
            self._close(c, 1009, "message too big")
            return False
        c.message.append(piece)
        if not event.message_finished:
            return True
        text, c.message, c.size = "".join(c.message), [], 0
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):
            request = None
        if isinstance(request, dict) and isinstance(request.get("src"), str):
            c.src = request["src"][:64]
        answer = self.rpc.frame(request)
        return self._send(c, c.conn.send(TextMessage(json_bytes(answer).decode())))

    def _tick(self) -> None:
        """Close every client when there is no fresh reading; close idle ones; push a new reading."""
        if not self._clients:
            return
        v = self.rpc.meter.view()
        if v.stale is not None:
            for c in list(self._clients.values()):
                self._close(c, 1011, "no meter reading")
            self._pushed = None
            return
        now = self.clock.monotonic()
        for c in list(self._clients.values()):
            if now - c.last_s > WS_IDLE_S:
                self._close(c, 1000, "idle")
        if v.reading_at is None or v.reading_at == self._pushed:
            return
        self._pushed = v.reading_at
        for c in list(self._clients.values()):
            if c.src is not None:
                frame = self.rpc.notify_status(v, c.src)
                self._send(c, c.conn.send(TextMessage(json_bytes(frame).decode())))

    def _send(self, c: _Client, data: bytes) -> bool:
        try:
            c.sock.sendall(data)
            return True
        except OSError:
            self._drop(c)
            return False

    def _close(self, c: _Client, code: int, reason: str) -> None:
        try:
            c.sock.sendall(c.conn.send(CloseConnection(code=code, reason=reason)))
        except (OSError, ProtocolError):
            pass
        self._drop(c)

    def _drop(self, c: _Client) -> None:
        if self._clients.pop(c.sock, None) is None:
            return
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self.thread.join(5)
        with self._lock:
            for sock in self._adopted:
                sock.close()
            self._adopted = []
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
