"""How much the monthly compensation cap (RD 244/2019 art. 14.3) changes the choice and the euros
(issue 35), on the public recordings (shared/data): a house with no on/off load and one simulated
modulating heater (the case where the surplus price enters the trade-off: its reserve).

For each recording: the heater's reserve chosen from tune's grid (gestor.sim.tune.DEVICE_GRID) by
the uncapped money (gestor.sim.books.money_eur, what simulate/tune score today) and by the bill
(gestor.bill.invoice over the days the recording covers, taxes included; the heat the heater
took is not valued in the bill, so a reserve that heats less looks cheaper there); then the
default reserve with ``bill.steer_by_cap`` off and on. Prints one row per recording and the sums.

    PYTHONPATH=src python benchmarks/bill_cap.py [HEATER_W]
"""
from __future__ import annotations

import sys
from pathlib import Path

from drivers.meters.replay import ReplayData
from gestor.core.devices import Modulating
from gestor.settings import load_settings
from gestor.bill.invoice import Hour, bills_by_month
from gestor.sim.billing import contract_of, hours, p3_eur_per_kwh
from gestor.sim.books import money_eur, valued_wh
from gestor.sim.devices import one_device_house, simulated_device
from gestor.sim.inputs import Prices, replay_settings_for
from gestor.sim.simulate import simulate
from gestor.sim.tune import DEVICE_GRID

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def run(data: ReplayData, s, reserve: float, steer: bool) -> tuple[list, object, float, float]:
    """One run: (its periods, its settings, uncapped money EUR net of the heat at P3, heat Wh)."""
    h = one_device_house(s, "heater", simulated_device(Modulating(HEATER_W)), reserve_wh_per_h=reserve)
    h = h.model_copy(update={"bill": h.bill.model_copy(update={"steer_by_cap": steer})})
    r = simulate(data, h, Prices(h), jobs=1)
    money = sum(money_eur(p, h.tariff.import_p3_eur_per_kwh) for p in r.periods)
    return r.periods, h, money, sum(valued_wh(p) for p in r.periods)


def bill_eur(periods, h, heat_wh: float, heat_ref_wh: float) -> tuple[float, bool]:
    """(the bill over the recording's days, EUR with taxes, any month capped), the heat this run
    did not take (``heat_ref_wh - heat_wh``) bought at the P3 price in its first period (a night
    timer): the same heat in every run compared, so the bill alone ranks them."""
    hs = hours(periods, h)
    if heat_ref_wh > heat_wh:
        hs.append(Hour(periods[0].start, heat_ref_wh - heat_wh, 0.0, p3_eur_per_kwh(h), 0.0))
    bills = bills_by_month(hs, contract_of(h), h.tz, 0.0, whole_months=False)
    return sum(b.total_eur for b in bills), any(b.capped for b in bills), capped_eur(hs, h.tz)


def capped_eur(hs: list, tz) -> float:
    """The energy term less the capped compensation, EUR before taxes and unrounded, per month
    summed: the part of the bill the control changes, without the cents' rounding."""
    months: dict[str, list[float]] = {}
    for x in hs:
        m = months.setdefault(x.start.astimezone(tz).strftime("%Y-%m"), [0.0, 0.0])
        m[0] += x.import_wh / 1000 * x.import_eur_per_kwh
        m[1] += x.surplus_wh / 1000 * x.surplus_eur_per_kwh
    return sum(e - min(c, e) for e, c in months.values())


HEATER_W = float(sys.argv[1]) if len(sys.argv) > 1 else 1000.0


def main() -> None:
    s = load_settings(ROOT / "config" / "settings.yaml", secrets_optional=True)
    grid = DEVICE_GRID["reserve_wh_per_h"]
    default = s.setpoints[0].reserve_wh_per_h if s.setpoints else 150.0
    print(f"heater {HEATER_W:g} W, reserve grid {grid}, default {default:g} Wh/h")
    print("recording: reserve best by money (no cap) / by the capped energy term; bill EUR at each reserve; any month "
          "capped; bill and capped energy term (EUR) with steer_by_cap off/on; heat kWh off/on")
    tot = [0.0, 0.0]
    changed = 0
    for f in sorted(DATA.glob("*.csv")):
        data = ReplayData.load(replay_settings_for(f))
        runs = {g: run(data, s, g, False) for g in grid}
        if default not in runs:
            runs[default] = run(data, s, default, False)
        steered = run(data, s, default, True)
        ref = max([x[3] for x in runs.values()] + [steered[3]])
        bills = {g: bill_eur(x[0], x[1], x[3], ref) for g, x in runs.items()}
        by_money = min(grid, key=lambda g: runs[g][2])
        best = min(bills[g][2] for g in grid)
        ties = [g for g in grid if bills[g][2] <= best + 1e-9]    # a capped month: every reserve nets 0
        by_bill = "any" if len(ties) == len(grid) else "/".join(f"{g:g}" for g in ties)
        changed += by_money not in ties
        off, on = bills[default], bill_eur(steered[0], steered[1], steered[3], ref)
        tot[0] += off[2]
        tot[1] += on[2]
        print(f"{f.name:<27} {by_money:>13g}  {by_bill:>12}  "
              f"{' '.join(f'{bills[g][0]:.2f}' for g in grid)}  {'yes' if any(b[1] for b in bills.values()) else 'no':>6}  "
              f"{off[0]:.2f}/{on[0]:.2f}  {off[2]:.3f}/{on[2]:.3f} ({on[2] - off[2]:+.3f})  "
              f"heat {runs[default][3] / 1000:.2f}/{steered[3] / 1000:.2f} kWh")
    print(f"the cap picks another reserve (the uncapped choice not among its best) on {changed} recordings; steering by the cap: capped energy term "
          f"{tot[0]:.3f} -> {tot[1]:.3f} EUR ({tot[1] - tot[0]:+.3f}) before taxes")


if __name__ == "__main__":
    main()
