"""The relay interface: switch a load and read its state back from the device."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from drivers import Registry
from drivers.commandsettings import CommandSettings

if TYPE_CHECKING:
    from drivers import DriverContext


class RelayError(Exception):
    """The relay did not answer, or its read-back state disagrees. The message says which."""


class Relay(Protocol):
    def set(self, on: bool, auto_off_s: float | None = None) -> None:
        """Command the relay. ``auto_off_s``: device-side timer after which it switches itself
        off (a dead-man switch), where the device supports one. Raises RelayError."""

    def state(self) -> bool:
        """The state read back from the device. Raises RelayError."""

    def close(self) -> None: ...


class RelaySettings(CommandSettings):
    """Base of every relay driver's settings; ``driver`` selects the driver."""

    def relay_key(self) -> tuple[Any, ...] | None:
        """What identifies the device output this relay switches (two loads on one output would
        switch each other): equal keys are the same relay. None: nothing another load could share."""
        return None

    def relay_label(self) -> str:
        """The relay in a few words, for error lines."""
        return self.driver


# A relay that reads off is not believed while its own meter (a Shelly's apower) still shows the
# load drawing more than this share of its rated power (at least DRAWING_MIN_W).
DRAWING_SHARE = 0.25
DRAWING_MIN_W = 20.0


def still_drawing_w(relay: Any, power_w: float) -> float | None:
    """W that ``relay``'s own meter (``measured_power_w``, set by its last read-back) shows the
    load drawing although it reads off, or None (no meter, or not drawing). Used by managing and
    stop-loads alike: an "off" it contradicts is not confirmed."""
    drawn = getattr(relay, "measured_power_w", None)
    if isinstance(drawn, (int, float)) and drawn > max(DRAWING_SHARE * power_w, DRAWING_MIN_W):
        return float(drawn)
    return None


def confirm_off_drawing_w(relay: Any, power_w: float, reads: int = 3, wait_s: float = 1.0) -> float | None:
    """After an "off" that read back off: W the relay's own meter still shows, read again up to
    ``reads`` times ``wait_s`` apart (a Shelly's power reading lags its output by about a second),
    or None once it shows none. Raises RelayError as ``relay.state()``; a read that says on
    again returns ``inf`` (the caller's read-back decides)."""
    import time
    drawn = still_drawing_w(relay, power_w)
    for _ in range(reads - 1):
        if drawn is None:
            return None
        time.sleep(wait_s)
        if relay.state():
            return float("inf")
        drawn = still_drawing_w(relay, power_w)
    return drawn


RelayFactory = Callable[[Any, "DriverContext", str, float], Relay]
# name → (settings model, factory); each driver module registers itself when first asked for
RELAYS: dict[str, tuple[type[RelaySettings], RelayFactory]] = Registry("drivers.relays", [str(Path(__file__).parent)])


def register_relay(name: str, settings_model: type[RelaySettings]) -> Callable[[RelayFactory], RelayFactory]:
    """Class decorator: register a relay driver under ``driver: name``.
    The factory is called as ``factory(settings, context, load_name, load_power_w)``."""

    def deco(factory: RelayFactory) -> RelayFactory:
        RELAYS[name] = (settings_model, factory)
        return factory

    return deco
