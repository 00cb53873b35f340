"""Battery setpoint drivers against real pymodbus servers on loopback whose registers follow the
manufacturers' documents (tests/emulators/batteries.py): Victron ESS through a GX device's Modbus
TCP server (Mode 3 per-phase setpoints, with the firmware's revert on an injected clock), and a
Marstek Venus E/C (RS485 control mode, forced charge/discharge) over TCP and over RTU (socat)."""
from __future__ import annotations

import socket
import threading
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers import DriverContext
from drivers.setpoints import SETPOINTS, SetpointError
from gestor.clock import SimClock
from tests.conftest import free_port
from tests.emulators.batteries import MarstekVenus, VictronGX

CTX = DriverContext(clock=SimClock(datetime(2026, 6, 1, 12, tzinfo=timezone.utc)), run_dir=Path("/nonexistent"),
                    config_dir=Path("."))


def open_device(section: dict, name: str = "battery"):
    model, factory = SETPOINTS[section["driver"]]
    return factory(model.model_validate(section), CTX, name)


@pytest.fixture
def gx():
    srv = VictronGX(vebus_unit=227).start_tcp(free_port())
    srv.set(100, 843, 55)
    yield srv
    srv.close()


@pytest.fixture
def venus():
    srv = MarstekVenus().start_tcp(free_port())
    srv.set(1, 32104, 50)
    yield srv
    srv.close()


def victron(gx, **extra):
    return open_device({"driver": "victron_ess", "host": "127.0.0.1", "port": gx.address[1], "timeout_s": 2,
                        **extra})


def marstek(venus, **extra):
    return open_device({"driver": "marstek_venus", "host": "127.0.0.1", "port": venus.address[1], "timeout_s": 2,
                        **extra})


# --- Victron ESS -----------------------------------------------------------------------------
def test_victron_setpoint_reaches_the_vebus_with_its_sign_in_mode_3(gx):
    with closing(victron(gx)) as bat:
        assert bat.set_power_w(1200) == 1200.0
        assert gx.get(100, 2902) == 3                           # external control
        assert gx.get(227, 37, "int16") == 1200                 # L1 AC-in setpoint, W, + takes
        assert (gx.get(227, 38), gx.get(227, 39)) == (0, 1)     # charging allowed, feed-in disabled
        assert bat.set_power_w(-800.4) == -800.0
        assert gx.get(227, 37, "int16") == -800
        assert (gx.get(227, 38), gx.get(227, 39)) == (1, 0)     # charging disabled, feed-in allowed
        gx.set(100, 842, -790, "int16")                         # the battery discharging 790 W
        st = bat.state()
        assert (st.setpoint_w, st.power_w, st.soc_pct) == (-800.0, -790.0, 55.0)
        assert (st.min_w, st.max_w) == (-3000.0, 3000.0)
        assert gx.written(100, 2902) == [[3]]                   # the stored setting, once on the way in


def test_victron_clamps_to_power_and_soc_limits(gx):
    with closing(victron(gx, max_charge_w=2000, max_discharge_w=1500, min_soc_pct=20, max_soc_pct=90)) as bat:
        assert bat.set_power_w(5000) == 2000.0
        assert bat.set_power_w(-9000) == -1500.0
        gx.set(100, 843, 20)                                    # at min_soc: no discharge
        assert bat.set_power_w(-500) == 0.0
        assert gx.get(227, 37, "int16") == 0
        assert (bat.state().min_w, bat.state().max_w) == (0.0, 2000.0)
        assert bat.set_power_w(700) == 700.0                    # charging still allowed
        gx.set(100, 843, 93)                                    # above max_soc: no charge
        assert bat.set_power_w(700) == 0.0
        assert (bat.state().min_w, bat.state().max_w) == (-1500.0, 0.0)


def test_victron_three_phases_split_the_setpoint(gx):
    with closing(victron(gx, phases=3, max_charge_w=2998)) as bat:
        assert bat.set_power_w(1000) == 999.0                   # 333 W a phase, whole W
        assert [gx.get(227, a, "int16") for a in (37, 40, 41)] == [333, 333, 333]
        assert bat.state().setpoint_w == 999.0
        bat.set_power_w(-2400)
        assert [gx.get(227, a, "int16") for a in (37, 40, 41)] == [-800, -800, -800]
        assert bat.set_power_w(5000) == 2997.0                  # 999 a phase: never past max_charge_w


