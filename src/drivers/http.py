"""HTTP glue shared by the Shelly and Enphase drivers (requests): one :class:`Device` per device,
with a **total deadline** on every request, a **capped body**, TLS verified by default (or pinned
to the device's certificate fingerprint), and one exception type whose message says what went
wrong in terms a user can act on (unreachable, timeout, HTTP status, not JSON).

Why a total deadline: requests' ``timeout`` bounds each socket operation, so a device that sends
one byte a second never times out. Each request runs in one of the device's two worker threads
and the caller waits at most ``timeout_s``. A request left hanging does not block the next one
(a device that recovers answers at once), but with two hanging the next ones fail at once
("previous requests still hanging") instead of piling up threads: at most two threads per device
are ever stuck.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import ssl
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Annotated, Any, Iterator
from urllib.parse import urlsplit

import requests
from pydantic import AfterValidator
from requests.adapters import HTTPAdapter

MAX_BODY_BYTES = 1 << 20      # a device's JSON answer is a few kB; anything past 1 MB is refused
MAX_LINE_BYTES = 64 << 10     # one line of a server-sent stream



class HttpError(Exception):
    """A request to a device failed; the message names the URL and the reason."""


def check_host(host: str) -> str:
    """A device's ``host`` setting: an IPv4 address, a name, or an IPv6 address in brackets, with
    no port and no scheme (the port is a key of its own). Raises ValueError saying what is allowed."""
    if not (1 <= len(host) <= 253 and re.fullmatch(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-]+", host)):
        raise ValueError(f"{host[:60]!r} is not an IP address or a host name (allowed: 192.168.1.30, "
                         "inverter.local, [fe80::1]; no http://, no :port: the port is its own key)")
    return host


DeviceHost = Annotated[str, AfterValidator(check_host)]


def normalise_fingerprint(fp: str) -> str:
    """``"AB:CD:..."`` or ``"abcd..."`` → 64 lowercase hex digits. Raises ValueError."""
    h = fp.replace(":", "").replace(" ", "").lower()
    if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise ValueError("must be the certificate's SHA-256 fingerprint: 64 hex digits (colons allowed)")
    return h


def server_fingerprint(host: str, port: int, timeout_s: float = 5.0) -> str:
    """SHA-256 fingerprint (hex, colon-separated) of the certificate ``host:port`` presents,
    without trusting it: what a user compares with the device's own page before pinning it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True) or b""
    h = hashlib.sha256(der).hexdigest()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2)).upper()


class _PinnedAdapter(HTTPAdapter):
    """Accepts exactly one certificate, by its SHA-256 fingerprint (urllib3 ``assert_fingerprint``):
    how a self-signed device certificate (Enphase Envoy firmware 7+) is verified."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


def device_session(username: str | None, password: str | None, digest: bool) -> requests.Session:
    """A session for one device; with a password, digest auth (Shelly Gen2) or basic auth
    (Shelly Gen1), user ``admin`` unless given."""
    session = requests.Session()
    # a device on the LAN: no proxy and no CA bundle from the environment (HTTP_PROXY,
    # REQUESTS_CA_BUNDLE would otherwise silently change where and how we connect)
    session.trust_env = False
    if password is not None:
        auth = requests.auth.HTTPDigestAuth if digest else requests.auth.HTTPBasicAuth
        session.auth = auth(username or "admin", password)
    return session


def _decode(body: bytes, encoding: str, url: str) -> bytes:
    """Undo ``Content-Encoding`` without ever holding more than MAX_BODY_BYTES (a gzip bomb of
    1 MB would otherwise become gigabytes)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise HttpError(f"{url}: answer encoded as {encoding!r}, which gestor does not accept")
    d = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    out = d.decompress(body, MAX_BODY_BYTES + 1)
    if len(out) > MAX_BODY_BYTES or d.unconsumed_tail:
        raise HttpError(f"{url}: answer larger than {MAX_BODY_BYTES} bytes once decompressed: refused")
    return out


def _check_status(r: requests.Response, url: str) -> None:
    if r.status_code == 401:
        raise HttpError(f"{url}: HTTP 401, authentication failed (check username/password/token)")
    if r.status_code == 503:
        raise HttpError(f"{url}: HTTP 503 {r.reason}, the device is busy (try again)")
    if not r.ok:
        raise HttpError(f"{url}: HTTP {r.status_code} {r.reason}")


