"""MQTT and Home Assistant against a real broker: Debian's mosquitto on a free loopback port, with
a password file and ACLs (gestor may write its own topics; the "ha" user may read them and send
the commands), driven by the real managing and monitoring daemons on a simulated clock."""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from datetime import timedelta

import pytest

import gestor
import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from gestor.runtime.livestate import is_latched
from gestor.sim.lockstep import run_lockstep
from gestor.settings import SettingsError
from tests.conftest import free_port, make_settings, write_csv
from tests.integration.test_safety import HEADER, T0, _wait, sunny_csv

pytestmark = pytest.mark.skipif(subprocess.run(["which", "mosquitto"], capture_output=True).returncode != 0,
                                reason="mosquitto is installed by ./install.sh --test")
PASSWORD = "s3cret-gestor"
# the README's ACL ("Home Assistant and MQTT"): Home Assistant's user writes under its discovery
# prefix too (its birth message on homeassistant/status, its clean-up when a device is deleted)
ACL = ("user gestor\ntopic readwrite gestor/#\ntopic readwrite homeassistant/#\n\n"
       "user ha\ntopic read gestor/#\ntopic write gestor/+/load/+/mode/set\n"
       "topic write gestor/+/stop/set\ntopic write gestor/+/setpoint/+/+/set\ntopic readwrite homeassistant/#\n")
HA_PASSWORD = "s3cret-ha"


class Broker:
    """mosquitto with a password file and ACLs; stop()/start() on the same port (no persistence:
    a restart loses every retained message, so what comes back was published again)."""

    def __init__(self, d) -> None:
        self.port = free_port()
        self.dir = d
        pw = d / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gestor", PASSWORD], check=True)
        subprocess.run(["mosquitto_passwd", "-b", str(pw), "ha", HA_PASSWORD], check=True)
        (d / "acl").write_text(ACL)
        import getpass  # the broker runs as the test's user: it reads the files under tmp_path
        (d / "mosquitto.conf").write_text(f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous false\n"
                                          f"password_file {pw}\nacl_file {d / 'acl'}\npersistence false\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path):
    d = tmp_path / "broker"
    d.mkdir()
    b = Broker(d).start()
    yield b
    b.stop()


class HA:
    """A Home Assistant stand-in: subscribes to everything it may read, keeps the last payload
    of each topic, publishes commands."""

    def __init__(self, port: int, user: str = "ha", password: str = HA_PASSWORD) -> None:
        import paho.mqtt.client as mqtt
        self.msgs: dict[str, str] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-test")
        self.c.username_pw_set(user, password)
        self.c.on_message = self._msg
        self.c.on_connect = lambda c, *a: (c.subscribe("gestor/#", qos=1), c.subscribe("homeassistant/#", qos=1))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _msg(self, c, u, m) -> None:  # noqa: ANN001
        with self.lock:
            self.msgs[m.topic] = m.payload.decode()

    def get(self, topic: str) -> str | None:
        with self.lock:
            return self.msgs.get(topic)

    def wait(self, pred, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if pred(self.msgs):
                    return True
            time.sleep(0.05)
        return False

    def send(self, topic: str, payload: str) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def daemons(tmp_path, broker, csv, setpoints=None, **mqtt):
    s = make_settings(tmp_path, meter={"path": str(csv)}, setpoints=setpoints or [],
                      mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": "gestor",
                            "password": PASSWORD, "publish_s": 10, **mqtt})
    clock = SimClock(T0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    mon.start_mqtt()
    mgr.start()
    assert wait_for(lambda: mgr.mqtt.link.connected and mon.mqtt.connected), "gestor did not connect"
    return s, clock, mon, mgr


def sunny_daemons(tmp_path, broker, minutes: int, setpoints=None, **mqtt):
    """:func:`daemons` on a sunny recording (tests.integration.test_safety.sunny_csv) of
    ``minutes`` minutes: (its csv, s, clock, mon, mgr)."""
    csv = sunny_csv(tmp_path / "sun.csv", minutes)
    return (csv, *daemons(tmp_path, broker, csv, setpoints, **mqtt))


def without_pool_pump(tmp_path, s, csv, broker):
    """The settings ``s`` with pool_pump removed (on the same broker and meter)."""
    loads = [ld for ld in s.model_dump(mode="json")["loads"] if ld["name"] == "water_heater"]
    return make_settings(tmp_path, meter={"path": str(csv)}, loads=loads,
                         mqtt={"enabled": True, "port": broker.port, "username": "gestor", "password": PASSWORD})


def wait_for(pred, timeout_s: float = 10.0) -> bool:
    return _wait(pred, timeout_s)


def run(clock, mon, mgr, minutes: float) -> None:
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], clock.now() + timedelta(minutes=minutes))


