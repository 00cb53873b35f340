"""A relay on a Raspberry Pi GPIO line, through gpiozero's ``OutputDevice``.

``active_high: true`` (the default) drives the line high to switch the relay on; most opto-isolated
"low-level trigger" relay boards need ``active_high: false``. The line is claimed with the relay
off (``initial_value=False``), so a starting daemon never switches a load on. ``state()`` reads
the line's level back from the pin factory.

Which way it fails: when the process dies, the kernel releases the line and it floats or falls
back to its pull (input); wire the load on the relay's normally-open (NO) contact and use a board
whose input is off when undriven, so a dead Pi leaves the load off. See docs/site/en/safety.md, "GPIO relays".

Tests and machines without GPIO use gpiozero's MockFactory (``GPIOZERO_PIN_FACTORY=mock``).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import field_validator

from drivers import DriverContext
from drivers.relays.base import RelayError, RelaySettings, register_relay

PIN_FORMS = "a BCM number 0-27, or a gpiozero name: GPIO17, BCM17, BOARD11, J8:11, WPI0"


@lru_cache(maxsize=1)
def _header() -> Any:
    """The 40-pin header of every Pi since the B+ (a Pi 3B's), as gpiozero's mock describes it: no
    hardware is touched."""
    from gpiozero.pins.mock import MockFactory
    return MockFactory(revision="a02082").board_info


def gpio_pin(v: Any) -> str:
    """gpiozero's own name (``"GPIO17"``) of a GPIO pin written as gpiozero accepts it: an int
    (BCM), ``"17"``, ``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``, ``"J8:11"``, ``"WPI0"``; parsed by
    gpiozero itself. Raises ValueError naming the forms (also for a pin that is not a GPIO, such as
    ``BOARD1``, 3.3 V)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and len(v) > 16):
        raise ValueError(f"must be a GPIO pin: {PIN_FORMS}")
    try:
        return str(_header().to_gpio(v))
    except ValueError:  # gpiozero's PinInvalidPin
        raise ValueError(f"not a GPIO pin: {PIN_FORMS}") from None


class GpioRelaySettings(RelaySettings):
    driver: Literal["gpio"] = "gpio"
    pin: int | str            # BCM number (17) or a gpiozero pin name ("GPIO17", "BOARD11")
    active_high: bool = True  # False for low-level-trigger relay boards

    @field_validator("pin", mode="before")
    @classmethod
    def _pin(cls, v: Any) -> Any:
        gpio_pin(v)
        return v

    def relay_key(self) -> tuple[Any, ...] | None:
        return ("gpio", gpio_pin(self.pin))

    def relay_label(self) -> str:
        return f"GPIO {self.pin}"


@register_relay("gpio", GpioRelaySettings)
class GpioRelay:
    def __init__(self, s: GpioRelaySettings, ctx: DriverContext, load: str, power_w: float) -> None:
        from gpiozero import GPIOZeroError, OutputDevice
        self.s = s
        self.load = load
        try:
            self.dev = OutputDevice(s.pin, active_high=s.active_high, initial_value=False)
        except (GPIOZeroError, OSError, RuntimeError) as e:
            raise RelayError(f"gpio relay {load}: cannot claim GPIO {s.pin}: {e} "
                             "(held by another process, e.g. managing? user not in group gpio?)") from None

    def set(self, on: bool, auto_off_s: float | None = None) -> None:
        try:
            self.dev.value = bool(on)
        except Exception as e:  # noqa: BLE001  (pin factories raise their own types)
            raise RelayError(f"gpio relay {self.load}: GPIO {self.s.pin}: {e}") from None

    def state(self) -> bool:
        try:
            return bool(self.dev.value)
        except Exception as e:  # noqa: BLE001
            raise RelayError(f"gpio relay {self.load}: GPIO {self.s.pin}: {e}") from None

    def close(self) -> None:
        self.dev.close()
