"""The distributor's hourly curve from the Datadis API (datadis.es, the distributors' common data
platform), with ``requests`` through :class:`drivers.http.Device` (a total deadline and a capped
body on every request).

Why not the ``datadis`` library (PyPI 1.0.1, its last release): it pins ``httpx>=0.19,<0.24``
(its METADATA), while gestor's environment has httpx 0.29 (Home Assistant and pysma-plus need a
recent one), it is asyncio-only and its endpoints are fixed to https://datadis.es (no base URL to
point a test at). Its endpoints and answer types (``datadis/__init__.py``, ``datadis/types.py``)
match Datadis' published API, which this module follows (as extracted in
TacoronteRiveroCristian/ctr-datadis, "Datadis API Reference Documentation", from Datadis'
doc-api):

* ``POST /nikola-auth/tokens/login`` (form ``username`` = the holder's NIF, ``password``): the
  bearer token as the body's text;
* ``GET /api-private/api/get-supplies[?authorizedNif=]``: a list of supplies, each with ``cups``,
  ``distributorCode``, ``pointType``;
* ``GET /api-private/api/get-consumption-data?cups&distributorCode&startDate=YYYY/MM&endDate=YYYY/MM
  &measurementType=0&pointType``: a list of hours, each ``cups``, ``date`` (``YYYY/MM/DD``),
  ``time`` (``HH:MM``, hour-ending, ``01:00``..``24:00``), ``consumptionKWh``, ``obtainMethod``
  (``Real``/``Estimada``), ``surplusEnergyKWh``.

The hours go through the same checks as a file (:func:`gestor.bill.distributor.assemble`); a last
day the distributor has not finished publishing is left for the next fetch.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gestor.bill.distributor import (DistributorError, HourRecord, RawRow, assemble, day_of, hour_label,
                                     method_of, number)
from gestor.core.balance import periods_of_day

if TYPE_CHECKING:
    from gestor.settings.distributor import DistributorSettings

LOGIN = "/nikola-auth/tokens/login"
SUPPLIES = "/api-private/api/get-supplies"
CONSUMPTION = "/api-private/api/get-consumption-data"
MAX_TOKEN_BYTES = 16 * 1024   # a JWT is about 1 kB


def months(first: date, last: date) -> list[str]:
    """The months ``first``..``last`` touch, as Datadis writes them (``YYYY/MM``): one request
    each, so an answer stays about 150 kB (744 hours), well within the 1 MB bound of
    :class:`drivers.http.Device`."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}/{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


