"""``gestor demo --battery --no-loads`` (``./install.sh --demo --battery --no-loads``): a house with a
battery alone, the very daemons' cycles on a recorded day, the table read back from a real InfluxDB."""
from __future__ import annotations

import re
import subprocess
import sys

GESTOR = [sys.executable, "-m", "gestor.cli"]


def test_demo_with_a_battery_and_no_loads(influxd, influx_db):
    """The first half of the June day (02:00-14:00 CEST): no load, no switch; the 5 kWh battery
    alone (from 50 %) ends every hour up to 12:00 within 10 Wh of zero, the night's import and
    the morning's export (up to +1427 Wh an hour without gestor) alike, and is full at 13:00."""
    p = subprocess.run(GESTOR + ["demo", "--days", "0.5", "--speed", "0", "--influx-port", str(influxd.port),
                                 "--database", influx_db, "--battery", "--no-loads"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "loads none, battery (battery 5 kWh, 2500 W)" in out, out
    assert re.search(r"switches\s+0\s+\(no on/off load\)", out), out
    assert "battery took / gave, kWh" in out
    hours = {int(m[1]): (float(m[2]), float(m[3]), float(m[4])) for m in
             re.finditer(r"^2022-06-11 (\d\d):00(?: \*)?\s+[\d.]+\s+-?[\d.]+\s+([\d.]+)\s+([+-]\d+)\s+([+-]\d+)$",
                         out, re.M)}
    assert sorted(hours) == list(range(2, 14)), out
    assert all(loads_kwh == 0 for loads_kwh, _, _ in hours.values())
    assert all(abs(hours[h][1]) <= 10 for h in range(2, 13)), out
    assert min(hours[h][2] for h in range(2, 7)) < -100 and max(hours[h][2] for h in range(9, 13)) > 1000
    assert hours[13][1] > 1000 and "state of charge 100 % at the end" in out   # full: the rest is exported


def test_demo_no_loads_without_a_device_is_a_clear_error(influxd, influx_db):
    p = subprocess.run(GESTOR + ["demo", "--days", "0.01", "--speed", "0", "--influx-port", str(influxd.port),
                                 "--database", influx_db, "--no-loads"], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "demo --no-loads: no device left to drive: add --battery" in p.stderr, p.stderr
