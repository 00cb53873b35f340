"""Setpoint device drivers (batteries, EV chargers, modulating heaters). Adding one is one new
module here calling :func:`register_setpoint`."""
from drivers.setpoints.base import (SETPOINTS, SetpointDevice, SetpointError, SetpointSettings, SetpointState,
                                    register_setpoint)

__all__ = ["SETPOINTS", "SetpointDevice", "SetpointError", "SetpointSettings", "SetpointState", "register_setpoint"]
