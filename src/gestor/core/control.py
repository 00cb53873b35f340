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
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from gestor.core.reading import COUNTER_SLACK_WH, Reading
from gestor.core.balance import Balance, PeriodSummary, Sample
from gestor.core.devices import DeviceKind, OnOff
from gestor.core.guards import (GuardState, LoadLimits, Override, apply_guards, in_windows_min, min_run_ahead,
                           min_run_deadline, min_run_reason, min_run_slots)
from gestor.core.policies import POLICIES, LoadView, Snapshot, Wish, changes
from gestor.core.reasons import HELD
if TYPE_CHECKING:  # the settings' types only: the core imports nothing above it
    from gestor.settings import LoadSettings, PolicySettings, Settings
from gestor.tariff.calendar import period_2_0td

UTC = timezone.utc
NO_CHANGE: list[Wish] = []  # shared, never appended to: most cycles change nothing
_LOCAL_BUCKET_S = 900       # UTC offsets change on a quarter-hour of UTC in every zone in use


class StateChanged:
    """A flag a controller shares with the loads it drives. Invariant: ``up`` is True whenever a
    load's ``on`` or ``since_s`` was set (by the controller, managing, a restore) after the
    controller last lowered it; the controller lowers it when it rebuilds what it derives from the
    loads' states (the policy's views, whether a load is on or unknown), and rebuilds only when it
    is up. A load reports to every controller built over it."""

    def __init__(self) -> None:
        self.up = True


class LoadState:
    """One controllable device's control state: its kind (:mod:`gestor.core.devices`: the powers
    it can take, ``options_w``, and what it takes in its state, ``taken_w``; W, positive: taken
    from the house bus) and its state, on/off, the one kind today. ``on`` None: unknown (a relay
    that did not confirm). ``since_s``: the last confirmed switch, epoch s (``since``: the same as
    a datetime). Setting either (anyone: a controller, managing, a restore) raises the
    :class:`StateChanged` flag of every controller driving it.

    ``kind``: by default :class:`gestor.core.devices.OnOff` at the configured ``power_w``.

    A plain class, not a dataclass: compiled, a dataclass's field annotations are looked up at
    import, and ``cfg``'s type (the settings') is imported for type checking only."""

    def __init__(self, cfg: LoadSettings, limits: LoadLimits, on: bool | None = False,
                 since_s: float | None = None, kind: DeviceKind | None = None) -> None:
        self.cfg = cfg
        self.limits = limits
        self.kind: DeviceKind = kind if kind is not None else OnOff(cfg.power_w)
        self._on = on
        self._since_s = since_s
        self._watchers: list[StateChanged] = []  # the flags of the controllers driving it
        self.switches: dict[float, int] = {}    # period start (epoch) → switches
        self.on_s: dict[float, float] = {}      # period start (epoch) → seconds on
        self.day_on_s: dict[float, float] = {}  # min-run deadline (epoch) → seconds on

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg.name!r}, on={self._on!r}, since_s={self._since_s!r})"

    @property
    def on(self) -> bool | None:
        return self._on

    @on.setter
    def on(self, on: bool | None) -> None:
        self._on = on
        for f in self._watchers:  # the controllers' views of it are out of date
            f.up = True

    @property
    def since_s(self) -> float | None:
        return self._since_s

    @since_s.setter
    def since_s(self, at_s: float | None) -> None:
        self._since_s = at_s
        for f in self._watchers:
            f.up = True

    @property
    def since(self) -> datetime | None:
        return None if self.since_s is None else datetime.fromtimestamp(self.since_s, UTC)

    @since.setter
    def since(self, at: datetime | None) -> None:
        self.since_s = None if at is None else at.timestamp()

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def power_w(self) -> float:
        """The rated power, W (the on/off kind's when on)."""
        return self.cfg.power_w

    @property
    def options_w(self) -> tuple[float, ...]:
        """The powers it can take now, W, ascending (its kind's: on/off, ``(0, power_w)``)."""
        return self.kind.options_w

    @property
    def taken_w(self) -> float:
        """W it takes in its state (its kind's): on/off, ``power_w`` when on, 0 when off or unknown."""
        return self.kind.taken_w(self._on)

    def view(self) -> LoadView:
        c = self.cfg
        return LoadView(c.name, c.power_w, self.on is not False, self.since_s, c.on_above_wh, c.off_below_wh)


