"""Settlement periods and the running net balance.

Spanish self-consumption with surplus compensation (RD 244/2019) nets imports and exports over each
settlement period: one clock hour in Europe/Madrid today, quarter-hours later. Within a period,
``balance_wh = exported_wh - imported_wh`` (export-positive, DESIGN.md section 2).

Sources of the balance, best first:

* the meter's energy counters (``import_wh_total``/``export_wh_total``): exact, what the utility
  meter bills. Between two readings the counters are interpolated linearly in time to split the
  energy at a period boundary. A step the connection cannot carry (more than ``max_power_w`` over
  the interval, as ``drivers.meters.base.max_counter_step_wh`` bounds it) or a step backwards is
  not trusted: that interval is integrated from ``net_w`` instead, so no counter glitch can make a
  period's balance larger than the connection could have exchanged in it. And the counters must
  agree with the meter's own power: ``net_w`` is integrated beside them all period
  (``integrated_wh``); once the two differ by more than ``COUNTERS_AGREE_WH`` plus
  ``COUNTERS_AGREE_SHARE`` of the energy exchanged, the period's balance is the integrated one for
  the rest of it (``counters_refused``): a counter that over-reads a little at every reading, each
  step within its bound, cannot become the balance either.
* trapezoidal integration of ``net_w`` between consecutive readings, with ``net_w`` interpolated
  linearly at a period boundary. An interval longer than ``max_gap_s`` is not integrated (nothing is
  invented for time the meter was not seen) and the periods it touches are marked incomplete.

Period alignment: a period starts where the local wall-clock time (in ``tz``) is a multiple of
``period_s`` since local midnight. This is exact for any zone whose UTC offset changes only on
period boundaries (Europe/Madrid changes at 02:00/03:00 local, on the hour), so a DST day has 23 or
25 one-hour periods, none lost or doubled.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from gestor.core.reading import COUNTER_SLACK, COUNTER_SLACK_WH, Reading

# A reading on the control core's hot path: (epoch s, net W, production W, consumption W, import
# Wh total, export Wh total), None where the meter does not give it (Reading.at as epoch s).
Sample = tuple[float, float, float | None, float | None, float | None, float | None]

ALLOWED_PERIODS_S = (900, 3600)


def period_start(at: datetime, period_s: int, tz: ZoneInfo) -> datetime:
    """Start (aware UTC) of the settlement period containing ``at``.

    Args:
        at: aware instant.
        period_s: period length in seconds; must divide 86400.
        tz: the billing timezone.
    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("period_start needs an aware datetime")
    off = at.astimezone(tz).utcoffset()
    offset_s = off.total_seconds() if off is not None else 0.0
    local_s = at.timestamp() + offset_s
    start_local_s = math.floor(local_s / period_s) * period_s
    return datetime.fromtimestamp(start_local_s - offset_s, tz=timezone.utc)


