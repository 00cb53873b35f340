"""The page's month view of the bill (issue 35): ``GET /bill?month=YYYY-MM`` (HTML) and
``GET /api/bill?month=YYYY-MM`` (the same data as JSON), behind the page's session as its other
data views (:mod:`gestor.web.app`'s ``before_request``).

What it shows, each from the one place that computes it:

* **the month's bill as the retailer computes it**, its lines, with and without gestor, and from
  the distributor's curve where it is stored: :func:`gestor.sim.bill_report.from_influx` (the
  ``period`` and ``distributor`` measurements priced by :func:`gestor.bill.invoice.bill`: energy
  term, compensation capped at it per RD 244/2019 art. 14.3, power term, electricity tax, meter
  rental, VAT, virtual battery), the figures ``gestor bill --month`` prints;
* **the month's hours, gestor against the distributor**: :func:`gestor.bill.reconcile.compare`
  of gestor's settled hours (:func:`gestor.bill.reconcile.gestor_from_influx`) and the
  distributor's (:func:`gestor.bill.distributor.from_influx`), as ``gestor bill reconcile``
  compares them; the hours whose import or surplus differ by more than the files' rounding
  (:data:`gestor.bill.reconcile.ROUNDING_WH`) are listed, at most :data:`MAX_HOURS_SHOWN`;
* **the meter clock's offset and the calibration ratio** from the month's ``reconcile`` point
  (written by ``gestor bill reconcile``: the offset needs the 10 s readings, too heavy for a page);
* **an alert banner** when the last ``reconcile`` point (the newest month reconciled) has
  ``alert`` true.

Every answer is bounded: a month of periods (``bill_report.MAX_POINTS``), a month of hours
(at most 745), one ``reconcile`` point; cached as :class:`gestor.web.data.History` caches (the
current month ``cache_s``, an older one 10 min). Units: Wh, EUR; signs as DESIGN.md section 2.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, render_template, request
from flask_babel import format_currency, format_decimal, gettext as _, lazy_gettext

from drivers.meters.base import MeterError
from gestor.bill import distributor as dist
from gestor.bill import reconcile as rec
from gestor.bill.invoice import month_bounds
from gestor.sim.billing import bill_dict

if TYPE_CHECKING:
    from gestor.settings import Settings
    from gestor.web.data import History

FIRST_MONTH = "2000-01"      # the page asks no earlier (as app.FIRST_DAY)
MAX_HOURS_SHOWN = 200        # the hours that differ listed on the page (the JSON has them all)
MONTH_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
BILL_NAMES = {"with_gestor": lazy_gettext("With gestor"), "without": lazy_gettext("Without gestor"),
              "distributor": lazy_gettext("From the distributor's curve")}
LINE_WORDS = {  # gestor.bill.invoice's line labels -> the page's words
    "Energy term": lazy_gettext("Energy term"), "Compensation": lazy_gettext("Compensation of the surplus"),
    "Power term P1": lazy_gettext("Power term P1"), "Power term P2": lazy_gettext("Power term P2"),
    "Electricity tax": lazy_gettext("Electricity tax"), "Meter rental": lazy_gettext("Meter rental"),
    "VAT": lazy_gettext("VAT"), "Virtual battery": lazy_gettext("Virtual battery")}


def parse_month(text: str | None, today: date) -> str:
    """``?month=`` as ``YYYY-MM`` (default: ``today``'s month). Raises ValueError naming the key,
    the value and what is allowed (from :data:`FIRST_MONTH` to ``today``'s month)."""
    last = f"{today:%Y-%m}"
    if text is None or text == "":
        return last
    if not MONTH_RE.fullmatch(text) or not FIRST_MONTH <= text <= last:
        raise ValueError(_("month %(month)s must be YYYY-MM, from %(first)s to %(last)s",
                           month=repr(text[:20]), first=FIRST_MONTH, last=last))
    return text


def _bills(s: Settings, month: str) -> tuple[dict[str, Any], str | None]:
    """The month's bills as JSON-ready dicts, or ({}, why not)."""
    from gestor.sim.bill_report import from_influx
    try:
        bills = from_influx(s, month)
    except (MeterError, ValueError) as e:
        return {}, str(e)
    return {k: bill_dict(v) for k, v in bills.items()}, None


def _hours(s: Settings, month: str) -> dict[str, Any]:
    """The month's hours, gestor against the distributor (module docstring)."""
    start, end = month_bounds(month, s.tz)
    try:
        curve = [h for h in dist.from_influx(s, start, end) if start <= h.start < end]
        if not curve:
            return {"error": None, "hours": 0}
        r = rec.compare(rec.gestor_from_influx(s, start, end), curve,
                        s.distributor.max_month_difference_pct if s.distributor else 2.0)
    except ValueError as e:
        return {"error": str(e), "hours": 0}
    differ = [h for h in r.hours
              if abs(h.import_diff_wh) > rec.ROUNDING_WH or abs(h.surplus_diff_wh) > rec.ROUNDING_WH]
    keys = ("gestor_import_wh", "gestor_surplus_wh", "dist_import_wh", "dist_surplus_wh",
            "import_diff_wh", "surplus_diff_wh")
    return {"error": None, "hours": len(r.hours), "estimated_hours": r.estimated, "only_gestor": r.only_gestor,
            "only_distributor": r.only_distributor, "ratio": r.ratio, "alerts": r.alerts,
            "max_difference_pct": r.max_difference_pct, "totals": {k: r.total(k) for k in keys},
            "differ": [{"start": h.start.isoformat(), "local": h.start.astimezone(s.tz).strftime("%Y-%m-%d %H:%M %Z"),
                        "estimated": h.estimated, **{k: getattr(h, k) for k in keys}} for h in differ]}


RECONCILE_FIELDS = "hours, estimated_hours, import_diff_wh, surplus_diff_wh, ratio, offset_s, alert, \"month\", cups"


def reconcile_point(s: Settings, month: str | None) -> dict | None:
    """The ``reconcile`` point of ``month`` (None: the newest of any month), or None when there is
    none. Raises ValueError (:class:`gestor.bill.distributor.DistributorError`) when the store
    does not answer."""
    where, params = ("AND \"month\" = $month", {"site": s.site, "month": month}) if month else ("", {"site": s.site})
    rows = dist.query_store(s.store, f"SELECT {RECONCILE_FIELDS} FROM {rec.MEASUREMENT} WHERE site = $site {where} "
                                     "ORDER BY time DESC LIMIT 1", params)
    return rows[0] if rows else None


def month_view(s: Settings, history: History, month: str, today: date) -> dict[str, Any]:
    """Everything the month view shows (module docstring), as JSON-ready data; cached."""
    def build() -> dict[str, Any]:
        if s.store.kind not in ("influxdb1", "auto"):
            why = _("the month view reads InfluxDB 1.x (store.kind is %(kind)s)", kind=s.store.kind)
            return {"month": month, "bills": {}, "bills_error": why, "compare": {"error": why, "hours": 0},
                    "reconcile": None, "last_reconcile": None, "reconcile_error": why}
        bills, bills_error = _bills(s, month)
        try:
            mine, why = reconcile_point(s, month), None
        except ValueError as e:
            mine, why = None, str(e)
        return {"month": month, "bills": bills, "bills_error": bills_error, "compare": _hours(s, month),
                "reconcile": mine, "reconcile_error": why}
    out = dict(history._cached(("bill", month), build, fresh=month == f"{today:%Y-%m}"))
    if out.get("reconcile_error") is None and "last_reconcile" not in out:
        try:  # the banner's: the newest point of any month, as fresh as today's data
            out["last_reconcile"] = history._cached(("reconcile_last",), lambda: reconcile_point(s, None), fresh=True)
        except ValueError as e:
            out["last_reconcile"], out["reconcile_error"] = None, str(e)
    return out


def _eur(x: float | None) -> str:
    return "–" if x is None else format_currency(x, "EUR")


def _kwh(wh: float | None, digits: int = 3) -> str:
    return "–" if wh is None else format_decimal(wh / 1000.0, format="#,##0." + "0" * digits)


def _num(x: float | None, fmt: str = "#,##0") -> str:
    return "–" if x is None else format_decimal(x, format=fmt)


def blueprint(s: Settings, clock: Any, history: History, site_name: str) -> Blueprint:
    """The month view's blueprint (registered by :func:`gestor.web.app.create_app`)."""
    bp = Blueprint("bill", __name__)

    def today() -> date:
        return clock.now().astimezone(s.tz).date()

    @bp.get("/api/bill")
    def bill_json():
        try:
            month = parse_month(request.args.get("month"), today())
        except ValueError as e:
            return jsonify(error=str(e)), 400
        return jsonify(month_view(s, history, month, today()))

    @bp.get("/bill")
    def page():
        from flask_wtf.csrf import generate_csrf
        t = today()
        try:
            month, error = parse_month(request.args.get("month"), t), None
        except ValueError as e:
            month, error = f"{t:%Y-%m}", str(e)
        v = month_view(s, history, month, t)
        last = v.get("last_reconcile")
        alert = bool(last and last.get("alert"))
        return render_template("bill.html", site=site_name, csrf=generate_csrf(), v=v, month=month, error=error,
                               last_month=f"{t:%Y-%m}", first_month=FIRST_MONTH, alert=alert, last=last,
                               bill_names=BILL_NAMES, line_words=LINE_WORDS, eur=_eur, kwh=_kwh, num=_num,
                               max_shown=MAX_HOURS_SHOWN), (400 if error else 200)

    return bp
