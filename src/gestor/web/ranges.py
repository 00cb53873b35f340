"""The page's periods beyond a day, prices and decision log, as plain dicts (issue 27): the JSON of
``/api/range``, ``/api/range.csv``, ``/api/prices`` and ``/api/decisions`` (:mod:`gestor.web.app`).

**Where the numbers come from.** The ``period`` points managing writes when a settlement period
closes (:meth:`gestor.runtime.books.Books.close`), read from the summaries ``gestor db-init``'s
continuous query ``period_summary`` keeps forever (``forever.period``, fields ``last_<field>``),
except for the last two local days (from yesterday's midnight on), which are read from the raw
points: the continuous query copies a period up to one period after it closed. Without a
``forever`` retention policy (``db-init`` never ran) every period is read from the raw points.
InfluxDB sums the periods per local day (``GROUP BY time(1d) tz(...)``, DST-correct on 1.6.7:
23- and 25-hour days) or per hour (the day view), the per-period net too, through sums of
absolute values (see :func:`_part`); the buckets (months of a year) are summed here from those
(a year: about 365 rows, not 8760). Answers are cached as :class:`gestor.web.data.History` caches
(a range that reaches into yesterday or today ``cache_s``, an older one 10 min).
``benchmarks/web.py --year`` times it.

**What a bucket counts** (Wh, EUR; signs as DESIGN.md section 2: ``balance_wh`` export-positive):

* ``import_wh`` / ``export_wh``: the bill's net per settlement period (balance neto horario),
  summed: Σ max(-balance, 0) and Σ max(balance, 0).
* ``captured_wh``: the surplus the loads took: Σ (max(without, 0) - max(balance, 0)) with
  ``without = balance + loads_wh + devices_wh`` (the period without gestor's loads and setpoint
  devices).
* ``production_wh``, ``consumption_wh``: sums of the meter's; None when no period of the bucket
  has them (a meter that gives net power only).
* ``loads``: per configured load, ``energy_wh`` (its ``<load>_wh``) and ``on_s``, the energy
  divided by the load's rated power in the settings (managing books a load's energy as rated
  power x on-time, so this is its on-time while the rated power is unchanged).
* ``devices_wh``: the setpoint devices' net energy taken (None without setpoint devices).
* ``self_consumption_pct`` = 100 (production - export) / production; ``self_sufficiency_pct`` =
  100 (consumption - import) / consumption; None without production (consumption) or when it is 0.
* ``cost_eur``, ``cost_without_eur`` (the period's import minus compensated surplus with and
  without gestor, as booked at its prices), ``saved_eur`` = without - with.
* ``complete``: every settlement period of the bucket is stored and was fully covered by readings.
* ``periods`` (beside the contract): how many settlement periods are stored in the bucket.
"""
from __future__ import annotations

import csv
import io
import math
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from drivers.store.influx import FOREVER_RP
from gestor.tariff.prices import day_bounds

if TYPE_CHECKING:
    from gestor.settings import Settings
    from gestor.web.data import History

UTC = timezone.utc
VIEWS = ("day", "week", "month", "year")
MAX_DECISIONS = 2000
LANGS = ("es", "ca", "en")
ENERGY_KEYS = ("production_wh", "consumption_wh", "import_wh", "export_wh", "captured_wh")


# -- ranges and buckets ---------------------------------------------------------------------
def range_days(view: str, day: date) -> tuple[date, date]:
    """The local days [first, last + 1) of the ``view`` ("day", "week": Monday to Sunday,
    "month", "year") holding ``day``. ValueError for another view."""
    if view == "day":
        return day, day + timedelta(days=1)
    if view == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=7)
    if view == "month":
        first = day.replace(day=1)
        return first, (first + timedelta(days=32)).replace(day=1)
    if view == "year":
        return date(day.year, 1, 1), date(day.year + 1, 1, 1)
    raise ValueError(f"view {view[:20]!r} must be one of {', '.join(VIEWS)}")


