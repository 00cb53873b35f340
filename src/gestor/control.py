"""The one decision step, shared by managing (real relays) and ``gestor simulate`` (simulated
loads): the loads' control state, the policy on the settlement period's balance, the guards, the
daily minimum run and the stack of held loads. Neither caller re-assembles any of it.

Times inside the loads' books are epoch seconds (floats): ``switches`` and ``on_s`` are keyed by
the settlement period's start, ``day_on_s`` by the daily-minimum deadline. Managing keeps its
datetimes, relays, logging and reasons at the edge; the simulator its energies and prices.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping, Sequence

from drivers.meters.base import Reading
from gestor.balance import Balance, PeriodSummary
from gestor.guards import GuardState, LoadLimits, Override, apply_guards, in_windows, min_run_deadline, min_run_reason
from gestor.policies import LoadView, Snapshot, Wish, decide_free
from gestor.settings import LoadSettings, Settings
from gestor.tariff import period_2_0td

UTC = timezone.utc


@dataclass
class LoadState:
    """One load's control state. ``on`` None: unknown (a relay that did not confirm)."""

    cfg: LoadSettings
    limits: LoadLimits
    on: bool | None = False
    since: datetime | None = None                              # last confirmed switch
    switches: dict[float, int] = field(default_factory=dict)   # period start (epoch) → switches
    on_s: dict[float, float] = field(default_factory=dict)     # period start (epoch) → seconds on
    day_on_s: dict[float, float] = field(default_factory=dict)  # min-run deadline (epoch) → seconds on

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def power_w(self) -> float:
        return self.cfg.power_w

    def view(self) -> LoadView:
        return LoadView(self.cfg.name, self.cfg.power_w, self.on is not False, self.since,
                        self.cfg.on_above_wh, self.cfg.off_below_wh)


class Controller:
    """The loads (in priority order) and the decision step over them.

    Args:
        settings: the validated settings (policy, guards' limits, timezone, period).
        loads: the load states to drive; by default one :class:`LoadState` per configured load.
            Managing passes its own (subclassed with the relay's bookkeeping).
    """

    def __init__(self, settings: Settings, loads: Sequence[LoadState] | None = None) -> None:
        self.s = settings
        self.tz = settings.tz
        self.period_s = settings.billing.period_s
        self.loads = list(loads) if loads is not None else [
            LoadState(ld, LoadLimits.of(ld)) for ld in settings.loads_by_priority()]
        self.limits = {ld.name: ld.limits for ld in self.loads}
        self.price_period: Callable[[datetime], str] = lambda t: period_2_0td(t, self.tz)

    # -- the decision ------------------------------------------------------------------------
    def decide(self, now: datetime, period_start: datetime, period_end: datetime, balance_wh: float,
               net_w: float, recent_surplus_w: tuple[float, ...] = (), *, latched: bool = False,
               reading_age_s: float | None = 0.0, stale_after_s: float = math.inf,
               overrides: Mapping[str, Override] | None = None,
               held: Mapping[str, str] | None = None) -> list[Wish]:
        """What every load is to be commanded to now (the loads' order), with the reason.

        ``held``: loads a guard keeps anyway (unknown relay, override, switched off outside
        gestor), left out of the policy's stack with loads outside their windows, so that they do
        not block the loads after them."""
        views = tuple(ld.view() for ld in self.loads)
        held_all = dict(held or {})
        for ld in self.loads:
            if ld.limits.windows and ld.name not in held_all and not in_windows(now, self.tz, ld.limits.windows):
                held_all[ld.name] = "held by a guard"
        snap = Snapshot(now, period_start, period_end, balance_wh, net_w, views, recent_surplus_w)
        wishes = decide_free(snap, self.s.policy, held_all)
        k = period_start.timestamp()
        return apply_guards(wishes, views, self.limits, GuardState(
            now, latched, reading_age_s, stale_after_s, self.tz, overrides or {},
            {ld.name: ld.switches.get(k, 0) for ld in self.loads}, self.min_run(now)))

    def min_run(self, now: datetime) -> dict[str, str]:
        """Per load that must run now for its daily minimum, the reason (see guards)."""
        out = {}
        for ld in self.loads:
            if ld.cfg.min_run_s <= 0:
                continue
            done = ld.day_on_s.get(min_run_deadline(now, self.tz, ld.cfg.min_run_by).timestamp(), 0.0)
            why = min_run_reason(now, self.tz, self.period_s, ld.cfg.min_run_s, done, ld.cfg.min_run_by,
                                 self.price_period, ld.cfg.power_w)
            if why:
                out[ld.name] = why
        return out

    # -- the books ---------------------------------------------------------------------------
    def switched(self, ld: LoadState, on: bool, now: datetime, period_start_s: float) -> None:
        """Record a confirmed change of ``ld`` to ``on`` at ``now``."""
        ld.on, ld.since = on, now
        ld.switches[period_start_s] = ld.switches.get(period_start_s, 0) + 1

    def account(self, t0: float, t1: float, bounds: Callable[[float], tuple[float, float]],
                on: Sequence[bool] | None = None) -> None:
        """Add the seconds each load was on between ``t0`` and ``t1`` (epoch s), split at the
        settlement periods ``bounds(t)`` returns (start, end epoch) and at the daily-minimum
        deadlines. ``on``: each load's state over the interval (default: its current state)."""
        a = t0
        while a < t1:
            p0, p1 = bounds(a)
            b = min(p1, t1)
            for j, ld in enumerate(self.loads):
                if not (on[j] if on is not None else ld.on):
                    continue
                ld.on_s[p0] = ld.on_s.get(p0, 0.0) + (b - a)
                if ld.cfg.min_run_s > 0:
                    d = min_run_deadline(datetime.fromtimestamp(a, UTC), self.tz, ld.cfg.min_run_by).timestamp()
                    # only the current deadline's count is kept (the state runs for years)
                    ld.day_on_s = {d: ld.day_on_s.get(d, 0.0) + (b - a)}
            a = b


