"""Real prices from Red Eléctrica's ESIOS API: the PVPC 2.0TD active-energy price (indicator
1001) and the price of surplus energy for simplified compensation (indicator 1739), per hour or
per quarter-hour as published, in EUR/MWh in the API and EUR/kWh here.

No maintained Python client for ESIOS was worth a dependency: ``python-esios`` and ``esios``
(PyPI) pull pandas into the fetch and follow the API loosely; ``pvpc``/``aiopvpc`` read the
public PVPC JSON of the web page, not the API. This is a thin client: one GET per indicator and
day through :class:`drivers.http.Device` (TLS verified, a total deadline, a 1 MB answer cap),
two retries on a failure that is not an answer (timeout, 5xx), none on 401/403.

A day is valid when its slots cover the local day exactly: 24 hours (23 or 25 on DST days) or
96 quarter-hours (92 or 100). Valid days are kept in ``state_dir/prices/YYYY-MM-DD.json`` so that a
restart or an offline Pi still has them, and stored in InfluxDB (measurement ``price``, tags
``kind`` = import | surplus and ``source``, field ``eur_per_kwh``, at each slot's start).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from gestor.settings import PricesSettings

log = logging.getLogger("gestor.prices")
UTC = timezone.utc
IMPORT_INDICATOR = 1001   # PVPC: término de energía activa, peaje 2.0TD
SURPLUS_INDICATOR = 1739  # precio de la energía excedentaria del autoconsumo para compensación simplificada
# geo_id of each zone in indicator 1001
GEO_IDS = {"peninsula": 8741, "canarias": 8742, "baleares": 8743, "ceuta": 8744, "melilla": 8745}


class PriceError(Exception):
    """Prices could not be had; the message says why in one line."""


@dataclass
class DayPrices:
    """One local day: ``import_``/``surplus`` per slot, (UTC start, EUR/kWh), slot ``slot_s``."""

    day: date
    slot_s: int
    import_: list[tuple[datetime, float]]
    surplus: list[tuple[datetime, float]]
    source: str = "esios"

    def to_json(self) -> str:
        return json.dumps({"day": self.day.isoformat(), "slot_s": self.slot_s, "source": self.source,
                           "import": [[t.isoformat(), v] for t, v in self.import_],
                           "surplus": [[t.isoformat(), v] for t, v in self.surplus]})

    @classmethod
    def from_json(cls, text: str) -> "DayPrices":
        d = json.loads(text)
        return cls(date.fromisoformat(d["day"]), int(d["slot_s"]),
                   [(datetime.fromisoformat(t), float(v)) for t, v in d["import"]],
                   [(datetime.fromisoformat(t), float(v)) for t, v in d["surplus"]], d.get("source", "esios"))


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    a = datetime(day.year, day.month, day.day, tzinfo=tz)
    b = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return a.astimezone(UTC), b.astimezone(UTC)


def token(s: PricesSettings) -> str:
    from drivers import secret
    t = secret(s.esios_token) or os.environ.get("ESIOS_TOKEN")
    if not t:
        raise PriceError("no ESIOS token: set prices.esios_token (!secret) or the ESIOS_TOKEN environment variable "
                         "(ask for one at consultasios@ree.es)")
    return t


def _values(s: PricesSettings, indicator: int, day: date, tz: ZoneInfo, geo_id: int | None) -> list[tuple[datetime, float]]:
    from drivers.http import Device, HttpError
    a, b = day_bounds(day, tz)
    q = {"start_date": a.isoformat(), "end_date": (b - timedelta(seconds=1)).isoformat()}
    if geo_id is not None:
        q["geo_ids[]"] = str(geo_id)
    url = f"{s.esios_url}/indicators/{indicator}?{urlencode(q)}"
    dev = Device(headers={"Accept": "application/json; application/vnd.esios-api-v1+json",
                          "x-api-key": token(s)})
    try:
        for attempt in range(3):
            try:
                body = dev.get_json(url, s.timeout_s)
                break
            except HttpError as e:
                if "HTTP 401" in str(e) or "HTTP 403" in str(e):
                    raise PriceError(f"ESIOS refused the token ({'401' if 'HTTP 401' in str(e) else '403'}): "
                                     f"check prices.esios_token / ESIOS_TOKEN") from None
                if attempt == 2 or ("HTTP 4" in str(e)):
                    raise PriceError(f"ESIOS indicator {indicator} for {day}: {e}") from None
                time.sleep(1.0 + attempt)
    finally:
        dev.close()
    try:
        values = body["indicator"]["values"]
        out = []
        for v in values:
            if geo_id is not None and v.get("geo_id") not in (None, geo_id):
                continue
            t = datetime.fromisoformat(v["datetime_utc"].replace("Z", "+00:00")).astimezone(UTC)
            out.append((t, float(v["value"]) / 1000.0))  # EUR/MWh -> EUR/kWh
    except (KeyError, TypeError, ValueError) as e:
        raise PriceError(f"ESIOS indicator {indicator} for {day}: unexpected answer ({type(e).__name__}: {e})") from None
    return sorted(out)


def _check_day(values: list[tuple[datetime, float]], day: date, tz: ZoneInfo, what: str) -> int:
    """The slot length (3600 or 900 s) when ``values`` cover the local day exactly; PriceError."""
    if not values:
        raise PriceError(f"no {what} prices published for {day} (yet? the next day's come after 20:15)")
    a, b = day_bounds(day, tz)
    slot = 900 if len(values) > 1 and (values[1][0] - values[0][0]).total_seconds() == 900 else 3600
    want = int((b - a).total_seconds() // slot)
    starts = [t for t, _ in values]
    expected = [a + timedelta(seconds=slot * k) for k in range(want)]
    if starts != expected:
        raise PriceError(f"{what} prices for {day}: {len(values)} slots of {slot // 60} min, expected {want} "
                         f"from {a.isoformat()} ({(b - a).total_seconds() / 3600:.0f} h day)")
    return slot


def fetch_esios(s: PricesSettings, day: date, tz: ZoneInfo) -> DayPrices:
    """Both indicators for the local ``day``, validated. Raises PriceError."""
    imp = _values(s, IMPORT_INDICATOR, day, tz, GEO_IDS[s.zone])
    slot = _check_day(imp, day, tz, "import (PVPC)")
    sur = _values(s, SURPLUS_INDICATOR, day, tz, None)
    _check_day(sur, day, tz, "surplus")
    return DayPrices(day, slot, imp, sur)


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
    imp = max(-balance_wh, 0.0) / 1000.0 * import_eur_per_kwh
    sur = max(balance_wh, 0.0) / 1000.0 * surplus_eur_per_kwh
    without = balance_wh + loads_wh
    cost_without = (max(-without, 0.0) / 1000.0 * import_eur_per_kwh - max(without, 0.0) / 1000.0 * surplus_eur_per_kwh
                    + loads_wh / 1000.0 * night_eur_per_kwh)
    return {"import_eur": imp, "surplus_eur": sur, "cost_eur": imp - sur, "cost_without_eur": cost_without}


def points(p: DayPrices, site: str) -> list:
    from drivers.store.influx import point
    return ([point("price", {"site": site, "kind": "import", "source": p.source}, {"eur_per_kwh": v}, t)
             for t, v in p.import_]
            + [point("price", {"site": site, "kind": "surplus", "source": p.source}, {"eur_per_kwh": v}, t)
               for t, v in p.surplus])
