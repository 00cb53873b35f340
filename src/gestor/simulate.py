"""Replay recorded data through the very same balance, policy and guard code as managing, with
simulated loads, and report what the bill would have been.

Model (issue 5, DESIGN.md section 6):

* Base load: the recorded consumption without the recorded managed loads
  (``max(powerC - powerL1 - powerL2, 0)`` for the house files; ``powerP + powerLB`` for the
  winter file, which has none). The simulated loads are added on top with their rated power.
* The daemons' own timing, from the first sample on: monitoring reads the latest sample every
  ``monitoring.interval_s`` (a sample superseded before a read is never seen; a NaN or implausible
  one is a failed read), stamped and with the simulated loads added as the replay meter does;
  managing runs :class:`gestor.control.Core` every ``managing.interval_s`` on the readings since
  its last cycle (the stale-meter guard included); a switch shows in the readings taken after it.
  ``tests/integration/test_simulator_is_the_daemon.py`` checks on a real day that the real
  daemons switch at the same instants and end every period at the same balance (1e-6 Wh).
* Energies are the trapezoid of the samples, split at settlement period boundaries; an interval
  longer than ``billing.max_gap_s`` is not integrated and its periods are marked incomplete
  (:class:`gestor.balance.Balance`). Per-load energy is the trapezoid of its power samples, so
  ``production - base - loads = net`` per period to rounding.
* Without gestor: the same data with no simulated load.
* exported = Σ periods max(balance, 0); imported = Σ max(-balance, 0). captured = exported without
  - exported with; extra import = imported with - imported without; bound per period =
  ``min(max(balance_without, 0), Σ load power × period)``.
* Cost (:mod:`gestor.tariff`): imported kWh × import price of its 2.0TD period (or ``--prices``),
  minus exported kWh × surplus price, the compensation capped each calendar month at the cost of
  the energy imported that month (Spain's simplified self-consumption compensation, RD 244/2019
  art. 14.3). Fixed terms (power, meter rental, taxes) are left out: they do not depend on gestor.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from drivers.meters.base import Reading
from drivers.meters.replay import ReplayData, ReplaySettings
from gestor.balance import PeriodSummary
from gestor.control import Core, LoadState
from gestor.guards import LoadLimits
from gestor.settings import Settings
from gestor.tariff import period_2_0td

UTC = timezone.utc


def replay_settings_for(path: Path) -> ReplaySettings:
    """Column mapping of a recorded CSV from its header: the ``house-*`` format (powerP, powerC,
    powerL1, powerL2) or the ``winter-*`` one (powerP, powerLB import-positive); see
    shared/data/README.md."""
    try:
        with open(path, newline="") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror or e}") from None
    if "powerC" in header:
        sub = [c for c in ("powerL1", "powerL2") if c in header]
        return ReplaySettings(path=path, production_column="powerP", consumption_column="powerC",
                              subtract_columns=sub, add_simulated_loads=False)
    if "powerLB" in header:
        return ReplaySettings(path=path, production_column="powerP", consumption_column=None,
                              net_column="powerLB", net_sign="import_positive", add_simulated_loads=False)
    raise ValueError(f"{path}: unknown format: expected powerP with powerC (house) or powerLB (winter); "
                     f"columns are {', '.join(header)}")


@dataclass
class PeriodResult:
    """One settlement period of a simulation. Energies Wh, on-times s, cost EUR."""

    start: datetime
    end: datetime
    complete: bool
    production_wh: float
    base_wh: float
    load_wh: dict[str, float]
    load_on_s: dict[str, float]
    switches: dict[str, int]
    balance_wh: float            # with gestor
    balance_without_wh: float
    bound_wh: float
    price_period: str
    import_price: float
    surplus_price: float

    @property
    def loads_wh(self) -> float:
        return sum(self.load_wh.values())

    @property
    def export_wh(self) -> float:
        return max(self.balance_wh, 0.0)

    @property
    def import_wh(self) -> float:
        return max(-self.balance_wh, 0.0)

    @property
    def export_without_wh(self) -> float:
        return max(self.balance_without_wh, 0.0)

    @property
    def import_without_wh(self) -> float:
        return max(-self.balance_without_wh, 0.0)


@dataclass
class Totals:
    periods: int = 0
    incomplete: int = 0
    production_wh: float = 0.0
    base_wh: float = 0.0
    loads_wh: float = 0.0
    exported_wh: float = 0.0
    imported_wh: float = 0.0
    exported_without_wh: float = 0.0
    imported_without_wh: float = 0.0
    bound_wh: float = 0.0
    switches: int = 0
    cost_eur: float = 0.0
    cost_without_eur: float = 0.0
    load_wh: dict[str, float] = field(default_factory=dict)
    load_on_s: dict[str, float] = field(default_factory=dict)
    load_switches: dict[str, int] = field(default_factory=dict)

    @property
    def captured_wh(self) -> float:
        return self.exported_without_wh - self.exported_wh

    @property
    def extra_import_wh(self) -> float:
        return self.imported_wh - self.imported_without_wh

    @property
    def captured_pct(self) -> float:
        return 100.0 * self.captured_wh / self.bound_wh if self.bound_wh > 0 else 100.0

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d.update(captured_wh=self.captured_wh, extra_import_wh=self.extra_import_wh,
                 captured_pct=self.captured_pct)
        return d


@dataclass
class Trace:
    """Per-sample series for plots (epoch s, W, on states)."""

    t: list[float] = field(default_factory=list)
    production_w: list[float] = field(default_factory=list)
    base_w: list[float] = field(default_factory=list)
    on: dict[str, list[bool]] = field(default_factory=dict)


@dataclass
class SimResult:
    periods: list[PeriodResult]
    totals: Totals
    days: dict[str, Totals]
    trace: Trace | None = None
    switches: list[tuple[datetime, str, bool]] = field(default_factory=list)  # (when, load, on)


class Prices:
    """Import and surplus prices, EUR/kWh, per settlement period: 2.0TD P1/P2/P3 from settings, or
    an hourly CSV (``time`` ISO 8601 with offset, ``import_eur_per_kwh``, optional
    ``surplus_eur_per_kwh``) such as PVPC."""

    def __init__(self, s: Settings, hourly_csv: Path | None = None) -> None:
        self.tz = s.tz
        self.t = s.tariff
        self.hourly: dict[int, tuple[float, float | None]] = {}
        if hourly_csv is not None:
            with open(hourly_csv, newline="") as f:
                for n, row in enumerate(csv.DictReader(f), start=2):
                    try:
                        at = datetime.fromisoformat(row["time"])
                        if at.tzinfo is None:
                            at = at.replace(tzinfo=self.tz)
                        sp = row.get("surplus_eur_per_kwh")
                        self.hourly[int(at.timestamp()) // 3600] = (
                            float(row["import_eur_per_kwh"]), float(sp) if sp not in (None, "") else None)
                    except (KeyError, ValueError) as e:
                        raise ValueError(f"{hourly_csv}: line {n}: needs time and import_eur_per_kwh ({e})") from None

    def at(self, start: datetime) -> tuple[str, float, float]:
        p = period_2_0td(start, self.tz)
        hp = self.hourly.get(int(start.timestamp()) // 3600)
        if hp is not None:
            return p, hp[0], hp[1] if hp[1] is not None else self.t.surplus_eur_per_kwh
        price = {"P1": self.t.import_p1_eur_per_kwh, "P2": self.t.import_p2_eur_per_kwh,
                 "P3": self.t.import_p3_eur_per_kwh}[p]
        return p, price, self.t.surplus_eur_per_kwh


@dataclass
class _Load(LoadState):
    """A simulated load: the controller's state plus the energy it took per period."""

    wh: dict[float, float] = field(default_factory=dict)      # period start epoch → Wh


