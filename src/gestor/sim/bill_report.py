"""``gestor bill --month YYYY-MM``: the month's bill as the retailer computes it
(:mod:`gestor.bill.invoice`, the settings' ``bill:`` contract) from gestor's own books, with and
without gestor, and from the distributor's hourly curve where it is stored.

Sources, in this order:

* ``--data CSV``: a recording, run through ``gestor simulate`` (the same inputs and prices as
  ``gestor simulate``); the bill covers the days it covers.
* else InfluxDB 1.x (``store:``): the month's ``period`` points (one per closed settlement
  period: ``balance_wh``, ``loads_wh``, ``devices_wh``, ``import_eur_per_kwh``,
  ``surplus_eur_per_kwh``), and the ``distributor`` measurement (tags ``cups``; fields
  ``import_wh``, ``surplus_wh`` per hour, at UTC hour starts) when it holds hours of the month.
  Without gestor: the period's balance plus what the loads and devices took (``loads_wh`` +
  ``devices_wh``), that energy bought at the P3 price (as :func:`gestor.tariff.prices.period_money`).
  The distributor's hours are priced at the period prices of the same hour (the 2.0TD ``tariff:``
  ones where gestor stored none).
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from drivers.meters.base import MeterError
from gestor.bill.invoice import Bill, Hour, bill, month_bounds
from gestor.core.balance import settled_wh
from gestor.settings import Settings
from gestor.sim.billing import bill_dict, contract_of, month_bills, p3_eur_per_kwh, prices_at

MAX_POINTS = 3 * 31 * 24 * 4   # a month of quarter-hour periods, thrice: the bound on what a query may return


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--month", metavar="YYYY-MM", help="the calendar month to bill (local time)")
    p.add_argument("--config", type=Path, default=None, help="settings file (default /etc/gestor/settings.yaml)")
    p.add_argument("--data", type=Path, default=None,
                   help="a recorded CSV to bill instead of InfluxDB's periods (run through gestor simulate)")
    p.add_argument("--prices", type=Path, help="with --data: hourly prices CSV, or 'influx' (as gestor simulate)")
    p.add_argument("--json", action="store_true", help="machine-readable")


def _query(s: Settings, q: str) -> list[dict]:
    """Rows of InfluxQL ``q`` (``$site`` bound to the site), at most :data:`MAX_POINTS`. Raises
    MeterError naming the server when it does not answer or the store is not InfluxDB 1.x."""
    from drivers import secret
    if s.store.kind not in ("influxdb1", "auto"):
        raise MeterError(f"gestor bill reads InfluxDB 1.x (store.kind is {s.store.kind}); use --data CSV")
    from influxdb import InfluxDBClient
    c = InfluxDBClient(s.store.host, s.store.port, s.store.username, secret(s.store.password), s.store.database,
                       timeout=s.store.timeout_s)
    try:
        rows = list(c.query(f"{q} LIMIT {MAX_POINTS + 1}", bind_params={"site": s.site}, epoch="s").get_points())
    except Exception as e:  # noqa: BLE001 -- the requests stack's and the client's many errors
        raise MeterError(f"InfluxDB at {s.store.host}:{s.store.port}: {e}") from None
    finally:
        c.close()
    if len(rows) > MAX_POINTS:
        raise MeterError(f"InfluxDB answered more than {MAX_POINTS} points for one month: not gestor's data")
    return rows


def from_influx(s: Settings, month: str) -> dict[str, Bill]:
    """The month's bills from InfluxDB (module docstring): ``with_gestor``, ``without`` and, when
    stored, ``distributor``. Raises MeterError when there is no period point in the month."""
    a, b = month_bounds(month, s.tz)
    span = f"time >= {int(a.timestamp())}s AND time < {int(b.timestamp())}s"
    rows = _query(s, f"SELECT balance_wh, loads_wh, devices_wh, import_eur_per_kwh, surplus_eur_per_kwh FROM period "
                     f"WHERE site = $site AND {span} ORDER BY time")
    if not rows:
        raise MeterError(f"no 'period' points in InfluxDB for {month} (site {s.site}): nothing to bill")
    p3 = p3_eur_per_kwh(s)
    w, wo, price_by_hour = [], [], {}
    for r in rows:
        t = datetime.fromtimestamp(r["time"], timezone.utc)
        imp, sur = _period_prices(s, t, r)
        price_by_hour.setdefault(int(r["time"]) // 3600, (imp, sur))
        bal = float(r["balance_wh"])
        taken = float(r.get("loads_wh") or 0.0) + float(r.get("devices_wh") or 0.0)
        exp_wh, imp_wh = settled_wh(bal)
        w.append(Hour(t, imp_wh, exp_wh, imp, sur))
        exp_wh, imp_wh = settled_wh(bal + taken)
        wo += [Hour(t, imp_wh, exp_wh, imp, sur)] + ([Hour(t, taken, 0.0, p3, sur)] if taken > 0 else [])
    c, first, last_day = contract_of(s), a.date(), b.date() - timedelta(days=1)
    out = {"with_gestor": bill(w, c, first, last_day), "without": bill(wo, c, first, last_day)}
    dist = _query(s, f"SELECT import_wh, surplus_wh, cups FROM distributor WHERE site = $site AND {span} ORDER BY time")
    if dist:
        hours = []
        for r in dist:
            t = datetime.fromtimestamp(r["time"], timezone.utc)
            imp, sur = price_by_hour.get(int(r["time"]) // 3600) or _period_prices(s, t, {})
            hours.append(Hour(t, float(r["import_wh"] or 0.0), float(r["surplus_wh"] or 0.0), imp, sur))
        out["distributor"] = bill(hours, c, first, last_day)
    return out


def _period_prices(s: Settings, t: datetime, r: dict) -> tuple[float, float]:
    """A stored period's prices (the 2.0TD ``tariff:`` ones where it has none), then the contract's."""
    from gestor.tariff.calendar import period_2_0td
    imp = r.get("import_eur_per_kwh")
    sur = r.get("surplus_eur_per_kwh")
    imp = float(imp) if imp is not None else s.tariff.import_eur_per_kwh(period_2_0td(t, s.tz))
    sur = float(sur) if sur is not None else s.tariff.surplus_eur_per_kwh
    return prices_at(s, t, imp, sur)


def main(args: argparse.Namespace) -> int:
    from gestor.sim.report import load_raw, prices_for, settings_with, table
    raw, path = load_raw(args.config)
    s = settings_with(raw, path, None, [])
    try:
        a, b = month_bounds(args.month, s.tz)
    except ValueError as e:
        raise MeterError(str(e)) from None
    try:
        if args.data is not None:
            from drivers.meters.replay import ReplayData
            from gestor.sim.simulate import replay_settings_for, simulate
            data = ReplayData.load(replay_settings_for(args.data))
            r = simulate(data, s, prices_for(s, args, data), a, b, jobs=1)
            if not r.periods:
                raise MeterError(f"{args.data}: no samples in {args.month}")
            (m,) = month_bills(r.periods, s)
            bills: dict[str, Any] = {"with_gestor": m.with_gestor, "without": m.without}
        else:
            bills = from_influx(s, args.month)
    except ValueError as e:
        raise MeterError(f"gestor bill --month {args.month}: {e}") from None
    if args.json:
        print(json.dumps({k: bill_dict(v) for k, v in bills.items()}, indent=1))
        return 0
    names = {"with_gestor": "with gestor", "without": "without gestor", "distributor": "from the distributor's curve"}
    rows = [["bill", "kWh imported", "kWh surplus", "energy", "compensation", "total EUR"]]
    for k, v in bills.items():
        rows.append([names[k], f"{v.import_wh / 1000:.3f}", f"{v.surplus_wh / 1000:.3f}", f"{v.energy_eur:.2f}",
                     f"{v.compensation_eur:.2f}" + (" (capped)" if v.capped else ""), f"{v.total_eur:.2f}"])
    table(rows)
    for k, v in bills.items():
        print(f"\n{names[k]}:\n{v.text()}")
    return 0
