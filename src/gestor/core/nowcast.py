"""The nowcast of the rest of the settlement period (issue 26): what the house is expected to
export, before the managed device, from now to the period's end. Pure, like the rest of the core.

Units: W, s (epoch seconds, UTC). Signs: a surplus is export-positive (DESIGN.md section 2),
``production_w - consumption_w`` without the managed device.

The reasoning. The setpoint law (:mod:`.setpoint`) spreads the banked balance over the time left
assuming the present surplus lasts to the period's end. In the late afternoon it does not: the
sun goes down through the hour, so the present surplus overestimates the rest of the period and
the device ends it importing. The clear-sky production of the installation (its model fitted
from its own history, :mod:`gestor.forecast.pvmodel`, computed outside the core and passed in as
a :class:`ClearSkyProfile` or a tuple of W) says how production falls or rises under a clear sky;
the recent clear-sky index (measured production / clear-sky production over the last minutes,
the median of the ratios: a passing cloud or a glitch moves it little) says how much of it this
sky lets through. So

    expected_surplus_w = index * index_low * mean(clear_sky_ahead_w) - consumption_w

where ``index_low`` (<= 1) is a low quantile of (the index over the rest of the period) / (the
recent index): what clouds may still take, chosen on past data (``benchmarks/nowcast.py``). The
consumption is the caller's estimate of the rest of the period's (the present one, or a recent
median). This is the persistence of the clear-sky index, the usual baseline of intra-hour solar
nowcasting (e.g. Lorenz et al. 2009, "Irradiance forecasting for the power prediction of
grid-connected photovoltaic systems", IEEE JSTARS 2(1)).
"""
from __future__ import annotations

import math
from typing import Sequence
from dataclasses import dataclass

MAX_INDEX = 1.5  # a clear-sky index above this is a fault (of the model or the reading), not a sky


@dataclass(frozen=True)
class ClearSkyProfile:
    """The installation's clear-sky production at regular steps: ``values_w[i]`` W at
    ``start_s + i * step_s`` (epoch s, UTC), linear between steps.

    Raises:
        ValueError: ``step_s`` <= 0, no values, or a value that is negative or not finite.
    """

    start_s: float
    step_s: float
    values_w: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.step_s > 0:
            raise ValueError(f"step_s {self.step_s} must be > 0")
        if not self.values_w:
            raise ValueError("values_w is empty")
        for i, v in enumerate(self.values_w):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"values_w[{i}] {v} must be finite and >= 0")

    @property
    def end_s(self) -> float:
        """The last step's time, epoch s."""
        return self.start_s + (len(self.values_w) - 1) * self.step_s

    def at_w(self, t_s: float) -> float | None:
        """Clear-sky production at epoch ``t_s``, W (linear between steps); None outside the
        profile."""
        x = (t_s - self.start_s) / self.step_s
        n = len(self.values_w)
        if not 0.0 <= x <= n - 1:
            return None
        i = min(int(x), n - 2) if n > 1 else 0
        if n == 1:
            return self.values_w[0]
        f = x - i
        return self.values_w[i] * (1.0 - f) + self.values_w[i + 1] * f

    def ahead_w(self, now_s: float, end_s: float, step_s: float = 60.0) -> tuple[float, ...]:
        """Clear-sky production over ``[now_s, end_s)``, W, at the middles of ``step_s`` slices
        (the last slice may be shorter; its middle is taken): the input of
        :func:`expected_surplus_w`. Empty when ``end_s <= now_s`` or the span leaves the profile."""
        out: list[float] = []
        t = now_s
        while t < end_s:
            mid = (t + min(t + step_s, end_s)) / 2.0
            v = self.at_w(mid)
            if v is None:
                return ()
            out.append(v)
            t += step_s
        return tuple(out)


def clear_sky_index(production_w: Sequence[float], clear_sky_w: Sequence[float],
                    min_clear_sky_w: float = 50.0) -> float | None:
    """The recent clear-sky index: the median of ``production_w[i] / clear_sky_w[i]`` over the
    pairs whose clear-sky production is at least ``min_clear_sky_w`` W (the ratio of two small
    numbers at dawn and dusk says nothing), clamped to ``[0, MAX_INDEX]``.

    Args:
        production_w, clear_sky_w: measured and clear-sky production at the same instants, W
            (same length).
        min_clear_sky_w: the smallest clear-sky production a ratio is taken at, W.
    Returns:
        The index (1: as clear as the model's clear sky), or None when fewer than half the pairs
        (or none) qualify: the caller then has no nowcast (night, dawn, a profile missing).
    Raises:
        ValueError: the sequences differ in length.
    """
    if len(production_w) != len(clear_sky_w):
        raise ValueError(f"production_w has {len(production_w)} values, clear_sky_w {len(clear_sky_w)}")
    ratios = sorted(p / c for p, c in zip(production_w, clear_sky_w)
                    if c >= min_clear_sky_w and p == p)
    if not ratios or 2 * len(ratios) < len(production_w):
        return None
    n = len(ratios)
    med = ratios[n // 2] if n % 2 else (ratios[n // 2 - 1] + ratios[n // 2]) / 2.0
    return min(max(med, 0.0), MAX_INDEX)


def expected_surplus_w(clear_sky_ahead_w: Sequence[float], clear_sky_index: float, consumption_w: float,
                       index_low: float = 1.0) -> float:
    """The expected surplus over the rest of the period, W, mean (module docstring):
    ``clear_sky_index * index_low * mean(clear_sky_ahead_w) - consumption_w``.

    Args:
        clear_sky_ahead_w: clear-sky production at evenly spaced instants over the rest of the
            period, W (:meth:`ClearSkyProfile.ahead_w`); not empty.
        clear_sky_index: the recent clear-sky index (:func:`clear_sky_index`), >= 0.
        consumption_w: the consumption expected over the rest of the period without the managed
            device, W.
        index_low: the low quantile of the index's ratio (rest of the period / recent), in (0, 1].
    Raises:
        ValueError: no clear-sky values, a negative index, or ``index_low`` outside (0, 1].
    """
    if not clear_sky_ahead_w:
        raise ValueError("clear_sky_ahead_w is empty")
    if not clear_sky_index >= 0:
        raise ValueError(f"clear_sky_index {clear_sky_index} must be >= 0")
    if not 0 < index_low <= 1:
        raise ValueError(f"index_low {index_low} must be in (0, 1]")
    mean_w = sum(clear_sky_ahead_w) / len(clear_sky_ahead_w)
    return clear_sky_index * index_low * mean_w - consumption_w
