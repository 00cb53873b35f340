"""The HTTP meter families end to end: monitoring reads the emulated Fronius / Wibeee (recorded
answers, their power fields played from the recorded house, both signs) and what the real
InfluxDB stores is what the device served; a fault in the middle is a missing reading."""
from __future__ import annotations

import pytest

from tests.conftest import free_port, make_settings
from tests.emulators.http_meters import FroniusDatamanager, Wibeee
from tests.integration.test_meters import house_rows, run_monitoring, stored


def test_fronius_readings_reach_influxdb_as_served(tmp_path, influxd, influx_db):
    dev = FroniusDatamanager(free_port()).use("noon").start()
    try:
        rows = house_rows(60)
        imp, exp = 15305334.0, 35635065.0
        served = []

        def serve(i: int) -> None:
            nonlocal imp, exp
            if i:
                e_wh = (rows[i - 1]["net_w"] + rows[i]["net_w"]) / 2 * 10.0 / 3600.0
                imp, exp = imp + max(-e_wh, 0.0), exp + max(e_wh, 0.0)
            dev.set_net(rows[i]["net_w"], round(imp), round(exp), pv_w=rows[i]["production_w"])
            dev.fault = "503" if i == 30 else None
            served.append((rows[i]["net_w"], round(imp), round(exp)))
        s = make_settings(tmp_path, influxd, influx_db, meter_section={
            "driver": "fronius", "host": "127.0.0.1", "port": dev.port, "read_production": True})
        mon, got = run_monitoring(s, len(rows), serve)
        assert [r is None for r in got] == [i == 30 for i in range(len(rows))]  # the busy one: missing
        assert mon.failures == 1
        pts = stored(influxd, influx_db)
        want = [x for i, x in enumerate(served) if i != 30]
        assert [p["net_w"] for p in pts] == pytest.approx([w[0] for w in want], abs=1e-9)
        assert [p["import_wh_total"] for p in pts] == [w[1] for w in want]
        assert [p["export_wh_total"] for p in pts] == [w[2] for w in want]
        assert [p["production_w"] for p in pts] == pytest.approx(
            [r["production_w"] for i, r in enumerate(rows) if i != 30], abs=1e-9)
        # both signs played: a sign flip would not pass unnoticed
        assert min(w[0] for w in want) < 0 < max(w[0] for w in want)
    finally:
        dev.stop()


def test_wibeee_three_phases_reach_influxdb_as_served(tmp_path, influxd, influx_db):
    dev = Wibeee(free_port()).use("export").start()
    try:
        rows = house_rows(60)

        def serve(i: int) -> None:  # phase 3 draws 150 W while the house's net is on phases 1-2
            net = rows[i]["net_w"]
            dev.set_phase(1, -(net + 150.0) / 2)
            dev.set_phase(2, -(net + 150.0) / 2)
            dev.set_phase(3, 150.0)
            dev.fault = "drop" if i == 20 else None
        s = make_settings(tmp_path, influxd, influx_db, meter_section={
            "driver": "wibeee", "host": "127.0.0.1", "port": dev.port, "phases": 3})
        mon, got = run_monitoring(s, len(rows), serve)
        assert [r is None for r in got] == [i == 20 for i in range(len(rows))]
        want = [r["net_w"] for i, r in enumerate(rows) if i != 20]
        # status.xml carries two decimals per phase
        assert [p["net_w"] for p in stored(influxd, influx_db)] == pytest.approx(want, abs=0.011)
        assert min(want) < 0 < max(want)
    finally:
        dev.stop()
