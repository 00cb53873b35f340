"""Control policies: pure functions of a read-only :class:`Snapshot` → one :class:`Wish` per load.

They do no I/O and keep no hidden clock or state, so managing, the simulator and the tests run the
very same code. Every wish that changes a load carries the reason that will be logged.

The three policies come from the bachelor's thesis this project grows from ("Gestor Energètic",
UPC Manresa, 2022, ``sim/lib/sim/Simulator.py``), generalised from two loads to N loads stacked in
priority order (the order of ``loads`` in settings.yaml):

* ``hysteresis``: per load, on when ``balance_wh >= on_above_wh``, off when
  ``balance_wh <= off_below_wh``.
* ``min_on_time``: switch a load on when the surplus so far would run it for at least ``min_on_s``
  (``balance_wh / power_w * 3600 >= min_on_s``), keep it on that long, then off unless the surplus
  still covers another ``min_on_s``.
* ``time_to_consume`` (the thesis's best): project the period's final balance

  - ``none``:    ``projected_wh = balance_wh``
  - ``average``: ``projected_wh = balance_wh / elapsed_s * period_s``
  - ``instant``: ``projected_wh = balance_wh + net_w * remaining_s / 3600``

  The next load (first one off, in priority order) goes on when ``projected_wh >= on_min_wh`` and
  the projection would run it for the rest of the period:
  ``projected_wh / power_w * 3600 >= remaining_s * time_factor``. The last load that is on goes off
  when, even without it, the period would end at or below ``end_at_wh``:
  ``balance_wh + (net_w + power_w) * remaining_s / 3600 <= end_at_wh``. At most one load changes
  per cycle, as in the thesis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from gestor.core.reasons import say

if TYPE_CHECKING:  # the settings' types only: the core imports nothing above it
    from gestor.settings import PolicySettings


@dataclass(frozen=True)
class LoadView:
    """A load as a policy sees it: an on/off device (:class:`gestor.core.devices.OnOff`) that
    takes ``power_w`` (W, its rated power) when ``on`` (an unknown state reads as on) and nothing
    when off. ``since_s``: when it last switched, epoch s (None: not since start)."""

    name: str
    power_w: float
    on: bool
    since_s: float | None = None
    on_above_wh: float | None = None
    off_below_wh: float | None = None


class Snapshot:
    """Everything a policy may use. Powers W (export-positive), energies Wh, times epoch seconds
    (floats: the control core runs a year of cycles in the simulator, no datetime per cycle).

    ``recent_surplus_w``: the surplus before the managed loads at each reading of the last
    ``policy.window_s``, W, **ascending** (the control core keeps the window sorted as readings
    come and go; only its median and spread are used).

    Read-only by convention, not frozen, and a plain class, not a dataclass: one is built every
    cycle, and a frozen dataclass takes four times as long to build in CPython, a dataclass's
    ``__init__`` stays interpreted in the compiled core (``install.sh --compile``). Policies never
    change it."""

    __slots__ = ("now_s", "period_start_s", "period_end_s", "balance_wh", "net_w", "loads", "recent_surplus_w")

    def __init__(self, now_s: float, period_start_s: float, period_end_s: float, balance_wh: float,
                 net_w: float, loads: tuple[LoadView, ...], recent_surplus_w: tuple[float, ...] = ()) -> None:
        self.now_s = now_s
        self.period_start_s = period_start_s
        self.period_end_s = period_end_s
        self.balance_wh = balance_wh
        self.net_w = net_w
        self.loads = loads
        self.recent_surplus_w = recent_surplus_w

    def but_loads(self, loads: tuple[LoadView, ...]) -> Snapshot:
        """The same snapshot with other ``loads``."""
        return Snapshot(self.now_s, self.period_start_s, self.period_end_s, self.balance_wh, self.net_w, loads,
                        self.recent_surplus_w)

    def __repr__(self) -> str:
        return (f"Snapshot(now_s={self.now_s!r}, period_start_s={self.period_start_s!r}, "
                f"period_end_s={self.period_end_s!r}, balance_wh={self.balance_wh!r}, net_w={self.net_w!r}, "
                f"loads={self.loads!r}, recent_surplus_w={self.recent_surplus_w!r})")

    @property
    def period_s(self) -> float:
        return self.period_end_s - self.period_start_s

    @property
    def elapsed_s(self) -> float:
        return max(self.now_s - self.period_start_s, 0.0)

    @property
    def remaining_s(self) -> float:
        return max(self.period_end_s - self.now_s, 0.0)


@dataclass(frozen=True)
class Wish:
    """What a policy or a guard wants of one load: on or off, and why (the reason logged). For
    the on/off kind, the one there is, on is its rated power and off nothing
    (:class:`gestor.core.devices.OnOff`)."""

    load: str
    on: bool
    reason: str = ""


def projected_wh(s: Snapshot, mode: str) -> float:
    """The period's projected final balance, Wh (see module docstring for the three modes)."""
    if mode == "none":
        return s.balance_wh
    if mode == "average":
        if s.elapsed_s < 1.0:
            return s.balance_wh
        return s.balance_wh / s.elapsed_s * s.period_s
    if mode == "instant":
        return s.balance_wh + s.net_w * s.remaining_s / 3600.0
    raise ValueError(f"unknown projection {mode!r}")


