"""Shared fixtures: a real InfluxDB 1.x server (Debian's influxd) started on free loopback ports
for the whole session, a fresh database per test, settings built from the shipped example."""
from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from influxdb import InfluxDBClient

from gestor.settings import Settings, parse_settings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXAMPLE = REPO / "config" / "settings.yaml"


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


@pytest.fixture(scope="session")
def influxd(tmp_path_factory) -> InfluxServer:
    exe = shutil.which("influxd")
    if exe is None:
        pytest.fail("influxd not found: install Debian's influxdb package (./install.sh --test does)")
    d = tmp_path_factory.mktemp("influxdb")
    port, rpc = free_port(), free_port()
    conf = d / "influxdb.conf"
    template = (REPO / "config" / "influxd-local.conf.in").read_text()
    conf.write_text(template.replace("@DIR@", str(d)).replace("@HTTP_PORT@", str(port))
                    .replace("@RPC_PORT@", str(rpc)))
    log = open(d / "influxd.log", "wb")
    proc = subprocess.Popen([exe, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"influxd did not start: {(d / 'influxd.log').read_text()[-2000:]}")
            time.sleep(0.1)
    yield InfluxServer("127.0.0.1", port, proc, d)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def influx_db(influxd):
    """A fresh database name on the session's server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    c = influxd.client()
    c.drop_database(name)
    c.close()


def example_raw() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def make_settings(tmp_path: Path, influxd: InfluxServer | None = None, database: str | None = None,
                  **overrides) -> Settings:
    """Settings from the shipped example with paths under tmp_path, the test InfluxDB (or none),
    and ``overrides`` merged in (dicts are merged one level deep, other values replaced)."""
    raw = copy.deepcopy(example_raw())
    raw["meter"]["path"] = str(DATA / "house-2022-06-11_13.csv")
    raw["meter"]["loop"] = False
    raw["paths"] = {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    raw["site"] = "test"
    if influxd is not None:
        raw["store"] = {"kind": "influxdb1", "host": influxd.host, "port": influxd.port, "database": database}
    else:
        raw["store"] = {"kind": "none"}
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return parse_settings(raw, "settings.yaml", tmp_path / "settings.yaml")


def settings_file(tmp_path: Path, store: dict | None = None, meter_updates: dict | None = None,
                  **changes) -> Path:
    """The shipped example written to tmp_path/settings.yaml: the house recording as meter (with
    ``meter_updates`` merged in), paths under tmp_path, ``store`` (default none), and top-level
    keys replaced by ``changes``."""
    raw = example_raw()
    raw["meter"]["path"] = str(DATA / "house-2022-06-11_13.csv")
    raw["meter"].update(meter_updates or {})
    raw["paths"] = {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    raw["store"] = store or {"kind": "none"}
    raw.update(changes)
    f = tmp_path / "settings.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path