def test_discovery_and_state_equal_managings_own(tmp_path, broker):
    ha = HA(broker.port)
    _, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 70)
    try:
        run(clock, mon, mgr, 62)   # across a period boundary
        assert ha.wait(lambda m: "gestor/test/state" in m and "gestor/test/reading" in m)
        node = "homeassistant/{}/gestor_test/{}/config"
        cfgs = {t: json.loads(p) for t, p in ha.msgs.items() if t.startswith("homeassistant/") and p}
        want = {"net_power": ("power", "measurement", "W", "monitoring"),
                "production_power": ("power", "measurement", "W", "monitoring"),
                "consumption_power": ("power", "measurement", "W", "managing"),   # the house's, without devices
                "period_balance": ("energy", None, "Wh", "managing"),       # restarts each period: no sums
                "period_projection": ("energy", None, "Wh", "managing"),
                "last_period_balance": ("energy", None, "Wh", "managing"),
                "grid_import": ("energy", "total_increasing", "Wh", "managing"),
                "grid_export": ("energy", "total_increasing", "Wh", "managing"),
                "production_energy": ("energy", "total_increasing", "Wh", "managing"),
                "consumption_energy": ("energy", "total_increasing", "Wh", "managing"),
                "water_heater_energy": ("energy", "total_increasing", "Wh", "managing"),
                "saved_today": ("monetary", None, "EUR", "managing"),
                "import_price": (None, "measurement", "EUR/kWh", "managing"),
                "period_time_left": ("duration", "measurement", "s", "managing"),
                "meter_age": ("duration", "measurement", "s", "managing")}
        for obj, (dc, sc, unit, avail) in want.items():
            c = cfgs[node.format("sensor", obj)]
            assert (c.get("device_class"), c.get("state_class"), c["unit_of_measurement"]) == (dc, sc, unit), obj
            assert c["device"]["name"] == "gestor test" and c["availability_topic"] == f"gestor/test/{avail}/availability"
            assert c["device"]["sw_version"] == gestor.__version__ and c["device"]["configuration_url"].endswith(":8080/")
        assert cfgs[node.format("sensor", "net_power")]["expire_after"] == 60   # 3 x 10 s + 30 s
        assert cfgs[node.format("sensor", "tariff_period")]["value_template"] == "{{ value_json.tariff_period }}"
        for obj in ("meter_age", "period_time_left", "water_heater_reason", "pool_pump_switches_today"):
            assert cfgs[node.format("sensor", obj)]["entity_category"] == "diagnostic", obj
        assert cfgs[node.format("binary_sensor", "water_heater_on")]["name"] == "Termo eléctrico"   # its display_name
        assert cfgs[node.format("select", "pool_pump_mode")]["name"] == "Depuradora mode"
        for ld in ("water_heater", "pool_pump"):
            assert cfgs[node.format("binary_sensor", f"{ld}_on")]["device_class"] == "power"
            sel = cfgs[node.format("select", f"{ld}_mode")]
            assert sel["options"] == ["auto", "on", "off"] and sel["command_topic"] == f"gestor/test/load/{ld}/mode/set"
        btn = cfgs[node.format("button", "stop")]
        assert btn["command_topic"] == "gestor/test/stop/set" and btn["payload_press"] == "STOP"
        assert cfgs[node.format("binary_sensor", "stop_latch")]["device_class"] == "problem"
        # the retained state is managing's own
        mgr_state = json.loads((s.paths.run_dir / "managing.json").read_text())
        assert ha.wait(lambda m: json.loads(m["gestor/test/state"])["at"] == mgr_state["at"])
        st = json.loads(ha.get("gestor/test/state"))
        assert st["balance_wh"] == pytest.approx(mgr_state["balance_wh"], abs=1e-3)
        assert st["net_w"] == round(mgr_state["net_w"], 1) and st["latched"] is False
        assert st["last_period_wh"] == pytest.approx(mgr.books.closed[-1].balance_wh, abs=1e-3)
        p = mgr.books.closed[-1]     # one closed period, all surplus: the counters are that period's
        assert len(mgr.books.closed) == 1 and p.balance_wh > 0 and st["totals"]["import_wh"] == 0
        # stepped 20 s before the period's end (issue 32 item 9): its last 20 s come with the next step
        last_h = 20 / 3600
        loads_w = sum(ld.state.cfg.power_w for ld in mgr.loads)
        for key, w in (("export_wh", 3500), ("production_wh", 4000), ("consumption_wh", 500 + loads_w)):
            book = getattr(p, "balance_wh" if key == "export_wh" else key)
            assert 0 < book - st["totals"][key] <= w * last_h + 1e-3, key
        assert st["consumption_w"] == mgr.balance.last.consumption_w   # no setpoint device: the meter's
        assert st["tariff_period"] in ("P1", "P2", "P3") and st["import_eur_per_kwh"] > st["surplus_eur_per_kwh"] > 0
        assert st["eur_saved_today"] == pytest.approx(mgr.books.eur_saved_today, abs=1e-4)
        for ld in mgr.loads:
            assert st["loads"][ld.name]["on"] == ld.on and st["loads"][ld.name]["mode"] == "auto"
            assert st["loads"][ld.name]["switches_today"] == mgr.books.switches_today[ld.name] > 0
            assert st["loads"][ld.name]["energy_wh"] == pytest.approx(mgr.books.loads_wh[ld.name], abs=1e-3)
            assert mgr.books.loads_wh[ld.name] > 0
        assert ha.get("gestor/test/managing/availability") == "online"
        assert ha.get("gestor/test/monitoring/availability") == "online"
        assert json.loads(ha.get("gestor/test/reading"))["net_w"] == mon._last.net_w
    finally:
        mgr.stop()
        mon.close()
    assert ha.wait(lambda m: m.get("gestor/test/managing/availability") == "offline")
    ha.close()


