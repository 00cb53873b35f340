"""gestor's settled hours against the distributor's, hour by hour (issue 35).

* **gestor's hours**: the ``period`` measurement managing stores (:func:`gestor_from_influx`), or
  a recording's readings re-settled with gestor's own balance code (:func:`resettle`: the
  readings through :class:`gestor.core.balance.Balance`, as managing and ``gestor simulate`` settle
  them; no second accounting).
* **differences**: per hour and per month, of the import and the surplus each side bills
  (:func:`gestor.core.balance.settled_wh` of gestor's net balance; the distributor's own columns).
* **the meter clock's offset** (:func:`find_offset`): the readings re-settled with the hour
  boundaries shifted by -15..+15 min in 1-min steps; the shift whose hourly net balances are
  nearest the distributor's (least squares over the hours every shift covers whole), refined by
  the parabola through the best step and its two neighbours. A meter whose clock runs ``d``
  seconds ahead stamps its readings ``d`` late, so its hours match the distributor's when shifted
  by ``d``: the offset is how far the meter's clock is ahead (+) or behind (-).
* **a calibration ratio**: the factor ``k`` minimising sum over the whole, measured hours of
  ``(distributor_h - k x gestor_h)^2`` on the net balances (least squares through zero):
  ``k = sum(d x g) / sum(g^2)``. 1.03: gestor reads 3 % less net than the distributor bills.
* **an alert** when the month's import or surplus differs from the distributor's by more than
  ``distributor.max_month_difference_pct`` of the distributor's (plus half a Wh an hour: the
  files' 3-decimal kWh): a log line and the ``reconcile`` point (tags ``site``, ``cups``,
  ``month``; time the month's start).

Only hours both sides have whole (gestor's ``complete``) are compared; the others are counted.
Units: Wh, s. Balances export-positive (DESIGN.md section 2).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Sequence
from zoneinfo import ZoneInfo

from gestor.bill.distributor import HourRecord, query_store
from gestor.core.balance import Balance, settled_wh

if TYPE_CHECKING:
    from gestor.settings import Settings

log = logging.getLogger("gestor.bill")
ROUNDING_WH = 0.5          # a file's kWh with 3 decimals: each hour is within half a Wh
SHIFT_SPAN_S = 900         # the offset is searched within +-15 min
SHIFT_STEP_S = 60          # in steps of a minute
MEASUREMENT = "reconcile"


@dataclass(frozen=True)
class GestorHour:
    """One of gestor's settled hours: net ``balance_wh`` (+ surplus) and whether it was ``complete``."""

    start: datetime
    balance_wh: float
    complete: bool


@dataclass(frozen=True)
class HourDiff:
    """One hour both sides have: the Wh each bills, and the distributor's method."""

    start: datetime
    gestor_import_wh: float
    gestor_surplus_wh: float
    dist_import_wh: float
    dist_surplus_wh: float
    estimated: bool

    @property
    def import_diff_wh(self) -> float:
        """distributor minus gestor, Wh."""
        return self.dist_import_wh - self.gestor_import_wh

    @property
    def surplus_diff_wh(self) -> float:
        return self.dist_surplus_wh - self.gestor_surplus_wh


