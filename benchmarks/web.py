"""Memory and latency of ``gestor web``: the real command in a subprocess on the shipped example
settings (paths in a temporary folder, InfluxDB not running: the history answers "does not
answer", as on a Pi whose InfluxDB is down), a password set with ``--set-password``, then a
login and ``--requests`` rounds of the page, ``/api/status`` (what every open page asks every
``web.poll_s``) and ``/api/day``.

Prints RSS after start, after the login (argon2id: 64 MiB while it hashes), after the requests,
the peak, and the mean time per request. ``--abuse`` then attacks it from loopback as issue 24
did and prints the peak RSS after each attack: 8 parallel requests with 16 MB URLs, 40 parallel
wrong passwords from one address (how many were checked), and the time a normal request takes
beside 10 clients sending a byte a second.

``--year`` instead measures issue 27's ranges: a year (2025) of ``period`` points in a real
InfluxDB 1.x (Debian's influxd, as the tests start it), written by the test's writer
(``tests/integration/test_web_ranges.py``: a simulation of a real recording, summarized forever
by ``gestor db-init``'s own continuous query), then ``/api/range`` for a month and the year through
the page (cheroot, HTTP, a session), cold (the page's cache emptied before each request) and warm,
``--requests`` times each, and the split of a cold year into InfluxDB's answer and the summing.
The issue's target: a month and a year within 2 s on a Pi-class machine (about 10 times slower
than a desktop: multiply the numbers by 10).

    .venv/bin/python benchmarks/web.py [--requests 200] [--abuse]
    .venv/bin/python benchmarks/web.py --year [--requests 20]
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.conftest import free_port  # noqa: E402

PASSWORD = "benchmark password 1"


def status_kb(pid: int, key: str) -> float:
    return float(re.search(rf"{key}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def send(port: int, data: bytes) -> None:
    """``data`` on a fresh connection; whatever the server answers (or not) is dropped."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(data)
            s.recv(100)
    except OSError:
        pass


