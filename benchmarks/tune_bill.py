"""Does scoring ``gestor tune``'s candidates by the bill (issue 35, ``gestor tune --bill``:
:mod:`gestor.sim.tune_bill`, the compensation capped at each month's energy term, with taxes)
change the chosen parameters and the euros against the uncapped money
(:func:`gestor.sim.books.money_eur`, what tune scores by default)? On the nine public
recordings (shared/data), leave-one-file-out as ``benchmarks/policies.py --cv``: the candidates
are chosen on eight files, by money and by the bill, and both choices are scored on the ninth.

Two houses, the example settings (config/settings.yaml: 2.0TD prices of ``tariff:``, 4.6 kW):

* ``loads``: the shipped on/off loads and policy (steady_surplus), its grid
  (:data:`gestor.sim.tune.GRIDS`);
* ``heater``: no on/off load, one simulated modulating heater of HEATER_W (as
  ``benchmarks/bill_cap.py``), its reserve grid (:data:`gestor.sim.tune.DEVICE_GRID`).

Prints one row per held-out file (the two choices; the held-out bill EUR and money EUR of each;
whether a month of that file reaches the cap with the shipped choice) and the sums.

    PYTHONPATH=src python benchmarks/tune_bill.py [loads|heater] [--heater-w 1000] [--jobs 1]
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.core.devices import Modulating  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.sim.billing import contract_of  # noqa: E402
from gestor.sim.devices import one_device_house, simulated_device  # noqa: E402
from gestor.sim.inputs import replay_settings_for  # noqa: E402
from gestor.sim.tune import DEVICE_GRID, GRIDS, candidates, cross_validate, evaluate_bill, sums  # noqa: E402
from gestor.sim.tune_bill import bill_eur  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
EXAMPLE = ROOT / "config" / "settings.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("house", nargs="?", default="loads", choices=["loads", "heater"])
    ap.add_argument("--heater-w", type=float, default=1000.0)
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    raw = yaml.safe_load(EXAMPLE.read_text())
    base = parse_settings(raw, str(EXAMPLE), EXAMPLE)
    if a.house == "loads":
        policy = base.policy.name
        grid = GRIDS[policy]

        def make(params: dict):
            r = copy.deepcopy(raw)
            r["policy"].update(params)
            return parse_settings(r, str(EXAMPLE), EXAMPLE)
        what = f"shipped loads, {policy}"
    else:
        grid = DEVICE_GRID

        def make(params: dict):
            return one_device_house(base, "heater", simulated_device(Modulating(a.heater_w)), **params)
        what = f"one {a.heater_w:g} W heater, its reserve_wh_per_h"
    current = {k: getattr(base.policy, k) for k in grid} if a.house == "loads" else {"reserve_wh_per_h": 150}
    cands = [current] + [c for c in candidates("", grid) if c != current]
    files = sorted(DATA.glob("*.csv"))
    names = [f.name for f in files]
    datas = [ReplayData.load(replay_settings_for(f)) for f in files]
    period_s, contract = base.billing.period_s, contract_of(base)
    print(f"{what}: {len(cands)} candidates x {len(files)} recordings, leave-one-file-out", file=sys.stderr)
    results, euros = evaluate_bill(datas, make, cands, a.jobs)
    group = lambda fi, d: names[fi]  # noqa: E731
    by_money = cross_validate(results, cands, names, group, period_s)
    by_bill = cross_validate(results, cands, names, group, period_s, euros, contract)
    print(f"## {what}: chosen by money / by the bill on the other eight files, held out on each\n")
    print("| held out | capped month | chosen by money | chosen by the bill | bill EUR: money's / bill's choice "
          "| money EUR: money's / bill's choice |")
    print("|---|---|---|---|---|---|")
    tot = [0.0] * 4
    differ = 0
    for fi, (fm, fb) in enumerate(zip(by_money, by_bill)):
        cm, cb = cands.index(fm.chosen), cands.index(fb.chosen)
        held = bill_eur(euros, contract, lambda i, d, f=fi: i == f)
        mm = sums(results[cm][fi], period_s).money_eur
        mb = sums(results[cb][fi], period_s).money_eur
        months: dict[str, list[float]] = {}
        for d, e in euros[0][fi].items():
            m = months.setdefault(d[:7], [0.0, 0.0])
            m[0] += e.energy_eur
            m[1] += e.compensation_eur
        capped = any(c > e for e, c in months.values())
        differ += cm != cb
        for j, v in enumerate((held[cm], held[cb], mm, mb)):
            tot[j] += v
        fmt = lambda c: ", ".join(f"{k} {v:g}" for k, v in c.items())  # noqa: E731
        print(f"| {names[fi]} | {'yes' if capped else 'no'} | {fmt(fm.chosen)} | {fmt(fb.chosen)} | "
              f"{held[cm]:.3f} / {held[cb]:.3f} | {mm:.3f} / {mb:.3f} |")
    print(f"| **sum** | | | choice differs on {differ} of {len(names)} | {tot[0]:.3f} / {tot[1]:.3f} "
          f"({tot[1] - tot[0]:+.3f}) | {tot[2]:.3f} / {tot[3]:.3f} ({tot[3] - tot[2]:+.3f}) |")


if __name__ == "__main__":
    main()
