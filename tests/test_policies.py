"""Policies on hand-computed cases. Numbers in comments are the arithmetic the assertion checks."""
from datetime import datetime, timedelta, timezone

import pytest

from gestor.core.policies import LoadView, Snapshot, decide, projected_wh
from gestor.settings import PolicySettings

P0 = datetime(2026, 6, 1, 10, 0, tzinfo=timezone.utc)


def snap(balance_wh, net_w, elapsed_s=1800, loads=None):
    loads = loads or (LoadView("heater", 1000.0, False),)
    return Snapshot((P0 + timedelta(seconds=elapsed_s)).timestamp(), P0.timestamp(),
                    (P0 + timedelta(hours=1)).timestamp(), balance_wh, net_w, tuple(loads))


def wish(s, **policy):
    return {w.load: w for w in decide(s, PolicySettings(**policy))}


# -- time_to_consume -------------------------------------------------------------------------
def test_projection_modes():
    s = snap(300.0, -1000.0, elapsed_s=1800)
    assert projected_wh(s, "none") == pytest.approx(300.0)
    assert projected_wh(s, "average") == pytest.approx(600.0)  # 300 / 1800 s x 3600 s
    assert projected_wh(s, "instant") == pytest.approx(-200.0)  # 300 - 1000 x 1800/3600


def test_ttc_switches_on_when_projection_covers_the_rest_of_the_period():
    # projected 200 + 1500 x 0.5 = 950 Wh runs 1000 W for 3420 s >= 1800 s left
    w = wish(snap(200.0, 1500.0), name="time_to_consume")["heater"]
    assert w.on and "projected +950 Wh" in w.reason and "1800 s left" in w.reason


def test_ttc_stays_off_when_projection_is_short():
    # projected 100 + 500 x 0.5 = 350 Wh runs 1000 W for 1260 s < 1800 s
    assert not wish(snap(100.0, 500.0), name="time_to_consume")["heater"].on


def test_ttc_time_factor_scales_the_time_left():
    # 1260 s >= 1800 s x 0.5
    assert wish(snap(100.0, 500.0), name="time_to_consume", time_factor=0.5)["heater"].on


def test_ttc_on_min_wh_blocks_small_surpluses():
    assert not wish(snap(100.0, 500.0), name="time_to_consume", time_factor=0.1, on_min_wh=400)["heater"].on


@pytest.mark.parametrize("projection,on", [("average", True), ("none", False), ("instant", False)])
def test_ttc_projection_modes_decide_differently(projection, on):
    # balance 300 Wh at half time, net -1000 W now: average 600 Wh (2160 s >= 1800 s), none 300 Wh
    # (1080 s), instant -200 Wh
    assert wish(snap(300.0, -1000.0), name="time_to_consume", projection=projection)["heater"].on is on


def test_ttc_keeps_a_running_load_while_the_period_would_end_positive_without_it():
    on = (LoadView("heater", 1000.0, True, P0.timestamp()),)
    # without it: 50 + (-300 + 1000) x 0.5 = +400 Wh > 0: keep
    assert wish(snap(50.0, -300.0, loads=on), name="time_to_consume")["heater"].on
    # without it: 50 + (-1200 + 1000) x 0.5 = -50 Wh <= 0: off
    w = wish(snap(50.0, -1200.0, loads=on), name="time_to_consume")["heater"]
    assert not w.on and "-50 Wh" in w.reason


def test_ttc_end_at_wh_raises_the_bar_for_keeping_a_load():
    on = (LoadView("heater", 1000.0, True, P0.timestamp()),)
    # without it +400 Wh <= end_at 500 Wh: off
    assert not wish(snap(50.0, -300.0, loads=on), name="time_to_consume", end_at_wh=500)["heater"].on


def test_ttc_stacks_loads_in_priority_order_one_change_per_cycle():
    both_off = (LoadView("heater", 1000.0, False), LoadView("pump", 700.0, False))
    w = wish(snap(2000.0, 3000.0, loads=both_off), name="time_to_consume")
    assert w["heater"].on and not w["pump"].on
    first_on = (LoadView("heater", 1000.0, True, P0.timestamp()), LoadView("pump", 700.0, False))
    w = wish(snap(2000.0, 3000.0, loads=first_on), name="time_to_consume")
    assert w["heater"].on and w["pump"].on
    both_on = (LoadView("heater", 1000.0, True, P0.timestamp()), LoadView("pump", 700.0, True, P0.timestamp()))
    # deficit: the last one goes first. without pump: 0 + (-2000 + 700) x 0.5 = -650 Wh
    w = wish(snap(0.0, -2000.0, loads=both_on), name="time_to_consume")
    assert w["heater"].on and not w["pump"].on


# -- hysteresis ------------------------------------------------------------------------------
def H(on, since=None):
    return (LoadView("heater", 1000.0, on, since, on_above_wh=300.0, off_below_wh=0.0),)


@pytest.mark.parametrize("on,balance,expect", [
    (False, 299.0, False), (False, 300.0, True), (True, 150.0, True), (True, 0.0, False), (False, 150.0, False)])
def test_hysteresis(on, balance, expect):
    assert wish(snap(balance, 0.0, loads=H(on)), name="hysteresis")["heater"].on is expect


