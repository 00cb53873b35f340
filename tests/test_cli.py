"""The commands a user runs: stop-loads, and clear one-line errors for bad input."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from drivers import DriverContext
from drivers.relays.simulated import SimulatedRelay, SimulatedRelaySettings
from gestor.clock import WallClock
from tests.conftest import example_raw, free_port, settings_file

GESTOR = [sys.executable, "-m", "gestor.cli"]
STOP = [sys.executable, "-m", "stop_loads"]


def relay(tmp_path, load, power_w=1000.0):
    ctx = DriverContext(WallClock(), tmp_path / "run", tmp_path)
    return SimulatedRelay(SimulatedRelaySettings(), ctx, load, power_w)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_stop_loads_switches_everything_off_and_sets_the_latch(tmp_path):
    f = settings_file(tmp_path)
    relay(tmp_path, "water_heater").set(True)
    relay(tmp_path, "pool_pump", 700).set(True)
    p = run(STOP + ["--config", str(f)])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "stop latch set" in lines[0]
    table = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert table["water_heater"][1:5] == ["simulated", "on", "off", "OK"]
    assert table["pool_pump"][1:5] == ["simulated", "on", "off", "OK"]
    assert relay(tmp_path, "water_heater").state() is False
    assert (tmp_path / "state" / "stop.latch").exists()
    p = run(STOP + ["--config", str(f), "--release"])
    assert p.returncode == 0 and "released" in p.stdout
    assert not (tmp_path / "state" / "stop.latch").exists()


def test_stop_loads_says_loudly_when_a_relay_does_not_confirm(tmp_path):
    raw_loads = example_raw()["loads"]
    raw_loads[1]["relay"] = {"driver": "simulated", "fault": "no_answer"}
    f = settings_file(tmp_path, loads=raw_loads)
    relay(tmp_path, "water_heater").set(True)
    p = run(STOP + ["--config", str(f)])
    assert p.returncode == 1
    assert "STOP-LOADS: load pool_pump NOT CONFIRMED OFF (simulated): simulated relay pool_pump: no answer" in p.stderr
    assert relay(tmp_path, "water_heater").state() is False  # the others still went off
    assert (tmp_path / "state" / "stop.latch").exists()  # and the latch is set first


def test_stop_loads_stuck_relay_is_reported(tmp_path):
    raw_loads = example_raw()["loads"]
    raw_loads[0]["relay"] = {"driver": "simulated", "fault": "stuck_on"}
    f = settings_file(tmp_path, loads=raw_loads)
    p = run(STOP + ["--config", str(f), "--no-latch"])
    assert p.returncode == 1 and "water_heater NOT CONFIRMED OFF" in p.stderr
    assert not (tmp_path / "state" / "stop.latch").exists()


def test_stop_loads_console_script_and_gestor_subcommand_agree(tmp_path):
    f = settings_file(tmp_path)
    assert run(GESTOR + ["stop-loads", "--config", str(f), "--no-latch"]).returncode == 0


def test_monitoring_with_a_missing_csv_says_so_in_one_line(tmp_path):
    raw = example_raw()["meter"]
    raw["path"] = str(tmp_path / "missing.csv")
    f = settings_file(tmp_path, meter=raw)
    p = run(GESTOR + ["monitoring", "--config", str(f)])
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == (
        f"gestor monitoring: error: replay file {tmp_path / 'missing.csv'}: No such file or directory")
    assert "Traceback" not in p.stderr


def test_csv_without_the_mapped_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,power\n2022-06-11 10:00:00,5\n")
    raw = example_raw()["meter"]
    raw["path"] = str(bad)
    f = settings_file(tmp_path, meter=raw)
    p = run(GESTOR + ["monitoring", "--config", str(f)])
    assert p.returncode == 1 and "no column timestamp, powerP, powerC, powerL1, powerL2" in p.stderr
    assert "Traceback" not in p.stderr


def test_unreachable_influxdb_is_named_and_the_daemons_run_on_spooling(tmp_path):
    """InfluxDB down at start is not fatal: the daemon names the address, spools, keeps working."""
    port = free_port()  # nothing listens there
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": "127.0.0.1", "port": port},
                      monitoring={"interval_s": 0.5})
    p = subprocess.Popen(GESTOR + ["monitoring", "--config", str(f)], stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert f"InfluxDB http://127.0.0.1:{port} not answering" in line and "spooling to" in line
        spool = tmp_path / "state" / "spool" / "monitoring"
        deadline = time.monotonic() + 20
        live = tmp_path / "run" / "reading.json"
        # (the writer thread may spool a reading a moment before monitoring publishes it)
        while not (list(spool.glob("*.lp")) and live.exists()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(spool.glob("*.lp")), "nothing spooled"
        assert live.exists()   # managing still gets its readings
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
    assert "Traceback" not in p.stderr.read()


def test_unknown_driver_stops_before_anything_starts(tmp_path):
    f = settings_file(tmp_path, meter={"driver": "sdm999"})
    p = run(GESTOR + ["managing", "--config", str(f)])
    assert p.returncode == 2 and "meter.driver: unknown driver 'sdm999'" in p.stderr
    assert not (tmp_path / "run").exists()


def test_demo_runs_and_prints_the_table(influxd, influx_db):
    p = run(GESTOR + ["demo", "--days", "0.125", "--speed", "0", "--influx-port", str(influxd.port),
                      "--database", influx_db])
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "hour (Europe/Madrid)" in out and "surplus captured" in out
    hours = [ln for ln in out.splitlines() if re.match(r"2022-06-11 0\d:00( \*)?\s+\d", ln)]
    assert len(hours) == 3  # 02:00, 03:00, 04:00 CEST
    assert f"-database {influx_db}" in out
    c = influxd.client(influx_db)
    assert len(list(c.query("SELECT * FROM period").get_points())) == 3
    c.close()


def test_check_says_whether_the_web_password_is_set(tmp_path, capsys):
    """web.password_hash shows null in the resolved settings when the password lives in
    secrets.yaml (the default): gestor check says which it is (issue 23)."""
    from gestor.cli import main
    from gestor.settings import load_settings
    from gestor.web.auth import set_password
    from tests.conftest import settings_file
    f = settings_file(tmp_path)
    assert main(["check", "--config", str(f)]) == 0
    assert "# web password: NOT SET" in capsys.readouterr().out
    set_password(load_settings(f), "correct horse battery")
    assert main(["check", "--config", str(f)]) == 0
    out = capsys.readouterr().out
    assert "# web password: set (an argon2 hash" in out and "$argon2" not in out


def _reader_gone(cmd, unbuffered):
    """``cmd`` with its standard output a pipe whose reader is already gone (as ``| head -1`` once
    head has exited): every write fails with EPIPE, deterministically. ``unbuffered``: each print
    writes at once (PYTHONUNBUFFERED=1), else the first write is the flush at exit."""
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    try:
        p = subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    finally:
        os.close(w)
    return p


@pytest.mark.parametrize("unbuffered", [False, True], ids=["at-exit", "at-once"])
@pytest.mark.parametrize("args", [["check"], ["status"], ["--help"], ["check", "--help"], ["stop-loads", "--no-latch"],
                                  ["STOP", "--help"], ["STOP", "--release"]],
                         ids=["check", "status", "help", "check-help", "stop-loads", "stop-loads-help", "release"])
def test_a_reader_that_goes_away_ends_every_command_quietly(tmp_path, args, unbuffered):
    """Issue 32 (small): ``gestor check ... | head -1`` ended in a traceback."""
    f = settings_file(tmp_path)
    cmd = (STOP + args[1:] if args[0] == "STOP" else GESTOR + args) + ([] if "--help" in args else ["--config", str(f)])
    p = _reader_gone(cmd, unbuffered)
    assert "Traceback" not in p.stderr and "BrokenPipeError" not in p.stderr and "Exception ignored" not in p.stderr, \
        p.stderr
    assert p.returncode in (0, 141), (p.returncode, p.stderr)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["at-exit", "at-once"])
def test_stop_loads_whose_reader_goes_away_still_stops_everything(tmp_path, unbuffered):
    """The table cannot be written: every load is still switched off, the latch set, the warnings
    still on stderr and the exit code the stop's own."""
    raw_loads = example_raw()["loads"]
    raw_loads[1]["relay"] = {"driver": "simulated", "fault": "no_answer"}
    f = settings_file(tmp_path, loads=raw_loads)
    relay(tmp_path, "water_heater").set(True)
    p = _reader_gone(STOP + ["--config", str(f)], unbuffered)
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr
    assert relay(tmp_path, "water_heater").state() is False and (tmp_path / "state" / "stop.latch").exists()
    assert p.returncode == 1 and "load pool_pump NOT CONFIRMED OFF" in p.stderr
