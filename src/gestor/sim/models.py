"""What a setpoint device does with the setpoints that reach it (issue 26): the models
``gestor simulate`` plays (:mod:`gestor.sim.devices` drives them). :class:`DeviceModel` (a modulating heater: its power is its
setpoint), :class:`BatteryModel` (a :class:`gestor.core.devices.Battery` whose BMS stops it at a
SoC limit, integrated exactly between events), :class:`EvModel` (an EV charger and the cars that
connect to it, :class:`EvSession`, e.g. from :func:`daily_sessions`).

The battery and the charger are simulated in continuous time between the events (a setpoint
reaching the device, a sample measured, a period's end, a car arriving or leaving): the device's
power is piecewise constant, its setpoint unless its own limits stop it (the battery's BMS at a
SoC limit, at the exact instant the limit is reached; the car when its session's energy is
delivered or when it leaves). Units: W, Wh, s (epoch), %; setpoints from the house's side
(+ takes power, - supplies it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

from gestor.core.devices import Battery, DeviceKind, EvCharger
from gestor.sim.books import PeriodResult

EPS_WH = 1e-9  # stored Wh this close to a SoC limit is at it


class DeviceModel:
    """What a device does with the setpoints that reach it: the base one takes exactly its
    setpoint, at once and for ever (the modulating heater). W, epoch s.

    The loop calls :meth:`advance` with non-decreasing times before it reads :attr:`power_w` (a
    sample measured) or changes it (:meth:`apply`: a setpoint reaching the device), asks
    :meth:`range_w` for the law's range at a cycle and :meth:`command_w` for the setpoint sent.
    ``active`` False: :meth:`advance` and :meth:`range_w` do nothing (not called)."""

    active = False

    def __init__(self, kind: DeviceKind) -> None:
        self.kind = kind
        self.power_w = 0.0        # the device's power now, W
        self.changes: list[tuple[float, float]] = []  # (epoch s, W): every change of power_w, for tests

    def advance(self, t_s: float) -> None:
        """Integrate the device's state up to epoch ``t_s``."""

    def apply(self, t_s: float, setpoint_w: float) -> None:
        """The setpoint ``setpoint_w`` reaches the device at ``t_s`` (after :meth:`advance` to it)."""
        self.power_w = setpoint_w

    def range_w(self, t_s: float, step_s: float) -> tuple[float, float] | None:
        """The law's range at a cycle at ``t_s`` for a command held ``step_s``; None: the law's own."""
        return None

    def command_w(self, want_w: float) -> float:
        """The setpoint sent for the law's ``want_w``."""
        return want_w

    def _set(self, t_s: float, power_w: float) -> None:
        if power_w != self.power_w:
            self.power_w = power_w
            self.changes.append((t_s, power_w))


@dataclass
class BatteryPeriod:
    """A settlement period of a battery: Wh charged and discharged (house side), SoC % at its
    start and end (at the first and last instants simulated in it)."""

    charged_wh: float = 0.0
    discharged_wh: float = 0.0
    soc_start_pct: float = math.nan
    soc_end_pct: float = math.nan


@dataclass
class BatteryStats:
    """A battery over a run: Wh charged and discharged (house side), lost (``charged -
    discharged - stored change``), SoC % at the start and the end and the lowest and highest
    reached; per period (start epoch s → :class:`BatteryPeriod`)."""

    charged_wh: float
    discharged_wh: float
    losses_wh: float
    soc_start_pct: float
    soc_end_pct: float
    soc_min_pct: float
    soc_max_pct: float
    periods: dict[float, BatteryPeriod] = field(default_factory=dict)


@dataclass
class EvSession:
    """A car's connection: arrival and departure (epoch s), Wh wanted and Wh delivered."""

    arrive_s: float
    depart_s: float
    wanted_wh: float
    delivered_wh: float = 0.0


@dataclass
class EvStats:
    """An EV charger over a run: its sessions (:class:`EvSession`), Wh delivered per period
    (start epoch s → Wh) and in all."""

    sessions: list[EvSession]
    delivered_wh: float
    wanted_wh: float
    periods: dict[float, float] = field(default_factory=dict)



class _Timed(DeviceModel):
    """A model whose state integrates over time, per settlement period (``bounds``: the period
    around an epoch, as :meth:`Core.bounds_s`)."""

    active = True

    def __init__(self, kind: DeviceKind, bounds: Callable[[float], tuple[float, float]]) -> None:
        super().__init__(kind)
        self.bounds = bounds
        self.setpoint_w = 0.0
        self.t: float | None = None
        self.k = self.k_end = -math.inf   # the period the state is in: start, end (epoch s)
        self._ev_t = math.inf             # the next event of the device's own (a car arriving, leaving)

    def advance(self, t_s: float) -> None:
        t = self.t
        if t is None:
            self.t = t_s
            self.k, self.k_end = self.bounds(t_s)
            self._enter(self.k)
            self._ev_t = self._next_event(t_s)
            return
        while t < t_s:
            if t >= self.k_end:  # a new period: the last one's figures are final
                self._leave(self.k)
                self.k, self.k_end = self.bounds(t)
                self._enter(self.k)
            b = t_s
            if self.k_end < b:
                b = self.k_end
            if self._ev_t < b:
                b = self._ev_t
            if b > t and self.power_w != 0.0:
                self._integrate(t, b)
            t = self.t = b
            if b >= self._ev_t:
                self._event(b)
                self._ev_t = self._next_event(b)

    def _next_event(self, t_s: float) -> float:
        return math.inf

    def _event(self, t_s: float) -> None:
        pass

    def _enter(self, k: float) -> None:
        pass

    def _leave(self, k: float) -> None:
        pass

    def _integrate(self, a: float, b: float) -> None:
        raise NotImplementedError