def test_victron_idle_returns_to_ess_self_consumption(gx):
    with closing(victron(gx)) as bat:
        bat.set_power_w(1500)
        bat.set_power_w(1400)
        bat.idle()
        assert gx.get(227, 37, "int16") == 0
        assert (gx.get(227, 38), gx.get(227, 39)) == (0, 0)
        assert gx.get(100, 2902) == 1                           # ESS with phase compensation again
        assert gx.written(100, 2902) == [[3], [1]]              # in once, out once
        assert bat.state().setpoint_w == 0.0
        writes = len(gx.writes)
        bat.idle()                                              # ESS already owns it: nothing written
        assert len(gx.writes) == writes


def test_victron_idle_can_stay_in_external_control(gx):
    with closing(victron(gx, idle_hub4_mode=3)) as bat:
        bat.set_power_w(-1000)
        bat.idle()
        assert gx.get(100, 2902) == 3 and gx.get(227, 37, "int16") == 0


def test_victron_mode_3_setpoint_reverts_unless_refreshed_within_hold_s(gx):
    with closing(victron(gx)) as bat:
        assert bat.hold_s == 60.0
        bat.set_power_w(1500, hold_s=bat.hold_s)
        gx.now_s = 59.0
        assert bat.state().setpoint_w == 1500.0
        bat.set_power_w(1500, hold_s=bat.hold_s)                # gestor's refresh re-arms it
        gx.now_s = 118.0
        assert bat.state().setpoint_w == 1500.0
        gx.now_s = 119.0                                        # 60 s without a write
        assert bat.state().setpoint_w == 0.0
        assert gx.get(227, 37, "int16") == 0


def test_victron_bad_answers_are_clear_errors(gx):
    with closing(victron(gx)) as bat:
        gx.set(100, 843, 250)                                   # a wrong register map or scale
        with pytest.raises(SetpointError, match=r"victron_ess \(battery\): system register 843: state of charge reads 250 %"):
            bat.set_power_w(100)
        with pytest.raises(SetpointError, match="not 0..100"):
            bat.state()
        assert gx.get(100, 2902) == 1                           # nothing written on a bad read


def test_victron_wrong_vebus_unit_id_is_named(gx):
    with closing(victron(gx, vebus_unit_id=246, timeout_s=0.4)) as bat:  # a CCGX's id on a Cerbo
        with pytest.raises(SetpointError, match="unit 246: write registers 37"):
            bat.set_power_w(100)


def test_victron_gone_and_silent_devices_raise_within_the_timeout(gx):
    bat = victron(gx, timeout_s=0.4)
    gx.stop_server()
    try:
        with pytest.raises(SetpointError, match="connection refused"):
            bat.state()
        with pytest.raises(SetpointError):
            bat.idle()
    finally:
        bat.close()
    with silent_server() as port:
        with closing(open_device({"driver": "victron_ess", "host": "127.0.0.1", "port": port, "timeout_s": 0.4})) as bat:
            with pytest.raises(SetpointError, match="no answer within 0.1 s"):
                bat.set_power_w(500)


# --- Marstek Venus ---------------------------------------------------------------------------
def test_marstek_forced_charge_and_discharge(venus):
    with closing(marstek(venus)) as bat:
        assert bat.hold_s is None
        assert bat.set_power_w(1000) == 1000.0
        assert [(a, w) for _, a, w in venus.writes] == [(42000, [0x55AA]), (42020, [1000]), (42010, [1])]
        assert bat.set_power_w(-600.6) == -600.0                 # whole W toward 0
        assert (venus.get(1, 42021), venus.get(1, 42010)) == (600, 2)
        venus.set(1, 32202, 590, "int32")                        # AC power: + discharging at the plug
        st = bat.state()
        assert (st.setpoint_w, st.power_w, st.soc_pct) == (-600.0, -590.0, 50.0)
        assert bat.set_power_w(0) == 0.0
        assert venus.get(1, 42010) == 0 and venus.get(1, 42000) == 0x55AA  # held at 0 W, still ours
        assert venus.written(1, 42000) == [[0x55AA]]            # enabled once
        assert bat.state().setpoint_w == 0.0