def buckets_of(view: str, day: date, tz: Any) -> list[tuple[datetime, datetime]]:
    """The buckets of the range, (start, end) aware in ``tz``: the local hours of a day (23 or 25
    on a DST day), the days of a week or month, the months of a year."""
    first, stop = range_days(view, day)
    if view == "day":
        a, b = day_bounds(first, tz)
        n = round((b - a).total_seconds() / 3600)
        return [((a + timedelta(hours=k)).astimezone(tz), (a + timedelta(hours=k + 1)).astimezone(tz))
                for k in range(n)]
    if view in ("week", "month"):
        days = [first + timedelta(days=k) for k in range((stop - first).days)]
        return [tuple(t.astimezone(tz) for t in day_bounds(d, tz)) for d in days]  # type: ignore[misc]
    out = []
    for m in range(1, 13):
        a = datetime(first.year, m, 1, tzinfo=tz)
        b = datetime(first.year + (m == 12), m % 12 + 1, 1, tzinfo=tz)
        out.append((a, b))
    return out


def _new() -> dict[str, Any]:
    return {"production_wh": None, "consumption_wh": None, "import_wh": 0.0, "export_wh": 0.0, "captured_wh": 0.0,
            "loads": {}, "devices_wh": None, "cost_eur": 0.0, "cost_without_eur": 0.0, "complete": True,
            "periods": 0, "_incomplete": 0}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _net(acc: dict[str, Any], bal: float, loads_wh: float, dev: float) -> None:
    """One settlement period's bill: net import or export, and the surplus its loads captured."""
    acc["import_wh"] += max(-bal, 0.0)
    acc["export_wh"] += max(bal, 0.0)
    acc["captured_wh"] += max(bal + loads_wh + dev, 0.0) - max(bal, 0.0)


def _sums(acc: dict[str, Any], row: dict, powers: dict[str, float]) -> None:
    """Add a row of the sums query (a local day or hour, :func:`_sums_query`) to ``acc``."""
    acc["periods"] += int(row.get("n") or 0)
    for k in ("production_wh", "consumption_wh", "devices_wh"):
        v = _num(row.get(k))
        if v is not None:
            acc[k] = (acc[k] or 0.0) + v
    for name, p_w in powers.items():
        e = _num(row.get(f"{name}_wh")) or 0.0
        ld = acc["loads"].setdefault(name, {"energy_wh": 0.0, "on_s": 0.0})
        ld["energy_wh"] += e
        ld["on_s"] += e * 3600.0 / p_w if p_w > 0 else 0.0
    acc["cost_eur"] += _num(row.get("cost_eur")) or 0.0
    acc["cost_without_eur"] += _num(row.get("cost_without_eur")) or 0.0


def _finish(acc: dict[str, Any], expected: int, powers: dict[str, float]) -> dict[str, Any]:
    """The bucket as the API gives it: percentages, saving, complete only with every period."""
    for name in powers:
        acc["loads"].setdefault(name, {"energy_wh": 0.0, "on_s": 0.0})
    prod, cons = acc["production_wh"], acc["consumption_wh"]
    acc["self_consumption_pct"] = (100.0 * (prod - acc["export_wh"]) / prod) if prod else None
    acc["self_sufficiency_pct"] = (100.0 * (cons - acc["import_wh"]) / cons) if cons else None
    acc["saved_eur"] = acc["cost_without_eur"] - acc["cost_eur"]
    acc["complete"] = bool(acc.pop("_incomplete") == 0 and acc["periods"] >= expected > 0)
    return acc


# -- the store --------------------------------------------------------------------------------
def _t(x: datetime) -> str:
    return x.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _forever_missing(e: Exception) -> bool:
    return "retention policy not found" in str(e)


def _source(forever: bool) -> tuple[str, str]:
    """(FROM clause, field prefix) of the summaries (``last_<field>``) or the raw points."""
    return (f'"{FOREVER_RP}"."period"', "last_") if forever else ('"period"', "")


