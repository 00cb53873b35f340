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

    .venv/bin/python benchmarks/web.py [--requests 200] [--abuse]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--abuse", action="store_true", help="then attack it (issue 24) and print the peaks")
    a = ap.parse_args()
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
