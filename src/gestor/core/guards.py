"""Guards: what every policy is held to, applied to its wishes per load in this order:

1. the stop latch (``stop-loads``): off;
2. a stale meter (no reading newer than ``stale_after_s``, or one dated in the future): off;
3. a manual override (``gestor override LOAD on|off|auto``): ``off`` is obeyed at once; ``on`` is
   obeyed subject only to ``min_off_s`` (equipment protection);
4. time windows (``windows: ["10:00-19:00"]``, local time): outside them, off (also when a window
   ends with the load on);
5. the daily minimum run (``min_run_s`` by ``min_run_by``): when the surplus did not give it, the
   load runs in the cheapest periods left before the deadline (:func:`min_run_reason`);
6. ``max_switches_per_period``: once reached, a load is not switched on again until the period
   ends (it may still go off: a cap never makes a load import);
7. ``min_on_s`` / ``min_off_s``: a load that switched less than that long ago keeps its state.

Safety (1, 2, and 3-4 when they switch off) is never delayed by 6 or 7. A guard that changes a
wish replaces its reason, so the log says why the policy was overruled. Pure functions: no I/O, no
clock of their own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Mapping
from zoneinfo import ZoneInfo

from gestor.core.balance import period_bounds
from gestor.core.policies import LoadView, Wish
from gestor.core.reasons import say
if TYPE_CHECKING:  # the settings' types only: the core imports nothing above it
    from gestor.settings import LoadSettings

UTC = timezone.utc



def parse_window(w: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` → (start, end) in minutes of the local day; end may be before start (the
    window crosses midnight). Raises ValueError naming the format."""
    m = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)\s*", w)
    if not m:
        raise ValueError(f"window {w!r} must be HH:MM-HH:MM, e.g. 10:00-19:00")
    a, b = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if b > 24 * 60 or a == b:
        raise ValueError(f"window {w!r} is empty or ends after 24:00")
    return a, b

@dataclass(frozen=True)
class Override:
    """A manual override: ``on`` True/False until ``until`` (None: until set back to auto)."""

    on: bool
    until: datetime | None = None
    by: str = ""

    def describe(self, tz: ZoneInfo) -> str:
        state = "on" if self.on else "off"
        if self.until is None:
            return say(f"override_{state}")
        return say(f"override_{state}_until", {"until": f"{self.until.astimezone(tz):%Y-%m-%d %H:%M}"})


# Switching is bounded whatever the settings say and the policy concludes (issue 23: a reading
# attributed to the wrong load state once made a load switch at every 10 s cycle): a relay and
# its load (a contactor, a heat pump, a pump motor) never see more than this.
SWITCH_FLOOR_S = 30.0                 # s: once switched, a load stays so at least this long
DEFAULT_MAX_SWITCHES_PER_PERIOD = 20  # per load and settlement period, unless max_switches_per_period is set


@dataclass(frozen=True)
class LoadLimits:
    min_on_s: float = 0.0
    min_off_s: float = 0.0
    max_switches_per_period: int | None = None
    windows: tuple[tuple[int, int], ...] = ()   # (start, end) minutes of the local day
    windows_text: str = ""

    @classmethod
    def of(cls, ld: LoadSettings) -> "LoadLimits":
        """The limits a load's settings set (managing and the simulator alike), never looser than
        the switching bounds below: at least SWITCH_FLOOR_S on and off, at most
        DEFAULT_MAX_SWITCHES_PER_PERIOD switches per settlement period unless the load sets its own."""
        cap = ld.max_switches_per_period if ld.max_switches_per_period is not None else DEFAULT_MAX_SWITCHES_PER_PERIOD
        return cls(max(ld.min_on_s, SWITCH_FLOOR_S), max(ld.min_off_s, SWITCH_FLOOR_S), cap,
                   tuple(parse_window(w) for w in ld.windows), ", ".join(ld.windows))


NO_LIMITS = LoadLimits()


@dataclass(frozen=True)
class GuardState:
    """Facts the guards need beyond the loads. ``reading_age_s`` None: no reading at all.
    ``switches_in_period``: confirmed switches per load in the current settlement period.
    ``min_run``: per load, the reason to run it now for its daily minimum (absent: no need)."""

    now: datetime
    latched: bool
    reading_age_s: float | None
    stale_after_s: float
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    overrides: Mapping[str, Override] = field(default_factory=dict)
    switches_in_period: Mapping[str, int] = field(default_factory=dict)
    min_run: Mapping[str, str] = field(default_factory=dict)


