"""What the web page shows, as plain dicts (the JSON of ``/api/status`` and ``/api/day``).

Live state comes from the files the daemons publish, through :func:`gestor.runtime.status.collect` (the
same numbers ``gestor status`` prints); history comes from InfluxDB 1.x (``store.kind``
``influxdb1`` or ``auto``): the ``period`` measurement managing writes when a settlement period
closes, and the ``meter`` measurement monitoring writes at each read. Signs as everywhere
(DESIGN.md section 2): ``net_w`` and ``balance_wh`` are export-positive.

"Without gestor" for a period is ``balance_wh + loads_wh``: the same period had the loads'
energy not been drawn (what ``gestor simulate`` and the demo count).
"""
from __future__ import annotations

import csv
import io
import json
import threading
import time
from datetime import date, datetime, timezone
from typing import Any, Callable

from drivers.store.influx import FOREVER_RP
from gestor.runtime.overrides import read_overrides
from gestor.tariff.prices import day_bounds
from gestor.runtime.status import collect, ping_store
from gestor.settings import Settings

PERIOD_FIELDS = ("balance_wh", "import_wh", "export_wh", "production_wh", "consumption_wh", "loads_wh",
                 "complete", "covered_s", "cost_eur", "cost_without_eur")


class HistoryError(Exception):
    """InfluxDB could not be asked (the message says why)."""


def power_words(net_w: float | None) -> str:
    """``net_w`` (export-positive) in words: "exporting 1.2 kW", "importing 350 W", "balanced"."""
    if net_w is None:
        return "no reading"
    mag = abs(net_w)
    amount = f"{mag / 1000:.1f} kW" if mag >= 1000 else f"{mag:.0f} W"
    if mag < 0.5:
        return "balanced"
    return f"{'exporting' if net_w > 0 else 'importing'} {amount}"


