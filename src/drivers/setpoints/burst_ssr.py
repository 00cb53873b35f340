"""A resistive heater on a zero-cross solid-state relay driven from a GPIO line in burst fire: a
slow PWM (gpiozero ``PWMOutputDevice``, ``frequency = 1 / period_s``) whose duty is
``setpoint / power_w``. A zero-cross SSR switches only at zero crossings, so it passes whole
mains half-cycles and follows a PWM this slow; the duty is rounded to whole mains cycles
(``mains_hz × period_s`` per period; down, so never more than asked), and the power returned is that rounded duty × ``power_w``.

PWM this slow: gpiozero's lgpio pin factory (the default on Raspberry Pi OS bookworm) passes the
frequency to ``lgpio.tx_pwm``, which accepts 0.1..10000 Hz, hence ``period_s`` 1..10 s. Factories
that round the frequency (pigpio's fixed frequency table) or cannot do PWM are refused when the
device is opened: the frequency read back must be the one asked for.

No device-side timeout: the line stays as driven while the process lives. gestor's idle on exit
and ``stop-loads`` (systemd ExecStopPost) are the guard; when the process dies the kernel
releases the line, so wire the SSR's input with a pull-down (off when undriven), as for the gpio
relay (docs/site/en/safety.md). No power read-back: ``state()`` gives the duty the line is
driven with. Idle: the line off (duty 0).

Tests and machines without GPIO use gpiozero's MockFactory with ``MockPWMPin``.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from drivers import DriverContext
from drivers.relays.gpio import gpio_pin
from drivers.setpoints.base import SetpointError, SetpointSettings, SetpointState, register_setpoint


class BurstSsrSettings(SetpointSettings):
    driver: Literal["burst_ssr"] = "burst_ssr"
    pin: int | str                               # BCM number (18) or a gpiozero pin name ("GPIO18")
    active_high: bool = True
    power_w: float = Field(gt=0, le=12000)       # the heater's rated power, W
    period_s: float = Field(2.0, ge=1, le=10)    # burst period, s
    mains_hz: Literal[50, 60] = 50

    @field_validator("pin", mode="before")
    @classmethod
    def _pin(cls, v: Any) -> Any:
        gpio_pin(v)
        return v

    def device_key(self) -> tuple:
        """Its GPIO line: the same key as a GPIO relay's on that line."""
        return ("gpio", gpio_pin(self.pin))

    def device_label(self) -> str:
        return f"GPIO {self.pin}"


@register_setpoint("burst_ssr", BurstSsrSettings)
class BurstSsr:
    hold_s: float | None = None
    refresh_on_cycle = False

    def __init__(self, s: BurstSsrSettings, ctx: DriverContext, name: str) -> None:
        from gpiozero import GPIOZeroError, PWMOutputDevice
        self.s = s
        self.label = f"burst_ssr {name} GPIO {s.pin}"
        self.cycles = round(s.mains_hz * s.period_s)   # mains cycles a period
        hz = 1.0 / s.period_s
        try:
            self.dev = PWMOutputDevice(s.pin, active_high=s.active_high, initial_value=0, frequency=hz)
        except (GPIOZeroError, OSError, RuntimeError) as e:
            raise SetpointError(f"{self.label}: cannot drive a PWM on it: {e} (held by another process? "
                                "a pin factory without PWM?)") from None
        got = self.dev.frequency
        if not got or abs(got - hz) > 0.01 * hz:
            self.dev.close()
            raise SetpointError(f"{self.label}: the pin factory runs the PWM at {got} Hz, not {hz:g} Hz; "
                                "use gpiozero's lgpio factory (GPIOZERO_PIN_FACTORY=lgpio)")

    def _drive(self, duty: float) -> None:
        try:
            self.dev.value = duty
        except Exception as e:  # noqa: BLE001  (pin factories raise their own types)
            raise SetpointError(f"{self.label}: {e}") from None

    def set_power_w(self, power_w: float, hold_s: float | None = None) -> float:
        share = min(max(power_w / self.s.power_w, 0.0), 1.0) if power_w == power_w else 0.0
        duty = math.floor(share * self.cycles + 1e-9) / self.cycles   # whole cycles, never more
        self._drive(duty)
        return duty * self.s.power_w

    def idle(self) -> None:
        self._drive(0.0)

    def state(self) -> SetpointState:
        try:
            duty = float(self.dev.value)
        except Exception as e:  # noqa: BLE001
            raise SetpointError(f"{self.label}: {e}") from None
        return SetpointState(setpoint_w=duty * self.s.power_w, power_w=None, min_w=0.0, max_w=self.s.power_w)

    def close(self) -> None:
        self.dev.close()