def _part(h: History, forever: bool, a: datetime, b: datetime, group: str) -> tuple[list, list, list]:
    """The settlement periods of [a, b) from the summaries or the raw points, summed by InfluxDB
    per ``group`` (``1h``, or ``1d``: local days, DST-correct with ``tz()``), in three queries:
    the sums of the linear fields and the count of periods; the count of incomplete periods; the
    per-period net (not a sum) as sums of absolute values, max(x, 0) = (|x| + x) / 2: Σ|balance|
    and Σ|balance + loads| (a subquery). When periods with setpoint devices (``devices_wh``) are
    in [a, b), the last is instead one row per period (balance, loads, devices; summed here).
    Returns (sums rows, incomplete rows, net rows: either ``ab``/``aw`` per group or ``b``/``l``/
    ``d`` per period). Raises HistoryError (a missing forever policy too)."""
    s = h.s
    src, p = _source(forever)
    where = f"site = '{s.site}' AND time >= '{_t(a)}' AND time < '{_t(b)}'"
    by = f"GROUP BY time({group}) fill(none) tz('{s.timezone}')"
    linear = ["production_wh", "consumption_wh", "devices_wh", "cost_eur", "cost_without_eur", "balance_wh",
              "loads_wh"] + [f"{ld.name}_wh" for ld in s.loads]
    sel = ", ".join([f'count("{p}balance_wh") AS n', f'count("{p}devices_wh") AS nd']
                    + [f'sum("{p}{f}") AS "{f}"' for f in linear])
    sums, bad, net = _parallel([
        f"SELECT {sel} FROM {src} WHERE {where} {by}",
        f'SELECT count("{p}balance_wh") AS x FROM {src} WHERE {where} AND "{p}complete" = false {by}',
        f'SELECT sum(ab) AS ab, sum(aw) AS aw FROM (SELECT abs("{p}balance_wh") AS ab, '
        f'abs("{p}balance_wh" + "{p}loads_wh") AS aw FROM {src} WHERE {where} GROUP BY *) WHERE {where} {by}'], h)
    if any(r.get("nd") for r in sums):
        net = h._query(f'SELECT "{p}balance_wh" AS b, "{p}loads_wh" AS l, "{p}devices_wh" AS d FROM {src} '
                       f"WHERE {where}")
    return sums, bad, net


