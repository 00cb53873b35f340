"""Guards hold every policy: stop latch, stale meter, min on/off times."""
from datetime import datetime, timedelta, timezone

from gestor.core.guards import GuardState, LoadLimits, apply_guards
from gestor.core.policies import LoadView, Wish

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def G(latched=False, age=5.0, stale=60.0):
    return GuardState(NOW, latched, age, stale)


def ago(s):
    return (NOW - timedelta(seconds=s)).timestamp()


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


# --- overrides, windows, max switches, daily minimum (issue 4) -----------------------------------
from zoneinfo import ZoneInfo  # noqa: E402

import pytest  # noqa: E402

from gestor.core.guards import Override, in_windows, min_run_deadline, min_run_reason  # noqa: E402
from gestor.core.guards import parse_window  # noqa: E402
from gestor.tariff.calendar import period_2_0td  # noqa: E402

MAD = ZoneInfo("Europe/Madrid")


def test_override_off_beats_min_on_and_override_on_waits_for_min_off():
    loads = (LoadView("heater", 1000.0, True, ago(10)),)
    g = GuardState(NOW, False, 5.0, 60.0, MAD, {"heater": Override(False)})
    out = apply_guards([Wish("heater", True)], loads, {"heater": LoadLimits(min_on_s=600)}, g)
    assert not out[0].on and "manual override off (until 'auto')" in out[0].reason
    loads = (LoadView("heater", 1000.0, False, ago(10)),)
    g = GuardState(NOW, False, 5.0, 60.0, MAD, {"heater": Override(True, NOW + timedelta(hours=2))})
    out = apply_guards([Wish("heater", False)], loads, {"heater": LoadLimits(min_off_s=600)}, g)
    assert not out[0].on and "min_off" in out[0].reason
    out = apply_guards([Wish("heater", False)], loads, {}, g)
    assert out[0].on and "manual override on until 2026-06-01 16:00" in out[0].reason  # local time


def test_override_on_does_not_beat_the_latch_or_a_stale_meter():
    loads = (LoadView("heater", 1000.0, False),)
    for g in (GuardState(NOW, True, 5.0, 60.0, MAD, {"heater": Override(True)}),
              GuardState(NOW, False, 600.0, 60.0, MAD, {"heater": Override(True)})):
        assert not apply_guards([Wish("heater", True)], loads, {}, g)[0].on


