"""``gestor simulate``: command line, tables, JSON/CSV export, plots and parameter sweeps around
:func:`gestor.sim.simulate.simulate`."""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from drivers.meters.base import MeterError
from drivers.meters.replay import ReplayData
from gestor.core.foresight import Plan
from gestor.settings import Settings, SettingsError, parse_settings
from gestor.sim.simulate import Prices, SimResult, Totals, foresight, replay_settings_for, simulate

REPO_EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "settings.yaml"
SYSTEM = Path("/etc/gestor/settings.yaml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="recorded CSV (house-* or winter-* format of shared/data)")
    p.add_argument("--config", type=Path, default=None,
                   help=f"settings (default {SYSTEM} if it exists, else the shipped example)")
    p.add_argument("--policy", help="policy name (time_to_consume, hysteresis, min_on_time, steady_surplus)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. policy.end_at_wh=50 or loads.0.power_w=1500 (repeatable)")
    p.add_argument("--from", dest="from_", help="start, ISO time (local time of settings.timezone if naive)")
    p.add_argument("--to", help="end, ISO time (exclusive)")
    p.add_argument("--prices", type=Path, help="hourly prices CSV: time, import_eur_per_kwh[, surplus_eur_per_kwh]; "
                                                "or 'influx': the prices stored by gestor prices fetch / managing")
    p.add_argument("--json", action="store_true", help="print totals, days and periods as JSON")
    p.add_argument("--csv", type=Path, metavar="OUT", help="write one row per settlement period")
    p.add_argument("--periods", action="store_true", help="also print every settlement period")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="one PNG per day (OUT-YYYY-MM-DD.png if several)")
    p.add_argument("--sweep", metavar="KEY=START:STOP:STEP", help="run a range of one setting and compare")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes at once: a sweep's values, or the parts of a run of several days split at "
                        "local midnights (default: the number of cores; the result is the same with any N; "
                        "a run with setpoint devices is in one piece)")
    p.add_argument("--battery-capacity-wh", type=float, default=None, metavar="WH",
                   help="usable capacity of a battery in setpoints: with a real driver (victron_ess, "
                        "marstek_venus), whose settings do not say it")
    p.add_argument("--bill", action="store_true",
                   help="also each month's bill as the retailer computes it (settings' bill: section): with and "
                        "without gestor and against perfect foresight, over the days the recording covers")


def _set(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    cur: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            try:
                idx = int(part)
                cur[idx]
            except (ValueError, IndexError):
                raise SettingsError([f"--set {key}: {part!r} is not an index of a list of {len(cur)}"]) from None
            if last:
                cur[idx] = value
            else:
                cur = cur[idx]
        else:
            if last:
                cur[part] = value
            else:
                cur = cur.setdefault(part, {})


def load_raw(config: Path | None) -> tuple[dict, Path]:
    path = config or (SYSTEM if SYSTEM.exists() else REPO_EXAMPLE)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SettingsError([f"{path}: cannot read: {e.strerror or e}"]) from None
    except yaml.YAMLError as e:
        raise SettingsError([f"{path}: not valid YAML: {e}"]) from None
    if not isinstance(raw, dict):
        raise SettingsError([f"{path}: (top level): must be a mapping"])
    return raw, path


def settings_with(raw: dict, path: Path, policy: str | None, sets: list[str]) -> Settings:
    raw = copy.deepcopy(raw)
    if policy:
        _set(raw, "policy.name", policy)
    for kv in sets:
        if "=" not in kv:
            raise SettingsError([f"--set {kv!r}: expected KEY=VALUE"])
        k, v = kv.split("=", 1)
        _set(raw, k.strip(), yaml.safe_load(v))
    return parse_settings(raw, str(path), path.resolve())


def prices_for(s: Settings, args: argparse.Namespace, data: ReplayData) -> Prices:
    """``--prices``: none (2.0TD), a CSV, or ``influx`` (the stored prices of the data's days)."""
    if args.prices is not None and str(args.prices) == "influx":
        return Prices.from_influx(s, data.t[0], data.t[-1] + 3600)
    return Prices(s, args.prices)


def _time(text: str | None, s: Settings) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise SettingsError([f"time {text!r}: expected ISO 8601, e.g. 2022-06-11 or 2022-06-11T12:00"]) from None
    return t if t.tzinfo else t.replace(tzinfo=s.tz)


def kwh(wh: float) -> str:
    return f"{wh / 1000:.2f}"


def table(rows: list[list[str]], out=None) -> None:
    out = out or sys.stdout
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))), file=out)
        if j == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _row(name: str, t: Totals) -> list[str]:
    return [name, kwh(t.production_wh), kwh(t.base_wh), kwh(t.loads_wh),
            f"{kwh(t.exported_wh)} / {kwh(t.exported_without_wh)}", f"{kwh(t.imported_wh)} / {kwh(t.imported_without_wh)}",
            f"{kwh(t.captured_wh)} ({t.captured_pct:.1f}% of {kwh(t.bound_wh)})", f"{t.extra_import_wh:.0f}",
            str(t.switches), f"{t.cost_eur:.2f} / {t.cost_without_eur:.2f}"
            + ("" if not t.incomplete else f"  ({t.incomplete} incomplete)")]