def test_a_select_switches_the_load_through_the_guards_and_not_under_the_latch(tmp_path, broker, caplog):
    night = write_csv(tmp_path / "night.csv", HEADER, [
        f"{T0 + timedelta(seconds=10 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,0,0,0,-500" for i in range(6 * 40)])
    ha = HA(broker.port)
    s, clock, mon, mgr = daemons(tmp_path, broker, night)
    try:
        run(clock, mon, mgr, 2)
        assert not any(ld.on for ld in mgr.loads)
        with caplog.at_level(logging.INFO, "gestor"):
            ha.send("gestor/test/load/pool_pump/mode/set", "on")
            ha.send("gestor/test/load/pool_pump/mode/set", "maybe")      # a bad payload: logged, ignored
            ha.send("gestor/test/load/nope/mode/set", "on")
            assert wait_for(lambda: "override from MQTT: pool_pump manual override on" in caplog.text)
            run(clock, mon, mgr, 1)
        assert mgr.loads[1].on and "manual override on" in mgr.loads[1].reason and not mgr.loads[0].on
        assert "payload 'maybe' ignored" in caplog.text and "no load named 'nope'" in caplog.text
        # the latch wins over the override: stop over MQTT, then "on" again does nothing
        ha.send("gestor/test/stop/set", "STOP")
        assert wait_for(lambda: is_latched(s.paths.state_dir) and not any(ld.on for ld in mgr.loads))
        ha.send("gestor/test/load/water_heater/mode/set", "on")
        time.sleep(0.3)
        run(clock, mon, mgr, 1)
        assert not any(ld.on for ld in mgr.loads) and is_latched(s.paths.state_dir)
        assert mgr.loads[0].reason == "emergency stop from MQTT"
        assert "stop latch set" in mgr.cycle()[0].reason        # the override is held by the latch
        assert ha.wait(lambda m: json.loads(m["gestor/test/state"])["latched"] is True)
    finally:
        mgr.stop()
        mon.close()
        ha.close()


