"""The virtual meter (issue 26, section 3): the correction on numbers computed by hand, and the
emulated meters read by clients that are not the servers' own code: Shelly's documented RPC shapes
fetched with ``requests`` and raw sockets (as Home Assistant's aioshelly and the Marstek / B2500
batteries ask them; aioshelly itself is not installed), pymodbus's own client reading the SDM630's
registers, and the project's meter drivers (``drivers.meters.eastron``, ``drivers.meters.shelly_em``)
reading the emulated meters end to end, so the servers and the readers agree on the signs.

Every test runs the servers on loopback with an injected clock (``SimClock``) and the files
monitoring and managing publish written by their own writers (``LiveStateWriter``,
``publish_managing``)."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml
from pymodbus.client import ModbusTcpClient

from drivers import DriverContext
from drivers.meters.base import MeterError, Reading
from drivers.meters.eastron import EastronMeter, EastronSettings
from drivers.meters.shelly_em import ShellyEmMeter, ShellyEmSettings
from gestor.clock import SimClock
from gestor.core.virtualmeter import balance_since, virtual_net_w
from gestor.runtime import virtualmeter as vmod
from gestor.runtime.daemon import GestorError
from gestor.runtime.livestate import LiveStateWriter, publish_managing, set_latch
from gestor.runtime.virtualmeter import Servers
from gestor.runtime.vmeter import shellyhttp
from gestor.runtime.vmeter.sdm630 import serial_number
from gestor.settings import SettingsError, VirtualMeterSettings, listen_address, parse_settings
from tests.conftest import REPO, example_raw, make_settings
from tests.influxd import free_port
from tests.test_units import _service

GESTOR = [sys.executable, "-m", "gestor.cli"]
T0 = datetime(2024, 6, 1, 10, 30, tzinfo=timezone.utc)  # 12:30 in Madrid: the period is 10:00-11:00 UTC
P0, P1 = datetime(2024, 6, 1, 10, tzinfo=timezone.utc), datetime(2024, 6, 1, 11, tzinfo=timezone.utc)
EM_REQUEST = b'{"id":1,"method":"EM.GetStatus","params":{"id":0}}'  # what a Marstek battery sends


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class House:
    """Settings, a clock, what monitoring and managing publish, and the running servers."""

    def __init__(self, tmp_path: Path, **vm: object) -> None:
        self.http_port, self.modbus_port, self.udp_port = free_port(), free_port(), free_udp_port()
        section = {"enabled": True, "shelly_listen": f"127.0.0.1:{self.http_port}",
                   "sdm630_listen": f"127.0.0.1:{self.modbus_port}", "shelly_udp_ports": [self.udp_port],
                   "max_power_w": 9000, **vm}
        self.s = make_settings(tmp_path, virtual_meter=section)
        self.s.paths.run_dir.mkdir(parents=True, exist_ok=True)
        self.s.paths.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = SimClock(T0)
        self.live = LiveStateWriter(self.s.paths.run_dir)
        self.servers: Servers | None = None

    def start(self) -> "House":
        self.servers = Servers(self.s, self.clock)
        return self

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)  # also past the view's cache (vmod.CACHE_S)

    def reading(self, net_w: float, at: datetime | None = None, **kw: float) -> Reading:
        r = Reading(at or self.clock.now(), net_w, **kw)
        self.live.publish(r, self.clock.monotonic() - (self.clock.now() - r.at).total_seconds())
        return r

    def managing(self, balance_wh: float, reading_at: datetime | None = None, start: datetime = P0,
                 end: datetime = P1, pid: int | None = None, **extra: object) -> None:
        publish_managing(self.s.paths.run_dir, {
            "pid": os.getpid() if pid is None else pid, "at": self.clock.now().isoformat(),
            "period_start": start.isoformat(), "period_end": end.isoformat(), "balance_wh": balance_wh,
            "reading_at": (reading_at or self.clock.now()).isoformat(), "stopped": False, **extra})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=5)

    def rpc(self, method: str, params: dict | None = None, id_: int = 7) -> dict:
        r = requests.post(self.url + "/rpc", json={"id": id_, "src": "test-client", "method": method,
                                                   "params": params or {}}, timeout=5)
        assert r.status_code == 200
        return r.json()

    def udp(self, payload: bytes = EM_REQUEST, timeout: float = 1.0) -> dict | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(timeout)
            u.sendto(payload, ("127.0.0.1", self.udp_port))
            try:
                return json.loads(u.recvfrom(4096)[0])
            except TimeoutError:
                return None

    def modbus(self) -> ModbusTcpClient:
        c = ModbusTcpClient("127.0.0.1", port=self.modbus_port, timeout=2, retries=0)
        assert c.connect()
        return c

    def eastron(self) -> EastronMeter:
        s = EastronSettings(driver="eastron", model="sdm630", transport="tcp", host="127.0.0.1",
                            port=self.modbus_port, device_id=1, timeout_s=2, retries=0)
        return EastronMeter(s, DriverContext(self.clock, self.s.paths.run_dir, self.s.config_dir))

    def shelly_driver(self) -> ShellyEmMeter:
        s = ShellyEmSettings(driver="shelly_em", host=f"127.0.0.1:{self.http_port}", generation=2, use_counters=True)
        return ShellyEmMeter(s, DriverContext(self.clock, self.s.paths.run_dir, self.s.config_dir))

    def stop(self) -> None:
        if self.servers is not None:
            self.servers.stop()


@pytest.fixture
def house(tmp_path):
    h = House(tmp_path)
    yield h
    h.stop()


def sdm_float(regs: list[int], addr: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", regs[addr], regs[addr + 1]))[0]


# --- the correction ------------------------------------------------------------------------------
@pytest.mark.parametrize("net, balance, remaining, target, min_rem, max_w, want", [
    # banked 100 Wh, half an hour left: 100 Wh x 3600 / 1800 s = 200 W more export shown
    (500.0, 100.0, 1800.0, 0.0, 60.0, math.inf, 700.0),
    # owed 200 Wh, the whole hour left, nothing flowing: 200 W of import shown
    (0.0, -200.0, 3600.0, 0.0, 60.0, math.inf, -200.0),
    # a target of 50 Wh: only the 50 Wh above it are spread: 500 + 50 x 3600 / 1800
    (500.0, 100.0, 1800.0, 50.0, 60.0, math.inf, 600.0),
    # at the target: the plain net power
    (-1234.5, 50.0, 900.0, 50.0, 60.0, math.inf, -1234.5),
    # 10 s left but the floor is 60 s: 100 x 3600 / 60 = 6000 W, not 36000 W
    (500.0, 100.0, 10.0, 0.0, 60.0, math.inf, 6500.0),
    # ... and past the connection's 5 kW: clamped to it
    (500.0, 100.0, 10.0, 0.0, 60.0, 5000.0, 5000.0),
    (-4000.0, -100.0, 10.0, 0.0, 60.0, 5000.0, -5000.0),
    # the period's end (0 s left, or a clock a little past it) divides by the floor
    (0.0, 1.0, 0.0, 0.0, 36.0, math.inf, 100.0),
    (0.0, 1.0, -5.0, 0.0, 36.0, math.inf, 100.0),
])
def test_the_correction_on_numbers_computed_by_hand(net, balance, remaining, target, min_rem, max_w, want):
    assert virtual_net_w(net, balance, remaining, target, min_rem, max_w) == pytest.approx(want)


def test_the_correction_refuses_numbers_that_are_not():
    for bad in (dict(net_w=math.nan), dict(balance_wh=math.inf), dict(min_remaining_s=0.0), dict(max_power_w=0.0),
                dict(max_power_w=math.nan)):
        kw = {"net_w": 0.0, "balance_wh": 0.0, "remaining_s": 100.0, **bad}
        with pytest.raises(ValueError):
            virtual_net_w(**kw)


def held_at_zero(balance_wh: float, target_wh: float, min_remaining_s: float, step_s: float = 10.0) -> float:
    """The period's end balance when a device keeps the virtual meter at 0, read every ``step_s``
    from the period's start (the house alone exports 800 W)."""
    house_w, t, period = 800.0, 0.0, 3600.0
    while t < period:
        device_w = virtual_net_w(house_w, balance_wh, period - t, target_wh, min_remaining_s)  # what it absorbs
        balance_wh += (house_w - device_w) * step_s / 3600.0
        t += step_s
    return balance_wh


