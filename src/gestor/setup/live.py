"""Checking the chosen devices live, through the real drivers built from their settings
sections (the same models the settings file is validated with): the meter read for a while
with its power and sign in words, each relay switched on and off with the user watching.

Time is the injected :class:`gestor.clock.Clock`: ``seconds`` of reads ``interval_s`` apart.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers import DriverContext
from drivers.meters import MeterError
from drivers.meters.base import METERS, CheckedMeter, Reading
from drivers.relays import RelayError
from drivers.relays.base import RELAYS
from gestor.clock import Clock
from gestor.runtime.daemon import read_times
from gestor.setup.answers import SetupError

SIGNS = ("import_positive", "export_positive")
CHECK_AUTO_OFF_S = 60.0   # the relay's own timer on the test "on": off by itself a minute later at most


def in_words(net_w: float) -> str:
    """``net_w`` (export-positive, W) as a sentence: "exporting 1.2 kW", "importing 350 W"."""
    size = abs(net_w)
    amount = f"{size / 1000:.1f} kW" if size >= 1000 else f"{size:.0f} W"
    if size < 0.5:
        return "neither importing nor exporting (0 W)"
    return f"{'exporting' if net_w > 0 else 'importing'} {amount}"


def _model(registry: Any, kind: str, section: dict[str, Any]) -> tuple[Any, Any]:
    driver = section.get("driver")
    try:
        model, factory = registry[driver]
    except KeyError:
        raise SetupError(f"{kind} driver {driver!r} is not in this gestor version: update gestor, "
                         "or choose another device") from None
    from pydantic import ValidationError
    try:
        return model.model_validate(section), factory
    except ValidationError as e:
        first = e.errors()[0]
        raise SetupError(f"{kind}.{'.'.join(str(x) for x in first['loc'])}: {first['msg']} "
                         f"(got {str(first.get('input'))[:40]!r})") from None


def read_meter(section: dict[str, Any], clock: Clock, seconds: float, interval_s: float,
               say: Callable[[str], None], run_dir: Path, config_dir: Path) -> list[Reading]:
    """Read the meter ``section`` describes every ``interval_s`` for ``seconds`` (at least one
    read), printing each reading in words; returns the good ones. A failed read is printed as
    such (never a zero). Raises SetupError when the driver is unknown or its section invalid."""
    s, factory = _model(METERS, "meter", section)
    try:
        meter = CheckedMeter(factory(s, DriverContext(clock, run_dir, config_dir)), s.max_abs_power_w,
                             s.counter_resolution_wh)
    except ImportError as e:   # the driver's optional library (install_extra said how to get it)
        raise SetupError(f"the {s.driver} driver needs its library ({e}): install it and run gestor setup again") from None
    n = max(1, math.floor(seconds / interval_s) + 1) if interval_s > 0 else 1
    good: list[Reading] = []
    try:
        for i, r in enumerate(read_times(meter, clock, n, interval_s)):
            if isinstance(r, MeterError):
                say(f"  read {i + 1}: FAILED: {r}")
                continue
            good.append(r)
            say(f"  read {i + 1}: {in_words(r.net_w)} (net {r.net_w:+.0f} W, export-positive)")
    finally:
        meter.close()
    return good


def flipped_sign(section: dict[str, Any]) -> dict[str, Any] | None:
    """``section`` with its ``sign`` turned round, or None when its driver has no ``sign``."""
    model, _ = METERS[section["driver"]]
    if "sign" not in model.model_fields:
        return None
    now = section.get("sign", model.model_fields["sign"].default)
    return {**section, "sign": SIGNS[1 - SIGNS.index(now)] if now in SIGNS else SIGNS[0]}


def switch_relay(section: dict[str, Any], load: str, power_w: float, on: bool, clock: Clock,
                 run_dir: Path, config_dir: Path) -> bool:
    """Switch the relay ``section`` describes on or off (an "on" carries a CHECK_AUTO_OFF_S timer
    where the relay has one) and return its state read back. Raises SetupError with the
    relay's own error."""
    s, factory = _model(RELAYS, f"loads[{load}].relay", section)
    relay = factory(s, DriverContext(clock, run_dir, config_dir), load, power_w)
    try:
        relay.set(on, CHECK_AUTO_OFF_S if on else None)
        return relay.state()
    except RelayError as e:
        raise SetupError(str(e)) from None
    finally:
        relay.close()
