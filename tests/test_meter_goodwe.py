"""The ``goodwe`` meter driver against a UDP emulator on loopback (127.88.x.y:8899) answering the
goodwe library's requests with real inverters' recorded answers (tests/data/meters/goodwe/,
SOURCE.md there): the library itself is the client. Each test checks the sign: export reads
positive ``net_w``."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from drivers import DriverContext
from drivers.meters.base import METERS, MeterError
from gestor.clock import SimClock
from gestor.settings import SettingsError
from tests.conftest import make_settings
from tests.emulators.goodwe_udp import GoodweTcp, GoodweUdp, es_running, et_meter, patch_rtu, recorded

T0 = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)


def open_meter(emu: GoodweUdp, **kw):
    model, factory = METERS["goodwe"]
    s = model(host=emu.host, **{"timeout_s": 0.3, "retries": 1, **kw})
    return factory(s, DriverContext(SimClock(T0), Path("/nonexistent"), Path("/nonexistent")))


@pytest.fixture
def emulator(request):
    emu = GoodweUdp(request.param)
    yield emu
    emu.close()


@pytest.mark.parametrize("emulator", ["ET"], indirect=True)
def test_et_recorded_answer_reads_the_grid_meter_export_positive_with_its_counters(emulator):
    m = open_meter(emulator, family="ET")
    r = m.read()
    # GW20K-ET recorded: meter_active_power_total +1556 W exporting; 0.15 / 35.55 kWh counters
    assert r.net_w == 1556.0 and r.net_w > 0
    assert (r.import_wh_total, r.export_wh_total) == (150.0, 35550.0)
    assert r.at == T0
    m.close()


@pytest.mark.parametrize("emulator", ["ET"], indirect=True)
def test_et_a_real_noon_and_a_real_night(emulator):
    """The recorded meter answer with only its power and energy registers changed (CRC recomputed):
    a noon exporting 2480 W, then a night importing 350 W; the counters follow."""
    m = open_meter(emulator, family="ET")
    meter = recorded("GW20K-ET_meter_data")
    emulator.modbus[(0x8CA0, 0x7D)] = et_meter(meter, 2480, import_wh=1_234_560, export_wh=2_345_670)
    noon = m.read()
    emulator.modbus[(0x8CA0, 0x7D)] = et_meter(meter, -350, import_wh=1_235_020, export_wh=2_351_230)
    night = m.read()
    assert noon.net_w == 2480.0 > 0
    assert night.net_w == -350.0 < 0
    assert (noon.import_wh_total, noon.export_wh_total) == (1_234_560.0, 2_345_670.0)
    assert (night.import_wh_total, night.export_wh_total) == (1_235_020.0, 2_351_230.0)


def test_et_over_modbus_tcp():
    """Any port but 8899 is the library's Modbus TCP: the same recorded registers, reframed."""
    emu = GoodweTcp("ET")
    try:
        model, factory = METERS["goodwe"]
        s = model(host="127.0.0.1", port=emu.port, family="ET", timeout_s=0.5, retries=1)
        m = factory(s, DriverContext(SimClock(T0), Path("/nonexistent"), Path("/nonexistent")))
        r = m.read()
        assert (r.net_w, r.import_wh_total, r.export_wh_total) == (1556.0, 150.0, 35550.0)
    finally:
        emu.close()


@pytest.mark.parametrize("emulator", ["ES"], indirect=True)
def test_es_recorded_then_noon_and_night_signed_by_grid_in_out(emulator):
    m = open_meter(emulator, family="ES")
    r = m.read()
    assert r.net_w == 807.0 > 0            # GW5048-ESA recorded: pgrid 807 W, grid_in_out 1 (exporting)
    assert r.import_wh_total is None and r.export_wh_total is None   # ES: no counters
    run = recorded("GW5048-ESA_running_data")
    emulator.aa55[bytes.fromhex("010600")] = es_running(run, 3100)
    assert m.read().net_w == 3100.0
    emulator.aa55[bytes.fromhex("010600")] = es_running(run, -420)
    assert m.read().net_w == -420.0


@pytest.mark.parametrize("emulator", ["ES"], indirect=True)
def test_without_a_family_the_library_detects_the_inverter(emulator):
    """No ``family``: goodwe's discovery command (AA55 010200), answered with the recorded ESA
    answer, picks the ES family by the serial number's tag."""
    m = open_meter(emulator)
    assert m.read().net_w == 807.0
    assert type(m.inverter).__name__ == "ES"


@pytest.mark.parametrize("emulator", ["DT"], indirect=True)
def test_a_dt_without_a_meter_is_a_failed_read_never_a_zero(emulator):
    """GW8K-DT recorded: its meter registers are rejected (ILLEGAL DATA ADDRESS, as in the library's
    tests); the library drops them, and the driver says so on every read."""
    m = open_meter(emulator, family="DT")
    for _ in range(2):
        with pytest.raises(MeterError, match=r"GW8K-DT, DT family\): the inverter reports no grid meter "
                                             r"\(meter_active_power missing"):
            m.read()


