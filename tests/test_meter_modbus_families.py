"""The huawei (huawei-solar) and sunspec (pysunspec2) meter drivers against a real pymodbus server
serving register fixtures (tests/data/meters/, each citing its source): a real noon (export: net_w
positive) and a real night (import), a busy device (Modbus exception 6), a device that drops the
connection, and garbage. Every failure is a MeterError sentence, never a zero. No wall clock in
the assertions: the drivers' bounds are waited out, never timed."""
from __future__ import annotations

import sys
from datetime import datetime, timezone

import pytest

from drivers import DriverContext, extras
from drivers.meters.base import MeterError
from drivers.meters.huawei import HuaweiMeter, HuaweiSettings
from drivers.meters.sunspec import SunSpecMeter, SunSpecSettings
from gestor.clock import SimClock
from gestor.settings import SettingsError
from tests.conftest import free_port, make_settings
from tests.emulators.modbus_dump import DroppingServer, DumpServer, huawei_words, load, sunspec_words

T0 = datetime(2022, 6, 11, 12, 9, 21, tzinfo=timezone.utc)


@pytest.fixture
def ctx(tmp_path):
    return DriverContext(SimClock(T0), tmp_path, tmp_path)


@pytest.fixture
def huawei_srv():
    srv = DumpServer(huawei_words(load("huawei", "noon"))).start_tcp(free_port())
    yield srv
    srv.close()


@pytest.fixture
def sunspec_srv():
    srv = DumpServer(sunspec_words(load("sunspec", "noon")), device_id=240).start_tcp(free_port())
    yield srv
    srv.close()


def huawei(ctx, port: int, **kw) -> HuaweiMeter:
    return HuaweiMeter(HuaweiSettings(host="127.0.0.1", port=port, **kw), ctx)


def sunspec(ctx, port: int, **kw) -> SunSpecMeter:
    return SunSpecMeter(SunSpecSettings(host="127.0.0.1", port=port, **{"timeout_s": 0.5, **kw}), ctx)


def read_fails(m) -> str:  # noqa: ANN001
    """Read ``m`` once, which must fail with a one-sentence MeterError; close it; the sentence."""
    try:
        with pytest.raises(MeterError) as e:
            m.read()
        return one_sentence(e)
    finally:
        m.close()


