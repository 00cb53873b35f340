"""Finding 05: stop-loads confirms a relay it could not reach because managing reports a load of
the same *name* off, on another relay.

What happens: the household moves the water heater to a new Shelly and edits settings.yaml;
managing still runs the old file (its stop plan: the old relay). stop-loads switches off the union
(the plan's old relay, and the new Shelly from the file). The new Shelly refuses it (here: a wrong
password; equally an unreachable device) and is still on. ``_through_managing`` then waits for
managing to report every *load name* in ``bad`` off, and managing reports ``water_heater`` off --
its old relay. stop-loads marks the new Shelly ``OK off (via managing)`` and exits 0.

Class: the emergency stop's confirmation (class 2): "confirmed through managing" is matched by
load name, not by the relay managing actually drives.
Consequence: the table and the exit code say every load is off while the new Shelly's load runs.
Severity: stop lies.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

import stop_loads
from tests.conftest import REPO, free_port, settings_file
from tests.emulators.http_devices import ShellyRelayDevice


def test_a_relay_stop_loads_could_not_switch_is_not_confirmed_by_another_relays_off(tmp_path, monkeypatch, capsys):
    sim = {"driver": "simulated"}
    f = settings_file(tmp_path, loads=[{"name": "water_heater", "power_w": 1000, "relay": sim}],
                      managing={"interval_s": 1.0})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "GESTOR_ALLOW_MANUAL_MANAGING": "1"}
    mgr = subprocess.Popen([sys.executable, "-m", "gestor.cli", "managing", "--config", str(f)], env=env,
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "managing.err", "w"))
    dev = ShellyRelayDevice(free_port(), 2, load_w=1000.0).start()
    try:
        run = tmp_path / "run"
        for _ in range(200):  # managing started: its plan saved and a cycle published
            if (tmp_path / "state" / stop_loads.PLAN_FILE).exists() and (run / "managing.json").exists():
                break
            time.sleep(0.1)
        assert json.loads((run / "managing.json").read_text())["pid"] == mgr.pid
        # the new relay of the water heater: on, and refusing stop-loads (wrong password)
        dev.auth = ("digest", "admin", "the-real-one")
        dev.output = True
        raw = yaml.safe_load(f.read_text())
        raw["loads"] = [{"name": "water_heater", "power_w": 1000,
                         "relay": {"driver": "shelly", "host": f"127.0.0.1:{dev.port}", "password": "wrong",
                                   "timeout_s": 1}}]
        f.write_text(yaml.safe_dump(raw))
        monkeypatch.setenv(stop_loads.STATE_DIR_ENV, str(tmp_path / "state"))
        monkeypatch.setenv("GESTOR_ALLOW_MANUAL_MANAGING", "1")
        code = stop_loads.main(["--config", str(f), "--deadline-s", "15"], hard_exit=False)
        out = capsys.readouterr()
        assert dev.is_on()  # the new Shelly's load runs
        assert code == 1, f"stop-loads exited 0 with the water heater's new Shelly on:\n{out.out}"
        assert "NOT CONFIRMED" in out.err
    finally:
        dev.stop()
        if mgr.poll() is None:
            os.kill(mgr.pid, signal.SIGTERM)
            mgr.wait(30)
