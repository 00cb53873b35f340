"""Replay recorded data through the very same balance, policy and guard code as managing, with
simulated loads, and report what the bill would have been.

Model (issue 5, DESIGN.md section 6):

* Base load: the recorded consumption without the recorded managed loads
  (``max(powerC - powerL1 - powerL2, 0)`` for the house files; ``powerP + powerLB`` for the
  winter file, which has none). The simulated loads are added on top with their rated power.
* The daemons' own timing, from the first sample on: monitoring reads the latest sample every
  ``monitoring.interval_s`` (a sample superseded before a read is never seen; a NaN or implausible
  one is a failed read), stamped and with the simulated loads added as the replay meter does;
  managing runs :class:`gestor.core.control.Core` every ``managing.interval_s`` on the readings since
  its last cycle (the stale-meter guard included); a switch shows in the readings taken after it.
  ``tests/integration/test_simulator_is_the_daemon.py`` checks on a real day that the real
  daemons switch at the same instants and end every period at the same balance (1e-6 Wh).
* Energies are the trapezoid of the samples, split at settlement period boundaries; an interval
  longer than ``billing.max_gap_s`` is not integrated and its periods are marked incomplete
  (:class:`gestor.core.balance.Balance`). Per-load energy is the trapezoid of its power samples, so
  ``production - base - loads = net`` per period to rounding.
* Without gestor: the same data with no simulated load.
* exported = Σ periods max(balance, 0); imported = Σ max(-balance, 0). captured = exported without
  - exported with; extra import = imported with - imported without; bound per period =
  ``min(max(balance_without, 0), Σ load power × period)``.
* Cost (:mod:`gestor.tariff.calendar`): imported kWh × import price of its 2.0TD period (or ``--prices``),
  minus exported kWh × surplus price, the compensation capped each calendar month at the cost of
  the energy imported that month (Spain's simplified self-consumption compensation, RD 244/2019
  art. 14.3). Fixed terms (power, meter rental, taxes) are left out: they do not depend on gestor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from drivers.meters.replay import ReplayData
from gestor.core.balance import PeriodSummary, Sample
from gestor.core.control import Core
from gestor.core.foresight import Period, Plan, Scheduled, plan
from gestor.core.guards import LoadLimits, min_run_deadline
from gestor.settings import Settings
from gestor.sim import devices as sim_dev
from gestor.sim.books import (DevicePeriodResult, PeriodResult, SimLoad, SimResult, Totals, Trace, account, day_bounds,
                              device_period_results, index_at, monthly, period_results, totals_of)
from gestor.sim.inputs import Prices, replay_settings_for
from gestor.sim.models import EvSession
from gestor.tariff.calendar import national_holidays

UTC = timezone.utc
# the results, the books and the inputs, for the callers that take them from here
__all__ = ["DevicePeriodResult", "PeriodResult", "Prices", "SimResult", "Totals", "Trace", "day_bounds", "foresight",
           "monthly", "replay_settings_for", "simulate"]

WARMUP_S = 6 * 3600.0  # a split run starts each part this long before its local midnight


@dataclass
class _Chunk:
    periods: list[PeriodResult]
    switches: list[tuple[float, str, bool]]
    trace: Trace | None
    signatures: dict[float, tuple]
    devices: list = field(default_factory=list)       # gestor.sim.devices.DeviceSummary
    setpoint_log: list = field(default_factory=list)  # (epoch s, device, W)


def simulate(data: ReplayData, s: Settings, prices: Prices, start: datetime | None = None,
             end: datetime | None = None, trace: bool = False,
             progress: Callable[[float], None] | None = None, jobs: int = 1,
             warmup_s: float = WARMUP_S, policy: Callable | None = None,
             battery_capacity_wh: float | None = None, ev_sessions: Mapping[str, Sequence[EvSession]] | None = None,
             nowcast: Callable[[float, float, float], float | None] | None = None) -> SimResult:
    """Run ``s``'s policy, guards and loads over ``data`` exactly as the daemons would have run
    on it (see module docstring): monitoring reads the latest sample every
    ``monitoring.interval_s`` from the first sample on, managing runs the control core every
    ``managing.interval_s`` on the readings since its last cycle, and a switch shows in the
    readings monitoring takes after it.

    ``jobs`` > 1 splits a run of several days at local midnights into that many parts, run in
    forked processes, each from ``warmup_s`` before its midnight on the same tick grid. A part is
    kept only if its state at the first cycle after its midnight (loads, timers that still
    matter, the period's balance and energies, the recent surplus, the last readings) equals the
    state the part before it reached there; from equal states the daemons go on identically, so
    the result is the sequential one. Otherwise the run is redone in one piece.
    ``SimResult.parts`` tells how many parts were used. ``policy``: play this policy function
    instead of the configured one (the perfect-foresight schedule, :func:`foresight`).

    With setpoint devices (``s.setpoints``, :mod:`gestor.sim.devices`) they are driven after the
    loads each cycle as managing drives them, their power in the readings after a command, and
    the run is in one piece (``jobs`` is not used: a battery's state of charge carries over
    midnight); ``battery_capacity_wh``: the capacity of a battery with a real driver (its
    settings do not say). The periods are then :class:`DevicePeriodResult`, the totals carry
    each device's Wh, and ``SimResult.devices``/``setpoint_log`` say what each did. Raises
    ValueError (one line, naming the key) for a device it cannot simulate. ``ev_sessions``: per
    EV charger's name, the cars that connect to it (:func:`gestor.sim.devices.sim_devices`);
    ``nowcast``: the devices' expected surplus (:func:`gestor.sim.devices.drive`; not managing's)."""
    t_arr = data.t
    i0 = 0 if start is None else index_at(t_arr, start.timestamp())
    i1 = len(t_arr) if end is None else index_at(t_arr, end.timestamp())
    if i0 >= i1:
        return SimResult([], Totals(), {}, Trace() if trace else None, [])
    tick0_us = round(t_arr[i0] * 1e6)  # both daemons start at the first sample
    if s.setpoints:  # the devices' path: in one piece (a battery's charge carries over midnight)
        c = _run(data, s, prices, i0, i1, tick0_us, trace=trace, progress=progress, policy=policy,
                 devices=True, battery_capacity_wh=battery_capacity_wh, ev_sessions=ev_sessions, nowcast=nowcast)
        totals, days = totals_of(c.periods, s.loads_by_priority(), s.tz, s)
        return SimResult(c.periods, totals, days, c.trace,
                         [(datetime.fromtimestamp(t, UTC), n, on) for t, n, on in c.switches], parts=1,
                         devices=c.devices,
                         setpoint_log=[(datetime.fromtimestamp(t, UTC), n, w) for t, n, w in c.setpoint_log])
    cuts = [] if trace or jobs <= 1 else _cuts(t_arr[i0], t_arr[i1 - 1], s.tz, jobs)
    chunks = _parallel(data, s, prices, i0, i1, tick0_us, cuts, warmup_s, jobs, policy) if cuts else None
    if chunks is None:
        chunks = [_run(data, s, prices, i0, i1, tick0_us, trace=trace, progress=progress, policy=policy)]
    periods = [p for c in chunks for p in c.periods]
    totals, days = totals_of(periods, s.loads_by_priority(), s.tz, s)
    return SimResult(periods, totals, days, chunks[0].trace,
                     [(datetime.fromtimestamp(t, UTC), n, on) for c in chunks for t, n, on in c.switches],
                     parts=len(chunks))


def foresight(data: ReplayData, s: Settings, prices: Prices, start: datetime | None = None,
              end: datetime | None = None, base: SimResult | None = None, jobs: int = 1) -> tuple[SimResult, Plan]:
    """The perfect-foresight benchmark on the same data, loads, guards and periods
    (:mod:`gestor.core.foresight`): the schedule planned on every period's surplus without gestor
    (from ``base``, a run of the same range, or a run with the loads never switched), played
    through the simulator on the daemons' timing like any policy. Returns its result and plan.

    The setpoint devices (``s.setpoints``) are left out: the benchmark plans the on/off loads
    alone, on the house without the loads and the devices (``base``'s ``balance_without_wh``)."""
    if s.setpoints:
        s = s.model_copy(update={"setpoints": []})
    if base is None:
        base = simulate(data, s, prices, start, end, jobs=jobs, policy=lambda snap, p: [])
    loads = s.loads_by_priority()
    limits = [LoadLimits.of(ld) for ld in loads]
    ctl = Core(s)
    periods = [Period(p.start.timestamp(), p.end.timestamp(), p.balance_without_wh,
                      tuple(_inside_windows(ctl, lim, p.start.timestamp(), p.end.timestamp()) for lim in limits))
               for p in base.periods]
    pl = plan(periods, [ld.power_w for ld in loads])
    t_arr = data.t
    i0 = 0 if start is None else index_at(t_arr, start.timestamp())
    if i0 >= len(t_arr) or not periods:
        return base, pl
    sched = Scheduled(pl, [ld.name for ld in loads], round(t_arr[i0] * 1e6) / 1e6, s.managing.interval_s)
    return simulate(data, s, prices, start, end, jobs=jobs, policy=sched), pl


def _inside_windows(ctl: Core, lim: LoadLimits, t0: float, t1: float) -> bool:
    """Whether [t0, t1) lies wholly inside the windows (checked minute by minute)."""
    if not lim.windows:
        return True
    from gestor.core.guards import in_windows_min
    t = t0
    while t < t1:
        if not in_windows_min(ctl.local_minute(t), lim.windows):
            return False
        t += 60.0
    return True


def _cuts(t_first: float, t_last: float, tz: ZoneInfo, parts: int) -> list[float]:
    """Local midnights (epoch s) that split [t_first, t_last] into ``parts`` runs of whole days
    as even as can be; none for a run shorter than two days."""
    d0 = datetime.fromtimestamp(t_first, tz).date()
    d1 = datetime.fromtimestamp(t_last, tz).date()
    days = (d1 - d0).days  # midnights inside the run
    if days < 2:
        return []
    parts = min(parts, days)
    return [datetime.combine(d0 + timedelta(days=round(days * k / parts)), datetime.min.time(), tz).timestamp()
            for k in range(1, parts)]


def _warm_from(t: float, s: Settings) -> float:
    """Where a part's warm-up starts: at epoch ``t`` or, with a daily minimum run, at the deadline
    before it (:func:`gestor.core.guards.min_run_deadline`): the daemons count the day's run from
    there, so the part counts it as they did instead of starting a day with nothing run."""
    out = t
    for ld in s.loads:
        if ld.min_run_s > 0:
            nxt = min_run_deadline(datetime.fromtimestamp(t, UTC), s.tz, ld.min_run_by).astimezone(s.tz)
            out = min(out, datetime.combine(nxt.date() - timedelta(days=1), nxt.time(), tzinfo=s.tz).timestamp())
    return out


_SPLIT: tuple | None = None  # (data, s, prices): inherited by the forked workers, not pickled


def _part(args: tuple) -> _Chunk:
    data, s, prices, policy = _SPLIT  # type: ignore[misc]
    a, b, tick0_us, keep, checkpoints = args
    return _run(data, s, prices, a, b, tick0_us, keep, checkpoints, policy=policy)


def _parallel(data: ReplayData, s: Settings, prices: Prices, i0: int, i1: int, tick0_us: int,
              cuts: list[float], warmup_s: float, jobs: int, policy: Callable | None = None) -> list[_Chunk] | None:
    """The parts of a split run, or None when a part's state at its midnight differs from the
    part before (the caller then runs it in one piece)."""
    global _SPLIT
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    t_arr = data.t
    edges = [-math.inf] + cuts + [math.inf]
    tasks = []
    for k in range(len(edges) - 1):
        a = i0 if k == 0 else max(i0, index_at(t_arr, _warm_from(edges[k] - warmup_s, s)))
        # run past the part's end far enough to reach the first cycle after its midnight
        b = i1 if k == len(edges) - 2 else min(i1, index_at(t_arr, edges[k + 1] + 120.0 + s.managing.interval_s))
        tasks.append((a, b, tick0_us, (edges[k], edges[k + 1]), [x for x in (edges[k], edges[k + 1]) if math.isfinite(x)]))
    _SPLIT = (data, s, prices, policy)
    # every part prices its periods with 2.0TD's holidays: imported once here (0.15 s, 19 MB),
    # the forked workers share them instead of each importing them again
    for year in range(datetime.fromtimestamp(t_arr[i0], s.tz).year, datetime.fromtimestamp(t_arr[i1 - 1], s.tz).year + 1):
        national_holidays(year)
    try:
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=multiprocessing.get_context("fork")) as pool:
            chunks = list(pool.map(_part, tasks))
    finally:
        _SPLIT = None
    for k, cut in enumerate(cuts):
        before, after = chunks[k].signatures.get(cut), chunks[k + 1].signatures.get(cut)
        if before is None or before != after:
            return None
    return chunks


