"""The nowcast of the rest of the period (issue 26) on every public recording: one modulating
heater (0..2000 W, the setpoint law of ``gestor/core/setpoint.py``) given the surplus expected
over the rest of the period (``gestor/core/nowcast.py``: the recent clear-sky index times the
installation's clear-sky production ahead, less the present consumption), beside the reserve law
alone. Captured surplus (% of the bound) and extra import (Wh a day), leave-one-file-out.

    .venv/bin/python benchmarks/nowcast.py [--jobs 2] [--window 600]

The clear-sky model (``gestor/forecast/pvmodel.py``) is fitted causally: for each local day of a
recording, on that recording's days before it only; on its first day (no past), on the other
``house-*`` recordings (the same house; some are later in the year: the only other data there is)
and, for the winter file (another site, alone), no model on the days with no clear past day: the
law runs on the present surplus there. The nowcast's parameters (mode: min of nowcast and present
surplus, or the nowcast alone; ``index_low``, the low quantile of the index ratio; the reserve)
are chosen on the other eight recordings by euros (``gestor.sim.tune.score``: the fewest EUR a
day, the heat worth the P3 price); the reserve law alone is chosen the same way. The heater runs
in ``gestor simulate`` (a house with that one device; the nowcast is its ``nowcast`` hook).

Measured through gestor simulate (issue 33; this machine, 2 jobs, ~6 min): leave-one-file-out
the nowcast (chosen: min, index_low 1, reserve 100) costs -0.2409 EUR a day on all nine (98.9 %,
88 Wh a day of extra import) against the reserve law's -0.2425 (reserve 100 on eight folds:
99.6 %, 100 Wh a day): no gain in money either; in-sample at reserve 0 it cuts the extra import
from 150 to 107 Wh a day for 0.7 points of capture. Before issue 33 (the per-device replay, a
setpoint two cycles late, chosen by capture): 97.2 % / 55 Wh a day against 97.2 % / 53; with no
reserve, the extra import in the periods starting at 17:00-20:00 fell by 40 %; two thirds of the
extra import are at 09:00-10:00 and 12:00-14:00 (clouds and the house's own consumption), which a
clear-sky nowcast cannot see.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from common import recordings, shipped_settings  # noqa: E402
from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.sim.devices import one_device_house  # noqa: E402
from gestor.sim.simulate import Prices, replay_settings_for, simulate  # noqa: E402
from gestor.sim.tune import Sums, score  # noqa: E402

RESERVES = [0, 50, 100, 200, 300, 400, 500]            # Wh per hour left: the reserve law alone
NC_RESERVES = [0, 100, 200, 300]                       # with the nowcast
INDEX_LOWS = [1.0, 0.9, 0.8]
MODES = ["min", "replace"]
_WORK: tuple | None = None  # (files, settings, args, profiles): inherited by the forked workers
_DATA: dict = {}            # a worker's recordings, loaded once


def _load(fi: int) -> ReplayData:
    files = _WORK[0]  # type: ignore[index]
    if fi not in _DATA:
        _DATA[fi] = ReplayData.load(replay_settings_for(files[fi]))
    return _DATA[fi]


def _fit(fi: int):
    """The causal clear-sky profile of file ``fi`` and where each day's model came from."""
    from gestor.sim import nowcast as nc
    import numpy as np
    files, s, a, _ = _WORK  # type: ignore[misc]
    data = ReplayData.load(replay_settings_for(files[fi]))
    fallback = None
    if files[fi].name.startswith("house-"):
        ts, ys = [], []
        for fj, f in enumerate(files):
            if fj != fi and f.name.startswith("house-"):
                d = ReplayData.load(replay_settings_for(f))
                ts.append(np.asarray(d.t))
                ys.append(np.asarray(d.production_w))
        fallback = (np.concatenate(ts), np.concatenate(ys))
    params = nc.causal_params(data.t, data.production_w, s.tz.key if hasattr(s.tz, "key") else "Europe/Madrid",
                              fallback=fallback)
    prof = nc.causal_profile(data.t, params)
    src = {str(d): how for d, (_, how) in params.items()}
    return fi, prof, src


def _one(task: tuple) -> tuple:
    from gestor.sim import nowcast as nc
    fi, key = task
    files, s, a, profiles = _WORK  # type: ignore[misc]
    data = _load(fi)
    reserve = key[1] if key[0] == "reserve" else key[3]
    h = one_device_house(s, "heater", {"kind": "heater", "max_charge_w": 2000.0}, reserve_wh_per_h=reserve,
                         deadband_w=0.0)
    if key[0] == "reserve":
        r = simulate(data, h, Prices(h))
    else:
        _, mode, low, _ = key
        now = nc.ReplayNowcast(data.t, data.production_w, profiles[fi], window_s=a.window, index_low=low, mode=mode)
        r = simulate(data, h, Prices(h), nowcast=now)
    return fi, key, Sums().add(r.totals, s.billing.period_s)