def test_a_wrong_password_is_one_clear_line_and_control_goes_on(tmp_path, broker, caplog):
    csv = sunny_csv(tmp_path / "sun.csv", 20)
    s = make_settings(tmp_path, meter={"path": str(csv)},
                      mqtt={"enabled": True, "port": broker.port, "username": "gestor", "password": "wrong"})
    clock = SimClock(T0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    with caplog.at_level(logging.INFO, "gestor"):
        mgr.start()
        assert wait_for(lambda: "refused managing" in caplog.text)
        run(clock, mon, mgr, 3)
        time.sleep(2.5)    # paho retries meanwhile: still one line
        assert all(ld.on for ld in mgr.loads)                    # control went on
        lines = [r for r in caplog.records if "refused managing" in r.getMessage()]
        msg = lines[0].getMessage()
        assert len(lines) == 1 and ("Not authorized" in msg or "Bad user name" in msg), msg
        assert "wrong" not in msg                                  # the password is never logged
        assert json.loads((s.paths.run_dir / "managing.json").read_text())["mqtt"]["connected"] is False
    mgr.stop()


def test_a_broker_restart_brings_back_discovery_and_state_without_a_daemon_restart(tmp_path, broker):
    _, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 30)
    try:
        run(clock, mon, mgr, 2)
        broker.stop()
        run(clock, mon, mgr, 2)           # the broker is away: control goes on
        assert all(ld.on for ld in mgr.loads) and not mgr.mqtt.link.connected
        broker.start()                     # no persistence: every retained message is gone
        ha = HA(broker.port)
        assert wait_for(lambda: mgr.mqtt.link.connected, 20), "no reconnection"
        assert ha.wait(lambda m: "homeassistant/select/gestor_test/water_heater_mode/config" in m
                       and m.get("gestor/test/managing/availability") == "online" and "gestor/test/state" in m, 10)
        assert json.loads(ha.get("gestor/test/state"))["loads"]["water_heater"]["on"] is True
        ha.close()
    finally:
        mgr.stop()
        mon.close()


def test_a_removed_load_loses_its_entities(tmp_path, broker):
    ha = HA(broker.port)
    csv, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 10)
    topic = "homeassistant/select/gestor_test/pool_pump_mode/config"
    assert ha.wait(lambda m: m.get(topic))
    mgr.stop()
    mon.close()
    mgr2 = managing.Managing(without_pool_pump(tmp_path, s, csv, broker), SimClock(T0), NullStore())
    mgr2.start()
    try:
        assert ha.wait(lambda m: m.get(topic) == "")        # emptied: Home Assistant removes the entity
        assert ha.get("homeassistant/select/gestor_test/water_heater_mode/config")
    finally:
        mgr2.stop()
        ha.close()


