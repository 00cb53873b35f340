"""The nowcast on a recording (issue 26): the installation's clear-sky model fitted causally, day
by day, from the recording's own past (:func:`causal_profile`), and the callable that
``gestor simulate``'s devices ask each cycle (:class:`ReplayNowcast`, its ``nowcast`` hook), which does
what managing will do with the profile file: the recent clear-sky index over the readings up to
now, the clear-sky production over the rest of the period, :func:`gestor.core.nowcast.expected_surplus_w`.

pvlib, numpy and pandas through :mod:`gestor.forecast.pvmodel`: a program over recordings, never
imported by the daemons.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import date
from typing import Sequence

import numpy as np
import pandas as pd

from gestor.core.nowcast import ClearSkyProfile, clear_sky_index, expected_surplus_w
from gestor.forecast import pvmodel


def local_dates(t_s, tz: str) -> np.ndarray:
    """The local date of each epoch second in ``t_s``."""
    return pd.to_datetime(np.asarray(t_s, dtype=float), unit="s", utc=True).tz_convert(tz).date


def causal_params(t_s: Sequence[float], production_w: Sequence[float], tz: str = "Europe/Madrid",
                  fallback: tuple[Sequence[float], Sequence[float]] | None = None,
                  **fit_kw) -> dict[date, tuple[pvmodel.PVParams | None, str]]:
    """Per local day of the recording, the model fitted on the days before it only (never the
    day itself nor later), and where it came from: ``"past"``; ``"fallback"`` (fitted on
    ``fallback``'s (times, production), e.g. the other recordings of the same site, when the past
    has no clear enough day); ``"none"`` (no model: the day runs without the nowcast)."""
    t = np.asarray(t_s, dtype=float)
    y = np.asarray(production_w, dtype=float)
    days = local_dates(t, tz)
    fb: pvmodel.PVParams | None = None
    fb_done = False
    out: dict[date, tuple[pvmodel.PVParams | None, str]] = {}
    for d in sorted(set(days)):
        past = days < d
        p = pvmodel.fit(t[past], y[past], tz=tz, **fit_kw) if past.any() else None
        if p is not None:
            out[d] = (p, "past")
            continue
        if fallback is not None and not fb_done:
            fb = pvmodel.fit(fallback[0], fallback[1], tz=tz, **fit_kw)
            fb_done = True
        out[d] = (fb, "fallback") if fb is not None else (None, "none")
    return out


def causal_profile(t_s: Sequence[float], params: dict[date, tuple[pvmodel.PVParams | None, str]],
                   tz: str = "Europe/Madrid", step_s: float = 60.0) -> ClearSkyProfile:
    """The clear-sky production over the recording's span at ``step_s`` steps, each local day's
    from that day's model (0 W on a day without one)."""
    t0 = math.floor(float(t_s[0]) / step_s) * step_s
    n = int((float(t_s[-1]) + 3600.0 - t0) // step_s) + 2
    grid = t0 + step_s * np.arange(n)
    days = local_dates(grid, tz)
    vals = np.zeros(n)
    for d in sorted(set(days)):
        p = params.get(d, (None, "none"))[0]
        if p is not None:
            sel = days == d
            vals[sel] = pvmodel.clear_sky_w(p, grid[sel])
    return ClearSkyProfile(t0, step_s, tuple(float(v) for v in vals))


@dataclass
class ReplayNowcast:
    """The nowcast :func:`gestor.sim.simulate.simulate` calls as
    ``nowcast(now_s, period_end_s, surplus_w)``: the surplus expected over the rest of the
    period, W, or None (no index: night, dawn, no model).

    The index is :func:`clear_sky_index` over the recording's production in the last
    ``window_s`` up to ``now_s``; the consumption is the present one (the latest production less
    ``surplus_w``, the present surplus before the device); ``index_low`` as
    :func:`expected_surplus_w`; ``mode`` "min": the smaller of the nowcast and the present surplus
    (the nowcast only ever lowers the device's take), "replace": the nowcast alone.
    """

    t_s: Sequence[float]
    production_w: Sequence[float]
    profile: ClearSkyProfile
    window_s: float = 600.0
    index_low: float = 1.0
    mode: str = "min"
    ahead_step_s: float = 60.0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "replace"):
            raise ValueError(f"mode {self.mode!r} must be 'min' or 'replace'")
        t = np.asarray(self.t_s, dtype=float)
        grid = self.profile.start_s + self.profile.step_s * np.arange(len(self.profile.values_w))
        self._cs = np.interp(t, grid, np.asarray(self.profile.values_w)).tolist()
        self._t = list(self.t_s)
        self._p = list(self.production_w)

    def __call__(self, now_s: float, period_end_s: float, surplus_w: float) -> float | None:
        i = bisect.bisect_right(self._t, now_s)
        j = bisect.bisect_left(self._t, now_s - self.window_s)
        if i <= j:
            return None
        k = clear_sky_index(self._p[j:i], self._cs[j:i])
        if k is None:
            return None
        ahead = self.profile.ahead_w(now_s, period_end_s, self.ahead_step_s)
        if not ahead:
            return None
        prod_now = self._p[i - 1]
        cons_w = (prod_now if prod_now == prod_now else 0.0) - surplus_w
        exp = expected_surplus_w(ahead, k, cons_w, self.index_low)
        return min(exp, surplus_w) if self.mode == "min" else exp
