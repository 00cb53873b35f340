"""Every policy on every recorded file: captured surplus (% of the bound), switches per day,
extra import, cost, and the same for the perfect-foresight benchmark (the best any controller
could do: zero extra import, fewest switches), with each policy's capture as % of the
benchmark's and its switches as a multiple of the benchmark's. The table in the README and in
the issue notes comes from here.

    .venv/bin/python benchmarks/policies.py
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.simreport import versus  # noqa: E402
from gestor.simulate import Prices, foresight, replay_settings_for, simulate  # noqa: E402

FILES = ["house-2022-06-11_13.csv", "house-2022-05-08_12.csv", "winter-2022-02-01_08.csv"]
POLICIES = ["time_to_consume", "hysteresis", "min_on_time", "steady_surplus"]


def main() -> None:
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    print("| file | policy | captured % of bound | switches/day | extra import Wh | "
          "% of the benchmark's capture | switches × the benchmark's | exported kWh with / without | "
          "EUR with / without (saved) |")
    print("|---|---|---|---|---|---|---|---|---|")
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
            print(f"| {f} | {name} | {t.captured_pct:.1f} | {t.switches / days:.1f} | {t.extra_import_wh:.0f} | "
                  f"{v['captured_pct_of_benchmark']:.1f} | {v['switches_x_benchmark']:.1f} | "
                  f"{t.exported_wh / 1000:.2f} / {t.exported_without_wh / 1000:.2f} | "
                  f"{t.cost_eur:.2f} / {t.cost_without_eur:.2f} ({t.cost_without_eur - t.cost_eur:.2f}) |")


if __name__ == "__main__":
    main()
