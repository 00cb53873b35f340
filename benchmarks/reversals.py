"""A battery's reversals (charge <-> discharge) and its periods' ends, by ``gestor simulate``, on
the nine public recordings (issue 32 item 6): the shipped settings (loads 1000 + 700 W,
steady_surplus) with a simulated 5 kWh / 2.5 kW battery after them (90 % round trip, SoC 10-100 %
from 50 %, target 0, reserve 0, deadband 50 W), for each ``min_reversal_s`` given.

    .venv/bin/python benchmarks/reversals.py [--min-reversal-s 0,60] [--jobs 2]

Per recording: reversals per hour (a setpoint beyond the 50 W deadband of the other sign than
the last one beyond it: :func:`gestor.core.setpoint.direction`), the share of the periods with
room (the battery could have ended the period at 0 Wh knowing it, its imbalance being the
period's balance with the loads and without the battery: :func:`gestor.sim.models.had_room`)
that ended within ±10 Wh, and EUR (simulate's cost with gestor, fixed 2.0TD prices). A run
without ``min_reversal_s`` in the settings (older code) is labelled ``-``.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.core.devices import Battery  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.sim.models import had_room  # noqa: E402
from gestor.sim.simulate import Prices, replay_settings_for, simulate  # noqa: E402

DEADBAND_W = 50.0
BATTERY = {"driver": "simulated", "kind": "battery", "capacity_wh": 5000, "soc_pct": 50, "max_charge_w": 2500,
           "max_discharge_w": 2500, "min_soc_pct": 10, "max_soc_pct": 100, "efficiency": 0.9}
MODEL = Battery(2500.0, 2500.0, 5000.0, 10.0, 100.0, 0.9)


def reversals(log: list, deadband_w: float = DEADBAND_W) -> int:
    """Sign changes beyond ``deadband_w`` in a setpoint log ((when, device, W) at each change)."""
    try:
        from gestor.core.setpoint import direction
    except ImportError:  # the code before the rule
        def direction(w: float, band: float) -> int:
            return 1 if w > band else -1 if w < -band else 0
    n, last = 0, 0
    for _, _, w in log:
        d = direction(w, deadband_w)
        if d != 0:
            n += last != 0 and d != last
            last = d
    return n


def one(job: tuple[Path, float | None]) -> dict:
    path, min_rev = job
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    dev = {"name": "battery", "device": BATTERY, "reserve_wh_per_h": 0, "deadband_w": DEADBAND_W}
    if min_rev is not None:
        dev["min_reversal_s"] = min_rev
    raw["setpoints"] = [dev]
    s = parse_settings(raw, str(example), example)
    data = ReplayData.load(replay_settings_for(path))
    r = simulate(data, s, Prices(s))
    hours = (data.t[-1] - data.t[0]) / 3600.0
    bp = r.devices[0].periods
    room = near = 0
    for p in r.periods:
        b = bp.get(p.start.timestamp())
        if b is None:
            continue
        q = dataclasses.replace(p, balance_without_wh=p.balance_wh + p.devices_wh)  # the loads on, no battery
        if had_room(q, b, MODEL):
            room += 1
            near += abs(p.balance_wh) <= 10.0
    return dict(name=path.name, min_rev=min_rev, hours=hours, rev=reversals(r.setpoint_log), room=room, near=near,
                eur=r.totals.cost_eur, eur_without=r.totals.cost_without_eur)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-reversal-s", default="-", help="comma-separated values; '-' leaves the key out")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    a = ap.parse_args()
    values = [None if v == "-" else float(v) for v in a.min_reversal_s.split(",")]
    files = sorted(Path(a.data).glob("*.csv"))
    jobs = [(f, v) for v in values for f in files]
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        rows = list(pool.map(one, jobs))
    print("| min_reversal_s | file | reversals/h | periods with room: within ±10 Wh | EUR with (without) |")
    print("|---|---|---|---|---|")
    for v in values:
        sub = [r for r in rows if r["min_rev"] == v]
        for r in sub:
            print(f"| {'-' if v is None else f'{v:g}'} | {r['name']} | {r['rev'] / r['hours']:.1f} | "
                  f"{r['near']}/{r['room']} = {100 * r['near'] / max(r['room'], 1):.1f} % | "
                  f"{r['eur']:.2f} ({r['eur_without']:.2f}) |")
        h = sum(r["hours"] for r in sub)
        room, near = sum(r["room"] for r in sub), sum(r["near"] for r in sub)
        print(f"| {'-' if v is None else f'{v:g}'} | all nine | {sum(r['rev'] for r in sub) / h:.1f} | "
              f"{near}/{room} = {100 * near / max(room, 1):.1f} % | {sum(r['eur'] for r in sub):.2f} "
              f"({sum(r['eur_without'] for r in sub):.2f}) |")


if __name__ == "__main__":
    main()