@pytest.mark.parametrize("emulator", ["ET"], indirect=True)
def test_an_et_that_cannot_reach_its_meter_is_a_failed_read(emulator):
    """``meter_comm_status`` (36004) 0: the inverter has lost its meter; the powers it then answers
    are zeros (the GEH10-1U-10 recording in the library's tests shows exactly that), not a reading."""
    m = open_meter(emulator, family="ET")
    meter = et_meter(recorded("GW20K-ET_meter_data"), 0, import_wh=150.0, export_wh=35550.0)
    emulator.modbus[(0x8CA0, 0x7D)] = patch_rtu(meter, 36000, {36004: (0).to_bytes(2, "big")})
    with pytest.raises(MeterError, match=r"cannot reach its grid meter \(meter_comm_status = 0\)"):
        m.read()


@pytest.mark.parametrize("emulator", ["ET"], indirect=True)
@pytest.mark.parametrize("fault, says", [
    ("silent", "no valid answer"),
    ("busy", "rejected the request: SLAVE DEVICE BUSY"),
    ("truncated", "no valid answer"),
    ("bad_crc", "no valid answer"),
    ("other_answer", "no valid answer"),
])
def test_a_faulty_inverter_is_a_failed_read_with_a_sentence(emulator, fault, says):
    m = open_meter(emulator, family="ET")
    m.read()                                       # connected
    emulator.fault = fault
    with pytest.raises(MeterError, match=rf"goodwe {emulator.host}:8899: .*{says}"):
        m.read()
    emulator.fault = None                          # back: the same meter reads again
    assert m.read().net_w == 1556.0


@pytest.mark.parametrize("emulator", ["ET"], indirect=True)
def test_a_silent_inverter_at_start_is_a_failed_connection_then_reads_when_it_answers(emulator):
    emulator.fault = "silent"
    m = open_meter(emulator, family="ET")
    with pytest.raises(MeterError, match="no valid answer"):
        m.read()
    assert m.inverter is None
    emulator.fault = None
    assert m.read().net_w == 1556.0


@pytest.mark.parametrize("emulator", ["ET"], indirect=True)
def test_a_dropped_answer_is_sent_again_by_the_library(emulator):
    """UDP loses the first answer to each of a read's requests: the library sends each request again
    (``retries``) and the read succeeds with the right values."""
    m = open_meter(emulator, family="ET")
    m.read()
    before = emulator.requests
    emulator.fault = "drop_once"
    assert m.read().net_w == 1556.0
    assert emulator.requests - before == 2 * 4    # running data, battery, meter, MPPT: each sent twice


def test_settings_name_the_bad_key_value_and_what_is_allowed(tmp_path):
    with pytest.raises(SettingsError) as e:
        make_settings(tmp_path, meter_section={"driver": "goodwe", "host": "192.168.1.50", "family": "XY"})
    text = str(e.value)
    assert "meter.family" in text and "XY" in text and "'ET'" in text and "'DT'" in text
    with pytest.raises(SettingsError, match=r"meter\.timeout_s"):
        make_settings(tmp_path, meter_section={"driver": "goodwe", "host": "h", "timeout_s": 0})
    s = make_settings(tmp_path, meter_section={"driver": "goodwe", "host": "192.168.1.50"})
    assert (s.meter.port, s.meter.family, s.meter.timeout_s) == (8899, None, 1.0)


def test_monitoring_stores_the_goodwe_meters_readings_in_influxdb(tmp_path, influxd, influx_db):
    """Integration: house rows (2022-06-11 from row 3050: export, then import) played into the
    GW20K-ET's recorded meter answer, one monitoring cycle each; InfluxDB holds what was served."""
    from tests.integration.test_meters import T0 as M0, house_rows, run_monitoring, stored

    emu = GoodweUdp("ET")
    try:
        rows, meter = house_rows(30, start=3050), recorded("GW20K-ET_meter_data")
        s = make_settings(tmp_path, influxd, influx_db, meter_section={
            "driver": "goodwe", "host": emu.host, "family": "ET", "timeout_s": 0.5})
        served, imp, exp = [], 1_234_560.0, 2_345_670.0

        def serve(i: int) -> None:
            nonlocal imp, exp
            w = round(rows[i]["net_w"])
            if i:
                e = (served[-1][0] + w) / 2 * 10 / 3600
                imp, exp = imp + max(-e, 0.0), exp + max(e, 0.0)
            emu.modbus[(0x8CA0, 0x7D)] = et_meter(meter, w, import_wh=imp, export_wh=exp)
            served.append((w, round(imp / 10) * 10.0, round(exp / 10) * 10.0))   # 0.01 kWh on the wire

        mon, got = run_monitoring(s, len(rows), serve)
        assert mon.failures == 0 and all(r is not None for r in got)
        pts = stored(influxd, influx_db)
    finally:
        emu.close()
    assert len(pts) == len(rows)
    for i, (p, (w, i_wh, e_wh)) in enumerate(zip(pts, served)):
        assert p["time"] == int((M0 + timedelta(seconds=10 * i)).timestamp() * 1000)
        assert (p["net_w"], p["import_wh_total"], p["export_wh_total"]) == (w, i_wh, e_wh)
    assert min(w for w, _, _ in served) < 0 < max(w for w, _, _ in served)   # both signs: a flip would show
