"""Safety, end to end: loads off on a stale meter, under the stop latch, and on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import managing
import monitoring
import stop_loads
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from tests.conftest import make_settings, settings_file, write_csv

UTC = timezone.utc
T0 = datetime(2022, 6, 11, 10, 0, 0, tzinfo=UTC)
HEADER = "timestamp,energyB,energyP,on_offL1,on_offL2,powerC,powerP,powerL1,powerL2,powerA"


def sunny_csv(path: Path, minutes: int, gap: tuple[int, int] | None = None) -> Path:
    """4000 W produced, 500 W consumed, a sample every 10 s; no samples in the gap (minutes)."""
    rows = []
    for i in range(minutes * 6):
        t = T0 + timedelta(seconds=10 * i)
        if gap and gap[0] * 60 <= 10 * i < gap[1] * 60:
            continue
        rows.append(f"{t:%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,4000,0,0,3500")
    return write_csv(path, HEADER, rows)


def run(tmp_path, csv, minutes, between=None):
    s = make_settings(tmp_path, meter={"path": str(csv)})
    clock = SimClock(T0)
    mon = monitoring.Monitoring(s, clock, NullStore())
    mgr = managing.Managing(s, clock, NullStore())
    trace: list[tuple[datetime, tuple[bool | None, ...], str]] = []

    def record():
        trace.append((clock.now(), tuple(ld.on for ld in mgr.loads), mgr.loads[0].reason))

    mgr.start()
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle), (10, record)], T0 + timedelta(minutes=minutes))
    mgr.stop()
    return s, mgr, trace


def test_stale_meter_switches_every_load_off_then_recovers(tmp_path):
    csv = sunny_csv(tmp_path / "gap.csv", 40, gap=(10, 20))
    s, mgr, trace = run(tmp_path, csv, 40)
    on_before = [on for t, on, _ in trace if T0 + timedelta(minutes=5) <= t < T0 + timedelta(minutes=10)]
    assert on_before and all(all(x) for x in on_before)  # both loads on under a big surplus
    last_sample = T0 + timedelta(minutes=10) - timedelta(seconds=10)
    deadline = last_sample + timedelta(seconds=s.managing.stale_after_s + s.managing.interval_s)
    off = [(t, why) for t, on, why in trace if not any(on) and t > T0 + timedelta(minutes=10)]
    assert off, "loads were never switched off during the gap"
    assert off[0][0] <= deadline
    assert "meter stale" in off[0][1]
    during_gap = [on for t, on, _ in trace if deadline <= t < T0 + timedelta(minutes=20)]
    assert during_gap and not any(any(on) for on in during_gap)
    assert any(all(on) for t, on, _ in trace if t > T0 + timedelta(minutes=25))  # back on after


def test_stop_latch_keeps_loads_off_until_released(tmp_path):
    csv = sunny_csv(tmp_path / "sun.csv", 60)
    f = settings_file(tmp_path, meter_updates={"path": str(csv), "loop": True})
    s = make_settings(tmp_path, meter={"path": str(csv)})
    clock = SimClock(T0)
    mon = monitoring.Monitoring(s, clock, NullStore())
    mgr = managing.Managing(s, clock, NullStore())
    mgr.start()
    tasks = [(5, mon.cycle), (10, mgr.cycle)]
    run_lockstep(clock, tasks, T0 + timedelta(minutes=5))
    assert all(ld.on for ld in mgr.loads)
    assert stop_loads.main(["--config", str(f)]) == 0
    assert (tmp_path / "state" / "stop.latch").exists()
    run_lockstep(clock, tasks, T0 + timedelta(minutes=15))
    assert not any(ld.on for ld in mgr.loads)
    assert all("stop latch" in ld.reason for ld in mgr.loads)
    assert stop_loads.main(["--config", str(f), "--release"]) == 0
    run_lockstep(clock, tasks, T0 + timedelta(minutes=20))
    assert all(ld.on for ld in mgr.loads)


def _relay_on(run_dir: Path, load: str) -> bool | None:
    try:
        return json.loads((run_dir / "sim-relays" / f"{load}.json").read_text())["on"]
    except (OSError, ValueError):
        return None


def clock_env() -> dict[str, str]:
    """The real daemons on their own clock, started at T0 (10:00 UTC, a whole hour left in the
    period) at real speed: what they decide never depends on the minute the test starts at."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "GESTOR_CLOCK": f"{T0.isoformat()}@{time.time()}*1"}