class Recorder:
    """Every payload of the state and reading topics, in order (HA keeps the last one only)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        self.got: list[tuple[str, dict]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="recorder")
        self.c.username_pw_set("ha", HA_PASSWORD)
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, json.loads(m.payload))) if m.payload else None
        self.c.on_connect = lambda c, *a: (c.subscribe("gestor/test/state", qos=1), c.subscribe("gestor/test/reading", qos=1))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_every_publish_s_exactly_rounded_and_the_reason_after_a_release(tmp_path, broker):
    from datetime import datetime

    from gestor.runtime.livestate import clear_latch
    night = write_csv(tmp_path / "night.csv", HEADER, [   # no surplus: the loads stay off after the release
        f"{T0 + timedelta(seconds=10 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500.123,0,0,0,-500.123" for i in range(6 * 20)])
    rec = Recorder(broker.port)
    s, clock, mon, mgr = daemons(tmp_path, broker, night)
    try:
        run(clock, mon, mgr, 3)
        assert wait_for(lambda: len([t for t, _ in rec.got if t.endswith("/reading")]) >= 17
                        and len([t for t, _ in rec.got if t.endswith("/state")]) >= 17), [t for t, _ in rec.got]
        for topic in ("gestor/test/state", "gestor/test/reading"):
            ats = [datetime.fromisoformat(p["at"]) for t, p in rec.got if t == topic]
            steps = {(b - a).total_seconds() for a, b in zip(ats[1:], ats[2:])}  # (the first: the loads' switch)
            assert steps == {10.0}, (topic, sorted(steps))     # publish_s 10 s: never 20 s
        for _, p in rec.got:
            for k in ("net_w", "production_w", "consumption_w"):
                if p.get(k) is not None:
                    assert p[k] == round(p[k], 1)
        # the stop, then its release: the reason no longer says "emergency stop" once released
        mgr.emergency_stop("MQTT", "emergency stop from MQTT")
        run(clock, mon, mgr, 1)
        assert mgr.mqtt.state["loads"]["water_heater"]["reason"].startswith("stop latch set")
        assert clear_latch(s.paths.state_dir)
        run(clock, mon, mgr, 0.5)
        st = mgr.mqtt.state["loads"]
        assert not any(ld.on for ld in mgr.loads) and mgr.loads[0].reason == "the stop latch is released: the policy decides"
        assert all("stop latch is released" in st[ld.name]["reason"] for ld in mgr.loads), st
        assert wait_for(lambda: "stop latch is released" in              # and so it was published
                        [p for t, p in rec.got if t.endswith("/state")][-1]["loads"]["pool_pump"]["reason"])
    finally:
        mgr.stop()
        mon.close()
        rec.close()


def test_a_restart_changes_nothing_a_user_sees_and_ha_online_brings_discovery_back(tmp_path, broker):
    ha = HA(broker.port)
    _, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 70)
    try:
        run(clock, mon, mgr, 62)
        before = json.loads(json.dumps(mgr.mqtt.state))
        assert before["totals"]["export_wh"] > 0 and before["last_period_wh"] is not None
        assert before["eur_saved_today"] > 0 and before["loads"]["water_heater"]["switches_today"] > 0
        mgr.stop()                 # (its "off" is a switch of today's)
        switches = dict(mgr.books.switches_today)
        mgr = managing.Managing(s, clock, NullStore())
        assert mgr.books.switches_today == switches
        mgr.start()
        assert wait_for(lambda: mgr.mqtt.link.connected and mgr.mqtt.ready)
        run(clock, mon, mgr, 0.5)
        after = mgr.mqtt.state
        for k in ("totals", "last_period_wh", "eur_saved_today"):
            assert after[k] == before[k], k
        for name in ("water_heater", "pool_pump"):
            assert after["loads"][name]["energy_wh"] == before["loads"][name]["energy_wh"]
            assert after["loads"][name]["switches_today"] >= switches[name]
        web = json.loads((s.paths.run_dir / "managing.json").read_text())   # the page's "saved today"
        assert web["eur_saved_today"] == pytest.approx(before["eur_saved_today"], abs=1e-4)
        # Home Assistant deleted the device (its configs emptied), then restarts: its birth
        # message brings the entities back
        topic = "homeassistant/sensor/gestor_test/grid_export/config"
        ha.send(topic, "")
        assert ha.wait(lambda m: m.get(topic) == "")
        ha.send("homeassistant/status", "online")
        assert ha.wait(lambda m: m.get(topic, "").startswith("{"))
    finally:
        mgr.stop()
        mon.close()
        ha.close()


def test_the_settled_counters_step_inside_the_period_they_belong_to(tmp_path, broker):
    """Issue 32 item 9: Home Assistant books a counter's step in the hour it receives it, so
    grid_import/grid_export must step inside their own period: at its last cycle at least 10 s
    before its end, with the balance as it stands; the last seconds' remainder goes with the next
    period's step. Recorded off the broker: per hour (of the state's time), the counters' steps
    equal gestor's period books within what the last 20 s can add, and never step after the hour."""
    from datetime import datetime
    rows = []
    for i in range(6 * 60 * 3 + 6):   # 10-11 h sunny (export), 11-12 h night (import), 12-13 h sunny
        t = T0 + timedelta(seconds=10 * i)
        prod = 0 if 60 <= (10 * i) // 60 < 120 else 4000
        rows.append(f"{t:%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,{prod},0,0,{prod - 500}")
    csv = write_csv(tmp_path / "day.csv", HEADER, rows)
    rec = Recorder(broker.port)
    s, clock, mon, mgr = daemons(tmp_path, broker, csv)
    try:
        run(clock, mon, mgr, 181)
        assert wait_for(lambda: any(t.endswith("/state") and datetime.fromisoformat(p["at"]) >= T0 + timedelta(minutes=180)
                                    for t, p in list(rec.got)))
        states = [(datetime.fromisoformat(p["at"]), p["totals"]) for t, p in list(rec.got) if t.endswith("/state")]
        books = {p.start: p for p in mgr.books.closed}
        assert len(books) == 3
        max_w = 4000 + sum(ld.state.cfg.power_w for ld in mgr.loads)
        carry_wh = max_w * 20 / 3600           # the most a period's last 20 s can change
        for key, sign in (("export_wh", 1), ("import_wh", -1)):
            prev, per_hour = 0.0, {}
            for at, totals in states:
                assert totals[key] >= prev, (key, at)          # only increasing
                if totals[key] > prev:
                    start = at.replace(minute=0, second=0, microsecond=0)
                    # inside its hour, at least 10 s before the end (never in the next hour's first minute)
                    assert at <= start + timedelta(minutes=59, seconds=50), (key, at)
                    per_hour[start] = per_hour.get(start, 0.0) + totals[key] - prev
                prev = totals[key]
            for start, p in books.items():
                book = max(sign * p.balance_wh, 0.0)
                assert abs(per_hour.get(start, 0.0) - book) <= carry_wh, (key, start, per_hour, book)
            assert per_hour, key
    finally:
        mgr.stop()
        mon.close()
        rec.close()