def test_held_at_zero_the_virtual_meter_ends_the_period_at_its_target():
    # each read takes step/remaining of what is left above the target: (R - 10) / R, telescoping to
    # 60 / 3600 of it at the last minute, where the 60 s floor takes 1/6 a read: (5/6)^6 is left
    assert held_at_zero(300.0, 20.0, 60.0) == pytest.approx(20.0 + 280.0 * 60 / 3600 * (5 / 6) ** 6)
    assert held_at_zero(300.0, 20.0, 60.0) == pytest.approx(20.0, abs=2.0)
    assert held_at_zero(300.0, 20.0, 10.0) == pytest.approx(20.0)  # a floor of one read: exactly
    assert held_at_zero(-500.0, 0.0, 60.0) == pytest.approx(-500.0 * 60 / 3600 * (5 / 6) ** 6)


def test_readings_since_managing_s_balance_are_integrated_as_the_core_does():
    # 10 Wh up to t=0; 360 W for 10 s (1 Wh), then 360 -> 720 W over 10 s (1.5 Wh): 12.5 Wh
    samples = [(-10.0, 999.0), (0.0, 360.0), (10.0, 360.0), (20.0, 720.0)]
    assert balance_since(10.0, 0.0, samples, 20.0, 120.0) == pytest.approx(12.5)
    # only up to to_s (the line interpolated: 540 W at t=15 -> 0.5 Wh + (360+540)/2 x 5 s)
    assert balance_since(10.0, 0.0, samples, 15.0, 120.0) == pytest.approx(10.0 + 1.0 + 450 * 5 / 3600)
    # a gap longer than max_gap_s adds nothing; nothing is extrapolated past the last reading
    assert balance_since(0.0, 0.0, [(0.0, 3600.0), (200.0, 3600.0)], 300.0, 120.0) == 0.0
    assert balance_since(5.0, 0.0, [(0.0, 3600.0)], 100.0, 120.0) == 5.0


