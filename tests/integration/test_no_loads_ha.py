"""Home Assistant with a house of setpoint devices only (issue 33, ``loads: []``): against a real
mosquitto (the broker and the Home Assistant stand-in of test_mqtt), the real daemons' cycles on a
SimClock: discovery announces no load entity, the device's entities yes, and the state carries the
device and no load."""
from __future__ import annotations

import json

import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.clock import SimClock
from tests.conftest import make_settings
from tests.integration.test_mqtt import BATTERY, HA, PASSWORD, broker, pytestmark, run, wait_for  # noqa: F401
from tests.integration.test_safety import T0, sunny_csv


def test_discovery_and_state_without_loads(tmp_path, broker):  # noqa: F811 (the fixture)
    csv = sunny_csv(tmp_path / "sun.csv", 20)
    ha = HA(broker.port)
    s = make_settings(tmp_path, meter={"path": str(csv)}, loads=[], setpoints=BATTERY,
                      mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": "gestor",
                            "password": PASSWORD, "publish_s": 10})
    clock = SimClock(T0)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    mon.start_mqtt()
    mgr.start()
    try:
        assert wait_for(lambda: mgr.mqtt.link.connected and mon.mqtt.connected), "gestor did not connect"
        assert s.loads == []
        run(clock, mon, mgr, 3)
        assert ha.wait(lambda m: "gestor/test/state" in m
                       and json.loads(m["gestor/test/state"]).get("setpoints", {}).get("battery"))
        node = "homeassistant/{}/gestor_test/{}/config"
        cfgs = {t: json.loads(p) for t, p in ha.msgs.items() if t.startswith("homeassistant/") and p}
        objects = {t.split("/")[3] for t in cfgs}
        # the device's entities and the house's, no load's
        assert {"battery_mode", "battery_min_soc", "battery_target", "net_power", "period_balance",
                "stop", "stop_latch"} <= objects, sorted(objects)
        assert not [o for o in objects if o.startswith(("water_heater", "pool_pump"))], sorted(objects)
        assert not [t for t in cfgs if t.startswith("homeassistant/select/") and not t.endswith("battery_mode/config")]
        assert cfgs[node.format("select", "battery_mode")]["command_topic"] == "gestor/test/setpoint/battery/mode/set"
        st = json.loads(ha.get("gestor/test/state"))
        assert st["loads"] == {} and st["setpoints"]["battery"]["setpoint_w"] > 0   # sunny: it charges
        assert mgr.setpoints.devices[0].setpoint_w > 0
    finally:
        mgr.stop()
        mon.close()
        ha.close()
