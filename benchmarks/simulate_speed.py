"""Samples per second of ``gestor simulate`` for each policy, on the three recorded files
concatenated and on a synthetic year of 10 s samples (3.15 M rows) built by repeating them;
peak RSS. Goal (issue 5): a year in under 20 s on a 2-core machine.

    .venv/bin/python benchmarks/simulate_speed.py [--policies time_to_consume,steady_surplus] [--no-year]
"""
from __future__ import annotations

import argparse
import resource
from array import array
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.simulate import Prices, replay_settings_for, simulate  # noqa: E402

FILES = ["house-2022-06-11_13.csv", "house-2022-05-08_12.csv", "winter-2022-02-01_08.csv"]


def concatenated(n_rows: int | None = None) -> ReplayData:
    """The three files one after the other (each shifted to start 10 s after the previous one
    ends), repeated until ``n_rows`` samples."""
    parts = [ReplayData.load(replay_settings_for(ROOT.parent / "shared" / "data" / f)) for f in FILES]
    t, p, c, n = array("d"), array("d"), array("d"), array("d")  # as ReplayData.load keeps them
    t_next = parts[0].t[0]
    while True:
        for d in parts:
            shift = t_next - d.t[0]
            t.extend(x + shift for x in d.t)
            p.extend(d.production_w or [0.0] * len(d.t))
            c.extend(d.consumption_w)
            n.extend(d.net_w)
            t_next = t[-1] + 10.0
            if n_rows is not None and len(t) >= n_rows:
                return ReplayData(Path("year"), t[:n_rows], p[:n_rows], c[:n_rows], n[:n_rows])
        if n_rows is None:
            return ReplayData(Path("three-files"), t, p, c, n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", default="time_to_consume,hysteresis,min_on_time,steady_surplus")
    ap.add_argument("--no-year", action="store_true")
    args = ap.parse_args()
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    datasets = [concatenated()]
    if not args.no_year:
        datasets.append(concatenated(3_153_600))
    for data in datasets:
        days = (data.t[-1] - data.t[0]) / 86400
        for name in args.policies.split(","):
            s = parse_settings({**raw, "policy": {**raw["policy"], "name": name}}, str(example), example)
            a = time.perf_counter()
            r = simulate(data, s, Prices(s))
            dt = time.perf_counter() - a
            print(f"{data.path.name:12s} {len(data.t):>9,} samples ({days:.0f} days)  {name:16s} "
                  f"{dt:7.2f} s  {len(data.t) / dt:>9,.0f} samples/s  ({r.totals.switches} switches)", flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
