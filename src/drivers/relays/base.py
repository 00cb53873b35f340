"""The relay interface: switch a load and read its state back from the device."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict, Field

from drivers import Registry

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


class RelaySettings(BaseModel):
    """Base of every relay driver's settings; ``driver`` selects the driver."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    driver: str
    timeout_s: float = Field(3.0, gt=0, le=20)  # total time for one command or read-back, s

    def relay_key(self) -> tuple[Any, ...] | None:
        """What identifies the device output this relay switches (two loads on one output would
        switch each other): equal keys are the same relay. None: nothing another load could share."""
        return None

    def relay_label(self) -> str:
        """The relay in a few words, for error lines."""
        return self.driver


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
