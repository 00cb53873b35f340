"""The meter interface: one :class:`Reading` per read, or a :class:`MeterError`; never zeros
instead of a failed read.

Signs (DESIGN.md section 2): ``net_w`` is power at the grid connection, export-positive,
``net_w = production_w - consumption_w``. Drivers convert from their meter's convention once.
"""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers import Registry
# the domain's reading and its counter bounds live in the control core (re-exported here for drivers)
from gestor.core.reading import (COUNTER_RESOLUTIONS, COUNTER_SLACK, COUNTER_SLACK_WH, MeterError, Reading,
                                 max_counter_step_wh)

__all__ = ["COUNTER_SLACK", "COUNTER_SLACK_WH", "CheckedMeter", "FROZEN_AFTER_S", "METERS", "Meter", "MeterError",
           "MeterFrozen", "MeterSettings", "Reading", "check_plausible", "max_counter_step_wh", "register_meter"]

if TYPE_CHECKING:
    from drivers import DriverContext


class Meter(Protocol):
    def read(self) -> Reading:
        """Read the meter now. Raises MeterError on any failure."""

    def close(self) -> None: ...


class MeterSettings(BaseModel):
    """Base of every meter driver's settings; ``driver`` selects the driver.

    ``frozen_after_s``: a meter whose readings (power and counters) stay identical for longer than
    this is frozen (a cached value in a Shelly or an inverter's dongle): its readings are missing
    ones, so the meter goes stale (:class:`CheckedMeter`). None: the larger of
    ``FROZEN_AFTER_S`` and 3 monitoring intervals (:meth:`frozen_s`).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    driver: str
    max_abs_power_w: float = Field(50_000.0, gt=0, le=1_000_000)  # readings beyond this are implausible (MeterError)
    frozen_after_s: float | None = Field(None, ge=10, le=3600)    # identical readings this long: frozen, s

    @property
    def counter_resolution_wh(self) -> float:
        """The smallest step of this meter's energy counters, Wh: what the counters' tolerances
        are made of (a few of it; :func:`gestor.core.balance.agreement_wh`). Each driver declares
        its own; this base value, 100 Wh, is the coarsest in use (tenths of a kWh)."""
        return COUNTER_SLACK_WH

    @model_validator(mode="after")
    def _library(self) -> "MeterSettings":
        """A driver on an optional library (:mod:`drivers.extras`) that is not installed is a
        settings error, before anything starts, naming the package and the command that adds it."""
        from drivers import extras
        extras.require(self.driver)
        return self

    def frozen_s(self, monitoring_interval_s: float) -> float:
        """Readings identical for longer than this are frozen, s: ``frozen_after_s``, else the
        larger of ``FROZEN_AFTER_S`` and 3 x ``monitoring_interval_s``."""
        if self.frozen_after_s is not None:
            return self.frozen_after_s
        return max(FROZEN_AFTER_S, 3.0 * monitoring_interval_s)


# The default bound on identical readings, s. In the nine real recordings of shared/data (10 s
# samples, ~360,000 rows) the longest run of identical (production, consumption) or net power is
# 20 s (winter file, 2022-02-04 17:30); 60 s is three times that, and as long as a silent meter
# takes to go stale (managing.stale_after_s).
FROZEN_AFTER_S = 60.0

MeterFactory = Callable[[Any, "DriverContext"], Meter]
# name → (settings model, factory); each driver module registers itself when first asked for
METERS: dict[str, tuple[type[MeterSettings], MeterFactory]] = Registry("drivers.meters", [str(Path(__file__).parent)])


def register_meter(name: str, settings_model: type[MeterSettings]) -> Callable[[MeterFactory], MeterFactory]:
    """Class decorator: register a meter driver under ``driver: name``."""

    def deco(factory: MeterFactory) -> MeterFactory:
        METERS[name] = (settings_model, factory)
        return factory

    return deco


def check_plausible(reading: Reading, max_abs_power_w: float) -> Reading:
    """Raise MeterError if any power in ``reading`` is beyond ``max_abs_power_w``."""
    for name in ("net_w", "production_w", "consumption_w"):
        v = getattr(reading, name)
        if v is not None and abs(v) > max_abs_power_w:
            raise MeterError(f"{name}={v:.0f} W is beyond max_abs_power_w={max_abs_power_w:.0f} W")
    return reading


class MeterFrozen(MeterError):
    """The meter answers, but what it answers is frozen (:class:`CheckedMeter`): a missing reading.
    ``since``: when the frozen values were first read; the readings after it were repeats, not
    new readings."""

    def __init__(self, message: str, since: datetime) -> None:
        super().__init__(message)
        self.since = since


_Values = tuple[float, float | None, float | None, float | None, float | None]


def _values(r: Reading) -> _Values:
    return (r.net_w, r.production_w, r.consumption_w, r.import_wh_total, r.export_wh_total)


class CheckedMeter:
    """Wraps any driver: every reading passes :func:`check_plausible`, and each energy counter must
    neither go backwards nor rise faster than the connection can carry (:func:`max_counter_step_wh`
    over the time since the last reading, ``max_abs_power_w``, ``counter_resolution_wh``). Either
    is a failed read (MeterError) and the value becomes the new baseline: a one-off glitch costs
    two failed reads (the glitch, and the step back from it); a replaced or reset meter is accepted
    from the next read on (the balance handles the step, and bounds it the same way).

    A frozen meter (issue 32: a Shelly or an inverter's dongle answering a cached value) is a failed
    read too, :class:`MeterFrozen`, until its readings move again: readings identical in every
    value (power and counters) for longer than ``frozen_after_s`` (by their own times), or counters
    that stand still that long while the power says more than ``COUNTER_RESOLUTIONS`` x
    ``counter_resolution_wh`` went through the connection (|net_w| integrated over the intervals
    whose two readings have the same sign: a meter's import plus export counters advance at least
    that much; the time bound spares a meter that refreshes its counters only now and then)."""

    def __init__(self, meter: Meter, max_abs_power_w: float, counter_resolution_wh: float = COUNTER_SLACK_WH,
                 frozen_after_s: float = math.inf) -> None:
        self.meter = meter
        self.max_abs_power_w = max_abs_power_w
        self.counter_resolution_wh = counter_resolution_wh
        self.frozen_after_s = frozen_after_s
        self._last: dict[str, float] = {}
        self._last_at: dict[str, datetime] = {}
        self._run: tuple[_Values, datetime] | None = None   # the identical readings: their values, since
        self._counters: tuple[float, float, datetime] | None = None  # the counters as they stand, since
        self._flow_wh = 0.0                                  # |net_w| integrated since the counters moved
        self._prev: tuple[datetime, float] | None = None     # the last reading's time and net_w

    def baseline(self, reading: Reading) -> None:
        """Take ``reading``'s counters as the last seen, and its values as the last read (monitoring's
        resume after a restart: a meter frozen across it is caught as such)."""
        for name in ("import_wh_total", "export_wh_total"):
            v = getattr(reading, name)
            if v is not None:
                self._last[name], self._last_at[name] = v, reading.at
        self._run = (_values(reading), reading.at)

    def read(self) -> Reading:
        try:
            r = check_plausible(self.meter.read(), self.max_abs_power_w)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            # a driver that missed a malformed answer: still a failed read, never a crash
            raise MeterError(f"malformed answer from the meter ({type(e).__name__}: {str(e)[:120]})") from None
        bad = []
        for name in ("import_wh_total", "export_wh_total"):
            v = getattr(r, name)
            if v is None:
                continue
            if v < 0:  # an energy counter counts up from 0 (a register map's sign: -1 on it is wrong)
                bad.append(f"{name} is negative ({v:.1f} Wh): a counter counts up from 0")
                continue
            last, last_at = self._last.get(name), self._last_at.get(name)
            self._last[name], self._last_at[name] = v, r.at
            if last is None or last_at is None:
                continue
            if v < last:
                bad.append(f"{name} went backwards ({last:.1f} → {v:.1f} Wh)")
                continue
            elapsed_s = (r.at - last_at).total_seconds()
            limit = max_counter_step_wh(self.max_abs_power_w, elapsed_s, self.counter_resolution_wh)
            if v - last > limit:
                bad.append(f"{name} rose {v - last:.1f} Wh in {elapsed_s:.1f} s: more than "
                           f"max_abs_power_w={self.max_abs_power_w:.0f} W can carry ({limit:.1f} Wh)")
        if bad:
            raise MeterError("; ".join(bad))
        self._check_frozen(r)
        return r

    def _check_frozen(self, r: Reading) -> None:
        """Raise :class:`MeterFrozen` when ``r`` is frozen (see the class)."""
        values = _values(r)
        if self._run is None or values != self._run[0] or r.at < self._run[1]:
            self._run = (values, r.at)
        elif (r.at - self._run[1]).total_seconds() > self.frozen_after_s:
            since = self._run[1]
            raise MeterFrozen(f"meter frozen: the same reading (net_w {r.net_w:.1f} W"
                              + ("" if r.import_wh_total is None else
                                 f", counters {r.import_wh_total:.1f}/{r.export_wh_total:.1f} Wh")
                              + f") for {(r.at - since).total_seconds():.0f} s, more than meter.frozen_after_s "
                              f"= {self.frozen_after_s:g} s (a cached value?)", since)
        prev, self._prev = self._prev, (r.at, r.net_w)
        imp, exp = r.import_wh_total, r.export_wh_total
        if imp is None or exp is None or prev is None or r.at < prev[0]:
            self._counters, self._flow_wh = (None if imp is None or exp is None else (imp, exp, r.at)), 0.0
            return
        c = self._counters
        if c is None or (imp, exp) != (c[0], c[1]) or r.at < c[2]:
            self._counters, self._flow_wh = (imp, exp, r.at), 0.0
            return
        if (prev[1] > 0) == (r.net_w > 0):  # no zero crossing: |net_w| is at least this (trapezoid)
            self._flow_wh += (abs(prev[1]) + abs(r.net_w)) / 2.0 * (r.at - prev[0]).total_seconds() / 3600.0
        limit_wh = COUNTER_RESOLUTIONS * self.counter_resolution_wh
        if self._flow_wh > limit_wh and (r.at - c[2]).total_seconds() > self.frozen_after_s:
            raise MeterFrozen(f"meter's counters stuck: import_wh_total {imp:.1f} Wh and export_wh_total {exp:.1f} Wh "
                              f"unchanged for {(r.at - c[2]).total_seconds():.0f} s while its power put "
                              f"{self._flow_wh:.0f} Wh through the connection (more than {COUNTER_RESOLUTIONS:g} x "
                              f"their resolution of {self.counter_resolution_wh:g} Wh)", c[2])

    def close(self) -> None:
        self.meter.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.meter, name)


def import_extra(module: str, extra: str, driver: str) -> Any:
    """Import the optional library ``module`` of meter ``driver`` (installed by the extra
    ``extra``), or raise MeterError saying how to install it: a driver whose library is missing
    fails every read with that sentence (the daemon keeps running; managing sees a stale meter)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        from drivers.extras import INSTALL_HINT
        raise MeterError(f"driver {driver} needs the Python library {module!r}, which is not installed "
                         f"({e.msg}): run {INSTALL_HINT.format(extra=extra)} in gestor's source folder") from None
