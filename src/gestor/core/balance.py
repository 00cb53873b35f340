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
  (``integrated_wh``), and the two may differ by no more than :func:`agreement_wh` allows: a few
  of the counter's own resolution (``counter_resolution_wh``, which each meter driver declares:
  1 Wh for a Shelly, 100 Wh for the EM24), the trapezoids' sampling error (estimated from the
  power's own changes between readings), a small share of the energy exchanged (a class 1 meter's
  power and energy are each within 1 %) and the readings' time jitter. Totals are compared over
  the period, and rates over the last ``COUNTERS_WINDOW_S`` (across period boundaries), so a
  steady disagreement is caught within minutes whatever the period exchanged before it. Once
  they disagree, the period's balance is the integrated one for the rest of it
  (``counters_refused``, ``refused_why`` naming both rates), and a new period starts refused while
  the window still disagrees: a counter that over-reads a little at every reading, each step
  within its bound, cannot become the balance (issue 32: 200 W imported for an hour was booked
  +20 Wh under the old 200 Wh + 10 % tolerance).
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

from gestor.core.reading import COUNTER_RESOLUTIONS, COUNTER_SLACK_WH, Reading, max_counter_step_wh

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


# How far the counters and integrated net_w may differ (see agreement_wh): counter resolutions,
# standard deviations of the trapezoids' sampling error, share of the energy exchanged (|net_w|
# integrated), and seconds of |net_w| (the counters and the power are read up to this far apart).
COUNTERS_AGREE_SIGMAS = 4.0
COUNTERS_AGREE_SHARE = 0.02
COUNTERS_JITTER_S = 2.0
COUNTERS_WINDOW_S = 300.0    # the rates are compared over the last this many seconds, s
_SAMPLING_VAR = 1.0 / (12.0 * 3600.0 * 3600.0)  # (dW x ds)^2 -> Wh^2: a step anywhere in the interval


def settled_wh(balance_wh: float) -> tuple[float, float]:
    """``(export_wh, import_wh)`` a settlement period is billed for, Wh (both >= 0), from its net
    balance ``balance_wh`` (Wh, + surplus): imports and exports net within the period, so it exports
    its positive balance or imports minus its negative one, never both (RD 244/2019, net balance per
    period; DESIGN.md section 1). The one place of that rule."""
    return max(balance_wh, 0.0), max(-balance_wh, 0.0)


