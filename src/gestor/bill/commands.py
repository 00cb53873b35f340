"""``gestor bill import|fetch|reconcile`` (issue 35): the distributor's curve into InfluxDB, and
gestor's hours checked against it. :mod:`gestor.cli` parses the arguments (:func:`add_arguments`)
and hands a recording's column mapping over (``--recording``), so this layer needs nothing of the
simulator's.

Exit codes as every command: 0 done (an alert is printed and logged, not an error), 1 a runtime
error (one sentence), 2 invalid settings.
"""
from __future__ import annotations

import argparse
import logging
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from typing import TYPE_CHECKING, Callable

from gestor.bill import distributor as dist
from gestor.bill import reconcile as rec

if TYPE_CHECKING:
    from gestor.settings import Settings

log = logging.getLogger("gestor.bill")


class BillError(Exception):
    """A bill command cannot go on; the message is one sentence for the user."""


def add_arguments(p: argparse.ArgumentParser, default_config: str) -> None:
    """The ``bill`` parser's distributor subcommands (wt-bill's ``--month`` printing shares the parser)."""
    sub = p.add_subparsers(dest="bill_command")
    im = sub.add_parser("import", help="read a distributor's CSV (Datadis, e-distribución, i-DE) into InfluxDB")
    im.add_argument("file", help="the CSV the holder downloaded")
    fe = sub.add_parser("fetch", help="fetch the last days of the distributor's curve from Datadis into InfluxDB")
    fe.add_argument("--days", type=int, default=None, help="days back (default distributor.days_back)")
    fe.add_argument("--until", help="the last local day to fetch, YYYY-MM-DD (default yesterday)")
    rc = sub.add_parser("reconcile", help="gestor's settled hours against the distributor's, hour by hour")
    rc.add_argument("--month", required=True, help="local month YYYY-MM")
    rc.add_argument("--csv", help="the distributor's CSV (default: the distributor measurement in InfluxDB)")
    rc.add_argument("--recording", help="a recorded CSV of readings re-settled by gestor (default: the period and "
                                        "meter measurements in InfluxDB)")
    rc.add_argument("--no-offset", action="store_true", help="do not estimate the meter clock's offset")
    rc.add_argument("--summary", action="store_true", help="the month's figures only, not each hour")
    for q in (im, fe, rc):
        q.add_argument("--config", default=default_config, help=f"settings file (default {default_config})")


def _store(settings: Settings, lines: list[str], what: str) -> str:
    """Write ``lines`` to the settings' store; a phrase saying where they went."""
    if settings.store.kind == "none" or not lines:
        return "not stored (store.kind: none)" if lines else "nothing to store"
    from drivers.store.influx import StoreError, open_store
    try:
        store = open_store(settings.store)
        store.write(lines)
        ok = store.flush(30)
        store.close()
    except StoreError as e:
        raise BillError(f"not stored in InfluxDB: {e}") from None
    if not ok:
        raise BillError(f"InfluxDB did not take the {what} points within 30 s")
    return f"stored in InfluxDB (measurement {what})"


def _summary(hours: list[dist.HourRecord], tz: ZoneInfo) -> str:
    if not hours:
        return "no hours"
    a, b = hours[0].start.astimezone(tz), hours[-1].start.astimezone(tz)
    est = sum(h.estimated for h in hours)
    return (f"{len(hours)} hours, {a:%Y-%m-%d} to {b:%Y-%m-%d} ({est} estimated): import "
            f"{sum(h.import_wh for h in hours) / 1000:.3f} kWh, surplus {sum(h.surplus_wh or 0 for h in hours) / 1000:.3f} kWh")