class Datadis:
    """One Datadis session for a holder (``s``: :class:`gestor.settings.distributor.DistributorSettings`).

    Raises DistributorError (a sentence naming the request) on a refused login, an unknown CUPS,
    an answer of another shape, no answer within ``s.timeout_s``."""

    def __init__(self, s: DistributorSettings) -> None:
        from drivers import secret
        from drivers.http import Device
        self.s = s
        self.url = s.datadis_url
        self._nif, self._password = secret(s.nif), secret(s.password)
        self.dev = Device(headers={"User-Agent": "gestor"})
        self.token: str | None = None

    def close(self) -> None:
        self.dev.close()

    def login(self) -> str:
        import time

        import requests
        url = self.url + LOGIN
        deadline = time.monotonic() + self.s.timeout_s   # in all: a server dripping bytes cannot hold it
        body = b""
        try:
            with self.dev.session.post(url, data={"username": self._nif, "password": self._password},
                                       timeout=self.s.timeout_s, stream=True) as r:
                status = r.status_code
                while len(body) <= MAX_TOKEN_BYTES:
                    chunk = r.raw.read1(1024)  # what has arrived: no wait for a full chunk
                    if not chunk:
                        break
                    body += chunk
                    if time.monotonic() > deadline:
                        raise DistributorError(f"Datadis login at {url}: no whole answer within {self.s.timeout_s:g} s")
        except requests.RequestException as e:
            raise DistributorError(f"Datadis login at {url}: {type(e).__name__} (unreachable or no answer "
                                   f"within {self.s.timeout_s:g} s)") from None
        if status in (401, 403):
            raise DistributorError(f"Datadis refused the login (HTTP {status}): check distributor.nif and "
                                   "distributor.password in secrets.yaml (the holder's Datadis login)")
        if status != 200 or len(body) > MAX_TOKEN_BYTES or not body.strip():
            raise DistributorError(f"Datadis login at {url}: HTTP {status}, {len(body)} bytes: expected a token")
        self.token = body.decode("ascii", "replace").strip().strip('"')
        self.dev.session.headers["Authorization"] = f"Bearer {self.token}"
        return self.token

    def _get(self, path: str, params: dict[str, str]) -> Any:
        from urllib.parse import urlencode

        from drivers.http import HttpError
        if self.token is None:
            self.login()
        url = f"{self.url}{path}?{urlencode(params)}" if params else self.url + path
        try:
            return self.dev.get_json(url, self.s.timeout_s)
        except HttpError as e:
            raise DistributorError(f"Datadis {path}: {e}") from None

    def supply(self, cups: str) -> dict:
        """The supply ``cups`` among the login's (its ``distributorCode`` and ``pointType``)."""
        params = {"authorizedNif": self.s.authorized_nif} if self.s.authorized_nif else {}
        ans = self._get(SUPPLIES, params)
        if not isinstance(ans, list):
            raise DistributorError(f"Datadis {SUPPLIES}: expected a list of supplies, got {type(ans).__name__}")
        for sup in ans:
            if isinstance(sup, dict) and str(sup.get("cups", "")).upper()[:20] == cups[:20]:
                if "distributorCode" not in sup or "pointType" not in sup:
                    raise DistributorError(f"Datadis {SUPPLIES}: supply {cups} without distributorCode/pointType")
                return sup
        found = ", ".join(str(x.get("cups")) for x in ans if isinstance(x, dict)) or "none"
        raise DistributorError(f"Datadis: CUPS {cups} (distributor.cups) is not a supply of this login "
                               f"(it has: {found})")

    def hours(self, first: date, last: date, tz: ZoneInfo) -> list[HourRecord]:
        """The hours of the local days ``first``..``last`` that Datadis has (whole days only: a
        last day still incomplete is left out; a hole inside is an error)."""
        sup = self.supply(self.s.cups)
        rows: list[RawRow] = []
        for month in months(first, last):
            params = {"cups": self.s.cups, "distributorCode": str(sup["distributorCode"]), "startDate": month,
                      "endDate": month, "measurementType": "0", "pointType": str(sup["pointType"])}
            if self.s.authorized_nif:
                params["authorizedNif"] = self.s.authorized_nif
            ans = self._get(CONSUMPTION, params)
            if not isinstance(ans, list):
                raise DistributorError(f"Datadis {CONSUMPTION}: expected a list of hours, got {type(ans).__name__}")
            rows += parse_consumption(ans, len(rows))
        rows = [r for r in rows if first <= r.day <= last]
        if rows:  # the last day may still be coming in
            lastday = rows[-1].day
            n = len(periods_of_day(datetime(lastday.year, lastday.month, lastday.day, 12, tzinfo=tz), 3600, tz))
            if sum(1 for r in rows if r.day == lastday) < n:
                rows = [r for r in rows if r.day != lastday]
        return assemble(rows, tz, f"Datadis {CONSUMPTION}", self.s.cups) if rows else []


def parse_consumption(ans: list, before: int = 0) -> list[RawRow]:
    """Datadis' get-consumption-data answer → rows (``line``: the item's position, 1-based, after
    ``before`` items of earlier answers). Raises DistributorError naming the item and the field."""
    out = []
    for i, item in enumerate(ans, before + 1):
        where = f"Datadis {CONSUMPTION} item {i}"
        if not isinstance(item, dict):
            raise DistributorError(f"{where}: expected an object, got {type(item).__name__}")
        try:
            cups, day, time_, kwh, meth = (item[k] for k in ("cups", "date", "time", "consumptionKWh", "obtainMethod"))
        except KeyError as e:
            raise DistributorError(f"{where}: no {e.args[0]!r} (expected cups, date, time, consumptionKWh, "
                                   f"obtainMethod[, surplusEnergyKWh])") from None
        sur = item.get("surplusEnergyKWh")
        out.append(RawRow(str(cups).upper(), day_of(str(day), where), hour_label(str(time_), where),
                          number(str(kwh), where, "consumptionKWh") * 1000.0,
                          None if sur is None else number(str(sur), where, "surplusEnergyKWh") * 1000.0,
                          method_of(str(meth), where), i))
    return out
