"""gestor against Home Assistant itself (issue 24): a pinned Home Assistant in its own venv, on
loopback, with its MQTT integration on a real mosquitto, and gestor's managing and monitoring
publishing to it on a simulated clock. Everything is asserted through Home Assistant's own API:
the entities and their states, the select and the button, its log, and the Energy dashboard's
validation of gestor's counters.

Slow (``-m "not slow"`` leaves it out). The first run on a machine installs Home Assistant (~2 min,
~600 MB under ``.build/ha-venv-<pin>-py<ver>``, reused while the pin stays); a warm run takes about
half a minute. It is skipped, saying why, only where Home Assistant cannot be installed (no
Python 3.11/3.12, the package index unreachable); ``GESTOR_REQUIRE_HA=1`` makes that a failure
(CI). Home Assistant runs with ``--skip-pip``: every requirement of the integrations it loads is
installed with it, from their manifests, so it never installs anything at run time.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from gestor.runtime.livestate import is_latched
from gestor.sim.lockstep import run_lockstep
from gestor.runtime.devicecontrols import DeviceControl, read_controls
from gestor.runtime.overrides import read_overrides
from tests.conftest import free_port, make_settings
from tests.integration.test_mqtt import HA_PASSWORD, PASSWORD, Broker
from tests.integration.test_safety import T0, sunny_csv

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(subprocess.run(["which", "mosquitto"], capture_output=True).returncode != 0,
                                 reason="mosquitto is installed by ./install.sh --test")]

HA_VERSION = "2024.3.3"          # the newest Home Assistant for Python 3.11
PINS = [f"homeassistant=={HA_VERSION}", "josepy<2"]   # josepy 2 breaks acme, which HA 2024.3 pulls in
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".build" / f"ha-venv-{HA_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
# the integrations Home Assistant sets up here: its default ones, and what the test uses
INTEGRATIONS = ["homeassistant", "persistent_notification", "logger", "system_log", "frontend", "recorder",
                "application_credentials", "backup", "hardware", "network", "system_health", "automation",
                "person", "scene", "script", "tag", "zone", "counter", "input_boolean", "input_button",
                "input_datetime", "input_number", "input_select", "input_text", "schedule", "timer", "mqtt",
                "energy", "onboarding", "config", "api", "auth", "http", "websocket_api", "sensor", "select",
                "button", "binary_sensor", "camera"]   # camera: MQTT sets it up (it imports stream's numpy)
EXTRA = ["numpy==1.26.0"]   # stream's, without the rest of stream (ha-av: video, unused here)
USER, USER_PASSWORD = "gestor-test", "s3cret-owner"
SITE = "test"


def _requirements(site_packages: Path) -> list[str]:
    """The pip requirements of INTEGRATIONS and their dependencies, from their manifests."""
    base = site_packages / "homeassistant" / "components"
    todo, seen, reqs = list(INTEGRATIONS), set(), set()
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        m = json.loads((base / d / "manifest.json").read_text())
        reqs.update(m.get("requirements", []))
        todo += m.get("dependencies", [])
    return sorted(reqs)


def ha_venv() -> Path:
    """The venv with Home Assistant, installed once per machine and pin (under a lock: parallel
    runs wait for one install). Skips the test when it cannot be installed."""
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        pytest.skip(f"Home Assistant {HA_VERSION} needs Python 3.11 or 3.12 (this is {sys.version.split()[0]})")
    ok = VENV / "gestor-installed"
    if ok.exists() and ok.read_text() == "\n".join(PINS):
        return VENV
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "ha-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ok.exists() and ok.read_text() == "\n".join(PINS):
            return VENV
        shutil.rmtree(VENV, ignore_errors=True)
        log = VENV.parent / f"{VENV.name}.install.log"

        def pip(*args: str) -> None:
            with open(log, "a") as out:
                r = subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--no-input", *args],
                                   stdout=out, stderr=subprocess.STDOUT, timeout=1800)
            if r.returncode != 0:
                tail = [ln for ln in log.read_text().splitlines() if not ln.startswith("WARNING: Location")][-8:]
                msg = f"Home Assistant {HA_VERSION} could not be installed (pip, see {log}):\n" + "\n".join(tail)
                if os.environ.get("GESTOR_REQUIRE_HA"):
                    pytest.fail(msg)
                pytest.skip(msg)

        log.write_text("")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip(*PINS)
        site = next((VENV / "lib").glob("python3*/site-packages"))
        pip("-c", str(site / "homeassistant" / "package_constraints.txt"), *_requirements(site), *EXTRA, *PINS[1:])
        ok.write_text("\n".join(PINS))
    return VENV


class HomeAssistant:
    """A Home Assistant process on loopback with a fresh config dir, onboarded (an owner and a
    token), speaking REST and websocket."""

    def __init__(self, venv: Path, config_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = config_dir
        config_dir.mkdir()
        (config_dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: gestor test\n  latitude: 40.4\n  longitude: -3.7\n  elevation: 650\n"
            "  unit_system: metric\n  time_zone: Europe/Madrid\n  currency: EUR\n  country: ES\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nonboarding:\nconfig:\nenergy:\nrecorder:\n  commit_interval: 1\n"
            "logger:\n  default: info\ngestor_test_statistics:\n")
        # the recorder compiles statistics every 5 minutes; this test's own integration compiles
        # the current 5 minutes when asked (the Energy validation wants statistics to exist), or
        # the 5-minute slots of a span (compile_range), and stamps the states Home Assistant's
        # core records with the test's clock once set (set_now: gestor's simulated time)
        comp = config_dir / "custom_components" / "gestor_test_statistics"
        comp.mkdir(parents=True)
        (comp / "manifest.json").write_text(json.dumps({
            "domain": "gestor_test_statistics", "name": "gestor test: compile statistics now", "version": "1.0",
            "dependencies": ["recorder"], "codeowners": [], "documentation": "https://example.invalid",
            "requirements": [], "iot_class": "local_push"}))
        (comp / "__init__.py").write_text(
            "from homeassistant.components.recorder import get_instance\n"
            "from homeassistant.components.recorder.tasks import StatisticsTask\n"
            "from homeassistant.util import dt as dt_util\n"
            "from homeassistant import core as ha_core\n"
            "from datetime import timedelta\n"
            "import time as _time\n\n"
            "# the test's clock for the states Home Assistant's core stamps (set_now): gestor runs on a\n"
            "# simulated clock, and the recorder's statistics must see each state at gestor's time\n"
            "FAKE = {'ts': None}\n\n"
            "class _Time:\n"
            "    def __getattr__(self, k):\n"
            "        return getattr(_time, k)\n"
            "    def time(self):\n"
            "        return FAKE['ts'] if FAKE['ts'] is not None else _time.time()\n\n"
            "class _Dt:\n"
            "    def __getattr__(self, k):\n"
            "        return getattr(dt_util, k)\n"
            "    def utcnow(self):\n"
            "        return dt_util.utc_from_timestamp(FAKE['ts']) if FAKE['ts'] is not None else dt_util.utcnow()\n\n"
            "async def async_setup(hass, config):\n"
            "    async def compile_now(call):\n"
            "        now = dt_util.utcnow()\n"
            "        start = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)\n"
            "        rec = get_instance(hass)\n"
            "        rec.queue_task(StatisticsTask(start, False))\n"
            "        await rec.async_block_till_done()\n"
            "    hass.services.async_register('gestor_test_statistics', 'compile', compile_now)\n"
            "    async def compile_range(call):\n"
            "        rec = get_instance(hass)\n"
            "        t = dt_util.parse_datetime(call.data['start'])\n"
            "        end = dt_util.parse_datetime(call.data['end'])\n"
            "        while t < end:\n"
            "            rec.queue_task(StatisticsTask(t, False))\n"
            "            t += timedelta(minutes=5)\n"
            "        await rec.async_block_till_done()\n"
            "    hass.services.async_register('gestor_test_statistics', 'compile_range', compile_range)\n"
            "    async def set_now(call):\n"
            "        FAKE['ts'] = float(call.data['ts'])\n"
            "        ha_core.time, ha_core.dt_util = _Time(), _Dt()\n"
            "    hass.services.async_register('gestor_test_statistics', 'set_now', set_now)\n"
            "    return True\n")
        self.log = config_dir / "home-assistant.log"
        self.out = open(config_dir / "stdout.txt", "w")
        self.proc = subprocess.Popen([str(venv / "bin" / "python"), "-m", "homeassistant", "-c", str(config_dir),
                                      "--skip-pip", "--log-file", str(self.log), "--log-no-color"],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        self.token: str | None = None
        self.ws = None
        self._id = 0

    # -- REST --------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw):
        import requests
        headers = kw.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def get(self, path: str):
        r = self.request("GET", path)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict):
        r = self.request("POST", path, json=body)
        assert r.status_code < 300, f"{path}: {r.status_code} {r.text}"
        return r.json()

    def wait_up(self, timeout_s: float = 180) -> None:
        import requests
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"Home Assistant exited: {self.tail()}"
            try:
                if requests.get(self.url + "/api/onboarding", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"Home Assistant did not start within {timeout_s} s: {self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-20:]) if self.log.exists() else "(no log)"

    def onboard(self) -> None:
        """The owner (onboarding/users), then a token from the auth flow's code."""
        client_id = self.url + "/"
        code = self.post("/api/onboarding/users", {"client_id": client_id, "name": "Owner", "username": USER,
                                                   "password": USER_PASSWORD, "language": "en"})["auth_code"]
        import requests
        r = requests.post(self.url + "/auth/token", data={"grant_type": "authorization_code", "code": code,
                                                          "client_id": client_id}, timeout=30)
        r.raise_for_status()
        self.token = r.json()["access_token"]
        # (the later steps, core_config and analytics, set up integrations this test does not load)

    def add_mqtt(self, port: int) -> None:
        """The MQTT integration through the config-flow API, as the UI does."""
        flow = self.post("/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        assert flow["type"] == "form" and flow["step_id"] == "broker", flow
        done = self.post(f"/api/config/config_entries/flow/{flow['flow_id']}",
                         {"broker": "127.0.0.1", "port": port, "username": "ha", "password": HA_PASSWORD})
        assert done["type"] == "create_entry", done

    # -- websocket ---------------------------------------------------------------------------
    def ws_call(self, type_: str, **data):
        import websocket
        if self.ws is None:
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/api/websocket", timeout=30)
            assert json.loads(self.ws.recv())["type"] == "auth_required"
            self.ws.send(json.dumps({"type": "auth", "access_token": self.token}))
            assert json.loads(self.ws.recv())["type"] == "auth_ok"
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "type": type_, **data}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id and msg.get("type") == "result":
                assert msg["success"], f"{type_}: {msg}"
                return msg["result"]

    # -- states ------------------------------------------------------------------------------
    def states(self) -> dict[str, dict]:
        return {s["entity_id"]: s for s in self.get("/api/states") if f"gestor_{SITE}" in s["entity_id"]}

    def wait(self, pred, timeout_s: float = 30.0, what: str = "") -> dict[str, dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.states()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"Home Assistant: not {what} within {timeout_s} s; states: "
                                     + json.dumps({k: v['state'] for k, v in st.items()}))
            time.sleep(0.3)

    def error_lines(self) -> list[str]:
        """WARNING and ERROR lines of Home Assistant's log (its API's copy) about gestor."""
        text = self.request("GET", "/api/error_log").text
        return [ln for ln in text.splitlines()
                if (" ERROR " in ln or " WARNING " in ln) and "gestor" in ln.lower()
                and "custom integration gestor_test_statistics" not in ln]

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()