class BatteryModel(_Timed):
    """A :class:`Battery` starting at ``soc_start_pct`` %: its power is its setpoint (clamped to
    its power range) unless its BMS stops it, at the instant the stored energy reaches a SoC limit
    and for as long as the setpoint pushes beyond it. The controller's range at a cycle is
    :meth:`Battery.range_w` at the SoC then, over ``step_s``."""

    def __init__(self, kind: Battery, bounds: Callable[[float], tuple[float, float]], soc_start_pct: float) -> None:
        super().__init__(kind, bounds)
        if not kind.min_soc_pct <= soc_start_pct <= kind.max_soc_pct:
            raise ValueError(f"soc_start_pct {soc_start_pct} must be within {kind.min_soc_pct}..{kind.max_soc_pct} %")
        self.bat = kind
        self.stored_wh = kind.stored_wh(soc_start_pct)
        self.soc_start_pct = soc_start_pct
        self.charged_wh = self.discharged_wh = 0.0
        self.lo_wh = self.hi_wh = self.stored_wh
        self.periods: dict[float, BatteryPeriod] = {}
        self._cur: BatteryPeriod | None = None

    def _enter(self, k: float) -> None:
        self._cur = self.periods.get(k)
        if self._cur is None:
            self._cur = self.periods[k] = BatteryPeriod(soc_start_pct=self.bat.soc_pct(self.stored_wh))

    def _leave(self, k: float) -> None:
        self._cur.soc_end_pct = self.bat.soc_pct(self.stored_wh)  # type: ignore[union-attr]

    def _integrate(self, a: float, b: float) -> None:
        p = self.power_w
        bat, cur = self.bat, self._cur
        e_wh = p * (b - a) / 3600.0  # house side
        if p > 0:
            room = bat.max_wh - self.stored_wh
            if e_wh * bat.eta >= room:  # full within the interval: the BMS stops it there
                e_wh = max(room, 0.0) / bat.eta
                self.stored_wh = bat.max_wh
                self._set(a + e_wh * 3600.0 / p, 0.0)
            else:
                self.stored_wh += e_wh * bat.eta
            self.charged_wh += e_wh
            cur.charged_wh += e_wh  # type: ignore[union-attr]
            self.hi_wh = max(self.hi_wh, self.stored_wh)
        else:
            left = self.stored_wh - bat.min_wh
            if -e_wh / bat.eta >= left:  # empty within the interval
                e_wh = -max(left, 0.0) * bat.eta
                self.stored_wh = bat.min_wh
                self._set(a + e_wh * 3600.0 / p, 0.0)
            else:
                self.stored_wh += e_wh / bat.eta
            self.discharged_wh -= e_wh
            cur.discharged_wh -= e_wh  # type: ignore[union-attr]
            self.lo_wh = min(self.lo_wh, self.stored_wh)

    def _allowed(self, setpoint_w: float) -> float:
        p = self.bat.clamp_w(setpoint_w)
        if p > 0 and self.stored_wh >= self.bat.max_wh - EPS_WH:
            return 0.0
        if p < 0 and self.stored_wh <= self.bat.min_wh + EPS_WH:
            return 0.0
        return p

    def apply(self, t_s: float, setpoint_w: float) -> None:
        self.setpoint_w = setpoint_w
        self._set(t_s, self._allowed(setpoint_w))

    def range_w(self, t_s: float, step_s: float) -> tuple[float, float]:
        return self.bat.range_w(self.stored_wh * 100.0 / self.bat.capacity_wh, step_s)

    def stats(self) -> BatteryStats:
        bat = self.bat
        if self._cur is not None:
            self._leave(self.k)
        stored0 = bat.stored_wh(self.soc_start_pct)
        return BatteryStats(self.charged_wh, self.discharged_wh,
                            self.charged_wh - self.discharged_wh - (self.stored_wh - stored0),
                            self.soc_start_pct, bat.soc_pct(self.stored_wh), bat.soc_pct(self.lo_wh),
                            bat.soc_pct(self.hi_wh), self.periods)


