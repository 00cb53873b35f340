"""The HTTP meter families (issue 34): ``fronius`` (pyfronius 0.8.2, the real client) and
``wibeee`` (its documented status.xml) against loopback emulators serving recorded real answers
(tests/data/meters/<family>/, sources cited there). Each test checks the sign (noon exports:
net_w > 0), and every fault is a MeterError sentence, never a reading."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from drivers import DriverContext
from drivers.meters.base import MeterError
from gestor.clock import SimClock
from gestor.runtime.daemon import open_meter
from tests.conftest import free_port, make_settings
from tests.emulators.http_meters import FroniusDatamanager, Wibeee, fronius_answer

T0 = datetime(2024, 6, 11, 12, 0, tzinfo=timezone.utc)


def meter_for(tmp_path, section: dict):
    s = make_settings(tmp_path, meter_section=section)
    return open_meter(s, DriverContext(SimClock(T0), tmp_path, tmp_path))


def read_fails(tmp_path, section: dict, message: str) -> str:
    """One read of a meter opened on ``section`` raises MeterError matching ``message``, a
    one-line sentence; returns it."""
    m = meter_for(tmp_path, section)
    try:
        with pytest.raises(MeterError, match=message) as e:
            m.read()
    finally:
        m.close()
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.fixture
def fronius():
    dev = FroniusDatamanager(free_port()).start()
    yield dev
    dev.stop()


@pytest.fixture
def wibeee():
    dev = Wibeee(free_port()).start()
    yield dev
    dev.stop()


def fronius_section(dev, **kw) -> dict:
    return {"driver": "fronius", "host": "127.0.0.1", "port": dev.port, "timeout_s": 2.0, **kw}


def wibeee_section(dev, **kw) -> dict:
    return {"driver": "wibeee", "host": "127.0.0.1", "port": dev.port, "timeout_s": 2.0, **kw}


# --- Fronius ---------------------------------------------------------------------------------
def test_fronius_noon_exports_positive_and_night_imports(tmp_path, fronius):
    m = meter_for(tmp_path, fronius_section(fronius, read_production=True))
    try:
        r = m.read()  # the recorded Symo at 20:31: importing 5,592.57 W, the inverter asleep
        assert r.net_w == pytest.approx(-5592.57)
        assert (r.import_wh_total, r.export_wh_total) == (15303334, 35623065)
        assert r.production_w is None  # P_PV null: unknown, not zero
        fronius.use("noon")
        m.clock.set(T0 + timedelta(hours=12))  # the counters' rise is checked against the time
        r = m.read()
        assert r.net_w == pytest.approx(3120.4) and r.net_w > 0  # the sign check: export reads positive
        assert (r.import_wh_total, r.export_wh_total) == (15305334, 35635065)
        assert r.production_w == 5200 and r.consumption_w == pytest.approx(5200 - 3120.4)
        want = "/solar_api/v1/GetMeterRealtimeData.cgi?Scope=Device&DeviceId=0"
        assert fronius.requests.count(want) == 2
        assert fronius.accepted == 1  # one aiohttp session, one kept-alive connection for every request
    finally:
        m.close()


def test_fronius_gen24_floats(tmp_path, fronius):
    """A Gen24's Smart Meter TS answers its values as floats (Meter_Location_Current 0.0)."""
    fronius.meter = fronius_answer("gen24_meter_device_0.json")
    m = meter_for(tmp_path, fronius_section(fronius))
    try:
        r = m.read()
        assert r.net_w == pytest.approx(-653.1)
        assert (r.import_wh_total, r.export_wh_total) == (2013105.0, 3863340.0)
    finally:
        m.close()