def simulate(data: ReplayData, s: Settings, prices: Prices, start: datetime | None = None,
             end: datetime | None = None, trace: bool = False,
             progress: Callable[[float], None] | None = None) -> SimResult:
    """Run ``s``'s policy, guards and loads over ``data`` exactly as the daemons would have run
    on it (see module docstring): monitoring reads the latest sample every
    ``monitoring.interval_s`` from the first sample on, managing runs the control core every
    ``managing.interval_s`` on the readings since its last cycle, and a switch shows in the
    readings monitoring takes after it."""
    tz = s.tz
    loads = [_Load(ld, LoadLimits.of(ld)) for ld in s.loads_by_priority()]
    core = Core(s, loads)
    bal = core.balance
    total_power_w = sum(ld.power_w for ld in loads)
    max_gap = s.billing.max_gap_s
    max_abs_w = float(getattr(s.meter, "max_abs_power_w", 50_000.0))
    closed: list[PeriodSummary] = []
    tr = Trace(on={ld.name: [] for ld in loads}) if trace else None
    switch_log: list[tuple[datetime, str, bool]] = []
    t_arr, cons_arr, net_arr, prod_arr = data.t, data.consumption_w, data.net_w, data.production_w
    i0 = 0 if start is None else _bisect(t_arr, start.timestamp())
    i1 = len(t_arr) if end is None else _bisect(t_arr, end.timestamp())
    if i0 >= i1:
        return SimResult([], Totals(), {}, tr, switch_log)
    t0 = datetime.fromtimestamp(t_arr[i0], UTC)   # both daemons start at the first sample
    c0 = t0.timestamp()
    mon_dt, mgr_dt = timedelta(seconds=s.monitoring.interval_s), timedelta(seconds=s.managing.interval_s)
    m_at, m_ts = t0, c0                            # the monitoring tick
    T, T_ts = t0, c0                               # the next managing tick
    prev_T_ts: float | None = None
    pending: list[Reading] = []                    # read since the last managing cycle
    last_read: Reading | None = None
    prev_t: float | None = None
    prev_load_w = [0.0] * len(loads)
    bounds = core.bounds_s

    def cycle() -> None:  # managing's cycle at T, as managing.Managing._cycle runs it
        nonlocal prev_T_ts, pending
        if prev_T_ts is not None:
            core.account(prev_T_ts, T_ts, bounds)
        prev_T_ts = T_ts
        last = bal.last
        new = [r for r in pending if (last is None or r.at > last.at) and r.at <= T]
        pending = []
        age = (T - last_read.at).total_seconds() if last_read is not None else None
        step = core.step(T, new, reading_age_s=age)
        closed.extend(step.closed)
        k = step.period_start.timestamp()
        for w, ld in zip(step.wishes, loads):
            if w.on != ld.on:  # a simulated relay always confirms
                core.switched(ld, w.on, T, k)
                switch_log.append((T, ld.name, w.on))

    n = max(i1 - i0, 1)
    for i in range(i0, i1):
        ti = t_arr[i]
        while c0 + (m_ts - c0) * 1.0 < ti:  # the replay meter's data time at a tick (speed 1)
            m_at += mon_dt
            m_ts = m_at.timestamp()
        if i + 1 < i1 and t_arr[i + 1] <= c0 + (m_ts - c0) * 1.0:
            continue  # a newer sample is the latest by the time monitoring reads: this one is never read
        while T_ts < m_ts:  # managing's cycles before this read (at equal times monitoring reads first)
            cycle()
            T += mgr_dt
            T_ts = T.timestamp()
        cons, net = cons_arr[i], net_arr[i]
        prod = prod_arr[i] if prod_arr is not None else None
        if net != net or cons != cons or (prod is not None and prod != prod):
            continue  # NaN: a failed read, not a zero
        load_w = [ld.power_w if ld.on else 0.0 for ld in loads]
        extra = sum(load_w)
        r_net, r_cons = net - extra, cons + extra
        if abs(r_net) > max_abs_w or abs(r_cons) > max_abs_w or (prod is not None and abs(prod) > max_abs_w):
            continue  # implausible: monitoring discards it
        at = datetime.fromtimestamp(c0 + (ti - c0) / 1.0, UTC)  # stamped as the replay meter does
        r = Reading(at, r_net, prod, r_cons)
        if last_read is not None and r.at <= last_read.at:
            continue
        pending.append(r)
        last_read = r
        t = at.timestamp()
        if prev_t is not None and t - prev_t <= max_gap:
            _account(loads, prev_t, t, prev_load_w, load_w, bounds)
        prev_t, prev_load_w = t, load_w
        if tr is not None:
            tr.t.append(t)
            tr.production_w.append(prod or 0.0)
            tr.base_w.append(cons)
            for ld in loads:
                tr.on[ld.name].append(bool(ld.on))
        if progress is not None and (i - i0) % 20000 == 0:
            progress((i - i0) / n)
    if pending:  # the last readings: the cycle that takes them
        while T < pending[-1].at:
            cycle()
            T += mgr_dt
            T_ts = T.timestamp()
        cycle()
    if bal.current is not None and bal.current.covered_s > 0:
        closed.append(bal.current)
    periods = _periods(closed, loads, total_power_w, prices)
    totals, days = _totals(periods, loads, tz, s)
    return SimResult(periods, totals, days, tr, switch_log)


