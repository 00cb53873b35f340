"""Red Eléctrica's price answers in their real shapes, and a loopback server for them.

The builders make answers with our own numbers in the exact shape of real answers that other
projects stored as test fixtures (same keys, nesting, order quirks and number formats):

* :func:`indicator_answer` (ESIOS ``/indicators/1001`` and ``/1739``) copies the shape of aiopvpc
  ``tests/api_examples/PRICES_ESIOS_1001_2021_10_31.json`` (PVPC, the 25-hour day: all five
  geo ids 8741 Península, 8742 Canarias, 8743 Baleares, 8744 Ceuta, 8745 Melilla in one answer,
  in a varying order within each hour; ``value`` a JSON number in EUR/MWh with two decimals;
  ``datetime`` local time with its offset and milliseconds; ``tz_time`` UTC with milliseconds;
  ``datetime_utc`` UTC without, and **wrong on the repeated hour**: ``2021-10-31T02:00:00.000+01:00``
  has ``datetime_utc`` ``2021-10-31T00:00:00Z``, the first 02:00's) and of
  ``PRICES_ESIOS_1739_2024_03_09.json`` (surplus: one geo, 3 España, ``disaggregated`` false;
  20 of 24 hours negative that day). Home Assistant core's
  ``tests/components/pvpc_hourly_pricing/fixtures/PRICES_ESIOS_1001_2023_01_06.json`` has the
  same shape.
* Quarter-hours: no stored real answer of a 15-minute ESIOS indicator was found (searched
  aiopvpc, its forks and HA core's fixtures). :func:`indicator_answer` with ``slot_s=900`` keeps
  the hourly answer's shape and steps the times by 15 minutes; its ``tiempo`` entry
  (``Quince minutos``) is our guess, and gestor does not read it.
* :func:`archive_answer` (the public PVPC day file ``/archives/70/download_json``, no token)
  copies the shape of aiopvpc ``tests/api_examples/PVPC_CURV_DD_2021_10_31.json`` (``Hora``
  "00-01" .. "24-25" on the 25-hour day) and ``PVPC_CURV_DD_2022_03_27.json`` (the 23-hour day:
  no "02-03"): every field a string, EUR/MWh with a decimal comma and two decimals,
  ``COF2TD`` with eighteen.
"""
from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

MAD = ZoneInfo("Europe/Madrid")
UTC = timezone.utc
GEOS = [(8741, "Península"), (8742, "Canarias"), (8743, "Baleares"), (8744, "Ceuta"), (8745, "Melilla")]
SPAIN = [(3, "España")]
NAMES = {1001: ("Término de facturación de energía activa del PVPC 2.0TD", "PVPC T. 2.0TD", True),
         1739: ("Precio de la energía excedentaria del autoconsumo para el mecanismo de compensación "
                "simplificada (PVPC)", "Precio de la energía excedentaria", False)}


