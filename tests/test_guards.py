"""Guards hold every policy: stop latch, stale meter, min on/off times."""
from datetime import datetime, timedelta, timezone

from gestor.guards import GuardState, LoadLimits, apply_guards
from gestor.policies import LoadView, Wish

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def G(latched=False, age=5.0, stale=60.0):
    return GuardState(NOW, latched, age, stale)


def ago(s):
    return NOW - timedelta(seconds=s)


def test_stop_latch_forces_off_even_before_min_on():
    loads = (LoadView("heater", 1000.0, True, ago(10)),)
    out = apply_guards([Wish("heater", True)], loads, {"heater": LoadLimits(min_on_s=600)}, G(latched=True))
    assert not out[0].on and "stop latch" in out[0].reason


def test_stale_meter_forces_off():
    loads = (LoadView("heater", 1000.0, True, ago(1000)),)
    out = apply_guards([Wish("heater", True)], loads, {}, G(age=61.0))
    assert not out[0].on and "stale" in out[0].reason and "61 s" in out[0].reason


def test_no_reading_at_all_forces_off():
    out = apply_guards([Wish("heater", True)], (LoadView("heater", 1000.0, False),), {}, G(age=None))
    assert not out[0].on and "no reading" in out[0].reason


def test_fresh_reading_lets_the_wish_through():
    out = apply_guards([Wish("heater", True, "why")], (LoadView("heater", 1000.0, False),), {}, G(age=60.0))
    assert out[0] == Wish("heater", True, "why")


def test_min_on_holds_a_load_on():
    loads = (LoadView("heater", 1000.0, True, ago(100)),)
    out = apply_guards([Wish("heater", False)], loads, {"heater": LoadLimits(min_on_s=300)}, G())
    assert out[0].on and "min_on 300 s" in out[0].reason
    loads = (LoadView("heater", 1000.0, True, ago(300)),)
    assert not apply_guards([Wish("heater", False)], loads, {"heater": LoadLimits(min_on_s=300)}, G())[0].on


def test_min_off_holds_a_load_off():
    loads = (LoadView("heater", 1000.0, False, ago(10)),)
    out = apply_guards([Wish("heater", True)], loads, {"heater": LoadLimits(min_off_s=60)}, G())
    assert not out[0].on and "min_off 60 s" in out[0].reason


def test_no_hold_before_the_first_switch():
    loads = (LoadView("heater", 1000.0, False, None),)
    assert apply_guards([Wish("heater", True)], loads, {"heater": LoadLimits(min_off_s=600)}, G())[0].on