@pytest.fixture(scope="module")
def venv():
    return ha_venv()


def _value(state: dict, path: str):
    v = state
    for k in path.split("."):
        v = v[k] if not k.startswith("[") else v[k[1:-1]]
    return v


# entity id (without "gestor_test_") → the state's JSON path, for the numbers
NUMBERS = {"sensor.{}period_balance": "balance_wh", "sensor.{}period_projection": "projected_wh",
           "sensor.{}last_period_balance": "last_period_wh", "sensor.{}grid_import": "totals.import_wh",
           "sensor.{}grid_export": "totals.export_wh", "sensor.{}production_energy": "totals.production_wh",
           "sensor.{}consumption_energy": "totals.consumption_wh",
           "sensor.{}consumption_power": "consumption_w",   # the house's, without the battery
           "sensor.{}saved_today": "eur_saved_today",
           "sensor.{}import_price": "import_eur_per_kwh", "sensor.{}surplus_price": "surplus_eur_per_kwh",
           "sensor.{}period_time_left": "remaining_s", "sensor.{}meter_age": "reading_age_s",
           "sensor.{}water_heater_energy": "loads.water_heater.energy_wh",
           "sensor.{}pool_pump_energy": "loads.pool_pump.energy_wh",
           "sensor.{}water_heater_switches_today": "loads.water_heater.switches_today",
           "sensor.{}pool_pump_switches_today": "loads.pool_pump.switches_today"}