def slots(day: date, slot_s: int) -> list[datetime]:
    """The UTC starts of REE's day ``day`` (Madrid's clock) in ``slot_s`` steps."""
    a = datetime(day.year, day.month, day.day, tzinfo=MAD).astimezone(UTC)
    b = datetime.combine(day + timedelta(days=1), datetime.min.time(), MAD).astimezone(UTC)
    return [a + timedelta(seconds=slot_s * k) for k in range(int((b - a).total_seconds() // slot_s))]


def import_value(k: int, geo: int) -> float:
    """Our EUR/MWh for slot ``k`` of the day in zone ``geo``: distinct per slot and per zone."""
    return round(100.0 + k + 0.25 + (geo - 8741) * 100.0, 2)


def surplus_value(k: int, day: date) -> float:
    """Our 1739 EUR/MWh: as on 2024-03-09, 20 of 24 hours negative (19-22 h positive) on that
    day; positive on the others."""
    if day == date(2024, 3, 9):
        return round(1.5 + 0.1 * k, 2) if 19 <= k <= 22 else round(-1.0 - 0.05 * k, 2)
    return round(40.0 + k + 0.5, 2)


def _ms(t: datetime) -> str:
    """``2021-10-31T02:00:00.000+01:00`` (or ``...000Z`` in UTC), as ESIOS writes times."""
    s = t.isoformat(timespec="milliseconds")
    return s.replace("+00:00", "Z") if t.utcoffset() == timedelta(0) else s


def value_row(t: datetime, value: float, geo: int, name: str) -> dict:
    local = t.astimezone(MAD)
    # ESIOS's datetime_utc: the local wall time read with the first offset of an ambiguous hour
    wrong = local.replace(tzinfo=None).replace(tzinfo=MAD, fold=0).astimezone(UTC)
    return {"value": value, "datetime": _ms(local), "datetime_utc": wrong.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tz_time": _ms(t.astimezone(UTC)), "geo_id": geo, "geo_name": name}


def indicator_answer(indicator: int, days: list[date], slot_s: int = 3600, start: datetime | None = None,
                     end: datetime | None = None, value: Callable[[int, int, date], float] | None = None) -> dict:
    """An ESIOS indicator answer for the REE ``days`` (values between ``start`` and ``end``,
    inclusive, as the API's range filter), all five zones for 1001, España for 1739."""
    name, short, disaggregated = NAMES[indicator]
    geos = GEOS if indicator == 1001 else SPAIN
    if value is None:
        value = (lambda k, g, d: import_value(k, g)) if indicator == 1001 else (lambda k, g, d: surplus_value(k, d))
    values = []
    for d in days:
        for k, t in enumerate(slots(d, slot_s)):
            if (start is not None and t < start) or (end is not None and t > end):
                continue
            order = geos[k % len(geos):] + geos[:k % len(geos)]   # the real answers' varying zone order
            values += [value_row(t, value(k, g, d), g, n) for g, n in order]
    updated = datetime.combine(days[0] - timedelta(days=1), datetime.min.time(), MAD) + timedelta(hours=20, minutes=16)
    return {"indicator": {
        "name": name, "short_name": short, "id": indicator, "composited": False, "step_type": "linear",
        "disaggregated": disaggregated, "magnitud": [{"name": "Precio", "id": 23}],
        "tiempo": [{"name": "Hora", "id": 4}] if slot_s == 3600 else [{"name": "Quince minutos", "id": 218}],
        "geos": [{"geo_id": g, "geo_name": n} for g, n in geos],
        "values_updated_at": _ms(updated), "values": values}}


def _comma(x: float, places: int = 2) -> str:
    return f"{x:.{places}f}".replace(".", ",")


def archive_answer(day: date) -> dict:
    """The public PVPC day file of REE's ``day``: a row per hour, ``Hora`` as REE writes it."""
    rows = []
    for k, t in enumerate(slots(day, 3600)):
        n = len(slots(day, 3600))
        h = k if n != 23 else t.astimezone(MAD).hour            # 23-hour day: clock hours, no "02-03"
        pcb = 150.0 + k + 0.37
        cym = pcb + 5.0
        row = {"Dia": day.strftime("%d/%m/%Y"), "Hora": f"{h:02d}-{h + 1:02d}", "PCB": _comma(pcb),
               "CYM": _comma(cym), "COF2TD": _comma(0.00008 + k * 1e-6, 18)}
        for part, v in (("PMH", pcb - 20), ("SAH", 8.03), ("FOM", 0.03), ("FOS", 0.17), ("INT", 0.0),
                        ("PCAP", 0.0), ("TEU", 0.92), ("CCV", 3.5), ("EDSR", 0.0)):
            row[f"{part}PCB"], row[f"{part}CYM"] = _comma(v), _comma(v + (5.0 if part == "PMH" else 0.0))
        rows.append(row)
    return {"PVPC": rows}


class EsiosServer:
    """ESIOS on loopback (HTTP, or HTTPS with ``tls=(cert, key)``): ``/indicators/<id>`` (token in
    ``x-api-key``) answers the REE days its ``start_date``/``end_date`` cover, published up to
    ``published_until``; ``/archives/70/download_json?date=D`` (no token) the day file.
    Faults: ``fail_1739`` ("404", "500", "empty"), ``edit_1001(values)`` rewrites the value rows,
    ``edit_archive(body)`` the day file."""

    def __init__(self, token: str, tls: tuple[str, str] | None = None) -> None:
        self.token = token
        self.slot_1001 = 3600
        self.slot_1739 = 3600
        self.published_until: date | None = None
        self.fail_1739: str | None = None
        self.edit_1001: Callable[[list[dict]], list[dict]] | None = None
        self.edit_archive: Callable[[dict], dict] | None = None
        self.requests: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                code, body = outer.route(self)
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"

    def _published(self, d: date) -> bool:
        return self.published_until is None or d <= self.published_until

    def route(self, h: BaseHTTPRequestHandler) -> tuple[int, dict]:
        u = urlparse(h.path)
        q = parse_qs(u.query)
        if u.path == "/archives/70/download_json":
            d = date.fromisoformat(q["date"][0])
            if not self._published(d):
                return 200, {"message": "No values for specified archive"}
            body = archive_answer(d)
            return 200, self.edit_archive(body) if self.edit_archive else body
        if not u.path.startswith("/indicators/"):
            return 404, {"message": "not found"}
        if h.headers.get("x-api-key") != self.token:
            return 401, {"message": "HTTP Token: Access denied."}
        ind = int(u.path.rsplit("/", 1)[1])
        start = datetime.fromisoformat(q["start_date"][0])
        end = datetime.fromisoformat(q["end_date"][0])
        if ind == 1739 and self.fail_1739 in ("404", "500"):
            return int(self.fail_1739), {"message": "error"}
        d0, d1 = start.astimezone(MAD).date(), end.astimezone(MAD).date()
        days = [d0 + timedelta(days=i) for i in range((d1 - d0).days + 1)]
        days = [d for d in days if self._published(d)]
        if not days or (ind == 1739 and self.fail_1739 == "empty"):
            return 200, indicator_answer(ind, [d0], start=start, end=start - timedelta(seconds=1))
        body = indicator_answer(ind, days, self.slot_1001 if ind == 1001 else self.slot_1739, start, end)
        if ind == 1001 and self.edit_1001:
            body["indicator"]["values"] = self.edit_1001(body["indicator"]["values"])
        return 200, body

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
