"""A house of any shape (issue 33): ``loads: []`` is valid when ``setpoints:`` has a device, and
every program works with it. A battery alone and a modulating heater alone, through the real
programs: ``gestor check``, the daemons' cycles on a SimClock, ``gestor status``, the real
``stop-loads``, ``gestor simulate`` over a recording (the public CLI only)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import managing
import monitoring
import stop_loads
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from gestor.settings import SettingsError, load_settings, parse_settings
from gestor.sim.lockstep import run_lockstep
from tests.conftest import DATA, example_raw, settings_file

REPO = Path(__file__).resolve().parents[2]
UTC = timezone.utc
START = datetime(2022, 6, 11, 7, 0, tzinfo=UTC)   # 09:00 in Madrid, a sunny June morning
BATTERY = [{"name": "battery", "reserve_wh_per_h": 0, "deadband_w": 20,
            "device": {"driver": "simulated", "kind": "battery", "capacity_wh": 5000, "soc_pct": 20,
                       "min_soc_pct": 10, "max_charge_w": 2500, "max_discharge_w": 2500, "hold_s": 30}}]
HEATER = [{"name": "heater", "device": {"driver": "simulated", "kind": "heater", "max_charge_w": 2000,
                                        "hold_s": 30}}]   # reserve_wh_per_h: the heater's default, 300


def house(tmp: Path, devices: list[dict]) -> Path:
    """The shipped example with no on/off load and ``devices``, written to tmp/settings.yaml."""
    return settings_file(tmp, meter_updates={"start": START.isoformat(), "loop": False},
                         loads=[], setpoints=devices)


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}", stop_loads.STATE_DIR_ENV: str(tmp / "state"),
            "GESTOR_RUN_DIR": str(tmp / "run")}


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env(tmp), timeout=120)


# --- settings -----------------------------------------------------------------------------------
def test_loads_may_be_empty_when_a_setpoint_device_is_set():
    raw = example_raw()
    raw["loads"], raw["setpoints"] = [], BATTERY
    s = parse_settings(raw, "settings.yaml")
    assert s.loads == [] and [d.name for d in s.setpoints] == ["battery"]
    raw.pop("loads")   # omitted is the same as empty
    assert parse_settings(raw, "settings.yaml").loads == []


@pytest.mark.parametrize("drop", ["empty", "omitted"])
def test_neither_loads_nor_setpoints_names_both_keys(drop):
    raw = example_raw()
    if drop == "empty":
        raw["loads"] = []
    else:
        raw.pop("loads")
    with pytest.raises(SettingsError) as e:
        parse_settings(raw, "settings.yaml")
    assert len(e.value.errors) == 1
    err = e.value.errors[0]
    assert err.startswith("settings.yaml: setpoints: ") and "loads:" in err and "setpoints:" in err, err
    assert "at least one on/off load" in err and "(got loads: [] and setpoints: [])" in err


def test_gestor_check_accepts_a_battery_alone_and_refuses_an_empty_house(tmp_path):
    f = house(tmp_path, BATTERY)
    p = run(tmp_path, "-m", "gestor.cli", "check", "--config", str(f))
    assert p.returncode == 0, p.stderr
    assert "loads: []" in p.stdout and "name: battery" in p.stdout
    (tmp_path / "empty").mkdir()
    f2 = settings_file(tmp_path / "empty", loads=[])
    p = run(tmp_path, "-m", "gestor.cli", "check", "--config", str(f2))
    assert p.returncode == 2 and f"{f2}: setpoints: loads and setpoints are both empty" in p.stderr, p.stderr


# --- the daemons' cycles, status, stop-loads ----------------------------------------------------
def run_morning(f: Path, hours: float) -> tuple[managing.Managing, SimClock, monitoring.Monitoring]:
    s = load_settings(f)
    clock = SimClock(START)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    mgr.start()
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], START + timedelta(hours=hours))
    return mgr, clock, mon


@pytest.mark.parametrize("devices", [BATTERY, HEATER], ids=["battery", "heater"])
def test_managing_drives_a_house_with_a_setpoint_device_alone(tmp_path, devices):
    """Three real hours with no on/off load: the device takes the surplus, each complete period
    ends near zero (a battery: within 30 Wh; a heater, which keeps its reserve and cannot
    supply: at or above zero, within 150 Wh), managing publishes no load and the device, and its
    stop plan names the device. ``gestor status`` says there is no load."""
    f = house(tmp_path, devices)
    mgr, clock, mon = run_morning(f, 3.0)
    full = [p for p in mgr.books.closed if p.covered_s > 3000]
    assert len(full) >= 2
    dev = mgr.setpoints.devices[0]
    assert dev.taken_wh > 1000, dev.taken_wh   # it took the morning's surplus
    if devices is BATTERY:
        assert all(abs(p.balance_wh) < 30 for p in full), [round(p.balance_wh) for p in full]
    else:
        assert all(-5 < p.balance_wh < 150 for p in full), [round(p.balance_wh) for p in full]
    st = json.loads((tmp_path / "run" / "managing.json").read_text())
    assert st["loads"] == {} and list(st["setpoints"]) == [devices[0]["name"]]
    plan = json.loads((tmp_path / "state" / "stop-plan.json").read_text())
    assert plan["loads"] == [] and [d["name"] for d in plan["setpoints"]] == [devices[0]["name"]]
    p = run(tmp_path, "-m", "gestor.cli", "status", "--config", str(f))
    assert p.returncode == 0, p.stderr
    assert "loads       none (loads: [])" in p.stdout and f"setpoints   {devices[0]['name']}" in p.stdout, p.stdout
    assert mgr.stop()   # idle on exit
    name = devices[0]["name"]
    assert json.loads((tmp_path / "run" / "sim-setpoints" / f"{name}.json").read_text())["setpoint_w"] == 0


def test_stop_loads_idles_the_devices_and_says_there_were_no_loads(tmp_path):
    f = house(tmp_path, BATTERY + [{**HEATER[0], "name": "heater"}])
    mgr, clock, mon = run_morning(f, 0.5)
    assert mgr.setpoints.devices[0].state.setpoint_w > 100   # charging when the stop comes
    p = run(tmp_path, str(REPO / "src" / "stop_loads.py"), "--config", str(f))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "battery" in p.stdout and "heater" in p.stdout and p.stdout.count("OK off") == 2, p.stdout
    assert f"no on/off loads (loads: [] in {f}): its setpoint devices were idled" in p.stdout
    for name in ("battery", "heater"):
        state = json.loads((tmp_path / "run" / "sim-setpoints" / f"{name}.json").read_text())
        assert state["setpoint_w"] == 0, state
    assert (tmp_path / "state" / "stop.latch").exists()
    # the settings file broken since managing started: its stop plan still names the devices
    assert run(tmp_path, str(REPO / "src" / "stop_loads.py"), "--config", str(f), "--release").returncode == 0
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(minutes=3))
    assert mgr.setpoints.devices[0].state.setpoint_w > 100   # charging again
    f.write_text("loads: [\n")
    p = run(tmp_path, str(REPO / "src" / "stop_loads.py"), "--config", str(f))
    assert p.returncode == 1 and "switching off the loads of the stop plan" in p.stderr, p.stdout + p.stderr
    assert p.stdout.count("OK off") == 2, p.stdout
    for name in ("battery", "heater"):
        assert json.loads((tmp_path / "run" / "sim-setpoints" / f"{name}.json").read_text())["setpoint_w"] == 0


def test_an_override_names_that_there_is_no_load(tmp_path):
    f = house(tmp_path, BATTERY)
    p = run(tmp_path, "-m", "gestor.cli", "override", "water_heater", "on", "--config", str(f))
    assert p.returncode == 1, p.stdout + p.stderr   # gestor override's exit for a refused override
    assert "no load named 'water_heater' (loads: none, loads: [] in the settings)" in p.stderr, p.stderr


# --- gestor simulate (the public CLI) -----------------------------------------------------------
@pytest.mark.parametrize("devices", [BATTERY, HEATER], ids=["battery", "heater"])
def test_gestor_simulate_runs_a_house_with_a_setpoint_device_alone(tmp_path, devices):
    """``gestor simulate`` over five hours of the June recording (09:00-14:00): no on/off load, no
    switch; the device takes most of the surplus (measured: battery 86.6 %, heater 98.4 % of
    4.89 kWh) with under 10 Wh of extra import; the text report names no load."""
    f = house(tmp_path, devices)
    name = devices[0]["name"]
    span = ["--from", "2022-06-11T09:00", "--to", "2022-06-11T14:00", str(DATA / "house-2022-06-11_13.csv")]
    p = run(tmp_path, "-m", "gestor.cli", "simulate", "--config", str(f), "--json", *span)
    assert p.returncode == 0, p.stderr
    t = json.loads(p.stdout)["totals"]
    assert t["loads_wh"] == 0 and t["switches"] == 0 and t["load_wh"] == {}
    assert t["captured_pct"] > 80 and t["extra_import_wh"] < 10, t
    assert t["device_wh"][name] == pytest.approx(t["captured_wh"] + t["extra_import_wh"], abs=1)
    p = run(tmp_path, "-m", "gestor.cli", "simulate", "--config", str(f), *span)
    assert p.returncode == 0, p.stderr
    assert "policy steady_surplus, loads none, then devices " + name + " (simulated)" in p.stdout, p.stdout


def test_the_docs_heater_only_house_is_valid_settings():
    """The documentation's "A house without on/off loads" (docs/site/en/devices/index.md): its snippet, in the shipped example, is valid; its
    "no hardware" line is the heater the managing test above drives."""
    import re

    import yaml
    text = (REPO / "docs/site/en/devices/index.md").read_text()
    block = text[text.index("A house with a modulating heater only:"):]
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", block, re.S)[1])
    raw = example_raw()
    raw.update(snippet)
    s = parse_settings(raw, "settings.yaml")
    assert s.loads == [] and s.setpoints[0].device.driver == "mypv_elwa" and s.setpoints[0].reserve_wh_per_h == 300
    simulated = yaml.safe_load(re.search(r"# no hardware: (\{.*\})", block)[1])
    raw["setpoints"][0]["device"] = simulated
    assert parse_settings(raw, "settings.yaml").setpoints[0].device.kind == "heater"
    assert simulated["max_charge_w"] == HEATER[0]["device"]["max_charge_w"]