def slow(port: int, stop: threading.Event) -> None:
    """A request a byte a second, until the server cuts it or ``stop``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for byte in b"GET /login HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n":
                if stop.is_set():
                    return
                s.sendall(bytes([byte]))
                time.sleep(1)
    except OSError:
        pass


def abuse(url: str, pid: int) -> None:
    port = int(url.rsplit(":", 1)[1])
    huge = b"GET /?" + b"a" * (16 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda _: send(port, huge), range(8)))
    print(f"8 parallel 16 MB URLs: peak {status_kb(pid, 'VmHWM') / 1024:.1f} MB, "
          f"now {status_kb(pid, 'VmRSS') / 1024:.1f} MB")
    c = requests.Session()
    token = c.get(f"{url}/login", timeout=10).text.split('name="csrf_token" value="')[1].split('"')[0]
    cookies = c.cookies.get_dict()
    with ThreadPoolExecutor(40) as ex:
        codes = list(ex.map(lambda i: requests.post(f"{url}/login", cookies=cookies, timeout=60, data={
            "csrf_token": token, "password": f"guess {i}"}).status_code, range(40)))
    print(f"40 parallel wrong passwords: {codes.count(401)} checked, {codes.count(429)} refused (429), "
          f"{codes.count(503)} busy (503); peak {status_kb(pid, 'VmHWM') / 1024:.1f} MB")
    stop = threading.Event()
    threads = [threading.Thread(target=slow, args=(port, stop), daemon=True) for _ in range(10)]
    for th in threads:
        th.start()
    time.sleep(1.5)
    t = time.perf_counter()
    requests.get(f"{url}/login", timeout=60)
    print(f"GET /login beside 10 clients sending a byte a second: {time.perf_counter() - t:.2f} s")
    stop.set()


def year(n: int) -> None:
    """A year of data in InfluxDB, then the time of /api/range (month, year; cold and warm)."""
    import uuid

    from gestor.clock import WallClock
    from gestor.web import auth, ranges
    from tests.influxd import start_influxd
    from tests.integration.test_web_ranges import site_settings, write_year
    from tests.integration.test_web import Web
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "influxdb").mkdir()
        server = start_influxd(d / "influxdb")
        try:
            s = site_settings(d, server, f"bench_{uuid.uuid4().hex[:8]}")
            t = time.perf_counter()
            rows = write_year(s, server)
            print(f"wrote {len(rows)} period points (2025) and their forever summaries in "
                  f"{time.perf_counter() - t:.1f} s")
            web = Web(s, WallClock(), auth.hasher().hash("benchmark password 1"))
            try:
                c = web.login("benchmark password 1")
                history = web.server.wsgi_app.extensions["gestor"]["history"]
                for view, day in (("day", "2025-10-26"), ("week", "2025-06-10"), ("month", "2025-06-10"),
                                  ("year", "2025-06-10")):
                    url = f"{web.url}/api/range?view={view}&date={day}"
                    cold = []
                    for _ in range(n):
                        history._cache.clear()
                        t = time.perf_counter()
                        r = c.get(url, timeout=60)
                        cold.append(time.perf_counter() - t)
                        assert r.status_code == 200, r.text
                    t = time.perf_counter()
                    for _ in range(n):
                        c.get(url, timeout=60)
                    warm = (time.perf_counter() - t) / n
                    cold.sort()
                    print(f"GET /api/range?view={view:5s}  cold: median {1000 * cold[len(cold) // 2]:7.1f} ms, "
                          f"max {1000 * cold[-1]:7.1f} ms (Pi, x10: ~{10 * cold[len(cold) // 2]:.2f} s); "
                          f"warm {1000 * warm:6.2f} ms")
                history._cache.clear()
                t = time.perf_counter()
                c.get(f"{web.url}/api/range.csv?view=year&date=2025-06-10&lang=es", timeout=60)
                print(f"GET /api/range.csv?view=year (es), cold: {1000 * (time.perf_counter() - t):.1f} ms")
                # a cold year, split: InfluxDB's answer (both queries) and the summing
                from datetime import date, timedelta
                today = WallClock().now().astimezone(s.tz).date()
                recent = ranges.day_bounds(today - timedelta(days=1), s.tz)[0]
                b = ranges.buckets_of("year", date(2025, 6, 10), s.tz)
                t = time.perf_counter()
                got = ranges.range_rows(history, b[0][0], b[-1][1], recent, "1d")
                t1 = time.perf_counter()
                ranges.summarize(got, b, s.billing.period_s, {ld.name: ld.power_w for ld in s.loads})
                t2 = time.perf_counter()
                ranges.since_install(history, recent)
                t3 = time.perf_counter()
                print(f"a cold year split: InfluxDB {1000 * (t1 - t):.1f} ms ({sum(len(p[0]) for p in got)} periods), summing "
                      f"{1000 * (t2 - t1):.1f} ms, since installation {1000 * (t3 - t2):.1f} ms")
            finally:
                web.stop()
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--abuse", action="store_true", help="then attack it (issue 24) and print the peaks")
    ap.add_argument("--year", action="store_true", help="instead: /api/range over a year of data in InfluxDB")
    a = ap.parse_args()
    if a.year:
        year(min(a.requests, 50))
        return
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        raw = yaml.safe_load((ROOT / "config" / "settings.yaml").read_text())
        raw["meter"]["path"] = str(ROOT.parent / "shared" / "data" / "house-2022-06-11_13.csv")
        raw["paths"] = {"state_dir": str(d / "state"), "run_dir": str(d / "run")}
        raw["store"] = {"kind": "influxdb1", "host": "127.0.0.1", "port": free_port()}
        raw["web"] = {"listen": f"127.0.0.1:{free_port()}"}
        cfg = d / "settings.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        gestor = [sys.executable, "-m", "gestor.cli"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        subprocess.run(gestor + ["web", "--set-password", "--config", str(cfg)], input=PASSWORD + "\n", text=True,
                       check=True, env=env, capture_output=True)
        p = subprocess.Popen(gestor + ["web", "--config", str(cfg)], env=env, stderr=subprocess.DEVNULL)
        url = f"http://{raw['web']['listen']}"
        try:
            c = requests.Session()
            for _ in range(100):
                try:
                    page = c.get(f"{url}/login", timeout=2).text
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            print(f"gestor web started: RSS {status_kb(p.pid, 'VmRSS') / 1024:.1f} MB")
            token = page.split('name="csrf_token" value="')[1].split('"')[0]
            t = time.perf_counter()
            c.post(f"{url}/login", data={"csrf_token": token, "password": PASSWORD}, timeout=10)
            print(f"login (argon2id verify): {1000 * (time.perf_counter() - t):.0f} ms; "
                  f"RSS {status_kb(p.pid, 'VmRSS') / 1024:.1f} MB")
            for path in ("/", "/api/status", "/api/day?date=2022-06-11"):
                t = time.perf_counter()
                for _ in range(a.requests):
                    c.get(url + path, timeout=10)
                print(f"GET {path:28s} {1000 * (time.perf_counter() - t) / a.requests:6.1f} ms per request")
            print(f"after {3 * a.requests} requests: RSS {status_kb(p.pid, 'VmRSS') / 1024:.1f} MB, "
                  f"peak {status_kb(p.pid, 'VmHWM') / 1024:.1f} MB")
            if a.abuse:
                abuse(url, p.pid)
        finally:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
