"""Every policy on every recorded file: captured surplus (% of the bound), switches per day,
extra import, cost, and the same for the perfect-foresight benchmark (the best any controller
could do: zero extra import, fewest switches), with each policy's capture as % of the
benchmark's and its switches as a multiple of the benchmark's, and its EUR over the benchmark's
(``Totals.money_eur``: import less compensation per period, no monthly cap, less the loads'
energy at the P3 price; issue 33). The table in the README and in the issue notes comes from here.

    .venv/bin/python benchmarks/policies.py
    .venv/bin/python benchmarks/policies.py --cv [--loads 1000,700] [--jobs 2]

``--cv``: leave-one-file-out cross-validation on the nine public recordings for each tuned
policy (grids and score: ``gestor/sim/tune.py``): the parameters are chosen on eight files and scored
on the ninth, each fold beside the perfect-foresight benchmark on that file; then the frontier
of every candidate (captured % against switches a day, by extra import), as a table and as
``docs/frontier-LOADS.png``.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.sim.report import versus  # noqa: E402
from gestor.sim.simulate import Prices, foresight, replay_settings_for, simulate  # noqa: E402

FILES = ["house-2022-06-11_13.csv", "house-2022-05-08_12.csv", "winter-2022-02-01_08.csv"]
POLICIES = ["time_to_consume", "hysteresis", "min_on_time", "steady_surplus"]


def cross_validation(loads_w: list[float], jobs: int) -> None:
    import copy

    from gestor.sim.tune import GRIDS, Sums, candidates, cross_validate, evaluate, frontier, score
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    raw["loads"] = [{**copy.deepcopy(raw["loads"][j]), "power_w": w} for j, w in enumerate(loads_w)]
    files = sorted((ROOT.parent / "shared" / "data").glob("*.csv"))
    datas = [ReplayData.load(replay_settings_for(f)) for f in files]
    names = [f.name for f in files]
    base = parse_settings(raw, str(example), example)
    period_s = base.billing.period_s
    label = "+".join(f"{w:.0f}" for w in loads_w)
    print(f"## loads {label} W: leave-one-file-out on {len(files)} recordings\n")
    bench, shipped = [], []
    for d in datas:
        r = simulate(d, base, Prices(base))
        shipped.append(Sums().add(r.totals, period_s))
        bench.append(Sums().add(foresight(d, base, Prices(base), base=r)[0].totals, period_s))
    print(f"The shipped settings ({base.policy.name}: "
          + ", ".join(f"{k} {getattr(base.policy, k):g}" for k in GRIDS.get(base.policy.name, {}))
          + ") on every file, beside the benchmark:\n")
    print("| file | captured % | switches/day | extra import Wh/day | benchmark: captured % / switches/day / import Wh/day |")
    print("|---|---|---|---|---|")
    for n, t, b in zip(names, shipped, bench):
        print(f"| {n} | {t.captured_pct:.1f} | {t.switches_per_day:.1f} | {t.import_wh_per_day:.0f} | "
              f"{b.captured_pct:.1f} / {b.switches_per_day:.1f} / {b.import_wh_per_day:.0f} |")
    tot = Sums()
    for t in shipped:
        tot.merge(t)
    print(f"| all nine | {tot.captured_pct:.1f} | {tot.switches_per_day:.1f} | {tot.import_wh_per_day:.0f} | |\n")
    print("| held-out file | policy | chosen on the other files | EUR over perfect foresight | captured % | "
          "switches/day | extra import Wh/day | benchmark: captured % / switches/day / import Wh/day |")
    print("|---|---|---|---|---|---|---|---|")
    points = []
    summary = {}
    for policy in GRIDS:
        cands = candidates(policy)

        def make(params: dict, policy: str = policy):
            return parse_settings({**raw, "policy": {**raw["policy"], "name": policy, **params}}, str(example), example)
        results = evaluate(datas, make, cands, jobs)
        folds = cross_validate(results, cands, names, lambda fi, d: names[fi], period_s)
        total = Sums()
        for fo, b in zip(folds, bench):
            t = fo.test
            t.over_eur = t.money_eur - b.money_eur
            total.merge(t)
            chosen = ", ".join(f"{k} {v:g}" for k, v in fo.chosen.items())
            print(f"| {fo.held_out} | {policy} | {chosen} | {t.over_eur:.3f} | {t.captured_pct:.1f} | "
                  f"{t.switches_per_day:.1f} | "
                  f"{t.import_wh_per_day:.0f} | {b.captured_pct:.1f} / {b.switches_per_day:.1f} / {b.import_wh_per_day:.0f} |")
        summary[policy] = total
        for ci, c in enumerate(cands):
            a = Sums()
            for days in results[ci]:
                for t in days.values():
                    a.add(t, period_s)
            points.append((a.switches_per_day, a.captured_pct, (policy, c, a.import_wh_per_day, score(a))))
    ball = Sums()
    for b in bench:
        ball.merge(b)
    print("\nAll folds together (each file scored with the parameters chosen without it):\n")
    print("| policy | EUR over perfect foresight (per day) | captured % | switches/day | extra import Wh/day |")
    print("|---|---|---|---|---|")
    for policy, t in summary.items():
        print(f"| {policy} | {t.over_eur:.3f} ({t.over_eur / t.days:.4f}) | {t.captured_pct:.1f} | "
              f"{t.switches_per_day:.1f} | {t.import_wh_per_day:.0f} |")
    print(f"| perfect foresight | 0 | {ball.captured_pct:.1f} | {ball.switches_per_day:.1f} | "
          f"{ball.import_wh_per_day:.0f} |")
    print("\nFrontier of every candidate on all nine files (in-sample): the points no other beats on both capture "
          "and switches, at each cap on extra import:\n")
    print("| extra import cap, Wh/day | switches/day | captured % | import Wh/day | policy and parameters |")
    print("|---|---|---|---|---|")
    for cap in (20, 50, 100, math.inf):
        for sw, cp, (policy, c, imp, _) in frontier([p for p in points if p[2][2] <= cap]):
            params = ", ".join(f"{k} {v:g}" for k, v in c.items())
            print(f"| {cap:g} | {sw:.1f} | {cp:.1f} | {imp:.0f} | {policy}: {params} |")
    plot_frontier(points, ball, ROOT / "docs" / f"frontier-{label}.png", label)


def ideas(loads_w: list[float], jobs: int) -> None:
    """What each lever buys: the shipped steady_surplus, then each of its levers undone, on all
    nine files (in-sample: these are the files the defaults were chosen on)."""
    import copy

    from gestor.sim.tune import Sums, evaluate
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    raw["loads"] = [{**copy.deepcopy(raw["loads"][j]), "power_w": w} for j, w in enumerate(loads_w)]
    datas = [ReplayData.load(replay_settings_for(f)) for f in sorted((ROOT.parent / "shared" / "data").glob("*.csv"))]
    variants = [("shipped steady_surplus", {}), ("without the carry (carry_wh 0)", {"carry_wh": 0}),
                ("without the doubt (doubt 0)", {"doubt": 0}), ("margin 5 Wh (session 2's)", {"margin_wh": 5}),
                ("a 600 s median", {"window_s": 600}),
                ("time_to_consume (instant surplus)", {"name": "time_to_consume"})]

    def make(params: dict):
        return parse_settings({**raw, "policy": {**raw["policy"], **params}}, str(example), example)
    results = evaluate(datas, make, [v for _, v in variants], jobs)
    print("| variant | captured % | switches/day | extra import Wh/day |")
    print("|---|---|---|---|")
    for (name, _), per_file in zip(variants, results):
        t = Sums()
        for days in per_file:
            for d in days.values():
                t.add(d, 3600)
        print(f"| {name} | {t.captured_pct:.1f} | {t.switches_per_day:.1f} | {t.import_wh_per_day:.0f} |")


def plot_frontier(points, bench, out: Path, label: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    markers = {"time_to_consume": "o", "steady_surplus": "s"}
    for policy, m in markers.items():
        pts = [p for p in points if p[2][0] == policy]
        sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=[min(p[2][2], 150) for p in pts], cmap="viridis_r",
                        marker=m, vmin=0, vmax=150, label=policy, edgecolors="black", linewidths=0.3)
    ax.scatter([bench.switches_per_day], [bench.captured_pct], marker="*", s=250, color="tab:red",
               label=f"perfect foresight ({bench.import_wh_per_day:.0f} Wh/day)")
    ax.axvline(20, color="grey", ls=":", lw=0.8)
    ax.axhline(99, color="grey", ls=":", lw=0.8)
    fig.colorbar(sc, ax=ax, label="extra import, Wh/day (150 = 150 or more)")
    ax.set_xlabel("switches per day")
    ax.set_ylabel("captured, % of the bound")
    ax.set_title(f"Every candidate on the nine public recordings, loads {label} W (goal: left of 20, above 99, yellow)",
                 fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"\nwrote {out.relative_to(ROOT)}")


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--cv", action="store_true")
    ap.add_argument("--ideas", action="store_true", help="what each lever of steady_surplus buys")
    ap.add_argument("--loads", default="1000,700")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    if a.cv:
        return cross_validation([float(x) for x in a.loads.split(",")], a.jobs)
    if a.ideas:
        return ideas([float(x) for x in a.loads.split(",")], a.jobs)
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    print("| file | policy | EUR over perfect foresight | captured % of bound | switches/day | extra import Wh | "
          "% of the benchmark's capture | switches × the benchmark's | exported kWh with / without | "
          "EUR with / without (saved) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f in FILES:
        data = ReplayData.load(replay_settings_for(ROOT.parent / "shared" / "data" / f))
        rows = []
        for name in POLICIES:
            s = parse_settings({**raw, "policy": {**raw["policy"], "name": name}}, str(example), example)
            r = simulate(data, s, Prices(s))
            if not rows:  # the benchmark does not depend on the policy
                bench = foresight(data, s, Prices(s), base=r)[0].totals
            rows.append((name, r.totals))
        for name, t in rows + [("perfect foresight", bench)]:
            v = versus(t, bench)
            days = t.periods / (24 * 3600 / s.billing.period_s)
            print(f"| {f} | {name} | {t.money_eur - bench.money_eur:.3f} | {t.captured_pct:.1f} | "
                  f"{t.switches / days:.1f} | {t.extra_import_wh:.0f} | "
                  f"{v['captured_pct_of_benchmark']:.1f} | {v['switches_x_benchmark']:.1f} | "
                  f"{t.exported_wh / 1000:.2f} / {t.exported_without_wh / 1000:.2f} | "
                  f"{t.cost_eur:.2f} / {t.cost_without_eur:.2f} ({t.cost_without_eur - t.cost_eur:.2f}) |")


if __name__ == "__main__":
    main()