BATTERY = [{"name": "battery", "reserve_wh_per_h": 0,
            "device": {"driver": "simulated", "kind": "battery", "capacity_wh": 10000, "soc_pct": 30,
                       "max_charge_w": 2000, "max_discharge_w": 2000, "min_soc_pct": 10, "efficiency": 0.81}}]


def _battery_wh(s) -> float:
    """The simulated battery's stored energy, Wh, from its own state file (the device's books)."""
    from drivers.setpoints.simulated import SIM_DIR
    return json.loads((s.paths.run_dir / SIM_DIR / "battery.json").read_text())["energy_wh"]


def test_consumption_is_the_house_and_a_battery_counts_what_it_read_back_across_restarts(tmp_path, broker):
    """Issue 32 item 10: the consumption counter and power exclude the battery (the meter sees it
    charging as consumption); the battery's energy in comes from the power it reads back (as its
    own stored energy, through its efficiency), and a managing restart does not reset it."""
    rec = Recorder(broker.port)
    _, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 80, setpoints=BATTERY)
    try:
        stored0 = 0.30 * 10000                       # its state of charge at start
        run(clock, mon, mgr, 62)
        (p,) = mgr.books.closed
        house_wh = 500 * p.covered_s / 3600 + sum(mgr.books.loads_wh.values())   # 500 W + the loads
        assert mgr.setpoints.devices[0].setpoint_w > 1000                          # it charges
        assert mgr.books.closed[-1] is p and mgr.mqtt.state["totals"]["consumption_wh"] == pytest.approx(house_wh, abs=15)
        assert p.consumption_wh - house_wh > 1000      # the meter's consumption has the battery in it
        st = mgr.mqtt.state
        on_w = sum(ld.state.cfg.power_w for ld in mgr.loads if ld.on)
        assert st["consumption_w"] == pytest.approx(500 + on_w, abs=60)   # the house (law's deadband 50 W)
        states = [pl for t, pl in list(rec.got) if t.endswith("/state") and pl.get("consumption_w") is not None]
        assert states and min(pl["consumption_w"] for pl in states) >= 450
        taken = st["setpoints"]["battery"]["taken_wh"]
        # the battery's own books: what it stored is what it took through its efficiency (sqrt(0.81))
        assert taken * 0.9 == pytest.approx(_battery_wh(s) - stored0, abs=2000 * 20 / 3600)
        assert st["setpoints"]["battery"]["supplied_wh"] == 0.0
        mgr.stop()
        mgr = managing.Managing(s, clock, NullStore())
        mgr.start()
        assert wait_for(lambda: mgr.mqtt.link.connected and mgr.mqtt.ready)
        run(clock, mon, mgr, 0.5)
        assert mgr.mqtt.state["setpoints"]["battery"]["taken_wh"] >= taken   # not reset by the restart
        assert json.loads((s.paths.state_dir / "device-energy.json").read_text())["devices"]["battery"]["in_wh"] >= taken
    finally:
        mgr.stop()
        mon.close()
        rec.close()


