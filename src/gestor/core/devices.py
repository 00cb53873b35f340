"""What the control core knows of a controllable device: the power it can take now (its options)
and the power it takes in a given state.

Units are W (power), Wh (energy), % (state of charge), A and V (a charger's current and voltage).
Sign: positive, the device takes power from the house bus (a load running, a battery charging);
negative, it gives power to the bus (a battery discharging).

Today every configured device is :class:`OnOff`: a relay that gives a load its rated power or
nothing (a water heater, a pool pump). :class:`Modulating` is a device whose power can be set
anywhere in ``0..max_w`` (a modulating water heater on a power controller), driven by the setpoint
law of :mod:`gestor.core.setpoint` (``gestor simulate`` plays it, :mod:`gestor.sim.devices`; managing
drives it as a setpoint device). The policies, the guards and the loads' books still decide and count
on/off (``LoadState.on``, ``Wish.on``); a load's kind turns its state into power
(``LoadState.taken_w``). :class:`Battery` is a range from ``-max_discharge_w`` to
``+max_charge_w`` that its state of charge narrows (:meth:`Battery.range_w`), :class:`EvCharger`
a set of steps (0, or whole amperes ``min_a..max_a`` times its phases and voltage) while a car is
connected; the simulator plays both (:mod:`gestor.sim.models`). Pure, like the rest of the core.
"""
from __future__ import annotations

import math


class _OneValue:
    """A device kind told by one number, its only slot (W): equal, hashed and shown by it
    (``OnOff(1000.0)``). One place for :class:`OnOff` and :class:`Modulating`."""

    __slots__: tuple[str, ...] = ()

    def _value(self) -> float:
        return getattr(self, self.__slots__[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _OneValue) and type(other) is type(self) and other._value() == self._value()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._value()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._value()!r})"


class OnOff(_OneValue):
    """A device that takes its rated power ``power_w`` (W, > 0) when on and nothing when off:
    its options are exactly ``(0.0, power_w)``."""

    __slots__ = ("power_w",)

    def __init__(self, power_w: float) -> None:
        self.power_w = power_w

    @property
    def options_w(self) -> tuple[float, float]:
        """The powers it can take, W, ascending: off (0) or on (``power_w``)."""
        return (0.0, self.power_w)

    def taken_w(self, on: bool | None) -> float:
        """W it takes in the state ``on``: ``power_w`` when on, 0 when off. An unknown state
        (None, a relay that did not confirm) counts as 0 here, as the loads' power before a
        reading has always counted it; the policies see such a load as on (``LoadState.view``)."""
        return self.power_w if on else 0.0



class Modulating(_OneValue):
    """A device whose power can be set continuously from 0 to ``max_w`` (W, > 0): a modulating
    water heater on a power controller. Its options are the range's ends ``(0.0, max_w)``: every
    power between them can be taken too (:meth:`clamp_w`).

    Its state is its setpoint, W (a float), or, driven as on/off, a bool (on: ``max_w``).

    Raises:
        ValueError: ``max_w`` not > 0.
    """

    __slots__ = ("max_w",)

    def __init__(self, max_w: float) -> None:
        if not max_w > 0:
            raise ValueError(f"Modulating max_w {max_w} must be > 0 W")
        self.max_w = max_w

    @property
    def min_w(self) -> float:
        return 0.0

    @property
    def options_w(self) -> tuple[float, float]:
        """The range it can take, W, ascending: ``(0, max_w)``, every power between included."""
        return (0.0, self.max_w)

    def clamp_w(self, power_w: float) -> float:
        """``power_w`` brought into the range, W."""
        return min(max(power_w, 0.0), self.max_w)

    def taken_w(self, state: bool | float | None) -> float:
        """W it takes in ``state``: a setpoint (W) clamped to the range; on (True) ``max_w``; off
        (False) or unknown (None) 0, as :meth:`OnOff.taken_w` counts an unknown state."""
        if state is None or state is False:
            return 0.0
        if state is True:
            return self.max_w
        return self.clamp_w(float(state))