HEAD = ["day (local)", "prod kWh", "base kWh", "loads kWh", "exported w/wo", "imported w/wo", "captured kWh",
        "extra imp Wh", "switches", "EUR w/wo"]


def versus(t: Totals, bench: Totals) -> dict[str, float]:
    """A policy's totals against the perfect-foresight benchmark's: its capture as % of the
    benchmark's, its switches as a multiple of the benchmark's, its extra import beyond it (Wh)."""
    return {"captured_pct_of_benchmark": 100.0 * t.captured_wh / bench.captured_wh if bench.captured_wh > 0 else 100.0,
            "switches_x_benchmark": t.switches / bench.switches if bench.switches else math.inf if t.switches else 1.0,
            "extra_import_over_benchmark_wh": t.extra_import_wh - bench.extra_import_wh}


def bench_line(t: Totals, bench: Totals, days: float) -> str:
    v = versus(t, bench)
    return (f"perfect foresight (the best any controller could do here, zero extra import, fewest switches): "
            f"captured {kwh(bench.captured_wh)} kWh ({bench.captured_pct:.1f}% of bound), "
            f"{bench.switches / days:.1f} switches/day, extra import {bench.extra_import_wh:.0f} Wh.\n"
            f"this policy: {v['captured_pct_of_benchmark']:.1f}% of its capture with "
            f"{v['switches_x_benchmark']:.1f}x its switches and {v['extra_import_over_benchmark_wh']:+.0f} Wh more import.")


def _device_row(name: str, t: Totals, devices: list) -> list[str]:
    out = [name]
    for d in devices:
        out.append(f"{t.device_wh.get(d.name, 0.0):+.0f}")
        if d.charged_wh is not None:
            out.append(f"{kwh(t.device_charged_wh.get(d.name, 0.0))} / {kwh(t.device_discharged_wh.get(d.name, 0.0))}")
    return out


def print_devices(r: SimResult) -> None:
    """The setpoint devices' table (per day and in all: Wh taken, a battery's charge and
    discharge) and one line per device (changes, a battery's losses and SoC)."""
    head = ["day (local)"]
    for d in r.devices:
        head.append(f"{d.name} Wh")
        if d.charged_wh is not None:
            head.append(f"{d.name} charged/discharged kWh")
    print()
    table([head] + [_device_row(day, t, r.devices) for day, t in r.days.items()]
          + [_device_row("total", r.totals, r.devices)])
    for d in r.devices:
        line = (f"{d.name} ({d.kind}): {d.changes} setpoint changes, {d.reversals} reversals, "
                f"{d.on_s / 3600:.1f} h at a power other than 0")
        if d.charged_wh is not None:
            line += (f"; lost {d.losses_wh:.0f} Wh; SoC {d.soc_start_pct:.0f} % at the start, {d.soc_end_pct:.0f} % "
                     f"at the end, {d.soc_min_pct:.0f}..{d.soc_max_pct:.0f} %")
        print(line)
    print("Wh taken: + charged / taken, - supplied to the house (the balance's integration). Without gestor "
          "means without the loads and without the devices.")


