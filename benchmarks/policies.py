"""Every policy on every recorded file: captured surplus (% of the bound), switches per day,
extra import, cost. The table in the README and in the issue notes comes from here.

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
from gestor.simulate import Prices, replay_settings_for, simulate  # noqa: E402

FILES = ["house-2022-06-11_13.csv", "house-2022-05-08_12.csv", "winter-2022-02-01_08.csv"]
POLICIES = ["time_to_consume", "hysteresis", "min_on_time", "steady_surplus"]


def main() -> None:
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    print("| file | policy | captured % of bound | switches/day | extra import Wh | exported kWh with / without | EUR with / without (saved) |")
    print("|---|---|---|---|---|---|---|")
    for f in FILES:
        data = ReplayData.load(replay_settings_for(ROOT.parent / "shared" / "data" / f))
        for name in POLICIES:
            r2 = {**raw, "policy": {**raw["policy"], "name": name}}
            s = parse_settings(r2, str(example), example)
            t = simulate(data, s, Prices(s)).totals
            days = t.periods / (24 * 3600 / s.billing.period_s)
            print(f"| {f} | {name} | {t.captured_pct:.1f} | {t.switches / days:.1f} | {t.extra_import_wh:.0f} | "
                  f"{t.exported_wh / 1000:.2f} / {t.exported_without_wh / 1000:.2f} | "
                  f"{t.cost_eur:.2f} / {t.cost_without_eur:.2f} ({t.cost_without_eur - t.cost_eur:.2f}) |")


if __name__ == "__main__":
    main()
