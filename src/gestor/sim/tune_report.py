"""``gestor tune``'s command line and tables (:mod:`gestor.sim.tune` chooses): a policy's
parameters or a setpoint device's reserve cross-validated by day on the user's own recording,
chosen by euros within the bound on switching, and the choice against perfect foresight
(:mod:`gestor.sim.money`). Units: EUR, Wh, switches a day."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drivers.meters.base import MeterError
from drivers.meters.replay import ReplayData
from gestor.settings import Settings, SettingsError
from gestor.sim.report import load_raw, settings_with, table
from gestor.sim.simulate import Prices, replay_settings_for, simulate


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="your recorded CSV (house-* or winter-* format of shared/data), 2 days or more")
    p.add_argument("--config", type=Path, default=None,
                   help="settings file (default /etc/gestor/settings.yaml if readable, else the example)")
    p.add_argument("--policy", help="the policy to tune (default: the configured one, unless the settings have "
                                    "setpoint devices: then the first device's reserve); tunable: "
                                    "time_to_consume, steady_surplus")
    p.add_argument("--device", metavar="NAME", help="tune this setpoint device's reserve_wh_per_h (default: the "
                                                    "first of setpoints:, when there is one and no --policy)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting first")
    p.add_argument("--folds", type=int, default=4, help="day-level cross-validation folds (default 4)")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="processes at once (default: the cores)")
    p.add_argument("--battery-capacity-wh", type=float, default=None, metavar="WH",
                   help="usable capacity of a battery with a real driver (as gestor simulate's)")
    p.add_argument("--bill", action="store_true",
                   help="score by the bill's euros of each month (the compensation capped at the month's energy "
                        "term, with taxes; settings' bill: section) instead of the uncapped money")


def tune_main(args: argparse.Namespace) -> int:
    """Search the policy's grid (gestor/sim/tune.py) on the user's recording with day-level
    cross-validation: every k-th day held out in turn, the parameters chosen on the other days,
    scored on the held-out ones against the current settings; then the choice on every day as
    a YAML snippet to paste. With setpoint devices (and no ``--policy``), or ``--device NAME``:
    the device's ``reserve_wh_per_h`` (:data:`gestor.sim.tune.DEVICE_GRID`) the same way, the
    loads and the policy as configured."""
    import os

    from gestor.sim.devices import DeviceSimError
    from gestor.sim.billing import contract_of
    from gestor.sim.tune import DEVICE_GRID, GRIDS, Sums, candidates, cross_validate, evaluate_bill, score, sums
    from gestor.sim.tune_bill import bill_eur, day_euros
    raw, path = load_raw(args.config)
    s0 = settings_with(raw, path, args.policy, args.set)
    policy = s0.policy.name
    device = args.device
    if device is None and args.policy is None and s0.setpoints:
        device = s0.setpoints[0].name
    di = None
    if device is not None:
        names = [d.name for d in s0.setpoints]
        if device not in names:
            raise SettingsError([f"--device {device!r}: not in setpoints ("
                                 f"{', '.join(names) if names else 'the settings have none'})"])
        di = names.index(device)
    elif policy not in GRIDS:
        raise SettingsError([f"--policy {policy!r}: gestor tune searches {', '.join(GRIDS)}"])
    try:
        data = ReplayData.load(replay_settings_for(args.data))
    except ValueError as e:
        raise MeterError(str(e)) from None
    if args.folds < 2:
        raise SettingsError([f"--folds {args.folds}: at least 2"])
    sets = list(args.set)
    if di is None:
        grid = GRIDS[policy]
        current = {k: getattr(s0.policy, k) for k in grid}
        prefix, what = "policy", policy
    else:
        grid = DEVICE_GRID
        current = {k: getattr(s0.setpoints[di], k) for k in grid}
        prefix, what = f"setpoints.{di}", f"setpoint device {device} (its reserve_wh_per_h)"
    cands = [current] + [c for c in candidates(policy, grid) if c != current]

    def make(params: dict) -> Settings:
        return settings_with(raw, path, policy, sets + [f"{prefix}.{k}={v}" for k, v in params.items()])
    contract = contract_of(s0)
    if args.bill:   # the rates of the recording's dates, before an hour of simulation
        from datetime import datetime, timezone

        from gestor.bill.invoice import bill
        first, last = (datetime.fromtimestamp(x, timezone.utc).astimezone(s0.tz).date()
                       for x in (data.t[0], data.t[-1]))
        try:
            bill([], contract, first, last)
        except ValueError as e:
            raise SettingsError([f"--bill: {e}"]) from None
    jobs = max(1, args.jobs or os.cpu_count() or 1)
    print(f"{args.data.name}: tuning {what} over {len(cands)} candidates", file=sys.stderr)
    try:
        results, euros = evaluate_bill([data], make, cands, jobs, battery_capacity_wh=args.battery_capacity_wh,
                                       by_bill=args.bill)
    except DeviceSimError as e:
        raise SettingsError([f"{path}: {e}"]) from None
    days = sorted(results[0][0])
    if len(days) < args.folds:
        raise MeterError(f"{args.data}: {len(days)} days; day-level cross-validation with --folds {args.folds} "
                         f"needs at least {args.folds} (use --folds 2, or record longer)")
    fold_of = {d: f"fold {i % args.folds + 1}" for i, d in enumerate(days)}
    groups = sorted(set(fold_of.values()))
    period_s = s0.billing.period_s
    try:
        folds = cross_validate(results, cands, groups, lambda fi, d: fold_of[d], period_s,
                               euros if args.bill else None, contract)
        all_bill = bill_eur(euros, contract) if args.bill else None
    except ValueError as e:
        raise SettingsError([f"--bill: {e}"]) from None
    eur = "bill EUR/day" if args.bill else "EUR/day"
    rows = [["held out", "days", f"now: {eur} / captured % / sw/day / import Wh/day",
             f"tuned: {eur} / captured % / sw/day / import Wh/day", "chosen on the other days"]]
    held_now, held_tuned = Sums(), Sums()
    for fo in folds:
        now = sums(results[0][0], period_s, lambda d, g=fo.held_out: fold_of[d] == g)
        if args.bill:
            now.bill_eur = bill_eur(euros, contract, lambda fi, d, g=fo.held_out: fold_of[d] == g)[0]
        t = fo.test
        held_now.merge(now)
        held_tuned.merge(t)
        per_day = (lambda x: x.bill_eur_per_day) if args.bill else (lambda x: x.eur_per_day)
        rows.append([fo.held_out, str(sum(1 for d in days if fold_of[d] == fo.held_out)),
                     f"{per_day(now):.3f} / {now.captured_pct:.1f} / {now.switches_per_day:.1f} / "
                     f"{now.import_wh_per_day:.0f}",
                     f"{per_day(t):.3f} / {t.captured_pct:.1f} / {t.switches_per_day:.1f} / {t.import_wh_per_day:.0f}",
                     ", ".join(f"{k} {v:g}" for k, v in fo.chosen.items())])
    table(rows)

    def whole(c: int) -> Sums:
        x = sums(results[c][0], period_s)
        if all_bill is not None:
            x.bill_eur = all_bill[c]
        return x
    best = max(range(len(cands)), key=lambda c: (score(whole(c), args.bill), -c))
    if args.bill:
        print("\nheld-out days only: 'now' is your settings, 'tuned' the choice made without those days. "
              "Chosen by the bill: the fewest EUR a day of each month's energy term less its compensation "
              "capped at it (RD 244/2019 art. 14.3), with the taxes on them, the loads' and heaters' energy "
              "made equal at the P3 price; within <= 20 switches/day.")
    else:
        print("\nheld-out days only: 'now' is your settings, 'tuned' the choice made without those days. "
              "Chosen by money: the fewest EUR a day (import less compensation, less the loads' and heaters' "
              "energy at the P3 price), within <= 20 switches/day.")
    print(f"held-out score (minus {eur}, less 1 per switch/day over 20; higher is better): "
          f"tuned {score(held_tuned, args.bill):.3f}, now {score(held_now, args.bill):.3f}")
    from gestor.sim.money import versus_foresight
    vs = []
    for params in (current, cands[best]):
        sc = make(params)
        r = simulate(data, sc, Prices(sc), battery_capacity_wh=args.battery_capacity_wh)
        vs.append(versus_foresight(data, sc, Prices(sc), r, battery_capacity_wh=args.battery_capacity_wh))
    print(f"EUR over perfect foresight on the whole recording ({vs[0].plan}; foresight "
          f"{vs[0].foresight_eur:.2f} EUR): now {vs[0].over_eur:+.3f}, chosen {vs[1].over_eur:+.3f}")
    if args.bill and vs[0].periods:
        fo = day_euros(vs[0].periods, s0, vs[0].balance_wh, vs[0].valued_wh)
        try:
            now_b, chosen_b, fo_b = bill_eur([euros[0], euros[best], [fo]], contract)
        except ValueError as e:
            raise SettingsError([f"--bill: {e}"]) from None
        print(f"bill EUR on the whole recording (energy term less capped compensation, with taxes; the same heat in "
              f"each): perfect foresight {fo_b:.2f} (planned on the uncapped money), now {now_b:.2f} "
              f"({now_b - fo_b:+.3f}), chosen {chosen_b:.2f} ({chosen_b - fo_b:+.3f})")
    print("\nchosen on every day (paste into settings.yaml):\n")
    if di is None:
        print("policy:")
        print(f"  name: {policy}")
        for k, v in cands[best].items():
            print(f"  {k}: {v:g}")
    else:
        print("setpoints:")
        print(f"  - name: {device}    # (its other keys as they are)")
        for k, v in cands[best].items():
            print(f"    {k}: {v:g}")
    return 0
