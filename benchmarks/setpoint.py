"""One modulating heater (0..2000 W, the setpoint law of ``gestor/core/setpoint.py``) in place of
the on/off loads, on every public recording: captured surplus (% of the bound) and extra import
(Wh a day) with no reserve and with the reserve chosen leave-one-file-out (chosen on the other
eight recordings, scored on the ninth), beside the shipped on/off policy (config/settings.yaml,
loads 1000 + 700 W) on the same file. Issue 26 section 1.

    .venv/bin/python benchmarks/setpoint.py [--max-w 2000] [--delay 1] [--deadband 0] [--jobs 2]

The reserve is chosen by the score of ``gestor/sim/tune.py`` without its switches term (a
setpoint change is not a relay's switch): the captured %, less 0.1 % for every Wh a day of extra
import over 20. Each device is scored against its own bound (min(surplus, its power × period)),
as ``gestor simulate`` does; "|end| Wh" is the mean size of a period's final balance when the
device had surplus to work with (the bound > 0), the number the control tries to bring to zero.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.sim.setpoint import simulate_setpoint  # noqa: E402
from gestor.sim.simulate import Prices, SimResult, replay_settings_for, simulate  # noqa: E402
from gestor.sim.tune import GOAL_IMPORT_WH_PER_DAY, Sums  # noqa: E402

RESERVES = [0, 50, 100, 150, 200, 250, 300, 400, 500]  # Wh per hour left
_WORK: tuple | None = None  # (files, settings, args): inherited by the forked workers


def score(t: Sums) -> float:
    return t.captured_pct - 0.1 * max(0.0, t.import_wh_per_day - GOAL_IMPORT_WH_PER_DAY)


def end_wh(r: SimResult) -> float:
    ps = [p for p in r.periods if p.bound_wh > 0]
    return sum(abs(p.balance_wh) for p in ps) / len(ps) if ps else 0.0


def _one(task: tuple[int, float | None]) -> tuple[int, float | None, Sums, float]:
    fi, reserve = task
    files, s, a = _WORK  # type: ignore[misc]
    data = ReplayData.load(replay_settings_for(files[fi]))
    if reserve is None:
        r = simulate(data, s, Prices(s))
    else:
        r = simulate_setpoint(data, s, Prices(s), a.max_w, reserve, a.deadband, a.delay)
    return fi, reserve, Sums().add(r.totals, s.billing.period_s), end_wh(r)


def main() -> None:
    global _WORK
    import argparse
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-w", type=float, default=2000.0)
    ap.add_argument("--delay", type=int, default=1, help="cycles before a setpoint reaches the device")
    ap.add_argument("--deadband", type=float, default=0.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    example = ROOT / "config" / "settings.yaml"
    s = parse_settings(yaml.safe_load(example.read_text()), str(example), example)
    files = sorted((ROOT.parent / "shared" / "data").glob("*.csv"))
    if not files:
        files = sorted(Path("/tmp/shared/data").glob("*.csv"))
    _WORK = (files, s, a)
    tasks = [(fi, r) for fi in range(len(files)) for r in [None, *RESERVES]]
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        res = {(fi, r): (t, e) for fi, r, t, e in pool.map(_one, tasks)}
    names = [f.name for f in files]
    print(f"## one modulating heater 0..{a.max_w:.0f} W, delay {a.delay} cycle(s), deadband {a.deadband:g} W, "
          f"beside the shipped on/off {s.policy.name} ({' + '.join(f'{ld.power_w:.0f}' for ld in s.loads)} W)\n")
    print("| held-out file | on/off: captured % / extra import Wh/day / \\|end\\| Wh | "
          "reserve 0: captured % / import Wh/day / \\|end\\| Wh | chosen reserve Wh/h | "
          "chosen: captured % / import Wh/day / \\|end\\| Wh |")
    print("|---|---|---|---|---|")
    tot = {"onoff": Sums(), "zero": Sums(), "cv": Sums()}
    for fi, n in enumerate(names):
        best = max(RESERVES, key=lambda r: score(_sum(res[(fj, r)][0] for fj in range(len(names)) if fj != fi)))
        row = []
        for key, r in (("onoff", None), ("zero", 0), ("cv", best)):
            t, e = res[(fi, r)]
            tot[key].merge(t)
            row.append(f"{t.captured_pct:.1f} / {t.import_wh_per_day:.0f} / {e:.0f}")
        print(f"| {n} | {row[0]} | {row[1]} | {best} | {row[2]} |")
    print(f"| all nine | {tot['onoff'].captured_pct:.1f} / {tot['onoff'].import_wh_per_day:.0f} | "
          f"{tot['zero'].captured_pct:.1f} / {tot['zero'].import_wh_per_day:.0f} | | "
          f"{tot['cv'].captured_pct:.1f} / {tot['cv'].import_wh_per_day:.0f} |\n")
    print("Every reserve on all nine (in-sample):\n")
    print("| reserve Wh per hour left | captured % | extra import Wh/day |")
    print("|---|---|---|")
    for r in RESERVES:
        t = _sum(res[(fi, r)][0] for fi in range(len(names)))
        print(f"| {r} | {t.captured_pct:.1f} | {t.import_wh_per_day:.0f} |")


def _sum(parts) -> Sums:
    t = Sums()
    for p in parts:
        t.merge(p)
    return t


if __name__ == "__main__":
    main()