def test_marstek_clamps_to_its_range_and_soc(venus):
    with closing(marstek(venus, max_discharge_w=800, max_soc_pct=95)) as bat:
        assert bat.set_power_w(4000) == 2500.0
        assert bat.set_power_w(-1200) == -800.0
        venus.set(1, 32104, 12)                                  # at min_soc (12 by default)
        assert bat.set_power_w(-300) == 0.0
        assert venus.get(1, 42010) == 0
        assert (bat.state().min_w, bat.state().max_w) == (0.0, 2500.0)
        venus.set(1, 32104, 95)
        assert bat.set_power_w(300) == 0.0
        assert (bat.state().min_w, bat.state().max_w) == (-800.0, 0.0)


def test_marstek_idle_hands_control_back(venus):
    with closing(marstek(venus)) as bat:
        bat.set_power_w(1500)
        n = len(venus.writes)
        bat.idle()
        assert [(a, w) for _, a, w in venus.writes[n:]] == [(42010, [0]), (42000, [0x55BB])]
        assert venus.get(1, 43000) == 1                          # its own work mode untouched
        assert bat.state().setpoint_w == 0.0
        n = len(venus.writes)
        bat.idle()                                               # already its own: nothing written
        assert len(venus.writes) == n
        venus.set(1, 42010, 1)                                   # a stale force, control off: not ours
        venus.set(1, 42020, 900)
        assert bat.state().setpoint_w == 0.0


def test_marstek_bad_answers_are_clear_errors(venus):
    with closing(marstek(venus)) as bat:
        bat.set_power_w(500)
        venus.regs[1][42010] = 7
        with pytest.raises(SetpointError, match=r"marstek_venus \(battery\): register 42010 \(force mode\) reads 7"):
            bat.state()
        venus.set(1, 32104, 1000)
        with pytest.raises(SetpointError, match="register 32104: state of charge reads 1000 %"):
            bat.set_power_w(100)
    with closing(marstek(venus, device_id=2)) as bat:  # nobody at id 2 behind the gateway
        with pytest.raises(SetpointError, match="device 2: read holding registers 32104.*Modbus exception"):
            bat.state()


def test_marstek_over_rtu(tmp_path):
    srv = MarstekVenus().start_rtu(tmp_path)
    srv.set(1, 32104, 70)
    bat = open_device({"driver": "marstek_venus", "transport": "rtu", "serial_port": srv.client_port,
                       "timeout_s": 5})
    try:
        assert bat.set_power_w(-450) == -450.0
        assert (srv.get(1, 42000), srv.get(1, 42021), srv.get(1, 42010)) == (0x55AA, 450, 2)
        bat.idle()
        assert srv.get(1, 42000) == 0x55BB
    finally:
        bat.close()
        srv.close()


# --- settings --------------------------------------------------------------------------------
@pytest.mark.parametrize("driver,section,key", [
    ("victron_ess", {"host": "gx", "min_soc_pct": 90, "max_soc_pct": 80}, "min_soc_pct"),
    ("victron_ess", {"host": "gx", "max_charge_w": 40000}, "max_charge_w"),
    ("victron_ess", {"host": "gx", "phases": 2}, "phases"),
    ("victron_ess", {"host": "gx", "vebus_unit_id": 300}, "vebus_unit_id"),
    ("victron_ess", {"host": "gx", "grid_setpoint_w": 0}, "grid_setpoint_w"),
    ("victron_ess", {}, "host"),
    ("marstek_venus", {"host": "gw", "max_discharge_w": 3000}, "max_discharge_w"),
    ("marstek_venus", {"host": "gw", "timeout_s": 0}, "timeout_s"),
    ("marstek_venus", {"transport": "rtu"}, "serial_port"),
])
def test_settings_errors_name_the_key(driver, section, key):
    model, _ = SETPOINTS[driver]
    with pytest.raises(ValidationError, match=key):
        model.model_validate({"driver": driver, **section})


# --- helpers ---------------------------------------------------------------------------------
class silent_server:
    """A TCP port that accepts connections and never answers (a hung gateway)."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:
            pass

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