class History:
    """Reads InfluxDB 1.x with the ``influxdb`` client (imported here only); answers for today
    are kept ``cache_s`` so that several open pages do not each query every few seconds."""

    def __init__(self, s: Settings, cache_s: float = 30.0) -> None:
        self.s = s
        self.cache_s = cache_s
        self._cache: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _query(self, q: str) -> list[dict]:
        """One InfluxQL query over InfluxDB 1.x's HTTP API (``GET /query``, epoch seconds) with
        requests: the ``influxdb`` client would import pandas where it is installed (+85 MB)."""
        st = self.s.store
        if st.kind not in ("influxdb1", "auto"):
            raise HistoryError(f"history needs InfluxDB 1.x (store.kind is {st.kind})")
        import requests

        from drivers import secret
        auth = (st.username, secret(st.password) or "") if st.username else None
        try:
            r = requests.get(f"{st.url}/query", params={"db": st.database, "q": q, "epoch": "s"}, auth=auth,
                             timeout=st.timeout_s)
        except requests.RequestException:
            raise HistoryError(f"InfluxDB at {st.host}:{st.port} does not answer") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        err = body.get("error") or next((x.get("error") for x in body.get("results", []) if x.get("error")), None)
        if r.status_code != 200 or err:
            raise HistoryError(f"InfluxDB at {st.host}:{st.port}: HTTP {r.status_code}: {str(err or r.text)[:160]}")
        rows: list[dict] = []
        for res in body.get("results", []):
            for series in res.get("series", []):
                cols = series["columns"]
                rows.extend(dict(zip(cols, v)) for v in series.get("values", []))
        return rows

    def _cached(self, key: Any, fn, fresh: bool) -> Any:
        """``fn()``, or its answer of less than ``cache_s`` ago (today), of less than 10 min ago
        (a past day: points replayed from a spool after an outage still show up)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < (self.cache_s if fresh else 600.0):
                return hit[1]
        value = fn()
        with self._lock:
            self._cache[key] = (now, value)
            if len(self._cache) > 64:
                self._cache.pop(next(iter(self._cache)))
        return value

    def periods(self, day: date, today: date) -> list[dict]:
        """The day's closed settlement periods, oldest first: ``start`` (ISO, UTC), ``label``
        (local HH:MM), the :data:`PERIOD_FIELDS` and ``without_wh``. Raises HistoryError."""
        a, b = day_bounds(day, self.s.tz)
        q = (f"SELECT * FROM period WHERE site = '{self.s.site}' AND time >= '{a:%Y-%m-%dT%H:%M:%SZ}' "
             f"AND time < '{b:%Y-%m-%dT%H:%M:%SZ}' ORDER BY time")
        rows = self._cached(("periods", day), lambda: self._query(q) or self._summaries(a, b), fresh=day >= today)
        out = []
        for r in rows:
            start = datetime.fromtimestamp(r["time"], timezone.utc)
            p = {"start": start.isoformat(), "label": start.astimezone(self.s.tz).strftime("%H:%M")}
            p.update({k: r.get(k) for k in PERIOD_FIELDS})
            bal, loads = r.get("balance_wh"), r.get("loads_wh") or 0.0
            p["without_wh"] = None if bal is None else bal + loads
            out.append(p)
        return out

    def _summaries(self, a: datetime, b: datetime) -> list[dict]:
        """The periods of [a, b) from the ``forever`` retention policy (``gestor db-init``'s
        continuous query keeps ``last_<field>`` per period there after the raw points expire,
        ``store.raw_retention``), with the ``last_`` prefix taken off; [] where there is none."""
        q = (f"SELECT * FROM \"{FOREVER_RP}\".\"period\" WHERE site = '{self.s.site}' AND time >= '{a:%Y-%m-%dT%H:%M:%SZ}' "
             f"AND time < '{b:%Y-%m-%dT%H:%M:%SZ}' ORDER BY time")
        try:
            rows = self._query(q)
        except HistoryError as e:
            if "retention policy not found" in str(e):
                return []
            raise
        return [{(k[5:] if k.startswith("last_") else k): v for k, v in r.items()} for r in rows]

    def curves(self, day: date, today: date, every_s: int = 60) -> dict[str, list]:
        """The day's power curves, mean per ``every_s``: ``t`` (epoch s), ``net_w``,
        ``production_w``, ``consumption_w`` (None where no reading). Raises HistoryError."""
        a, b = day_bounds(day, self.s.tz)
        q = (f"SELECT mean(net_w) AS net_w, mean(production_w) AS production_w, mean(consumption_w) AS "
             f"consumption_w FROM meter WHERE site = '{self.s.site}' AND time >= '{a:%Y-%m-%dT%H:%M:%SZ}' "
             f"AND time < '{b:%Y-%m-%dT%H:%M:%SZ}' GROUP BY time({every_s}s) fill(none)")
        rows = self._cached(("curves", day, every_s), lambda: self._query(q), fresh=day >= today)
        return {"t": [r["time"] for r in rows], "net_w": [r.get("net_w") for r in rows],
                "production_w": [r.get("production_w") for r in rows],
                "consumption_w": [r.get("consumption_w") for r in rows]}


# the day CSV's columns in words (es/ca: translated by the caller; en keeps the field names)
DAY_HEADERS = ("Period start (local)", "Period start (UTC)", "Balance (Wh)", "Without gestor (Wh)", "Import (Wh)",
               "Export (Wh)", "Production (Wh)", "Consumption (Wh)", "Loads (Wh)", "Complete", "Covered (s)",
               "Cost with gestor (EUR)", "Cost without gestor (EUR)")


def periods_csv(periods: list[dict], s: Settings, lang: str = "en",
                words: Callable[[str], str] | None = None) -> str:
    """The day's periods as CSV: local and UTC start, then the stored fields (Wh, EUR). English:
    the field names as headers, ``,`` and ``.`` (as before: scripts read it). es/ca: the headers
    in words (``words``: :data:`DAY_HEADERS` and "yes"/"no" in the language), ``;``, a decimal
    comma, booleans as words, and a BOM (a Spanish spreadsheet opens it right)."""
    local = lang in ("es", "ca") and words is not None
    out = io.StringIO()
    w = csv.writer(out, delimiter=";" if local else ",", lineterminator="\n")

    def cell(v: Any) -> Any:
        if not local or v is None:
            return v
        if isinstance(v, bool):
            return words("yes") if v else words("no")
        if isinstance(v, (int, float)):
            return f"{v:.4f}".rstrip("0").rstrip(".").replace(".", ",") if isinstance(v, float) else str(v)
        return v

    w.writerow([words(h) for h in DAY_HEADERS] if local and words else
               ["period_start_local", "period_start_utc", "balance_wh", "without_gestor_wh", *PERIOD_FIELDS[1:]])
    for p in periods:
        start = datetime.fromisoformat(p["start"])
        w.writerow([start.astimezone(s.tz).isoformat(), start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    *(cell(v) for v in (p["balance_wh"], p["without_wh"], *(p.get(k) for k in PERIOD_FIELDS[1:])))])
    return ("\ufeff" if local else "") + out.getvalue()


def live(s: Settings, now: datetime, history: History, store_ping: dict) -> dict[str, Any]:
    """The page's live state at ``now``: the meter in words, the period and its projection, each
    load, today's periods and euros, the stop latch and the daemons (the banners they make, in the
    request's language, are :func:`gestor.web.i18n.banners`)."""
    d = collect(s, now, ping=False)
    r = d["reading"]
    stale = r is None or r["stale"]
    out: dict[str, Any] = {"at": now.isoformat(), "site": s.site, "timezone": s.timezone}
    out["meter"] = {"net_w": r and r["net_w"], "words": power_words(r and r["net_w"]),
                    "production_w": r and r.get("production_w"), "consumption_w": r and r.get("consumption_w"),
                    "age_s": r and r["age_s"], "stale": stale}
    p = d["period"]
    if p:
        tz = s.tz
        p = {**p, "label": f"{datetime.fromisoformat(p['start']).astimezone(tz):%H:%M}-"
                           f"{datetime.fromisoformat(p['end']).astimezone(tz):%H:%M}"}
    out["period"] = p
    ovs = read_overrides(s.paths.state_dir, now, move_aside=False)
    loads = []
    for ld in s.loads:
        st = d["loads"].get(ld.name) or {}
        ov = ovs.get(ld.name)
        loads.append({"name": ld.name, "power_w": ld.power_w, "on": st.get("on"), "reason": st.get("reason"),
                      "since": st.get("since"), "switches_today": st.get("switches_today"),
                      "failures": st.get("failures", 0),
                      "mode": "auto" if ov is None else ("on" if ov.on else "off"),
                      "override": None if ov is None else ov.describe(s.tz),
                      "override_until": ov.until.isoformat() if ov is not None and ov.until else None})
    out["loads"] = loads
    out["latch"] = d["stop_latch"]
    out["daemons"] = {"monitoring": d["monitoring"]["running"], "managing": d["managing"]["running"]}
    out["eur_saved_today"] = d["managing"].get("eur_saved_today")
    today = now.astimezone(s.tz).date()
    try:
        periods = history.periods(today, today)
        out["today"] = {"date": today.isoformat(), "periods": periods, "error": None}
    except HistoryError as e:
        out["today"] = {"date": today.isoformat(), "periods": [], "error": str(e)}
    return out


class StorePing:
    """InfluxDB's ``/ping``, asked at most every ``every_s`` (the page polls more often)."""

    def __init__(self, s: Settings, every_s: float = 30.0) -> None:
        self.s, self.every_s = s, every_s
        self._at: float | None = None
        self._value: dict = {}

    def __call__(self) -> dict:
        if self.s.store.kind == "none":
            return {}
        now = time.monotonic()
        if self._at is None or now - self._at >= self.every_s:
            self._value = ping_store(self.s)
            self._at = now
        return self._value

