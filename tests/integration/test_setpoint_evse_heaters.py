"""Setpoint drivers for EV chargers and modulating heaters against real parts: OpenEVSE and go-e
emulators on loopback HTTP answering in their documented JSON shapes, a pymodbus server laid out
as my-PV's AC ELWA 2 register list (with its power timeout), gpiozero's MockFactory PWM pins for
the burst-fire SSR. What a user would notice: the setpoint reaches the device in its units and
steps, the read-back, idle, the device's own timeout, and clear errors."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin
from pydantic import ValidationError

from drivers import DriverContext
from drivers.setpoints import SETPOINTS, SetpointError
from gestor.clock import SimClock
from tests.emulators.chargers import GoeDevice, OpenEvseDevice
from tests.emulators.http_devices import self_signed_cert
from tests.emulators.modbus_server import MyPvElwa
from tests.influxd import free_port


def ctx(tmp_path: Path) -> DriverContext:
    return DriverContext(clock=SimClock(datetime(2026, 6, 1, 10, tzinfo=timezone.utc)), run_dir=tmp_path,
                         config_dir=tmp_path)


def open_driver(tmp_path: Path, **settings):
    model, factory = SETPOINTS[settings["driver"]]
    return factory(model.model_validate(settings), ctx(tmp_path), "ev")


@pytest.fixture
def openevse():
    dev = OpenEvseDevice(free_port()).start()
    yield dev
    dev.stop()


@pytest.fixture
def goe():
    dev = GoeDevice(free_port()).start()
    yield dev
    dev.stop()


# --- OpenEVSE ----------------------------------------------------------------------------------
def test_openevse_charges_at_whole_amperes_through_its_claim(tmp_path, openevse):
    d = open_driver(tmp_path, driver="openevse", host=f"127.0.0.1:{openevse.port}")
    try:
        assert d.set_power_w(3000) == 13 * 230          # 3000 / 230 = 13.04 A: 13 A, never more
        assert openevse.requests[-1] == f"POST /claims/{(0x67 << 16) | 1}"
        assert openevse.bodies[-1] == {"state": "active", "charge_current": 13, "auto_release": False}
        st = d.state()
        assert (st.setpoint_w, st.power_w, st.connected) == (2990, 2990, True)
        assert (st.min_w, st.max_w) == (0, 16 * 230)
        assert d.set_power_w(99999) == 16 * 230          # max_current_a
        assert d.set_power_w(-500) == 0 and openevse.status()["status"] == "disabled"
    finally:
        d.close()


def test_openevse_three_phases_and_below_six_amperes_pauses(tmp_path, openevse):
    d = open_driver(tmp_path, driver="openevse", host=f"127.0.0.1:{openevse.port}", phases=3,
                    max_current_a=32, claim_client=262146)
    try:
        assert d.set_power_w(11000) == 15 * 690          # 15.9 A per phase: 15 A
        assert openevse.claims[262146]["charge_current"] == 15
        assert d.set_power_w(4000) == 0                  # 5.8 A < 6 A: paused, not charging at 6 A
        assert openevse.claims[262146]["state"] == "disabled"
        st = d.state()
        assert st.setpoint_w == 0 and st.power_w == 0 and openevse.status()["state"] == 254
    finally:
        d.close()


def test_openevse_idle_pauses_and_keeps_the_claim(tmp_path, openevse):
    """Releasing the claim would hand the charger back to its default (charging at full
    current): idle keeps it, disabled."""
    d = open_driver(tmp_path, driver="openevse", host=f"127.0.0.1:{openevse.port}")
    try:
        d.set_power_w(2500)
        d.idle()
        assert list(openevse.claims.values()) == [{"state": "disabled", "auto_release": False}]
        assert openevse.status()["amp"] == 0 and d.state().setpoint_w == 0
        assert d.hold_s is None                          # no device-side timeout
    finally:
        d.close()


def test_openevse_read_back_shows_a_manual_override_and_no_car(tmp_path, openevse):
    d = open_driver(tmp_path, driver="openevse", host=f"127.0.0.1:{openevse.port}")
    try:
        d.set_power_w(1500)
        openevse.override = {"state": "active", "charge_current": 32}   # "charge now" on the charger
        assert d.state().setpoint_w == 32 * 230
        openevse.override, openevse.vehicle = None, False
        st = d.state()
        assert st.connected is False and st.max_w == 0 and st.power_w == 0
    finally:
        d.close()


def test_openevse_basic_auth_and_its_failure(tmp_path, openevse):
    openevse.auth = ("basic", "admin", "s3cret-pw")
    d = open_driver(tmp_path, driver="openevse", host=f"127.0.0.1:{openevse.port}", username="admin",
                    password="s3cret-pw")
    bad = open_driver(tmp_path, driver="openevse", host=f"127.0.0.1:{openevse.port}", username="admin",
                      password="wrong")
    try:
        assert d.set_power_w(2000) == 8 * 230
        with pytest.raises(SetpointError, match="401") as e:
            bad.state()
        assert "wrong" not in str(e.value)
        assert "wrong" not in repr(bad.s) and "**********" in repr(bad.s)
    finally:
        d.close()
        bad.close()


def test_openevse_https_with_an_untrusted_certificate_is_refused(tmp_path):
    cert, key, _ = self_signed_cert(tmp_path, "openevse")
    dev = OpenEvseDevice(free_port())
    dev.tls = (cert, key)
    dev.start()
    d = open_driver(tmp_path, driver="openevse", host=f"https://127.0.0.1:{dev.port}")
    try:
        with pytest.raises(SetpointError, match="TLS certificate not trusted"):
            d.state()
        assert not dev.claims
    finally:
        d.close()
        dev.stop()


@pytest.mark.parametrize("fault, match", [
    ("garbage", "not valid JSON"), ("truncated", "not valid JSON"), ("500", "HTTP 500"),
    ("timeout", "no answer within 0.3 s"), ("huge", "larger than"), ("gone", "refused|unreachable")])
def test_openevse_faults_are_clear_errors(tmp_path, openevse, fault, match):
    d = open_driver(tmp_path, driver="openevse", host=f"127.0.0.1:{openevse.port}", timeout_s=0.3)
    try:
        if fault == "huge":
            openevse.raw_body = b"[" + b"0," * (1 << 20) + b"0]"
        elif fault == "gone":
            openevse.stop()
        else:
            openevse.fault, openevse.delay_s = fault, 1.0
        for call in (d.state, d.idle, lambda: d.set_power_w(3000)):
            with pytest.raises(SetpointError, match=match):
                call()
    finally:
        openevse.fault = None
        d.close()


REFUSALS = {"openevse": (b'{"msg":"Could not make claim"}', "claim refused", b'{"mode":"STA"}', "lacks state"),
            "goe": (b'{"amp":"invalid value for amp","frc":true}', "refused", b'{"car":2,"nrg":[]}',
                    "lacks amp or alw")}


@pytest.mark.parametrize("kind", ["openevse", "goe"])
def test_charger_refusals_and_malformed_answers(tmp_path, kind, request):
    dev = request.getfixturevalue(kind)
    d = open_driver(tmp_path, driver=kind, host=f"127.0.0.1:{dev.port}")
    refused, refused_match, status, status_match = REFUSALS[kind]
    try:
        dev.raw_body = refused
        with pytest.raises(SetpointError, match=refused_match):
            d.set_power_w(3000)
        dev.raw_body = status
        with pytest.raises(SetpointError, match=status_match):
            d.state()
    finally:
        d.close()


@pytest.mark.parametrize("bad, key", [({"max_current_a": 40}, "max_current_a"), ({"phases": 2}, "phases"),
                                      ({"host": "ftp://x"}, "host"), ({"claim_client": 2**31}, "claim_client"),
                                      ({"voltage_v": 400}, "voltage_v"), ({"amps": 6}, "amps")])
def test_charger_settings_name_the_bad_key(bad, key):
    model, _ = SETPOINTS["openevse"]
    with pytest.raises(ValidationError, match=key):
        model.model_validate({"driver": "openevse", "host": "192.168.1.30", **bad})


# --- go-e --------------------------------------------------------------------------------------
def test_goe_sets_amp_and_forces_on_and_reads_nrg(tmp_path, goe):
    d = open_driver(tmp_path, driver="goe", host=f"127.0.0.1:{goe.port}")
    try:
        assert d.set_power_w(3000) == 13 * 230
        assert goe.sets[-1] == {"amp": "13", "frc": "2"}
        st = d.state()
        assert (st.setpoint_w, st.power_w, st.connected, st.max_w) == (2990, 2990, True, 16 * 230)
        assert goe.requests[-1] == "/api/status?filter=car,alw,amp,frc,nrg"
    finally:
        d.close()


def test_goe_idle_and_below_six_amperes_force_off(tmp_path, goe):
    goe.phases = 3
    d = open_driver(tmp_path, driver="goe", host=f"127.0.0.1:{goe.port}", phases=3, max_current_a=32)
    try:
        assert d.set_power_w(11000) == 15 * 690
        assert d.state().power_w == 15 * 690
        assert d.set_power_w(3000) == 0 and goe.sets[-1] == {"frc": "1"} and goe.amp == 15
        st = d.state()
        assert st.setpoint_w == 0 and st.power_w == 0 and st.connected   # car waits, plugged in
        d.set_power_w(9000)
        d.idle()
        assert goe.sets[-1] == {"frc": "1"} and d.state().setpoint_w == 0
        goe.car_connected = False
        assert d.state().connected is False and d.state().max_w == 0
    finally:
        d.close()


def test_goe_without_a_meter_reading_and_gone(tmp_path, goe):
    d = open_driver(tmp_path, driver="goe", host=f"127.0.0.1:{goe.port}", timeout_s=0.5)
    try:
        goe.raw_body = b'{"car":2,"alw":true,"amp":10,"nrg":"x"}'
        assert d.state().power_w is None                 # no meter reading: not a silent 0
        goe.raw_body = None
        goe.stop()
        with pytest.raises(SetpointError, match="go-e ev"):
            d.idle()
    finally:
        d.close()


# --- my-PV AC ELWA 2 ---------------------------------------------------------------------------
@pytest.fixture
def elwa():
    now = [0.0]
    dev = MyPvElwa(power_timeout_s=60, clock=lambda: now[0]).start_tcp(free_port())
    dev.now = now
    yield dev
    dev.close()


def elwa_driver(tmp_path, dev, **extra):
    return open_driver(tmp_path, driver="mypv_elwa", host="127.0.0.1", port=dev.address[1], power_timeout_s=60,
                       **extra)


def test_elwa_power_register_clamped_and_read_back(tmp_path, elwa):
    d = elwa_driver(tmp_path, elwa)
    try:
        assert d.set_power_w(1500.7) == 1500
        assert elwa.register_writes[-1] == (1000, [1500]) and elwa.power_w() == 1500
        st = d.state()
        assert (st.setpoint_w, st.power_w, st.min_w, st.max_w) == (1500, None, 0, 3000)
        assert d.temperature_c == 52.3
        assert d.set_power_w(5000) == 3000 and elwa.power_w() == 3000
        assert d.set_power_w(-800) == 0 and elwa.power_w() == 0
        d.set_power_w(1000)
        d.idle()
        assert elwa.register_writes[-1] == (1000, [0]) and d.state().setpoint_w == 0
    finally:
        d.close()


def test_elwa_stops_heating_by_itself_when_gestor_stops_refreshing(tmp_path, elwa):
    d = elwa_driver(tmp_path, elwa)
    try:
        assert d.hold_s == 60 and d.refresh_on_cycle
        d.set_power_w(2000)
        elwa.now[0] += 30
        d.set_power_w(2000)                              # managing's refresh re-arms the timeout
        elwa.now[0] += 59
        assert d.state().setpoint_w == 2000
        elwa.now[0] += 1                                 # gestor died: nobody refreshed
        assert elwa.power_w() == 0 and d.state().setpoint_w == 0
    finally:
        d.close()


def test_elwa_no_answer_and_a_wrong_register_map(tmp_path, elwa):
    d = elwa_driver(tmp_path, elwa, timeout_s=0.5)
    try:
        elwa.set_value("holding", 1000, 60000)
        with pytest.raises(SetpointError, match="above max_power_w"):
            d.state()
        elwa.stop_server()
        with pytest.raises(SetpointError, match="my-PV ev: modbus tcp 127.0.0.1"):
            d.set_power_w(1000)
    finally:
        d.close()


def test_elwa_settings_need_the_device_timeout():
    model, _ = SETPOINTS["mypv_elwa"]
    with pytest.raises(ValidationError, match="power_timeout_s"):
        model.model_validate({"driver": "mypv_elwa", "host": "10.0.0.5"})
    with pytest.raises(ValidationError, match="max_power_w"):
        model.model_validate({"driver": "mypv_elwa", "host": "10.0.0.5", "power_timeout_s": 60, "max_power_w": 20000})


# --- burst-fire SSR ----------------------------------------------------------------------------
@pytest.fixture
def pwm_pins():
    prev = Device.pin_factory
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = prev


def test_burst_ssr_duty_in_whole_mains_cycles(tmp_path, pwm_pins):
    d = open_driver(tmp_path, driver="burst_ssr", pin=18, power_w=3000, period_s=2)
    try:
        pin = pwm_pins.pin(18)
        assert pin.frequency == 0.5 and pin.state == 0      # claimed off
        assert d.set_power_w(1500) == 1500 and pin.state == 0.5
        assert d.set_power_w(1234) == pytest.approx(41 / 100 * 3000)   # 100 cycles a 2 s period
        assert d.state().setpoint_w == pytest.approx(1230) and d.state().power_w is None
        assert d.set_power_w(9000) == 3000 and pin.state == 1
        d.idle()
        assert pin.state == 0 and d.state().setpoint_w == 0 and d.hold_s is None
    finally:
        d.close()


def test_burst_ssr_active_low(tmp_path, pwm_pins):
    d = open_driver(tmp_path, driver="burst_ssr", pin="GPIO23", power_w=2000, period_s=1, active_high=False)
    try:
        pin = pwm_pins.pin(23)
        assert pin.state == 1                             # off is high on an active-low input
        assert d.set_power_w(500) == 480                  # 12.5 of 50 cycles: 12, never more
        assert pin.state == pytest.approx(0.76)
    finally:
        d.close()


class RoundingPWMPin(MockPWMPin):
    """A factory whose PWM runs only at fixed frequencies (as pigpio's table): 10 Hz at least."""

    def _set_frequency(self, value):
        super()._set_frequency(None if value is None else max(value, 10.0))


def test_burst_ssr_refuses_a_factory_that_cannot_run_so_slow_a_pwm(tmp_path):
    prev = Device.pin_factory
    try:
        for pin_class, match in ((RoundingPWMPin, "runs the PWM at 10.0 Hz, not 0.5 Hz"),
                                 (None, "cannot drive a PWM")):
            Device.pin_factory = MockFactory(pin_class=pin_class) if pin_class else MockFactory()
            with pytest.raises(SetpointError, match=match):
                open_driver(tmp_path, driver="burst_ssr", pin=18, power_w=3000, period_s=2)
            Device.pin_factory.reset()
    finally:
        Device.pin_factory = prev


@pytest.mark.parametrize("bad, key", [({"period_s": 20}, "period_s"), ({"pin": "BOARD1"}, "pin"),
                                      ({"power_w": 0}, "power_w"), ({"mains_hz": 55}, "mains_hz")])
def test_burst_ssr_settings_name_the_bad_key(bad, key):
    model, _ = SETPOINTS["burst_ssr"]
    with pytest.raises(ValidationError, match=key):
        model.model_validate({"driver": "burst_ssr", "pin": 18, "power_w": 3000, **bad})