@dataclass
class Reconciliation:
    """A month (or any span) of hours compared; see the module docstring for each figure."""

    hours: list[HourDiff]
    only_gestor: int = 0          # hours gestor has and the distributor not
    only_distributor: int = 0     # hours the distributor has and gestor not (or not whole)
    offset_s: float | None = None  # the meter clock's offset, s (+ ahead); None: not estimated
    offset_scores: list[tuple[float, float]] = field(default_factory=list)  # (shift s, RMS Wh) per step
    max_difference_pct: float = 2.0

    def total(self, key: str) -> float:
        return sum(getattr(h, key) for h in self.hours)

    @property
    def estimated(self) -> int:
        return sum(1 for h in self.hours if h.estimated)

    @property
    def ratio(self) -> float | None:
        """Least-squares calibration ratio of the net balances over the hours the distributor
        measured (its estimated ones are no measurement); None with no energy."""
        real = [h for h in self.hours if not h.estimated]
        g = [h.gestor_surplus_wh - h.gestor_import_wh for h in real]
        d = [h.dist_surplus_wh - h.dist_import_wh for h in real]
        gg = sum(x * x for x in g)
        return None if gg <= 0 else sum(a * b for a, b in zip(d, g)) / gg

    def bound_wh(self, key: str) -> float:
        """How far the month's total ``key`` (dist_import_wh / dist_surplus_wh) may differ, Wh."""
        return self.max_difference_pct / 100.0 * self.total(key) + ROUNDING_WH * len(self.hours)

    @property
    def alerts(self) -> list[str]:
        """One sentence per figure beyond its bound (empty: they agree)."""
        out = []
        for name, dkey, diff in (("import", "dist_import_wh", "import_diff_wh"),
                                 ("surplus", "dist_surplus_wh", "surplus_diff_wh")):
            delta, bound = self.total(diff), self.bound_wh(dkey)
            if abs(delta) > bound:
                out.append(f"{name}: the distributor bills {self.total(dkey):.0f} Wh, gestor counted "
                           f"{self.total(dkey) - delta:.0f} Wh ({delta:+.0f} Wh, more than the {bound:.0f} Wh allowed: "
                           f"{self.max_difference_pct:g} % + {ROUNDING_WH:g} Wh an hour)")
        return out

    def point(self, site: str, cups: str, month: str, at: datetime) -> str:
        """The ``reconcile`` point (for the page and Home Assistant)."""
        from drivers.store.influx import point
        r = self.ratio
        return point(MEASUREMENT, {"site": site, "cups": cups, "month": month}, {
            "hours": float(len(self.hours)), "estimated_hours": float(self.estimated),
            "import_diff_wh": self.total("import_diff_wh"), "surplus_diff_wh": self.total("surplus_diff_wh"),
            "dist_import_wh": self.total("dist_import_wh"), "dist_surplus_wh": self.total("dist_surplus_wh"),
            "gestor_import_wh": self.total("gestor_import_wh"), "gestor_surplus_wh": self.total("gestor_surplus_wh"),
            "ratio": r, "offset_s": self.offset_s, "alert": bool(self.alerts)}, at)


def compare(gestor: Sequence[GestorHour], dist: Sequence[HourRecord], max_difference_pct: float = 2.0) -> Reconciliation:
    """Pair the hours by start; only whole gestor hours count. The distributor's surplus is 0
    where its source gives none."""
    g = {h.start: h for h in gestor}
    d = {h.start: h for h in dist}
    hours = []
    for t in sorted(set(g) & set(d)):
        if not g[t].complete:
            continue
        exp, imp = settled_wh(g[t].balance_wh)
        hours.append(HourDiff(t, imp, exp, d[t].import_wh, d[t].surplus_wh or 0.0, d[t].estimated))
    whole = {h.start for h in hours}
    return Reconciliation(hours, only_gestor=sum(1 for t in g if t not in d),
                          only_distributor=sum(1 for t in d if t not in whole), max_difference_pct=max_difference_pct)


def resettle(t_s: Sequence[float], net_w: Sequence[float], tz: ZoneInfo, max_gap_s: float = 120.0,
             shift_s: float = 0.0) -> list[GestorHour]:
    """A recording's readings (epoch s, export-positive W) settled into hours by
    :class:`gestor.core.balance.Balance`, each reading taken ``shift_s`` seconds earlier than
    stamped (a meter clock ``shift_s`` ahead). The last, still open hour is left out."""
    b = Balance(3600, tz, max_gap_s)
    out: list[GestorHour] = []
    for t, w in zip(t_s, net_w):
        if w != w:  # NaN: a missing reading, not a zero
            continue
        for p in b.update_r((t - shift_s, w, None, None, None, None)):
            out.append(GestorHour(p.start, p.balance_wh, p.complete))
    return out


def find_offset(t_s: Sequence[float], net_w: Sequence[float], dist: Sequence[HourRecord], tz: ZoneInfo,
                max_gap_s: float = 120.0, span_s: int = SHIFT_SPAN_S, step_s: int = SHIFT_STEP_S
                ) -> tuple[float, list[tuple[float, float]]]:
    """The meter clock's offset, s (+ ahead), and the RMS difference (Wh) of the hourly net
    balances at each step, over the hours the distributor measured (not its estimated ones).
    Raises ValueError when no such hour is whole at every shift."""
    d = {h.start: h.balance_wh for h in dist if not h.estimated}
    shifts = list(range(-span_s, span_s + 1, step_s))
    runs = [{h.start: h for h in resettle(t_s, net_w, tz, max_gap_s, s)} for s in shifts]
    common = set(d)
    for run in runs:
        common &= {t for t, h in run.items() if h.complete}
    if not common:
        raise ValueError("no hour of the distributor's is covered whole by the readings at every shift "
                         f"of +-{span_s // 60} min: the offset cannot be estimated")
    scores = [(float(s), math.sqrt(sum((run[t].balance_wh - d[t]) ** 2 for t in common) / len(common)))
              for s, run in zip(shifts, runs)]
    i = min(range(len(scores)), key=lambda k: scores[k][1])
    best = scores[i][0]
    if 0 < i < len(scores) - 1:  # the parabola through the best step and its neighbours (on squared scores)
        f0, f1, f2 = scores[i - 1][1] ** 2, scores[i][1] ** 2, scores[i + 1][1] ** 2
        den = f0 - 2 * f1 + f2
        if den > 0:
            best += max(-1.0, min(1.0, 0.5 * (f0 - f2) / den)) * step_s
    return best, scores