def time_to_consume(s: Snapshot, p: PolicySettings) -> list[Wish]:
    balance_wh, net_w, loads = s.balance_wh, s.net_w, s.loads
    rem = s.remaining_s
    nxt = last_on = None
    for ld in loads:
        if not ld.on:
            nxt = ld
            break
    for ld in reversed(loads):
        if ld.on:
            last_on = ld
            break
    if nxt is not None:
        proj = projected_wh(s, p.projection)
        run_s = proj / nxt.power_w * 3600.0
        if proj >= p.on_min_wh and run_s >= rem * p.time_factor:
            return [Wish(nxt.name, True, say("ttc_on", {"projected_wh": proj, "load_w": nxt.power_w,
                                                         "remaining_s": rem, "projection": p.projection}))]
    if last_on is not None:
        if_off = balance_wh + (net_w + last_on.power_w) * rem / 3600.0
        if if_off <= p.end_at_wh:
            return [Wish(last_on.name, False, say("ttc_off", {"end_wh": if_off, "end_at_wh": p.end_at_wh}))]
    return []


def hysteresis(s: Snapshot, p: PolicySettings) -> list[Wish]:
    out = []
    for ld in s.loads:
        if ld.on_above_wh is None or ld.off_below_wh is None:
            continue
        if not ld.on and s.balance_wh >= ld.on_above_wh:
            out.append(Wish(ld.name, True, say("hysteresis_on", {"balance_wh": s.balance_wh,
                                                                 "on_above_wh": ld.on_above_wh})))
        elif ld.on and s.balance_wh <= ld.off_below_wh:
            out.append(Wish(ld.name, False, say("hysteresis_off", {"balance_wh": s.balance_wh,
                                                                   "off_below_wh": ld.off_below_wh})))
    return out


def min_on_time(s: Snapshot, p: PolicySettings) -> list[Wish]:
    out = []
    budget_wh = s.balance_wh
    for ld in s.loads:
        need_wh = ld.power_w * p.min_on_s / 3600.0
        if ld.on:
            ran_s = s.now_s - ld.since_s if ld.since_s is not None else p.min_on_s
            if ran_s >= p.min_on_s and budget_wh < need_wh:
                out.append(Wish(ld.name, False, say("min_on_time_off", {
                    "ran_s": ran_s, "min_on_s": p.min_on_s, "balance_wh": budget_wh, "need_wh": need_wh})))
            continue
        if budget_wh >= need_wh:
            out.append(Wish(ld.name, True, say("min_on_time_on", {
                "balance_wh": budget_wh, "load_w": ld.power_w, "run_s": budget_wh / ld.power_w * 3600,
                "min_on_s": p.min_on_s})))
            budget_wh -= need_wh
    return out


