"""cheroot, bounded for a 512 MB Pi on a LAN that may hold a hostile device (issue 24).

* A request's line and headers together may have :data:`MAX_HEADER_BYTES` (cheroot's
  ``max_request_header_size``: a longer URL is a 414, longer headers a 413, read 256 bytes at a
  time, so a 16 MB URL never sits in memory); a body :data:`MAX_BODY_BYTES` (cheroot's
  ``max_request_body_size``, 413; the page's largest body is a login form); a Content-Length
  that is not a plain number of bytes is a 400.
* A request must arrive whole (line, headers and body) within :data:`READ_DEADLINE_S` of the
  moment a worker thread starts reading it: cheroot's ``timeout`` bounds each read of the socket,
  so a client sending a byte a second would otherwise hold a worker for ever, and
  :data:`THREADS` such clients would hold them all. Here each read gets only what is left of the
  request's deadline; past it the client gets a 408 and the connection is closed. An idle
  keep-alive connection waits in cheroot's selector (no thread) and is closed after
  :data:`IDLE_TIMEOUT_S`.
* With HTTPS the TLS handshake (done by cheroot's accepting thread) has
  :data:`HANDSHAKE_TIMEOUT_S` in all (Python's ``ssl`` gives the whole handshake one deadline).
"""
from __future__ import annotations

import _pyio
import socket
import time

from cheroot import server as chs
from cheroot.makefile import MakeFile, StreamReader

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024
READ_DEADLINE_S = 3.0
IDLE_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 3.0
THREADS = 8


class _DeadlineIO(socket.SocketIO):
    """The socket's reads, each given no more than what is left until ``deadline``
    (``time.monotonic()``; None: the server's per-read timeout alone)."""

    def __init__(self, sock, mode: str, timeout: float) -> None:
        super().__init__(sock, mode)
        self.timeout = timeout
        self.deadline: float | None = None

    def readinto(self, b):
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


class Connection(chs.HTTPConnection):
    """cheroot's connection with a deadline on each request's reading (see the module)."""

    RequestHandlerClass = _Request

    def __init__(self, server, sock, makefile=MakeFile) -> None:
        def files(sock_, mode="r", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
            return _Reader(sock_, bufsize, server.timeout) if "r" in mode else makefile(sock_, mode, bufsize)
        super().__init__(server, sock, files)

    def communicate(self) -> bool:
        self.rfile.raw.deadline = time.monotonic() + READ_DEADLINE_S
        try:
            return super().communicate()
        finally:
            self.rfile.raw.deadline = None


def bound(server) -> None:
    """Give a cheroot ``wsgi.Server`` the limits of this module (before ``prepare``)."""
    server.ConnectionClass = Connection
    server.max_request_header_size = MAX_HEADER_BYTES
    server.max_request_body_size = MAX_BODY_BYTES
    server.timeout = IDLE_TIMEOUT_S


def ssl_adapter(cert: str, key: str):
    """cheroot's builtin TLS adapter with the handshake bounded by :data:`HANDSHAKE_TIMEOUT_S`."""
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    class Adapter(BuiltinSSLAdapter):
        def wrap(self, sock):
            sock.settimeout(HANDSHAKE_TIMEOUT_S)  # cheroot sets its own timeout again after the wrap
            return super().wrap(sock)
    return Adapter(cert, key)