def print_result(r: SimResult, s: Settings, data: Path, periods: bool, bench: SimResult | None = None,
                 money: Any = None) -> None:
    print(f"{data.name}: policy {s.policy.name}, loads "
          + (", ".join(f"{ld.name} {ld.power_w:.0f} W" for ld in s.loads_by_priority()) or "none")
          + (", then devices " + ", ".join(f"{d.name} ({d.device.driver})" for d in s.setpoints) if s.setpoints else "")
          + f", settlement period {s.billing.period_s // 60} min, {s.timezone}")
    rows = [HEAD] + [_row(d, t) for d, t in r.days.items()] + [_row("total", r.totals)]
    if bench is not None:
        rows.append(_row("perfect foresight", bench.totals))
    table(rows)
    print("w/wo = with / without gestor. Without gestor the loads' energy is bought at P3 (a night timer). "
          "captured = exported without - exported with; bound = what the loads could have taken.")
    if bench is not None:
        if s.setpoints:
            print("perfect foresight: the on/off loads alone, planned (the devices are not in it).")
        print(bench_line(r.totals, bench.totals, max(r.totals.periods * s.billing.period_s / 86400, 1e-9)))
    if isinstance(money, str):
        print(f"EUR against perfect foresight: {money}")
    elif money is not None:
        print(f"EUR against perfect foresight ({money.plan}): {money.money_eur:.2f} with gestor, "
              f"{money.foresight_eur:.2f} with foresight: {money.over_eur:+.3f} EUR over it (import less "
              f"compensation, no monthly cap, less the loads' and heaters' energy at the P3 price).")
    if r.devices:
        print_devices(r)
    from gestor.sim.simulate import monthly
    rows = [["month", "import EUR", "compensation EUR", "compensation paid (capped) EUR"]]
    rows += [[m, f"{c:.2f}", f"{comp:.2f}", f"{paid:.2f}" + ("  (cap reached)" if paid < comp else "")]
             for m, c, comp, paid in monthly(r.periods, s.tz)]
    print()
    table(rows)
    if periods:
        rows = [["period (local)", "P", "balance w", "balance wo", "loads Wh", "switches", "complete"]]
        if r.devices:
            rows[0][5:5] = ["devices Wh", "charged/discharged Wh", "SoC end %"]
        for p in r.periods:
            rows.append([p.start.astimezone(s.tz).strftime("%Y-%m-%d %H:%M"), p.price_period, f"{p.balance_wh:+.0f}",
                         f"{p.balance_without_wh:+.0f}", f"{p.loads_wh:.0f}", str(sum(p.switches.values())),
                         "yes" if p.complete else "NO"])
            if r.devices:
                dp: Any = p
                rows[-1][5:5] = [f"{dp.devices_wh:+.0f}",
                                 " ".join(f"{dp.charged_wh[n]:.0f}/{dp.discharged_wh[n]:.0f}" for n in dp.charged_wh) or "-",
                                 " ".join(f"{v:.0f}" for v in dp.soc_end_pct.values()) or "-"]
        print()
        table(rows)


def period_rows(r: SimResult, s: Settings, bench: SimResult | None = None) -> list[dict[str, Any]]:
    out = []
    bp = {p.start: p for p in bench.periods} if bench is not None else {}
    for p in r.periods:
        d = {"start": p.start.isoformat(), "start_local": p.start.astimezone(s.tz).isoformat(),
             "complete": p.complete, "price_period": p.price_period, "import_eur_per_kwh": p.import_price,
             "surplus_eur_per_kwh": p.surplus_price, "production_wh": p.production_wh, "base_wh": p.base_wh,
             "loads_wh": p.loads_wh, "balance_wh": p.balance_wh, "balance_without_wh": p.balance_without_wh,
             "export_wh": p.export_wh, "import_wh": p.import_wh, "bound_wh": p.bound_wh}
        for name in p.load_wh:
            d[f"{name}_wh"] = p.load_wh[name]
            d[f"{name}_on_s"] = p.load_on_s[name]
            d[f"{name}_switches"] = p.switches[name]
        for name, wh in getattr(p, "device_wh", {}).items():  # the setpoint devices (DevicePeriodResult)
            d[f"{name}_wh"] = wh
            if name in p.charged_wh:  # type: ignore[attr-defined]
                d[f"{name}_charged_wh"] = p.charged_wh[name]  # type: ignore[attr-defined]
                d[f"{name}_discharged_wh"] = p.discharged_wh[name]  # type: ignore[attr-defined]
                d[f"{name}_soc_end_pct"] = p.soc_end_pct[name]  # type: ignore[attr-defined]
        if bench is not None:
            b = bp.get(p.start)
            d["foresight_balance_wh"] = b.balance_wh if b else None
            d["foresight_loads_wh"] = b.loads_wh if b else None
            d["foresight_switches"] = sum(b.switches.values()) if b else None
        out.append(d)
    return out


