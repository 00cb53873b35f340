"""Choosing parameters on some days and scoring them on others (gestor/sim/tune.py, gestor tune)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from gestor.cli import main
from gestor.sim.simulate import Totals
from gestor.sim.tune import Sums, cross_validate, frontier, score
from tests.conftest import EXAMPLE
from tests.test_simulate import house_csv

UTC = timezone.utc


def day(captured_wh, bound_wh, switches, import_wh, money_eur=0.0):
    return Totals(periods=24, bound_wh=bound_wh, switches=switches, imported_wh=import_wh,
                  exported_without_wh=captured_wh, money_eur=money_eur)  # captured = exported without - with (0)


def test_the_score_is_euros_within_the_bound_on_switching():
    """Issue 33: the fewest EUR a day wins, whatever its capture or import, unless it switches
    more than 20 times a day: each switch a day over costs 1 EUR a day."""
    ok = Sums().add(day(990, 1000, 20, 20, money_eur=0.50), 3600)
    cheaper = Sums().add(day(900, 1000, 10, 70, money_eur=0.40), 3600)      # less capture, more import
    many_switches = Sums().add(day(995, 1000, 40, 0, money_eur=0.10), 3600)  # 0.10 + 1 x 20
    assert (ok.captured_pct, ok.switches_per_day, ok.import_wh_per_day, ok.eur_per_day) == (99.0, 20.0, 20.0, 0.5)
    assert score(ok) == -0.5 and score(cheaper) == pytest.approx(-0.4)
    assert score(many_switches) == pytest.approx(-20.1)
    assert max([ok, cheaper, many_switches], key=score) is cheaper


def test_a_fold_never_chooses_on_the_days_it_is_scored_on():
    # candidate 0 is best on days a and b, candidate 1 only on day c
    good, bad = day(990, 1000, 10, 0, money_eur=0.2), day(500, 1000, 10, 0, money_eur=0.7)
    results = [[{"a": good, "b": good, "c": bad}], [{"a": bad, "b": bad, "c": good}]]
    folds = cross_validate(results, [{"k": 0}, {"k": 1}], ["a", "b", "c"], lambda fi, d: d, 3600)
    assert [f.chosen["k"] for f in folds] == [0, 0, 0]
    assert folds[2].test.captured_pct == 50.0       # held out c: scored with candidate 0, which is bad there
    assert folds[0].test.captured_pct == 99.0


def test_frontier_keeps_the_points_nothing_beats():
    pts = [(10, 95.0, "a"), (12, 94.0, "dominated"), (20, 98.0, "b"), (20, 97.0, "same switches, less"), (30, 99.0, "c")]
    assert [t for _, _, t in frontier(pts)] == ["a", "b", "c"]


def test_gestor_tune_on_a_recording_prints_held_out_folds_and_a_snippet(tmp_path, capsys):
    # four days: mornings of steady sun with a passing cloud every 20 minutes
    start = datetime(2026, 6, 8, 0, 0, tzinfo=UTC)

    def prod(k):
        h = (k % 86400) / 3600
        return 0 if not 8 <= h < 16 else (2500 if (k // 1200) % 3 else 400)
    csv = house_csv(tmp_path / "four.csv", start, 4 * 86400 - 10, prod, lambda k: 300, step=30)
    assert main(["tune", str(csv), "--config", str(EXAMPLE), "--policy", "time_to_consume", "--folds", "2",
                 "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "fold 1" in out and "fold 2" in out and "held-out days only" in out
    snippet = yaml.safe_load(out[out.index("policy:"):])
    assert snippet["policy"]["name"] == "time_to_consume"
    assert set(snippet["policy"]) == {"name", "end_at_wh", "on_min_wh", "time_factor"}


def test_gestor_tune_says_what_it_cannot_do(tmp_path, capsys):
    csv = house_csv(tmp_path / "one.csv", datetime(2026, 6, 8, 8, 0, tzinfo=UTC), 3 * 3600, lambda k: 2000,
                    lambda k: 300)
    assert main(["tune", str(csv), "--config", str(EXAMPLE), "--policy", "hysteresis"]) == 2
    assert "gestor tune searches time_to_consume, steady_surplus" in capsys.readouterr().err
    assert main(["tune", str(csv), "--config", str(EXAMPLE), "--policy", "time_to_consume", "--jobs", "1"]) == 1
    assert "needs at least 4" in capsys.readouterr().err


def test_gestor_tune_chooses_a_setpoint_devices_reserve_held_out_by_day(tmp_path, capsys):
    """With a setpoint device in the settings (and no --policy), gestor tune searches its
    reserve_wh_per_h over 0..300, held out by day, and prints the choice with the held-out score
    as a setpoints: snippet. A modulating heater on sunny days with passing clouds."""
    start = datetime(2026, 6, 8, 0, 0, tzinfo=UTC)

    def prod(k):
        h = (k % 86400) / 3600
        return 0 if not 8 <= h < 16 else (3500 if (k // 1200) % 3 else 400)
    csv = house_csv(tmp_path / "four.csv", start, 4 * 86400 - 10, prod, lambda k: 300, step=30)
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["setpoints"] = [{"name": "heater2", "device": {"driver": "simulated", "kind": "heater", "max_charge_w": 2000}}]
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(csv), "--config", str(cfg), "--folds", "2", "--jobs", "1"]) == 0
    cap = capsys.readouterr()
    assert "tuning setpoint device heater2 (its reserve_wh_per_h) over 6 candidates" in cap.err
    out = cap.out
    assert "fold 1" in out and "fold 2" in out and "reserve_wh_per_h" in out
    assert "held-out score" in out and "tuned" in out
    assert "EUR over perfect foresight" in out and "(modulating) by its LP" in out
    snippet = yaml.safe_load(out[out.index("setpoints:"):])
    (dev,) = snippet["setpoints"]
    assert dev["name"] == "heater2" and dev["reserve_wh_per_h"] in (0, 50, 100, 150, 200, 300)
    # --device names a device that is not there: one line, exit 2
    assert main(["tune", str(csv), "--config", str(cfg), "--device", "nope"]) == 2
    assert "--device 'nope': not in setpoints (heater2)" in capsys.readouterr().err