# -- min_on_time -----------------------------------------------------------------------------
def test_min_on_time_switches_on_when_surplus_runs_the_load_long_enough():
    # 1000 W for 300 s needs 83.3 Wh
    assert wish(snap(90.0, 0.0), name="min_on_time", min_on_s=300)["heater"].on
    assert not wish(snap(80.0, 0.0), name="min_on_time", min_on_s=300)["heater"].on


@pytest.mark.parametrize("ran_s,balance,expect", [(200, 10.0, True), (300, 10.0, False), (300, 100.0, True)])
def test_min_on_time_keeps_the_load_on_for_min_on_s(ran_s, balance, expect):
    s = snap(balance, 0.0)
    loads = (LoadView("heater", 1000.0, True, s.now_s - ran_s),)
    assert wish(snap(balance, 0.0, loads=loads), name="min_on_time", min_on_s=300)["heater"].on is expect


def test_min_on_time_shares_the_surplus_between_loads():
    loads = (LoadView("heater", 1000.0, False), LoadView("pump", 700.0, False))
    # 1000 W x 300 s = 83.3 Wh, then 700 W x 300 s = 58.3 Wh: 100 Wh covers only the first
    w = wish(snap(100.0, 0.0, loads=loads), name="min_on_time", min_on_s=300)
    assert w["heater"].on and not w["pump"].on
    w = wish(snap(150.0, 0.0, loads=loads), name="min_on_time", min_on_s=300)
    assert w["heater"].on and w["pump"].on


def test_policies_are_pure():
    s = snap(200.0, 1500.0)
    assert decide(s, PolicySettings()) == decide(s, PolicySettings())


# -- steady_surplus (the shipped policy) -------------------------------------------------------
SS = dict(name="steady_surplus", margin_wh=30, doubt=2, carry_wh=30, on_min_wh=75)


def steady(balance_wh, recent, left_s, heater_on):
    end = P0 + timedelta(hours=1)
    loads = (LoadView("heater", 1000.0, heater_on, P0.timestamp() if heater_on else None),)
    return Snapshot(end.timestamp() - left_s, P0.timestamp(), end.timestamp(), balance_wh, recent[-1], loads,
                    tuple(recent))


def test_steady_surplus_switches_on_on_the_median_not_a_spike():
    # median 1500 W: 0 + (1500 - 1000) x 0.5 h = 250 Wh >= margin 30, projected 750 >= 75: on
    w = wish(steady(0.0, [1500.0] * 10 + [9000.0], 1800, False), **SS)["heater"]
    assert w.on and "steady surplus 1500 W" in w.reason
    # a 9 kW spike among 400 W readings does not: median 400 W
    assert not wish(steady(0.0, [400.0] * 10 + [9000.0] * 3, 1800, False), **SS)["heater"].on


def test_steady_surplus_counts_on_median_minus_doubt_mads_for_a_running_load():
    recent = [800.0, 900.0, 1000.0, 1100.0, 1200.0]   # median 1000 W, MAD 100 W
    # doubt 2: rate 800 W; without the heater the period ends at -400 + 800 x 0.5 = 0 <= 30: off
    w = wish(steady(-400.0, recent, 1800, True), **SS)["heater"]
    assert not w.on and "doubtful 800 W" in w.reason
    # doubt 0: rate 1000 W, -400 + 500 = 100 > 30: it keeps running
    assert wish(steady(-400.0, recent, 1800, True), **{**SS, "doubt": 0})["heater"].on


def test_steady_surplus_carries_a_load_into_the_next_period_in_the_last_minute():
    # 30 s left, steady 1200 W >= the 1000 W on; balance -10 Wh: without the heater the period
    # ends at -10 + 1200 x 30/3600 = 0 <= 30 (off), but carried it ends at -10 + 200 x 30/3600 =
    # -8.3 Wh >= -carry 30: it stays on
    assert wish(steady(-10.0, [1200.0] * 5, 30, True), **SS)["heater"].on
    assert not wish(steady(-10.0, [1200.0] * 5, 30, True), **{**SS, "carry_wh": 0})["heater"].on
    assert not wish(steady(-40.0, [1200.0] * 5, 30, True), **SS)["heater"].on   # -38.3 < -30
    assert not wish(steady(-10.0, [900.0] * 5, 30, True), **SS)["heater"].on    # 900 W does not carry it
    assert not wish(steady(-10.0, [1200.0] * 5, 120, True), **SS)["heater"].on  # not the last minute


def test_steady_surplus_spread_is_the_median_of_the_sorted_distances():
    """steady_surplus's spread (median absolute deviation about the median) is taken by merging
    the distances below and above the median outwards, without sorting them: it must be exactly
    the textbook one on windows with ties, zeros, one value, even and odd lengths."""
    import random

    from gestor.core.policies import _median_distance, _quantile
    rng = random.Random(11)
    for _ in range(5000):
        n = rng.randint(1, 20)
        pick = rng.random()
        if pick < 0.3:
            vals = [float(rng.randint(-5, 5)) for _ in range(n)]   # many ties
        elif pick < 0.6:
            vals = [rng.uniform(-3000.0, 6000.0) for _ in range(n)]
        else:
            vals = [rng.choice([0.0, -0.0, 250.5, -17.25, 3333.3]) for _ in range(n)]
        window = tuple(sorted(vals))
        med = _quantile(window, 0.5)
        assert _median_distance(window, med) == _quantile(tuple(sorted(abs(v - med) for v in window)), 0.5), window