def plot_days(r: SimResult, s: Settings, out: Path, bench: Plan | None = None) -> list[Path]:
    """One PNG per local day: production and consumption, load states (and under each, the
    perfect-foresight schedule's), hourly balance bars."""
    try:
        import matplotlib
    except ImportError:
        from gestor.runtime.daemon import GestorError
        raise GestorError("--plot needs matplotlib, which the daemons do not install: "
                          "pip install 'gestor[plot]' (./install.sh --demo and --test have it)") from None
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    tr = r.trace
    assert tr is not None
    written = []
    days = list(r.days)
    for day in days:
        from gestor.sim.simulate import day_bounds
        a, b = day_bounds(day, s.tz)
        idx = [i for i, t in enumerate(tr.t) if a.timestamp() <= t < b.timestamp()]
        if not idx:
            continue
        xs = [datetime.fromtimestamp(tr.t[i], s.tz) for i in idx]
        loads = s.loads_by_priority()
        fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(12, 8), sharex=True,
                                            gridspec_kw={"height_ratios": [3, 1, 2]})
        prod = [tr.production_w[i] / 1000 for i in idx]
        base = [tr.base_w[i] / 1000 for i in idx]
        total = [(tr.base_w[i] + sum(ld.power_w for ld in loads if tr.on[ld.name][i])) / 1000 for i in idx]
        ax1.fill_between(xs, prod, color="gold", alpha=0.5, label="production", step="post")
        ax1.plot(xs, base, color="grey", lw=0.8, label="base consumption", drawstyle="steps-post")
        ax1.plot(xs, total, color="tab:red", lw=0.8, label="consumption with gestor's loads", drawstyle="steps-post")
        ax1.set_ylabel("kW")
        ax1.set_ylim(0, max(max(prod), max(min(total), 0) + 1, 2.0) * 1.15)
        ax1.legend(loc="upper left", fontsize=8)
        t = r.days[day]
        ax1.set_title(f"{day}: policy {s.policy.name}; captured {t.captured_wh / 1000:.2f} kWh "
                      f"({t.captured_pct:.0f}% of bound), extra import {t.extra_import_wh:.0f} Wh, "
                      f"{t.switches} switches; EUR {t.cost_eur:.2f} with / {t.cost_without_eur:.2f} without", fontsize=10)
        rows = 2 if bench is not None else 1
        for j, ld in enumerate(loads):
            y = rows * j
            ax2.fill_between(xs, [y + 0.1] * len(xs), [y + 0.1 + 0.8 * tr.on[ld.name][i] for i in idx],
                             step="post", label=ld.name)
            if bench is not None:  # the benchmark's runs of this load, under it
                spans = [(datetime.fromtimestamp(max(u, a.timestamp()), s.tz), datetime.fromtimestamp(min(v, b.timestamp()), s.tz))
                         for u, v in bench.runs[j] if u < b.timestamp() and v > a.timestamp()]
                ax2.broken_barh([(mdates.date2num(u), mdates.date2num(v) - mdates.date2num(u)) for u, v in spans],
                                (y + 1.1, 0.8), color="tab:purple", alpha=0.6)
        names = [x for ld in loads for x in ([ld.name, f"{ld.name}: perfect foresight"] if bench is not None else [ld.name])]
        ax2.set_yticks([k + 0.5 for k in range(len(names))], names, fontsize=7)
        ax2.set_ylim(0, len(names))
        per = [p for p in r.periods if a <= p.start < b]
        w = (per[0].end - per[0].start).total_seconds() / 86400 * 0.4 if per else 0.015
        xs_p = [mdates.date2num(p.start.astimezone(s.tz)) for p in per]
        ax3.bar([x + w * 0.5 for x in xs_p], [p.balance_without_wh for p in per], width=w, color="lightgrey",
                label="hourly balance without gestor", align="edge")
        ax3.bar([x + w * 1.5 for x in xs_p], [p.balance_wh for p in per], width=w, color="tab:green",
                label="with gestor", align="edge")
        ax3.axhline(0, color="black", lw=0.6)
        ax3.set_ylabel("Wh")
        ax3.legend(loc="upper left", fontsize=8)
        ax3.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=s.tz))
        ax3.set_xlabel(f"local time ({s.timezone})")
        fig.tight_layout()
        path = out if len(days) == 1 else out.with_name(f"{out.stem}-{day}{out.suffix or '.png'}")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _frange(spec: str) -> tuple[str, list[float]]:
    try:
        key, rng = spec.split("=", 1)
        a, b, step = (float(x) for x in rng.split(":"))
    except ValueError:
        raise SettingsError([f"--sweep {spec!r}: expected KEY=START:STOP:STEP, e.g. policy.end_at_wh=0:100:25"]) from None
    if step <= 0 or b < a:
        raise SettingsError([f"--sweep {spec!r}: STEP must be > 0 and STOP >= START"])
    n = int(round((b - a) / step + 1e-9)) + 1
    return key.strip(), [round(a + i * step, 10) for i in range(n)]