# --- signs, through every transport and reader -----------------------------------------------------
def test_banked_export_makes_every_device_see_more_export(house):
    house.reading(500.0, import_wh_total=1000.0, export_wh_total=2000.0)  # exporting 500 W
    house.managing(100.0)  # the period has banked 100 Wh; 1800 s left: +200 W
    house.start()
    # Shelly: import-positive, so 700 W of export is -700
    em = house.get("/rpc/EM.GetStatus?id=0").json()
    assert em["total_act_power"] == -700.0
    assert sum(em[f"{p}_act_power"] for p in "abc") == pytest.approx(-700.0, abs=0.2)
    assert {"a_voltage", "a_current", "b_act_power", "c_act_power", "total_current"} <= set(em)
    assert house.rpc("EM.GetStatus", {"id": 0})["result"]["total_act_power"] == -700.0
    frame = house.udp()
    assert frame["id"] == 1 and frame["result"]["total_act_power"] == -700.0
    assert frame["src"] == house.rpc("Shelly.GetDeviceInfo")["result"]["id"]
    # SDM630: pymodbus's own client, the registers of Eastron's map (import-positive too)
    c = house.modbus()
    try:
        rr = c.read_input_registers(0x0000, count=0x4C, device_id=1)
        assert not rr.isError()
        assert sdm_float(rr.registers, 0x0034) == pytest.approx(-700.0)
        assert sum(sdm_float(rr.registers, a) for a in (0x000C, 0x000E, 0x0010)) == pytest.approx(-700.0, abs=0.01)
        assert sdm_float(rr.registers, 0x0000) == pytest.approx(230.0)
        assert sdm_float(rr.registers, 0x0046) == pytest.approx(50.0)
        assert sdm_float(rr.registers, 0x0048) == pytest.approx(1.0) and sdm_float(rr.registers, 0x004A) == pytest.approx(2.0)
    finally:
        c.close()
    # the project's own readers, end to end: both agree on the sign (export-positive 700 W)
    m = house.eastron()
    try:
        r = m.read()
    finally:
        m.close()
    assert r.net_w == pytest.approx(700.0) and r.import_wh_total == pytest.approx(1000.0)
    assert r.export_wh_total == pytest.approx(2000.0)
    m = house.shelly_driver()
    try:
        r = m.read()
    finally:
        m.close()
    assert r.net_w == pytest.approx(700.0) and r.import_wh_total == 1000.0 and r.export_wh_total == 2000.0


def test_owed_import_makes_every_device_see_import(house):
    house.reading(0.0)
    house.managing(-200.0)  # owes 200 Wh, 1800 s left: 400 W of import shown
    house.start()
    assert house.get("/rpc/EM.GetStatus?id=0").json()["total_act_power"] == 400.0
    m = house.eastron()
    try:
        assert m.read().net_w == pytest.approx(-400.0)
    finally:
        m.close()


def test_the_readings_since_managing_s_last_cycle_are_counted(house):
    t = T0 - timedelta(seconds=20)
    house.reading(360.0, at=t)
    house.reading(360.0, at=t + timedelta(seconds=10))
    house.reading(720.0, at=T0)
    house.managing(100.0, reading_at=t)  # managing had accounted up to t
    house.start()
    v = house.servers.meter.view()
    assert v.stale is None and v.uncorrected is None
    assert v.balance_wh == pytest.approx(102.5)  # + 1 Wh + 1.5 Wh
    assert v.virtual_net_w == pytest.approx(720.0 + 102.5 * 3600 / 1800)


def test_in_a_period_s_first_seconds_the_balance_starts_from_zero(house):
    house.clock.set(P1 + timedelta(seconds=5))  # 11:00:05; managing still publishes 10:00-11:00
    house.reading(3600.0, at=P1 - timedelta(seconds=5))
    house.reading(3600.0, at=P1 + timedelta(seconds=5))
    house.managing(500.0, reading_at=P1 - timedelta(seconds=5))  # the old period's balance: not this one's
    house.start()
    v = house.servers.meter.view()
    assert v.uncorrected is None and v.balance_wh == pytest.approx(5.0)  # 3600 W for 5 s of the new period
    assert v.remaining_s == 3595.0


@pytest.mark.parametrize("why", ["none", "dead", "stopped", "old", "other_period"])
def test_without_managing_s_balance_devices_see_the_plain_net_power(house, why):
    house.reading(-300.0)
    if why == "dead":
        p = subprocess.Popen(["true"])
        p.wait()
        house.managing(1000.0, pid=p.pid)
    elif why == "stopped":
        house.managing(1000.0, stopped=True)
    elif why == "old":
        house.managing(1000.0)
        house.advance(31)  # 3 x managing.interval_s
        house.reading(-300.0)
    elif why == "other_period":
        house.managing(1000.0, start=P0 - timedelta(hours=2), end=P0 - timedelta(hours=1))
    house.start()
    v = house.servers.meter.view()
    assert v.stale is None and v.uncorrected and v.balance_wh is None
    assert house.get("/rpc/EM.GetStatus?id=0").json()["total_act_power"] == 300.0  # as the real meter