def _same(ha: dict[str, dict], st: dict, reading: dict) -> list[str]:
    """What differs between Home Assistant's states and gestor's state and reading."""
    n = f"gestor_{SITE}_"
    bad = []
    for eid, path in NUMBERS.items():
        eid = eid.format(n)
        if path.startswith("loads.") and path.split(".")[1] not in st["loads"]:
            continue
        want = _value(st, path)
        got = ha.get(eid, {}).get("state")
        try:
            if abs(float(got) - float(want)) > 1e-3:
                bad.append(f"{eid}: {got} != {want}")
        except (TypeError, ValueError):
            bad.append(f"{eid}: {got} != {want}")
    for eid, want in ((f"sensor.{n}net_power", reading["net_w"]), (f"sensor.{n}production_power", reading["production_w"])):
        got = ha.get(eid, {}).get("state")
        if got is None or got in ("unknown", "unavailable") or abs(float(got) - want) > 1e-3:
            bad.append(f"{eid}: {got} != {want}")
    texts = {f"sensor.{n}tariff_period": st["tariff_period"],
             f"binary_sensor.{n}stop_latch": "on" if st["latched"] else "off"}
    for name, ld in st["loads"].items():
        texts[f"binary_sensor.{n}{name}_on"] = "on" if ld["on"] else "off"
        texts[f"select.{n}{name}_mode"] = ld["mode"]
        texts[f"sensor.{n}{name}_reason"] = ld["reason_text"][:255]
    for eid, want in texts.items():
        if ha.get(eid, {}).get("state") != want:
            bad.append(f"{eid}: {ha.get(eid, {}).get('state')!r} != {want!r}")
    return bad