def _bisect(a: list[float], x: float) -> int:
    import bisect
    return bisect.bisect_left(a, x)


def _account(loads: list[_Load], t0: float, t1: float, w0: list[float], w1: list[float],
             bounds: Callable[[float], tuple[float, float]]) -> None:
    """Per-load trapezoid energy between two readings, split at period boundaries as
    :class:`Balance` splits the net (``bounds(t)``: the period around epoch ``t``)."""
    a = t0
    while a < t1:
        k, end = bounds(a)
        e = min(end, t1)
        for j, ld in enumerate(loads):
            v0, v1 = w0[j], w1[j]
            if v0 or v1:
                va = v0 + (v1 - v0) * (a - t0) / (t1 - t0)
                vb = v0 + (v1 - v0) * (e - t0) / (t1 - t0)
                ld.wh[k] = ld.wh.get(k, 0.0) + (va + vb) / 2.0 * (e - a) / 3600.0
        a = e


def _periods(closed: list[PeriodSummary], loads: list[_Load], total_power_w: float,
             prices: Prices) -> list[PeriodResult]:
    """Per period: without gestor = with gestor plus the loads' energy (the same trapezoid of the
    same samples, so the two integrate alike, gaps included)."""
    out = []
    for p in closed:
        k = p.start.timestamp()
        load_wh = {ld.name: ld.wh.get(k, 0.0) for ld in loads}
        loads_wh = sum(load_wh.values())
        without = p.balance_wh + loads_wh
        bound = min(max(without, 0.0), total_power_w * p.period_s / 3600.0)
        price_period, imp, sur = prices.at(p.start)
        out.append(PeriodResult(
            p.start, p.end, p.complete, p.production_wh or 0.0, (p.consumption_wh or 0.0) - loads_wh, load_wh,
            {ld.name: ld.on_s.get(k, 0.0) for ld in loads}, {ld.name: ld.switches.get(k, 0) for ld in loads},
            p.balance_wh, without, bound, price_period, imp, sur))
    return out


