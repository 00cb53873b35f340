"""Real meter drivers against real servers: pymodbus over TCP and over a socat pseudo-terminal
(RTU), Shelly and Envoy emulators on loopback HTTP. Values are played from the recorded house
file; what monitoring stores in the real InfluxDB is compared with what the device served."""
from __future__ import annotations

import csv
import logging
import struct
import time
from datetime import datetime, timedelta, timezone

import pytest

import monitoring
from drivers.meters.base import MeterError
from drivers.store.influx import InfluxStore
from gestor.clock import SimClock
from tests.conftest import DATA, REPO, free_port, make_settings
from tests.emulators.http_devices import Envoy, ShellyGen1EM, ShellyPro3EM
from tests.emulators.modbus_server import EASTRON_LAYOUT, RegisterServer

UTC = timezone.utc
T0 = datetime(2022, 6, 11, 10, 0, tzinfo=UTC)


def house_rows(n: int, start: int = 3000) -> list[dict[str, float]]:
    """``n`` samples from 2022-06-11 (from row ``start``, morning: both signs of net): production, base
    consumption and net (export-positive), in W."""
    out = []
    with open(DATA / "house-2022-06-11_13.csv") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i < start:
                continue
            try:
                p, c = float(row["powerP"]), float(row["powerC"]) - float(row["powerL1"]) - float(row["powerL2"])
            except ValueError:
                continue
            c = max(c, 0.0)
            out.append({"production_w": p, "consumption_w": c, "net_w": p - c})
            if len(out) == n:
                break
    return out


def f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


def run_monitoring(settings, n: int, serve, step_s: float = 10.0):
    """Serve sample i, run one monitoring cycle at T0 + i*step_s; returns (monitoring, readings)."""
    clock = SimClock(T0)
    store = InfluxStore.from_settings(settings.store).open() if settings.store.kind != "none" else None
    from drivers.store.influx import NullStore
    mon = monitoring.Monitoring(settings, clock, store or NullStore())
    got = []
    for i in range(n):
        clock.set(T0 + timedelta(seconds=i * step_s))
        serve(i)
        got.append(mon.cycle())
    if store:
        assert store.flush(30)
        store.close()
    mon.close()
    return mon, got


def stored(influxd, db: str) -> list[dict]:
    c = influxd.client(db)
    try:
        return list(c.query("SELECT * FROM meter ORDER BY time", epoch="ms").get_points())
    finally:
        c.close()


class EastronPlayer:
    """Plays house rows into an Eastron register server: import-positive total power, kWh counters."""

    def __init__(self, srv: RegisterServer, rows: list[dict], step_s: float = 10.0) -> None:
        self.srv, self.rows, self.step_s = srv, rows, step_s
        self.imp_kwh, self.exp_kwh = 1500.0, 2500.0
        self.served: list[tuple[float, float, float]] = []

    def __call__(self, i: int) -> None:
        net = self.rows[i]["net_w"]
        if i:
            prev = self.rows[i - 1]["net_w"]
            e = (prev + net) / 2 * self.step_s / 3600 / 1000
            self.imp_kwh += max(-e, 0.0)
            self.exp_kwh += max(e, 0.0)
        self.srv.set_value("input", 0x0034, -net)
        self.srv.set_value("input", 0x000C, -net / 3)
        self.srv.set_value("input", 0x0048, self.imp_kwh)
        self.srv.set_value("input", 0x004A, self.exp_kwh)
        self.served.append((f32(net), f32(self.imp_kwh) * 1000, f32(self.exp_kwh) * 1000))


def with_an_outage(player, stop_at: int, restart_at: int, stop, restart):
    """A ``serve(i)`` for :func:`run_monitoring`: ``player(i)`` (the readings served), and the
    server stopped (``stop()``) after reading ``stop_at`` and started again (``restart()``) after
    reading ``restart_at``."""
    def serve(i: int) -> None:
        player(i)
        if i == stop_at:
            stop()
        if i == restart_at:
            restart()
    return serve