_SWEEP: tuple | None = None  # (args, raw, path, data, key): inherited by the forked workers


def _sweep_one(v: float) -> tuple[float, Any]:
    args, raw, path, data, key = _SWEEP  # type: ignore[misc]
    s = settings_with(raw, path, args.policy, args.set + [f"{key}={v:g}"])
    return v, simulate(data, s, prices_for(s, args, data), _time(args.from_, s), _time(args.to, s),
                       battery_capacity_wh=args.battery_capacity_wh).totals


def sweep(args: argparse.Namespace, raw: dict, path: Path, data: ReplayData) -> int:
    """One simulation per value of the swept setting; independent, so they run in ``--jobs``
    processes (forked: the recording is shared, not copied per task). Same rows in the same
    order whatever the number of jobs."""
    global _SWEEP
    import os
    key, values = _frange(args.sweep)
    for v in values[:1]:
        settings_with(raw, path, args.policy, args.set + [f"{key}={v:g}"])  # a bad key fails here, once
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(values)))
    _SWEEP = (args, raw, path, data, key)
    done: dict[float, Any] = {}

    def progress() -> None:
        bar = "#" * int(30 * len(done) / len(values))
        print(f"\r[{bar:<30}] {len(done)}/{len(values)} ({jobs} jobs)   ", end="", file=sys.stderr, flush=True)

    progress()
    if jobs == 1:
        for v in values:
            done[v] = _sweep_one(v)[1]
            progress()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            for fut in as_completed([pool.submit(_sweep_one, v) for v in values]):
                v, t = fut.result()
                done[v] = t
                progress()
    print(file=sys.stderr)
    rows = [(v, done[v]) for v in values]
    best = min(range(len(rows)), key=lambda i: (round(rows[i][1].cost_eur, 2), rows[i][1].switches))
    s0 = settings_with(raw, path, args.policy, args.set)
    bench = foresight(data, s0, prices_for(s0, args, data), _time(args.from_, s0), _time(args.to, s0), jobs=jobs)[0].totals
    out = [[key, "captured %", "captured kWh", "extra import Wh", "switches", "EUR with gestor", ""]]
    for i, (v, t) in enumerate(rows):
        out.append([f"{v:g}", f"{t.captured_pct:.1f}", kwh(t.captured_wh), f"{t.extra_import_wh:.0f}", str(t.switches),
                    f"{t.cost_eur:.2f}", "<- best (lowest cost, then fewest switches)" if i == best else ""])
    out.append(["perfect foresight", f"{bench.captured_pct:.1f}", kwh(bench.captured_wh), f"{bench.extra_import_wh:.0f}",
                str(bench.switches), f"{bench.cost_eur:.2f}", "the benchmark: zero extra import, fewest switches"])
    print(f"{args.data.name}: sweep of {key}, policy {settings_with(raw, path, args.policy, args.set).policy.name}")
    table(out)
    return 0