def _cost(periods: Iterable[PeriodResult], tz: ZoneInfo, with_gestor: bool, p3_price: float = 0.0) -> float:
    """EUR: import cost minus surplus compensation capped per calendar month at that month's
    import cost (RD 244/2019 art. 14.3). Without gestor the loads still need their energy: it is
    bought from the grid at the P3 price (a night timer, the cheapest way without gestor)."""
    months: dict[tuple[int, int], list[float]] = {}
    for p in periods:
        local = p.start.astimezone(tz)
        m = months.setdefault((local.year, local.month), [0.0, 0.0])
        imp = p.import_wh if with_gestor else p.import_without_wh
        exp = p.export_wh if with_gestor else p.export_without_wh
        m[0] += imp / 1000.0 * p.import_price
        if not with_gestor:
            m[0] += p.loads_wh / 1000.0 * p3_price
        m[1] += exp / 1000.0 * p.surplus_price
    return sum(cost - min(comp, cost) for cost, comp in months.values())


def _totals(periods: list[PeriodResult], loads: list[_Load], tz: ZoneInfo,
            s: Settings) -> tuple[Totals, dict[str, Totals]]:
    def add(t: Totals, p: PeriodResult) -> None:
        t.periods += 1
        t.incomplete += 0 if p.complete else 1
        t.production_wh += p.production_wh
        t.base_wh += p.base_wh
        t.loads_wh += p.loads_wh
        t.exported_wh += p.export_wh
        t.imported_wh += p.import_wh
        t.exported_without_wh += p.export_without_wh
        t.imported_without_wh += p.import_without_wh
        t.bound_wh += p.bound_wh
        t.switches += sum(p.switches.values())
        for ld in loads:
            t.load_wh[ld.name] = t.load_wh.get(ld.name, 0.0) + p.load_wh[ld.name]
            t.load_on_s[ld.name] = t.load_on_s.get(ld.name, 0.0) + p.load_on_s[ld.name]
            t.load_switches[ld.name] = t.load_switches.get(ld.name, 0) + p.switches[ld.name]

    total = Totals()
    days: dict[str, Totals] = {}
    by_day: dict[str, list[PeriodResult]] = {}
    for p in periods:
        day = p.start.astimezone(tz).date().isoformat()
        add(total, p)
        add(days.setdefault(day, Totals()), p)
        by_day.setdefault(day, []).append(p)
    p3 = s.tariff.import_p3_eur_per_kwh
    total.cost_eur, total.cost_without_eur = _cost(periods, tz, True), _cost(periods, tz, False, p3)
    for day, ps in by_day.items():  # a day's cost, capped as if it were its own month
        days[day].cost_eur, days[day].cost_without_eur = _cost(ps, tz, True), _cost(ps, tz, False, p3)
    return total, days


def day_bounds(day: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    d = datetime.fromisoformat(day)
    a = datetime(d.year, d.month, d.day, tzinfo=tz)
    b = a + timedelta(days=1)
    return a.astimezone(UTC), datetime(b.year, b.month, b.day, tzinfo=tz).astimezone(UTC)