def in_windows(now: datetime, tz: ZoneInfo, windows: tuple[tuple[int, int], ...]) -> bool:
    """True when ``windows`` is empty or the local time of ``now`` is inside one (start
    inclusive, end exclusive; a window may cross midnight)."""
    if not windows:
        return True
    local = now.astimezone(tz)
    return in_windows_min(local.hour * 60 + local.minute + local.second / 60, windows)


def in_windows_min(m: float, windows: tuple[tuple[int, int], ...]) -> bool:
    """:func:`in_windows` on ``m``, the minute of the local day (0 <= m < 1440)."""
    if not windows:
        return True
    for a, b in windows:
        if (a <= m < b) if a < b else (m >= a or m < b):
            return True
    return False


def apply_guards(wishes: list[Wish], loads: tuple[LoadView, ...], limits: dict[str, LoadLimits],
                 g: GuardState) -> list[Wish]:
    """Return the wishes every load will actually be commanded to (same order)."""
    by_name = {ld.name: ld for ld in loads}
    now_s = g.now.timestamp()
    out: list[Wish] = []
    # a reading from the future (negative age: the wall clock stepped) is as unusable as an old one
    stale = g.reading_age_s is None or g.reading_age_s < 0 or g.reading_age_s > g.stale_after_s
    for w in wishes:
        ld = by_name[w.load]
        lim = limits.get(w.load, NO_LIMITS)
        if g.latched:
            out.append(Wish(w.load, False, say("latch")))
            continue
        if stale:
            out.append(Wish(w.load, False, say("stale_none", {"stale_after_s": g.stale_after_s})
                            if g.reading_age_s is None else
                            say("stale_future", {"ahead_s": -g.reading_age_s, "stale_after_s": g.stale_after_s})
                            if g.reading_age_s < 0 else
                            say("stale_old", {"age_s": g.reading_age_s, "stale_after_s": g.stale_after_s})))
            continue
        ov = g.overrides.get(w.load)
        if ov is not None:
            if not ov.on:
                out.append(Wish(w.load, False, ov.describe(g.tz)))
                continue
            out.append(_min_on_off(Wish(w.load, True, ov.describe(g.tz)), ld, lim, now_s))
            continue
        if not in_windows(g.now, g.tz, lim.windows):
            out.append(Wish(w.load, False, say("windows", {"windows": lim.windows_text})))
            continue
        if not w.on and w.load in g.min_run:
            w = Wish(w.load, True, g.min_run[w.load])
        n = g.switches_in_period.get(w.load, 0)
        if w.on and not ld.on and lim.max_switches_per_period is not None and n >= lim.max_switches_per_period:
            out.append(Wish(w.load, False, say("max_switches", {"max_switches": lim.max_switches_per_period})))
            continue
        out.append(_min_on_off(w, ld, lim, now_s))
    return out


def _min_on_off(w: Wish, ld: LoadView, lim: LoadLimits, now_s: float) -> Wish:
    if w.on != ld.on and ld.since_s is not None:
        held_s = now_s - ld.since_s
        if ld.on and held_s < lim.min_on_s:
            return Wish(w.load, True, say("min_on_hold", {"min_on_s": lim.min_on_s, "held_s": held_s}))
        if not ld.on and held_s < lim.min_off_s:
            return Wish(w.load, False, say("min_off_hold", {"min_off_s": lim.min_off_s, "held_s": held_s}))
    return w


# --- daily minimum run -------------------------------------------------------------------------
def min_run_deadline(now: datetime, tz: ZoneInfo, by: str) -> datetime:
    """The next local ``by`` (``"HH:00"``) strictly after ``now``, aware."""
    hour = int(by[:2])
    local = now.astimezone(tz)
    d = datetime.combine(local.date(), time(hour), tzinfo=tz)
    if d <= local:
        d = datetime.combine(local.date() + timedelta(days=1), time(hour), tzinfo=tz)
    return d.astimezone(UTC)