def gestor_from_influx(s: Settings, start: datetime, end: datetime) -> list[GestorHour]:
    """gestor's settled hours in [start, end) from the ``period`` measurement (InfluxDB 1.x): the
    periods of each hour summed (quarter-hours: four), whole when each of them was. Raises
    ValueError when the store does not answer."""
    rows = query_store(s.store, f"SELECT balance_wh, complete FROM period WHERE site = $site AND time >= "
                                f"{int(start.timestamp())}s AND time < {int(end.timestamp())}s", {"site": s.site})
    per: dict[int, list[tuple[float, bool]]] = {}
    for r in rows:
        if r.get("balance_wh") is not None:
            per.setdefault(int(r["time"]) // 3600 * 3600, []).append((float(r["balance_wh"]), bool(r.get("complete"))))
    n = 3600 // s.billing.period_s
    return [GestorHour(datetime.fromtimestamp(k, timezone.utc), sum(b for b, _ in v),
                       len(v) == n and all(c for _, c in v)) for k, v in sorted(per.items())]


def readings_from_influx(s: Settings, start: datetime, end: datetime) -> tuple[list[float], list[float]]:
    """The meter's ``net_w`` readings in [start, end) (epoch s, W), a day per query (a month of
    10 s readings is 270 000 points). Raises ValueError when the store does not answer."""
    t_s: list[float] = []
    w: list[float] = []
    a = start
    while a < end:
        b = min(a + timedelta(days=1), end)
        for r in query_store(s.store, f"SELECT net_w FROM meter WHERE site = $site AND time >= "
                                      f"{int(a.timestamp() * 1000)}ms AND time < {int(b.timestamp() * 1000)}ms",
                             {"site": s.site}, epoch="ms"):
            if r.get("net_w") is not None:
                t_s.append(r["time"] / 1000.0)
                w.append(float(r["net_w"]))
        a = b
    return t_s, w


def report(r: Reconciliation, tz: ZoneInfo, hours: bool = True) -> str:
    """The text ``gestor bill reconcile`` prints: one line per hour (local time; ``E`` estimated),
    then the month's totals, the ratio, the offset and the alerts."""
    out = []
    if hours:
        out.append("hour (local)            gestor import/surplus Wh   distributor import/surplus Wh   difference Wh")
        for h in r.hours:
            t = h.start.astimezone(tz)
            out.append(f"{t:%Y-%m-%d %H:%M} {t.tzname() or '':<5}  {h.gestor_import_wh:9.1f} {h.gestor_surplus_wh:9.1f}"
                       f"      {h.dist_import_wh:9.1f} {h.dist_surplus_wh:9.1f}{' E' if h.estimated else '  '}"
                       f"        {h.import_diff_wh:+6.1f} {h.surplus_diff_wh:+6.1f}")
    out.append(f"hours compared: {len(r.hours)} ({r.estimated} estimated by the distributor); "
               f"gestor only: {r.only_gestor}; distributor only or not whole in gestor: {r.only_distributor}")
    for name, g, d in (("import", "gestor_import_wh", "dist_import_wh"), ("surplus", "gestor_surplus_wh", "dist_surplus_wh")):
        gt, dt = r.total(g), r.total(d)
        pct = f" ({(dt - gt) / dt * 100:+.2f} %)" if dt else ""
        out.append(f"{name}: gestor {gt / 1000:.3f} kWh, distributor {dt / 1000:.3f} kWh, difference {dt - gt:+.0f} Wh{pct}")
    ratio = r.ratio
    out.append("calibration ratio (distributor / gestor, net balance, least squares): "
               + ("-" if ratio is None else f"{ratio:.4f}"))
    if r.offset_s is not None:
        off = round(r.offset_s)
        how = "ahead of" if off > 0 else "behind" if off < 0 else "on"
        out.append(f"meter clock offset: {off:+d} s (the meter's clock is {how} the distributor's hours; "
                   f"searched +-{SHIFT_SPAN_S // 60} min in 1-min steps, refined)")
    alerts = r.alerts
    out.append("ALERT: " + "; ".join(alerts) if alerts else
               f"agreement: within {r.max_difference_pct:g} % (+{ROUNDING_WH:g} Wh an hour) on import and surplus")
    return "\n".join(out)