def test_fronius_production_off_by_default_and_meter_id(tmp_path, fronius):
    fronius.use("noon")
    fronius.meter_id = 2
    m = meter_for(tmp_path, fronius_section(fronius, meter_id=2))
    try:
        assert m.read().production_w is None
        assert fronius.requests == ["/solar_api/v1/GetMeterRealtimeData.cgi?Scope=Device&DeviceId=2"]
    finally:
        m.close()
    # DeviceId 0 is not there: Status Code 12
    read_fails(tmp_path, fronius_section(fronius), r"Status Code 12 \(Device not available\).*DeviceId 0")


def test_fronius_meter_in_the_consumption_path_is_refused(tmp_path, fronius):
    fronius.use("noon").meter["Body"]["Data"]["Meter_Location_Current"] = 1
    read_fails(tmp_path, fronius_section(fronius), r"Meter_Location_Current 1 .*not at the grid connection")


def big_json() -> bytes:
    return b'{"Head": {"Status": {"Code": 0}}, "Body": {"Data": {"x": "' + b"x" * (2 << 20) + b'"}}}'


def nan_json() -> bytes:
    body = fronius_answer("meter_device_0_noon.json")
    body["Body"]["Data"]["PowerReal_P_Sum"] = float("nan")
    import json
    return json.dumps(body).encode()  # Python writes the NaN literal, as a broken firmware would


FRONIUS_FAULTS = [
    ("503", None, r"HTTP 503 .*busy"),
    ("drop", None, r"connection dropped before a complete answer"),
    ("garbage", None, r"not Solar API JSON"),       # an HTML page
    ("truncated", None, r"not Solar API JSON"),
    (None, big_json(), r"larger than 1048576 bytes"),
    (None, nan_json(), r"power_real\.value is 'nan', not a number"),
    ("timeout", None, r"no complete answer within 1 s"),
    ("drip", None, r"no complete answer within 1 s"),
]


def fault_then_recovery(m, dev, fault, raw, message: str, prefix: str, recover):
    """Read ``m`` (noon: positive), then with ``dev`` faulty (``fault``/``raw_body``): a one-line
    MeterError matching ``message`` that starts with ``prefix``; then ``recover()``'s reading."""
    try:
        assert m.read().net_w > 0
        dev.fault, dev.raw_body = fault, raw
        with pytest.raises(MeterError, match=message) as e:
            m.read()
        assert "\n" not in str(e.value) and str(e.value).startswith(prefix)
        dev.fault, dev.raw_body = None, None
        return recover()
    finally:
        m.close()


@pytest.mark.parametrize("fault,raw,message", FRONIUS_FAULTS, ids=[f[0] or f[2][:12] for f in FRONIUS_FAULTS])
def test_fronius_faults_are_sentences_then_recovery(tmp_path, fronius, fault, raw, message):
    fronius.use("noon")
    fronius.delay_s, fronius.drip_s = 5.0, 0.5  # well past the 1 s time-out
    m = meter_for(tmp_path, fronius_section(fronius, timeout_s=1.0))

    def recover():
        fronius.set_net(3000.0, 15305334, 35635070)
        m.clock.set(T0 + timedelta(seconds=20))
        return m.read()
    # the kept session serves the next read
    assert fault_then_recovery(m, fronius, fault, raw, message, "fronius 127.0.0.1: ", recover).net_w == 3000.0


def test_fronius_busy_status_code(tmp_path, fronius):
    """A Datamanager that cannot reach its meter in time answers HTTP 200 with Status Code 8."""
    fronius.meter = fronius_answer("status_8_lnrequesttimeout.json")
    read_fails(tmp_path, fronius_section(fronius), r"Status Code 8 \(Transfer timeout\.\): no meter data")


def test_fronius_unreachable(tmp_path):
    read_fails(tmp_path, {"driver": "fronius", "host": "127.0.0.1", "port": free_port(), "timeout_s": 1.0},
               r"connection refused or host unreachable")