class Battery:
    """A home battery behind a power setpoint: it takes up to ``max_charge_w`` (W, >= 0, house
    side +) and supplies up to ``max_discharge_w`` (W, >= 0, given as a magnitude: the setpoint is
    then negative) while its state of charge stays within ``min_soc_pct..max_soc_pct`` (% of
    ``capacity_wh``, Wh > 0).

    Losses: the round-trip ``efficiency`` (0 < efficiency <= 1) is split evenly between the two
    ways, ``eta = sqrt(efficiency)``: charging at ``p`` W for ``dt`` s stores ``p * dt / 3600 * eta``
    Wh; discharging at ``-p`` W draws ``p * dt / 3600 / eta`` Wh from store. So energy taken in
    (``charged_wh``, house side), given out (``discharged_wh``) and the stored energy obey
    ``charged_wh * eta - discharged_wh / eta = stored_wh change``.

    Its options are its range's ends ``(-max_discharge_w, max_charge_w)``; every power between
    them can be set too. Its state is its setpoint, W, as :class:`Modulating`'s.

    Raises:
        ValueError: a parameter out of its range, named with its value.
    """

    __slots__ = ("max_charge_w", "max_discharge_w", "capacity_wh", "min_soc_pct", "max_soc_pct", "efficiency", "eta", "min_wh",
                 "max_wh")

    def __init__(self, max_charge_w: float, max_discharge_w: float, capacity_wh: float, min_soc_pct: float = 10.0,
                 max_soc_pct: float = 100.0, efficiency: float = 0.9) -> None:
        for name, v in (("max_charge_w", max_charge_w), ("max_discharge_w", max_discharge_w)):
            if not v >= 0:
                raise ValueError(f"Battery {name} {v} must be >= 0 W")
        if not capacity_wh > 0:
            raise ValueError(f"Battery capacity_wh {capacity_wh} must be > 0 Wh")
        if not 0.0 <= min_soc_pct < max_soc_pct <= 100.0:
            raise ValueError(f"Battery min_soc_pct {min_soc_pct} and max_soc_pct {max_soc_pct} must satisfy "
                             f"0 <= min < max <= 100")
        if not 0.0 < efficiency <= 1.0:
            raise ValueError(f"Battery efficiency {efficiency} must be in (0, 1]")
        self.max_charge_w = float(max_charge_w)
        self.max_discharge_w = float(max_discharge_w)
        self.capacity_wh = float(capacity_wh)
        self.min_soc_pct = float(min_soc_pct)
        self.max_soc_pct = float(max_soc_pct)
        self.efficiency = float(efficiency)
        self.eta = math.sqrt(self.efficiency)  # one way's efficiency (charge, and discharge)
        self.min_wh = self.capacity_wh * self.min_soc_pct / 100.0  # stored Wh at min_soc_pct
        self.max_wh = self.capacity_wh * self.max_soc_pct / 100.0  # stored Wh at max_soc_pct

    @property
    def min_w(self) -> float:
        return -self.max_discharge_w

    @property
    def max_w(self) -> float:
        return self.max_charge_w

    @property
    def options_w(self) -> tuple[float, float]:
        """The range it can take, W, ascending: ``(-max_discharge_w, max_charge_w)``, every power
        between included (whatever the state of charge: :meth:`range_w` narrows it)."""
        return (-self.max_discharge_w, self.max_charge_w)

    def soc_pct(self, stored_wh: float) -> float:
        """The state of charge, %, of ``stored_wh`` Wh."""
        return 100.0 * stored_wh / self.capacity_wh

    def stored_wh(self, soc_pct: float) -> float:
        """Wh stored at ``soc_pct`` %."""
        return self.capacity_wh * soc_pct / 100.0

    def range_w(self, soc_pct: float, dt_s: float = math.inf) -> tuple[float, float]:
        """(lo, hi), W, the setpoints it can hold for ``dt_s`` s from ``soc_pct`` %: the power
        range narrowed to what the energy left before a SoC limit allows in ``dt_s`` (so 0 at the
        limit itself: no discharge at or below ``min_soc_pct``, no charge at or above
        ``max_soc_pct``). ``lo <= 0 <= hi``."""
        stored = self.capacity_wh * soc_pct / 100.0
        room_wh = self.max_wh - stored     # stored Wh it can still take
        left_wh = stored - self.min_wh     # stored Wh it can still give
        if 0.0 < dt_s < math.inf:
            per_h = 3600.0 / dt_s
            hi = room_wh / self.eta * per_h if room_wh > 0 else 0.0      # house side
            lo = left_wh * self.eta * per_h if left_wh > 0 else 0.0
            if hi > self.max_charge_w:
                hi = self.max_charge_w
            if lo > self.max_discharge_w:
                lo = self.max_discharge_w
        else:
            hi = self.max_charge_w if room_wh > 0 else 0.0
            lo = self.max_discharge_w if left_wh > 0 else 0.0
        return (0.0 - lo, hi)

    def stored_change_wh(self, power_w: float, dt_s: float) -> float:
        """Change of stored Wh over ``dt_s`` s at ``power_w`` W (house side): ``* eta`` charging,
        ``/ eta`` discharging."""
        e = power_w * dt_s / 3600.0
        return e * self.eta if e > 0 else e / self.eta

    def clamp_w(self, power_w: float) -> float:
        """``power_w`` brought into the power range (not the SoC's), W."""
        return min(max(power_w, -self.max_discharge_w), self.max_charge_w)

    def taken_w(self, state: bool | float | None) -> float:
        """W it takes in ``state``: a setpoint (W) clamped to the power range; on (True) full
        charge; off (False) or unknown (None) 0."""
        if state is None or state is False:
            return 0.0
        if state is True:
            return self.max_charge_w
        return self.clamp_w(float(state))

    def _key(self) -> tuple:
        return (self.max_charge_w, self.max_discharge_w, self.capacity_wh, self.min_soc_pct, self.max_soc_pct,
                self.efficiency)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Battery) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(("Battery",) + self._key())

    def __repr__(self) -> str:
        return "Battery(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__[:-3]) + ")"


