"""cheroot, bounded for a 512 MB Pi on a LAN that may hold a hostile device (issue 24).

* A request's line and headers together may have :data:`MAX_HEADER_BYTES` (cheroot's
  ``max_request_header_size``: a longer URL is a 414, longer headers a 413, read 256 bytes at a
  time, so a 16 MB URL never sits in memory); a body :data:`MAX_BODY_BYTES` (cheroot's
  ``max_request_body_size``, 413; the page's largest body is a login form); a Content-Length
  that is not a plain number of bytes is a 400.
* A slow client holds no thread (issue 37): cheroot hands every new connection to a worker
  thread at once, and that thread would wait in ``recv`` for the request (a slowloris sending
  headers a byte a second held all :data:`THREADS` for :data:`READ_DEADLINE_S` each, so 50 of
  them delayed a normal request by 14-16 s). Here the worker takes what the socket already holds
  without waiting (:meth:`Connection.gather`) and, until the request line, headers and (by
  ``Content-Length``, up to :data:`MAX_BODY_BYTES`) the body are all there, gives the connection
  back to cheroot's selector, which wakes a worker only when more bytes arrive. cheroot then
  parses the request from those bytes. A request must be whole within :data:`READ_DEADLINE_S` of
  its first byte (of the accept, for a new connection): a later byte gets a 408 and the
  connection is closed; a connection that stops sending is closed by the selector
  :data:`IDLE_TIMEOUT_S` after its last byte. So a slow client costs a socket and at most
  ``MAX_HEADER_BYTES + MAX_BODY_BYTES`` of memory, and one address may hold at most
  :data:`MAX_CONNECTIONS_PER_ADDRESS` connections (more are closed unanswered; a browser opens
  about 6), and all addresses together :data:`MAX_CONNECTIONS` (below the usual 1024 open files).
* What cheroot reads after that (a chunked body, a body over the bound) still gets only what is
  left of the request's deadline in each read; past it the client gets a 408.
* With HTTPS the TLS handshake is not done by cheroot's accepting thread (there one slow
  handshake held every new connection up to its time-out, so 50 clients stalling their handshakes
  stalled the page for minutes): :func:`ssl_adapter` wraps the socket without the handshake, and
  :meth:`Connection.gather` advances it without waiting, like the request's bytes, within the
  same :data:`READ_DEADLINE_S` from the accept (past it the connection is closed: no 408 can be
  sent before a handshake). The reads are then of the TLS socket (``SSLWantReadError`` is
  "nothing yet").

Why cheroot, kept (issue 37's evaluation): waitress has no TLS; gunicorn's gthread worker also
reads a new connection's request in a pool thread, blocking, and gunicorn with gevent or an ASGI
server (uvicorn, hypercorn) behind a WSGI adapter would bring an event loop, a second process
model and 20-40 MB more to a 512 MB Pi for what some 60 lines do here.
"""
from __future__ import annotations

import _pyio
import re
import socket
import ssl
import threading
import time

from cheroot import server as chs
from cheroot.makefile import MakeFile, StreamReader

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024
READ_DEADLINE_S = 3.0
IDLE_TIMEOUT_S = 10.0
THREADS = 8
MAX_CONNECTIONS_PER_ADDRESS = 64
MAX_CONNECTIONS = 768
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?\n", re.IGNORECASE)


class _DeadlineIO(socket.SocketIO):
    """The socket's reads, each given no more than what is left until ``deadline``
    (``time.monotonic()``; None: the server's per-read timeout alone)."""

    def __init__(self, sock, mode: str, timeout: float) -> None:
        super().__init__(sock, mode)
        self.timeout = timeout
        self.deadline: float | None = None
        self.pending = bytearray()  # gathered by Connection.gather, read before the socket

    def readinto(self, b):
        if self.pending:
            n = min(len(b), len(self.pending))
            b[:n] = self.pending[:n]
            del self.pending[:n]
            return n
        if self.deadline is None:
            return super().readinto(b)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")  # cheroot answers 408 and closes the connection
        self._sock.settimeout(min(left, self.timeout))
        try:
            return super().readinto(b)
        finally:
            self._sock.settimeout(self.timeout)  # writes keep the server's timeout


class _Reader(StreamReader):
    def __init__(self, sock, bufsize: int, timeout: float) -> None:  # noqa: D107 -- StreamReader's, on _DeadlineIO
        _pyio.BufferedReader.__init__(self, _DeadlineIO(sock, "rb", timeout), bufsize)
        self.bytes_read = 0


class _Request(chs.HTTPRequest):
    def read_request_headers(self) -> bool:
        if not super().read_request_headers():
            return False
        cl = self.inheaders.get(b"Content-Length")
        if cl is not None and not cl.strip().isdigit():  # cheroot takes int(): "-5", "+5", " 5_0"
            self.simple_response("400 Bad Request", "Content-Length must be a number of bytes.")
            return False
        return True