def one_sentence(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert text and "\n" not in text
    return text


# --- huawei ---------------------------------------------------------------------------------------

def test_huawei_noon_exports_positive_and_night_imports(ctx, huawei_srv):
    m = huawei(ctx, huawei_srv.address[1])
    try:
        noon = m.read()
        assert noon.net_w == 1101.0 > 0                          # 37113 > 0 is feed-in: export-positive
        assert noon.export_wh_total == 352417 * 10.0             # 37119, kWh x 100 -> Wh
        assert noon.import_wh_total == 187305 * 10.0             # 37121
        huawei_srv.load(huawei_words(load("huawei", "night")))
        night = m.read()
        assert night.net_w == -107.0 < 0
        assert (night.import_wh_total, night.export_wh_total) == (187502 * 10.0, 352811 * 10.0)
        assert m.s.counter_resolution_wh == 10.0
    finally:
        m.close()


def test_huawei_inverter_port_with_unit_0_and_a_wrong_unit(ctx):
    """The inverter's own port (6607 on older firmware) answers unit 0; a wrong unit_id never answers."""
    srv = DumpServer(huawei_words(load("huawei", "noon")), device_id=0).start_tcp(free_port())
    try:
        m = huawei(ctx, srv.address[1], unit_id=0)
        assert m.read().net_w == 1101.0
        m.close()
    finally:
        srv.close()
    srv = DumpServer(huawei_words(load("huawei", "noon")), device_id=1).start_tcp(free_port())
    try:
        m = huawei(ctx, srv.address[1], unit_id=3, timeout_s=1)
        with pytest.raises(MeterError) as e:
            m.read()
        assert "unit 3: no answer within" in one_sentence(e) and "a wrong unit_id" in str(e.value)
        m.close()
    finally:
        srv.close()


def test_huawei_busy_once_is_retried_by_the_library(ctx, huawei_srv):
    """The SDongle's "device busy": huawei-solar backs off and asks again (its own means)."""
    m = huawei(ctx, huawei_srv.address[1], timeout_s=10)
    try:
        huawei_srv.busy = 1
        assert m.read().net_w == 1101.0
        assert huawei_srv.busy == 0 and huawei_srv.requests == 2
    finally:
        m.close()


def test_huawei_always_busy_is_a_meter_error_then_it_reconnects(ctx, huawei_srv):
    m = huawei(ctx, huawei_srv.address[1], timeout_s=1)
    try:
        huawei_srv.busy = -1
        with pytest.raises(MeterError) as e:
            m.read()
        text = one_sentence(e)
        assert "huawei 127.0.0.1" in text and "no answer within 2.5 s" in text and "busy" in text
        huawei_srv.busy = 0
        assert m.read().net_w == 1101.0        # a new connection, and the reading again
    finally:
        m.close()


def test_huawei_dropped_connection_is_a_meter_error(ctx):
    srv = DroppingServer(free_port())
    m = huawei(ctx, srv.address[1], timeout_s=1)
    try:
        with pytest.raises(MeterError) as e:
            m.read()
        assert "no answer within" in one_sentence(e)
        assert srv.accepted >= 1
    finally:
        m.close()
        srv.close()


@pytest.mark.parametrize("fixture, says", [
    ("garbage_not_available", "power_meter_active_power reads 'not available' (0x7FFFFFFF)"),
    ("garbage_meter_offline", "the power meter is offline (meter_status, register 37100, reads 0"),
])
def test_huawei_garbage_is_a_meter_error_never_a_zero(ctx, huawei_srv, fixture, says):
    huawei_srv.load(huawei_words(load("huawei", fixture)))
    assert says in read_fails(huawei(ctx, huawei_srv.address[1]))


def test_huawei_settings_defaults_and_errors(tmp_path):
    s = HuaweiSettings(host="inverter.local")
    assert (s.port, s.unit_id, s.timeout_s) == (502, 1, 5.0)
    assert HuaweiSettings(host="10.0.0.2", port=6607, unit_id=0).describe() == "huawei 10.0.0.2:6607 unit 0"
    with pytest.raises(SettingsError, match=r"meter\.unit_id.*248"):
        make_settings(tmp_path, meter_section={"driver": "huawei", "host": "x", "unit_id": 248})
    with pytest.raises(SettingsError, match=r"meter\.host"):
        make_settings(tmp_path, meter_section={"driver": "huawei"})


# --- sunspec --------------------------------------------------------------------------------------

def test_sunspec_discovers_the_meter_once_noon_exports_positive_night_imports(ctx, sunspec_srv):
    m = sunspec(ctx, sunspec_srv.address[1])          # no unit_id: 1 is tried, then 240 (Fronius)
    try:
        noon = m.read()
        assert m.unit == 240
        assert noon.net_w == pytest.approx(1100.6) and noon.net_w > 0   # W = -11006 x 10^-1, import-positive
        assert (noon.import_wh_total, noon.export_wh_total) == (1873050.0, 3524170.0)
        before = sunspec_srv.requests
        sunspec_srv.load(sunspec_words(load("sunspec", "night")))
        night = m.read()
        assert sunspec_srv.requests - before == 1       # one request for the model: no new discovery
        assert night.net_w == pytest.approx(-107.1) and night.net_w < 0
        assert (night.import_wh_total, night.export_wh_total) == (1875020.0, 3528110.0)
    finally:
        m.close()


def test_sunspec_coarse_counters_are_named_once(ctx, sunspec_srv, caplog):
    """A meter counting kWh (TotWh_SF 3) with counter_step_wh left at 1 Wh: one warning saying what to set."""
    fx = load("sunspec", "noon")
    fx["models"][1].update({"TotWh_SF": 3, "TotWhImp": 1873, "TotWhExp": 3524})
    sunspec_srv.load(sunspec_words(fx))
    m = sunspec(ctx, sunspec_srv.address[1], unit_id=240)
    try:
        with caplog.at_level("WARNING", "gestor"):
            assert m.read().import_wh_total == 1873000.0
            m.read()
        assert caplog.text.count("count 1000 Wh steps (TotWh_SF 3): set meter.counter_step_wh: 1000") == 1
    finally:
        m.close()


class SlowLan(SimClock):
    """Each look at the monotonic clock finds 20 s gone: as if every unit took that long."""

    def monotonic(self) -> float:
        self.advance(20.0)
        return super().monotonic()


def test_sunspec_discovery_gives_up_after_its_budget_and_says_set_unit_id(tmp_path, sunspec_srv):
    m = SunSpecMeter(SunSpecSettings(host="127.0.0.1", port=sunspec_srv.address[1], timeout_s=0.5),
                     DriverContext(SlowLan(T0), tmp_path, tmp_path))
    text = read_fails(m)
    assert "unit 1:" in text                                      # the first unit was tried (20 s < 25 s)
    assert "units 240, 126, 71, 2 not tried: discovery took more than 25 s (set meter.unit_id)" in text


def test_sunspec_busy_and_dropped_connection_are_meter_errors(ctx, sunspec_srv):
    m = sunspec(ctx, sunspec_srv.address[1], unit_id=240)
    try:
        assert m.read().net_w > 0
        sunspec_srv.busy = -1
        with pytest.raises(MeterError) as e:
            m.read()
        assert "sunspec 127.0.0.1" in one_sentence(e) and "exception 6 (device busy)" in str(e.value)
        sunspec_srv.busy = 0
        assert m.read().net_w == pytest.approx(1100.6)   # reconnected; the model remembered
    finally:
        m.close()
    srv = DroppingServer(free_port())
    m = sunspec(ctx, srv.address[1], unit_id=240)
    try:
        with pytest.raises(MeterError) as e:
            m.read()
        assert "no SunSpec meter found" in one_sentence(e) and "unit 240" in str(e.value)
    finally:
        m.close()
        srv.close()


@pytest.mark.parametrize("fixture, says", [
    ("garbage_wrong_marker", "no SunSpec meter found"),
    ("garbage_wrong_model", "unit 240: SunSpec models [1, 103], no meter model"),
    ("garbage_not_implemented", "model 203 point(s) W read 'not implemented'"),
])
def test_sunspec_garbage_is_a_meter_error_never_a_zero(ctx, sunspec_srv, fixture, says):
    sunspec_srv.load(sunspec_words(load("sunspec", fixture)))
    assert says in read_fails(sunspec(ctx, sunspec_srv.address[1], unit_id=240))


# --- the extras ---------------------------------------------------------------------------------

@pytest.mark.parametrize("driver, package, module", [("huawei", "huawei-solar", "huawei_solar"),
                                                     ("sunspec", "pysunspec2", "sunspec2"),
                                                     ("goodwe", "goodwe", "goodwe"),
                                                     ("sma_em", "pysma-plus", "pysmaplus"),
                                                     ("fronius", "PyFronius", "pyfronius")])
def test_a_driver_whose_library_is_missing_is_a_settings_error(tmp_path, monkeypatch, driver, package, module):
    """Every driver on an optional library (one rule, drivers.extras.require, in each settings model):
    a settings error before anything starts, naming the package and the command."""
    monkeypatch.setitem(sys.modules, module, None)     # as if the extra were not installed
    section = {"driver": driver} if driver == "sma_em" else {"driver": driver, "host": "127.0.0.1"}
    with pytest.raises(SettingsError) as e:
        make_settings(tmp_path, meter_section=section)
    text = str(e.value)
    assert f"driver {driver} needs the package {package}" in text
    assert f"sudo ./install.sh --extra {extras.DRIVER_EXTRA[driver]}" in text


def test_extras_cli_names_the_extra_of_a_driver(capsys):
    assert extras.main(["--driver", "sma_em"]) == 0 and capsys.readouterr().out == "sma\n"
    assert extras.main(["--driver", "eastron"]) == 0 and capsys.readouterr().out == ""
    assert extras.main(["--nonsense"]) == 2


def test_the_daemons_start_without_any_extra_installed(tmp_path):
    """With every extra's module unimportable, the daemons' modules and the drivers' modules import;
    only a settings that names such a driver fails, with the sentence that says what to install."""
    import subprocess
    code = f"""
import sys
BLOCKED = {sorted(e.module for e in extras.EXTRAS.values())!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import monitoring, managing, stop_loads, gestor.cli
import drivers.meters.huawei, drivers.meters.sunspec
from gestor.settings import SettingsError
from tests.conftest import make_settings
from pathlib import Path
make_settings(Path({str(tmp_path)!r}))                     # the replay meter: no extra
try:
    make_settings(Path({str(tmp_path)!r}), meter_section={{"driver": "sunspec", "host": "h"}})
except SettingsError as e:
    print(e)
assert not [m for m in sys.modules if m.split('.')[0] in BLOCKED]
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "driver sunspec needs the package pysunspec2" in p.stdout
    assert "sudo ./install.sh --extra sunspec" in p.stdout


def test_a_refused_port_is_a_meter_error_for_both(ctx):
    port = free_port()                       # nothing listens there
    assert "no answer within 2.5 s" in read_fails(huawei(ctx, port, timeout_s=1))
    text = read_fails(sunspec(ctx, port, unit_id=240))
    assert "no SunSpec meter found (unit 240: ModbusClientError: Connection error:" in text and "refused" in text
