"""A home battery and an EV charger driven by the setpoint law on every public recording, each in
a house with that one device played by ``gestor simulate`` (the daemons' timing and order: a
setpoint takes effect at the managing cycle that writes it, as with the simulated driver), beside
its perfect-foresight LP (gestor/sim/money.py, gestor/sim/lp.py); and the speed of a year with a
battery against a year with the on/off loads. Issues 26 and 33.

    .venv/bin/python benchmarks/battery.py [--jobs 2] [--no-speed]

Battery: 5 kWh, 2.5 kW both ways, 90 % round trip, SoC 10-100 %, starting at 50 %, target 0 Wh
per period (no reserve, deadband 0, no reversal wait).

* "room": a period in which the battery could have ended at 0 knowing the period's whole
  imbalance (``gestor.sim.models.had_room``): the period's surplus without it fits in what it
  may charge in the period and in the room above its SoC at the period's start, or its deficit in
  what it may discharge and in what is stored above 10 %. "within ±10 Wh": the share of those
  periods whose final balance is within 10 Wh of 0. The looser "not full / not empty" (the SoC at
  the period's start below 100 % when it had surplus, above 10 % when it had a deficit) is shown
  beside it.
* import Wh/day: the periods' imports (Σ max(-balance, 0)) per day, without → with the battery.
* EUR: Σ import × import price - export × surplus price (2.0TD prices of config/settings.yaml;
  no monthly cap on the compensation, as the LP's objective), without the battery, with it, and
  the LP with perfect foresight on the same periods, ending with at least the stored energy the
  causal run ended with.

EV charger: 6-16 A on one phase at 230 V (1.38-3.68 kW), surplus only (never from the grid),
connected 18:00-08:00 on weekdays and 10:00-20:00 at weekends, 10 kWh wanted per session: kWh
delivered of those wanted in the sessions that start within the file, the share of the surplus
bound captured, the extra import Wh/day (the setpoint's rounding down), and EUR over perfect
foresight (its LP: a heater limited to the connected hours and each session's Wh, the 6 A
minimum relaxed; the energy delivered worth the P3 price).

Speed: the year of ``benchmarks/simulate_speed.py`` (3.15 M samples), one process, the shipped
on/off policy against the battery; the goal is within 2x.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from common import recordings, shipped_settings  # noqa: E402
from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.core.devices import Battery, EvCharger  # noqa: E402
from gestor.sim.devices import one_device_house, simulated_device  # noqa: E402
from gestor.sim.lp import period_cost_eur  # noqa: E402
from gestor.sim.models import daily_sessions, had_room  # noqa: E402
from gestor.sim.money import versus_foresight  # noqa: E402
from gestor.sim.simulate import Prices, replay_settings_for, simulate  # noqa: E402

BATTERY = Battery(2500.0, 2500.0, 5000.0, 10.0, 100.0, 0.9)
SOC0 = 50.0
CHARGER = EvCharger(6, 16, 1, 230.0)
_WORK: tuple | None = None  # (settings, args): inherited by the forked workers


def battery_house(s):
    return one_device_house(s, "battery", simulated_device(BATTERY, SOC0), reserve_wh_per_h=0, deadband_w=0,
                            min_reversal_s=0)


def _one(path: Path) -> dict:
    s0, a = _WORK  # type: ignore[misc]
    data = ReplayData.load(replay_settings_for(path))
    s = battery_house(s0)
    r = simulate(data, s, Prices(s))
    b = r.devices[0]
    ps = r.periods
    days = (ps[-1].end - ps[0].start).total_seconds() / 86400.0
    room = near = loose = loose_near = 0
    for p in ps:
        bp = b.periods[p.start.timestamp()]
        ok = abs(p.balance_wh) <= 10.0
        if had_room(p, bp, BATTERY):
            room += 1
            near += ok
        w = p.balance_without_wh
        if (w > 0 and bp.soc_start_pct < BATTERY.max_soc_pct) or (w < 0 and bp.soc_start_pct > BATTERY.min_soc_pct) \
                or w == 0:
            loose += 1
            loose_near += ok
    imp, sur = [p.import_price for p in ps], [p.surplus_price for p in ps]
    v = versus_foresight(data, s, Prices(s), r)  # the LP ends with at least the run's final SoC
    first = datetime.fromtimestamp(data.t[0], s.tz).date()
    last = datetime.fromtimestamp(data.t[-1], s.tz).date()
    es = one_device_house(s0, "ev", simulated_device(CHARGER), reserve_wh_per_h=0, deadband_w=0)
    cars = {"ev": daily_sessions(first, last, s.tz, wanted_wh=10_000.0)}
    ev = simulate(data, es, Prices(es), ev_sessions=cars)
    ev_v = versus_foresight(data, es, Prices(es), ev, ev_sessions=cars)
    t0, t1 = data.t[0], data.t[-1]
    inside = [x for x in ev.devices[0].sessions if t0 <= x.arrive_s < t1]
    return dict(name=path.name, periods=len(ps), room=room, near=near, loose=loose, loose_near=loose_near,
                imp_without=r.totals.imported_without_wh / days, imp_with=r.totals.imported_wh / days,
                eur_without=period_cost_eur([p.balance_without_wh for p in ps], imp, sur),
                eur_with=v.money_eur, eur_lp=v.foresight_eur, changes=b.changes / days,
                soc_end=b.soc_end_pct, charged=b.charged_wh, losses=b.losses_wh,
                ev_delivered=sum(x.delivered_wh for x in inside), ev_wanted=sum(x.wanted_wh for x in inside),
                ev_sessions=len(inside), ev_captured=ev.totals.captured_pct,
                ev_extra_import=ev.totals.extra_import_wh / days, ev_over_eur=ev_v.over_eur,
                ev_changes=ev.devices[0].changes / days, days=days)


def speed(s) -> None:
    from simulate_speed import concatenated
    year = concatenated(3_153_600)
    days = (year.t[-1] - year.t[0]) / 86400
    print(f"\n## speed: a year of 10 s samples ({len(year.t):,} samples, {days:.0f} days), one process\n")
    a = time.perf_counter()
    simulate(year, s, Prices(s), jobs=1)
    onoff = time.perf_counter() - a
    a = time.perf_counter()
    hb = battery_house(s)
    b = simulate(year, hb, Prices(hb)).devices[0]
    bat = time.perf_counter() - a
    print("| run | s | samples/s |")
    print("|---|---|---|")
    print(f"| on/off {s.policy.name} ({' + '.join(f'{ld.power_w:.0f}' for ld in s.loads)} W) | {onoff:.2f} | "
          f"{len(year.t) / onoff:,.0f} |")
    print(f"| battery 5 kWh / 2.5 kW | {bat:.2f} | {len(year.t) / bat:,.0f} |")
    print(f"\nbattery / on-off: {bat / onoff:.2f}x (goal: within 2x); the battery's year: "
          f"{b.charged_wh / 1000:.0f} kWh charged, final SoC {b.soc_end_pct:.1f} %")


def main() -> None:
    global _WORK
    import argparse
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-speed", action="store_true", help="leave out the year's speed measure")
    a = ap.parse_args()
    s = shipped_settings()
    files = recordings()
    _WORK = (s, a)
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        rows = list(pool.map(_one, files))
    print("## battery 5 kWh, 2.5 kW, 90 % round trip, SoC 10-100 % from 50 %, target 0 Wh per period, "
          "through gestor simulate\n")
    print("| file | periods | room: periods / within ±10 Wh | not full/empty: periods / within ±10 Wh | "
          "import Wh/day without → with | EUR without / with / LP | EUR over LP | final SoC % | losses kWh | "
          "changes/day |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    tot = {k: 0.0 for k in ("periods", "room", "near", "loose", "loose_near", "eur_without", "eur_with", "eur_lp",
                            "days", "iw", "iwo", "losses")}
    for r in rows:
        print(f"| {r['name']} | {r['periods']} | {r['room']} / {100 * r['near'] / max(r['room'], 1):.1f} % | "
              f"{r['loose']} / {100 * r['loose_near'] / max(r['loose'], 1):.1f} % | "
              f"{r['imp_without']:.0f} → {r['imp_with']:.0f} | "
              f"{r['eur_without']:.2f} / {r['eur_with']:.2f} / {r['eur_lp']:.2f} | "
              f"{r['eur_with'] - r['eur_lp']:.3f} | {r['soc_end']:.0f} | {r['losses'] / 1000:.2f} | "
              f"{r['changes']:.0f} |")
        for k in ("periods", "room", "near", "loose", "loose_near", "eur_without", "eur_with", "eur_lp", "days",
                  "losses"):
            tot[k] += r[k]
        tot["iw"] += r["imp_with"] * r["days"]
        tot["iwo"] += r["imp_without"] * r["days"]
    print(f"| all nine | {tot['periods']:.0f} | {tot['room']:.0f} / {100 * tot['near'] / tot['room']:.1f} % | "
          f"{tot['loose']:.0f} / {100 * tot['loose_near'] / tot['loose']:.1f} % | "
          f"{tot['iwo'] / tot['days']:.0f} → {tot['iw'] / tot['days']:.0f} | "
          f"{tot['eur_without']:.2f} / {tot['eur_with']:.2f} / {tot['eur_lp']:.2f} | "
          f"{tot['eur_with'] - tot['eur_lp']:.3f} | | {tot['losses'] / 1000:.2f} | |\n")
    print("## EV charger 6-16 A × 230 V (1.38-3.68 kW), surplus only; connected 18-08 h weekdays, 10-20 h weekends, "
          "10 kWh wanted per session; through gestor simulate\n")
    print("| file | sessions | kWh delivered / wanted | captured % of the bound | extra import Wh/day | "
          "EUR over perfect foresight | changes/day |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['ev_sessions']} | {r['ev_delivered'] / 1000:.1f} / {r['ev_wanted'] / 1000:.0f} | "
              f"{r['ev_captured']:.1f} | {r['ev_extra_import']:.0f} | {r['ev_over_eur']:.3f} | "
              f"{r['ev_changes']:.0f} |")
    print(f"| all nine | | | | | {sum(r['ev_over_eur'] for r in rows):.3f} | |")
    if not a.no_speed:
        speed(s)


if __name__ == "__main__":
    main()