class Device:
    """One HTTP device: a session, a worker thread, a deadline per request.

    Args:
        username, password: auth (digest for Shelly Gen2, basic for Gen1), or none.
        digest: digest (True) or basic auth.
        verify_tls: verify https certificates against the system's CAs.
        tls_fingerprint: accept exactly this certificate (SHA-256 hex) instead.
        headers: sent with every request (e.g. a bearer token).
    """

    def __init__(self, username: str | None = None, password: str | None = None, digest: bool = False,
                 verify_tls: bool = True, tls_fingerprint: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.session = device_session(username, password, digest)
        self.session.headers["Accept-Encoding"] = "identity"
        self.session.headers.update(headers or {})
        self.session.verify = verify_tls and tls_fingerprint is None
        self.tls_fingerprint = tls_fingerprint
        if tls_fingerprint:
            self.session.mount("https://", _PinnedAdapter(normalise_fingerprint(tls_fingerprint)))
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="device-http")
        self._busy: list[Future] = []
        self._lock = threading.Lock()

    def get_json(self, url: str, timeout_s: float) -> Any:
        """GET ``url`` and parse its JSON body, all within ``timeout_s`` (see :meth:`request_json`)."""
        return self.request_json("GET", url, timeout_s)

    def request_json(self, method: str, url: str, timeout_s: float, body: Any = None) -> Any:
        """``method`` (GET, POST, DELETE) ``url`` with ``body`` sent as JSON (None: no body) and
        parse the JSON answer, all within ``timeout_s``.

        Raises:
            HttpError: unreachable, no complete answer within ``timeout_s``, a non-2xx status, a
                body over MAX_BODY_BYTES, a TLS failure, or a body that is not complete JSON (a
                device restarting mid-answer sends truncated bodies).
        """
        return self._within(self._request_json, method, url, timeout_s, body)

    def get_bytes(self, url: str, timeout_s: float) -> bytes:
        """GET ``url`` and return its body (at most MAX_BODY_BYTES, decompressed), all within
        ``timeout_s``: for devices that answer XML or text (Wibeee's ``status.xml``).

        Raises:
            HttpError: as :meth:`request_json`, except that the body is not parsed.
        """
        return self._within(self._request_bytes, "GET", url, timeout_s, None)

    def _within(self, fn: Any, method: str, url: str, timeout_s: float, body: Any) -> Any:
        """``fn(method, url, timeout_s, body)`` in a worker thread, waited for at most ``timeout_s``."""
        with self._lock:
            self._busy = [f for f in self._busy if not f.done()]
            if len(self._busy) >= 2:
                raise HttpError(f"{url}: previous requests still hanging (device answering too slowly)")
            fut = self._pool.submit(fn, method, url, timeout_s, body)
            self._busy.append(fut)
        try:
            return fut.result(timeout=timeout_s)
        except FutureTimeout:
            raise HttpError(f"{url}: no answer within {timeout_s:g} s (in all)") from None

    def _request_json(self, method: str, url: str, timeout_s: float, body: Any) -> Any:
        body = self._request_bytes(method, url, timeout_s, body)
        try:
            return json.loads(body)
        except ValueError as e:
            raise HttpError(f"{url}: answer is not valid JSON ({e}); {len(body)} bytes") from None

    def _request_bytes(self, method: str, url: str, timeout_s: float, body: Any) -> bytes:
        try:
            with self.session.request(method, url, json=body, timeout=timeout_s, stream=True) as r:
                _check_status(r, url)
                body = r.raw.read(MAX_BODY_BYTES + 1, decode_content=False)
                if len(body) > MAX_BODY_BYTES:
                    raise HttpError(f"{url}: answer larger than {MAX_BODY_BYTES} bytes: refused")
                body = _decode(body, r.headers.get("Content-Encoding", ""), url)
        except HttpError:
            raise
        except requests.exceptions.SSLError as e:
            raise HttpError(self._tls_message(url, e)) from None
        except requests.Timeout:
            raise HttpError(f"{url}: no answer within {timeout_s:g} s") from None
        except requests.ConnectionError as e:
            text = str(e).lower()
            reason = ("connection refused" if "refused" in text else
                      "connection dropped before a complete answer" if "aborted" in text or "disconnected" in text
                      else "unreachable")
            raise HttpError(f"{url}: {reason}") from None
        except requests.RequestException as e:
            raise HttpError(f"{url}: {type(e).__name__}: {str(e)[:200]}") from None
        except Exception as e:  # urllib3 protocol errors while reading the body
            raise HttpError(f"{url}: {type(e).__name__} while reading the answer") from None
        return body

    def _tls_message(self, url: str, e: Exception) -> str:
        if self.tls_fingerprint:
            return (f"{url}: TLS certificate does not match tls_fingerprint (the device's certificate changed, "
                    "or another machine answers): not trusted")
        u = urlsplit(url)
        try:
            fp = server_fingerprint(u.hostname or "", u.port or 443)
            hint = (f"; if this is your device's own self-signed certificate (compare with its web page), pin "
                    f"it: tls_fingerprint: \"{fp}\"")
        except OSError:
            hint = ""
        return f"{url}: TLS certificate not trusted{hint}"

    def stream_lines(self, url: str, timeout_s: float) -> Iterator[bytes]:
        """Lines of a long-lived answer (server-sent events), each at most MAX_LINE_BYTES; for a
        reader thread of its own (no deadline: it is meant to last). Raises HttpError."""
        try:
            with self.session.get(url, stream=True, timeout=timeout_s) as r:
                _check_status(r, url)
                if (r.headers.get("Content-Encoding") or "identity").lower() != "identity":
                    raise HttpError(f"{url}: compressed stream refused")
                self._stream = r
                buf = b""
                for chunk in r.raw.stream(4096, decode_content=False):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        yield line.rstrip(b"\r")
                    if len(buf) > MAX_LINE_BYTES:
                        raise HttpError(f"{url}: a line longer than {MAX_LINE_BYTES} bytes: refused")
        except requests.exceptions.SSLError as e:
            raise HttpError(self._tls_message(url, e)) from None
        except requests.Timeout:
            raise HttpError(f"{url}: no answer within {timeout_s:g} s") from None
        except requests.RequestException as e:
            raise HttpError(f"{url}: unreachable ({type(e).__name__})") from None
        finally:
            self._stream = None

    def close(self) -> None:
        r = getattr(self, "_stream", None)
        if r is not None:
            try:
                r.close()
            except Exception:
                pass
        self.session.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def number(obj: Any, *path: str | int, where: str) -> float:
    """``obj[path...]`` as a float, or HttpError naming the missing key or bad value."""
    cur = obj
    for p in path:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            raise HttpError(f"{where}: answer lacks {'.'.join(str(x) for x in path)}") from None
    if isinstance(cur, bool) or not isinstance(cur, (int, float)) or not math.isfinite(cur):
        raise HttpError(f"{where}: {'.'.join(str(x) for x in path)} is {str(cur)[:40]!r}, not a number")
    return float(cur)