# --- no fresh reading: the devices get no meter ----------------------------------------------------
def assert_no_meter(house: House) -> None:
    r = house.get("/rpc/EM.GetStatus?id=0")
    assert r.status_code == 503 and r.json()["code"] == -114 and "total_act_power" not in r.text
    assert house.get("/rpc/Shelly.GetStatus").status_code == 503
    frame = house.rpc("EM.GetStatus", {"id": 0})
    assert frame["error"]["code"] == -114 and "result" not in frame
    assert house.udp(timeout=0.5) is None  # silence over UDP
    c = house.modbus()
    try:
        rr = c.read_input_registers(0x0034, count=2, device_id=1)
        assert rr.isError() and rr.exception_code == 4  # server device failure
    finally:
        c.close()
    for meter in (house.eastron(), house.shelly_driver()):
        try:
            with pytest.raises(MeterError):
                meter.read()
        finally:
            meter.close()
    assert house.get("/shelly").status_code == 200  # the device itself is still there


def test_a_stale_reading_makes_every_device_stop_never_a_stale_zero(house):
    house.reading(0.0)
    house.managing(0.0)
    house.start()
    assert house.get("/rpc/EM.GetStatus?id=0").json()["total_act_power"] == 0.0  # fresh: a true zero
    house.advance(16)  # stale after 3 x monitoring.interval_s = 15 s
    assert house.servers.meter.view().stale.startswith("the newest reading is 16 s old")
    assert_no_meter(house)
    house.reading(250.0)  # monitoring is back (0 -> 250 W over 16 s: 0.56 Wh more in the balance)
    house.advance(vmod.CACHE_S)
    shown = house.get("/rpc/EM.GetStatus?id=0").json()["total_act_power"]
    assert shown == pytest.approx(-(250.0 + 125.0 * 16 / 3600 * 3600 / (1800 - 16.25)), abs=0.06)


@pytest.mark.parametrize("case", ["no_reading", "clock_stepped_back", "latched", "stale_after_s"])
def test_no_reading_a_clock_step_or_the_stop_latch_stop_every_device(tmp_path, case):
    h = House(tmp_path, **({"stale_after_s": 6} if case == "stale_after_s" else {}))
    try:
        if case != "no_reading":
            h.reading(1000.0)
            h.managing(0.0)
        if case == "clock_stepped_back":
            h.clock.step(-120)  # the reading is from the future now
        if case == "latched":
            set_latch(h.s.paths.state_dir, h.clock.now(), "test")
        if case == "stale_after_s":
            h.advance(7)
        h.start()
        assert h.servers.meter.view().stale
        assert_no_meter(h)
    finally:
        h.stop()


# --- what the documented shapes say ----------------------------------------------------------------
def test_the_device_answers_as_a_shelly_pro_3em_gen2(house):
    house.reading(-100.0, import_wh_total=12345.0, export_wh_total=678.0)
    house.managing(0.0)
    house.start()
    info = house.get("/shelly").json()  # what Home Assistant's aioshelly asks first (get_info)
    assert info["gen"] == 2 and info["app"] == "Pro3EM" and info["model"] == "SPEM-003CEBEU"
    assert info["auth_en"] is False and info["id"] == "shellypro3em-" + info["mac"].lower()
    assert house.get("/rpc/Shelly.GetDeviceInfo").json() == info
    status = house.get("/rpc/Shelly.GetStatus").json()
    assert status["em:0"]["total_act_power"] == 100.0 and status["sys"]["mac"] == info["mac"]
    data = house.get("/rpc/EMData.GetStatus?id=0").json()
    assert data["total_act"] == 12345.0 and data["total_act_ret"] == 678.0  # Wh, as the Pro 3EM counts
    frame = house.rpc("EM.GetStatus", {"id": 0}, id_=42)
    assert frame["id"] == 42 and frame["dst"] == "test-client" and frame["src"] == info["id"]
    # errors as Shelly's RPC gives them
    assert house.get("/rpc/EM.GetStatus?id=1").status_code == 404
    assert house.get("/rpc/EM.GetStatus?id=x").json()["code"] == -103
    assert house.get("/rpc/Switch.Set?id=0&on=true").status_code == 404
    assert house.rpc("Switch.Set", {"id": 0, "on": True})["error"]["code"] == 404
    assert house.udp(b'{"id":3,"method":"EM1.GetStatus","params":{"id":0}}')["error"]["code"] == 404
    assert house.get("/").status_code == 404


def test_every_power_is_a_json_number_with_a_decimal_point(house):
    """The emulators that serve Marstek B2500 batteries make sure every power carries a decimal
    point (100.0, not 100: tomquist/b2500-meter adds 0.001 to whole numbers); JSON floats here
    always do."""
    house.reading(-100.0)
    house.managing(0.0)
    house.start()
    raw = requests.get(house.url + "/rpc/EM.GetStatus?id=0", timeout=5).text
    for key in ("total_act_power", "a_act_power", "b_act_power", "c_act_power"):
        value = raw.split(f'"{key}":')[1].split(",")[0]
        assert "." in value, (key, value)


# --- the WebSocket on /rpc (Home Assistant's transport) ---------------------------------------------
def ws_connect(house: House):
    import websocket  # websocket-client: a client that is not the server's code
    ws = websocket.create_connection(f"ws://127.0.0.1:{house.http_port}/rpc", timeout=5)
    return ws


def ws_call(ws, method: str, params: dict | None = None, id_: int = 1) -> dict:
    ws.send(json.dumps({"id": id_, "src": "ha-test", "method": method, "params": params or {}}))
    while True:
        frame = json.loads(ws.recv())
        if frame.get("id") == id_:
            return frame