def _parallel(queries: list[str], h: History) -> list[list[dict]]:
    """The answers of ``queries``, asked at once (InfluxDB answers them on several cores: on a
    Pi the range's time is then the slowest query's, not their sum). Raises the first
    HistoryError."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="gestor-web-query") as ex:
        futures = [ex.submit(h._query, q) for q in queries]
        return [f.result() for f in futures]


def range_rows(h: History, a: datetime, b: datetime, recent_from: datetime, group: str) -> list[tuple[list, list, list]]:
    """:func:`_part` of [a, b), one or two: from the ``forever`` summaries before ``recent_from`` and the raw
    points after it (all raw without summaries). Raises HistoryError."""
    from gestor.web.data import HistoryError
    parts = []
    raw_from = max(a, recent_from)
    if a < recent_from:
        try:
            parts.append(_part(h, True, a, min(b, recent_from), group))
        except HistoryError as e:
            if not _forever_missing(e):
                raise
            raw_from = a
    if raw_from < b:
        parts.append(_part(h, False, raw_from, b, group))
    return parts


def summarize(parts: list[tuple[list, list, list]], buckets: list[tuple[datetime, datetime]], period_s: int,
              powers: dict[str, float]) -> tuple[list[dict], dict]:
    """:func:`range_rows`' answers summed into ``buckets`` and over all of them. Returns
    (buckets, totals) as the API gives them (module docstring); rows outside are left out."""
    from bisect import bisect_right
    edges = [a.timestamp() for a, _ in buckets]
    end = buckets[-1][1].timestamp()
    accs = [_new() for _ in buckets]
    total = _new()

    def where(t: float) -> dict | None:
        return accs[bisect_right(edges, t) - 1] if edges[0] <= t < end else None

    for sums, bad, net in parts:
        bl: dict[float, tuple[float, float]] = {}  # group → (Σ balance, Σ loads)
        for r in sums:
            bl[r["time"]] = (_num(r.get("balance_wh")) or 0.0, _num(r.get("loads_wh")) or 0.0)
            acc = where(r["time"])
            if acc is not None:
                _sums(acc, r, powers)
                _sums(total, r, powers)
        for r in net:
            acc = where(r["time"])
            if acc is None:
                continue
            if "ab" in r:  # per group: Σ|balance|, Σ|balance + loads|
                sb, sl = bl.get(r["time"], (0.0, 0.0))
                ab, aw = r.get("ab") or 0.0, r.get("aw") or 0.0
                for x in (acc, total):
                    x["import_wh"] += (ab - sb) / 2
                    x["export_wh"] += (ab + sb) / 2
                    x["captured_wh"] += (aw + sb + sl) / 2 - (ab + sb) / 2
            elif r.get("b") is not None:  # per period
                bal, loads_wh, dev = r["b"], r.get("l") or 0.0, r.get("d") or 0.0
                _net(acc, bal, loads_wh, dev)
                _net(total, bal, loads_wh, dev)
        for r in bad:
            acc = where(r["time"])
            if acc is not None:
                acc["_incomplete"] += int(r.get("x") or 0)
                total["_incomplete"] += int(r.get("x") or 0)
    out = []
    for (a, b), acc in zip(buckets, accs):
        n = round((b - a).total_seconds() / period_s)
        out.append({"start": a.isoformat(), **_finish(acc, n, powers)})
    n_all = round((buckets[-1][1] - buckets[0][0]).total_seconds() / period_s)
    return out, _finish(total, n_all, powers)


def since_install(h: History, recent_from: datetime) -> dict[str, Any]:
    """``since`` (ISO, UTC: the first settlement period stored), ``cost_eur``,
    ``cost_without_eur``, ``saved_eur`` over every period stored (EUR); since None and 0 EUR
    without any. Raises HistoryError."""
    from gestor.web.data import HistoryError
    s = h.s
    where = f"site = '{s.site}'"
    first: float | None = None
    cost = without = 0.0
    raw_from = recent_from
    try:
        got = h._query(f'SELECT first("last_balance_wh") FROM "{FOREVER_RP}"."period" WHERE {where}')
        if got:
            first = got[0]["time"]
            sums = h._query(f'SELECT sum("last_cost_eur") AS c, sum("last_cost_without_eur") AS w FROM '
                            f'"{FOREVER_RP}"."period" WHERE {where} AND time < \'{_t(recent_from)}\'')
            if sums:
                cost, without = sums[0].get("c") or 0.0, sums[0].get("w") or 0.0
    except HistoryError as e:
        if not _forever_missing(e):
            raise
        raw_from = datetime(1970, 1, 1, tzinfo=UTC)
    got = h._query(f'SELECT first("balance_wh") FROM "period" WHERE {where} AND time >= \'{_t(raw_from)}\'')
    if got:
        first = got[0]["time"] if first is None else min(first, got[0]["time"])
        sums = h._query(f'SELECT sum("cost_eur") AS c, sum("cost_without_eur") AS w FROM "period" '
                        f"WHERE {where} AND time >= '{_t(raw_from)}'")
        if sums:
            cost += sums[0].get("c") or 0.0
            without += sums[0].get("w") or 0.0
    return {"since": None if first is None else datetime.fromtimestamp(first, UTC).isoformat(),
            "cost_eur": cost, "cost_without_eur": without, "saved_eur": without - cost}


def range_of(h: History, view: str, day: date, today: date) -> dict[str, Any]:
    """``GET /api/range``: the ``view`` holding local ``day`` (``today``: the local date now).
    Shape: ``{"view", "start", "end", "tz", "buckets": [...], "totals": {...}, "since_install":
    {...}}`` (module docstring; times ISO with the local offset). ValueError for a bad view;
    HistoryError when InfluxDB cannot be asked."""
    s = h.s
    tz = s.tz
    buckets = buckets_of(view, day, tz)
    a, b = buckets[0][0], buckets[-1][1]
    recent_from = day_bounds(today - timedelta(days=1), tz)[0]
    powers = {ld.name: float(ld.power_w) for ld in s.loads}
    fresh = b > recent_from

    def build() -> dict[str, Any]:
        parts = range_rows(h, a, b, recent_from, "1h" if view == "day" else "1d")
        out, totals = summarize(parts, buckets, s.billing.period_s, powers)
        return {"view": view, "start": a.isoformat(), "end": b.isoformat(), "tz": s.timezone, "buckets": out,
                "totals": totals}

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gestor-web-since") as ex:
        since = ex.submit(h._cached, ("since_install", today), lambda: since_install(h, recent_from), True)
        body = h._cached(("range", view, a.timestamp(), today), build, fresh=fresh)
        return {**body, "since_install": since.result()}


# -- the CSV ----------------------------------------------------------------------------------
HEADERS = {  # English header (the gettext msgid) -> Spanish, Catalan
    "Start": ("Inicio", "Inici"),
    "Start (ISO 8601)": ("Inicio (ISO 8601)", "Inici (ISO 8601)"),
    "Production (Wh)": ("Producción (Wh)", "Producció (Wh)"),
    "Consumption (Wh)": ("Consumo (Wh)", "Consum (Wh)"),
    "Net import (Wh)": ("Importación neta (Wh)", "Importació neta (Wh)"),
    "Net export (Wh)": ("Exportación neta (Wh)", "Exportació neta (Wh)"),
    "Surplus captured (Wh)": ("Excedente aprovechado (Wh)", "Excedent aprofitat (Wh)"),
    "{load} (Wh)": ("{load} (Wh)", "{load} (Wh)"),
    "{load} (hours on)": ("{load} (horas encendido)", "{load} (hores engegat)"),
    "Devices (Wh)": ("Dispositivos (Wh)", "Dispositius (Wh)"),
    "Self-consumption (%)": ("Autoconsumo (%)", "Autoconsum (%)"),
    "Self-sufficiency (%)": ("Autosuficiencia (%)", "Autosuficiència (%)"),
    "Cost with gestor (EUR)": ("Coste con gestor (EUR)", "Cost amb gestor (EUR)"),
    "Cost without gestor (EUR)": ("Coste sin gestor (EUR)", "Cost sense gestor (EUR)"),
    "Saved (EUR)": ("Ahorro (EUR)", "Estalvi (EUR)"),
    "Complete": ("Completo", "Complet"),
    "Period start (local)": ("Inicio del periodo (hora local)", "Inici del període (hora local)"),
    "Period start (UTC)": ("Inicio del periodo (UTC)", "Inici del període (UTC)"),
    "Balance (Wh)": ("Balance (Wh)", "Balanç (Wh)"),
    "Without gestor (Wh)": ("Sin gestor (Wh)", "Sense gestor (Wh)"),
    "Import (Wh)": ("Importación (Wh)", "Importació (Wh)"),
    "Export (Wh)": ("Exportación (Wh)", "Exportació (Wh)"),
    "Loads (Wh)": ("Cargas (Wh)", "Càrregues (Wh)"),
    "Covered (s)": ("Cubierto (s)", "Cobert (s)"),
    "yes": ("sí", "sí"),
    "no": ("no", "no"),
}


def header_text(msgid: str, lang: str) -> str:
    """``msgid`` in ``lang``: the gettext catalog's translation when Flask-Babel is set up on the
    app and has one, else :data:`HEADERS`' own."""
    try:
        from flask import current_app
        from flask_babel import force_locale, gettext
        if "babel" in current_app.extensions:
            with force_locale(lang):
                t = gettext(msgid)
            if t != msgid or lang == "en":
                return t
    except (ImportError, RuntimeError):
        pass
    if lang == "en":
        return msgid
    return HEADERS[msgid][LANGS.index(lang)]