# --- Wibeee ----------------------------------------------------------------------------------
def test_wibeee_export_positive_import_negative_one_and_three_phases(tmp_path, wibeee):
    one = meter_for(tmp_path, wibeee_section(wibeee))
    three = meter_for(tmp_path, wibeee_section(wibeee, phases=3))
    try:
        # the recorded WBB: importing on every phase (power factors positive)
        assert one.read().net_w == pytest.approx(-207.47)
        assert three.read().net_w == pytest.approx(-(207.47 + 574.96 + 167.52))
        wibeee.use("export")  # noon: the power factors negative
        r = three.read()
        assert r.net_w == pytest.approx(1850.20 + 1210.75 + 1190.30) and r.net_w > 0  # the sign check
        assert one.read().net_w == pytest.approx(1850.20)
        assert r.import_wh_total is None and r.export_wh_total is None  # energia_activa has no direction
        wibeee.set_phase(2, 400.0)  # one phase imports while the others export: netted
        assert three.read().net_w == pytest.approx(1850.20 - 400.0 + 1190.30)
        assert set(wibeee.requests) == {"/en/status.xml"}
    finally:
        one.close()
        three.close()


def wibeee_xml(field: str, text: str) -> bytes:
    dev = Wibeee(0)
    dev.set_field(field, text)
    return dev.xml.encode()


WIBEEE_FAULTS = [
    ("503", None, r"HTTP 503 .*busy"),
    ("drop", None, r"connection dropped before a complete answer"),
    ("garbage", None, r"the answer is <html>, not Wibeee's <response>"),
    ("truncated", None, r"not complete XML"),
    (None, b"<response>" + b"<x>1</x>" * 200_000 + b"</response>", r"larger than 1048576 bytes"),
    (None, wibeee_xml("fase1_p_activa", "nan"), r"<fase1_p_activa> is 'nan', not a number"),
    (None, wibeee_xml("fase1_factor_potencia", ""), r"<fase1_factor_potencia> is '', not a number"),
    (None, wibeee_xml("fase1_p_activa", "-50.0"), r"direction is contradictory"),
    (None, b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><response>&a;</response>', r"declares a DTD"),
    (None, b"<response><model>WBB</model></response>", r"lacks <fase1_p_activa>"),
    ("timeout", None, r"no answer within 1 s"),
]


@pytest.mark.parametrize("fault,raw,message", WIBEEE_FAULTS, ids=[f[0] or f[2][:14] for f in WIBEEE_FAULTS])
def test_wibeee_faults_are_sentences_then_recovery(tmp_path, wibeee, fault, raw, message):
    wibeee.use("export")
    wibeee.delay_s = 5.0  # well past the 1 s time-out
    m = meter_for(tmp_path, wibeee_section(wibeee, timeout_s=1.0))
    r = fault_then_recovery(m, wibeee, fault, raw, message, "wibeee 127.0.0.1: ", m.read)
    assert r.net_w == pytest.approx(1850.20)


# --- settings --------------------------------------------------------------------------------
@pytest.mark.parametrize("section,key", [
    ({"driver": "wibeee", "host": "192.168.1.40", "phases": 2}, "phases"),
    ({"driver": "wibeee", "host": "my wibeee"}, "host"),
    ({"driver": "fronius", "host": "192.168.1.30:80"}, "host"),  # the port is its own key
    ({"driver": "fronius", "host": "192.168.1.30", "meter_id": -1}, "meter_id"),
    ({"driver": "fronius", "host": "192.168.1.30", "timeout_s": 0}, "timeout_s"),
    ({"driver": "fronius", "host": "192.168.1.30", "unit_id": 1}, "unit_id"),
])
def test_bad_settings_name_the_key_and_value(tmp_path, section, key):
    from gestor.settings import SettingsError
    with pytest.raises(SettingsError) as e:
        make_settings(tmp_path, meter_section=section)
    assert key in str(e.value)


def test_counter_resolutions(tmp_path):
    assert make_settings(tmp_path, meter_section={"driver": "fronius", "host": "h"}).meter.counter_resolution_wh == 1.0