def test_the_websocket_answers_what_home_assistant_asks_and_pushes_every_new_reading(house):
    import websocket
    house.reading(-300.0, import_wh_total=1000.0)
    house.managing(0.0)
    house.start()
    ws = ws_connect(house)
    try:
        info = ws_call(ws, "Shelly.GetDeviceInfo")["result"]
        assert info["gen"] == 2 and info["model"] == "SPEM-003CEBEU"
        config = ws_call(ws, "Shelly.GetConfig", id_=2)["result"]
        assert config["sys"]["device"]["mac"] == info["mac"] and config["em:0"]["id"] == 0
        assert ws_call(ws, "Shelly.GetComponents", {"dynamic_only": True}, id_=3)["result"] == {
            "components": [], "cfg_rev": 1, "offset": 0, "total": 0}
        assert ws_call(ws, "Script.List", id_=4)["result"] == {"scripts": []}
        status = ws_call(ws, "Shelly.GetStatus", id_=5)
        assert status["dst"] == "ha-test" and status["result"]["em:0"]["total_act_power"] == 300.0
        assert ws_call(ws, "Switch.Set", {"id": 0}, id_=6)["error"]["code"] == 404
        # a new reading: pushed, unasked
        house.advance(2)
        house.reading(-1200.0, import_wh_total=1001.0)
        house.advance(vmod.CACHE_S)
        push = json.loads(ws.recv())
        assert push["method"] == "NotifyStatus" and push["dst"] == "ha-test" and push["src"] == info["id"]
        assert push["params"]["em:0"]["total_act_power"] == pytest.approx(1200.0, abs=1.0)
        assert push["params"]["emdata:0"]["total_act"] == 1001.0
        # stale: the WebSocket is closed, and a new one refused (Home Assistant: unavailable)
        house.advance(16)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                ws.recv()
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ws_connect(house)
    assert refused.value.status_code == 503
    house.reading(-500.0)  # fresh again: it connects
    house.advance(vmod.CACHE_S)
    ws = ws_connect(house)
    try:
        shown = round(house.servers.meter.view().import_w, 1)  # 500 W and the balance's correction
        assert ws_call(ws, "EM.GetStatus", {"id": 0})["result"]["total_act_power"] == shown and shown > 500.0
    finally:
        ws.close()


def test_websocket_clients_are_bounded_in_number_size_and_idleness(tmp_path):
    import websocket
    house = House(tmp_path, stale_after_s=600)  # the reading stays fresh while the clients idle
    house.reading(0.0)
    house.managing(0.0)
    house.start()
    clients = [ws_connect(house) for _ in range(vmod.WS_CLIENTS)]
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as full:
            ws_connect(house)
        assert full.value.status_code == 503
        big = clients[0]
        big.send(json.dumps({"id": 1, "src": "x", "method": "EM.GetStatus", "pad": "a" * vmod.MAX_WS_MESSAGE_BYTES}))
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                big.recv()
        assert ws_call(clients[1], "EM.GetStatus", {"id": 0})["result"]["total_act_power"] == 0.0
        # silent for WS_IDLE_S of the injected clock: closed; one that spoke meanwhile stays
        house.advance(vmod.WS_IDLE_S - 50)
        ws_call(clients[2], "EM.GetStatus", {"id": 0})  # answered: the server has counted its frame
        house.advance(51)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                clients[3].recv()
        assert ws_call(clients[2], "EM.GetStatus", {"id": 0}, id_=2)["result"]["total_act_power"] == 0.0
    finally:
        for c in clients:
            c.close()
        house.stop()