def _signature(core: Core, loads: list[SimLoad], now_s: float, horizon_s: float, pending: list, last_read_t,
               prev_t, prev_load_w: list[float]) -> tuple:
    """Everything the daemons' future depends on, after the cycle at ``now_s``. A switch time
    older than every min_on/min_off (``horizon_s``) no longer matters and reads as "old"."""
    k = core.period_start_s
    bal = core.balance
    cur = bal.current
    return (now_s, tuple(
        (ld.on, ld.since_s if ld.since_s is not None and now_s - ld.since_s < horizon_s else "old",
         ld.switches.get(k, 0), ld.on_s.get(k, 0.0), ld.wh.get(k, 0.0), tuple(ld.day_on_s.items()))
        for ld in loads),
        None if cur is None else (cur.start, cur.balance_wh, cur.production_wh, cur.consumption_wh,
                                  cur.covered_s, cur.samples, cur.source),
        bal._last, tuple(zip(core._recent_t[core._head:], core._recent_w[core._head:])),
        tuple((t if t >= bal.last_t else "old", w) for t, w in core._on_w),
        tuple(pending), last_read_t, prev_t, tuple(prev_load_w))


def _run(data: ReplayData, s: Settings, prices: Prices, i0: int, i1: int, tick0_us: int,
         keep: tuple[float, float] = (-math.inf, math.inf), checkpoints: Sequence[float] = (),
         trace: bool = False, progress: Callable[[float], None] | None = None,
         policy: Callable | None = None, devices: bool = False,
         battery_capacity_wh: float | None = None, ev_sessions: Mapping[str, Sequence[EvSession]] | None = None,
         nowcast: Callable[[float, float, float], float | None] | None = None) -> _Chunk:
    """The daemons over samples ``i0:i1``, ticking on the grid that starts at ``tick0_us`` (epoch
    µs). Keeps the periods that start, and the switches made, within ``keep`` (epoch s); takes
    the state's :func:`_signature` at the first managing cycle at or after each checkpoint.
    ``devices``: the settings' setpoint devices too (:mod:`gestor.sim.devices`; not in a split
    run: they have no signature), idle at the start, driven after the loads each cycle, their
    power in the readings taken after a command."""
    loads = [SimLoad(ld, LoadLimits.of(ld)) for ld in s.loads_by_priority()]
    core = Core(s, loads, policy)
    bal = core.balance
    total_power_w = sum(max(ld.options_w) for ld in loads)  # the most the loads can take, W
    max_gap = s.billing.max_gap_s
    max_abs_w = float(getattr(s.meter, "max_abs_power_w", 50_000.0))
    closed: list[PeriodSummary] = []
    tr = Trace(on={ld.name: [] for ld in loads}) if trace else None
    switch_log: list[tuple[float, str, bool]] = []
    t_arr, cons_arr, net_arr, prod_arr = data.t, data.consumption_w, data.net_w, data.production_w
    # The daemons' ticks are counted in integer microseconds, as the simulated clock's datetimes
    # count them, and compared as epoch floats, as they do; on the grid of tick0_us.
    mon_us, mgr_us = round(s.monitoring.interval_s * 1e6), round(s.managing.interval_s * 1e6)
    first_us = round(t_arr[i0] * 1e6)
    m_us = tick0_us + -((tick0_us - first_us) // mon_us) * mon_us    # the monitoring tick
    T_us = tick0_us + -((tick0_us - first_us) // mgr_us) * mgr_us    # the next managing tick
    m_ts, T_ts = m_us / 1e6, T_us / 1e6
    todo_cp = sorted(checkpoints)
    signatures: dict[float, tuple] = {}
    horizon_s = max([0.0] + [max(ld.limits.min_on_s, ld.limits.min_off_s) for ld in loads]
                    + [s.policy.min_on_s if s.policy.name == "min_on_time" else 0.0])
    prev_T_ts: float | None = None
    pending: list[Sample] = []                      # read since the last managing cycle (core samples)
    last_read_t: float | None = None
    prev_t: float | None = None
    prev_load_w = [0.0] * len(loads)
    load_w = prev_load_w
    extra_w = 0.0        # W of the simulated loads on now: sum(load_w)
    any_on = prev_any_on = False  # any(load_w), any(prev_load_w)
    bounds = core.bounds_s
    devs = None                   # the setpoint devices (gestor.sim.devices.SimDevice), in order
    dev_log: list[tuple[float, str, float]] = []
    if devices:
        devs = sim_dev.sim_devices(s, bounds, battery_capacity_wh, ev_sessions)
        dev_books = [d.load for d in devs]
        stale_s = s.managing.stale_after_s
        sim_dev.start(devs, core, tick0_us / 1e6, dev_log)  # managing.start: every device idle
    steer = None
    if devs and s.bill.steer_by_cap:  # issue 35: the reserve by what surplus is worth this month
        from gestor.sim.capsteer import CapSteer
        steer = CapSteer(s, prices, devs)
    prev_dev_w: list[float] = [0.0] * len(devs or ())
    prev_T_us: int | None = None

    def cycle() -> None:  # managing's cycle at T, as managing.Managing._cycle runs it
        nonlocal prev_T_ts, pending, load_w, extra_w, any_on, prev_T_us
        if devs is not None:  # s since the last cycle, as managing's datetimes count it
            dt_s = (T_us - prev_T_us) / 1e6 if prev_T_us is not None else math.inf
            prev_T_us = T_us
        if prev_T_ts is not None:
            core.account(prev_T_ts, T_ts, bounds)
        prev_T_ts = T_ts
        new = pending
        if new:
            last_t = bal.last_t
            if new[0][0] <= last_t or new[-1][0] > T_ts:
                new = [r for r in new if r[0] > last_t and r[0] <= T_ts]
            pending = []
        done, todo = core.step_s(T_ts, new, reading_age_s=T_ts - last_read_t if last_read_t is not None else None)
        if done:
            closed.extend(done)
            if steer is not None:
                steer.closed(done)
        if todo:
            k = core.period_start_s
            for w in todo:  # a simulated relay always confirms
                ld = by_name[w.load]
                core.switched(ld, w.on, T_ts, k)
                if keep[0] <= T_ts < keep[1]:
                    switch_log.append((T_ts, ld.name, w.on))
            load_w = [ld.taken_w for ld in loads]
            extra_w, any_on = sum(load_w), any(load_w)
        if devs is not None:  # the devices after the loads (managing._drive_setpoints)
            fresh = last_read_t is not None and bal.current is not None and T_ts - last_read_t <= stale_s
            if steer is not None and bal.current is not None:
                steer.apply(devs, bal.current)
            sim_dev.drive(devs, core, T_ts, not fresh, max(core.period_end_s - T_ts, 0.0), dt_s, dev_log, nowcast)
        while todo_cp and T_ts >= todo_cp[0]:
            signatures[todo_cp.pop(0)] = _signature(core, loads, T_ts, horizon_s, pending, last_read_t, prev_t,
                                                    prev_load_w)

    by_name = {ld.name: ld for ld in loads}
    n = max(i1 - i0, 1)
    prod = None
    for i in range(i0, i1):
        ti = t_arr[i]
        while m_ts < ti:  # the replay meter's data time at a tick (speed 1)
            m_us += mon_us
            m_ts = m_us / 1e6
        if i + 1 < i1 and t_arr[i + 1] <= m_ts:
            continue  # a newer sample is the latest by the time monitoring reads: this one is never read
        while T_ts < ti:  # managing's cycles before the sample was measured
            cycle()
            T_us += mgr_us
            T_ts = T_us / 1e6
        sample_w = extra_w  # the loads' W when it was measured: what the replay meter adds to it
        if devs is not None:  # and the devices' (a battery discharging: negative)
            for d in devs:
                if d.model.active:
                    d.model.advance(ti)
            dev_w = [d.model.power_w for d in devs]
            sample_w = extra_w + sum(dev_w)
        while T_ts < m_ts:  # managing's cycles before this read (at equal times monitoring reads first)
            cycle()
            T_us += mgr_us
            T_ts = T_us / 1e6
        cons, net = cons_arr[i], net_arr[i]
        if prod_arr is not None:
            prod = prod_arr[i]
            if prod != prod:
                continue  # NaN: a failed read, not a zero
        if net != net or cons != cons:
            continue
        r_net, r_cons = net - sample_w, cons + sample_w
        if abs(r_net) > max_abs_w or abs(r_cons) > max_abs_w or (prod is not None and abs(prod) > max_abs_w):
            continue  # implausible: monitoring discards it
        # stamped as the replay meter does: at the sample's own time (speed 1)
        if last_read_t is not None and ti <= last_read_t:
            continue
        pending.append((ti, r_net, prod, r_cons, None, None))
        last_read_t = ti
        if (any_on or prev_any_on) and prev_t is not None and ti - prev_t <= max_gap:
            account(loads, prev_t, ti, prev_load_w, load_w, bounds)
        if devs is not None:
            if prev_t is not None and ti - prev_t <= max_gap and (any(prev_dev_w) or any(dev_w)):
                account(dev_books, prev_t, ti, prev_dev_w, dev_w, bounds)
                k0 = bounds(prev_t)[0]
                for book, w0, w1 in zip(dev_books, prev_dev_w, dev_w):
                    if w0 or w1:
                        book.on_s[k0] = book.on_s.get(k0, 0.0) + (ti - prev_t)
            prev_dev_w = dev_w
        prev_t, prev_load_w, prev_any_on = ti, load_w, any_on
        if tr is not None:
            tr.t.append(ti)
            tr.production_w.append(prod or 0.0)
            tr.base_w.append(cons)
            for ld in loads:
                tr.on[ld.name].append(bool(ld.on))
        if progress is not None and (i - i0) % 20000 == 0:
            progress((i - i0) / n)
    if pending:  # the last readings: the cycle that takes them
        while T_ts < pending[-1][0]:
            cycle()
            T_us += mgr_us
            T_ts = T_us / 1e6
        cycle()
    if bal.current is not None and bal.current.covered_s > 0:
        closed.append(bal.current)
    closed = [p for p in closed if keep[0] <= p.start.timestamp() < keep[1]]
    if devs is not None:
        sums = sim_dev.summaries(devs, keep)
        return _Chunk(device_period_results(closed, loads, devs, sums, total_power_w, prices), switch_log, tr, signatures,
                      sums, dev_log)
    return _Chunk(period_results(closed, loads, total_power_w, prices), switch_log, tr, signatures)


