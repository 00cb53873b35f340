"""A home battery and an EV charger driven by the setpoint law (gestor/sim/setpoint.py) on every
public recording, beside the battery's perfect-foresight LP (gestor/sim/lp.py); and the speed of
a year with a battery against a year with the on/off loads. Issue 26 section 1.

    .venv/bin/python benchmarks/battery.py [--jobs 2] [--delay 1] [--no-speed]

Battery: 5 kWh, 2.5 kW both ways, 90 % round trip, SoC 10-100 %, starting at 50 %, target 0 Wh
per period (no reserve), a setpoint reaching it one cycle after the decision.

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
bound captured, and the extra import Wh/day (the setpoint's rounding down and delay).

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

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.core.devices import Battery, EvCharger  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.sim.lp import battery_lp, period_cost_eur  # noqa: E402
from gestor.sim.models import daily_sessions, had_room  # noqa: E402
from gestor.sim.setpoint import simulate_battery, simulate_ev  # noqa: E402
from gestor.sim.simulate import Prices, replay_settings_for, simulate  # noqa: E402

BATTERY = Battery(2500.0, 2500.0, 5000.0, 10.0, 100.0, 0.9)
SOC0 = 50.0
CHARGER = EvCharger(6, 16, 1, 230.0)
_WORK: tuple | None = None  # (settings, args): inherited by the forked workers


def _one(path: Path) -> dict:
    s, a = _WORK  # type: ignore[misc]
    data = ReplayData.load(replay_settings_for(path))
    r = simulate_battery(data, s, Prices(s), BATTERY, soc_start_pct=SOC0, delay_cycles=a.delay)
    ps = r.periods
    days = (ps[-1].end - ps[0].start).total_seconds() / 86400.0
    room = near = loose = loose_near = 0
    for p in ps:
        bp = r.battery.periods[p.start.timestamp()]
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
    hours = [(p.end - p.start).total_seconds() / 3600.0 for p in ps]
    lp = battery_lp([p.balance_without_wh for p in ps], imp, sur, BATTERY.capacity_wh,
                    [BATTERY.max_charge_w * h for h in hours], [BATTERY.max_discharge_w * h for h in hours],
                    BATTERY.efficiency, SOC0, BATTERY.min_soc_pct, BATTERY.max_soc_pct,
                    soc_end_min_pct=r.battery.soc_end_pct)
    first = datetime.fromtimestamp(data.t[0], s.tz).date()
    last = datetime.fromtimestamp(data.t[-1], s.tz).date()
    ev = simulate_ev(data, s, Prices(s), CHARGER, daily_sessions(first, last, s.tz, wanted_wh=10_000.0),
                     delay_cycles=a.delay)
    t0, t1 = data.t[0], data.t[-1]
    inside = [x for x in ev.ev.sessions if t0 <= x.arrive_s < t1]
    return dict(name=path.name, periods=len(ps), room=room, near=near, loose=loose, loose_near=loose_near,
                imp_without=r.totals.imported_without_wh / days, imp_with=r.totals.imported_wh / days,
                eur_without=period_cost_eur([p.balance_without_wh for p in ps], imp, sur),
                eur_with=period_cost_eur([p.balance_wh for p in ps], imp, sur), eur_lp=lp.cost_eur,
                soc_end=r.battery.soc_end_pct, charged=r.battery.charged_wh, losses=r.battery.losses_wh,
                ev_delivered=sum(x.delivered_wh for x in inside), ev_wanted=sum(x.wanted_wh for x in inside),
                ev_sessions=len(inside), ev_captured=ev.totals.captured_pct,
                ev_extra_import=ev.totals.extra_import_wh / days, days=days)


def speed(s) -> None:
    from simulate_speed import concatenated
    year = concatenated(3_153_600)
    days = (year.t[-1] - year.t[0]) / 86400
    print(f"\n## speed: a year of 10 s samples ({len(year.t):,} samples, {days:.0f} days), one process\n")
    a = time.perf_counter()
    simulate(year, s, Prices(s), jobs=1)
    onoff = time.perf_counter() - a
    a = time.perf_counter()
    r = simulate_battery(year, s, Prices(s), BATTERY, soc_start_pct=SOC0)
    bat = time.perf_counter() - a
    print("| run | s | samples/s |")
    print("|---|---|---|")
    print(f"| on/off {s.policy.name} ({' + '.join(f'{ld.power_w:.0f}' for ld in s.loads)} W) | {onoff:.2f} | "
          f"{len(year.t) / onoff:,.0f} |")
    print(f"| battery 5 kWh / 2.5 kW | {bat:.2f} | {len(year.t) / bat:,.0f} |")
    print(f"\nbattery / on-off: {bat / onoff:.2f}x (goal: within 2x); the battery's year: "
          f"{r.battery.charged_wh / 1000:.0f} kWh charged, final SoC {r.battery.soc_end_pct:.1f} %")


def main() -> None:
    global _WORK
    import argparse
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--delay", type=int, default=1, help="cycles before a setpoint reaches the device")
    ap.add_argument("--no-speed", action="store_true", help="leave out the year's speed measure")
    a = ap.parse_args()
    example = ROOT / "config" / "settings.yaml"
    s = parse_settings(yaml.safe_load(example.read_text()), str(example), example)
    files = sorted((ROOT.parent / "shared" / "data").glob("*.csv"))
    if not files:
        files = sorted(Path("/tmp/shared/data").glob("*.csv"))
    _WORK = (s, a)
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        rows = list(pool.map(_one, files))
    print(f"## battery 5 kWh, 2.5 kW, 90 % round trip, SoC 10-100 % from 50 %, target 0 Wh per period, "
          f"delay {a.delay} cycle(s)\n")
    print("| file | periods | room: periods / within ±10 Wh | not full/empty: periods / within ±10 Wh | "
          "import Wh/day without → with | EUR without / with / LP | final SoC % | losses kWh |")
    print("|---|---|---|---|---|---|---|---|")
    tot = {k: 0.0 for k in ("periods", "room", "near", "loose", "loose_near", "eur_without", "eur_with", "eur_lp",
                            "days", "iw", "iwo", "losses")}
    for r in rows:
        print(f"| {r['name']} | {r['periods']} | {r['room']} / {100 * r['near'] / max(r['room'], 1):.1f} % | "
              f"{r['loose']} / {100 * r['loose_near'] / max(r['loose'], 1):.1f} % | "
              f"{r['imp_without']:.0f} → {r['imp_with']:.0f} | "
              f"{r['eur_without']:.2f} / {r['eur_with']:.2f} / {r['eur_lp']:.2f} | {r['soc_end']:.0f} | "
              f"{r['losses'] / 1000:.2f} |")
        for k in ("periods", "room", "near", "loose", "loose_near", "eur_without", "eur_with", "eur_lp", "days",
                  "losses"):
            tot[k] += r[k]
        tot["iw"] += r["imp_with"] * r["days"]
        tot["iwo"] += r["imp_without"] * r["days"]
    print(f"| all nine | {tot['periods']:.0f} | {tot['room']:.0f} / {100 * tot['near'] / tot['room']:.1f} % | "
          f"{tot['loose']:.0f} / {100 * tot['loose_near'] / tot['loose']:.1f} % | "
          f"{tot['iwo'] / tot['days']:.0f} → {tot['iw'] / tot['days']:.0f} | "
          f"{tot['eur_without']:.2f} / {tot['eur_with']:.2f} / {tot['eur_lp']:.2f} | | {tot['losses'] / 1000:.2f} |\n")
    print("## EV charger 6-16 A × 230 V (1.38-3.68 kW), surplus only; connected 18-08 h weekdays, 10-20 h weekends, "
          f"10 kWh wanted per session; delay {a.delay} cycle(s)\n")
    print("| file | sessions | kWh delivered / wanted | captured % of the bound | extra import Wh/day |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['ev_sessions']} | {r['ev_delivered'] / 1000:.1f} / {r['ev_wanted'] / 1000:.0f} | "
              f"{r['ev_captured']:.1f} | {r['ev_extra_import']:.0f} |")
    if not a.no_speed:
        speed(s)


if __name__ == "__main__":
    main()