def steady_surplus(s: Snapshot, p: PolicySettings) -> list[Wish]:
    """``time_to_consume`` on the steady surplus instead of the instant one, and careful with
    the surplus still to come.

    The surplus before the managed loads over the last ``window_s`` (``Snapshot.recent_surplus_w``)
    gives its median ``med`` and its median absolute deviation ``mad``. The median ignores the
    house files' 6-14 kW spikes of a few samples and short dips, which switch ``time_to_consume``'s
    loads off and on again. With ``P_on`` the loads on, ``rem`` the time left in the period:

    * the next load goes on when it can run to the end and the period still ends at or above
      ``margin_wh``: ``balance + (med - P_on - P) * rem / 3600 >= margin_wh``, and the projected
      surplus is at least ``on_min_wh``: ``balance + (med - P_on) * rem / 3600 >= on_min_wh``;
    * the last load on goes off when, even without it, the period would end at or below
      ``margin_wh`` counting on a doubtful rate: ``balance + (med - doubt * mad - P_on + P) *
      rem / 3600 <= margin_wh``. Under passing clouds ``mad`` grows, so a load running on surplus
      still to come stops sooner and the period imports less; in steady sun ``mad`` is small and
      the load keeps running across the period boundary instead of switching.
    * carry (``carry_wh`` > 0): in the period's last minute, a load that would go off stays on
      when the steady surplus ``med`` still covers every load on and the period ends no lower
      than ``-carry_wh``: a small deficit now instead of an off and an on again a minute later.

    Measured with ``gestor simulate`` on the three recorded files (docs/site/en/simulator.md, benchmarks/policies.py).
    """
    balance_wh, net_w, loads = s.balance_wh, s.net_w, s.loads
    loads_on_w = 0.0
    nxt = last_on = None
    for ld in loads:  # the loads on (W), the first one off, the last one on
        if ld.on:
            loads_on_w += ld.power_w
            last_on = ld
        elif nxt is None:
            nxt = ld
    recent = s.recent_surplus_w or (net_w + loads_on_w,)  # ascending
    med = _quantile(recent, 0.5)
    rem = s.remaining_s
    if nxt is not None:
        end_on = balance_wh + (med - loads_on_w - nxt.power_w) * rem / 3600.0
        proj = balance_wh + (med - loads_on_w) * rem / 3600.0
        if end_on >= p.margin_wh and proj >= p.on_min_wh:
            return [Wish(nxt.name, True, say("steady_on", {"surplus_w": med, "load_w": nxt.power_w,
                                                           "end_wh": end_on}))]
    if last_on is not None:
        mad = _median_distance(recent, med)  # only needed here
        rate = med - p.doubt * mad
        end_off = balance_wh + (rate - loads_on_w + last_on.power_w) * rem / 3600.0
        if end_off <= p.margin_wh:
            if p.carry_wh > 0 and rem <= 60.0 and med >= loads_on_w \
                    and balance_wh + (med - loads_on_w) * rem / 3600.0 >= -p.carry_wh:
                return []  # carried into the next period
            return [Wish(last_on.name, False, say("steady_off", {"surplus_w": med, "doubtful_w": rate,
                                                                 "end_wh": end_off}))]
    return []


def _median_distance(sorted_values: tuple[float, ...], med: float) -> float:
    """``_quantile(sorted(|v - med| for v in sorted_values), 0.5)`` (the median absolute deviation
    about ``med``) without building and sorting the distances: below ``med`` they grow leftwards,
    above it rightwards, so merging the two runs outwards gives them in ascending order. The same
    floats (``med - v`` is exactly ``-(v - med)`` in IEEE arithmetic), the same result."""
    n = len(sorted_values)
    k = int(0.5 * (n - 1))  # _quantile's lower index; the value after it is needed too
    r = 0
    while r < n and sorted_values[r] <= med:
        r += 1
    left = r - 1
    lo = hi = 0.0
    for j in range(k + 2 if k + 1 < n else k + 1):
        if left >= 0 and (r >= n or med - sorted_values[left] <= sorted_values[r] - med):
            d = med - sorted_values[left]
            left -= 1
        else:
            d = sorted_values[r] - med
            r += 1
        if j == k:
            lo = d
        hi = d
    if k + 1 >= n:
        return lo
    return lo + (hi - lo) * (0.5 * (n - 1) - k)


def _quantile(sorted_values: tuple[float, ...], q: float) -> float:
    """Linear-interpolated quantile of an ascending sequence (q in [0, 1]); q=0.5 is the median."""
    x = q * (len(sorted_values) - 1)
    i = int(x)
    if i + 1 >= len(sorted_values):
        return sorted_values[-1]
    return sorted_values[i] + (sorted_values[i + 1] - sorted_values[i]) * (x - i)


POLICIES: dict[str, Callable[[Snapshot, PolicySettings], list[Wish]]] = {
    "time_to_consume": time_to_consume,
    "hysteresis": hysteresis,
    "min_on_time": min_on_time,
    "steady_surplus": steady_surplus,
}


def changes(s: Snapshot, p: PolicySettings, held: Mapping[str, str] | None = None,
            policy: Callable[[Snapshot, PolicySettings], list[Wish]] | None = None) -> list[Wish]:
    """The policy's wishes to change a load (a load not listed keeps its state; most cycles:
    none). The loads a guard holds anyway (``held``: name → why) are left out of the policy's
    stack, so they do not block the loads after them. ``policy``: another policy function than
    the configured one (the simulator's perfect-foresight schedule). What the control core runs."""
    if held:
        s = s.but_loads(tuple([v for v in s.loads if v.name not in held]))
    return (policy or POLICIES[p.name])(s, p)


def decide(s: Snapshot, p: PolicySettings, held: Mapping[str, str] | None = None) -> list[Wish]:
    """One Wish per load, in the loads' order: the policy's changes, ``Wish(off, why)`` for a
    held load (the guards decide its state), the others kept as they are."""
    want = {w.load: w for w in changes(s, p, held)}
    held = held or {}
    return [want.get(v.name) or (Wish(v.name, False, held[v.name]) if v.name in held else Wish(v.name, v.on))
            for v in s.loads]
