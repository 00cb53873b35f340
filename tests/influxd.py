"""A throwaway InfluxDB 1.x server (Debian's influxd) on free loopback ports, from the same config
template as ``install.sh --demo``; used by the test suite and the benchmarks."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from influxdb import InfluxDBClient

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class InfluxServer:
    host: str
    port: int
    proc: subprocess.Popen
    dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, database: str | None = None) -> InfluxDBClient:
        return InfluxDBClient(self.host, self.port, database=database, timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _ping(port: int, host: Any = None) -> bool:
    """True once influxd answers /ping on loopback (inside ``host``'s namespace when given)."""
    if host is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            return True
        except OSError:
            return False
    code = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/ping', timeout=1)"
    return host.run([sys.executable, "-c", code], timeout=20).returncode == 0


def start_influxd(d: Path, port: int | None = None, host: Any = None) -> InfluxServer:
    """Start influxd with its data in ``d``; waits for /ping. Raises RuntimeError with its log.
    ``host``: a tests/netns.py Host to run it in (its own loopback; give ``port``, e.g. 8086)."""
    exe = shutil.which("influxd")
    if exe is None:
        raise RuntimeError("influxd not found: install Debian's influxdb package (./install.sh --test does)")
    port, rpc = port or free_port(), free_port()
    conf = d / "influxdb.conf"
    template = (REPO / "config" / "influxd-local.conf.in").read_text()
    conf.write_text(template.replace("@DIR@", str(d)).replace("@HTTP_PORT@", str(port))
                    .replace("@RPC_PORT@", str(rpc)))
    log = open(d / "influxd.log", "ab")
    argv = [exe, "-config", str(conf)]
    proc = (host.popen(argv, stdout=log, stderr=subprocess.STDOUT) if host is not None
            else subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    log.close()
    deadline = time.monotonic() + 30
    while True:
        if _ping(port, host):
            return InfluxServer("127.0.0.1", port, proc, d)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"influxd did not start: {(d / 'influxd.log').read_text()[-2000:]}")
        time.sleep(0.1)