def period_bounds(at: datetime, period_s: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """(start, end) of the period containing ``at``; end is exclusive, ``end - start == period_s``."""
    start = period_start(at, period_s, tz)
    return start, start + timedelta(seconds=period_s)


COUNTERS_AGREE_WH = 200.0    # Wh: counters and integrated net_w may differ by this much in a period...
COUNTERS_AGREE_SHARE = 0.1   # ... plus this share of the energy exchanged (|net_w| integrated)


@dataclass
class PeriodSummary:
    """One settlement period, closed or running.

    Energies in Wh over the part of the period covered by readings. ``complete`` is False when
    less than the whole period was covered (start-up, a gap longer than ``max_gap_s``, a counter
    reset). ``production_wh``/``consumption_wh`` are None when the meter does not give them.
    """

    start: datetime
    end: datetime
    balance_wh: float = 0.0
    production_wh: float | None = None
    consumption_wh: float | None = None
    covered_s: float = 0.0
    samples: int = 0
    source: str = "integration"  # "integration" | "counters"
    integrated_wh: float = 0.0   # net_w integrated over the period, beside the counters
    exchanged_wh: float = 0.0    # |net_w| integrated: the energy through the connection, Wh
    counters_refused: bool = False  # the counters disagreed with net_w: integrated from then on

    @property
    def period_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def complete(self) -> bool:
        return self.covered_s >= self.period_s - 1e-6

    @property
    def export_wh(self) -> float:
        """What this period exports for billing: its positive net balance, else 0."""
        return max(self.balance_wh, 0.0)

    @property
    def import_wh(self) -> float:
        """What this period imports for billing: minus its negative net balance, else 0."""
        return max(-self.balance_wh, 0.0)


def _lerp(t0: float, v0: float, t1: float, v1: float, t: float) -> float:
    if t1 == t0:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def _trapezoid_wh(t0: float, v0: float, t1: float, v1: float, a: float, b: float) -> float:
    """Integral in Wh of the line through (t0, v0), (t1, v1) [s, W] from a to b [s]."""
    if a == t0 and b == t1:
        return (v0 + v1) * (t1 - t0) / 7200.0
    va, vb = _lerp(t0, v0, t1, v1, a), _lerp(t0, v0, t1, v1, b)
    return (va + vb) / 2.0 * (b - a) / 3600.0


class Balance:
    """The running net balance of the current settlement period.

    Feed it readings in time order with :meth:`update`; it returns the periods that closed.
    Readings not newer than the last one are ignored (the live state repeats a reading until the
    meter gives a new one).

    Args:
        period_s: settlement period in seconds (900 or 3600).
        tz: billing timezone.
        max_gap_s: longest interval between two readings that is integrated.
        max_power_w: the most the grid connection carries, W (the meter's ``max_abs_power_w``):
            a counter step beyond it is not trusted.
    """

    def __init__(self, period_s: int = 3600, tz: ZoneInfo | str = "Europe/Madrid",
                 max_gap_s: float = 120.0, max_power_w: float = math.inf) -> None:
        self.period_s = int(period_s)
        self.max_power_w = float(max_power_w)
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.max_gap_s = float(max_gap_s)
        self.current: PeriodSummary | None = None
        # the last reading accounted, as update_s takes it (epoch s, net W, production W,
        # consumption W, import Wh total, export Wh total); None before the first
        self._last: Sample | None = None
        self.last_t = -math.inf    # its time, epoch s
        self.last_net_w = 0.0      # its net power, W (0 before the first)
        self.start_t = math.nan    # self.current.start as epoch s
        self._end_t = math.inf     # self.current.end as epoch s

    # -- queries -----------------------------------------------------------------------------
    @property
    def balance_wh(self) -> float:
        return self.current.balance_wh if self.current else 0.0

    @property
    def last(self) -> Reading | None:
        """The last reading accounted (None before the first)."""
        if self._last is None:
            return None
        t, net, prod, cons, imp, exp = self._last
        return Reading(datetime.fromtimestamp(t, timezone.utc), net, prod, cons, imp, exp)

    @last.setter
    def last(self, r: Reading | None) -> None:
        if r is None:
            self._last, self.last_t, self.last_net_w = None, -math.inf, 0.0
        else:
            self._last = (r.at.timestamp(), r.net_w, r.production_w, r.consumption_w,
                          r.import_wh_total, r.export_wh_total)
            self.last_t, self.last_net_w = self._last[0], r.net_w

    def bounds(self, at: datetime) -> tuple[datetime, datetime]:
        return period_bounds(at, self.period_s, self.tz)

    # -- feeding -----------------------------------------------------------------------------
    def update(self, reading: Reading) -> list[PeriodSummary]:
        """Account ``reading``; return the periods that closed (oldest first, possibly empty)."""
        return self.update_s(reading.at.timestamp(), reading.net_w, reading.production_w,
                             reading.consumption_w, reading.import_wh_total, reading.export_wh_total)

    def update_s(self, t1: float, net_w: float, production_w: float | None = None,
                 consumption_w: float | None = None, import_wh_total: float | None = None,
                 export_wh_total: float | None = None) -> list[PeriodSummary]:
        """:meth:`update` on a reading's numbers (epoch s, W, Wh totals). Returns the periods
        that closed (possibly empty)."""
        return self.update_r((t1, net_w, production_w, consumption_w, import_wh_total, export_wh_total))

    def update_r(self, cur: Sample) -> list[PeriodSummary]:
        """:meth:`update_s` on one tuple ``(epoch s, net W, production W, consumption W, import
        Wh total, export Wh total)`` (None where the meter does not give it): the control core's
        hot path, no datetime per reading. Returns the periods that closed (possibly empty)."""
        prev = self._last
        t1 = cur[0]
        if prev is None:
            self.current = self._new_period(datetime.fromtimestamp(t1, timezone.utc))
            self.current.samples = 1
            self._last, self.last_t, self.last_net_w = cur, t1, cur[1]
            return _NONE
        t0 = self.last_t
        if t1 <= t0:
            return _NONE
        counters = None
        if cur[4] is not None and cur[5] is not None and prev[4] is not None and prev[5] is not None:
            limit_wh = self.max_power_w * (t1 - t0) / 3600.0 * COUNTER_SLACK + COUNTER_SLACK_WH
            counters = _counter_delta(prev[4], prev[5], cur[4], cur[5], limit_wh)
        integrate = counters is not None or (t1 - t0) <= self.max_gap_s
        if t1 < self._end_t:  # the common case: within the current period
            p = self.current
            assert p is not None
            if integrate:
                self._add(prev, cur, counters, t0, t1, t0, t1)
            p.samples += 1
            self._last, self.last_t, self.last_net_w = cur, t1, cur[1]
            return _NONE
        closed: list[PeriodSummary] = []
        a = t0
        while True:
            assert self.current is not None
            end_s = self._end_t
            b = min(t1, end_s)
            if integrate and b > a:
                self._add(prev, cur, counters, t0, t1, a, b)
            if t1 >= end_s:
                closed.append(self.current)
                self.current = self._new_period(self.current.end)
                a = end_s
                if t1 == end_s:
                    break
            else:
                break
        self.current.samples += 1
        self._last, self.last_t, self.last_net_w = cur, t1, cur[1]
        return closed

    def _new_period(self, at: datetime) -> PeriodSummary:
        start, end = self.bounds(at)
        self.start_t, self._end_t = start.timestamp(), end.timestamp()
        return PeriodSummary(start=start, end=end)

    def _add(self, prev: Sample, cur: Sample, counters: tuple[float, float] | None,
             t0: float, t1: float, a: float, b: float) -> None:
        p = self.current
        assert p is not None
        if counters is not None and not p.counters_refused:
            d_export, d_import = counters
            frac = (b - a) / (t1 - t0)
            if t1 - t0 <= self.max_gap_s:  # net_w beside them (a longer gap: the counters alone)
                trap = _trapezoid_wh(t0, prev[1], t1, cur[1], a, b)
                p.integrated_wh += trap
                p.exchanged_wh += abs(trap)
            else:
                p.integrated_wh += (d_export - d_import) * frac
            p.balance_wh += (d_export - d_import) * frac
            p.source = "counters"
            if abs(p.balance_wh - p.integrated_wh) > COUNTERS_AGREE_WH + COUNTERS_AGREE_SHARE * p.exchanged_wh:
                p.balance_wh, p.counters_refused, p.source = p.integrated_wh, True, "integration"
        elif counters is not None:  # refused this period: integrate net_w (a long gap: nothing)
            if t1 - t0 <= self.max_gap_s:
                trap = _trapezoid_wh(t0, prev[1], t1, cur[1], a, b)
                p.balance_wh += trap
                p.integrated_wh += trap
                p.exchanged_wh += abs(trap)
            else:
                return
        elif a == t0 and b == t1:  # the whole interval (the common case): the trapezoids themselves
            p.balance_wh += (prev[1] + cur[1]) * (t1 - t0) / 7200.0
            if prev[2] is not None and cur[2] is not None:
                p.production_wh = (p.production_wh or 0.0) + (prev[2] + cur[2]) * (t1 - t0) / 7200.0
            if prev[3] is not None and cur[3] is not None:
                p.consumption_wh = (p.consumption_wh or 0.0) + (prev[3] + cur[3]) * (t1 - t0) / 7200.0
            p.covered_s += b - a
            return
        else:
            p.balance_wh += _trapezoid_wh(t0, prev[1], t1, cur[1], a, b)
        if prev[2] is not None and cur[2] is not None:
            p.production_wh = (p.production_wh or 0.0) + _trapezoid_wh(t0, prev[2], t1, cur[2], a, b)
        if prev[3] is not None and cur[3] is not None:
            p.consumption_wh = (p.consumption_wh or 0.0) + _trapezoid_wh(t0, prev[3], t1, cur[3], a, b)
        p.covered_s += b - a

    # -- persistence (restart within a period continues the same balance) --------------------
    def to_state(self) -> dict:
        """JSON-serialisable state; see :meth:`from_state`."""
        cur = None
        if self.current is not None:
            cur = asdict(self.current)
            cur["start"] = self.current.start.isoformat()
            cur["end"] = self.current.end.isoformat()
        return {"period_s": self.period_s, "current": cur,
                "last": self.last.to_dict() if self.last else None}

    @classmethod
    def from_state(cls, state: dict, tz: ZoneInfo | str, max_gap_s: float,
                   max_power_w: float = math.inf) -> "Balance":
        b = cls(state["period_s"], tz, max_gap_s, max_power_w)
        if state.get("current"):
            c = dict(state["current"])
            c["start"] = datetime.fromisoformat(c["start"])
            c["end"] = datetime.fromisoformat(c["end"])
            b.current = PeriodSummary(**c)
        if state.get("last"):
            b.last = Reading.from_dict(state["last"])
        if b.current is not None:
            b.start_t, b._end_t = b.current.start.timestamp(), b.current.end.timestamp()
        return b


_NONE: list[PeriodSummary] = []  # shared, never appended to: no period closed


def _counter_delta(imp0: float, exp0: float, imp1: float, exp1: float,
                   limit_wh: float = math.inf) -> tuple[float, float] | None:
    """(exported Wh, imported Wh) between two readings from the counters, or None when they
    cannot be trusted: a step backwards (a reset or replaced meter) or beyond ``limit_wh`` (more
    than the connection can carry in the interval: a glitch)."""
    d_imp = imp1 - imp0
    d_exp = exp1 - exp0
    if d_imp < 0 or d_exp < 0 or d_imp > limit_wh or d_exp > limit_wh:  # integrate net_w instead
        return None
    return d_exp, d_imp


def periods_of_day(day_local: datetime, period_s: int, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """All settlement periods of the local calendar day containing ``day_local`` (23/24/25 h)."""
    start = datetime(day_local.year, day_local.month, day_local.day, tzinfo=tz).astimezone(timezone.utc)
    nxt = (datetime(day_local.year, day_local.month, day_local.day, tzinfo=tz) + timedelta(days=1))
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(timezone.utc)
    out = []
    t = start
    while t < end:
        out.append((t, t + timedelta(seconds=period_s)))
        t += timedelta(seconds=period_s)
    return out


__all__ = ["Balance", "PeriodSummary", "period_start", "period_bounds", "periods_of_day",
           "ALLOWED_PERIODS_S"]
