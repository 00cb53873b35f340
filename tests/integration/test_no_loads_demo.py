"""``gestor demo --battery --no-loads`` (``./install.sh --demo --battery --no-loads``): a house with a
battery alone, the very daemons' cycles on a recorded day, the table read back from a real InfluxDB."""
from __future__ import annotations

import re
import subprocess
import sys

GESTOR = [sys.executable, "-m", "gestor.cli"]
HOUR_ROW = r"^2022-06-11 (\d\d):00(?: \*)?\s+[\d.]+\s+-?[\d.]+\s+([\d.]+)\s+([+-]\d+)\s+([+-]\d+)$"


def demo(influxd, database: str, *flags: str, days: str = "0.5", timeout_s: float = 300) -> subprocess.CompletedProcess:
    """``gestor demo`` flat out on the June recording into ``database`` of the test's InfluxDB."""
    return subprocess.run(GESTOR + ["demo", "--days", days, "--speed", "0", "--influx-port", str(influxd.port),
                                    "--database", database, *flags], capture_output=True, text=True, timeout=timeout_s)


def hour_rows(out: str) -> dict[int, tuple[float, float, float]]:
    """The demo table's rows: {local hour: (loads kWh, balance Wh, without Wh)}."""
    return {int(m[1]): (float(m[2]), float(m[3]), float(m[4])) for m in re.finditer(HOUR_ROW, out, re.M)}


def test_demo_with_a_battery_and_no_loads(influxd, influx_db):
    """The first half of the June day (02:00-14:00 CEST): no load, no switch; the 5 kWh battery
    alone (from 50 %) ends every hour up to 12:00 within 10 Wh of zero, the night's import and
    the morning's export (up to +1427 Wh an hour without gestor) alike, and is full at 13:00."""
    p = demo(influxd, influx_db, "--battery", "--no-loads")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "loads none, battery (battery 5 kWh, 2500 W)" in out, out
    assert re.search(r"switches\s+0\s+\(no on/off load\)", out), out
    assert "battery took / gave, kWh" in out
    hours = hour_rows(out)
    assert sorted(hours) == list(range(2, 14)), out
    assert all(loads_kwh == 0 for loads_kwh, _, _ in hours.values())
    assert all(abs(hours[h][1]) <= 10 for h in range(2, 13)), out
    assert min(hours[h][2] for h in range(2, 7)) < -100 and max(hours[h][2] for h in range(9, 13)) > 1000
    assert hours[13][1] > 1000 and "state of charge 100 % at the end" in out   # full: the rest is exported


def test_demo_no_loads_without_a_device_is_a_clear_error(influxd, influx_db):
    p = demo(influxd, influx_db, "--no-loads", days="0.01", timeout_s=120)
    assert p.returncode != 0 and "demo --no-loads: no device left to drive: add --battery or --heater" in p.stderr, p.stderr


def test_demo_with_a_heater_and_no_loads(influxd, influx_db):
    """``--heater --no-loads``: a 2 kW modulating heater alone on the sunny June morning (02:00-14:00
    CEST). It takes the surplus the loads would have (more than 1 kWh in each of 10:00-13:00, where
    the house exports more than 1 kWh an hour without gestor), never below zero, and the night's
    import is what it was: a heater cannot give energy back."""
    p = demo(influxd, influx_db, "--heater", "--no-loads")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "loads none, heater (heater, 2000 W)" in out, out
    hours = hour_rows(out)
    assert sorted(hours) == list(range(2, 14)), out
    assert all(with_wh == without_wh for _, with_wh, without_wh in (hours[h] for h in range(2, 7))), out
    sunny = [h for h in range(10, 14) if hours[h][2] > 1000]
    assert sunny and all(hours[h][1] < hours[h][2] - 1000 for h in sunny), out
    m = re.search(r"heater took / gave, kWh\s+([\d.]+)\s+([\d.]+)", out)
    assert m and float(m[1]) > 3.0 and float(m[2]) == 0.0, out


def test_demo_heater_power_must_be_positive(influxd, influx_db):
    p = demo(influxd, influx_db, "--heater", "-5", days="0.01", timeout_s=120)
    assert p.returncode != 0 and "demo --heater: the heater's power in W must be > 0" in p.stderr, p.stderr
