"""What the control core knows of a controllable device: the power it can take now (its options)
and the power it takes in a given state.

Units are W. Sign: positive, the device takes power from the house bus (a load running, a
battery charging); negative, it gives power to the bus (a battery discharging: no kind does yet).

Today every configured device is :class:`OnOff`: a relay that gives a load its rated power or
nothing (a water heater, a pool pump). :class:`Modulating` is a device whose power can be set
anywhere in ``0..max_w`` (a modulating water heater on a power controller), driven by the setpoint
law of :mod:`gestor.core.setpoint` (the simulator, :mod:`gestor.sim.setpoint`, plays it; managing
does not yet). The policies, the guards and the loads' books still decide and count
on/off (``LoadState.on``, ``Wish.on``); a load's kind turns its state into power
(``LoadState.taken_w``). Kinds to come, each with its own options: a range (a battery, from
``-discharge_w`` to ``+charge_w``), or steps (an EV charger, 6 to 16 A times its phases and
voltage). Pure, like the rest of the core.
"""
from __future__ import annotations


class OnOff:
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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OnOff) and other.power_w == self.power_w

    def __hash__(self) -> int:
        return hash(("OnOff", self.power_w))

    def __repr__(self) -> str:
        return f"OnOff({self.power_w!r})"


class Modulating:
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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Modulating) and other.max_w == self.max_w

    def __hash__(self) -> int:
        return hash(("Modulating", self.max_w))

    def __repr__(self) -> str:
        return f"Modulating({self.max_w!r})"


# The device kinds the core knows: a union as kinds are added.
DeviceKind = OnOff | Modulating