def test_windows_local_time_and_across_midnight():
    w = (parse_window("10:00-19:00"),)
    assert in_windows(datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc), MAD, w)       # 10:00 CEST
    assert not in_windows(datetime(2026, 6, 1, 7, 59, tzinfo=timezone.utc), MAD, w)
    assert not in_windows(datetime(2026, 6, 1, 17, 0, tzinfo=timezone.utc), MAD, w)  # 19:00: end excluded
    night = (parse_window("22:00-06:00"),)
    assert in_windows(datetime(2026, 1, 1, 23, 30, tzinfo=timezone.utc), MAD, night)
    assert in_windows(datetime(2026, 1, 1, 4, 0, tzinfo=timezone.utc), MAD, night)
    assert not in_windows(datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc), MAD, night)
    for bad in ("10-19", "25:00-26:00", "10:00-10:00"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_window_and_max_switches():
    lim = {"heater": LoadLimits(windows=(parse_window("13:00-14:00"),), windows_text="13:00-14:00")}
    loads = (LoadView("heater", 1000.0, True, ago(3600)),)
    out = apply_guards([Wish("heater", True)], loads, lim, GuardState(NOW, False, 5.0, 60.0, MAD))
    assert not out[0].on and out[0].reason == "outside its windows 13:00-14:00"  # 14:00 CEST: end excluded
    out = apply_guards([Wish("heater", True)], loads, lim, GuardState(NOW - timedelta(minutes=1), False, 5.0, 60.0, MAD))
    assert out[0].on
    lim = {"heater": LoadLimits(max_switches_per_period=2)}
    g = GuardState(NOW, False, 5.0, 60.0, MAD, switches_in_period={"heater": 2})
    # the cap reached: a load that is on may still go off (a cap never makes it import)...
    assert not apply_guards([Wish("heater", False)], loads, lim, g)[0].on
    # ... but one that is off is not switched on again until the period ends
    off = (LoadView("heater", 1000.0, False, ago(3600)),)
    out = apply_guards([Wish("heater", True)], off, lim, g)
    assert not out[0].on and "max_switches_per_period 2 reached: stays off" in out[0].reason
    assert not apply_guards([Wish("heater", False)], loads, lim, replace_latched(g))[0].on


def replace_latched(g):
    from dataclasses import replace
    return replace(g, latched=True)


def test_2_0td_calendar():
    def p(y, mo, d, h):
        return period_2_0td(datetime(y, mo, d, h, 30, tzinfo=MAD), MAD)
    # Monday 2026-11-23
    assert [p(2026, 11, 23, h) for h in (0, 7, 8, 9, 10, 13, 14, 17, 18, 21, 22, 23)] == \
        ["P3", "P3", "P2", "P2", "P1", "P1", "P2", "P2", "P1", "P1", "P2", "P2"]
    assert p(2026, 11, 22, 11) == "P3"                 # Sunday
    assert p(2026, 12, 8, 11) == "P3"                  # Immaculate Conception, a Tuesday
    assert p(2026, 4, 3, 11) == "P1"                   # Good Friday: not a fixed date, not P3


def test_min_run_picks_the_cheapest_latest_periods():
    price = lambda t: period_2_0td(t, MAD)  # noqa: E731
    monday_0h = datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)   # 00:00 CET Monday
    assert min_run_deadline(monday_0h, MAD, "21:00") == datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc)
    # nothing run yet, from midnight: the two latest P3 hours, 06-08, and none before
    runs = [h for h in range(8) if min_run_reason(monday_0h + timedelta(hours=h), MAD, 3600, 7200, 0.0, "21:00",
                                                  price, 1000)]
    assert runs == [6, 7]
    # already done by the sun: nothing to do
    assert min_run_reason(monday_0h + timedelta(hours=6), MAD, 3600, 7200, 7200.0, "21:00", price, 1000) is None
    # at 09:00 with nothing done: P2 hours left are 9-10, 14-18; latest first: 16-18
    at9 = monday_0h + timedelta(hours=9)
    assert min_run_reason(at9, MAD, 3600, 7200, 0.0, "21:00", price, 1000) is None
    at16 = monday_0h + timedelta(hours=16)
    why = min_run_reason(at16, MAD, 3600, 7200, 0.0, "21:00", price, 1000)
    assert why and "2.00 h (2000 Wh) still needed by 21:00" in why and "P2" in why
    # not enough time left: run now whatever the price
    at20 = monday_0h + timedelta(hours=20)
    assert min_run_reason(at20, MAD, 3600, 7200, 0.0, "21:00", price, 1000)


def test_min_run_ranks_by_real_prices_when_every_slot_has_one():
    price = lambda t: period_2_0td(t, MAD)  # noqa: E731
    monday_0h = datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)   # 00:00 CET Monday

    def pvpc(t):  # cheapest at 13:00-15:00 local (12-14 UTC), dearest at night
        return 0.05 if 12 <= t.hour < 14 else 0.25
    runs = [h for h in range(17) if min_run_reason(monday_0h + timedelta(hours=h), MAD, 3600, 7200, 0.0, "21:00",
                                                   price, 1000, pvpc)]
    assert runs == [13, 14]  # local 13-15 h (later, with nothing run, too little time is left whatever the price)
    why = min_run_reason(monday_0h + timedelta(hours=13), MAD, 3600, 7200, 0.0, "21:00", price, 1000, pvpc)
    assert "0.0500 EUR/kWh" in why
    # a slot without a real price: the 2.0TD calendar decides (the latest P3 hours, 06-08)
    gaps = lambda t: None if t.hour == 19 else pvpc(t)  # noqa: E731 (20-21 h local unknown)
    assert [h for h in range(10) if min_run_reason(monday_0h + timedelta(hours=h), MAD, 3600, 7200, 0.0, "21:00",
                                                   price, 1000, gaps)] == [6, 7]


