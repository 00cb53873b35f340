"""Replay a recording with one modulating device (a 0..``max_w`` W water heater on a power
controller, :class:`gestor.core.devices.Modulating`) in place of the on/off loads, driven by the
setpoint law of :mod:`gestor.core.setpoint` (issue 26 section 1).

Same model as :mod:`gestor.sim.simulate` (read its docstring), with the same pieces: its readers
(:class:`ReplayData`), the control core's :class:`Balance` (a :class:`Core` with no on/off load, so
the period's balance and the latest net power are managing's), its per-load energy accounting
(``_account``, ``_periods``, ``_totals``: the trapezoid of the device's power at the readings,
split at period boundaries), and its timing: monitoring reads the latest sample every
``monitoring.interval_s`` from the first sample on, the control runs every
``managing.interval_s``, and a setpoint decided at one cycle reaches the device ``delay_cycles``
cycles later (1: the next cycle; a reading taken at the same instant as a change still shows
the power before it, as monitoring reads before managing commands). A stale meter (no reading
for ``managing.stale_after_s``) sends the device to 0 W.

The law is given the device's power in the latest reading as its present setpoint (what the
device reads back), so the net it sees and the setpoint it adds to it agree even while a command
is on its way. The bound of a period is ``min(surplus without the device, max_w × period)``, as
simulate's is with the loads' total power: captured % and extra import compare with simulate's.
"""
from __future__ import annotations

import math
from collections import deque
from datetime import datetime
from typing import Callable

from drivers.meters.replay import ReplayData
from gestor.core.balance import PeriodSummary, Sample
from gestor.core.control import Core
from gestor.core.devices import Modulating
from gestor.core.setpoint import SetpointLaw
from gestor.core.guards import LoadLimits
from gestor.settings import LoadSettings, Settings
from gestor.sim.simulate import Prices, SimResult, Totals, _account, _bisect, _Load, _periods, _totals


def _device(name: str, kind: Modulating) -> _Load:
    """The simulated device as simulate's accounting reads a load (a :class:`_Load` of kind
    ``kind``, so the compiled accounting takes it): ``wh`` per period, ``on_s`` (s at a power above
    0), ``switches`` (setpoint changes commanded)."""
    cfg = LoadSettings.model_validate({"name": name, "power_w": kind.max_w, "relay": {"driver": "simulated"}})
    ld = _Load(cfg, LoadLimits.of(cfg))
    ld.kind = kind
    return ld