def pick_lang(arg: str | None, accept: Any) -> str:
    """The CSV's language: ``lang`` (es, ca, en) when given, else the best of ``Accept-Language``
    (werkzeug's ``request.accept_languages``), else English. ValueError for another ``lang``."""
    if arg:
        if arg not in LANGS:
            raise ValueError(f"lang {arg[:10]!r} must be one of {', '.join(LANGS)}")
        return arg
    return (accept.best_match(LANGS) if accept is not None else None) or "en"


def range_csv(body: dict[str, Any], s: Settings, lang: str) -> bytes:
    """The range's buckets as CSV bytes, one row per bucket: es/ca with ``;`` and a decimal
    comma, UTF-8 with a BOM (a Spanish spreadsheet opens it right); en with ``,`` and ``.``.
    Energies Wh (3 decimals), on-times hours, percentages (2 decimals), EUR (4 decimals)."""
    comma = lang in ("es", "ca")
    tz = s.tz
    loads = [ld.name for ld in s.loads]
    view = body["view"]

    def num(v: float | None, nd: int) -> str:
        if v is None:
            return ""
        text = f"{v:.{nd}f}"
        return text.replace(".", ",") if comma else text

    def label(iso: str) -> str:
        t = datetime.fromisoformat(iso).astimezone(tz)
        return {"day": f"{t:%Y-%m-%d %H:%M}", "year": f"{t:%Y-%m}"}.get(view, f"{t:%Y-%m-%d}")

    hd = lambda m: header_text(m, lang)  # noqa: E731
    head = [hd("Start"), hd("Start (ISO 8601)"), hd("Production (Wh)"), hd("Consumption (Wh)"), hd("Net import (Wh)"),
            hd("Net export (Wh)"), hd("Surplus captured (Wh)")]
    shown = {ld.name: ld.display_name or ld.name for ld in s.loads}  # the names the household gave them
    for name in loads:
        head += [hd("{load} (Wh)").replace("{load}", shown[name]), hd("{load} (hours on)").replace("{load}", shown[name])]
    head += [hd("Devices (Wh)"), hd("Self-consumption (%)"), hd("Self-sufficiency (%)"), hd("Cost with gestor (EUR)"),
             hd("Cost without gestor (EUR)"), hd("Saved (EUR)"), hd("Complete")]
    out = io.StringIO()
    w = csv.writer(out, delimiter=";" if comma else ",", lineterminator="\r\n")
    w.writerow(head)
    for bk in body["buckets"]:
        row = [label(bk["start"]), bk["start"]] + [num(bk[k], 3) for k in ENERGY_KEYS]
        for name in loads:
            ld = bk["loads"].get(name) or {"energy_wh": 0.0, "on_s": 0.0}
            row += [num(ld["energy_wh"], 3), num(ld["on_s"] / 3600.0, 4)]
        row += [num(bk["devices_wh"], 3), num(bk["self_consumption_pct"], 2), num(bk["self_sufficiency_pct"], 2),
                num(bk["cost_eur"], 4), num(bk["cost_without_eur"], 4), num(bk["saved_eur"], 4),
                hd("yes") if bk["complete"] else hd("no")]
        w.writerow(row)
    return ("\ufeff" if comma else "").encode() + out.getvalue().encode("utf-8")