class _Open:
    """The connections open now, per client address (for the caps of the module)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_addr: dict[str, int] = {}

    def add(self, addr: str) -> bool:
        """Count one more connection of ``addr``; False (not counted) when over a cap."""
        with self.lock:
            if (self.by_addr.get(addr, 0) >= MAX_CONNECTIONS_PER_ADDRESS
                    or sum(self.by_addr.values()) >= MAX_CONNECTIONS):
                return False
            self.by_addr[addr] = self.by_addr.get(addr, 0) + 1
            return True

    def remove(self, addr: str) -> None:
        with self.lock:
            n = self.by_addr.get(addr, 0) - 1
            if n > 0:
                self.by_addr[addr] = n
            else:
                self.by_addr.pop(addr, None)


class Connection(chs.HTTPConnection):
    """cheroot's connection that gathers a request without a thread waiting for it, with a
    deadline on each request's reading (see the module)."""

    RequestHandlerClass = _Request

    def __init__(self, server, sock, makefile=MakeFile) -> None:
        def files(sock_, mode="r", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
            return _Reader(sock_, bufsize, server.timeout) if "r" in mode else makefile(sock_, mode, bufsize)
        super().__init__(server, sock, files)
        self.started: float | None = time.monotonic()  # the first byte of the request gathered
        self.counted: str | None = None
        self.shaken = not isinstance(sock, ssl.SSLSocket)  # the TLS handshake done (or none)

    def gather(self) -> str:
        """Take what the socket holds now, without waiting: "whole" (the request is gathered, or
        too big to gather: cheroot reads and answers it), "more" (wait for more bytes in the
        selector), "handshake" (the TLS handshake waits for the client) or "closed" (the client
        closed the connection, or its TLS handshake failed)."""
        raw = self.rfile.raw
        sock = self.socket
        sock.settimeout(0.0)
        try:
            if not self.shaken:
                try:
                    sock.do_handshake()
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return "handshake"
                except OSError:  # ssl.SSLError too: plain HTTP on the HTTPS port, a dropped client
                    return "closed"
                self.shaken = True
                self.ssl_env = self.server.ssl_adapter.get_environ(sock)
            while len(raw.pending) <= MAX_HEADER_BYTES + MAX_BODY_BYTES:
                try:
                    chunk = sock.recv(4096)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                except OSError:
                    return "closed"
                if not chunk:
                    return "closed"
                if self.started is None:
                    self.started = time.monotonic()
                raw.pending += chunk
        finally:
            sock.settimeout(self.server.timeout)
        if len(raw.pending) > MAX_HEADER_BYTES + MAX_BODY_BYTES:
            return "whole"  # more than any request cheroot takes: it reads and refuses it (413, 414)
        return "whole" if request_is_whole(raw.pending) else "more"

    def communicate(self) -> bool:
        if self.counted is None:
            addr = str(self.remote_addr)
            if not _OPEN.add(addr):
                return False  # over a cap: closed unanswered
            self.counted = addr
        raw = self.rfile.raw
        if not self.rfile.has_data():  # a pipelined request already read is whole enough
            state = self.gather()
            if state == "closed":
                return False
            if state == "handshake":  # within the request's deadline from the accept, else closed
                return time.monotonic() - self.started <= READ_DEADLINE_S
            if state == "more":
                if self.started is None or time.monotonic() - self.started <= READ_DEADLINE_S:
                    return True  # back to the selector: no thread waits for this client
                raw.deadline = time.monotonic() - 1  # too late: cheroot's own 408, and the close
        if raw.deadline is None:
            raw.deadline = time.monotonic() + READ_DEADLINE_S
        try:
            return super().communicate()
        finally:
            raw.deadline = None
            self.started = None  # the next request's clock starts at its first byte

    def close(self) -> None:
        if self.counted is not None:
            _OPEN.remove(self.counted)
            self.counted = None
        super().close()


_OPEN = _Open()


def request_is_whole(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds a whole HTTP request: its line and headers (to the empty line) and
    the body its ``Content-Length`` says (RFC 9112 sections 2.1 and 6.2); also True when there is
    more than cheroot's bounds (:data:`MAX_HEADER_BYTES`, :data:`MAX_BODY_BYTES`) take, so that
    cheroot answers 413/414, and for a length cheroot itself refuses (chunked, over the bound)."""
    end = _HEAD_END.search(data)
    if end is None or end.start() > MAX_HEADER_BYTES:
        return len(data) > MAX_HEADER_BYTES
    m = _CONTENT_LENGTH.search(data, 0, end.start() + 2)
    if m is None:
        return True
    length = int(m.group(1))
    return length > MAX_BODY_BYTES or len(data) - end.end() >= length


def bound(server) -> None:
    """Give a cheroot ``wsgi.Server`` the limits of this module (before ``prepare``)."""
    server.ConnectionClass = Connection
    server.max_request_header_size = MAX_HEADER_BYTES
    server.max_request_body_size = MAX_BODY_BYTES
    server.timeout = IDLE_TIMEOUT_S


def ssl_adapter(cert: str, key: str):
    """cheroot's builtin TLS adapter, wrapping without the handshake: :meth:`Connection.gather`
    does it without a thread waiting (see the module). The WSGI environment's TLS entries
    (cipher, protocol) are set once it is done."""
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    class Adapter(BuiltinSSLAdapter):
        def wrap(self, sock):
            s = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
            return s, {"wsgi.url_scheme": "https", "HTTPS": "on"}
    return Adapter(cert, key)