def test_home_assistant_sees_gestor_right(tmp_path, venv):
    t_start = time.monotonic()
    bdir = tmp_path / "broker"
    bdir.mkdir()
    broker = Broker(bdir).start()
    ha = HomeAssistant(venv, tmp_path / "ha")
    csv = sunny_csv(tmp_path / "sun.csv", 80)
    mqtt = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": "gestor", "password": PASSWORD,
            "publish_s": 10}
    battery = [{"name": "battery", "reserve_wh_per_h": 0, "device": {"driver": "simulated", "kind": "battery",
                                                                    "capacity_wh": 5000, "soc_pct": 20}}]
    s = make_settings(tmp_path, meter={"path": str(csv)}, mqtt=mqtt, setpoints=battery)
    clock = SimClock(T0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    mgrs = [mgr]
    try:
        ha.wait_up()
        ha.onboard()
        mon.start_mqtt()
        mgr.start()
        _until(lambda: mgr.mqtt.link.connected and mon.mqtt.connected and mgr.mqtt.ready, "gestor connected")
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(minutes=62))
        ha.add_mqtt(broker.port)   # after gestor: the retained configs and state, then HA's birth
        n = f"gestor_{SITE}_"

        # the entities, with gestor's classes, and gestor's values
        st, reading = mgr.mqtt.state, _reading(mon)
        states = ha.wait(lambda h: not _same(h, st, reading), 60, "gestor's state")
        a = {e: v["attributes"] for e, v in states.items()}
        for obj in ("grid_import", "grid_export", "production_energy", "consumption_energy",
                    "water_heater_energy", "pool_pump_energy"):
            assert (a[f"sensor.{n}{obj}"]["device_class"], a[f"sensor.{n}{obj}"]["state_class"],
                    a[f"sensor.{n}{obj}"]["unit_of_measurement"]) == ("energy", "total_increasing", "Wh"), obj
        for obj in ("period_balance", "period_projection", "last_period_balance"):
            assert a[f"sensor.{n}{obj}"]["device_class"] == "energy" and "state_class" not in a[f"sensor.{n}{obj}"]
        assert a[f"sensor.{n}net_power"]["friendly_name"] == "gestor test Net power (export +)"
        assert a[f"binary_sensor.{n}water_heater_on"]["friendly_name"] == "gestor test Termo eléctrico"  # display_name
        assert a[f"sensor.{n}saved_today"]["unit_of_measurement"] == "EUR"
        assert states[f"sensor.{n}tariff_period"]["state"] in ("P1", "P2", "P3")
        # the battery (a device with a power setpoint): its setpoint, state of charge and energy in/out
        assert (a[f"sensor.{n}battery_setpoint"]["device_class"], a[f"sensor.{n}battery_setpoint"]["unit_of_measurement"]) \
            == ("power", "W")
        assert a[f"sensor.{n}battery_soc"]["device_class"] == "battery"
        for obj in ("battery_energy_in", "battery_energy_out"):
            assert (a[f"sensor.{n}{obj}"]["device_class"], a[f"sensor.{n}{obj}"]["state_class"]) == \
                ("energy", "total_increasing"), obj
        assert float(states[f"sensor.{n}battery_soc"]["state"]) == \
            pytest.approx(st["setpoints"]["battery"]["soc_pct"]) and st["setpoints"]["battery"]["soc_pct"] > 20
        assert float(states[f"sensor.{n}battery_energy_in"]["state"]) == st["setpoints"]["battery"]["taken_wh"] > 0
        registry = {e["entity_id"]: e for e in ha.ws_call("config/entity_registry/list") if n in e["entity_id"]}
        for obj in ("meter_age", "period_time_left", "water_heater_reason", "pool_pump_reason"):
            assert registry[f"sensor.{n}{obj}"]["entity_category"] == "diagnostic", obj
        device = next(d for d in ha.ws_call("config/device_registry/list") if d["name"] == f"gestor {SITE}")
        assert device["sw_version"] == __import__("gestor").__version__
        assert device["configuration_url"].startswith("http://") and device["configuration_url"].endswith(":8080/")

        # the select: a load's mode through HA's service, seen in gestor's overrides and back in HA
        ha.post("/api/services/select/select_option", {"entity_id": f"select.{n}water_heater_mode", "option": "off"})
        _until(lambda: "water_heater" in read_overrides(s.paths.state_dir, clock.now()), "override from HA's select")
        assert read_overrides(s.paths.state_dir, clock.now())["water_heater"].on is False
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(minutes=1))
        assert mgr.loads[0].on is False and mgr.loads[1].on is True
        ha.wait(lambda h: h[f"select.{n}water_heater_mode"]["state"] == "off"
                and h[f"binary_sensor.{n}water_heater_on"]["state"] == "off", 30, "the load off")
        # the battery's controls through Home Assistant's services (issue 32 item 11)
        ha.post("/api/services/select/select_option", {"entity_id": f"select.{n}battery_mode", "option": "discharge_only"})
        ha.post("/api/services/number/set_value", {"entity_id": f"number.{n}battery_min_soc", "value": 30})
        ha.post("/api/services/number/set_value", {"entity_id": f"number.{n}battery_target", "value": 200})
        _until(lambda: read_controls(s.paths.state_dir).get("battery") == DeviceControl("discharge_only", 30.0, 200.0),
               "the battery's controls from HA")
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(minutes=1))
        bat = mgr.setpoints.devices[0]
        assert bat.setpoint_w == 0.0 and "mode discharge_only, min SoC 30 %" in bat.reason   # sunny: it would charge
        ha.wait(lambda h: h[f"select.{n}battery_mode"]["state"] == "discharge_only"
                and float(h[f"number.{n}battery_min_soc"]["state"]) == 30
                and float(h[f"number.{n}battery_target"]["state"]) == 200, 30, "the battery's controls")
        ha.post("/api/services/select/select_option", {"entity_id": f"select.{n}battery_mode", "option": "charge_only"})
        _until(lambda: read_controls(s.paths.state_dir)["battery"].mode == "charge_only", "charge only from HA")
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(minutes=1))
        assert bat.setpoint_w > 0
        # the button: the emergency stop, gestor's latch set and every load off, the battery idle
        # whatever its mode
        ha.post("/api/services/button/press", {"entity_id": f"button.{n}stop"})
        _until(lambda: is_latched(s.paths.state_dir) and not any(ld.on for ld in mgr.loads) and bat.idle,
               "the stop from HA")
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(seconds=30))
        ha.wait(lambda h: h[f"binary_sensor.{n}stop_latch"]["state"] == "on"
                and h[f"binary_sensor.{n}pool_pump_on"]["state"] == "off", 30, "the latch on")

        # managing restarts without pool_pump: its entities go, with no error in HA's log, and
        # what a user sees (counters, switches today, last period, saved today) is unchanged
        before = dict(mgr.mqtt.state)
        mgr.stop()
        mgrs.clear()
        loads = [ld for ld in s.model_dump(mode="json")["loads"] if ld["name"] == "water_heater"]
        s2 = make_settings(tmp_path, meter={"path": str(csv)}, loads=loads, mqtt=mqtt, setpoints=battery)
        mgr = managing.Managing(s2, clock, NullStore())
        mgrs.append(mgr)
        mgr.start()
        _until(lambda: mgr.mqtt.link.connected and mgr.mqtt.ready, "managing reconnected")
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(seconds=30))
        after = mgr.mqtt.state
        for k in ("totals", "last_period_wh", "eur_saved_today"):
            assert after[k] == before[k], k
        assert after["loads"]["water_heater"]["switches_today"] == before["loads"]["water_heater"]["switches_today"]
        assert after["loads"]["water_heater"]["energy_wh"] == before["loads"]["water_heater"]["energy_wh"]
        states = ha.wait(lambda h: f"select.{n}pool_pump_mode" not in h and f"sensor.{n}pool_pump_energy" not in h
                         and not _same(h, after, _reading(mon)), 30, "pool_pump's entities gone")

        # the Energy dashboard on gestor's counters (and its prices): no issue
        ha.post("/api/services/gestor_test_statistics/compile", {})
        flow = {"entity_energy_price": None, "number_energy_price": None}
        ha.ws_call("energy/save_prefs", energy_sources=[
            {"type": "grid",
             "flow_from": [{**flow, "stat_energy_from": f"sensor.{n}grid_import", "stat_cost": None,
                            "entity_energy_price": f"sensor.{n}import_price"}],
             "flow_to": [{**flow, "stat_energy_to": f"sensor.{n}grid_export", "stat_compensation": None,
                          "entity_energy_price": f"sensor.{n}surplus_price"}],
             "cost_adjustment_day": 0},
            {"type": "solar", "stat_energy_from": f"sensor.{n}production_energy", "config_entry_solar_forecast": None},
            {"type": "battery", "stat_energy_from": f"sensor.{n}battery_energy_out",
             "stat_energy_to": f"sensor.{n}battery_energy_in"}],
            device_consumption=[{"stat_consumption": f"sensor.{n}water_heater_energy"}])
        # the prefs create cost sensors: validate until they are there (at most 60 s), not after a sleep
        deadline = time.monotonic() + 60
        while True:
            ha.post("/api/services/gestor_test_statistics/compile", {})
            validation = ha.ws_call("energy/validate")
            issues = [i for group in validation["energy_sources"] + validation["device_consumption"] for i in group]
            if not issues or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert not issues, validation
        stats = ha.ws_call("recorder/validate_statistics")
        assert not {k: v for k, v in stats.items() if n in k}, stats

        # HA's log: nothing about gestor (no template error when a load went, no bad unit or class),
        # and no error at all
        assert not ha.error_lines(), "\n".join(ha.error_lines())
        errors = [ln for ln in ha.request("GET", "/api/error_log").text.splitlines() if " ERROR " in ln]
        assert not errors, "\n".join(errors)
        print(f"\nenergy/validate: {json.dumps(validation)}")
        print(f"\nHome Assistant {HA_VERSION} test: {time.monotonic() - t_start:.0f} s "
              f"(venv {VENV.name}); states: " + json.dumps({k: v["state"] for k, v in sorted(states.items())}))
    finally:
        for m in mgrs:
            m.stop()
        mon.close()
        ha.close()
        broker.stop()


