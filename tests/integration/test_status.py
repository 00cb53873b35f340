"""gestor status with the real daemons running, and after they stopped."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from gestor.cli import main
from tests.conftest import free_port, settings_file
from tests.integration.test_safety import _relay_on, _wait, sunny_csv


def test_status_running_then_stopped(tmp_path, influxd, influx_db, capsys):
    # `gestor status` reads the wall clock, so the daemons run on it too: in the last minutes of a
    # settlement period no policy switches a load on for what is left, so start in the next one
    left_s = 3600 - time.time() % 3600
    if left_s < 180:
        time.sleep(left_s + 1)
    csv = sunny_csv(tmp_path / "sun.csv", 60)
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                       "database": influx_db},
                      meter_updates={"path": str(csv), "loop": True}, monitoring={"interval_s": 0.5},
                      managing={"interval_s": 0.5, "stale_after_s": 30})
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "gestor.cli"]
    procs = [subprocess.Popen(cmd + ["monitoring", "--config", str(f)], env=env, stderr=subprocess.DEVNULL)]
    try:
        assert _wait(lambda: (run_dir / "reading.json").exists())
        procs.append(subprocess.Popen(cmd + ["managing", "--config", str(f)], env=env, stderr=subprocess.DEVNULL))
        assert _wait(lambda: _relay_on(run_dir, "water_heater") and _relay_on(run_dir, "pool_pump"))
        assert _wait(lambda: (run_dir / "managing.json").exists() and
                     json.loads((run_dir / "managing.json").read_text())["loads"]["pool_pump"]["on"])
        assert main(["override", "pool_pump", "on", "--for", "1h", "--config", str(f)]) == 0
        capsys.readouterr()
        assert main(["status", "--config", str(f)]) == 0
        out = capsys.readouterr().out
        (tmp_path / "status-sample.txt").write_text(out)
        assert "monitoring: running" in out and "managing: running" in out
        assert "net +" in out and "(exporting)" in out and "production 4,000 W" in out
        assert "water_heater   ON" in out and "why: a steady surplus of " in out  # the shipped policy's reason, in words
        assert "stop latch  not set" in out and "pool_pump: switched on by hand until" in out
        assert f"InfluxDB http://127.0.0.1:{influxd.port} reachable (version 1." in out
        assert main(["status", "--json", "--config", str(f)]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["managing"]["running"] and d["loads"]["water_heater"]["on"] is True
        assert d["period"]["remaining_s"] > 0 and d["store"]["reachable"]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(20)
    assert main(["stop-loads", "--config", str(f)]) == 0
    capsys.readouterr()
    assert main(["status", "--config", str(f)]) == 0
    out = capsys.readouterr().out
    assert "monitoring: NOT RUNNING" in out and "managing: NOT RUNNING" in out
    assert "managing's last state" in out and "stop latch  SET" in out
    # InfluxDB away: says so, and how much waits in the spool
    g = settings_file(tmp_path, store={"kind": "influxdb1", "host": "127.0.0.1", "port": free_port()},
                      meter_updates={"path": str(csv)})
    spool = tmp_path / "state" / "spool" / "monitoring"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "000001.lp").write_text("meter,site=t net_w=1 1\n" * 100)
    assert main(["status", "--config", str(g)]) == 0
    out = capsys.readouterr().out
    assert "InfluxDB NOT REACHABLE" in out and "monitoring 2.3 kB" in out


def test_status_after_managing_stopped_or_was_killed(tmp_path, caplog):
    """managing's exit publishes its last state (every load off, confirmed): gestor status shows
    them off. After a kill nothing could say so: the loads show as unknown, not as they were.
    The latch's changes leave a journal line even while every load is off; the start's "every
    load off" is no switch."""
    import logging
    from datetime import timedelta

    from gestor.runtime import status
    from gestor.sim.lockstep import run_lockstep
    from gestor.runtime.livestate import clear_latch, set_latch
    from tests.integration.test_faults import daemons
    from tests.integration.test_safety import T0
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 20))
    assert sum(mgr.books.switches_today.values()) == 0 and mgr.relays.switches_total == 0  # the start's off: no switch
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=3))
    assert status.collect(s, clock.now(), ping=False)["loads"]["water_heater"]["on"] is True
    with caplog.at_level(logging.WARNING, "gestor"):
        set_latch(s.paths.state_dir, clock.now(), "test")
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=4))
        clear_latch(s.paths.state_dir)
        clock.advance(10)
        mgr.cycle()
        assert caplog.text.count("stop latch released") == 1
        assert status.collect(s, clock.now(), ping=False)["loads"]["pool_pump"]["reason"] == \
            "the stop latch is released: the policy decides"  # not "stop latch set" any more
        set_latch(s.paths.state_dir, clock.now(), "test")  # set again while every load is off (min_off_s)
        clock.advance(10)
        mgr.cycle()
    assert not any(ld.on for ld in mgr.loads)
    assert caplog.text.count("stop latch set") == 2
    assert mgr.stop() is True
    d = status.collect(s, clock.now(), ping=False)
    assert d["loads"]["water_heater"]["on"] is False and d["loads"]["pool_pump"]["on"] is False
    # a managing killed with a load on: its file says on, its pid is gone
    f = s.paths.run_dir / "managing.json"
    gone = subprocess.Popen(["true"])
    gone.wait()
    st = json.loads(f.read_text())
    st.update(pid=gone.pid, stopped=False)
    st["loads"]["water_heater"]["on"] = True
    f.write_text(json.dumps(st))
    d = status.collect(s, clock.now(), ping=False)
    assert d["loads"]["water_heater"]["on"] is None and "unknown: managing" in d["loads"]["water_heater"]["reason"]
    assert "?UNKNOWN" in status.render(d, s)


def test_status_after_managing_stopped_shows_the_period_it_stopped_in(tmp_path):
    """Issue 32 (small): after managing stopped, ``gestor status`` showed a zero-length period
    (``period 04:12-04:12 ... 0 s left``): managing's exit published now as the period's bounds."""
    from datetime import datetime, timedelta

    from gestor.runtime import status
    from gestor.sim.lockstep import run_lockstep
    from tests.integration.test_faults import daemons
    from tests.integration.test_safety import T0
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 20))
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=3))
    clock.advance(7)  # stopped between two cycles
    assert mgr.stop() is True
    now = clock.now()
    d = status.collect(s, now, ping=False)
    start, end = (datetime.fromisoformat(d["period"][k]) for k in ("start", "end"))
    assert start <= now < end and (end - start).total_seconds() == s.billing.period_s, d["period"]
    assert d["period"]["remaining_s"] == (end - now).total_seconds()
    text = status.render(d, s)
    assert f"period      {start.astimezone(s.tz):%H:%M}-{end.astimezone(s.tz):%H:%M}: " in text, text
    # read after that period ended: it says so, not "0 s left"
    later = status.render(status.collect(s, end + timedelta(minutes=5), ping=False), s)
    assert "Wh, over" in later and " 0 s left" not in later