@dataclass
class Step:
    """What one control cycle concluded: periods it closed, the current period and its balance,
    the latest net power, and the command for every load."""

    closed: list[PeriodSummary]
    period_start: datetime
    period_end: datetime
    balance_wh: float
    net_w: float
    recent_surplus_w: tuple[float, ...]
    wishes: list[Wish]


class Core(Controller):
    """The whole control cycle on the readings received since the last one: the settlement
    period's balance, the recent surplus, the policy and the guards. managing runs it on the live
    state with real relays; ``gestor simulate`` on the readings monitoring would have taken from a
    recording, with simulated loads: one code path, so the simulator is the daemon."""

    def __init__(self, settings: Settings, loads: Sequence[LoadState] | None = None) -> None:
        super().__init__(settings, loads)
        self.balance = Balance(settings.billing.period_s, settings.tz, settings.billing.max_gap_s)
        self.recent: deque[tuple[datetime, float]] = deque()  # (reading time, surplus before the loads)
        self.window_s = settings.policy.window_s
        self._span = (math.inf, -math.inf)  # the last period bounds_s returned (epoch s)
        # (from when, W of the loads that are on): what the loads drew when each reading was taken
        self._on_w: deque[tuple[datetime | None, float]] = deque([(None, 0.0)])

    def bounds_s(self, t: float) -> tuple[float, float]:
        """The settlement period around epoch ``t`` as (start, end) epoch seconds; the last one is
        cached, so walking through time costs a datetime only at each period change."""
        if not self._span[0] <= t < self._span[1]:
            p0, p1 = self.balance.bounds(datetime.fromtimestamp(t, UTC))
            self._span = (p0.timestamp(), p1.timestamp())
        return self._span

    def note_state(self, now: datetime) -> None:
        """Record the loads' power from ``now`` on (after a switch, or a load found off)."""
        self._on_w.append((now, sum(ld.cfg.power_w for ld in self.loads if ld.on)))

    def switched(self, ld: LoadState, on: bool, now: datetime, period_start_s: float) -> None:
        super().switched(ld, on, now, period_start_s)
        self.note_state(now)

    def on_w_at(self, at: datetime) -> float:
        """W the managed loads drew when a reading stamped ``at`` was taken: the state commanded
        before it (monitoring reads before managing commands at the same instant)."""
        for since, w in reversed(self._on_w):
            if since is None or since < at:
                return w
        return self._on_w[0][1]

    def reset(self) -> None:
        """A fresh balance and history (after a wall-clock step)."""
        self.balance = Balance(self.s.billing.period_s, self.s.tz, self.s.billing.max_gap_s)
        self.recent.clear()
        self._on_w = deque([(None, sum(ld.cfg.power_w for ld in self.loads if ld.on))])

    def step(self, now: datetime, new: Sequence[Reading], *, reading_age_s: float | None,
             latched: bool = False, overrides: Mapping[str, Override] | None = None,
             held: Mapping[str, str] | None = None) -> Step:
        """One cycle at ``now`` with the readings ``new`` (oldest first, newer than the last)."""
        closed = [p for r in new for p in self.balance.update(r)]
        # the surplus before the managed loads: each reading plus what the loads drew when it was taken
        for r in new:
            self.recent.append((r.at, r.net_w + self.on_w_at(r.at)))
        while self.recent and (now - self.recent[0][0]).total_seconds() > self.window_s:
            self.recent.popleft()
        # the load history older than every reading still to come is not needed
        while len(self._on_w) > 1 and self._on_w[1][0] is not None and self.balance.last is not None \
                and self._on_w[1][0] < self.balance.last.at:
            self._on_w.popleft()
        reading = self.balance.last
        start, end = self.balance.bounds(now)
        cur = self.balance.current
        bal = cur.balance_wh if cur is not None and cur.start == start else 0.0
        net = reading.net_w if reading else 0.0
        # only steady_surplus reads the recent course: the others need no tuple built every cycle
        recent = tuple(v for _, v in self.recent) if self.s.policy.name == "steady_surplus" else ()
        wishes = self.decide(now, start, end, bal, net, recent, latched=latched, reading_age_s=reading_age_s,
                             stale_after_s=self.s.managing.stale_after_s, overrides=overrides, held=held)
        return Step(closed, start, end, bal, net, recent, wishes)
