"""The wall's emergency-stop button on a GPIO line (``managing.stop_button_pin``).

:class:`StopButton` arms the line with gpiozero (imported only here, when a pin is configured: a
managing without a button never loads it) and calls ``on_press()`` in gpiozero's thread at each
press (debounced 50 ms). Its failure mode: a line that cannot be claimed raises gpiozero's error
from the constructor (the settings refuse a pin a relay uses).
"""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("gestor.managing")


class StopButton:
    """The button on GPIO ``pin`` (gpiozero's names: 17, "GPIO17", "BOARD11"...); ``pull_up``:
    the line is pulled up (the button shorts it to ground)."""

    def __init__(self, pin: int | str, pull_up: bool, on_press: Callable[[], None]) -> None:
        from gpiozero import Button
        self._button = Button(pin, pull_up=pull_up, bounce_time=0.05)
        self._button.when_pressed = on_press
        log.info("stop button armed on GPIO %s", pin)

    def close(self) -> None:
        """Release the line."""
        self._button.close()