def _wait(pred, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_daemons_as_processes_switch_on_and_sigterm_switches_off(tmp_path):
    """The real `gestor monitoring` and `gestor managing` processes on the wall clock: managing
    switches the loads on under surplus, and SIGTERM leaves every load off."""
    csv = sunny_csv(tmp_path / "sun.csv", 60)
    f = settings_file(tmp_path, meter_updates={"path": str(csv), "loop": True}, monitoring={"interval_s": 0.5},
                      managing={"interval_s": 0.5, "stale_after_s": 30})
    run_dir = tmp_path / "run"
    env = clock_env()
    mon = subprocess.Popen([sys.executable, "-m", "gestor.cli", "monitoring", "--config", str(f)],
                           stderr=subprocess.PIPE, text=True, env=env)
    mgr = None
    try:
        assert _wait(lambda: (run_dir / "reading.json").exists()), "monitoring published nothing"
        mgr = subprocess.Popen([sys.executable, "-m", "gestor.cli", "managing", "--config", str(f)],
                               stderr=subprocess.PIPE, text=True, env=env)
        assert _wait(lambda: _relay_on(run_dir, "water_heater") and _relay_on(run_dir, "pool_pump")), \
            "managing did not switch the loads on"
        mgr.send_signal(signal.SIGTERM)
        assert mgr.wait(15) == 0
        err = mgr.stderr.read()
        assert "load water_heater OFF: exit" in err and "load pool_pump OFF: exit" in err
        assert "load water_heater ON: steady surplus" in err  # the shipped policy's reason
        assert _relay_on(run_dir, "water_heater") is False and _relay_on(run_dir, "pool_pump") is False
    finally:
        for p in (mon, mgr):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)


def test_stop_loads_when_only_managing_can_reach_the_relays(tmp_path, capsys):
    """A GPIO line is held by managing: stop-loads cannot switch it itself. With the latch set, a
    running managing switches it off and says so; a hung managing is stopped (its lines released).
    Emulated with a stop-loads config whose relays do not answer, on managing's state and run dirs."""
    csv = sunny_csv(tmp_path / "sun.csv", 60)
    f = settings_file(tmp_path, meter_updates={"path": str(csv), "loop": True}, monitoring={"interval_s": 0.5},
                      managing={"interval_s": 0.5, "stale_after_s": 30})
    import yaml
    raw = yaml.safe_load(f.read_text())
    for ld in raw["loads"]:
        ld["relay"] = {"driver": "simulated", "fault": "no_answer"}
    g = tmp_path / "stop-side.yaml"
    g.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    env = clock_env()
    procs = [subprocess.Popen([sys.executable, "-m", "gestor.cli", "monitoring", "--config", str(f)],
                              stderr=subprocess.DEVNULL, env=env)]
    try:
        assert _wait(lambda: (run_dir / "reading.json").exists())
        procs.append(subprocess.Popen([sys.executable, "-m", "gestor.cli", "managing", "--config", str(f)],
                                      stderr=subprocess.DEVNULL, env=env))
        assert _wait(lambda: _relay_on(run_dir, "water_heater") and _relay_on(run_dir, "pool_pump"))
        assert stop_loads.main(["--config", str(g), "--timeout-s", "1"]) == 0
        out = capsys.readouterr().out
        assert "(via managing)" in out and "NOT CONFIRMED" not in out
        assert _relay_on(run_dir, "water_heater") is False and procs[1].poll() is None
        # now managing hangs: stop-loads stops it, and says the relays are still not confirmed
        procs[1].send_signal(signal.SIGSTOP)
        assert stop_loads.main(["--config", str(g), "--timeout-s", "1"]) == 1
        captured = capsys.readouterr()
        assert "did not confirm: stopping it" in captured.err
        assert procs[1].wait(10) != 0      # killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
