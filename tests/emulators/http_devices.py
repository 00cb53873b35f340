"""Device emulators on loopback HTTP: Shelly Gen1 and Gen2 (meters and relays) and an Enphase
Envoy-S Metered, answering with the JSON shapes of their public API docs. Faults are injected by
setting ``fault``: "timeout" (answers after ``delay_s``), "500", "503" (busy), "drop" (the
connection closed without an answer), "truncated" (half a body),
"garbage", "drip" (the body one byte every ``drip_s``: never a socket timeout); ``raw_body``
(+ ``raw_headers``) replaces the answer with any bytes (malformed JSON, a gzip bomb);
:meth:`stop`/:meth:`start` emulate a reboot on the same port; ``tls=(certfile, keyfile)`` serves
HTTPS with that certificate.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse


def ssl_error() -> type:
    import ssl
    return ssl.SSLError


def self_signed_cert(d, name: str = "envoy") -> tuple[str, str, str]:
    """A self-signed certificate made with openssl, as an Envoy has: (certfile, keyfile, SHA-256
    fingerprint as AA:BB:...)."""
    import subprocess
    cert, key = str(d / f"{name}.crt"), str(d / f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "3650", "-subj", f"/CN={name}.local"], check=True, capture_output=True)
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"], check=True,
                         capture_output=True, text=True).stdout
    return cert, key, out.strip().split("=", 1)[1]


class DeviceServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.fault: str | None = None
        self.delay_s = 3.0
        self.requests: list[str] = []
        self.bodies: list[object] = []    # JSON bodies of POST/DELETE requests
        self._httpd: ThreadingHTTPServer | None = None
        self.auth: tuple[str, str, str] | None = None  # ("digest"|"basic"|"bearer", user, secret)
        self.lock = threading.Lock()
        self._conns: set = set()
        self.drip_s = 1.0
        self.raw_body: bytes | None = None
        self.raw_headers: dict[str, str] = {}
        self.tls: tuple[str, str] | None = None
        self.content_type = "application/json"
        self.accepted = 0                 # connections accepted (a client keeping one alive: 1)
        self.bind = "127.0.0.1"   # the address served on (a test LAN's host: its own, tests/netns.py)

    # subclasses: route(path, query) -> (status, body_dict) or (status, str)
    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        return 404, {"error": "not found"}

    # POST/DELETE (body: the request's JSON, None if none or not JSON); GET goes to route
    def request(self, method: str, path: str, q: dict[str, str], body: object) -> tuple[int, object]:
        return (self.route(path, q) if method == "GET" else (405, {"msg": "Method not allowed"}))

    def stream(self, handler: BaseHTTPRequestHandler, path: str) -> bool:
        return False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        if self.auth is None:
            return True
        kind, user, secret = self.auth
        got = h.headers.get("Authorization", "")
        if kind == "bearer":
            return got == f"Bearer {secret}"
        if kind == "basic":
            import base64
            return got == "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
        # digest, RFC 2617 (MD5, qop=auth), as the Envoy and Shelly Gen2 do
        if not got.startswith("Digest "):
            return False
        f = dict(re.findall(r'(\w+)="?([^",]+)"?', got[7:]))
        ha1 = hashlib.md5(f"{user}:{f.get('realm')}:{secret}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{h.command}:{f.get('uri')}".encode()).hexdigest()
        want = hashlib.md5(f"{ha1}:{f.get('nonce')}:{f.get('nc')}:{f.get('cnonce')}:auth:{ha2}".encode()).hexdigest()
        return f.get("username") == user and f.get("response") == want

    def start(self) -> "DeviceServer":
        dev = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                dev._conns.add(self.connection)
                dev.accepted += 1

            def finish(self) -> None:
                dev._conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                u = urlparse(self.path)
                raw = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 65536))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                with dev.lock:
                    dev.requests.append(self.path if method == "GET" else f"{method} {self.path}")
                    if method != "GET":
                        dev.bodies.append(body)
                if not dev._authorized(self):
                    self.send_response(401)
                    if dev.auth and dev.auth[0] == "digest":
                        self.send_header("WWW-Authenticate",
                                         'Digest realm="enphaseenergy.com", nonce="abc123", qop="auth"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                fault = dev.fault
                if fault == "timeout":
                    time.sleep(dev.delay_s)
                if fault == "500":
                    self._send(500, b'{"error": "internal"}')
                    return
                if fault == "503":
                    self._send(503, b"<html><body>503 Service Unavailable</body></html>")
                    return
                if fault == "drop":
                    import socket
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if dev.stream(self, u.path):
                    return
                status, answer = dev.request(method, u.path, {k: v[-1] for k, v in parse_qs(u.query).items()}, body)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                if fault == "truncated":
                    data = data[: len(data) // 2]
                if fault == "garbage":
                    data = b"<html>rebooting</html>"
                if dev.raw_body is not None:
                    data = dev.raw_body
                self._send(status, data, drip=fault == "drip")

            def _send(self, status: int, data: bytes, drip: bool = False) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", dev.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in dev.raw_headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if not drip:
                        self.wfile.write(data)
                        return
                    for i in range(len(data)):
                        if dev._httpd is None:
                            return
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(dev.drip_s)
                except (BrokenPipeError, ConnectionResetError, ssl_error()):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer((self.bind, self.port), Handler)
        self._httpd.daemon_threads = True
        if self.tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """A reboot: stop listening and drop every open connection."""
        import socket
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class ShellyPro3EM(DeviceServer):
    """Shelly Pro 3EM (Gen2 RPC): EM.GetStatus / EMData.GetStatus; phase powers import-positive."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.phases_w = [0.0, 0.0, 0.0]
        self.total_act_wh = 0.0
        self.total_act_ret_wh = 0.0

    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        if path == "/rpc/EM.GetStatus":
            a, b, c = self.phases_w
            return 200, {"id": 0, "a_current": 1.0, "a_voltage": 230.1, "a_act_power": a, "a_aprt_power": abs(a),
                         "a_pf": 1, "b_current": 1.0, "b_voltage": 229.8, "b_act_power": b, "b_aprt_power": abs(b),
                         "b_pf": 1, "c_current": 1.0, "c_voltage": 231.0, "c_act_power": c, "c_aprt_power": abs(c),
                         "c_pf": 1, "n_current": None, "total_current": 3.0, "total_act_power": a + b + c,
                         "total_aprt_power": abs(a) + abs(b) + abs(c), "user_calibrated_phase": []}
        if path == "/rpc/EMData.GetStatus":
            return 200, {"id": 0, "a_total_act_energy": 0, "a_total_act_ret_energy": 0,
                         "total_act": self.total_act_wh, "total_act_ret": self.total_act_ret_wh}
        return 404, {"code": 404, "message": f"No handler for {path}"}


