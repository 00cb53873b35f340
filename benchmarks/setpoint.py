"""One modulating heater (0..2000 W, the setpoint law of ``gestor/core/setpoint.py``) in place of
the on/off loads, on every public recording, played by ``gestor simulate`` (a house with that one
device, :func:`gestor.sim.devices.one_device_house`): EUR against perfect foresight (the heater's
LP, :mod:`gestor.sim.money`), captured surplus (% of the bound) and extra import (Wh a day) with no
reserve and with the reserve chosen leave-one-file-out (chosen on the other eight recordings,
scored on the ninth), beside the shipped on/off policy (config/settings.yaml, loads 1000 + 700 W,
against its own perfect foresight, the DP) on the same file. Issues 26 and 33.

    .venv/bin/python benchmarks/setpoint.py [--max-w 2000] [--deadband 0] [--jobs 2]

The reserve is chosen by euros: the least EUR over perfect foresight on the other files
(:func:`gestor.sim.money.versus_foresight`: import × its price less export × the surplus price,
less the heat worth the P3 price). Each device is scored against its own bound (min(surplus, its
power × period)), as ``gestor simulate`` does; "|end| Wh" is the mean size of a period's final
balance when the device had surplus to work with (the bound > 0), the number the control tries
to bring to zero; "changes/day" its setpoint changes (a setpoint change is not a relay's switch).
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
from gestor.sim.money import versus_foresight  # noqa: E402
from gestor.sim.simulate import Prices, SimResult, replay_settings_for, simulate  # noqa: E402
from gestor.sim.tune import Sums  # noqa: E402

RESERVES = [0, 50, 100, 150, 200, 250, 300, 400, 500]  # Wh per hour left
_WORK: tuple | None = None  # (files, settings, args): inherited by the forked workers


def end_wh(r: SimResult) -> float:
    ps = [p for p in r.periods if p.bound_wh > 0]
    return sum(abs(p.balance_wh) for p in ps) / len(ps) if ps else 0.0


def _one(task: tuple[int, float | None]) -> tuple[int, float | None, Sums, float]:
    fi, reserve = task
    files, s, a = _WORK  # type: ignore[misc]
    data = ReplayData.load(replay_settings_for(files[fi]))
    if reserve is not None:
        s = one_device_house(s, "heater", {"kind": "heater", "max_charge_w": a.max_w}, reserve_wh_per_h=reserve,
                             deadband_w=a.deadband)
    r = simulate(data, s, Prices(s))
    t = Sums().add(r.totals, s.billing.period_s)
    t.over_eur = versus_foresight(data, s, Prices(s), r).over_eur
    t.switches += sum(d.changes for d in r.devices)
    return fi, reserve, t, end_wh(r)


def main() -> None:
    global _WORK
    import argparse
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-w", type=float, default=2000.0)
    ap.add_argument("--deadband", type=float, default=0.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    s = shipped_settings()
    files = recordings()
    _WORK = (files, s, a)
    tasks = [(fi, r) for fi in range(len(files)) for r in [None, *RESERVES]]
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        res = {(fi, r): (t, e) for fi, r, t, e in pool.map(_one, tasks)}
    names = [f.name for f in files]
    print(f"## one modulating heater 0..{a.max_w:.0f} W, deadband {a.deadband:g} W, through gestor simulate, "
          f"beside the shipped on/off {s.policy.name} ({' + '.join(f'{ld.power_w:.0f}' for ld in s.loads)} W)\n")
    print("Each cell: EUR over perfect foresight / captured % / extra import Wh/day / \\|end\\| Wh.\n")
    print("| held-out file | on/off | reserve 0 | chosen reserve Wh/h | chosen |")
    print("|---|---|---|---|---|")
    tot = {"onoff": Sums(), "zero": Sums(), "cv": Sums()}
    for fi, n in enumerate(names):
        best = min(RESERVES, key=lambda r: (_sum(res[(fj, r)][0] for fj in range(len(names)) if fj != fi).over_eur, r))
        row = []
        for key, r in (("onoff", None), ("zero", 0), ("cv", best)):
            t, e = res[(fi, r)]
            tot[key].merge(t)
            row.append(f"{t.over_eur:.3f} / {t.captured_pct:.1f} / {t.import_wh_per_day:.0f} / {e:.0f}")
        print(f"| {n} | {row[0]} | {row[1]} | {best} | {row[2]} |")
    print("| all nine | " + " | ".join(f"{tot[k].over_eur:.3f} / {tot[k].captured_pct:.1f} / "
                                      f"{tot[k].import_wh_per_day:.0f}" + (" | " if k == "zero" else "")
                                      for k in ("onoff", "zero", "cv")) + " |\n")
    print("Every reserve on all nine (in-sample):\n")
    print("| reserve Wh per hour left | EUR over perfect foresight | EUR over it per day | captured % | "
          "extra import Wh/day | setpoint changes/day |")
    print("|---|---|---|---|---|---|")
    for r in RESERVES:
        t = _sum(res[(fi, r)][0] for fi in range(len(names)))
        print(f"| {r} | {t.over_eur:.3f} | {t.over_eur / t.days:.4f} | {t.captured_pct:.1f} | "
              f"{t.import_wh_per_day:.0f} | {t.switches_per_day:.0f} |")
    t = tot["onoff"]
    print(f"| on/off (shipped) | {t.over_eur:.3f} | {t.over_eur / t.days:.4f} | {t.captured_pct:.1f} | "
          f"{t.import_wh_per_day:.0f} | {t.switches_per_day:.1f} |")


def _sum(parts) -> Sums:
    t = Sums()
    for p in parts:
        t.merge(p)
    return t


if __name__ == "__main__":
    main()