def simulate_setpoint(data: ReplayData, s: Settings, prices: Prices, max_w: float = 2000.0,
                      reserve_wh_per_h: float = 0.0, deadband_w: float = 0.0, delay_cycles: int = 1,
                      ramp_w_per_s: float = math.inf, min_remaining_s: float = 60.0,
                      start: datetime | None = None, end: datetime | None = None,
                      name: str = "heater",
                      nowcast: Callable[[float, float, float], float | None] | None = None) -> SimResult:
    """One modulating device of ``0..max_w`` W over ``data`` (module docstring), driven by
    :class:`SetpointLaw` with ``reserve_wh_per_h``, ``deadband_w``, ``ramp_w_per_s``,
    ``min_remaining_s``; ``s`` gives the timing, the period, the zone and the meter's bounds (its
    loads and policy are not used). Returns simulate's :class:`SimResult`: per period, the device's
    energy under ``name`` (``switches``: setpoint changes), the balance with and without it and the
    bound; totals and days as simulate's. ``nowcast(now_s, period_end_s, surplus_w)``, when given,
    is asked each cycle for the surplus expected over the rest of the period (W, or None: the
    present one), given to the law as ``expected_surplus_w`` (:class:`gestor.sim.nowcast.ReplayNowcast`).
    Raises ValueError on a parameter out of range."""
    if delay_cycles < 0:
        raise ValueError(f"delay_cycles {delay_cycles} must be >= 0")
    kind = Modulating(max_w)
    law = SetpointLaw(kind.min_w, kind.max_w, reserve_wh_per_h, deadband_w, ramp_w_per_s, min_remaining_s)
    dev = _device(name, kind)
    t_arr = data.t
    i0 = 0 if start is None else _bisect(t_arr, start.timestamp())
    i1 = len(t_arr) if end is None else _bisect(t_arr, end.timestamp())
    if i0 >= i1:
        return SimResult([], Totals(), {}, None, [])
    core = Core(s, [], policy=lambda snap, p: [])
    bal = core.balance
    bounds = core.bounds_s
    max_gap = s.billing.max_gap_s
    max_abs_w = float(getattr(s.meter, "max_abs_power_w", 50_000.0))
    stale_s = s.managing.stale_after_s
    closed: list[PeriodSummary] = []
    cons_arr, net_arr, prod_arr = data.consumption_w, data.net_w, data.production_w
    mon_us, mgr_us = round(s.monitoring.interval_s * 1e6), round(s.managing.interval_s * 1e6)
    m_us = T_us = round(t_arr[i0] * 1e6)  # both daemons start at the first sample
    m_ts, T_ts = m_us / 1e6, T_us / 1e6
    power_w = 0.0                          # the device's power now
    queue: deque[float] = deque([0.0] * delay_cycles)  # setpoints on their way to the device
    commanded_w = 0.0
    pending: list[Sample] = []
    read_w = 0.0                           # the device's power in the latest reading
    last_read_t: float | None = None
    prev_t: float | None = None
    prev_w = 0.0
    prev_T: float | None = None

    def cycle() -> None:
        nonlocal pending, power_w, commanded_w, prev_T
        new = [r for r in pending if r[0] > bal.last_t and r[0] <= T_ts] if pending else pending
        pending = []
        done, _ = core.step_s(T_ts, new, reading_age_s=None)
        closed.extend(done)
        if delay_cycles:  # the command decided delay_cycles ago reaches the device now
            queue.append(commanded_w)
            power_w = queue.popleft()
        age = T_ts - last_read_t if last_read_t is not None else math.inf
        if age > stale_s or bal.current is None:
            want = kind.min_w
        else:
            expected = None if nowcast is None else nowcast(T_ts, core.period_end_s, read_w + core.net_w)
            want = law.next_w(core.balance_wh, core.net_w, read_w, core.period_end_s - T_ts,
                              T_ts - prev_T if prev_T is not None else math.inf, expected_surplus_w=expected)
        if want != commanded_w:
            k = core.period_start_s
            dev.switches[k] = dev.switches.get(k, 0) + 1
        commanded_w = want
        prev_T = T_ts
        if not delay_cycles:
            power_w = want

    for i in range(i0, i1):
        ti = t_arr[i]
        while m_ts < ti:  # the replay meter's data time at a tick (speed 1)
            m_us += mon_us
            m_ts = m_us / 1e6
        if i + 1 < i1 and t_arr[i + 1] <= m_ts:
            continue  # superseded before monitoring reads it
        while T_ts < ti:  # the cycles before the sample was measured
            cycle()
            T_us += mgr_us
            T_ts = T_us / 1e6
        sample_w = power_w  # the device's power when it was measured
        while T_ts < m_ts:  # the cycles before this read (at equal times monitoring reads first)
            cycle()
            T_us += mgr_us
            T_ts = T_us / 1e6
        cons, net = cons_arr[i], net_arr[i]
        prod = None
        if prod_arr is not None:
            prod = prod_arr[i]
            if prod != prod:
                continue
        if net != net or cons != cons:
            continue
        r_net, r_cons = net - sample_w, cons + sample_w
        if abs(r_net) > max_abs_w or abs(r_cons) > max_abs_w or (prod is not None and abs(prod) > max_abs_w):
            continue
        if last_read_t is not None and ti <= last_read_t:
            continue
        pending.append((ti, r_net, prod, r_cons, None, None))
        last_read_t, read_w = ti, sample_w
        if prev_t is not None and ti - prev_t <= max_gap:
            if prev_w or sample_w:
                _account([dev], prev_t, ti, [prev_w], [sample_w], bounds)
                a = bounds(prev_t)[0]
                dev.on_s[a] = dev.on_s.get(a, 0.0) + (ti - prev_t)
        prev_t, prev_w = ti, sample_w
    if pending:  # the cycle that takes the last readings
        while T_ts < pending[-1][0]:
            cycle()
            T_us += mgr_us
            T_ts = T_us / 1e6
        cycle()
    if bal.current is not None and bal.current.covered_s > 0:
        closed.append(bal.current)
    periods = _periods(closed, [dev], max_w, prices)
    totals, days = _totals(periods, [dev.cfg], s.tz, s)
    return SimResult(periods, totals, days, None, [])