class EvModel(_Timed):
    """An :class:`EvCharger` and the cars that connect to it (``sessions``, by arrival; they must
    not overlap): the charger's power is its setpoint (a step) while a car is connected and its
    session's energy is not yet delivered, else 0 (the car stops itself the instant it has what
    it wanted, or leaves). The controller's range: ``(0, max_w)`` while that holds, else ``(0, 0)``."""

    def __init__(self, kind: EvCharger, bounds: Callable[[float], tuple[float, float]],
                 sessions: Sequence[EvSession]) -> None:
        super().__init__(kind, bounds)
        self.ev = kind
        self.sessions = sorted(sessions, key=lambda x: x.arrive_s)
        for a, b in zip(self.sessions, self.sessions[1:]):
            if b.arrive_s < a.depart_s:
                raise ValueError(f"EV sessions overlap: one leaves at {a.depart_s}, the next arrives at {b.arrive_s}")
        self.i = 0              # the session now or next
        self.periods: dict[float, float] = {}

    def _session(self, t_s: float) -> EvSession | None:
        """The session connected at ``t_s`` with energy still wanted, or None."""
        while self.i < len(self.sessions) and self.sessions[self.i].depart_s <= t_s:
            self.i += 1
        if self.i < len(self.sessions):
            x = self.sessions[self.i]
            if x.arrive_s <= t_s and x.delivered_wh < x.wanted_wh:
                return x
        return None

    def _next_event(self, t_s: float) -> float:
        if self.i < len(self.sessions):
            x = self.sessions[self.i]
            return x.arrive_s if t_s < x.arrive_s else x.depart_s
        return math.inf

    def _event(self, t_s: float) -> None:
        self._set(t_s, self.setpoint_w if self._session(t_s) is not None else 0.0)

    def _integrate(self, a: float, b: float) -> None:
        p = self.power_w
        x = self.sessions[self.i]
        e_wh = p * (b - a) / 3600.0
        if x.delivered_wh + e_wh >= x.wanted_wh:  # the car has what it wanted: it stops
            e_wh = max(x.wanted_wh - x.delivered_wh, 0.0)
            x.delivered_wh = x.wanted_wh
            self._set(a + e_wh * 3600.0 / p, 0.0)
        else:
            x.delivered_wh += e_wh
        self.periods[self.k] = self.periods.get(self.k, 0.0) + e_wh

    def apply(self, t_s: float, setpoint_w: float) -> None:
        self.setpoint_w = setpoint_w
        self._set(t_s, setpoint_w if self._session(t_s) is not None else 0.0)

    def range_w(self, t_s: float, step_s: float) -> tuple[float, float]:
        return (0.0, self.ev.max_w if self._session(t_s) is not None else 0.0)

    def command_w(self, want_w: float) -> float:
        return self.ev.clamp_w(want_w)

    def stats(self) -> EvStats:
        return EvStats(self.sessions, sum(x.delivered_wh for x in self.sessions),
                       sum(x.wanted_wh for x in self.sessions), self.periods)


def had_room(p: PeriodResult, bp: BatteryPeriod, battery: Battery) -> bool:
    """Whether ``battery`` could have ended period ``p`` at 0 Wh, knowing it: the period's whole
    surplus without it (``p.balance_without_wh`` > 0) fits both in what it may charge in the
    period (``max_charge_w`` × its length) and in the room left above its SoC at the period's
    start (``bp.soc_start_pct``; house-side Wh, ``(max_wh - stored) / eta``); or the whole deficit
    (< 0) in what it may discharge and in what is stored above ``min_soc_pct``
    (``(stored - min_wh) * eta``). A period with no imbalance (0 Wh) has room."""
    without = p.balance_without_wh
    h = (p.end - p.start).total_seconds() / 3600.0
    stored = battery.stored_wh(bp.soc_start_pct)
    if without > 0:
        return without <= min(battery.max_charge_w * h, (battery.max_wh - stored) / battery.eta)
    return -without <= min(battery.max_discharge_w * h, (stored - battery.min_wh) * battery.eta)


def daily_sessions(first_day: date, last_day: date, tz: ZoneInfo, wanted_wh: float = 10_000.0,
                   weekday: tuple[time, time] | None = (time(18), time(8)),
                   weekend: tuple[time, time] | None = (time(10), time(20))) -> list[EvSession]:
    """A car's connections on a simple daily schedule, local time in ``tz``: on every day from
    ``first_day`` to ``last_day`` (inclusive) it arrives at ``weekday[0]`` Monday to Friday
    (``weekend[0]`` Saturday and Sunday) and leaves at the ``[1]`` time, the next day when that is
    not later than the arrival (18:00-08:00: overnight), wanting ``wanted_wh`` Wh each time. None:
    no session on those days. A session that would overlap the next one is cut at its arrival.
    Returns the :class:`EvSession` list by arrival."""
    out: list[EvSession] = []
    d = first_day
    while d <= last_day:
        span = weekend if d.weekday() >= 5 else weekday
        if span is not None:
            a = datetime.combine(d, span[0], tzinfo=tz)
            b = datetime.combine(d if span[1] > span[0] else d + timedelta(days=1), span[1], tzinfo=tz)
            out.append(EvSession(a.timestamp(), b.timestamp(), wanted_wh))
        d += timedelta(days=1)
    for x, y in zip(out, out[1:]):
        x.depart_s = min(x.depart_s, y.arrive_s)
    return out