def test_min_run_kept_for_the_period_decides_as_computed_afresh():
    """managing and the simulator keep the daily minimum's deadline and the period's rank for the
    settlement period (Controller.min_run with period_start_s): every 7 minutes of a normal day
    and of the autumn DST day, with 0 to 2 h of the minimum done, hourly and quarter-hour
    periods, the decision and its reason equal those computed afresh (min_run_reason)."""
    from gestor.core.balance import period_start
    from gestor.core.control import Controller
    from gestor.settings import parse_settings
    from tests.conftest import EXAMPLE, example_raw
    raw = example_raw()
    raw["loads"][0].update(min_run_s=7200, min_run_by="21:00")
    decided = 0
    for period_s in (3600, 900):
        raw["billing"] = {**raw.get("billing", {}), "period_s": period_s}
        ctl, fresh = (Controller(parse_settings(raw, str(EXAMPLE), EXAMPLE)) for _ in range(2))
        for day in (datetime(2026, 11, 23, tzinfo=MAD), datetime(2026, 10, 25, tzinfo=MAD)):
            t = day.astimezone(timezone.utc)
            while t < (day + timedelta(days=1)).astimezone(timezone.utc):
                deadline = min_run_deadline(t, MAD, "21:00").timestamp()
                start_s = period_start(t, period_s, MAD).timestamp()
                for done in (0.0, 1800.0, 5400.0, 7200.0):
                    ctl.loads[0].day_on_s = fresh.loads[0].day_on_s = {deadline: done}
                    kept = ctl.min_run(t.timestamp(), start_s)
                    assert kept == fresh.min_run(t.timestamp()), (t, done)
                    decided += bool(kept)
                t += timedelta(minutes=7)  # every offset within the periods, in turn
    assert decided > 100  # the minimum did run in many of them


def test_on_time_counts_toward_the_deadline_it_was_run_for():
    """The on-time of a load with a daily minimum goes to the deadline ahead of it: accounted in
    10 s steps through the 21:00 deadlines of a normal day and of the autumn DST day (the
    controller keeps the deadline between calls), the count restarts at each deadline with the
    seconds after it, as min_run_deadline places them."""
    from gestor.core.control import Controller
    from gestor.settings import parse_settings
    from tests.conftest import EXAMPLE, example_raw
    raw = example_raw()
    raw["loads"][0].update(min_run_s=7200, min_run_by="21:00")
    ctl = Controller(parse_settings(raw, str(EXAMPLE), EXAMPLE))
    ld = ctl.loads[0]
    ld.on = True
    hour = (lambda t: (t - t % 3600.0, t - t % 3600.0 + 3600.0))  # settlement periods: hours
    for day in (datetime(2026, 11, 23, tzinfo=MAD), datetime(2026, 10, 25, tzinfo=MAD)):
        nine = day.replace(hour=21).timestamp()
        t = nine - 125.0
        while t < nine + 125.0:
            ctl.account(t, t + 10.0, hour)
            t += 10.0
            if t <= nine:  # all of it before the deadline: counted for it
                assert ld.day_on_s == {nine: pytest.approx(t - (nine - 125.0))}, t
            else:  # since the deadline: for the next one, 24 local hours later
                nxt = min_run_deadline(datetime.fromtimestamp(t, timezone.utc), MAD, "21:00").timestamp()
                assert nxt > nine and ld.day_on_s == {nxt: pytest.approx(t - nine)}, t


def test_switching_is_bounded_whatever_the_settings_say():
    """A load with min_on_s/min_off_s 0 and no max_switches_per_period (the shipped example) still
    stays on or off SWITCH_FLOOR_S and switches at most DEFAULT_MAX_SWITCHES_PER_PERIOD times a
    period (issue 23: a load once switched at every 10 s cycle); a load's own stricter limits win."""
    from gestor.core.guards import DEFAULT_MAX_SWITCHES_PER_PERIOD, SWITCH_FLOOR_S, LoadLimits
    from gestor.settings import LoadSettings
    loose = LoadSettings.model_validate({"name": "wh", "power_w": 1000, "relay": {"driver": "simulated"},
                                         "min_on_s": 0, "min_off_s": 0})
    lim = LoadLimits.of(loose)
    assert (lim.min_on_s, lim.min_off_s, lim.max_switches_per_period) == (SWITCH_FLOOR_S, SWITCH_FLOOR_S,
                                                                          DEFAULT_MAX_SWITCHES_PER_PERIOD)
    strict = LoadSettings.model_validate({"name": "wh", "power_w": 1000, "relay": {"driver": "simulated"},
                                          "min_on_s": 300, "min_off_s": 120, "max_switches_per_period": 2})
    assert (LoadLimits.of(strict).min_on_s, LoadLimits.of(strict).max_switches_per_period) == (300, 2)