@pytest.fixture
def eastron_tcp():
    srv = RegisterServer(EASTRON_LAYOUT).start_tcp(free_port())
    yield srv
    srv.close()


def test_eastron_tcp_readings_reach_influxdb_as_served(tmp_path, influxd, influx_db, eastron_tcp):
    rows = house_rows(120)
    s = make_settings(tmp_path, influxd, influx_db, meter_section={
        "driver": "eastron", "transport": "tcp", "host": "127.0.0.1", "port": eastron_tcp.address[1]})
    player = EastronPlayer(eastron_tcp, rows)
    mon, got = run_monitoring(s, len(rows), player)
    assert mon.failures == 0 and all(r is not None for r in got)
    pts = stored(influxd, influx_db)
    assert len(pts) == len(rows)
    for i, (p, (net, imp, exp)) in enumerate(zip(pts, player.served)):
        assert p["time"] == int((T0 + timedelta(seconds=10 * i)).timestamp() * 1000)
        assert p["net_w"] == pytest.approx(net, abs=1e-9)   # float32 on the wire, exactly
        assert p["import_wh_total"] == pytest.approx(imp, abs=1e-6)
        assert p["export_wh_total"] == pytest.approx(exp, abs=1e-6)
    # the data has both signs: a sign flip would not pass unnoticed
    assert min(r["net_w"] for r in rows) < 0 < max(r["net_w"] for r in rows)


def test_eastron_rtu_over_a_pseudo_terminal(tmp_path, influxd, influx_db):
    srv = RegisterServer(EASTRON_LAYOUT).start_rtu(tmp_path)
    try:
        rows = house_rows(30)
        s = make_settings(tmp_path, influxd, influx_db, meter_section={
            "driver": "eastron", "transport": "rtu", "serial_port": srv.client_port, "baudrate": 9600,
            "timeout_s": 0.5})
        player = EastronPlayer(srv, rows)
        mon, got = run_monitoring(s, len(rows), player)
        assert mon.failures == 0
        pts = stored(influxd, influx_db)
        assert [p["net_w"] for p in pts] == pytest.approx([x[0] for x in player.served], abs=1e-9)
        assert [p["import_wh_total"] for p in pts] == pytest.approx([x[1] for x in player.served], abs=1e-6)
    finally:
        srv.close()


def test_rtu_device_gone_then_back_monitoring_recovers(tmp_path, caplog):
    srv = RegisterServer(EASTRON_LAYOUT).start_rtu(tmp_path)
    try:
        rows = house_rows(12)
        s = make_settings(tmp_path, meter_section={"driver": "eastron", "transport": "rtu", "serial_port": srv.client_port,
                                           "timeout_s": 0.3, "retries": 0})
        serve = with_an_outage(EastronPlayer(srv, rows), 4, 8, srv.stop_server, lambda: srv.start_rtu(tmp_path))
        with caplog.at_level(logging.INFO, "gestor"):
            mon, got = run_monitoring(s, len(rows), serve)
        assert [r is None for r in got] == [False] * 4 + [True] * 4 + [False] * 4
        assert mon.failures == 4
        assert "no answer within 0.3 s" in caplog.text
        assert "answering again after 4 failed reads" in caplog.text
    finally:
        srv.close()


def test_tcp_meter_restart_and_wrong_device_id(tmp_path, eastron_tcp, caplog):
    rows = house_rows(10)
    port = eastron_tcp.address[1]
    s = make_settings(tmp_path, meter_section={"driver": "eastron", "host": "127.0.0.1", "port": port, "timeout_s": 0.5})
    player = EastronPlayer(eastron_tcp, rows)
    serve = with_an_outage(player, 3, 6, eastron_tcp.stop_server, lambda: eastron_tcp.start_tcp(port))
    mon, got = run_monitoring(s, len(rows), serve)
    assert [r is None for r in got] == [False] * 3 + [True] * 3 + [False] * 4
    # each restored reading is the served one, not a stale or zero value
    assert got[6].net_w == pytest.approx(player.served[6][0])

    bad = make_settings(tmp_path, meter_section={"driver": "eastron", "host": "127.0.0.1", "port": port, "device_id": 9})
    with caplog.at_level(logging.WARNING, "gestor"):
        mon, got = run_monitoring(bad, 2, player)
    assert got == [None, None]
    assert "device 9" in caplog.text and "wrong device_id" in caplog.text


