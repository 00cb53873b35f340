"""Relay drivers. Adding one is one new module here calling :func:`register_relay`."""
from drivers.relays.base import RELAYS, Relay, RelayError, RelaySettings, register_relay

__all__ = ["RELAYS", "Relay", "RelayError", "RelaySettings", "register_relay"]
