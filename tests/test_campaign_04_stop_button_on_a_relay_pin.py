"""Finding 04: the stop button's GPIO may be a relay's GPIO; gestor check accepts it and managing
crashes at start.

What happens: ``loads[0].relay: {driver: gpio, pin: GPIO22}`` and
``managing.stop_button_pin: BOARD15`` (the same line, GPIO22, by another of gpiozero's names) are
accepted by the settings (relays are unique among loads, but the button is not checked against
them). managing claims the relay's line, then ``Button("BOARD15")`` raises ``GPIOPinInUse`` out of
``Managing.start``: a traceback, and under systemd a restart loop; the stop button never works.

Class: checked too late (class 7: "GPIO pins parsed by gpiozero's own parser", but one pin is
used twice).
Consequence: managing does not run (loads stay off: safe), the wall stop button is dead, and the
daemon restarts in a loop with a traceback.
Severity: crash.
"""
from __future__ import annotations

import pytest

from gestor.settings import SettingsError
from tests.conftest import make_settings


@pytest.mark.parametrize("button", ["GPIO22", 22, "BOARD15"])
def test_a_stop_button_on_a_relays_gpio_is_refused_by_the_settings(tmp_path, monkeypatch, button):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    loads = [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "gpio", "pin": "GPIO22"}}]
    with pytest.raises(SettingsError) as e:
        make_settings(tmp_path, loads=loads, managing={"stop_button_pin": button})
    assert "stop_button_pin" in str(e.value.errors)