def main(args: argparse.Namespace) -> int:
    raw, path = load_raw(args.config)
    try:
        data = ReplayData.load(replay_settings_for(args.data))
    except ValueError as e:
        raise MeterError(str(e)) from None
    if args.sweep:
        return sweep(args, raw, path, data)
    s = settings_with(raw, path, args.policy, args.set)
    try:
        prices = prices_for(s, args, data)
        if prices.slots:
            print(f"prices: {prices.stored} stored in InfluxDB for these days; the 2.0TD ones where none",
                  file=sys.stderr)
    except OSError as e:
        raise MeterError(f"{args.prices}: {e.strerror or e}") from None
    except ValueError as e:
        raise MeterError(str(e)) from None
    import os
    jobs = max(1, args.jobs or os.cpu_count() or 1)
    a, b = _time(args.from_, s), _time(args.to, s)
    from gestor.sim.devices import DeviceSimError
    try:
        r = simulate(data, s, prices, a, b, trace=args.plot is not None, jobs=jobs,
                     battery_capacity_wh=args.battery_capacity_wh)
    except DeviceSimError as e:
        raise SettingsError([f"{path}: {e}"]) from None
    if not r.periods:
        raise MeterError(f"{args.data}: no samples in the chosen time range")
    bench, pl = foresight(data, s, prices, a, b, base=r, jobs=jobs)
    from gestor.sim.money import versus_foresight
    try:
        money: Any = versus_foresight(data, s, prices, r, a, b, battery_capacity_wh=args.battery_capacity_wh,
                                      loads_foresight=bench)
    except ImportError:
        money = "the devices' plan needs SciPy (pip install gestor[lp])"
    from gestor.sim.billing import billing_dict, bills_of
    try:
        bills = bills_of(r, s, money) if args.bill else None
    except ValueError as e:
        raise MeterError(f"--bill: {e}") from None
    if args.json:
        print(json.dumps({"data": str(args.data), "policy": s.policy.model_dump(), "totals": r.totals.as_dict(),
                          **({"bills": [billing_dict(m) for m in bills]} if bills is not None else {}),
                          "days": {d: t.as_dict() for d, t in r.days.items()},
                          "perfect_foresight": {"totals": bench.totals.as_dict(), "planned_switches": pl.switches,
                                                "days": {d: t.as_dict() for d, t in bench.days.items()}},
                          "versus_perfect_foresight": {**versus(r.totals, bench.totals),
                                                       **({} if isinstance(money, str) else
                                                          {"eur": money.money_eur, "foresight_eur": money.foresight_eur,
                                                           "eur_over_benchmark": money.over_eur,
                                                           "plan": money.plan})},
                          **({"devices": [d.as_dict() for d in r.devices]} if r.devices else {}),
                          "periods": period_rows(r, s, bench)}, indent=1, default=str))
    else:
        print_result(r, s, args.data, args.periods, bench, money)
        if bills is not None:
            print_bills(bills)
    if args.csv:
        rows = period_rows(r, s, bench)
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {len(rows)} periods to {args.csv}", file=sys.stderr)
    if args.plot:
        for p in plot_days(r, s, args.plot, pl):
            print(f"wrote {p}", file=sys.stderr)
    return 0


def print_bills(bills: list) -> None:
    """The ``--bill`` table, then each month's bill with gestor line by line."""
    from gestor.sim.billing import table_rows
    print("\nBills (the days the recording covers; fixed terms and the cap over them; taxes included):")
    table(table_rows(bills))
    for m in bills:
        print(m.with_gestor.text())


# --- gestor tune ------------------------------------------------------------------------------
