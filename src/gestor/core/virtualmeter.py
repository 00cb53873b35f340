"""The virtual meter's correction: the grid power a zero-export device is shown so that, by holding
it at zero, the device settles the period's net balance instead of the instant's.

A plug-in battery, a microinverter limiter, an EV charger or a PV diverter regulates its own power
to keep the grid meter it reads at zero. With hourly (or quarter-hourly) net billing the instant's
power is not what is billed: the period's balance is. gestor serves such a device a *virtual*
meter (:mod:`gestor.runtime.virtualmeter`) that shows the real net power corrected by what the
period has banked, spread over the time left:

    virtual_w = net_w + (balance_wh - target_wh) x 3600 / max(remaining_s, min_remaining_s)

clamped to ``[-max_power_w, +max_power_w]``. Signs as everywhere in gestor (DESIGN.md section 2):
``net_w`` is export-positive, ``balance_wh`` is exported minus imported Wh so far this period.

Why it settles the period: a device that holds ``virtual_w`` at 0 makes the real net power
``-(balance_wh - target_wh) x 3600 / remaining_s``, which over the ``remaining_s`` left moves the
balance by exactly ``-(balance_wh - target_wh)`` Wh: the period ends at ``target_wh``. Re-computed
at every read, the correction follows what the house actually does. A period that has banked
export (``balance_wh > target_wh``) makes the device see more export than there is, so a battery
charges (or a diverter heats) with it; one that owes import makes it see import, so a battery
discharges (or a limiter lets the inverter produce) to pay it back.

The bounds: near the period's end ``remaining_s`` goes to 0 and the correction would grow without
limit; ``min_remaining_s`` caps the divisor from below (a balance still open in the last
``min_remaining_s`` is spread over ``min_remaining_s``: part of it is left, rather than a step no
device can follow), and the result is clamped to the connection's ``max_power_w``: no device on
it can move more, and a meter showing more than the connection carries is a broken meter to
the device.

Pure (the control core's rules, ``tests/test_layering.py``): numbers in, numbers out.
"""
from __future__ import annotations

import math
from typing import Sequence

from gestor.core.balance import _trapezoid_wh

DEFAULT_MIN_REMAINING_S = 60.0


def virtual_net_w(net_w: float, balance_wh: float, remaining_s: float, target_wh: float = 0.0,
                  min_remaining_s: float = DEFAULT_MIN_REMAINING_S, max_power_w: float = math.inf) -> float:
    """The power a zero-export device should see, W, export-positive (as ``net_w``).

    ``net_w + (balance_wh - target_wh) x 3600 / max(remaining_s, min_remaining_s)``, clamped to
    ``[-max_power_w, +max_power_w]`` (see the module's docstring for why it settles the period).

    Args:
        net_w: the real net power now, W, export-positive (exported > 0, imported < 0).
        balance_wh: the settlement period's balance so far, Wh, export-positive (banked export > 0).
        remaining_s: seconds left in the period (>= 0; less is taken as 0).
        target_wh: the balance the period should end at, Wh (0: neither export nor import).
        min_remaining_s: the divisor's floor, s (> 0): the correction near the period's end.
        max_power_w: the connection's largest power, W (> 0): the result's bound either way.
    Returns:
        The virtual net power, W, export-positive, within ``±max_power_w``.
    Raises:
        ValueError: a number that is not finite (``max_power_w`` may be ``inf``), or
            ``min_remaining_s``/``max_power_w`` not > 0.
    """
    for name, v in (("net_w", net_w), ("balance_wh", balance_wh), ("remaining_s", remaining_s),
                    ("target_wh", target_wh), ("min_remaining_s", min_remaining_s)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number (got {v})")
    if not min_remaining_s > 0:
        raise ValueError(f"min_remaining_s must be > 0 (got {min_remaining_s})")
    if math.isnan(max_power_w) or not max_power_w > 0:
        raise ValueError(f"max_power_w must be > 0 (got {max_power_w})")
    w = net_w + (balance_wh - target_wh) * 3600.0 / max(remaining_s, min_remaining_s)
    return min(max(w, -max_power_w), max_power_w)


def balance_since(balance_wh: float, from_s: float, samples: Sequence[tuple[float, float]], to_s: float,
                  max_gap_s: float) -> float:
    """A balance known up to ``from_s``, brought up to ``to_s`` with the readings taken since.

    ``balance_wh`` (Wh, export-positive) counts the energy up to epoch ``from_s`` (managing's last
    accounted reading); the readings ``samples`` (epoch s, net W export-positive; oldest first)
    add the trapezoid integral of their net power over ``[from_s, to_s]``, as the control core's
    balance integrates it (:mod:`gestor.core.balance`). Two readings further apart than
    ``max_gap_s`` add nothing between them (nothing is invented for time the meter was not
    seen); nothing is extrapolated past the last reading.
    """
    total = balance_wh
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        if not t0 < t1 or t1 - t0 > max_gap_s:
            continue
        a, b = max(t0, from_s), min(t1, to_s)
        if b > a:
            total += _trapezoid_wh(t0, v0, t1, v1, a, b)
    return total