def _cell(t: Sums) -> str:
    return f"{t.eur_per_day:.4f} / {t.captured_pct:.1f} / {t.import_wh_per_day:.0f}"


def _sum(parts) -> Sums:
    t = Sums()
    for p in parts:
        t.merge(p)
    return t


def main() -> None:
    global _WORK
    import argparse
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--window", type=float, default=600.0, help="s of production the clear-sky index is taken over")
    a = ap.parse_args()
    s = shipped_settings()
    files = recordings()
    ctx = multiprocessing.get_context("fork")
    _WORK = (files, s, a, None)
    with ProcessPoolExecutor(a.jobs, mp_context=ctx) as pool:
        fits = list(pool.map(_fit, range(len(files))))
    profiles = {fi: prof for fi, prof, _ in fits}
    _WORK = (files, s, a, profiles)
    keys = [("reserve", r) for r in RESERVES] + [("nowcast", m, q, r) for m in MODES for q in INDEX_LOWS
                                                  for r in NC_RESERVES]
    tasks = [(fi, k) for fi in range(len(files)) for k in keys]  # by file: a worker keeps its file loaded
    with ProcessPoolExecutor(a.jobs, mp_context=ctx) as pool:
        res = {(fi, k): t for fi, k, t in pool.map(_one, tasks, chunksize=len(keys))}
    names = [f.name for f in files]
    print(f"## one modulating heater 0..2000 W through gestor simulate; nowcast index over {a.window:.0f} s; "
          f"parameters chosen leave-one-file-out by euros (the fewest EUR/day)\n")
    print("Where each day's clear-sky model came from (past: the file's earlier days; fallback: the other "
          "house files; none: no nowcast that day):\n")
    for fi, _, src in fits:
        print(f"- {names[fi]}: " + ", ".join(f"{d[5:]} {h}" for d, h in sorted(src.items())))
    print("\nEach cell: EUR a day (the heat worth the P3 price) / captured % / extra import Wh/day.\n")
    print("\n| held-out file | reserve 0 | reserve law, chosen: reserve / cell | "
          "nowcast, chosen: mode, index_low, reserve / cell |")
    print("|---|---|---|---|")
    tot = {"zero": Sums(), "res": Sums(), "nc": Sums()}
    res_keys = [("reserve", r) for r in RESERVES]
    nc_keys = [k for k in keys if k[0] == "nowcast"]
    for fi, n in enumerate(names):
        others = [fj for fj in range(len(names)) if fj != fi]
        best_r = max(res_keys, key=lambda k: score(_sum(res[(fj, k)] for fj in others)))
        best_n = max(nc_keys, key=lambda k: score(_sum(res[(fj, k)] for fj in others)))
        z, r, c = res[(fi, ("reserve", 0))], res[(fi, best_r)], res[(fi, best_n)]
        tot["zero"].merge(z)
        tot["res"].merge(r)
        tot["nc"].merge(c)
        print(f"| {n} | {_cell(z)} | {best_r[1]} / {_cell(r)} | {best_n[1]}, {best_n[2]:g}, {best_n[3]} / {_cell(c)} |")
    print(f"| all nine | {_cell(tot['zero'])} | {_cell(tot['res'])} | {_cell(tot['nc'])} |\n")
    print("Every setting on all nine (in-sample): captured % / extra import Wh/day\n")
    print("| reserve Wh/h | reserve law | " + " | ".join(f"nowcast {m}, index_low {q:g}" for m in MODES
                                                     for q in INDEX_LOWS) + " |")
    print("|---" * (2 + len(MODES) * len(INDEX_LOWS)) + "|")
    for r in RESERVES:
        row = [f"{r}"]
        t = _sum(res[(fi, ("reserve", r))] for fi in range(len(names)))
        row.append(f"{t.captured_pct:.1f} / {t.import_wh_per_day:.0f}")
        for m in MODES:
            for q in INDEX_LOWS:
                if r in NC_RESERVES:
                    t = _sum(res[(fi, ("nowcast", m, q, r))] for fi in range(len(names)))
                    row.append(f"{t.captured_pct:.1f} / {t.import_wh_per_day:.0f}")
                else:
                    row.append("")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
