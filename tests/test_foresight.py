"""The perfect-foresight benchmark on hand-made days whose optimum is worked out by hand here."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from drivers.meters.replay import ReplayData
from gestor.cli import main
from gestor.core.foresight import Period, plan
from gestor.sim.simulate import Prices, foresight, replay_settings_for, simulate
from tests.conftest import EXAMPLE
from tests.test_simulate import house_csv, settings

UTC = timezone.utc
H = 3600.0
T0 = 1_780_000_000.0 - 1_780_000_000.0 % H  # a whole UTC hour


def periods(*surplus_wh, allowed=None):
    n = len(surplus_wh)
    allowed = allowed or [None] * n
    return [Period(T0 + k * H, T0 + (k + 1) * H, s, allowed[k] or (True,) * 4) for k, s in enumerate(surplus_wh)]


def on_time_s(runs, a, b):
    return sum(max(0.0, min(v, b) - max(u, a)) for u, v in runs)


def test_one_load_one_sunny_period():
    # 500 Wh of surplus in the middle hour: the 1000 W load runs half an hour there, on and off
    p = plan(periods(0, 500, 0), [1000.0])
    assert p.switches == 2 and p.energy_wh == pytest.approx(500.0)
    assert len(p.runs[0]) == 1 and on_time_s(p.runs[0], T0 + H, T0 + 2 * H) == pytest.approx(1800.0)
    assert on_time_s(p.runs[0], T0, T0 + H) == 0 and on_time_s(p.runs[0], T0 + 2 * H, T0 + 3 * H) == 0


def test_a_surplus_that_fits_one_load_exactly():
    # 1000 Wh an hour for three hours: the 1000 W heater runs the three hours (on once, off once);
    # the 700 W pump never runs
    p = plan(periods(0, 1000, 1000, 1000, 0), [1000.0, 700.0])
    assert p.switches == 2 and p.energy_wh == pytest.approx(3000.0)
    assert p.runs[0] == [(T0 + H, T0 + 4 * H)] and p.runs[1] == []


def test_a_run_carried_across_the_boundary_saves_two_switches():
    # 500 Wh in each of two hours: one hour-long run across the boundary (2 switches), not two
    # half-hour runs (4)
    p = plan(periods(0, 500, 500, 0), [1000.0])
    assert p.switches == 2 and p.energy_wh == pytest.approx(1000.0)
    assert p.runs[0] == [(T0 + 1.5 * H, T0 + 2.5 * H)]


def test_a_window_that_forbids_the_cheap_solution():
    # 1000 Wh in each of two hours. Heater 1000 W, pump 500 W. Free: the heater runs both hours
    # (2 switches, 2000 Wh). With the heater kept out of the first hour by a window, that hour
    # takes only the pump's 500 Wh; the second hour takes 1000 Wh: 1500 Wh, and 4 switches
    # (pump on for the first hour, heater on for the second, each on and off)
    free = plan(periods(0, 1000, 1000, 0), [1000.0, 500.0])
    assert (free.switches, free.energy_wh) == (2, pytest.approx(2000.0))
    win = plan(periods(0, 1000, 1000, 0, allowed=[None, (False, True), None, None]), [1000.0, 500.0])
    assert win.switches == 4 and win.energy_wh == pytest.approx(1500.0)
    assert on_time_s(win.runs[0], T0 + H, T0 + 2 * H) == 0
    assert on_time_s(win.runs[1], T0 + H, T0 + 2 * H) == pytest.approx(H)


def test_no_surplus_no_switch_and_a_deficit_is_never_filled():
    p = plan(periods(-300, 0, -50), [1000.0, 700.0])
    assert p.switches == 0 and p.energy_wh == 0 and p.runs == [[], []]


T10 = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)  # 10:00 in Madrid


def test_the_benchmark_is_played_like_a_policy_on_a_hand_made_day(tmp_path, capsys):
    # 09:00-10:00 local: 200 W import; 10:00-12:00: 500 W surplus; 12:00-13:00: 200 W import.
    # The benchmark: one 1000 W run of one hour across 11:00 (1000 Wh, 2 switches), no import.
    def prod(k):
        return 1000 if 3600 <= k < 3 * 3600 else 0
    csv = house_csv(tmp_path / "day.csv", T10 - timedelta(hours=1), 4 * 3600, prod, lambda k: 500 if prod(k) else 200)
    s = settings()
    data = ReplayData.load(replay_settings_for(csv))
    base = simulate(data, s, Prices(s))
    bench, pl = foresight(data, s, Prices(s), base=base)
    assert pl.switches == 2 and pl.energy_wh == pytest.approx(1000.0, abs=1.0)
    t = bench.totals
    assert t.switches == 2
    assert t.extra_import_wh <= 1.0
    assert t.captured_wh >= 1000.0 - 1000.0 * 20 / 3600  # a cycle at each end of the run, at most
    assert t.captured_wh <= base.totals.bound_wh + 1e-6
    (on, off) = [w for w in bench.switches]
    assert on[2] and not off[2] and (off[0] - on[0]).total_seconds() == pytest.approx(3600.0, abs=20.0)
    # the policy on the same day, against it, in the report
    assert main(["simulate", str(csv), "--config", str(EXAMPLE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["perfect_foresight"]["totals"]["switches"] >= 2
    v = out["versus_perfect_foresight"]
    assert v["captured_pct_of_benchmark"] == pytest.approx(
        100 * out["totals"]["captured_wh"] / out["perfect_foresight"]["totals"]["captured_wh"])


def test_the_schedule_asks_what_it_would_ask_afresh_between_its_flips():
    # Scheduled skips the calls between two flips while the loads' views are the same object (the
    # core rebuilds them when a load changes): asked every 10 s with loads that sometimes disagree
    # with the plan (a guard held them), it must ask exactly what a fresh look at the plan asks
    import random

    from gestor.core.foresight import Plan, Scheduled
    from gestor.core.policies import LoadView, Snapshot
    rng = random.Random(7)
    runs = [[(T0 + 95.0, T0 + 400.0), (T0 + 1000.0, T0 + 1010.0), (T0 + 2000.0, float("inf"))],
            [(T0 - 50.0, T0 + 700.0)]]
    sched = Scheduled(Plan(runs, 6, 0.0), ["a", "b"], T0, 10.0)
    on = {"a": False, "b": True}
    views = tuple(LoadView(n, 1000.0, on[n]) for n in ("a", "b"))
    asked = 0
    for k in range(400):
        now = T0 + 10.0 * k
        if rng.random() < 0.05:  # a guard or the relay: a load changes, the core builds new views
            n = rng.choice("ab")
            on[n] = not on[n]
            views = tuple(LoadView(m, 1000.0, on[m]) for m in ("a", "b"))
        # every other cycle a new tuple of the same views, as the core makes when it leaves held
        # loads out of the policy's stack
        snap = Snapshot(now, T0, T0 + H, 0.0, 0.0, views if k % 2 else tuple(list(views)))
        want = sched(snap, None)
        assert want == Scheduled(Plan(runs, 6, 0.0), ["a", "b"], T0, 10.0)(snap, None), now  # no memory
        asked += len(want)
        for w in want:  # mostly the wish is carried out
            if rng.random() < 0.8:
                on[w.load] = w.on
                views = tuple(LoadView(m, 1000.0, on[m]) for m in ("a", "b"))
    assert asked > 20