def test_unreachable_host_and_missing_serial_port_are_one_line_errors(tmp_path):
    from drivers import DriverContext
    from gestor.runtime.daemon import open_meter
    s = make_settings(tmp_path, meter_section={"driver": "eastron", "host": "127.0.0.1", "port": free_port(), "timeout_s": 0.3})
    m = open_meter(s, DriverContext(SimClock(T0), tmp_path, tmp_path))
    with pytest.raises(MeterError) as e:
        m.read()
    assert "connection refused" in str(e.value) or "connection lost" in str(e.value)
    assert "\n" not in str(e.value)
    s = make_settings(tmp_path, meter_section={"driver": "eastron", "transport": "rtu", "serial_port": str(tmp_path / "ttyUSB9")})
    m = open_meter(s, DriverContext(SimClock(T0), tmp_path, tmp_path))
    with pytest.raises(MeterError, match=r"serial port .*ttyUSB9 does not exist"):
        m.read()


# --- modbus_map ----------------------------------------------------------------------------
EM24 = {("holding", 0x0028): ("int32", "little"), ("holding", 0x0034): ("int32", "little"),
        ("holding", 0x004E): ("int32", "little")}
DTSU = {("holding", 2126): ("float32", "big"), ("holding", 2166): ("float32", "big"),
        ("holding", 2174): ("float32", "big")}


def test_modbus_map_em24_and_dtsu666_shipped_maps(tmp_path, influxd, influx_db):
    rows = house_rows(20)
    em24 = RegisterServer(EM24).start_tcp(free_port())
    dtsu = RegisterServer(DTSU, device_id=11, size=2300).start_tcp(free_port())
    try:
        def serve_em24(i: int) -> None:  # W x 10 and kWh x 10, import-positive, LSW first
            em24.set_value("holding", 0x0028, round(-rows[i]["net_w"] * 10))
            em24.set_value("holding", 0x0034, 123456 + i)
            em24.set_value("holding", 0x004E, 654321 + 2 * i)
        s = make_settings(tmp_path, influxd, influx_db, meter_section={
            "driver": "modbus_map", "host": "127.0.0.1", "port": em24.address[1],
            "map": str(REPO / "config" / "meters" / "carlo_gavazzi_em24.yaml")})
        mon, got = run_monitoring(s, len(rows), serve_em24)
        assert [r.net_w for r in got] == pytest.approx([round(r["net_w"] * 10) / 10 for r in rows], abs=1e-9)
        assert got[5].import_wh_total == pytest.approx((123456 + 5) * 100)
        assert got[5].export_wh_total == pytest.approx((654321 + 10) * 100)
        assert em24.requests == len(rows)  # one request per read: the three registers are one block
        assert len(stored(influxd, influx_db)) == len(rows)

        def serve_dtsu(i: int) -> None:
            dtsu.set_value("holding", 2126, -rows[i]["net_w"])
            dtsu.set_value("holding", 2166, 1000.5)
            dtsu.set_value("holding", 2174, 2000.25)
        s = make_settings(tmp_path, meter_section={"driver": "modbus_map", "host": "127.0.0.1", "port": dtsu.address[1],
                                           "device_id": 11, "map": str(REPO / "config" / "meters" / "huawei_dtsu666.yaml")})
        mon, got = run_monitoring(s, 5, serve_dtsu)
        assert [r.net_w for r in got] == pytest.approx([f32(r["net_w"]) for r in rows[:5]], abs=1e-9)
        assert got[0].import_wh_total == 1000500.0 and got[0].export_wh_total == 2000250.0
    finally:
        em24.close()
        dtsu.close()