def csv_name(view: str, day: date) -> str:
    """gestor-2026-06-11.csv (day), gestor-2026-W24.csv (ISO week), gestor-2026-06.csv,
    gestor-2026.csv."""
    first, _ = range_days(view, day)
    if view == "week":
        y, wk, _ = first.isocalendar()
        return f"gestor-{y}-W{wk:02d}.csv"
    return f"gestor-{ {'day': first.isoformat(), 'month': f'{first:%Y-%m}', 'year': f'{first:%Y}'}[view]}.csv"


# -- prices -----------------------------------------------------------------------------------
def _real_slots(s: Settings, day: date) -> tuple[list, list, str] | None:
    """The day's real (import, surplus) slots as (start epoch, end epoch, EUR/kWh) and their
    source, from the price cache managing keeps (``prices.source`` esios or pvpc_public) or
    ``prices.file``; None when unknown."""
    from gestor.tariff import prices as pr
    src = s.prices.source
    if src == "file":
        book = pr.Book(s.paths.state_dir, s.tz, s.prices.file)
        book._read_file()
        return (book.slots, book.surplus, "file") if book.slots else None
    p = pr.cached(s.paths.state_dir, day)
    if p is None:
        return None
    imp = [(t.timestamp(), t.timestamp() + p.slot_s, v) for t, v in p.import_]
    sur_s = int((p.surplus[1][0] - p.surplus[0][0]).total_seconds()) if len(p.surplus) > 1 else p.slot_s
    sur = [(t.timestamp(), t.timestamp() + sur_s, v) for t, v in p.surplus]
    return imp, sur, p.source