def test_home_assistant_steers_a_battery_and_the_latch_wins(tmp_path, broker, caplog):
    """Issue 32 item 11: a battery's mode (auto, idle, charge only, discharge only), minimum
    state of charge and period target from Home Assistant: validated like the loads' modes,
    persisted, obeyed by the law; under the latch the battery stays idle whatever its mode."""
    caplog.set_level(logging.INFO, "gestor")
    ha = HA(broker.port)
    _, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 20, setpoints=BATTERY)
    bat = mgr.setpoints.devices[0]
    try:
        node = "homeassistant/{}/gestor_test/{}/config"
        assert ha.wait(lambda m: m.get(node.format("number", "battery_min_soc")))
        sel = json.loads(ha.get(node.format("select", "battery_mode")))
        assert sel["options"] == ["auto", "idle", "charge_only", "discharge_only"]
        assert sel["command_topic"] == "gestor/test/setpoint/battery/mode/set"
        target = json.loads(ha.get(node.format("number", "battery_target")))
        assert (target["min"], target["max"], target["unit_of_measurement"]) == (-10000, 10000, "Wh")
        run(clock, mon, mgr, 2)
        assert bat.setpoint_w > 0                       # sunny: auto charges
        for topic, payload in (("battery/mode/set", "turbo"), ("battery/min_soc/set", "150"),
                               ("battery/target/set", "nan"), ("nope/mode/set", "idle"),
                               ("battery/colour/set", "red")):
            ha.send(f"gestor/test/setpoint/{topic}", payload)
        ha.send("gestor/test/setpoint/battery/mode/set", "discharge_only")
        assert wait_for(lambda: "device control from MQTT: battery mode = discharge_only" in caplog.text)
        for said in ("device battery: mode 'turbo' must be one of auto, idle, charge_only, discharge_only",
                     "device battery: min_soc '150' must be a number from 0 to 100",
                     "device battery: target 'nan' must be a number from -10000 to 10000",
                     "no device named 'nope'", "device battery: no control 'colour'"):
            assert said in caplog.text, said
        run(clock, mon, mgr, 1)
        assert bat.setpoint_w == 0.0 and "mode discharge_only" in bat.reason   # never takes
        assert ha.wait(lambda m: json.loads(m["gestor/test/state"])["setpoints"]["battery"]["mode"] == "discharge_only")
        ha.send("gestor/test/setpoint/battery/mode/set", "idle")
        assert wait_for(lambda: "battery mode = idle" in caplog.text)
        run(clock, mon, mgr, 0.5)
        assert bat.idle and bat.setpoint_w == 0.0 and bat.reason.startswith("mode idle")
        ha.send("gestor/test/setpoint/battery/target/set", "1500")   # keep 1.5 kWh exported each period
        ha.send("gestor/test/setpoint/battery/min_soc/set", "25")
        ha.send("gestor/test/setpoint/battery/mode/set", "charge_only")
        assert wait_for(lambda: "battery mode = charge_only" in caplog.text)
        run(clock, mon, mgr, 1)
        assert bat.setpoint_w > 0 and "target +1500" in bat.reason and "min SoC 25 %" in bat.reason
        # persisted: a managing restart keeps the controls
        mgr.stop()
        mgr = managing.Managing(s, clock, NullStore())
        bat = mgr.setpoints.devices[0]
        mgr.start()
        assert wait_for(lambda: mgr.mqtt.link.connected and mgr.mqtt.ready)
        run(clock, mon, mgr, 0.5)
        st = mgr.mqtt.state["setpoints"]["battery"]
        assert (st["mode"], st["min_soc_pct"], st["target_wh"]) == ("charge_only", 25.0, 1500.0)
        assert bat.setpoint_w > 0
        # the latch wins: idle whatever the mode, and a mode sent under it changes nothing
        ha.send("gestor/test/stop/set", "STOP")
        assert wait_for(lambda: is_latched(s.paths.state_dir) and bat.idle)
        ha.send("gestor/test/setpoint/battery/mode/set", "auto")
        assert wait_for(lambda: "battery mode = auto" in caplog.text)
        run(clock, mon, mgr, 1)
        assert bat.idle and bat.setpoint_w == 0.0 and "stop" in bat.reason and mgr.mqtt.state["latched"]
    finally:
        mgr.stop()
        mon.close()
        ha.close()


