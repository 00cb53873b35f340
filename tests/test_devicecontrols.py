"""A setpoint device's controls from Home Assistant (gestor.runtime.devicecontrols, issue 32 item
11): the range the law may use under a mode and a minimum state of charge (an invariant over
generated ranges), the commands' checks, and the file that keeps them."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gestor.runtime.devicecontrols import BATTERY_MODES, DeviceControl, check_control, read_controls, set_control

T = datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc)   # Madrid's spring-forward night
W = st.floats(-10_000, 10_000, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(lo=W, hi=W, mode=st.sampled_from(BATTERY_MODES), min_soc=st.none() | st.floats(0, 100),
       soc=st.none() | st.floats(0, 100))
def test_the_range_under_the_controls_is_never_wider_and_respects_the_mode(lo, hi, mode, min_soc, soc):
    lo, hi = min(lo, hi), max(lo, hi)
    n_lo, n_hi = DeviceControl(mode, min_soc).narrow(lo, hi, soc)
    assert n_lo <= n_hi and n_lo >= lo and (n_hi <= hi or n_hi == n_lo)
    if mode == "charge_only" or (min_soc is not None and soc is not None and soc <= min_soc):
        assert n_lo >= 0.0                     # never supplies
    if mode == "discharge_only":
        assert n_hi <= max(lo, 0.0)            # never takes (beyond a range that must take)
    if mode == "auto" and (min_soc is None or soc is None or soc > min_soc):
        assert (n_lo, n_hi) == (lo, hi)


def test_discharge_only_on_a_battery_that_may_only_charge_is_zero():
    assert DeviceControl("discharge_only").narrow(0.0, 2000.0, 50.0) == (0.0, 0.0)
    assert DeviceControl("discharge_only").narrow(-2000.0, 2000.0, 50.0) == (-2000.0, 0.0)
    assert DeviceControl("auto", 20.0).narrow(-2000.0, 2000.0, 20.0) == (0.0, 2000.0)
    assert DeviceControl("auto", 20.0).narrow(-2000.0, 2000.0, 20.5) == (-2000.0, 2000.0)


@pytest.mark.parametrize("battery,key,text,error", [
    (False, "mode", "charge_only", "device d: mode 'charge_only' must be one of auto, idle"),
    (True, "mode", "", "device d: mode '' must be one of auto, idle, charge_only, discharge_only"),
    (False, "min_soc", "20", "device d: min_soc is only for a battery"),
    (True, "min_soc", "-1", "device d: min_soc '-1' must be a number from 0 to 100"),
    (True, "target", "inf", "device d: target 'inf' must be a number from -10000 to 10000"),
    (True, "target", "1e5", "device d: target '1e5' must be a number from -10000 to 10000"),
    (True, "speed", "1", "device d: no control 'speed' (controls: mode, min_soc, target)"),
])
def test_a_bad_command_names_the_device_key_value_and_what_is_allowed(battery, key, text, error):
    with pytest.raises(ValueError) as e:
        check_control("d", battery, key, text)
    assert str(e.value) == error


def test_controls_are_kept_and_a_damaged_file_is_none(tmp_path):
    set_control(tmp_path, "battery", "mode", "charge_only", T, by="mqtt")
    ctl = set_control(tmp_path, "battery", "target", check_control("battery", True, "target", "-250"), T)
    assert ctl == DeviceControl("charge_only", None, -250.0) and read_controls(tmp_path) == {"battery": ctl}
    (tmp_path / "device-controls.json").write_text('{"battery": {"mode": 3}}')
    assert read_controls(tmp_path) == {}
    assert set_control(tmp_path, "battery", "min_soc", 30.0, T) == DeviceControl("auto", 30.0, None)