def test_wrong_word_order_is_caught_as_implausible(tmp_path, caplog):
    em24 = RegisterServer(EM24).start_tcp(free_port())
    try:
        em24.set_value("holding", 0x0028, -12345)   # -1234.5 W
        em24.set_value("holding", 0x0034, 123456)
        em24.set_value("holding", 0x004E, 654321)
        inline = {"net_w": {"address": 0x28, "type": "int32", "word_order": "big", "scale": 0.1, "sign": -1}}
        s = make_settings(tmp_path, meter_section={"driver": "modbus_map", "host": "127.0.0.1", "port": em24.address[1],
                                           "registers": inline})
        with caplog.at_level(logging.WARNING, "gestor"):
            mon, got = run_monitoring(s, 3, lambda i: None)
        assert got == [None, None, None] and mon.failures == 3
        assert "beyond max_abs_power_w" in caplog.text
        # the counters with the wrong word order are caught too
        inline["import_wh_total"] = {"address": 0x34, "type": "int32", "word_order": "big", "scale": 100}
        inline["net_w"]["word_order"] = "little"
        s = make_settings(tmp_path, meter_section={"driver": "modbus_map", "host": "127.0.0.1", "port": em24.address[1],
                                           "registers": inline})
        caplog.clear()
        with caplog.at_level(logging.WARNING, "gestor"):
            mon, got = run_monitoring(s, 2, lambda i: None)
        assert got == [None, None] and "import_wh_total is negative" in caplog.text
    finally:
        em24.close()


def test_bad_register_map_names_file_and_key(tmp_path):
    from gestor.settings import SettingsError
    bad = tmp_path / "mymeter.yaml"
    bad.write_text("registers:\n  net_w: {address: 12, type: float64}\n")
    with pytest.raises(SettingsError) as e:
        make_settings(tmp_path, meter_section={"driver": "modbus_map", "host": "h", "map": str(bad)})
    assert "mymeter.yaml" in str(e.value) and "net_w.type" in str(e.value) and "float32" in str(e.value)
    with pytest.raises(SettingsError, match="cannot read"):
        make_settings(tmp_path, meter_section={"driver": "modbus_map", "host": "h", "map": "nope.yaml"})
    with pytest.raises(SettingsError, match="net_w is required"):
        make_settings(tmp_path, meter_section={"driver": "modbus_map", "host": "h",
                                       "registers": {"import_wh_total": {"address": 1}}})


def test_each_meter_driver_declares_its_counters_resolution(tmp_path):
    """Issue 32 item 3: the counters' tolerance is made of their own resolution, which each driver
    declares (a register map in its YAML; an integer register's scale by default); a wrong one is
    refused naming the map and the key."""
    from gestor.settings import SettingsError
    maps = REPO / "config" / "meters"
    cases = [({"driver": "shelly_em", "host": "h"}, 1.0), ({"driver": "eastron", "host": "h"}, 10.0),
             ({"driver": "modbus_map", "host": "h", "map": str(maps / "carlo_gavazzi_em24.yaml")}, 100.0),
             ({"driver": "modbus_map", "host": "h", "map": str(maps / "huawei_dtsu666.yaml")}, 10.0),
             ({"driver": "modbus_map", "host": "h", "registers": {
                 "net_w": {"address": 0}, "import_wh_total": {"address": 2, "type": "uint32", "scale": 10}}}, 10.0),
             ({"driver": "modbus_map", "host": "h", "registers": {
                 "net_w": {"address": 0}, "import_wh_total": {"address": 2, "scale": 1000}}}, 100.0)]
    for section, want in cases:
        assert make_settings(tmp_path, meter_section=section).meter.counter_resolution_wh == want, section
    bad = tmp_path / "mymeter.yaml"
    bad.write_text("counter_resolution_wh: 0\nregisters:\n  net_w: {address: 12}\n")
    with pytest.raises(SettingsError) as e:
        make_settings(tmp_path, meter_section={"driver": "modbus_map", "host": "h", "map": str(bad)})
    assert "mymeter.yaml" in str(e.value) and "counter_resolution_wh" in str(e.value)


