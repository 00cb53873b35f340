"""Meter drivers. Adding a meter family is one new module here that calls
:func:`drivers.meters.base.register_meter`."""
from drivers.meters.base import METERS, Meter, MeterError, MeterSettings, Reading, register_meter

__all__ = ["METERS", "Meter", "MeterError", "MeterSettings", "Reading", "register_meter"]