class ShellyGen1EM(DeviceServer):
    """Shelly EM / 3EM (Gen1): /status with emeters[]."""

    def __init__(self, port: int, channels: int = 2) -> None:
        super().__init__(port)
        self.power_w = [0.0] * channels
        self.valid = [True] * channels
        self.total_wh = [0.0] * channels
        self.returned_wh = [0.0] * channels

    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        if path == "/status":
            return 200, {"wifi_sta": {"connected": True}, "relays": [{"ison": False}],
                         "emeters": [{"power": p, "reactive": 0.0, "voltage": 230.0, "is_valid": v,
                                      "total": t, "total_returned": r}
                                     for p, v, t, r in zip(self.power_w, self.valid, self.total_wh, self.returned_wh)]}
        return 404, "Not Found"


class Envoy(DeviceServer):
    """Envoy-S Metered: /production.json and the /stream/meter server-sent stream."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.production_w = 0.0
        self.consumption_w = 0.0
        self.stream_period_s = 0.05
        self.streams = 0
        self.stream_inject: list[bytes] = []  # lines sent (once each) before the next sample

    def _phases(self, total: float) -> dict:
        return {f"ph-{x}": {"p": total / 3, "q": 0.0, "s": abs(total) / 3, "v": 230.0, "i": 1.0, "pf": 1.0, "f": 50.0}
                for x in "abc"}

    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        if path == "/production.json":
            net = self.consumption_w - self.production_w  # net-consumption: import-positive
            return 200, {
                "production": [{"type": "inverters", "activeCount": 12, "readingTime": 0, "wNow": self.production_w * 0.97,
                                "whLifetime": 1e6},
                               {"type": "eim", "activeCount": 1, "measurementType": "production", "readingTime": 0,
                                "wNow": self.production_w, "whLifetime": 1e6}],
                "consumption": [{"type": "eim", "activeCount": 1, "measurementType": "total-consumption",
                                 "readingTime": 0, "wNow": self.consumption_w, "whLifetime": 2e6},
                                {"type": "eim", "activeCount": 1, "measurementType": "net-consumption",
                                 "readingTime": 0, "wNow": net, "whLifetime": 5e5}],
                "storage": [{"type": "acb", "activeCount": 0, "wNow": 0}]}
        return 404, {"error": "not found"}

    def stream(self, h: BaseHTTPRequestHandler, path: str) -> bool:
        if path != "/stream/meter":
            return False
        self.streams += 1
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        httpd = self._httpd
        try:
            while self._httpd is httpd and httpd is not None and self.fault is None:
                while self.stream_inject:
                    h.wfile.write(self.stream_inject.pop(0) + b"\r\n\r\n")
                net = self.consumption_w - self.production_w
                sample = {"production": self._phases(self.production_w),
                          "net-consumption": self._phases(net),
                          "total-consumption": self._phases(self.consumption_w)}
                h.wfile.write(b"data: " + json.dumps(sample).encode() + b"\r\n\r\n")
                h.wfile.flush()
                time.sleep(self.stream_period_s)
        except (BrokenPipeError, ConnectionResetError, ValueError):
            pass
        h.close_connection = True
        return True


class ShellyRelayDevice(DeviceServer):
    """A Shelly relay, Gen2 (``Switch.Set``/``Switch.GetStatus``) or Gen1 (``/relay/0``,
    ``/status``), with its auto-off timer running on ``clock`` (the monotonic clock by default;
    a test gives it its simulated clock's), and metered power."""

    def __init__(self, port: int, generation: int = 2, load_w: float = 1000.0) -> None:
        super().__init__(port)
        self.generation = generation
        self.load_w = load_w
        self.output = False
        self.off_at: float | None = None  # monotonic deadline of the auto-off timer
        self.timers: list[float] = []     # every timer the client set, s
        self.stuck: bool = False          # the contact is welded: commands accepted, output stays
        # "lies off": reports output false whatever the contact does; its meter (apower, Gen1's
        # meters[].power) shows what the contact draws, or 0 W with lies_idle_w as well
        self.lies: bool = False
        self.lies_idle_w: bool = False
        self.clock = time.monotonic       # s, what the auto-off timer runs on
        # called once (then cleared) before the next status read is answered: what happens in
        # the house between a client's request and the device's answer (a stop, a button)
        self.before_status: Callable[[], None] | None = None

    def _tick(self) -> None:
        if self.off_at is not None and self.clock() >= self.off_at and not self.stuck:
            self.output, self.off_at = False, None

    def _set(self, on: bool, timer: float | None) -> bool:
        self._tick()
        was = self.output
        if not self.stuck:
            self.output = on
        self.off_at = self.clock() + timer if (on and timer) else None
        if timer:
            self.timers.append(timer)
        return was

    def is_on(self) -> bool:
        self._tick()
        return self.output

    def power_w(self) -> float:
        """W its meter reports: the load's while the contact is on (0 W when it lies idle)."""
        return self.load_w if self.output and not (self.lies and self.lies_idle_w) else 0.0

    def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
        self._tick()
        if self.generation == 2:
            if path == "/rpc/Switch.Set":
                was = self._set(q.get("on") == "true", float(q["toggle_after"]) if "toggle_after" in q else None)
                return 200, {"was_on": was}
            if path == "/rpc/Switch.GetStatus":
                hook, self.before_status = self.before_status, None
                if hook is not None:
                    hook()
                return 200, {"id": 0, "source": "http", "output": self.output and not self.lies,
                             "apower": self.power_w(), "voltage": 230.0,
                             "timer_started_at": 0, "timer_duration": 0}
        else:
            if path == "/relay/0":
                if "turn" in q:
                    self._set(q["turn"] == "on", float(q["timer"]) if "timer" in q else None)
                return 200, {"ison": self.output and not self.lies, "has_timer": self.off_at is not None,
                             "timer_remaining": 0, "source": "http"}
            if path == "/status":
                return 200, {"relays": [{"ison": self.output}],
                             "meters": [{"power": self.power_w(), "is_valid": True}]}
        return 404, {"code": 404, "message": f"No handler for {path}"}


def house_meter(meter: ShellyPro3EM, relays: list[ShellyRelayDevice], consumption_w: float,
                production_w: float) -> Callable[[], None]:
    """A task for ``run_lockstep``: the grid meter ``meter`` shows the house, ``consumption_w``
    plus the load of every relay in ``relays`` whose contact is on (whatever it answers), less
    ``production_w`` (the Shelly's phase powers are import-positive; all on phase a), with a watt
    of noise (a real meter's power moves now and then; a constant one is a frozen meter)."""
    ticks = [0]

    def feed() -> None:
        ticks[0] += 1
        drawn = sum(d.load_w for d in relays if d.is_on())
        noise_w = 0.5 if ticks[0] % 2 else -0.5
        meter.phases_w = [consumption_w + drawn - production_w + noise_w, 0.0, 0.0]
    return feed