# --- Shelly ----------------------------------------------------------------------------------
def test_shelly_pro3em_gen2_phases_netted(tmp_path, influxd, influx_db):
    dev = ShellyPro3EM(free_port()).start()
    try:
        rows = house_rows(20)

        def serve(i: int) -> None:  # one phase exports while another imports: netted
            net = rows[i]["net_w"]
            dev.phases_w = [-net + 300.0, -300.0, 0.0]
        s = make_settings(tmp_path, influxd, influx_db, meter_section={"driver": "shelly_em", "host": f"127.0.0.1:{dev.port}"})
        mon, got = run_monitoring(s, len(rows), serve)
        assert [r.net_w for r in got] == pytest.approx([r["net_w"] for r in rows], abs=1e-9)
        assert [p["net_w"] for p in stored(influxd, influx_db)] == pytest.approx([r["net_w"] for r in rows], abs=1e-9)
        assert got[0].import_wh_total is None  # counters off by default (not netted)
    finally:
        dev.stop()


@pytest.mark.parametrize("fault", ["timeout", "500", "truncated", "garbage", "restart"])
def test_shelly_faults_are_missing_readings_then_recovery(tmp_path, fault, caplog):
    dev = ShellyPro3EM(free_port()).start()
    dev.delay_s = 1.0
    try:
        s = make_settings(tmp_path, meter_section={"driver": "shelly_em", "host": f"127.0.0.1:{dev.port}", "timeout_s": 0.4,
                                           "use_counters": True})
        dev.total_act_wh, dev.total_act_ret_wh = 5000.0, 7000.0

        def serve(i: int) -> None:
            dev.phases_w = [100.0 * (i + 1), 0.0, 0.0]
            dev.total_act_wh = 5000.0 + sum(100.0 * k * 10.0 / 3600.0 for k in range(1, i + 1))  # counts its power
            if i == 2:
                if fault == "restart":
                    dev.stop()
                else:
                    dev.fault = fault
            if i == 4:
                if fault == "restart":
                    dev.start()
                else:
                    dev.fault = None
        with caplog.at_level(logging.WARNING, "gestor"):
            mon, got = run_monitoring(s, 6, serve)
        assert [r is None for r in got] == [False, False, True, True, False, False]
        assert got[4].net_w == -500.0 and got[4].import_wh_total == pytest.approx(5000.0 + 1000.0 * 10 / 3600)
        want = {"timeout": "no answer within 0.4 s", "500": "HTTP 500", "truncated": "not valid JSON",
                "garbage": "not valid JSON", "restart": "connection refused"}[fault]
        assert want in caplog.text
    finally:
        dev.stop()


def test_shelly_gen1_em_with_production_clamp_and_invalid_channel(tmp_path):
    dev = ShellyGen1EM(free_port(), channels=2).start()
    dev.auth = ("basic", "admin", "s3cret")
    try:
        s = make_settings(tmp_path, meter_section={"driver": "shelly_em", "generation": 1, "host": f"127.0.0.1:{dev.port}",
                                           "grid_channels": [0], "production_channel": 1, "password": "s3cret"})

        def serve(i: int) -> None:
            dev.power_w = [-1500.0, -2100.0]  # exporting 1500 W; PV clamp reads negative
            dev.valid = [i != 1, True]
        mon, got = run_monitoring(s, 3, serve)
        assert got[0].net_w == 1500.0 and got[0].production_w == 2100.0 and got[0].consumption_w == 600.0
        assert got[1] is None and got[2] is not None
        wrong = make_settings(tmp_path, meter_section={"driver": "shelly_em", "generation": 1, "host": f"127.0.0.1:{dev.port}",
                                               "password": "nope"})
        mon, got = run_monitoring(wrong, 1, lambda i: None)
        assert got == [None]
    finally:
        dev.stop()


