"""gestor simulate: tiny hand-made CSVs with results computed by hand, the thesis's sweep
behaviour and the policy comparison on the real files, the command line."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from drivers.meters.replay import ReplayData
from gestor.cli import main
from gestor.settings import parse_settings
from gestor.sim.simulate import Prices, replay_settings_for, simulate
from tests.conftest import DATA, EXAMPLE, example_raw

UTC = timezone.utc
HEADER = "timestamp,energyB,energyP,on_offL1,on_offL2,powerC,powerP,powerL1,powerL2,powerA"


def house_csv(path: Path, start: datetime, seconds: int, prod, base, step: int = 10, skip=None) -> Path:
    """A house-format CSV: ``prod(t)``/``base(t)`` W at every ``step`` s for ``seconds``
    (inclusive of the end), no recorded managed loads; ``skip(t)`` drops samples."""
    rows = [HEADER]
    for k in range(0, seconds + 1, step):
        if skip and skip(k):
            continue
        t = start + timedelta(seconds=k)
        rows.append(f"{t:%Y-%m-%d %H:%M:%S}.000000,0,,0,0,{base(k)},{prod(k)},0,0,0")
    path.write_text("\n".join(rows) + "\n")
    return path


def settings(**changes):
    raw = example_raw()
    raw["loads"] = changes.pop("loads", [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "simulated"}}])
    for k, v in changes.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_settings(raw, "settings.yaml", EXAMPLE)


def run(csv: Path, s, **kw):
    return simulate(ReplayData.load(replay_settings_for(csv)), s, Prices(s), **kw)


T10 = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Madrid (P1)


def test_constant_surplus_one_load_by_hand(tmp_path):
    csv = house_csv(tmp_path / "sun.csv", T10, 3600, lambda k: 2000, lambda k: 500)
    r = run(csv, settings())
    (p,) = r.periods
    assert p.complete and p.production_wh == pytest.approx(2000.0) and p.base_wh == pytest.approx(500.0)
    # decided on at 10:00:00 (1500 Wh projected covers 1000 W for the hour), on from the next sample:
    # the trapezoid gives half a step at 0 W, then 3590 s at 1000 W
    want_load = 1000 * 5 / 3600 + 1000 * 3590 / 3600
    assert p.loads_wh == pytest.approx(want_load, abs=1e-9)
    assert p.balance_wh == pytest.approx(1500 - want_load, abs=1e-9)
    assert p.balance_without_wh == pytest.approx(1500.0, abs=1e-9)
    assert p.bound_wh == 1000.0
    assert r.totals.captured_wh == pytest.approx(want_load, abs=1e-9)
    assert r.totals.captured_pct == pytest.approx(want_load / 10, abs=1e-9)
    # on-time counts from the command (right after the 10:00:00 decision): the whole hour
    assert p.switches == {"water_heater": 1} and p.load_on_s["water_heater"] == pytest.approx(3600.0)
    # cost by hand: no import; exported 0.501 kWh x 0.06 EUR, capped at the month's import cost (0)
    assert r.totals.cost_eur == 0.0
    # without gestor: the load's 0.9986 kWh bought at P3 (0.10 EUR) minus 1.5 kWh exported x 0.06 EUR
    assert r.totals.cost_without_eur == pytest.approx(want_load / 1000 * 0.10 - 1.5 * 0.06, abs=1e-12)


def test_energy_is_conserved_per_period_and_the_bound_holds(tmp_path):
    # clouds: production swings every 7 minutes; two loads; three hours with a gap
    csv = house_csv(tmp_path / "clouds.csv", T10, 3 * 3600, lambda k: 3000 if (k // 420) % 2 else 600,
                    lambda k: 400 + (k % 130), skip=lambda k: 5000 <= k < 5400)
    s = settings(loads=[{"name": "a", "power_w": 1000, "relay": {"driver": "simulated"}},
                        {"name": "b", "power_w": 700, "relay": {"driver": "simulated"}}])
    r = run(csv, s)
    assert len(r.periods) == 3 and [p.complete for p in r.periods] == [True, False, True]
    for p in r.periods:
        assert p.production_wh - p.base_wh - p.loads_wh == pytest.approx(p.balance_wh, abs=1e-6)
        assert p.balance_without_wh - p.loads_wh == pytest.approx(p.balance_wh, abs=1e-6)
        captured = p.settled_wh(with_gestor=False)[0] - p.export_wh
        assert captured <= p.bound_wh + 1e-9
        assert sum(p.load_on_s.values()) <= 2 * 3600
    assert r.totals.switches > 2


def test_a_period_without_surplus_never_switches_a_load_on(tmp_path):
    csv = house_csv(tmp_path / "night.csv", T10, 2 * 3600, lambda k: 0 if k <= 3600 else 900, lambda k: 300)
    for end_at in (0, 50):
        r = run(csv, settings(policy={"name": "time_to_consume", "end_at_wh": end_at}), trace=True)
        first = r.periods[0]
        assert first.switches == {"water_heater": 0} and first.balance_wh == pytest.approx(-300.0)
        assert first.import_wh == pytest.approx(300.0)
    # priced by hand: 0.3 kWh at P1 (10-11 h on a Wednesday) = 0.066 EUR in the first hour
    assert first.price_period == "P1" and first.import_price == 0.22


def test_no_on_switch_where_the_surplus_never_appears_on_real_data():
    """On the recorded winter week (cloudy, big base load): in every period in which the surplus
    before the loads never rose above 0, time_to_consume (end_at 0) switches nothing on."""
    data = ReplayData.load(replay_settings_for(DATA / "winter-2022-02-01_08.csv"))
    s = settings(loads=example_raw()["loads"])
    r = simulate(data, s, Prices(s), trace=True)
    tr = r.trace
    checked = 0
    for p in r.periods:
        a, b = p.start.timestamp(), p.end.timestamp()
        idx = [i for i, t in enumerate(tr.t) if a <= t < b]
        if not idx or max(tr.production_w[i] - tr.base_w[i] for i in idx) > 0:
            continue
        checked += 1
        for name, on in tr.on.items():
            assert not any(on[i] and not on[i - 1] for i in idx[1:]), (p.start, name)
    assert checked > 100


def test_dst_day_has_25_periods(tmp_path):
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 CEST, 25 October 2026
    csv = house_csv(tmp_path / "dst.csv", start, 25 * 3600 - 10, lambda k: 0, lambda k: 360, step=60)
    r = run(csv, settings(billing={"max_gap_s": 120}))
    assert list(r.days) == ["2026-10-25"] and r.days["2026-10-25"].periods == 25
    assert r.totals.imported_wh == pytest.approx(360 * (25 - 10 / 3600 - 50 / 3600), abs=0.5)


def test_hourly_price_file_overrides_the_tariff(tmp_path):
    csv = house_csv(tmp_path / "night.csv", T10, 3600, lambda k: 0, lambda k: 1000)
    prices = tmp_path / "pvpc.csv"
    prices.write_text("time,import_eur_per_kwh\n2026-06-10T10:00:00+02:00,0.3333\n")
    s = settings()
    r = simulate(ReplayData.load(replay_settings_for(csv)), s, Prices(s, prices))
    assert r.totals.cost_eur == pytest.approx(0.3333, abs=1e-9)


def test_hysteresis_sweep_higher_top_switches_less_and_captures_less():
    """The thesis's observation, on house-2022-06-11_13: raising the on threshold of the
    hysteresis policy trades captured surplus for fewer switches."""
    data = ReplayData.load(replay_settings_for(DATA / "house-2022-06-11_13.csv"))
    out = []
    for top in (100, 300, 600):
        loads = [{**ld, "on_above_wh": top, "off_below_wh": 0} for ld in example_raw()["loads"]]
        s = settings(loads=loads, policy={"name": "hysteresis"})
        t = simulate(data, s, Prices(s)).totals
        out.append((t.switches, t.captured_wh))
    assert out[0][0] > out[1][0] > out[2][0]
    assert out[0][1] > out[1][1] > out[2][1]


def test_steady_surplus_against_time_to_consume_on_the_public_data():
    """The claim in the README for the shipped steady_surplus (parameters chosen by
    cross-validation, issue 12): on each of these three recorded files it captures at least 95 %
    of the bound, with at most 70 % of time_to_consume's switches (end_at 0, on_min 75, factor 1)
    and less extra import than it (with the default switching bounds of guards.SWITCH_FLOOR_S and
    DEFAULT_MAX_SWITCHES_PER_PERIOD: a cap of 10 a period made it 73 % on the winter file and cost
    steady_surplus 1.7 points of capture there, so the cap is 20)."""
    for f in ("house-2022-06-11_13.csv", "house-2022-05-08_12.csv", "winter-2022-02-01_08.csv"):
        data = ReplayData.load(replay_settings_for(DATA / f))
        ttc = settings(loads=example_raw()["loads"], policy={"name": "time_to_consume"})
        shipped = settings(loads=example_raw()["loads"], policy={"name": "steady_surplus"})
        assert (shipped.policy.carry_wh, shipped.policy.margin_wh) == (30, 30)  # the example's
        a, b = simulate(data, ttc, Prices(ttc)).totals, simulate(data, shipped, Prices(shipped)).totals
        assert b.captured_pct >= 95.0, f
        assert b.switches <= 0.7 * a.switches, f
        assert b.extra_import_wh < a.extra_import_wh, f


GUARDED = {"min_on_s": 300, "min_off_s": 120, "max_switches_per_period": 3, "windows": ["09:00-19:30"],
           "min_run_s": 7200, "min_run_by": "21:00"}


@pytest.mark.parametrize("policy, guards", [("time_to_consume", {}), ("steady_surplus", {}),
                                            ("time_to_consume", GUARDED), ("steady_surplus", GUARDED)],
                         ids=["time_to_consume", "steady_surplus", "time_to_consume-guarded", "steady_surplus-guarded"])
def test_a_run_split_at_midnights_equals_the_run_in_one_piece(policy, guards):
    """--jobs 2 on five real days: two processes, each from 6 h before its midnight (with a daily
    minimum run, from the deadline before that: the day's run counted as the daemons count it);
    the same switches at the same instants and the same period balances as one sequential run."""
    data = ReplayData.load(replay_settings_for(DATA / "house-2022-05-08_12.csv"))
    loads = example_raw()["loads"]
    s = settings(loads=[{**loads[0], **guards}] + loads[1:], policy={"name": policy})
    one, split = simulate(data, s, Prices(s)), simulate(data, s, Prices(s), jobs=2)
    assert (one.parts, split.parts) == (1, 2)
    assert len(one.switches) > 100 and split.switches == one.switches
    assert [p.start for p in split.periods] == [p.start for p in one.periods]
    for a, b in zip(one.periods, split.periods):
        assert b.balance_wh == pytest.approx(a.balance_wh, abs=0.01) and b.load_wh == pytest.approx(a.load_wh, abs=0.01)
        assert (b.switches, b.complete) == (a.switches, a.complete)
    assert split.totals.captured_wh == pytest.approx(one.totals.captured_wh, abs=0.01)
    assert split.totals.cost_eur == pytest.approx(one.totals.cost_eur, abs=1e-6)


def test_a_split_part_that_has_not_reached_the_same_state_is_not_used():
    # no warm-up: the part after midnight starts without the last reading before it, so its
    # period's balance differs; the run is done in one piece, with the same result
    data = ReplayData.load(replay_settings_for(DATA / "house-2022-06-11_13.csv"))
    s = settings(loads=example_raw()["loads"], policy={"name": "time_to_consume"})
    one, split = simulate(data, s, Prices(s)), simulate(data, s, Prices(s), jobs=2, warmup_s=0.0)
    assert split.parts == 1 and split.switches == one.switches
    assert [p.balance_wh for p in split.periods] == [p.balance_wh for p in one.periods]


def test_cli_table_json_csv_plot_and_errors(tmp_path, capsys):
    f = str(DATA / "house-2022-06-11_13.csv")
    assert main(["simulate", f, "--config", str(EXAMPLE), "--from", "2022-06-11", "--to", "2022-06-12"]) == 0
    out = capsys.readouterr().out
    assert "2022-06-11" in out and "total" in out and "2022-06-12 " not in out
    assert main(["simulate", f, "--config", str(EXAMPLE), "--json", "--policy", "steady_surplus",
                 "--csv", str(tmp_path / "p.csv"), "--plot", str(tmp_path / "day.png"),
                 "--from", "2022-06-12", "--to", "2022-06-13"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["policy"]["name"] == "steady_surplus" and len(d["periods"]) == 24
    assert (tmp_path / "p.csv").read_text().count("\n") == 25
    png = (tmp_path / "day.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert main(["simulate", f, "--config", str(EXAMPLE), "--set", "loads.0.power_w=-5"]) == 2
    assert "loads[0].power_w: must be > 0 (got -5)" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "nope.csv"), "--config", str(EXAMPLE)]) == 1
    assert "nope.csv" in capsys.readouterr().err


def test_cli_sweep_marks_the_best_row(capsys):
    f = str(DATA / "house-2022-06-11_13.csv")
    assert main(["simulate", f, "--config", str(EXAMPLE), "--from", "2022-06-11", "--to", "2022-06-12",
                 "--sweep", "policy.end_at_wh=0:100:50"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln[:3].strip() in ("0", "50", "100")]
    assert len(rows) == 3 and sum("<- best" in r for r in rows) == 1


def test_sweep_in_two_processes_gives_the_same_rows_as_in_one(capsys):
    f = str(DATA / "house-2022-06-11_13.csv")
    common = ["simulate", f, "--config", str(EXAMPLE), "--from", "2022-06-11", "--to", "2022-06-12",
              "--sweep", "policy.on_min_wh=0:150:50"]
    assert main(common + ["--jobs", "1"]) == 0
    one = capsys.readouterr()
    assert main(common + ["--jobs", "2"]) == 0
    two = capsys.readouterr()
    assert one.out == two.out and "(2 jobs)" in two.err and "(1 jobs)" in one.err
    assert len([ln for ln in one.out.splitlines() if ln[:3].strip() in ("0", "50", "100", "150")]) == 4
