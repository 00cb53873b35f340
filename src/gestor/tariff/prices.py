"""Real prices from Red Eléctrica: the PVPC 2.0TD active-energy price (ESIOS indicator 1001, or
the public PVPC day file without a token) and the price of surplus energy for simplified
compensation (indicator 1739), per hour or per quarter-hour as published, in EUR/MWh in the
answers and EUR/kWh here.

Two sources (``prices.source``):

* ``esios``: the API with a token (``x-api-key``), one GET per indicator and day:
  ``{esios_url}/indicators/1001?start_date=..&end_date=..&geo_ids[]=G`` and ``/indicators/1739``.
  The answer is ``{"indicator": {..., "values": [{"value": 171.48, "datetime":
  "2021-10-31T02:00:00.000+01:00", "datetime_utc": "2021-10-31T00:00:00Z", "tz_time":
  "2021-10-31T01:00:00.000Z", "geo_id": 8741, "geo_name": "Península"}, ...]}}``: one value per
  slot and zone (1001: all five zones in one answer, geo_id 8741 Península, 8742 Canarias, 8743
  Baleares, 8744 Ceuta, 8745 Melilla; 1739: geo_id 3 España), ``value`` a JSON number in EUR/MWh
  (negative 1739 values occur). Format from real answers stored as test fixtures by peers:
  aiopvpc ``tests/api_examples/PRICES_ESIOS_1001_2021_10_31.json`` (the 25-hour day),
  ``PRICES_ESIOS_1739_2024_03_09.json`` (negative surplus prices), Home Assistant core
  ``tests/components/pvpc_hourly_pricing/fixtures/PRICES_ESIOS_1001_2023_01_06.json``; geo ids
  from aiopvpc ``aiopvpc/const.py`` (``GEOZONE_ID2NAME``).
  **Each slot's time is read from ``datetime``** (local time with its offset): on the autumn DST
  day ESIOS's ``datetime_utc`` repeats 00:00Z for the second 02:00 hour.
* ``pvpc_public``: no token. The day file REE's PVPC page serves,
  ``{esios_url}/archives/70/download_json?locale=es&date=YYYY-MM-DD`` (aiopvpc
  ``aiopvpc/const.py`` ``URL_PUBLIC_PVPC_RESOURCE``, used by Home Assistant's
  ``pvpc_hourly_pricing``): ``{"PVPC": [{"Dia": "31/10/2021", "Hora": "00-01", "PCB": "171,48",
  "CYM": "171,48", ...}, ...]}``, one row per hour in order, prices as text in EUR/MWh with a
  decimal comma, ``PCB`` for the peninsula, Canarias and Baleares and ``CYM`` for Ceuta and
  Melilla. ``Hora`` counts positions on the 25-hour day ("24-25" last) and skips "02-03" on the
  23-hour one. Format from aiopvpc ``tests/api_examples/PVPC_CURV_DD_2021_10_31.json`` and
  ``PVPC_CURV_DD_2022_03_27.json`` and its parser ``aiopvpc/parser.py``
  (``extract_prices_from_esios_public``). Import prices only: the surplus price comes from 1739
  when a token is set, else from ``tariff.surplus_eur_per_kwh``.

Every request goes through :class:`drivers.http.Device` (TLS verified against the system's CAs,
a total deadline, a 1 MB answer cap), two retries on a failure that is not an answer (timeout,
5xx), none on 401/403/404.

**Zones and clocks.** REE publishes every zone's day on the peninsula's clock (Europe/Madrid),
and PVPC prices apply by local clock hour: the Canary Islands pay the price published for 18:00
at 18:00 Canary time (aiopvpc ``_timezone_offset``). So the REE day D is always asked, checked
on Madrid's clock, and its k-th slot becomes the k-th slot of the local day D of ``timezone``
(Atlantic/Canary: one hour later in UTC). Both clocks change on the same UTC instant, so the
local day has the same slots; settings refuse a ``prices.zone`` whose clock is not
``timezone``'s (:func:`zone_timezones`). Tomorrow's Canary day is then REE's tomorrow, complete
at 20:15 Madrid time.

A day is valid when its slots cover the day exactly: 24 hours (23 or 25 on DST days) or 96
quarter-hours (92 or 100), each once; a refusal says what is wrong (a slot missing, two slots at
the same time). A missing or invalid 1739 day keeps the valid import day and uses the fixed
surplus price for it (logged; ``surplus_source`` ``fixed``). Negative 1739 values are kept as
published: the bill values each hour's surplus at that hour's price (RD 244/2019 art. 14.3), so
exporting in a negative hour lowers the month's compensation (see README "Real prices").

Valid days are kept in ``state_dir/prices/YYYY-MM-DD.json`` so that a restart or an offline Pi
still has them, and stored in InfluxDB (measurement ``price``, tags ``kind`` = import | surplus
and ``source`` = esios | pvpc_public | fixed, field ``eur_per_kwh``, at each slot's start).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from gestor.core.balance import settled_wh
from gestor.settings import FETCHED_SOURCES, PricesSettings  # noqa: F401 -- FETCHED_SOURCES: re-exported
from gestor.tariff.calendar import zone_timezones  # noqa: F401 -- re-exported

if TYPE_CHECKING:
    from gestor.settings import Settings

log = logging.getLogger("gestor.prices")
UTC = timezone.utc
REE_TZ = ZoneInfo("Europe/Madrid")  # the clock REE publishes every zone's day on
IMPORT_INDICATOR = 1001   # PVPC: término de energía activa, peaje 2.0TD
SURPLUS_INDICATOR = 1739  # precio de la energía excedentaria del autoconsumo para compensación simplificada
# geo_id of each zone in indicator 1001 (aiopvpc const.py GEOZONE_ID2NAME; 3 is España, 1739's)
GEO_IDS = {"peninsula": 8741, "canarias": 8742, "baleares": 8743, "ceuta": 8744, "melilla": 8745}
# the public PVPC day file's price column of each zone (PCB: Península, Canarias, Baleares)
ARCHIVE_KEYS = {"peninsula": "PCB", "canarias": "PCB", "baleares": "PCB", "ceuta": "CYM", "melilla": "CYM"}
ARCHIVE_PATH = "/archives/70/download_json"


class PriceError(Exception):
    """Prices could not be had; the message says why in one line."""


@dataclass
class DayPrices:
    """One local day: ``import_``/``surplus`` per slot, (UTC start, EUR/kWh), slot ``slot_s``;
    ``source`` names where the import prices came from, ``surplus_source`` the surplus ones
    (the same unless the day's 1739 was missing: ``fixed``)."""

    day: date
    slot_s: int
    import_: list[tuple[datetime, float]]
    surplus: list[tuple[datetime, float]]
    source: str = "esios"
    surplus_source: str | None = None

    def __post_init__(self) -> None:
        if self.surplus_source is None:
            self.surplus_source = self.source

    def to_json(self) -> str:
        return json.dumps({"day": self.day.isoformat(), "slot_s": self.slot_s, "source": self.source,
                           "surplus_source": self.surplus_source,
                           "import": [[t.isoformat(), v] for t, v in self.import_],
                           "surplus": [[t.isoformat(), v] for t, v in self.surplus]})

    @classmethod
    def from_json(cls, text: str) -> "DayPrices":
        d = json.loads(text)
        return cls(date.fromisoformat(d["day"]), int(d["slot_s"]),
                   [(datetime.fromisoformat(t), float(v)) for t, v in d["import"]],
                   [(datetime.fromisoformat(t), float(v)) for t, v in d["surplus"]], d.get("source", "esios"),
                   d.get("surplus_source"))


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    a = datetime(day.year, day.month, day.day, tzinfo=tz)
    b = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return a.astimezone(UTC), b.astimezone(UTC)


def _token_or_none(s: PricesSettings) -> str | None:
    from drivers import secret
    return secret(s.esios_token) or os.environ.get("ESIOS_TOKEN") or None


def token(s: PricesSettings) -> str:
    t = _token_or_none(s)
    if not t:
        raise PriceError("no ESIOS token: set prices.esios_token (!secret) or the ESIOS_TOKEN environment variable "
                         "(ask for one at consultasios@ree.es), or use prices.source: pvpc_public (no token)")
    return t


def _get_json(s: PricesSettings, url: str, headers: dict[str, str], what: str) -> Any:
    """GET ``url`` as JSON within ``s.timeout_s`` a try, three tries on a failure that is not an
    answer (timeout, unreachable, 5xx). Raises PriceError naming ``what``."""
    from drivers.http import Device, HttpError
    dev = Device(headers={"User-Agent": "gestor", **headers})
    try:
        for attempt in range(3):
            try:
                return dev.get_json(url, s.timeout_s)
            except HttpError as e:
                if "HTTP 401" in str(e) or "HTTP 403" in str(e):
                    raise PriceError(f"ESIOS refused the token ({'401' if 'HTTP 401' in str(e) else '403'}): "
                                     f"check prices.esios_token / ESIOS_TOKEN") from None
                if attempt == 2 or ("HTTP 4" in str(e)):
                    raise PriceError(f"{what}: {e}") from None
                time.sleep(1.0 + attempt)
    finally:
        dev.close()
    raise AssertionError("unreachable")


def _price(v: Any, where: str) -> float:
    """EUR/MWh (a JSON number, or text with a decimal comma as the day file has) → EUR/kWh."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{where}: price {v!r} is not a number")
    if isinstance(v, str):
        t = v.strip()
        v = float(t.replace(".", "").replace(",", ".") if "," in t else t)
    x = float(v) / 1000.0
    if not (math.isfinite(x) and abs(x) <= MAX_PRICE_EUR_PER_KWH):
        raise ValueError(f"{where}: price {v!r} EUR/MWh is out of bounds")
    return x


def parse_indicator(body: Any, geo_id: int | None) -> list[tuple[datetime, float]]:
    """(UTC start, EUR/kWh) of each value of an ESIOS indicator answer for ``geo_id`` (None: all),
    the time from ``datetime`` (see the module docstring: ``datetime_utc`` is wrong on the
    autumn DST day), in answer order. Raises ValueError, KeyError or TypeError on another shape."""
    out = []
    for i, v in enumerate(body["indicator"]["values"]):
        if geo_id is not None and v.get("geo_id") not in (None, geo_id):
            continue
        t = datetime.fromisoformat(v["datetime"])
        if t.utcoffset() is None:
            raise ValueError(f"values[{i}].datetime {v['datetime']!r} has no UTC offset")
        out.append((t.astimezone(UTC), _price(v["value"], f"values[{i}]")))
    return out


def parse_archive(body: Any, day: date, key: str) -> list[tuple[datetime, float]]:
    """(UTC start, EUR/kWh) of each hour of the public PVPC day file (``{"PVPC": [{"Dia",
    "Hora", "PCB", "CYM", ...}]}``) for the REE ``day``: row k is the day's k-th hour on Madrid's
    clock. Checks that each row is of ``day`` and that ``Hora`` counts the rows as REE does
    (positions "00-01".."24-25", or the clock hours of a 23-hour day). Raises PriceError naming
    the row on a wrong day or hour, ValueError/KeyError/TypeError on another shape."""
    if isinstance(body, dict) and "PVPC" not in body:
        raise PriceError(f"no PVPC day in the answer for {day} (not published yet? the next day's comes after "
                         f"20:15): {json.dumps(body)[:120]}")
    rows = body["PVPC"]
    if not isinstance(rows, list):
        raise TypeError("PVPC is not a list")
    a, b = day_bounds(day, REE_TZ)
    n = int((b - a).total_seconds() // 3600)
    dia = day.strftime("%d/%m/%Y")
    out = []
    for k, r in enumerate(rows):
        if r["Dia"] != dia:
            raise PriceError(f"PVPC day file for {day}: row {k + 1} is of {r['Dia']!r}, not {dia}")
        t = a + timedelta(hours=k)
        clock = t.astimezone(REE_TZ).hour
        labels = {f"{k:02d}-{k + 1:02d}", f"{clock:02d}-{clock + 1:02d}"}
        if r["Hora"] not in labels and k < n:
            raise PriceError(f"PVPC day file for {day}: row {k + 1} is hour {r['Hora']!r}, expected "
                             f"{' or '.join(sorted(labels))} ({t.astimezone(REE_TZ):%H:%M %Z}; a {n} h day)")
        out.append((t, _price(r[key], f"row {k + 1} {key}")))
    if len(out) != n:
        raise PriceError(f"PVPC day file for {day}: {len(out)} hours, the day has {n}"
                         + (f" (the last is {rows[-1]['Hora']!r})" if rows else ""))
    return out


def _z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _check_day(values: list[tuple[datetime, float]], day: date, tz: ZoneInfo, what: str) -> int:
    """The slot length (3600 or 900 s) when ``values`` cover the local day exactly, each slot
    once; else PriceError saying what is wrong (the first slot missing, two slots at the same
    time, a slot off the day's steps)."""
    if not values:
        raise PriceError(f"no {what} prices published for {day} (yet? the next day's come after 20:15)")
    a, b = day_bounds(day, tz)
    counts = Counter(t for t, _ in values)
    uniq = sorted(counts)
    slot = 900 if any((y - x).total_seconds() == 900 for x, y in zip(uniq, uniq[1:])) else 3600
    want = int((b - a).total_seconds() // slot)
    expected = [a + timedelta(seconds=slot * k) for k in range(want)]
    if sorted(t for t, _ in values) == expected:
        return slot
    problems = []
    dups = [t for t in uniq if counts[t] > 1]
    if dups:
        n = counts[dups[0]]
        problems.append(f"{'two' if n == 2 else n} slots at the same time {_z(dups[0])}"
                        + (f" (and at {len(dups) - 1} more times)" if len(dups) > 1 else ""))
    missing = [k for k, t in enumerate(expected) if t not in counts]
    if missing:
        t = expected[missing[0]]
        problems.append(f"slot {missing[0] + 1} of {want} ({t.astimezone(tz):%H:%M %Z}, {_z(t)}) missing"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    exp = set(expected)
    off = [t for t in uniq if t not in exp]
    if off:
        problems.append(f"a slot at {_z(off[0])} that is not one of the day's {slot // 60}-min slots"
                        + (f" (and {len(off) - 1} more)" if len(off) > 1 else ""))
    raise PriceError(f"{what} prices for {day}: {'; '.join(problems)} ({len(values)} slots of {slot // 60} min; "
                     f"the {(b - a).total_seconds() / 3600:.0f} h day from {a.isoformat()} has {want})")


def _to_local(values: list[tuple[datetime, float]], day: date, tz: ZoneInfo) -> list[tuple[datetime, float]]:
    """REE's day ``day`` (Madrid's clock) as the local day ``day`` of ``tz``: the k-th slot at
    the k-th slot's time of the local day (prices apply by local clock hour)."""
    ra, rb = day_bounds(day, REE_TZ)
    la, lb = day_bounds(day, tz)
    if rb - ra != lb - la:
        raise PriceError(f"{day} has {(lb - la).total_seconds() / 3600:.0f} h in {tz.key} but "
                         f"{(rb - ra).total_seconds() / 3600:.0f} h on REE's clock (Europe/Madrid): "
                         f"timezone and prices.zone disagree")
    shift = la - ra
    return [(t + shift, v) for t, v in values]


def _esios_values(s: PricesSettings, indicator: int, day: date, geo_id: int | None) -> list[tuple[datetime, float]]:
    """One indicator's values for REE's ``day`` (UTC start, EUR/kWh), sorted. Raises PriceError."""
    a, b = day_bounds(day, REE_TZ)
    q = {"start_date": a.isoformat(), "end_date": (b - timedelta(seconds=1)).isoformat()}
    if geo_id is not None:
        q["geo_ids[]"] = str(geo_id)
    what = f"ESIOS indicator {indicator} for {day}"
    body = _get_json(s, f"{s.esios_url}/indicators/{indicator}?{urlencode(q)}",
                     {"Accept": "application/json; application/vnd.esios-api-v1+json", "x-api-key": token(s)}, what)
    try:
        return sorted(parse_indicator(body, geo_id))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PriceError(f"{what}: unexpected answer ({type(e).__name__}: {e})") from None


def fixed_surplus(day: date, tz: ZoneInfo, eur_per_kwh: float) -> list[tuple[datetime, float]]:
    """``eur_per_kwh`` for every hour of the local ``day``."""
    a, b = day_bounds(day, tz)
    return [(a + timedelta(hours=h), eur_per_kwh) for h in range(int((b - a).total_seconds() // 3600))]


def _surplus(s: PricesSettings, day: date, tz: ZoneInfo,
             fixed_eur_per_kwh: float | None) -> tuple[list[tuple[datetime, float]], str]:
    """The day's surplus prices from 1739 and ``"esios"``, or, when they cannot be had, the
    fixed ones and ``"fixed"`` (logged; none and ``"none"`` without ``fixed_eur_per_kwh``)."""
    try:
        sur = _esios_values(s, SURPLUS_INDICATOR, day, None)
        _check_day(sur, day, REE_TZ, "surplus (indicator 1739)")
        return _to_local(sur, day, tz), "esios"
    except PriceError as e:
        reason = str(e)
    if fixed_eur_per_kwh is None:
        log.warning("prices for %s: %s; the day's import prices are kept, without surplus prices", day, reason)
        return [], "none"
    log.warning("prices for %s: %s; the import prices are kept and the fixed surplus price %.4f EUR/kWh "
                "(tariff.surplus_eur_per_kwh) is used for that day", day, reason, fixed_eur_per_kwh)
    return fixed_surplus(day, tz, fixed_eur_per_kwh), "fixed"


def fetch_esios(s: PricesSettings, day: date, tz: ZoneInfo, fixed_surplus_eur_per_kwh: float | None = None) -> DayPrices:
    """The local ``day``'s import (1001, ``s.zone``) and surplus (1739) prices, validated.
    Without a valid 1739 day the import prices are kept and the surplus is
    ``fixed_surplus_eur_per_kwh`` every hour (none when that is None). Raises PriceError."""
    imp = _esios_values(s, IMPORT_INDICATOR, day, GEO_IDS[s.zone])
    slot = _check_day(imp, day, REE_TZ, "import (PVPC)")
    imp = _to_local(imp, day, tz)
    sur, sur_source = _surplus(s, day, tz, fixed_surplus_eur_per_kwh)
    return DayPrices(day, slot, imp, sur, "esios", sur_source)


def fetch_pvpc_public(s: PricesSettings, day: date, tz: ZoneInfo,
                      fixed_surplus_eur_per_kwh: float | None = None) -> DayPrices:
    """The local ``day``'s import prices from the public PVPC day file (no token), validated
    as the API's; the surplus from 1739 when a token is set, else ``fixed_surplus_eur_per_kwh``
    every hour (none when that is None). Raises PriceError."""
    what = f"PVPC day file for {day}"
    body = _get_json(s, f"{s.esios_url}{ARCHIVE_PATH}?{urlencode({'locale': 'es', 'date': day.isoformat()})}",
                     {"Accept": "application/json"}, what)
    try:
        imp = parse_archive(body, day, ARCHIVE_KEYS[s.zone])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PriceError(f"{what}: unexpected answer ({type(e).__name__}: {e})") from None
    slot = _check_day(imp, day, REE_TZ, "import (PVPC day file)")
    imp = _to_local(imp, day, tz)
    if _token_or_none(s):
        sur, sur_source = _surplus(s, day, tz, fixed_surplus_eur_per_kwh)
    elif fixed_surplus_eur_per_kwh is not None:
        sur, sur_source = fixed_surplus(day, tz, fixed_surplus_eur_per_kwh), "fixed"
    else:
        sur, sur_source = [], "none"
    return DayPrices(day, slot, imp, sur, "pvpc_public", sur_source)




def fetch(settings: "Settings", day: date) -> DayPrices:
    """The local ``day``'s prices from ``settings.prices.source`` (esios | pvpc_public), the
    surplus falling back to ``settings.tariff.surplus_eur_per_kwh``. Raises PriceError."""
    s = settings.prices
    fixed = settings.tariff.surplus_eur_per_kwh
    if s.source == "esios":
        return fetch_esios(s, day, settings.tz, fixed)
    if s.source == "pvpc_public":
        return fetch_pvpc_public(s, day, settings.tz, fixed)
    raise PriceError(f"prices.source is {s.source!r}: nothing to fetch (esios or pvpc_public)")


def at(slots: list[tuple[datetime, float]], t: datetime) -> float:
    """The price of the slot holding ``t`` (slots sorted by start; an hourly surplus price holds
    four quarter-hours of import); NaN before the first."""
    from bisect import bisect_right
    i = bisect_right([s for s, _ in slots], t) - 1
    return slots[i][1] if i >= 0 else float("nan")


def cache_path(state_dir: Path, day: date) -> Path:
    return Path(state_dir) / "prices" / f"{day.isoformat()}.json"


def save(state_dir: Path, p: DayPrices) -> Path:
    from gestor.files import atomic_write_text
    path = cache_path(state_dir, p.day)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, p.to_json())
    return path


MAX_CACHE_BYTES = 256 * 1024      # a day of quarter-hours, both kinds, is about 20 kB
MAX_PRICE_EUR_PER_KWH = 1000.0    # |EUR/kWh|: the dearest PVPC hour so far was under 1
_damaged_reported: set[tuple[str, str]] = set()


def _check_cached(p: DayPrices, day: date) -> None:
    """A cached day fit to use: the asked ``day``, a slot of 15 or 60 min, import prices, every
    time timezone-aware and strictly increasing, every price finite and within
    :data:`MAX_PRICE_EUR_PER_KWH`. Raises ValueError with a one-line reason."""
    import math
    if p.day != day:
        raise ValueError(f"holds {p.day}, not {day}")
    if p.slot_s not in (900, 3600):
        raise ValueError(f"slot_s {p.slot_s} is neither 900 nor 3600")
    if not p.import_:
        raise ValueError("no import prices")
    for what, rows in (("import", p.import_), ("surplus", p.surplus)):
        for i, (t, v) in enumerate(rows):
            if t.tzinfo is None or t.utcoffset() is None:
                raise ValueError(f"{what}[{i}]: time {t.isoformat()} has no UTC offset")
            if not (math.isfinite(v) and abs(v) <= MAX_PRICE_EUR_PER_KWH):
                raise ValueError(f"{what}[{i}]: price {v!r} EUR/kWh is out of bounds")
            if i and t <= rows[i - 1][0]:
                raise ValueError(f"{what}[{i}]: times not in increasing order")


def cached(state_dir: Path, day: date) -> DayPrices | None:
    """The day's prices from the cache; None without a valid one. Never raises, never blocks: a
    damaged cache file (not a regular file, over :data:`MAX_CACHE_BYTES`, not JSON of the right
    shape, a naive time, a price out of bounds: :func:`_check_cached`) is logged once, moved aside
    (``YYYY-MM-DD.json.bad``, so the day is fetched again) and ignored."""
    from gestor.files import read_small_text
    path = cache_path(state_dir, day)
    try:
        p = DayPrices.from_json(read_small_text(path, MAX_CACHE_BYTES))
        _check_cached(p, day)
        return p
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as e:
        reason = (e.strerror or str(e)) if isinstance(e, OSError) else f"{type(e).__name__}: {str(e)[:120]}"
        try:
            os.replace(path, path.with_name(path.name + ".bad"))
            aside, moved = f"; moved aside to {path.name}.bad", True
        except OSError:
            aside, moved = "; could not move it aside", False
        if moved or (str(path), reason) not in _damaged_reported:
            if len(_damaged_reported) > 1000:
                _damaged_reported.clear()
            _damaged_reported.add((str(path), reason))
            log.error("prices cache %s is damaged (%s): ignored%s", path, reason, aside)
        return None


class Book:
    """The import prices known for today and tomorrow (local), from the cache: ``import_price(t)``
    is the EUR/kWh of the slot holding ``t``, None outside them. Reloaded at most once per
    settlement period (a file read), never fetched here."""

    def __init__(self, state_dir: Path, tz: ZoneInfo, file: Path | None = None) -> None:
        self.state_dir, self.tz, self.file = Path(state_dir), tz, file
        self._file_mtime: float | None = None
        self.slots: list[tuple[float, float, float]] = []   # (start epoch, end epoch, EUR/kWh)
        self.surplus: list[tuple[float, float, float]] = []
        self._loaded_for: tuple | None = None

    def refresh(self, now: datetime, period_key: float) -> None:
        if self._loaded_for == (period_key,):
            return
        self._loaded_for = (period_key,)
        if self.file is not None:
            self._read_file()
            return
        today = now.astimezone(self.tz).date()
        slots, surplus = [], []
        for d in (today - timedelta(days=1), today, today + timedelta(days=1)):
            p = cached(self.state_dir, d)
            if p is not None:
                slots += [(t.timestamp(), t.timestamp() + p.slot_s, v) for t, v in p.import_]
                sur_s = int((p.surplus[1][0] - p.surplus[0][0]).total_seconds()) if len(p.surplus) > 1 else p.slot_s
                surplus += [(t.timestamp(), t.timestamp() + sur_s, v) for t, v in p.surplus]
        self.slots, self.surplus = sorted(slots), sorted(surplus)

    def _read_file(self) -> None:
        """``prices.file``: a CSV with ``time`` (ISO 8601; local time of ``tz`` if naive),
        ``import_eur_per_kwh`` and optionally ``surplus_eur_per_kwh``, a row per slot (a slot
        lasts until the next row, an hour at most; :func:`read_csv`). Read again when the file
        changes; a bad file is logged and leaves no prices (the fixed ones apply)."""
        assert self.file is not None
        try:
            mtime = self.file.stat().st_mtime
            if mtime == self._file_mtime:
                return
            self._file_mtime = mtime
            rows = read_csv(self.file, self.tz)
        except (OSError, ValueError) as e:
            log.error("prices.file %s: %s; the fixed 2.0TD prices apply", self.file, e)
            self.slots, self.surplus = [], []
            return
        self.slots = slots_of([(t, v) for t, v, _ in rows])
        self.surplus = slots_of([(t, sv) for t, _, sv in rows if sv is not None])

    def import_price(self, t: datetime) -> float | None:
        from bisect import bisect_right
        x = t.timestamp()
        i = bisect_right(self.slots, (x, float("inf"), float("inf"))) - 1
        if i >= 0 and self.slots[i][0] <= x < self.slots[i][1]:
            return self.slots[i][2]
        return None

    def period_prices(self, t0: float, t1: float) -> tuple[float, float] | None:
        """Time-weighted mean import and surplus prices (EUR/kWh) over [t0, t1) epoch s; None
        unless both are known over all of it."""
        imp, sur = mean_over(self.slots, t0, t1), mean_over(self.surplus, t0, t1)
        return None if imp is None or sur is None else (imp, sur)


def read_csv(path: Path, tz: ZoneInfo) -> list[tuple[float, float, float | None]]:
    """A prices CSV (``prices.file``, ``gestor simulate --prices``): ``time`` (ISO 8601; local
    time of ``tz`` if naive), ``import_eur_per_kwh`` and optionally ``surplus_eur_per_kwh``, a
    row per slot. Returns (epoch s, import, surplus or None) per row, in file order.

    Raises:
        OSError: the file cannot be read.
        ValueError: a row without a valid time or import price (the message names file and line).
    """
    import csv
    rows = []
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                t = datetime.fromisoformat(row["time"])
                t = t if t.tzinfo else t.replace(tzinfo=tz)
                sp = row.get("surplus_eur_per_kwh")
                rows.append((t.timestamp(), float(row["import_eur_per_kwh"]), float(sp) if sp else None))
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}: line {n}: needs time and import_eur_per_kwh ({e})") from None
    return rows


def slots_of(prices: list[tuple[float, float]]) -> list[tuple[float, float, float]]:
    """(start epoch, EUR/kWh) rows → (start, end, EUR/kWh) slots: each lasts until the next row,
    an hour at most."""
    rows = sorted(prices)
    return [(t, min(rows[i + 1][0], t + 3600) if i + 1 < len(rows) else t + 3600, v) for i, (t, v) in enumerate(rows)]


def mean_over(slots: list[tuple[float, float, float]], t0: float, t1: float) -> float | None:
    """The time-weighted mean of (start, end, value) slots over [t0, t1) epoch s; None unless
    they cover all of it (an hourly settlement period priced by quarter-hours)."""
    covered = acc = 0.0
    for a, b, v in slots:
        o = min(b, t1) - max(a, t0)
        if o > 0:
            covered += o
            acc += o * v
    return acc / covered if covered > 0 and covered >= (t1 - t0) - 1e-6 else None


def period_money(balance_wh: float, loads_wh: float, import_eur_per_kwh: float, surplus_eur_per_kwh: float,
                 night_eur_per_kwh: float) -> dict[str, float]:
    """EUR of one settlement period, as ``gestor simulate`` prices it (before the monthly cap on
    compensation): the import it pays, the surplus it is compensated, and what the same period
    would have cost without gestor (its loads' energy bought at the night price instead)."""
    export_wh, import_wh = settled_wh(balance_wh)
    imp = import_wh / 1000.0 * import_eur_per_kwh
    sur = export_wh / 1000.0 * surplus_eur_per_kwh
    export_without_wh, import_without_wh = settled_wh(balance_wh + loads_wh)
    cost_without = (import_without_wh / 1000.0 * import_eur_per_kwh - export_without_wh / 1000.0 * surplus_eur_per_kwh
                    + loads_wh / 1000.0 * night_eur_per_kwh)
    return {"import_eur": imp, "surplus_eur": sur, "cost_eur": imp - sur, "cost_without_eur": cost_without}


def points(p: DayPrices, site: str) -> list:
    from drivers.store.influx import point
    return ([point("price", {"site": site, "kind": "import", "source": p.source}, {"eur_per_kwh": v}, t)
             for t, v in p.import_]
            + [point("price", {"site": site, "kind": "surplus", "source": p.surplus_source or p.source},
                     {"eur_per_kwh": v}, t)
               for t, v in p.surplus])
