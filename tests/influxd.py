"""A throwaway InfluxDB 1.x server (Debian's influxd) on free loopback ports, from the same config
template as ``install.sh --demo``; used by the test suite and the benchmarks."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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


def start_influxd(d: Path, port: int | None = None) -> InfluxServer:
    """Start influxd with its data in ``d``; waits for /ping. Raises RuntimeError with its log."""
    exe = shutil.which("influxd")
    if exe is None:
        raise RuntimeError("influxd not found: install Debian's influxdb package (./install.sh --test does)")
    port, rpc = port or free_port(), free_port()
    conf = d / "influxdb.conf"
    template = (REPO / "config" / "influxd-local.conf.in").read_text()
    conf.write_text(template.replace("@DIR@", str(d)).replace("@HTTP_PORT@", str(port))
                    .replace("@RPC_PORT@", str(rpc)))
    log = open(d / "influxd.log", "ab")
    proc = subprocess.Popen([exe, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            return InfluxServer("127.0.0.1", port, proc, d)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"influxd did not start: {(d / 'influxd.log').read_text()[-2000:]}") from None
            time.sleep(0.1)