def prices_of(s: Settings, day: date, now: datetime, min_run: dict[str, list[str]] | None) -> dict[str, Any]:
    """``GET /api/prices``: the 2.0TD period now, and the local ``day`` and the next, an entry per
    local clock hour (23 or 25 on a DST day): ``start`` (ISO, local offset), ``period`` (P1, P2,
    P3), ``import_eur_per_kwh`` and ``surplus_eur_per_kwh`` (EUR/kWh; the hour's time-weighted
    mean of quarter-hour prices). With ``prices.source: fixed`` the settings' fixed 2.0TD prices;
    otherwise the real prices when known (managing's price cache, or ``prices.file``), else None
    (tomorrow's before they are published). Each day says its ``source`` (``fixed``, ``esios``,
    ``pvpc_public``, ``file``, or None when unknown); the top-level ``source`` is
    ``prices.source``. ``min_run``: managing's published plan of the daily minimum run, per load
    the starts (ISO) of the periods it chose (:meth:`gestor.core.control.Controller.min_run_plan`)."""
    from gestor.tariff.calendar import period_2_0td
    from gestor.tariff.prices import mean_over
    tz, t = s.tz, s.tariff
    days = []
    for d in (day, day + timedelta(days=1)):
        a, b = day_bounds(d, tz)
        real = None if s.prices.source == "fixed" else _real_slots(s, d)
        hours = []
        n = round((b - a).total_seconds() / 3600)
        for k in range(n):
            h0 = a + timedelta(hours=k)
            per = period_2_0td(h0, tz)
            if s.prices.source == "fixed":
                imp, sur = t.import_eur_per_kwh(per), t.surplus_eur_per_kwh
            elif real is not None:
                imp = mean_over(real[0], h0.timestamp(), h0.timestamp() + 3600)
                sur = mean_over(real[1], h0.timestamp(), h0.timestamp() + 3600) if real[1] else None
                if sur is None and imp is not None:
                    sur = t.surplus_eur_per_kwh  # no surplus prices (pvpc_public without a token): the fixed one
            else:
                imp = sur = None
            hours.append({"start": h0.astimezone(tz).isoformat(), "period": per, "import_eur_per_kwh": imp,
                          "surplus_eur_per_kwh": sur})
        src = "fixed" if s.prices.source == "fixed" else (real[2] if real is not None else None)
        if src == "file" and all(h["import_eur_per_kwh"] is None for h in hours):
            src = None
        days.append({"date": d.isoformat(), "source": src, "hours": hours})
    return {"tariff_period_now": period_2_0td(now, tz), "source": s.prices.source, "days": days,
            "min_run": min_run or {}}


def min_run_published(s: Settings) -> dict[str, list[str]]:
    """managing's published daily-minimum plan (``min_run`` in ``run_dir/managing.json``): per
    load, the starts (ISO) of the periods chosen; {} when managing does not publish one."""
    from gestor.runtime.livestate import read_managing
    d = read_managing(s.paths.run_dir) or {}
    plan = d.get("min_run")
    if not isinstance(plan, dict):
        return {}
    return {str(k): [str(x) for x in v][:200] for k, v in plan.items() if isinstance(v, list)}


# -- decisions --------------------------------------------------------------------------------
def decisions_of(h: History, day: date, today: date, load: str | None) -> list[dict[str, Any]]:
    """``GET /api/decisions``: the local ``day``'s ``decision`` points (raw retention), newest
    first, at most :data:`MAX_DECISIONS`: ``at`` (ISO, UTC), ``load``, ``on``, ``reason``,
    ``ok``, ``error`` (None when it worked). ``load``: only that load's (a name the caller
    checked). Raises HistoryError."""
    s = h.s
    a, b = day_bounds(day, s.tz)
    where = f"site = '{s.site}' AND time >= '{_t(a)}' AND time < '{_t(b)}'"
    if load is not None:
        where += f" AND \"load\" = '{load}'"
    q = (f'SELECT "on", "reason", "ok", "error", "load" FROM "decision" WHERE {where} '
         f"ORDER BY time DESC LIMIT {MAX_DECISIONS}")

    def build() -> list[dict[str, Any]]:
        return [{"at": datetime.fromtimestamp(r["time"], UTC).isoformat(), "load": r.get("load"),
                 "on": bool(r.get("on")), "reason": r.get("reason") or "", "ok": r.get("ok") is not False,
                 "error": r.get("error") or None} for r in h._query(q)]

    return h._cached(("decisions", day, load), build, fresh=day >= today - timedelta(days=1))
