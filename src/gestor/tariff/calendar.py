"""The Spanish 2.0TD access tariff calendar (households up to 15 kW): which price period an
instant falls in.

Source: CNMC Circular 3/2020 (BOE-A-2020-1066), art. 7 and annex, as applied since 1 June 2021 in
the peninsula, the Balearic and the Canary Islands (local time of each):

* Monday to Friday: **P1** (punta) 10-14 h and 18-22 h; **P2** (llano) 8-10 h, 14-18 h and
  22-24 h; **P3** (valle) 0-8 h.
* Saturdays, Sundays and national holidays: P3 all day. The holidays are Spain's national ones
  (``holidays`` package, no region) with a fixed date; Good Friday, which moves with Easter, is
  excluded, as the circular says.

Ceuta and Melilla have other hours; not covered.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


PERIODS = ("P1", "P2", "P3")   # most expensive first
RANK = {"P1": 0, "P2": 1, "P3": 2}
_WEEKDAY_HOURS = ["P3"] * 8 + ["P2"] * 2 + ["P1"] * 4 + ["P2"] * 4 + ["P1"] * 4 + ["P2"] * 2


@lru_cache(maxsize=64)
def national_holidays(year: int) -> frozenset[date]:
    """Spain's national fixed-date holidays of ``year`` (2.0TD: P3 all day)."""
    import holidays  # imported when first needed: a managing without a daily minimum never loads it
    from dateutil.easter import easter
    days = set(holidays.country_holidays("ES", years=year))
    days.discard(easter(year) - timedelta(days=2))   # Good Friday: not a fixed date
    return frozenset(days)


def is_p3_day(d: date) -> bool:
    return d.weekday() >= 5 or d in national_holidays(d.year)


def period_2_0td(t: datetime, tz: ZoneInfo) -> str:
    """``"P1"``, ``"P2"`` or ``"P3"`` for the aware instant ``t`` in zone ``tz``."""
    local = t.astimezone(tz)
    if is_p3_day(local.date()):
        return "P3"
    return _WEEKDAY_HOURS[local.hour]


def zone_timezones(zone: str) -> tuple[str, ...]:
    """The ``timezone`` values whose clock is the zone's own (the first is the one to suggest)."""
    return {"canarias": ("Atlantic/Canary",), "ceuta": ("Africa/Ceuta", "Europe/Madrid"),
            "melilla": ("Africa/Ceuta", "Europe/Madrid")}.get(zone, ("Europe/Madrid",))
