"""Meter drivers. Adding a meter family is one new module here that calls
:func:`drivers.meters.base.register_meter`."""
import drivers.meters as _self
from drivers import import_all as _import_all
from drivers.meters.base import METERS, Meter, MeterError, MeterSettings, Reading, register_meter

_import_all(_self)

__all__ = ["METERS", "Meter", "MeterError", "MeterSettings", "Reading", "register_meter"]