def run(args: argparse.Namespace, settings: Settings, recording: Callable[[], tuple[list[float], list[float]]] | None = None,
        now: datetime | None = None) -> int:
    """Run ``gestor bill <args.bill_command>`` on ``settings``; ``recording``: loads the
    ``--recording`` readings (epoch s, export-positive W); ``now``: the wall clock's time (fetch)."""
    cups = settings.distributor.cups if settings.distributor else None
    tz = settings.tz
    if args.bill_command == "import":
        hours = dist.read_curve(args.file, tz, cups)
        where = _store(settings, dist.points(hours, settings.site), dist.MEASUREMENT)
        print(f"{args.file}: {_summary(hours, tz)}; {where}")
        return 0
    if args.bill_command == "fetch":
        if settings.distributor is None or settings.distributor.source != "datadis":
            print("gestor bill fetch: no distributor: block with source datadis in the settings: nothing to fetch")
            return 0
        from gestor.bill.distributor_datadis import Datadis
        try:
            last = date.fromisoformat(args.until) if args.until else \
                (now or datetime.now(timezone.utc)).astimezone(tz).date() - timedelta(days=1)
        except ValueError:
            raise BillError(f"--until {args.until!r}: expected YYYY-MM-DD") from None
        days = args.days or settings.distributor.days_back
        if not 1 <= days <= 400:
            raise BillError(f"--days {days}: expected 1..400")
        client = Datadis(settings.distributor)
        try:
            hours = client.hours(last - timedelta(days=days - 1), last, tz)
        finally:
            client.close()
        where = _store(settings, dist.points(hours, settings.site), dist.MEASUREMENT)
        print(f"Datadis {settings.distributor.cups}: {_summary(hours, tz)}; {where}")
        return 0
    if args.bill_command == "reconcile":
        return _reconcile(args, settings, recording)
    raise BillError("say what: gestor bill import FILE | fetch | reconcile --month YYYY-MM")


def _reconcile(args: argparse.Namespace, settings: Settings, recording: Callable | None) -> int:
    tz = settings.tz
    try:
        start, end = dist.month_bounds(args.month, tz)
    except ValueError as e:
        raise BillError(f"--month: {e}") from None
    cups = settings.distributor.cups if settings.distributor else None
    if (not args.csv or recording is None) and settings.store.kind not in ("influxdb1", "auto"):
        raise BillError(f"store.kind is {settings.store.kind}: the hours are read from InfluxDB 1.x only; give "
                        "--csv FILE (the distributor's) and --recording FILE (gestor's readings)")
    if args.csv:
        curve = dist.read_curve(args.csv, tz, cups)
    else:
        curve = dist.from_influx(settings, start, end)
    curve = [h for h in curve if start <= h.start < end]
    if not curve:
        raise BillError(f"no distributor hours in {args.month} ({args.csv or 'InfluxDB, measurement distributor'}): "
                        "import a file (gestor bill import FILE) or fetch them (gestor bill fetch)")
    gap = settings.billing.max_gap_s
    t_s: list[float] = []
    w: list[float] = []
    try:
        if recording is not None:
            t_s, w = recording()
            gestor = [h for h in rec.resettle(t_s, w, tz, gap) if start <= h.start < end]
        else:
            gestor = rec.gestor_from_influx(settings, start, end)
            if not args.no_offset:
                pad = timedelta(seconds=rec.SHIFT_SPAN_S + 3600)
                t_s, w = rec.readings_from_influx(settings, start - pad, end + pad)
    except ValueError as e:
        raise BillError(str(e)) from None
    pct = settings.distributor.max_month_difference_pct if settings.distributor else 2.0
    r = rec.compare(gestor, curve, pct)
    note = ""
    if not args.no_offset and t_s:
        try:
            r.offset_s, r.offset_scores = rec.find_offset(t_s, w, curve, tz, gap)
        except ValueError as e:
            note = f"meter clock offset: not estimated ({e})"
    print(rec.report(r, tz, hours=not args.summary))
    if note:
        print(note)
    for a in r.alerts:
        log.warning("distributor %s %s: %s", cups or curve[0].cups, args.month, a)
    if r.hours:
        print(_store(settings, [r.point(settings.site, cups or curve[0].cups, args.month, start)], rec.MEASUREMENT))
        if settings.mqtt.enabled:
            print(_publish(settings, r, args.month))
    return 0


def _publish(settings: Settings, r: rec.Reconciliation, month: str) -> str:
    """The month's reconciliation to Home Assistant (the ``Reconciliation alert`` entity managing
    announces), retained on ``<mqtt.topic_prefix>/reconcile``; a phrase saying where it went."""
    from gestor.runtime.mqtt import prefix, publish_once
    alerts = r.alerts
    why = publish_once(settings.mqtt, settings.site, "bill", "reconcile", {
        "month": month, "alert": bool(alerts), "alerts": alerts, "hours": len(r.hours),
        "import_diff_wh": round(r.total("import_diff_wh"), 1), "surplus_diff_wh": round(r.total("surplus_diff_wh"), 1),
        "ratio": None if r.ratio is None else round(r.ratio, 5),
        "offset_s": None if r.offset_s is None else round(r.offset_s, 1)})
    if why:
        log.warning("gestor bill reconcile: not published to MQTT: %s", why)
        return f"not published to MQTT: {why}"
    return f"published to MQTT ({prefix(settings.mqtt, settings.site)}/reconcile, retained)"