# --- Envoy -----------------------------------------------------------------------------------
def test_envoy_production_json_digest_auth(tmp_path, influxd, influx_db):
    dev = Envoy(free_port()).start()
    dev.auth = ("digest", "installer", "12345678")
    try:
        rows = house_rows(15)

        def serve(i: int) -> None:
            dev.production_w, dev.consumption_w = rows[i]["production_w"], rows[i]["consumption_w"]
        s = make_settings(tmp_path, influxd, influx_db, meter_section={
            "driver": "envoy", "host": "127.0.0.1", "port": dev.port, "auth": "digest", "password": "12345678"})
        mon, got = run_monitoring(s, len(rows), serve)
        assert mon.failures == 0
        pts = stored(influxd, influx_db)
        assert [p["net_w"] for p in pts] == pytest.approx([r["net_w"] for r in rows], abs=1e-6)
        assert [p["production_w"] for p in pts] == pytest.approx([r["production_w"] for r in rows], abs=1e-9)
        assert [p["consumption_w"] for p in pts] == pytest.approx([r["consumption_w"] for r in rows], abs=1e-9)
        bad = make_settings(tmp_path, meter_section={"driver": "envoy", "host": "127.0.0.1", "port": dev.port,
                                             "auth": "digest", "password": "wrong"})
        with pytest.raises(MeterError, match="authentication failed"):
            from drivers import DriverContext
            from gestor.runtime.daemon import open_meter
            open_meter(bad, DriverContext(SimClock(T0), tmp_path, tmp_path)).read()
    finally:
        dev.stop()


def test_envoy_stream_token_auth_and_restart(tmp_path):
    from drivers import DriverContext
    from gestor.clock import WallClock
    from gestor.runtime.daemon import open_meter
    dev = Envoy(free_port()).start()
    dev.auth = ("bearer", "", "eyJ.token")
    dev.production_w, dev.consumption_w = 3000.0, 1200.0
    s = make_settings(tmp_path, meter_section={"driver": "envoy", "host": "127.0.0.1", "port": dev.port, "source": "stream",
                                       "auth": "token", "token": "eyJ.token", "timeout_s": 1.0})
    m = open_meter(s, DriverContext(WallClock(), tmp_path, tmp_path))
    try:
        r = _eventually(m.read)
        assert r.net_w == pytest.approx(1800.0) and r.production_w == pytest.approx(3000.0)
        dev.stop()
        dev.fault = "500"   # ends the open stream; the restarted device answers 500 for a while
        time.sleep(1.3)
        with pytest.raises(MeterError, match="old|HTTP 500|unreachable"):
            m.read()
        dev.fault = None
        dev.consumption_w = 500.0
        dev.start()
        r = _eventually(m.read, timeout_s=10)
        assert r.net_w == pytest.approx(2500.0)
    finally:
        m.close()
        dev.stop()


def _eventually(fn, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn()
        except MeterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_meter_test_command_prints_five_readings_with_units(tmp_path, eastron_tcp, capsys):
    import yaml

    from gestor.cli import main
    from tests.conftest import example_raw
    raw = example_raw()
    raw["meter"] = {"driver": "eastron", "host": "127.0.0.1", "port": eastron_tcp.address[1]}
    raw["paths"] = {"state_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")}
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    eastron_tcp.set_value("input", 0x0034, -2345.5)
    eastron_tcp.set_value("input", 0x0048, 12.5)
    assert main(["meter-test", "--config", str(cfg), "--interval", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.count("2,345.5 W") == 5 and "12,500.0 Wh" in out and "5 of 5 reads succeeded" in out
    eastron_tcp.stop_server()
    assert main(["check", "--read", "--config", str(cfg), "--count", "2", "--interval", "0.01"]) == 1
    out = capsys.readouterr().out
    assert "valid" in out and out.count("FAILED: modbus tcp 127.0.0.1") == 2 and "0 of 2 reads" in out