class EvCharger:
    """An EV charger set in whole amperes per phase (IEC 61851 pilot signal): its options are 0
    (paused) or ``a * phases * voltage_v`` W for every whole ``a`` in ``min_a..max_a`` (A; the
    standard's minimum is 6 A), and only while a car is connected (the caller knows; the kind
    does not). A power between steps is rounded **down** (:meth:`clamp_w`: what gestor may take,
    never more), to 0 below ``min_a``.

    Its state is its setpoint, W (rounded down to a step), or, driven as on/off, a bool (on: the
    top step).

    Raises:
        ValueError: ``min_a`` < 1, ``max_a`` < ``min_a``, ``phases`` not 1 or 3, ``voltage_v`` <= 0.
    """

    __slots__ = ("min_a", "max_a", "phases", "voltage_v")

    def __init__(self, min_a: int = 6, max_a: int = 16, phases: int = 1, voltage_v: float = 230.0) -> None:
        if not 1 <= min_a <= max_a:
            raise ValueError(f"EvCharger min_a {min_a} and max_a {max_a} must satisfy 1 <= min_a <= max_a")
        if phases not in (1, 3):
            raise ValueError(f"EvCharger phases {phases} must be 1 or 3")
        if not voltage_v > 0:
            raise ValueError(f"EvCharger voltage_v {voltage_v} must be > 0 V")
        self.min_a = int(min_a)
        self.max_a = int(max_a)
        self.phases = int(phases)
        self.voltage_v = float(voltage_v)

    @property
    def w_per_a(self) -> float:
        """W per ampere of pilot current: ``phases * voltage_v``."""
        return self.phases * self.voltage_v

    @property
    def min_w(self) -> float:
        return 0.0

    @property
    def max_w(self) -> float:
        """The top step, W."""
        return self.max_a * self.w_per_a

    @property
    def step_min_w(self) -> float:
        """The lowest power it charges at, W (``min_a``)."""
        return self.min_a * self.w_per_a

    @property
    def options_w(self) -> tuple[float, ...]:
        """The powers it can take, W, ascending: 0, then ``min_a..max_a`` A."""
        return (0.0,) + tuple(a * self.w_per_a for a in range(self.min_a, self.max_a + 1))

    def current_a(self, power_w: float) -> int:
        """The pilot current for ``power_w`` W, A: rounded down, 0 below ``min_a``, at most ``max_a``."""
        a = math.floor(power_w / self.w_per_a + 1e-9)  # 1e-9: a step's own power is that step
        if a < self.min_a:
            return 0
        return min(a, self.max_a)

    def clamp_w(self, power_w: float) -> float:
        """``power_w`` rounded down to a step, W (0 below ``min_a``)."""
        return self.current_a(power_w) * self.w_per_a

    def taken_w(self, state: bool | float | None) -> float:
        """W it takes in ``state`` (a car connected): a setpoint rounded down to a step; on (True)
        the top step; off (False) or unknown (None) 0."""
        if state is None or state is False:
            return 0.0
        if state is True:
            return self.max_w
        return self.clamp_w(float(state))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EvCharger) and (other.min_a, other.max_a, other.phases, other.voltage_v) == (
            self.min_a, self.max_a, self.phases, self.voltage_v)

    def __hash__(self) -> int:
        return hash(("EvCharger", self.min_a, self.max_a, self.phases, self.voltage_v))

    def __repr__(self) -> str:
        return f"EvCharger(min_a={self.min_a!r}, max_a={self.max_a!r}, phases={self.phases!r}, voltage_v={self.voltage_v!r})"


# The device kinds the core knows: a union as kinds are added.
DeviceKind = OnOff | Modulating | Battery | EvCharger