def min_run_ahead(now: datetime, tz: ZoneInfo, period_s: int, by: str, price_period: Callable[[datetime], str],
                  import_price: Callable[[datetime], float | None] | None = None) -> tuple[float, str]:
    """How the current settlement period ranks for the daily minimum run: the seconds of the
    periods left before the deadline that rank before it (cheaper, or as cheap and later), summed
    in rank order, and the current period's price label ("P3" or "0.1234 EUR/kWh").

    The periods left before the deadline are ranked by their real import price when
    ``import_price`` knows it for every one of them (EUR/kWh, e.g. PVPC from ESIOS), else by
    2.0TD price period (``price_period`` returns "P1", "P2" or "P3"; P3 is cheapest); the later
    first among equals (the sun may still give it for free). The current period counts from
    ``now`` to its end (or the deadline). The others do not depend on ``now`` within a period, nor
    does the 2.0TD label (periods lie within a local hour): managing and the simulator keep the
    answer for the period (:meth:`gestor.core.control.Controller.min_run`)."""
    deadline = min_run_deadline(now, tz, by)
    slots: list[tuple[datetime, float, str]] = []
    t = now
    while t < deadline:
        _, end = period_bounds(t, period_s, tz)
        b = min(end, deadline)
        slots.append((t, (b - t).total_seconds(), price_period(t)))
        t = b
    rank = {"P3": 0, "P2": 1, "P1": 2}
    real = [import_price(t) for t, _, _ in slots] if import_price is not None else [None]
    if None not in real:  # every slot has its real price: rank by it
        slots = [(t, dur, f"{eur:.4f} EUR/kWh") for (t, dur, _), eur in zip(slots, real)]
        key = {t: eur for (t, _, _), eur in zip(slots, real)}
        order = sorted(slots, key=lambda s: (key[s[0]], -s[0].timestamp()))
    else:
        order = sorted(slots, key=lambda s: (rank.get(s[2], 3), -s[0].timestamp()))
    before_s = 0.0
    for start, dur, _ in order:
        if start == now:
            break
        before_s += dur
    return before_s, slots[0][2]


def min_run_slots(now: datetime, tz: ZoneInfo, period_s: int, need_s: float, done_s: float, by: str,
                  price_period: Callable[[datetime], str],
                  import_price: Callable[[datetime], float | None] | None = None) -> list[datetime]:
    """The settlement periods the daily minimum run has chosen from ``now`` to its deadline, as
    their starts (aware, UTC, in time order; the first is the period holding ``now``): the periods
    :func:`min_run_ahead` ranks first, picked until they cover ``need_s - done_s`` (s). The
    current period is among them exactly when :func:`min_run_reason` runs the load now. []
    once the minimum is reached. For showing the plan (managing publishes it); the guard itself
    decides with :func:`min_run_reason`."""
    left_s = need_s - done_s
    if left_s <= 0:
        return []
    deadline = min_run_deadline(now, tz, by)
    slots: list[tuple[datetime, float, float]] = []  # (start, seconds left in it before the deadline, rank)
    rank = {"P3": 0.0, "P2": 1.0, "P1": 2.0}
    labels: list[str] = []
    t = now
    while t < deadline:
        _, end = period_bounds(t, period_s, tz)
        b = min(end, deadline)
        slots.append((t, (b - t).total_seconds(), 0.0))
        labels.append(price_period(t))
        t = b
    real = [import_price(t) for t, _, _ in slots] if import_price is not None else [None]
    if None not in real:  # every slot has its real price: rank by it (as min_run_ahead)
        slots = [(t, dur, float(eur or 0.0)) for (t, dur, _), eur in zip(slots, real)]
    else:
        slots = [(t, dur, rank.get(label, 3.0)) for (t, dur, _), label in zip(slots, labels)]
    chosen: list[datetime] = []
    covered = 0.0
    for start, dur, _ in sorted(slots, key=lambda s: (s[2], -s[0].timestamp())):
        if covered >= left_s:
            break
        chosen.append(start)
        covered += dur
    first = period_bounds(now, period_s, tz)[0]
    return sorted(first.astimezone(UTC) if c == now else c.astimezone(UTC) for c in chosen)


def min_run_reason(now: datetime | None, tz: ZoneInfo, period_s: int, need_s: float, done_s: float, by: str,
                   price_period: Callable[[datetime], str], power_w: float,
                   import_price: Callable[[datetime], float | None] | None = None,
                   ahead: tuple[float, str] | None = None) -> str | None:
    """Whether a load must run now to reach its daily minimum, and why.

    The cheapest periods left before the deadline (:func:`min_run_ahead`) are picked until they
    cover ``need_s - done_s``; if the current period is among them, the load runs now: returns
    the reason, else None. ``ahead``: :func:`min_run_ahead`'s answer for ``now``, when known
    (``now`` may then be None). ValueError without either.
    """
    left_s = need_s - done_s
    if left_s <= 0:
        return None
    if ahead is None:
        if now is None:
            raise ValueError("min_run_reason needs now or ahead")
        ahead = min_run_ahead(now, tz, period_s, by, price_period, import_price)
    before_s, cur = ahead
    if before_s >= left_s:  # the periods ranked before now already cover what is left
        return None
    return say("min_run", {"done_h": done_s / 3600, "need_h": need_s / 3600, "left_h": left_s / 3600,
                           "left_wh": power_w * left_s / 3600, "by": by, "price": cur})
