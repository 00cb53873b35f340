"""What the control core knows of a controllable device: the power it can take now (its options)
and the power it takes in a given state.

Units are W. Sign: positive, the device takes power from the house bus (a load running, a
battery charging); negative, it gives power to the bus (a battery discharging: no kind does yet).

Today every device is :class:`OnOff`: a relay that gives a load its rated power or nothing (a
water heater, a pool pump). The policies, the guards and the loads' books still decide and count
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


# The device kinds the core knows: a union as kinds are added.
DeviceKind = OnOff