class Controller:
    """The loads (in priority order) and the decision step over them.

    Args:
        settings: the validated settings (policy, guards' limits, timezone, period).
        loads: the load states to drive; by default one :class:`LoadState` per configured load.
            Managing passes its own (subclassed with the relay's bookkeeping).
    """

    def __init__(self, settings: Settings, loads: Sequence[LoadState] | None = None,
                 policy: Callable[[Snapshot, PolicySettings], list[Wish]] | None = None) -> None:
        self.s = settings
        self.tz = settings.tz
        self.period_s = settings.billing.period_s
        self.loads = list(loads) if loads is not None else [
            LoadState(ld, LoadLimits.of(ld)) for ld in settings.loads_by_priority()]
        self.limits = {ld.name: ld.limits for ld in self.loads}
        self.price_period: Callable[[datetime], str] = lambda t: period_2_0td(t, self.tz)
        # the real import price (EUR/kWh) of the slot holding an instant, None where unknown:
        # managing sets it from the prices it has (gestor.tariff.prices); the daily minimum ranks by it
        self.import_price: Callable[[datetime], float | None] | None = None
        self._windowed = [ld for ld in self.loads if ld.limits.windows]
        self._min_run = [ld for ld in self.loads if ld.cfg.min_run_s > 0]
        # Answers kept because they cannot change before a known instant (the rank and the
        # deadline measured: without either a guarded year's simulation takes 2.4 to 12 times as
        # long, compiled; see the commit that named them):
        # load → (period start, min_run_ahead's answer): the same at any instant of that
        # settlement period (with the 2.0TD prices; see min_run)
        self._rank_in_period: dict[str, tuple[float, tuple[float, str]]] = {}
        # load → (a, d) epoch s: min_run_deadline of any instant in [a, d - 1 µs) is d (_deadline_s)
        self._deadline_until: dict[str, tuple[float, float]] = {}
        # (quarter-hour bucket of UTC, UTC offset s in it): offsets change only on such a boundary
        self._offset_in_bucket = (-1, 0.0)
        # the guards' verdict on every load in the last decision (None: they had nothing to say,
        # every load kept its state), with the reasons a guard gave for holding a state; see
        # verdicts. _verdicts_deferred: _guarded's arguments when the last decision changed
        # nothing and so did not need the verdict; verdicts works it out from them when read (the
        # same verdict, see there). Reset by every decision: it never outlives the one it is for.
        self._verdicts: list[Wish] | None = None
        self._verdicts_deferred: tuple | None = None
        # the configured policy; the simulator may play another (the perfect-foresight schedule)
        self._policy = policy or POLICIES[settings.policy.name]
        self._p = settings.policy
        self._views: tuple[LoadView, ...] = ()
        self._changed = StateChanged()  # up: the loads' states changed since the views were built
        for ld in self.loads:
            ld._watchers.append(self._changed)
        self._unknown = False       # a load's state is unknown (a relay that did not confirm)
        self._any_on = False        # a load is on

    def _refresh(self) -> None:
        """Rebuild what derives from the loads' states (they changed since the last build)."""
        self._changed.up = False  # first: a change while building makes the next call rebuild again
        loads = self.loads
        self._views = tuple([ld.view() for ld in loads])
        self._unknown = any(ld.on is None for ld in loads)
        self._any_on = any(bool(ld.on) for ld in loads)

    def local_minute(self, now_s: float) -> float:
        """The minute of the local day (``tz``) at epoch ``now_s``, seconds truncated as
        :func:`gestor.core.guards.in_windows` counts them."""
        bucket = int(now_s // _LOCAL_BUCKET_S)
        if self._offset_in_bucket[0] != bucket:
            off = datetime.fromtimestamp(bucket * _LOCAL_BUCKET_S, UTC).astimezone(self.tz).utcoffset()
            self._offset_in_bucket = (bucket, off.total_seconds() if off is not None else 0.0)
        return (int(now_s + self._offset_in_bucket[1]) % 86400) / 60

    # -- the decision ------------------------------------------------------------------------
    def decide(self, now_s: float, period_start_s: float, period_end_s: float, balance_wh: float,
               net_w: float, recent_surplus_w: tuple[float, ...] = (), *, latched: bool = False,
               reading_age_s: float | None = 0.0, stale_after_s: float = math.inf,
               overrides: Mapping[str, Override] | None = None,
               held: Mapping[str, str] | None = None) -> list[Wish]:
        """The commands this cycle: one :class:`Wish` (state and reason) per load whose state is
        to change (or is unknown), in the loads' order; most cycles none.

        ``held``: loads a guard keeps anyway (unknown relay, override, switched off outside
        gestor), left out of the policy's stack with loads outside their windows, so that they do
        not block the loads after them. Times are epoch seconds.

        The policy runs every cycle; the guards (:func:`gestor.core.guards.apply_guards`, the one
        implementation) run whenever one of them could change anything: the policy wants a
        change, the latch is set, the meter is stale, a load is overridden, due its daily
        minimum, in an unknown state, or held (outside its windows, or by managing) while on.
        Otherwise every load keeps its state, which is what the guards would conclude; their
        reasons for it are worked out when :attr:`verdicts` is read."""
        if self._changed.up:  # the loads' views change only when a load does
            self._refresh()
        loads, views = self.loads, self._views
        if self._windowed:
            m = self.local_minute(now_s)
            for ld in self._windowed:
                if (held is None or ld.name not in held) and not in_windows_min(m, ld.limits.windows):
                    held = {**(held or {}), ld.name: HELD}
        snap = Snapshot(now_s, period_start_s, period_end_s, balance_wh, net_w, views, recent_surplus_w)
        want = self._policy(snap, self._p) if not held else changes(snap, self._p, held, self._policy)
        min_run = self.min_run(now_s, period_start_s) if self._min_run else None
        self._verdicts_deferred = None
        if not (want or latched or overrides or min_run) and reading_age_s is not None \
                and 0 <= reading_age_s <= stale_after_s and not self._unknown:
            if not held:
                self._verdicts = None
                return NO_CHANGE
            if not any(v.on for v in views if v.name in held):
                # the guards keep a held load off (outside its windows, or as managing asked) and
                # every other load as it is (nothing wished, nothing due, nothing stale, no
                # override): nothing changes. Their reasons are worked out if asked (verdicts)
                self._verdicts_deferred = (views, held, now_s, period_start_s, reading_age_s, stale_after_s)
                return NO_CHANGE
        final = self._guarded(views, want, held or {}, now_s, period_start_s, latched, reading_age_s, stale_after_s,
                              overrides or {}, min_run or {})
        self._verdicts = final
        return [w for w, ld in zip(final, loads) if ld.on is None or w.on != ld.on]

    def _guarded(self, views: tuple[LoadView, ...], want: list[Wish], held: Mapping[str, str], now_s: float,
                 period_start_s: float, latched: bool, reading_age_s: float | None, stale_after_s: float,
                 overrides: Mapping[str, Override], min_run: Mapping[str, str]) -> list[Wish]:
        """The guards' verdict on every load: the policy's ``want``, a held load off, the others
        as they are, through :func:`gestor.core.guards.apply_guards`."""
        by_name = {w.load: w for w in want}
        wishes = [by_name.get(v.name) or (Wish(v.name, False, held[v.name]) if v.name in held else Wish(v.name, v.on))
                  for v in views]
        return apply_guards(wishes, views, self.limits, GuardState(
            datetime.fromtimestamp(now_s, UTC), latched, reading_age_s, stale_after_s, self.tz, overrides,
            {ld.name: ld.switches.get(period_start_s, 0) for ld in self.loads}, min_run))

    @property
    def verdicts(self) -> list[Wish] | None:
        """The guards' verdict on every load in the last decision, in the loads' order (None:
        they had nothing to say, every load kept its state), with the reasons a guard gave for
        holding a state (what managing shows). Worked out here when the decision could do without
        them: the same verdicts, as the switch counts they read only matter for a load that
        changes, and none did."""
        if self._verdicts_deferred is not None:
            views, held, now_s, period_start_s, reading_age_s, stale_after_s = self._verdicts_deferred
            self._verdicts_deferred = None
            self._verdicts = self._guarded(views, [], held, now_s, period_start_s, False, reading_age_s,
                                           stale_after_s, {}, {})
        return self._verdicts

    def min_run(self, now_s: float, period_start_s: float | None = None) -> dict[str, str]:
        """Per load that must run now for its daily minimum, the reason (see guards). The
        deadline comes from :meth:`_deadline_s`; with ``period_start_s`` (the settlement period
        around ``now_s``) and the 2.0TD prices (no ``import_price``), the period's rank is kept for
        the period: it does not change within it (:func:`gestor.core.guards.min_run_ahead`)."""
        out = {}
        now: datetime | None = None  # made when needed: most cycles keep what they need
        for ld in self._min_run:
            c = ld.cfg
            done = ld.day_on_s.get(self._deadline_s(ld, now_s), 0.0)
            if c.min_run_s - done <= 0:
                continue  # reached: nothing to say (min_run_reason)
            ahead = None
            if period_start_s is not None and self.import_price is None:
                kept = self._rank_in_period.get(c.name)
                if kept is None or kept[0] != period_start_s:
                    now = now or datetime.fromtimestamp(now_s, UTC)
                    kept = (period_start_s, min_run_ahead(now, self.tz, self.period_s, c.min_run_by, self.price_period))
                    self._rank_in_period[c.name] = kept
                ahead = kept[1]
            else:
                now = now or datetime.fromtimestamp(now_s, UTC)
            why = min_run_reason(now, self.tz, self.period_s, c.min_run_s, done, c.min_run_by,
                                 self.price_period, c.power_w, self.import_price, ahead)
            if why:
                out[ld.name] = why
        return out

    def min_run_plan(self, now_s: float) -> dict[str, list[datetime]]:
        """Per load with a daily minimum not yet reached, the starts (aware, UTC) of the
        settlement periods it has chosen to run in from epoch ``now_s`` to its deadline
        (:func:`gestor.core.guards.min_run_slots`, ranked as :meth:`min_run` ranks them); loads
        that reached it are left out. What managing publishes for the web page."""
        out: dict[str, list[datetime]] = {}
        now = datetime.fromtimestamp(now_s, UTC)
        for ld in self._min_run:
            c = ld.cfg
            done = ld.day_on_s.get(self._deadline_s(ld, now_s), 0.0)
            slots = min_run_slots(now, self.tz, self.period_s, c.min_run_s, done, c.min_run_by, self.price_period,
                                  self.import_price)
            if slots:
                out[ld.name] = slots
        return out

    def _deadline_s(self, ld: LoadState, t: float) -> float:
        """:func:`gestor.core.guards.min_run_deadline` of ``ld`` after epoch ``t``, epoch s. Kept from
        the last answer while ``t`` stays before it (there is no deadline in between); anew
        within a microsecond of it, where the datetime's rounding could cross it."""
        kept = self._deadline_until.get(ld.cfg.name)
        if kept is None or not kept[0] <= t < kept[1] - 1e-6:
            kept = (t, min_run_deadline(datetime.fromtimestamp(t, UTC), self.tz, ld.cfg.min_run_by).timestamp())
            self._deadline_until[ld.cfg.name] = kept
        return kept[1]

    # -- the books ---------------------------------------------------------------------------
    def switched(self, ld: LoadState, on: bool, now_s: float, period_start_s: float) -> None:
        """Record a confirmed change of ``ld`` to ``on`` at epoch ``now_s``."""
        ld.on, ld.since_s = on, now_s
        ld.switches[period_start_s] = ld.switches.get(period_start_s, 0) + 1

    def account(self, t0: float, t1: float, bounds: Callable[[float], tuple[float, float]],
                on: Sequence[bool] | None = None) -> None:
        """Add the seconds each load was on between ``t0`` and ``t1`` (epoch s), split at the
        settlement periods ``bounds(t)`` returns (start, end epoch) and at the daily-minimum
        deadlines. ``on``: each load's state over the interval (default: its current state)."""
        if on is None:
            if self._changed.up:
                self._refresh()
            if not self._any_on:
                return
        a = t0
        while a < t1:
            p0, p1 = bounds(a)
            b = min(p1, t1)
            for j, ld in enumerate(self.loads):
                if not (on[j] if on is not None else ld.on):
                    continue
                ld.on_s[p0] = ld.on_s.get(p0, 0.0) + (b - a)
                if ld.cfg.min_run_s > 0:
                    d = self._deadline_s(ld, a)
                    # only the current deadline's count is kept (the state runs for years)
                    ld.day_on_s = {d: ld.day_on_s.get(d, 0.0) + (b - a)}
            a = b


@dataclass
class Step:
    """What one control cycle concluded, for managing: periods it closed, the current period and
    its balance, the latest net power, and the commands (loads whose state is to change)."""

    closed: list[PeriodSummary]
    period_start: datetime
    period_end: datetime
    balance_wh: float
    net_w: float
    recent_surplus_w: tuple[float, ...]
    changes: list[Wish]


def sample_of(r: Reading) -> Sample:
    return (r.at.timestamp(), r.net_w, r.production_w, r.consumption_w, r.import_wh_total, r.export_wh_total)


def _bisect(a: list[float], x: float, right: bool) -> int:
    """Where ``x`` goes in the ascending ``a``: after equal values (``right``) or before them, as
    :func:`bisect.bisect_right` / :func:`bisect.bisect_left` answer. Here, not the bisect module:
    compiled, this loop is native and the module's functions are calls through the C API."""
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid] or (not right and x == a[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


class Core(Controller):
    """The whole control cycle on the readings received since the last one: the settlement
    period's balance, the recent surplus, the policy and the guards. managing runs it on the live
    state with real relays (:meth:`step`, datetimes at the edge); ``gestor simulate`` on the
    readings monitoring would have taken from a recording, with simulated loads
    (:meth:`step_s`, floats): one code path, so the simulator is the daemon."""

    def __init__(self, settings: Settings, loads: Sequence[LoadState] | None = None,
                 policy: Callable[[Snapshot, PolicySettings], list[Wish]] | None = None) -> None:
        super().__init__(settings, loads, policy)
        self.max_power_w = float(getattr(settings.meter, "max_abs_power_w", math.inf))
        # the meter's counters step by this much, Wh (its driver declares it; the balance's tolerance)
        self.counter_resolution_wh = float(getattr(settings.meter, "counter_resolution_wh", COUNTER_SLACK_WH))
        self.balance = Balance(settings.billing.period_s, settings.tz, settings.billing.max_gap_s, self.max_power_w,
                               self.counter_resolution_wh)
        # the readings of the last window_s, oldest first from index _head on (the ones before it
        # have left the window; dropped in bulk): epoch s, and W of surplus before the managed
        # loads then. Plain lists, not a deque of pairs: compiled, they are indexed natively.
        self._recent_t: list[float] = []
        self._recent_w: list[float] = []
        self._head = 0
        self._recent_sorted: list[float] = []  # their surplus, ascending (what the policy reads)
        self.window_s = settings.policy.window_s
        self.stale_after_s = settings.managing.stale_after_s
        # only steady_surplus reads the recent surplus; not a policy played instead (foresight's)
        self._steady = policy is None and settings.policy.name == "steady_surplus"
        # the last period bounds_s returned (epoch s): its answer for every instant inside it
        self._span = (math.inf, -math.inf)
        # (from when, W of the loads that are on): what the loads drew when each reading was taken
        self._on_w: deque[tuple[float, float]] = deque([(-math.inf, 0.0)])
        # (from when, W the setpoint devices took): managing's, after commanding them
        # (:meth:`note_devices`); the policy and the recent surplus see the house without them, so
        # the on/off loads come first and the devices take what they leave. Empty without devices.
        self._dev_w: deque[tuple[float, float]] = deque()
        self.devices_w = 0.0
        # Wh the setpoint devices took in the period starting at _dev_period_s, up to _dev_at_s
        # (their commanded power integrated): added back to the balance the policy sees
        self.devices_wh = 0.0
        self._dev_period_s = -math.inf
        self._dev_at_s = -math.inf
        # the last cycle's conclusions (step_s), epoch s / Wh / W
        self.period_start_s = self.period_end_s = self.balance_wh = self.net_w = 0.0
        self.recent_surplus_w: tuple[float, ...] = ()

    def bounds_s(self, t: float) -> tuple[float, float]:
        """The settlement period around epoch ``t`` as (start, end) epoch seconds; the last one is
        cached, so walking through time costs a datetime only at each period change."""
        if not self._span[0] <= t < self._span[1]:
            p0, p1 = self.balance.bounds(datetime.fromtimestamp(t, UTC))
            self._span = (p0.timestamp(), p1.timestamp())
        return self._span

    def note_state(self, now: datetime | float) -> None:
        """Record the loads' power from ``now`` on (after a switch, or a load found off)."""
        t = now if isinstance(now, float) else now.timestamp()
        self._on_w.append((t, sum([ld.taken_w for ld in self.loads]) + self.devices_w))

    def note_devices(self, now_s: float, devices_w: float) -> None:
        """Record the setpoint devices' total power from epoch ``now_s`` on, W (+ taken)."""
        if not self._dev_w:
            self._dev_w.append((-math.inf, self.devices_w))
        start, _ = self.bounds_s(now_s)
        if start != self._dev_period_s:  # a new period: only its own part counts
            self.devices_wh, self._dev_period_s = 0.0, start
        t0 = max(self._dev_at_s, start)
        if now_s > t0:
            self.devices_wh += self.devices_w * (now_s - t0) / 3600.0
        self._dev_at_s = now_s
        if devices_w == self.devices_w:  # unchanged (idle, a steady setpoint): the histories hold it
            return
        self.devices_w = devices_w
        self._dev_w.append((now_s, devices_w))
        self.note_state(now_s)

    def resume_devices(self, period_start_s: float, devices_wh: float, at_s: float) -> None:
        """After a restart within the period starting at epoch ``period_start_s``: the Wh the
        setpoint devices took in it up to epoch ``at_s`` (managing's persisted books), added back
        to the balance the policy sees as before the restart (:meth:`note_devices` goes on from
        there)."""
        self.devices_wh, self._dev_period_s, self._dev_at_s = devices_wh, period_start_s, at_s

    def devices_w_at(self, at_s: float) -> float:
        """W the setpoint devices took when a reading stamped ``at_s`` was taken (0 without devices)."""
        for since, w in reversed(self._dev_w):
            if since < at_s:
                return w
        return self._dev_w[0][1] if self._dev_w else 0.0

    def surplus_before_devices_w(self) -> float:
        """W of surplus the setpoint devices have to share now: the latest net power with the
        devices' power then added back, less what the on/off loads switched since that reading
        took (export-positive; the house with its loads as they are now, without the devices)."""
        t = self.balance.last_t
        then = self.on_w_at(t)
        dev_then = self.devices_w_at(t)
        loads_now = sum([ld.taken_w for ld in self.loads])
        return self.balance.last_net_w + dev_then - (loads_now - (then - dev_then))

    def switched(self, ld: LoadState, on: bool, now_s: float, period_start_s: float) -> None:
        super().switched(ld, on, now_s, period_start_s)
        self.note_state(now_s)

    def on_w_at(self, at_s: float) -> float:
        """W the managed loads drew when a reading stamped ``at_s`` was taken: the state commanded
        before it (monitoring reads before managing commands at the same instant)."""
        last = self._on_w[-1]
        if last[0] < at_s:  # the common case: no switch since the reading
            return last[1]
        for since, w in reversed(self._on_w):
            if since < at_s:
                return w
        return self._on_w[0][1]

    def reset(self) -> None:
        """A fresh balance and history (after a wall-clock step)."""
        self.balance = Balance(self.s.billing.period_s, self.s.tz, self.s.billing.max_gap_s, self.max_power_w,
                               self.counter_resolution_wh)
        self._recent_t.clear()
        self._recent_w.clear()
        self._head = 0
        self._recent_sorted.clear()
        self._on_w = deque([(-math.inf, sum([ld.taken_w for ld in self.loads]) + self.devices_w)])
        if self._dev_w:
            self._dev_w = deque([(-math.inf, self.devices_w)])
        self.devices_wh, self._dev_period_s, self._dev_at_s = 0.0, -math.inf, -math.inf

    def step_s(self, now_s: float, new: list[Sample], *, reading_age_s: float | None,
               latched: bool = False, overrides: Mapping[str, Override] | None = None,
               held: Mapping[str, str] | None = None) -> tuple[list[PeriodSummary], list[Wish]]:
        """One cycle at epoch ``now_s`` with the readings ``new`` (oldest first, newer than the
        last): the periods it closed, and the commands (see :meth:`Controller.decide`). The
        current period, its balance, the latest net power and the recent surplus are left in
        ``period_start_s``, ``period_end_s``, ``balance_wh``, ``net_w``, ``recent_surplus_w``."""
        bal = self.balance
        if len(new) == 1:  # the common case: one reading since the last cycle
            closed = bal.update_r(new[0])
        else:
            closed = []
            for r in new:
                closed.extend(bal.update_r(r))
        if self._steady:  # only steady_surplus reads the recent surplus (before the managed loads)
            # kept sorted by bisection: the values are finite (Reading refuses NaN and infinities,
            # simulate skips them), so every one removed is found where it was inserted
            ts, ws, rs = self._recent_t, self._recent_w, self._recent_sorted
            for r in new:
                v = r[1] + self.on_w_at(r[0])
                ts.append(r[0])
                ws.append(v)
                rs.insert(_bisect(rs, v, True), v)
            h, n = self._head, len(ts)
            while h < n and now_s - ts[h] > self.window_s:
                del rs[_bisect(rs, ws[h], False)]
                h += 1
            if h > 256 and 2 * h > n:  # the readings gone from the window: away in one go
                del ts[:h], ws[:h]
                h = 0
            self._head = h
            self.recent_surplus_w = tuple(rs)
        # the load history older than every reading still to come is not needed
        on_w, last_t = self._on_w, bal.last_t
        while len(on_w) > 1 and on_w[1][0] < last_t:
            on_w.popleft()
        net = seen = bal.last_net_w
        start, end = self._span
        if not start <= now_s < end:
            start, end = self.bounds_s(now_s)
        bal_wh = seen_wh = bal.current.balance_wh if bal.current is not None and bal.start_t == start else 0.0
        if self._dev_w:  # the policy sees the house without the setpoint devices (they come last)
            dev_w = self._dev_w
            while len(dev_w) > 1 and dev_w[1][0] < last_t:
                dev_w.popleft()
            seen = net + self.devices_w_at(last_t)
            if self._dev_period_s == start:
                seen_wh = bal_wh + self.devices_wh
        self.period_start_s, self.period_end_s, self.balance_wh, self.net_w = start, end, bal_wh, net
        return closed, self.decide(now_s, start, end, seen_wh, seen, self.recent_surplus_w, latched=latched,
                                   reading_age_s=reading_age_s, stale_after_s=self.stale_after_s,
                                   overrides=overrides, held=held)

    def step(self, now: datetime, new: Sequence[Reading], *, reading_age_s: float | None,
             latched: bool = False, overrides: Mapping[str, Override] | None = None,
             held: Mapping[str, str] | None = None) -> Step:
        """:meth:`step_s` with datetimes and :class:`Reading` objects, as managing has them."""
        closed, todo = self.step_s(now.timestamp(), [sample_of(r) for r in new], reading_age_s=reading_age_s,
                                   latched=latched, overrides=overrides, held=held)
        return Step(closed, datetime.fromtimestamp(self.period_start_s, UTC),
                    datetime.fromtimestamp(self.period_end_s, UTC), self.balance_wh, self.net_w,
                    self.recent_surplus_w, todo)
