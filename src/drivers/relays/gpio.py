"""A relay on a Raspberry Pi GPIO line, through gpiozero's ``OutputDevice``.

``active_high: true`` (the default) drives the line high to switch the relay on; most opto-isolated
"low-level trigger" relay boards need ``active_high: false``. The line is claimed with the relay
off (``initial_value=False``), so a starting daemon never switches a load on. ``state()`` reads
the line's level back from the pin factory.

Which way it fails: when the process dies, the kernel releases the line and it floats or falls
back to its pull (input); wire the load on the relay's normally-open (NO) contact and use a board
whose input is off when undriven, so a dead Pi leaves the load off. See README "Wiring and safety".

Tests and machines without GPIO use gpiozero's MockFactory (``GPIOZERO_PIN_FACTORY=mock``).
"""
from __future__ import annotations

from typing import Literal

from drivers import DriverContext
from drivers.relays.base import RelayError, RelaySettings, register_relay


class GpioRelaySettings(RelaySettings):
    driver: Literal["gpio"] = "gpio"
    pin: int | str            # BCM number (17) or a gpiozero pin name ("GPIO17", "BOARD11")
    active_high: bool = True  # False for low-level-trigger relay boards


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