def agreement_wh(resolution_wh: float, sampling_var_wh2: float, exchanged_wh: float, net_w: float) -> float:
    """How far (Wh) a meter's counters may differ from its integrated ``net_w`` and still be
    believed: ``COUNTER_RESOLUTIONS`` x ``resolution_wh`` (each counter's quantisation at both
    ends, and the split of a step at a period boundary), ``COUNTERS_AGREE_SIGMAS`` standard
    deviations of the trapezoids' sampling error (``sampling_var_wh2``: the sum over the intervals
    of (|change of net_w| x interval)^2 / 12, a step anywhere in the interval; measured on the nine
    recordings of shared/data, this keeps all but 4 of 964 hours at 20 s sampling), a
    ``COUNTERS_AGREE_SHARE`` of ``exchanged_wh`` (a class 1 meter's power and energy are each within
    1 %), and ``net_w`` (W) over ``COUNTERS_JITTER_S`` (the counters and the power are read apart)."""
    return (COUNTER_RESOLUTIONS * resolution_wh + COUNTERS_AGREE_SIGMAS * math.sqrt(sampling_var_wh2)
            + COUNTERS_AGREE_SHARE * exchanged_wh + abs(net_w) * COUNTERS_JITTER_S / 3600.0)


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
    sampling_var_wh2: float = 0.0  # the variance of integrated_wh's sampling error, Wh^2 (agreement_wh)
    counters_refused: bool = False  # the counters disagreed with net_w: integrated from then on
    refused_why: str = ""        # why they were refused, with both rates (W)

    @property
    def period_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def complete(self) -> bool:
        return self.covered_s >= self.period_s - 1e-6

    @property
    def export_wh(self) -> float:
        """What this period exports for billing: its positive net balance, else 0 (:func:`settled_wh`)."""
        return settled_wh(self.balance_wh)[0]

    @property
    def import_wh(self) -> float:
        """What this period imports for billing: minus its negative net balance, else 0 (:func:`settled_wh`)."""
        return settled_wh(self.balance_wh)[1]


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
        counter_resolution_wh: the smallest step of the meter's energy counters, Wh (what its
            driver declares: ``MeterSettings.counter_resolution_wh``); the counters' tolerance
            is a few of it (:func:`agreement_wh`).
    """

    def __init__(self, period_s: int = 3600, tz: ZoneInfo | str = "Europe/Madrid",
                 max_gap_s: float = 120.0, max_power_w: float = math.inf,
                 counter_resolution_wh: float = COUNTER_SLACK_WH) -> None:
        self.period_s = int(period_s)
        self.max_power_w = float(max_power_w)
        self.resolution_wh = float(counter_resolution_wh)
        # the recent intervals with counters and net_w both (the rates' window, across periods):
        # end (epoch s), length s, counters' net Wh, integrated net_w Wh, |integrated| Wh, sampling
        # variance Wh^2; oldest first from _w_head on
        self._w_end: list[float] = []
        self._w_dt: list[float] = []
        self._w_counted: list[float] = []
        self._w_integrated: list[float] = []
        self._w_exchanged: list[float] = []
        self._w_var: list[float] = []
        self._w_head = 0
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
            limit_wh = max_counter_step_wh(self.max_power_w, t1 - t0, self.resolution_wh)
            counters = _counter_delta(prev[4], prev[5], cur[4], cur[5], limit_wh)
        integrate = counters is not None or (t1 - t0) <= self.max_gap_s
        disagree = ""
        if counters is not None and t1 - t0 <= self.max_gap_s:
            disagree = self._window(prev, cur, counters, t0, t1)
        if t1 < self._end_t:  # the common case: within the current period
            p = self.current
            assert p is not None
            if integrate:
                self._add(prev, cur, counters, t0, t1, t0, t1)
            if disagree and not p.counters_refused:
                _refuse(p, disagree)
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
        if disagree:  # every period the interval touched
            for p in closed + [self.current]:
                if not p.counters_refused:
                    _refuse(p, disagree)
        self.current.samples += 1
        self._last, self.last_t, self.last_net_w = cur, t1, cur[1]
        return closed

    def _window(self, prev: Sample, cur: Sample, counters: tuple[float, float], t0: float, t1: float) -> str:
        """Add the interval [t0, t1] to the rates' window and compare the rates over it: the
        reason they disagree (both rates, W), or "" while they agree."""
        trap = (prev[1] + cur[1]) * (t1 - t0) / 7200.0
        self._w_end.append(t1)
        self._w_dt.append(t1 - t0)
        self._w_counted.append(counters[0] - counters[1])
        self._w_integrated.append(trap)
        self._w_exchanged.append(abs(trap))
        self._w_var.append(((cur[1] - prev[1]) * (t1 - t0)) ** 2 * _SAMPLING_VAR)
        h = self._w_head
        while self._w_end[h] <= t1 - COUNTERS_WINDOW_S:
            h += 1
        if h > 256:  # drop the ones that left the window in bulk
            for col in (self._w_end, self._w_dt, self._w_counted, self._w_integrated, self._w_exchanged, self._w_var):
                del col[:h]
            h = 0
        self._w_head = h
        counted, integrated = sum(self._w_counted[h:]), sum(self._w_integrated[h:])
        allowed = agreement_wh(self.resolution_wh, sum(self._w_var[h:]), sum(self._w_exchanged[h:]),
                               max(abs(prev[1]), abs(cur[1])))
        if abs(counted - integrated) <= allowed:
            return ""
        span_s = sum(self._w_dt[h:])
        return (f"over the last {span_s:.0f} s the counters give {counted * 3600.0 / span_s:+.0f} W and the "
                f"integrated net power {integrated * 3600.0 / span_s:+.0f} W ({counted - integrated:+.1f} Wh apart, "
                f"{allowed:.1f} Wh allowed at a counter resolution of {self.resolution_wh:g} Wh)")

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
                p.sampling_var_wh2 += ((cur[1] - prev[1]) * (b - a)) ** 2 * _SAMPLING_VAR
            else:
                p.integrated_wh += (d_export - d_import) * frac
            p.balance_wh += (d_export - d_import) * frac
            p.source = "counters"
            allowed = agreement_wh(self.resolution_wh, p.sampling_var_wh2, p.exchanged_wh, max(abs(prev[1]), abs(cur[1])))
            if abs(p.balance_wh - p.integrated_wh) > allowed:
                span_s = max(b - p.start.timestamp(), 1.0)
                _refuse(p, f"since the period began the counters give {p.balance_wh * 3600.0 / span_s:+.0f} W and the "
                           f"integrated net power {p.integrated_wh * 3600.0 / span_s:+.0f} W "
                           f"({p.balance_wh - p.integrated_wh:+.1f} Wh apart, {allowed:.1f} Wh allowed at a counter "
                           f"resolution of {self.resolution_wh:g} Wh)")
        elif counters is not None:  # refused this period: integrate net_w (a long gap: nothing)
            if t1 - t0 <= self.max_gap_s:
                trap = _trapezoid_wh(t0, prev[1], t1, cur[1], a, b)
                p.balance_wh += trap
                p.integrated_wh += trap
                p.exchanged_wh += abs(trap)
                p.sampling_var_wh2 += ((cur[1] - prev[1]) * (b - a)) ** 2 * _SAMPLING_VAR
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
                   max_power_w: float = math.inf, counter_resolution_wh: float = COUNTER_SLACK_WH) -> "Balance":
        b = cls(state["period_s"], tz, max_gap_s, max_power_w, counter_resolution_wh)
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


def _refuse(p: PeriodSummary, why: str) -> None:
    """The counters disagree with net_w (``why``): the period's balance is the integrated one from
    now on."""
    p.balance_wh, p.counters_refused, p.source, p.refused_why = p.integrated_wh, True, "integration", why


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
           "ALLOWED_PERIODS_S", "agreement_wh"]
