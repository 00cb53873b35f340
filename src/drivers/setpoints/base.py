"""The setpoint device interface: a device whose power gestor sets (a home battery, an EV charger,
a modulating heater), and reads back.

Signs (DESIGN.md section 2, from the house's side): a setpoint's ``power_w`` is positive when the
device **takes** power from the house's bus (a battery charging, a charger charging a car, a
heater heating) and negative when it **supplies** power to it (a battery discharging). So a device
taking ``p`` W lowers the grid's ``net_w`` by ``p``.

Safety: :meth:`SetpointDevice.idle` returns the device to its own idle (0 W, a battery's own
self-consumption mode, a charger paused) and is what managing's exit, a stale meter, the stop
latch and ``stop-loads`` call. ``hold_s`` in :meth:`SetpointDevice.set_power_w` is the device-side
timeout after which the device returns to idle by itself when gestor stops refreshing the
setpoint (where the device has one: Victron's ESS, my-PV's); gestor refreshes before it ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from drivers import Registry
from drivers.commandsettings import CommandSettings

if TYPE_CHECKING:
    from drivers import DriverContext


class SetpointError(Exception):
    """The device did not answer, refused the setpoint, or read back something else. The message
    says which; the device's state is then unknown (gestor sends it to idle and retries)."""


@dataclass(frozen=True)
class SetpointState:
    """What a setpoint device reads back.

    Attributes:
        setpoint_w: the setpoint the device holds now, W (house's side: + takes, - supplies); 0 idle.
        power_w: the power it measures itself taking now, W, if it measures it.
        min_w, max_w: the range it can be set to now, W (a battery: -discharge..+charge, narrowed by
            its state of charge; an EV charger: 0 when no car is connected).
        soc_pct: a battery's state of charge, %, if known.
        connected: an EV charger: whether a car is plugged in; None for other devices.
    """

    setpoint_w: float
    power_w: float | None
    min_w: float
    max_w: float
    soc_pct: float | None = None
    connected: bool | None = None


class SetpointDevice(Protocol):
    def set_power_w(self, power_w: float, hold_s: float | None = None) -> float:
        """Set the device to take ``power_w`` W (house's side), clamped to what it accepts (its
        range, its steps: an EV charger's whole amperes). ``hold_s``: the device-side timeout
        after which it returns to idle by itself, where it has one. Returns the setpoint it was
        given, W. Raises SetpointError."""

    def idle(self) -> None:
        """Back to the device's own idle (0 W, self-consumption mode, charger paused). Raises
        SetpointError."""

    def state(self) -> SetpointState:
        """Read the device back. Raises SetpointError."""

    def close(self) -> None: ...


class SetpointSettings(CommandSettings):
    """Base of every setpoint driver's settings; ``driver`` selects the driver."""

    def device_key(self) -> tuple[Any, ...] | None:
        """What identifies the device this section drives (two setpoint devices on one battery or
        charger would fight over its setpoint): equal keys are the same device, as
        :meth:`drivers.relays.base.RelaySettings.relay_key` for relays (a burst SSR's GPIO key is
        a GPIO relay's). None: nothing another section could share."""
        return None

    def device_label(self) -> str:
        """The device in a few words, for error lines."""
        return self.driver


SetpointFactory = Callable[[Any, "DriverContext", str], SetpointDevice]
# name → (settings model, factory); each driver module registers itself when first asked for
SETPOINTS: dict[str, tuple[type[SetpointSettings], SetpointFactory]] = Registry(
    "drivers.setpoints", [str(Path(__file__).parent)])


def register_setpoint(name: str, settings_model: type[SetpointSettings]) -> Callable[[SetpointFactory], SetpointFactory]:
    """Class decorator: register a setpoint driver under ``driver: name``.
    The factory is called as ``factory(settings, context, device_name)``."""

    def deco(factory: SetpointFactory) -> SetpointFactory:
        SETPOINTS[name] = (settings_model, factory)
        return factory

    return deco
