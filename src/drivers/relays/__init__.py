"""Relay drivers. Adding one is one new module here calling :func:`register_relay`."""
import drivers.relays as _self
from drivers import import_all as _import_all
from drivers.relays.base import RELAYS, Relay, RelayError, RelaySettings, register_relay

_import_all(_self)

__all__ = ["RELAYS", "Relay", "RelayError", "RelaySettings", "register_relay"]