# --- bounds ---------------------------------------------------------------------------------------
def raw_http(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        try:
            while chunk := s.recv(4096):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def test_http_requests_are_bounded_in_size(house):
    house.reading(0.0)
    house.managing(0.0)
    house.start()
    p = house.http_port
    long_url = b"GET /rpc/EM.GetStatus?id=0&x=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_http(p, long_url).startswith(b"HTTP/1.0 413")
    many_headers = b"GET /shelly HTTP/1.1\r\n" + b"X-A: " + b"b" * 1000 + b"\r\n" * 1 + \
        b"".join(b"X-%d: %s\r\n" % (i, b"c" * 500) for i in range(30)) + b"\r\n"
    assert raw_http(p, many_headers).startswith(b"HTTP/1.0 413")
    # a body announced over the limit is refused before it is read
    big = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
    assert raw_http(p, big).startswith(b"HTTP/1.0 413")
    assert raw_http(p, b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n").startswith(b"HTTP/1.0 400")
    r = requests.post(house.url + "/rpc", data=b"{not json", timeout=5)
    assert r.status_code == 400
    r = requests.post(house.url + "/rpc", data=b"[" * 1900 + b"]" * 1900, timeout=5)  # nested: not a request
    assert r.status_code in (200, 400) and "result" not in r.text
    assert house.get("/rpc/EM.GetStatus?id=0").status_code == 200  # and it still answers


def test_slow_or_idle_clients_hold_no_worker(house, monkeypatch):
    monkeypatch.setattr(shellyhttp, "READ_DEADLINE_S", 0.5)
    house.reading(0.0)
    house.managing(0.0)
    house.start()
    idle = [socket.create_connection(("127.0.0.1", house.http_port), 2) for _ in range(vmod.HTTP_THREADS + vmod.HTTP_QUEUE + 8)]
    try:
        for s in idle[:3]:
            s.sendall(b"GET /shelly HTTP/1.1\r\n")  # and never the rest
        # the connections past the pool and its queue were closed at once; the others time out
        # (READ_DEADLINE_S each, HTTP_THREADS at a time): then a request is answered again
        t0, r = time.monotonic(), None
        while r is None and time.monotonic() - t0 < 10:
            try:
                r = requests.get(house.url + "/rpc/EM.GetStatus?id=0", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.1)
        assert r is not None and r.status_code == 200
        closed = 0
        for s in idle:
            s.settimeout(3)
            try:
                closed += s.recv(100) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 1
        assert closed == len(idle)
    finally:
        for s in idle:
            s.close()


def test_udp_datagrams_are_bounded_and_answers_rate_limited(house):
    house.reading(0.0)
    house.managing(0.0)
    house.start()
    padded = b'{"id":1,"method":"EM.GetStatus","params":{"id":0},"x":"' + b"a" * vmod.MAX_DATAGRAM_BYTES + b'"}'
    assert house.udp(padded, timeout=0.5) is None
    assert house.udp(b"not json", timeout=0.5) is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(0.5)
        for _ in range(vmod.UDP_ANSWERS_PER_S + 10):
            u.sendto(EM_REQUEST, ("127.0.0.1", house.udp_port))
        answers = 0
        try:
            while True:
                u.recvfrom(4096)
                answers += 1
        except TimeoutError:
            pass
    assert 1 <= answers <= vmod.UDP_ANSWERS_PER_S + 1  # (the limiter counts the injected clock's seconds)
    house.clock.advance(1.0)  # the next second: answered again
    assert house.udp()["result"]["total_act_power"] == 0.0


def test_the_sdm630_answers_only_reads_of_its_registers_at_its_unit(house):
    house.reading(0.0)
    house.managing(0.0)
    house.start()
    c = house.modbus()
    try:
        assert c.write_register(0x0000, 1, device_id=1).exception_code == 1  # illegal function
        assert c.write_registers(0x0002, [1, 2], device_id=1).exception_code == 1
        assert c.read_coils(0x0000, count=1, device_id=1).exception_code == 1
        assert not c.read_holding_registers(0x0000, count=2, device_id=1).isError()  # its settings
        assert c.read_holding_registers(0x0100, count=2, device_id=1).exception_code == 2  # not in the map
        assert c.read_input_registers(0x0200, count=2, device_id=1).exception_code == 2  # illegal address
        # another unit: a gateway's "target device failed to respond" (0x0B), not the stale meter's 0x04
        for unit in (7, 2, 247):
            assert c.read_input_registers(0x0034, count=2, device_id=unit).exception_code == 0x0B
            assert c.read_holding_registers(0xFC00, count=2, device_id=unit).exception_code == 0x0B
        assert not c.read_input_registers(0x0034, count=2, device_id=1).isError()
        house.advance(16)  # stale: 0x04 at its unit, still 0x0B at another
        assert c.read_input_registers(0x0034, count=2, device_id=1).exception_code == 4
        assert c.read_holding_registers(0x0000, count=2, device_id=1).exception_code == 4
        assert c.read_input_registers(0x0034, count=2, device_id=7).exception_code == 0x0B
    finally:
        c.close()


# the Eastron SDM630 Modbus protocol's map (V1.5/V2; as sdm_modbus 0.7.0 reads it): the blocks a
# client reads in one request each, every input register in them answered
SDM630_INPUT_BLOCKS = [(0x0000, 0x004C), (0x0050, 0x001C), (0x00C8, 0x0046), (0x014E, 0x0030)]


def test_the_sdm630_answers_every_register_of_a_real_one(house):
    # 900 W of export shown: 300 W a phase; the real meter's counters 12345 Wh in, 678 Wh out
    house.reading(900.0, import_wh_total=12345.0, export_wh_total=678.0)
    house.managing(0.0)
    house.start()
    c = house.modbus()
    try:
        regs: dict[int, float] = {}
        for start, count in SDM630_INPUT_BLOCKS:
            rr = c.read_input_registers(start, count=count, device_id=1)
            assert not rr.isError(), hex(start)
            regs.update({start + i: sdm_float(rr.registers, i) for i in range(0, count, 2)})
        hold = c.read_holding_registers(0x0000, count=0x28, device_id=1).registers
        serial = c.read_holding_registers(0xFC00, count=2, device_id=1).registers
    finally:
        c.close()
    kwh = pytest.approx
    assert regs[0x0034] == kwh(-900.0) and [regs[a] for a in (0x000C, 0x000E, 0x0010)] == [kwh(-300.0)] * 3
    assert regs[0x0048] == kwh(12.345) and regs[0x004A] == kwh(0.678)
    assert regs[0x0156] == kwh(12.345 + 0.678)                                   # total kWh
    assert [regs[a] for a in (0x015A, 0x015C, 0x015E)] == [kwh(12.345 / 3)] * 3  # L1-L3 import kWh
    assert [regs[a] for a in (0x0160, 0x0162, 0x0164)] == [kwh(0.678 / 3)] * 3   # L1-L3 export kWh
    assert [regs[a] for a in (0x0166, 0x0168, 0x016A)] == [kwh(13.023 / 3)] * 3  # L1-L3 total kWh
    assert [regs[a] for a in (0x00C8, 0x00CA, 0x00CC, 0x00CE)] == [kwh(230.0 * math.sqrt(3), rel=1e-6)] * 4
    assert regs[0x005C] == kwh(900.0) and regs[0x0058] == 0.0                      # export / import demand W
    assert [regs[a] for a in (0x0102, 0x0104, 0x0106)] == [kwh(300.0 / 230.0)] * 3
    assert sdm_float(hold, 0x000A) == 3.0 and sdm_float(hold, 0x0014) == 1.0 and sdm_float(hold, 0x0002) == 60.0
    sn = serial[0] << 16 | serial[1]
    assert sn == serial_number(house.s.site) and 0 < sn < 100_000_000  # the same at every start


def test_the_sdm630_keeps_a_bounded_number_of_connections(house):
    house.reading(0.0)
    house.managing(0.0)
    house.start()
    clients = [house.modbus() for _ in range(vmod.MODBUS_CONNECTIONS + 4)]
    try:
        assert not clients[-1].read_input_registers(0x0034, count=2, device_id=1).isError()
        assert house.servers.sdm630 is not None
        server = house.servers.sdm630._server
        t0 = time.monotonic()  # the server closes the oldest as it accepts the newest: wait for it (bounded)
        while len(server.active_connections) > vmod.MODBUS_CONNECTIONS and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        assert len(server.active_connections) <= vmod.MODBUS_CONNECTIONS
    finally:
        for c in clients:
            c.close()


# --- where it listens, and its settings ------------------------------------------------------------
def test_what_the_devices_are_shown_is_logged_once_per_change(house, caplog):
    house.reading(100.0)
    house.start()
    with caplog.at_level("INFO", logger="gestor.virtualmeter"):
        for _ in range(5):  # no managing: plain net power (0-12 s), then stale (18 s old, 24 s old)
            house.servers.check()
            house.advance(6)
        house.managing(0.0)
        house.reading(100.0)
        for _ in range(3):
            house.servers.check()
            house.advance(1)
    said = [r.getMessage() for r in caplog.records if r.name == "gestor.virtualmeter"]
    assert len(said) == 3, said
    assert "plain net power" in said[0] and "no meter for the devices" in said[1] and "corrected by" in said[2]


def test_off_and_bound_to_this_machine_by_default(tmp_path):
    d = VirtualMeterSettings()
    assert d.enabled is False and d.shelly_udp_ports == []
    assert listen_address(d.shelly_listen)[0] == "127.0.0.1" and listen_address(d.sdm630_listen)[0] == "127.0.0.1"
    s = parse_settings(example_raw() | {"meter": {"driver": "shelly_em", "host": "192.0.2.1"}})
    assert s.virtual_meter == d  # the shipped file leaves it off
    # started on the defaults' hosts (other ports: the tests run side by side): loopback only
    h = House(tmp_path)
    try:
        h.start()
        assert h.servers.shelly.address[0] == "127.0.0.1"
        assert h.servers.udp[0].address[0] == "127.0.0.1"
        assert h.servers.sdm630.host == "127.0.0.1"
    finally:
        h.stop()


def vm_errors(**section: object) -> list[str]:
    raw = example_raw() | {"meter": {"driver": "shelly_em", "host": "192.0.2.1"}}
    raw["virtual_meter"] = {"enabled": True, **section}
    with pytest.raises(SettingsError) as e:
        parse_settings(raw, "settings.yaml")
    return e.value.errors


@pytest.mark.parametrize("section, error", [
    ({"max_power_w": -5}, "settings.yaml: virtual_meter.max_power_w: must be > 0 (got -5)"),
    ({"max_power_w": 1e6}, "settings.yaml: virtual_meter.max_power_w: must be <= 50000 (got 1000000.0)"),
    ({"unit_id": 0}, "settings.yaml: virtual_meter.unit_id: must be >= 1 (got 0)"),
    ({"shelly_udp_ports": [70000]}, "settings.yaml: virtual_meter.shelly_udp_ports[0]: must be < 65536 (got 70000)"),
    ({"shelly_listen": "everywhere"}, "settings.yaml: virtual_meter.shelly_listen: must be HOST:PORT, e.g. "
                                      "0.0.0.0:8080, 127.0.0.1:8080 or [::]:8080 (got 'everywhere')"),
    ({"shelly_listen": None, "shelly_udp_ports": [1010]},
     "settings.yaml: virtual_meter: shelly_udp_ports needs shelly_listen (the UDP RPC listens on its host)"),
    ({"shelly_listen": None, "sdm630_listen": None},
     "settings.yaml: virtual_meter: enabled with neither shelly_listen nor sdm630_listen: nothing to serve"),
    ({"stale_after_s": 5}, "settings.yaml: virtual_meter.stale_after_s: must be > monitoring.interval_s (5 s) (got 5)"),
    ({"shelly_listen": "0.0.0.0:8080"}, "settings.yaml: virtual_meter.shelly_listen: the same TCP port as web.listen "
                                        "'0.0.0.0:8080': choose another port (got '0.0.0.0:8080')"),
    ({"sdm630_listen": "127.0.0.1:8081"}, "settings.yaml: virtual_meter.sdm630_listen: the same TCP port as "
                                          "virtual_meter.shelly_listen (got '127.0.0.1:8081' and '127.0.0.1:8081')"),
    ({"min_remaining_s": 1800, "stale_after_s": 10}, None),
    ({"enabled": "maybe"}, "settings.yaml: virtual_meter.enabled: "),
])
def test_settings_mistakes_are_one_line_naming_the_key(section, error):
    if error is None:  # the hourly period: 1800 s is allowed; a quarter-hour one is shorter than that
        raw = example_raw() | {"meter": {"driver": "shelly_em", "host": "192.0.2.1"}}
        raw["virtual_meter"] = {"enabled": True, **section}
        parse_settings(raw)
        raw["billing"] = {"period_s": 900}
        with pytest.raises(SettingsError) as e:
            parse_settings(raw, "settings.yaml")
        assert e.value.errors == ["settings.yaml: virtual_meter.min_remaining_s: must be < billing.period_s (900 s) "
                                  "(got 1800)"]
        return
    errs = vm_errors(**section)
    assert len(errs) == 1 and errs[0].startswith(error), errs


def test_the_shipped_settings_document_the_section_commented_out():
    text = (REPO / "config" / "settings.yaml").read_text()
    block = text.split("# virtual_meter:")[1].split("\npaths:")[0]
    doc = yaml.safe_load("virtual_meter:\n" + "\n".join(line.replace("#", "", 1)[1:] if line.startswith("#") else line
                                                        for line in block.splitlines()[1:] if line.strip()))
    keys = {k for k in doc["virtual_meter"]}
    assert keys == set(VirtualMeterSettings.model_fields), keys


def test_a_server_that_cannot_listen_is_one_line(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        h = House(tmp_path, sdm630_listen=f"127.0.0.1:{busy.getsockname()[1]}")
        with pytest.raises(GestorError) as e:
            h.start()
        assert str(e.value).startswith(f"cannot listen on 127.0.0.1:{busy.getsockname()[1]} (TCP): ")
        assert "\n" not in str(e.value)
        with pytest.raises(requests.ConnectionError):  # the Shelly it had started was stopped again
            requests.get(h.url + "/shelly", timeout=2)
    finally:
        busy.close()


# --- the command and its unit ----------------------------------------------------------------------
def write_settings(tmp_path: Path, section: dict) -> Path:
    raw = example_raw() | {"meter": {"driver": "shelly_em", "host": "192.0.2.1"}, "store": {"kind": "none"},
                           "paths": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}}
    raw["virtual_meter"] = section
    f = tmp_path / "settings.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


def test_the_command_refuses_to_start_when_not_enabled(tmp_path):
    f = write_settings(tmp_path, {"enabled": False})
    p = subprocess.run(GESTOR + ["virtual-meter", "--config", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "virtual_meter.enabled is false" in p.stderr


def test_the_command_serves_until_sigterm(tmp_path):
    http_port, modbus_port = free_port(), free_port()
    f = write_settings(tmp_path, {"enabled": True, "shelly_listen": f"127.0.0.1:{http_port}",
                                  "sdm630_listen": f"127.0.0.1:{modbus_port}"})
    (tmp_path / "run").mkdir()
    LiveStateWriter(tmp_path / "run").publish(Reading(datetime.now(timezone.utc), -450.0), time.monotonic())
    p = subprocess.Popen(GESTOR + ["virtual-meter", "--config", str(f)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                r = requests.get(f"http://127.0.0.1:{http_port}/rpc/EM.GetStatus?id=0", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["total_act_power"] == 450.0  # managing is not running: plain net
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "Traceback" not in err and "showing the plain net power (not corrected: managing" in err


def test_the_command_names_the_address_it_cannot_listen_on(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        f = write_settings(tmp_path, {"enabled": True, "shelly_listen": f"127.0.0.1:{busy.getsockname()[1]}"})
        p = subprocess.run(GESTOR + ["virtual-meter", "--config", str(f)], capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("gestor virtual-meter: error: cannot listen on 127.0.0.1:")


def test_the_unit_verifies_and_is_hardened(tmp_path):
    s = _service("gestor-virtual-meter.service")
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"] and s["RestartPreventExitStatus"] == ["2"]
    assert s["ExecStart"][0].split()[1:3] == ["virtual-meter", "--config"] and int(s["WatchdogSec"][0]) >= 30
    assert s["User"] == ["gestor"] and s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"] and s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["IPAddressDeny"] == ["any"] and "0.0.0.0/0" not in s["IPAddressAllow"][0]
    assert s["DevicePolicy"] == ["closed"] and "DeviceAllow" not in s
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (./install.sh --test installs systemd)"
    f = tmp_path / "gestor-virtual-meter.service"
    f.write_text((REPO / "daemons" / f.name).read_text().replace("/opt/gestor/venv/bin/",
                                                                   str(Path(sys.executable).parent) + "/"))
    p = subprocess.run(["systemd-analyze", "verify", str(f)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(f)],
                       capture_output=True, text=True)
    line = [x for x in p.stdout.splitlines() if "Overall exposure level" in x]
    assert line and float(line[0].split("level for")[1].split(":")[1].split()[0]) < 4.0
    assert "virtual-meter" not in (REPO / "install.sh").read_text()  # not enabled by the installer