def test_home_assistants_hourly_statistics_book_each_hour_in_its_hour(tmp_path, venv):
    """Issue 32 item 9, through Home Assistant's recorder: its hourly statistics of grid_import and
    grid_export (``recorder/statistics_during_period``, the Energy dashboard's hours) equal, hour
    by hour, gestor's settled steps of each period, and gestor's period books within what a
    period's last 20 s can add (carried into the next hour's step), across a price change from
    P2 to P1 (a Monday, 09:00 -> 10:00 in Madrid). Home Assistant stamps each state with gestor's
    simulated time (the test's own integration, set_now) before each managing cycle."""
    from datetime import datetime, timezone

    from tests.conftest import write_csv
    from tests.integration.test_safety import HEADER
    from gestor.tariff.calendar import period_2_0td
    t0 = datetime(2022, 6, 13, 7, 0, tzinfo=timezone.utc)     # Monday 09:00 in Madrid: P2, then P1 at 10:00
    rows = []
    for i in range(6 * (3 * 60 + 2)):   # 09-10 h night (import), 10-12 h sunny (export)
        t = t0 + timedelta(seconds=10 * i)
        prod = 0 if i < 6 * 60 else 4000
        rows.append(f"{t:%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,{prod},0,0,{prod - 500}")
    csv = write_csv(tmp_path / "monday.csv", HEADER, rows)
    bdir = tmp_path / "broker"
    bdir.mkdir()
    broker = Broker(bdir).start()
    ha = HomeAssistant(venv, tmp_path / "ha")
    mqtt = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": "gestor", "password": PASSWORD,
            "publish_s": 10}
    s = make_settings(tmp_path, meter={"path": str(csv)}, mqtt=mqtt)
    clock = SimClock(t0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    n = f"gestor_{SITE}_"
    ids = {"import_wh": f"sensor.{n}grid_import", "export_wh": f"sensor.{n}grid_export"}
    try:
        ha.wait_up()
        ha.onboard()
        ha.add_mqtt(broker.port)
        ha.post("/api/services/gestor_test_statistics/set_now", {"ts": clock.now().timestamp()})
        # the Energy dashboard prices the grid counters with gestor's price sensors: its cost
        # sensor prices each step at the price Home Assistant has when the step arrives
        flow = {"entity_energy_price": None, "number_energy_price": None}
        ha.ws_call("energy/save_prefs", energy_sources=[{
            "type": "grid", "cost_adjustment_day": 0,
            "flow_from": [{**flow, "stat_energy_from": ids["import_wh"], "stat_cost": None,
                           "entity_energy_price": f"sensor.{n}import_price"}],
            "flow_to": [{**flow, "stat_energy_to": ids["export_wh"], "stat_compensation": None,
                         "entity_energy_price": f"sensor.{n}surplus_price"}]}])
        mon.start_mqtt()
        mgr.start()
        _until(lambda: mgr.mqtt.link.connected and mon.mqtt.connected and mgr.mqtt.ready, "gestor connected")
        steps: dict[str, dict[datetime, float]] = {k: {} for k in ids}
        tariff: dict[datetime, str] = {}
        before = dict(mgr.books.totals)
        first, slot = True, t0 + timedelta(minutes=5)

        def has_totals(h: dict) -> bool:
            return all(h.get(eid, {}).get("state") not in (None, "unknown", "unavailable")
                       and abs(float(h[eid]["state"]) - mgr.books.totals[k]) < 1e-3 for k, eid in ids.items())
        while clock.now() < t0 + timedelta(hours=3, minutes=1):
            at = clock.now() + timedelta(seconds=10)      # the next managing cycle
            ha.post("/api/services/gestor_test_statistics/set_now", {"ts": at.timestamp()})
            run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], at)
            totals = mgr.books.totals
            hour = at.replace(minute=0, second=0, microsecond=0)
            tariff[hour] = period_2_0td(hour, s.tz)
            if first or totals != before:   # wait until Home Assistant has it, at this time
                for k, eid in ids.items():
                    if totals[k] != before[k]:
                        steps[k][hour] = steps[k].get(hour, 0.0) + totals[k] - before[k]
                ha.wait(has_totals, 30, "the counters' step")
                before, first = dict(totals), False
            if at >= slot:   # the recorder compiles each 5 minutes once they are over, as it does live
                ha.wait(has_totals, 30, "the counters")
                ha.post("/api/services/gestor_test_statistics/compile_range",
                        {"start": (slot - timedelta(minutes=5)).isoformat(), "end": slot.isoformat()})
                slot += timedelta(minutes=5)
        hours = [t0 + timedelta(hours=h) for h in range(3)]
        assert [tariff[h] for h in hours] == ["P2", "P1", "P1"]
        stats = ha.ws_call("recorder/statistics_during_period", start_time=t0.isoformat(),
                           end_time=(t0 + timedelta(hours=4)).isoformat(), statistic_ids=list(ids.values()),
                           period="hour", types=["change", "sum"])
        books = {p.start: p for p in mgr.books.closed}
        assert sorted(books) == hours
        carry_wh = (4000 + sum(ld.power_w for ld in s.loads)) * 20 / 3600
        for k, eid in ids.items():
            ha_hours = {datetime.fromtimestamp(r["start"] / 1000, timezone.utc): r["change"] or 0.0
                        for r in stats.get(eid, [])}
            for h in hours:
                book = books[h].import_wh if k == "import_wh" else books[h].export_wh
                got = ha_hours.get(h, 0.0)
                assert got == pytest.approx(steps[k].get(h, 0.0), abs=1e-2), (k, h, ha_hours, steps[k])
                assert abs(got - book) <= carry_wh, (k, h, got, book)
            assert sum(ha_hours.values()) > 400, (k, ha_hours)   # each counter moved
        # hour by hour: 09-10 h (P2) imports what the house used, 10-11 h (P1) exports
        assert books[hours[0]].import_wh > 400 and books[hours[1]].export_wh > 1000
        # and Home Assistant's cost of the import is the P2 hour's import at P2's price (it was
        # priced at P1's, the next hour's, when the counter stepped after the hour)
        p2_eur = s.tariff.import_p2_eur_per_kwh
        cost = ha.wait(lambda h: h.get(f"sensor.{n}grid_import_cost", {}).get("state") not in (None, "unknown"),
                       30, "the import's cost sensor")[f"sensor.{n}grid_import_cost"]
        assert float(cost["state"]) == pytest.approx(steps["import_wh"][hours[0]] / 1000 * p2_eur, abs=1e-4), cost
        print("\nHome Assistant's hours vs gestor's books (Wh): " + json.dumps(
            {k: {h.isoformat(): [round(steps[k].get(h, 0.0), 3),
                                 round(books[h].import_wh if k == "import_wh" else books[h].export_wh, 3)]
                 for h in hours} for k in ids}))
    finally:
        mgr.stop()
        mon.close()
        ha.close()
        broker.stop()


def _reading(mon) -> dict:
    r = mon._last
    return {"net_w": round(r.net_w, 1), "production_w": round(r.production_w, 1),
            "consumption_w": round(r.consumption_w, 1)}


def _until(pred, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout_s} s")
        time.sleep(0.05)
