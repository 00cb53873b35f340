"""Shared fixtures: a real InfluxDB 1.x server (Debian's influxd) started on free loopback ports
for the whole session, a fresh database per test, settings built from the shipped example."""
from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path

import pytest
import yaml

from gestor.settings import Settings, parse_settings
from tests.influxd import InfluxServer, free_port, start_influxd  # noqa: F401 (re-exported)


def pytest_sessionstart(session) -> None:
    """``install.sh --test-compiled`` sets GESTOR_EXPECT_COMPILED: the control core it tests must
    be the compiled one (a pure-Python core found first would pass the tests and prove nothing)."""
    if os.environ.get("GESTOR_EXPECT_COMPILED"):
        import importlib
        import tomllib
        names = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["gestor"]["compiled"]
        pure = [m for m in names if Path(importlib.import_module(m).__file__ or "").suffix == ".py"]
        if pure:
            pytest.exit(f"GESTOR_EXPECT_COMPILED is set but these modules are not compiled: {', '.join(pure)}", 3)

@pytest.fixture(autouse=True)
def _default_stop_dirs(tmp_path_factory, monkeypatch):
    """stop-loads always sets the latch in the default state directory (issue 32, item 4): in
    tests that is a fresh directory of its own, never the machine's /var/lib/gestor or /run/gestor."""
    d = tmp_path_factory.mktemp("default-dirs")
    monkeypatch.setenv("GESTOR_STATE_DIR", str(d / "state"))
    monkeypatch.setenv("GESTOR_RUN_DIR", str(d / "run"))


REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXAMPLE = REPO / "config" / "settings.yaml"


@pytest.fixture(scope="session")
def influxd(tmp_path_factory) -> InfluxServer:
    try:
        server = start_influxd(tmp_path_factory.mktemp("influxdb"))
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server
    server.stop()


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
                  meter_section: dict | None = None, **overrides) -> Settings:
    """Settings from the shipped example with paths under tmp_path, the test InfluxDB (or none),
    and ``overrides`` merged in (dicts are merged one level deep, other values replaced).
    ``meter_section`` replaces the replay meter section whole."""
    raw = copy.deepcopy(example_raw())
    raw["meter"]["path"] = str(DATA / "house-2022-06-11_13.csv")
    raw["meter"]["loop"] = False
    raw["paths"] = {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    raw["site"] = "test"
    if meter_section is not None:  # a whole other meter section (other driver)
        raw["meter"] = meter_section
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