def test_a_load_removed_and_added_again_the_same_day_keeps_its_switches_today(tmp_path, broker):
    """Issue 32 item 12: today's switch count of a load survives its removal and return."""
    csv, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 20)
    try:
        run(clock, mon, mgr, 10)
        mgr.stop()
        before = dict(mgr.books.switches_today)
        assert before["pool_pump"] > 0
        mgr = managing.Managing(without_pool_pump(tmp_path, s, csv, broker), clock, NullStore())
        mgr.start()
        run(clock, mon, mgr, 1)
        assert "pool_pump" not in mgr.mqtt.state["loads"]
        mgr.stop()
        mgr = managing.Managing(s, clock, NullStore())     # pool_pump is back, the same day
        assert mgr.books.switches_today["pool_pump"] == before["pool_pump"]
        mgr.start()
        assert wait_for(lambda: mgr.mqtt.link.connected and mgr.mqtt.ready)
        run(clock, mon, mgr, 0.5)
        assert mgr.mqtt.state["loads"]["pool_pump"]["switches_today"] >= before["pool_pump"]
    finally:
        mgr.stop()
        mon.close()


def test_the_reason_in_the_language_of_mqtt_language_beside_its_code(tmp_path, broker):
    """Issue 37: Home Assistant's reason sensor reads ``reason_text``, in ``mqtt.language`` (ca
    here); ``reason`` keeps the journal's English and ``reason_data`` the code and numbers."""
    night = write_csv(tmp_path / "night.csv", HEADER, [
        f"{T0 + timedelta(seconds=10 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500.123,0,0,0,-500.123" for i in range(6 * 20)])
    rec = Recorder(broker.port)
    s, clock, mon, mgr = daemons(tmp_path, broker, night, language="ca")
    try:
        run(clock, mon, mgr, 2)
        assert wait_for(lambda: any(t.endswith("/state") for t, _ in rec.got))
        st = [p for t, p in rec.got if t.endswith("/state")][-1]["loads"]
        assert st["water_heater"]["reason"] == "start: every load off until the policy decides"
        assert st["water_heater"]["reason_data"] == {"code": "start"}
        assert st["water_heater"]["reason_text"] == \
            "gestor s'ha iniciat: totes les càrregues apagades fins que decideixi la política"
        mgr.emergency_stop("MQTT", "emergency stop from MQTT")
        run(clock, mon, mgr, 1)
        pump = mgr.mqtt.state["loads"]["pool_pump"]
        assert pump["reason_data"] == {"code": "latch"} and pump["reason_text"].startswith("el bloqueig d'aturada")
    finally:
        mgr.stop()
        mon.close()
    with pytest.raises(SettingsError, match=r"mqtt\.language: must be one of 'es', 'ca' or 'en' \(got 'fr'\)"):
        make_settings(tmp_path, mqtt={"language": "fr"})
