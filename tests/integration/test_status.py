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
        assert "water_heater   ON" in out and "why: steady surplus" in out  # the shipped policy's reason
        assert "stop latch  not set" in out and "pool_pump: manual override on until" in out
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
