"""The installation's clear-sky production, fitted from its own production history (issue 26).
pvlib, pandas, numpy and scipy: imported only by the commands and benchmarks that fit a model or
write a profile, never by the daemons (they read the profile, :mod:`.profile`).

The model (all pvlib):

- the sun's position, :func:`pvlib.solarposition.get_solarposition` (NREL SPA, numpy);
- the clear-sky irradiance, Ineichen-Perez (:meth:`pvlib.location.Location.get_clearsky`,
  ``model="ineichen"``) with the climatological monthly Linke turbidity of the SoDa tables that
  pvlib ships (:func:`pvlib.clearsky.lookup_linke_turbidity`, offline);
- transposed to the plane of array (``tilt_deg``, ``azimuth_deg``: 180 south, 90 east) with the
  isotropic sky (:func:`pvlib.irradiance.get_total_irradiance`, ``model="isotropic"``, ground
  albedo 0.2), the beam through the Fresnel/Snell incidence-angle modifier
  (:func:`pvlib.iam.physical`);
- the cell temperature by Faiman (:func:`pvlib.temperature.faiman`, ``temp_air_c``, 1 m/s wind)
  and a power temperature coefficient ``gamma_per_k`` (PVWatts' -0.4 %/K);
- the beam cut when the sun is lower than ``horizon_east_deg`` (morning) or ``horizon_west_deg``
  (afternoon): a hill, a roof or a tree on the horizon;
- ``peak_w`` W at 1000 W/m2 effective and 25 C (the DC peak times the system's losses, as fitted),
  limited to ``clip_w`` (the inverter's AC limit, from the history's largest 5-min mean).

The fit (:func:`fit`): the history's production in 5-min means; its clearest days (the smallest
total variation of the day's curve against twice its maximum: a clear day's bell goes up once and
down once; at least 5 h of daylight recorded); a grid over tilt (0-60 deg by 5) and azimuth (90-270
deg by 10) with the peak by least squares at each; then :func:`scipy.optimize.least_squares` from the
best node with a robust loss (``soft_l1``: a passing cloud on a clear day weighs little), twice
more on the bins within 10 % of the previous fit (the clear ones: clouds only take, so the fit
follows the upper envelope; the usual clear-sky detection, simplified). With
fewer than ``min_fit_hours`` of clear daylight the orientation is not fitted (``tilt_deg``,
``azimuth_deg`` as given) and only the peak is. Last, each side's horizon (0-25 deg by 1) on the
clear days' every daylight bin.

Location: the recordings do not give it (shared/data/README.md); the house is the bachelor's
thesis author's (UPC Manresa): :data:`MANRESA` (41.73 N, 1.83 E, 240 m) is the default for both
sites. A longitude error moves the model's solar noon (4 min per degree), which the fitted azimuth
partly absorbs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pvlib

from gestor.core.nowcast import ClearSkyProfile

MANRESA = (41.73, 1.83, 240.0)  # latitude deg N, longitude deg E, altitude m
BIN_S = 300.0


@dataclass(frozen=True)
class PVParams:
    """An installation's clear-sky model (module docstring). Degrees, W, C."""

    latitude_deg: float = MANRESA[0]
    longitude_deg: float = MANRESA[1]
    altitude_m: float = MANRESA[2]
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0
    peak_w: float = 1000.0
    clip_w: float = math.inf
    temp_air_c: float = 20.0
    gamma_per_k: float = -0.004
    albedo: float = 0.2
    horizon_east_deg: float = 0.0
    horizon_west_deg: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready (``clip_w`` inf as None)."""
        d = asdict(self)
        if not math.isfinite(d["clip_w"]):
            d["clip_w"] = None
        return d


@dataclass(frozen=True)
class Sky:
    """The sun and the clear sky at some instants (what a refit of the orientation reuses):
    arrays of the same length; zenith and azimuth deg, irradiances W/m2."""

    times_s: np.ndarray
    zenith: np.ndarray
    azimuth: np.ndarray
    dni: np.ndarray
    ghi: np.ndarray
    dhi: np.ndarray


def sky(times_s, latitude_deg: float, longitude_deg: float, altitude_m: float = 0.0) -> Sky:
    """Solar position and Ineichen clear-sky irradiance at epoch ``times_s`` (UTC s, array-like)."""
    t = np.asarray(times_s, dtype=float)
    idx = pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True))
    loc = pvlib.location.Location(latitude_deg, longitude_deg, altitude=altitude_m)
    sp = loc.get_solarposition(idx)
    cs = loc.get_clearsky(idx, model="ineichen", solar_position=sp)
    return Sky(t, sp["apparent_zenith"].to_numpy(), sp["azimuth"].to_numpy(), cs["dni"].to_numpy(),
               cs["ghi"].to_numpy(), cs["dhi"].to_numpy())


def power_w(sk: Sky, p: PVParams) -> np.ndarray:
    """The clear-sky AC production at ``sk``'s instants, W (module docstring), >= 0."""
    poa = pvlib.irradiance.get_total_irradiance(p.tilt_deg, p.azimuth_deg, sk.zenith, sk.azimuth, sk.dni,
                                                sk.ghi, sk.dhi, albedo=p.albedo, model="isotropic")
    aoi = pvlib.irradiance.aoi(p.tilt_deg, p.azimuth_deg, sk.zenith, sk.azimuth)
    beam = np.nan_to_num(np.asarray(poa["poa_direct"], dtype=float)) * np.nan_to_num(pvlib.iam.physical(aoi))
    horizon = np.where(sk.azimuth < 180.0, p.horizon_east_deg, p.horizon_west_deg)
    beam = np.where(90.0 - sk.zenith < horizon, 0.0, beam)  # the sun behind a hill, a roof, a tree
    eff = np.clip(beam + np.nan_to_num(np.asarray(poa["poa_diffuse"], dtype=float)), 0.0, None)
    tcell = pvlib.temperature.faiman(eff, p.temp_air_c, 1.0)
    out = p.peak_w * eff / 1000.0 * (1.0 + p.gamma_per_k * (tcell - 25.0))
    out[sk.zenith >= 90.0] = 0.0
    return np.clip(out, 0.0, p.clip_w)


def clear_sky_w(p: PVParams, times_s) -> np.ndarray:
    """The clear-sky production of ``p`` at epoch ``times_s`` (UTC s), W."""
    return power_w(sky(times_s, p.latitude_deg, p.longitude_deg, p.altitude_m), p)


def bins(t_s, production_w, bin_s: float = BIN_S, min_fill: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Production in ``bin_s`` means: (bin middles epoch s, mean W), bins with at least
    ``min_fill`` of their 10-s samples only (NaN samples dropped; negative night readings to 0)."""
    t = np.asarray(t_s, dtype=float)
    y = np.asarray(production_w, dtype=float)
    ok = np.isfinite(y) & np.isfinite(t)
    t, y = t[ok], np.clip(y[ok], 0.0, None)
    if not len(t):
        return np.empty(0), np.empty(0)
    k = np.floor(t / bin_s).astype(np.int64)
    uk, inv, cnt = np.unique(k, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=y)
    keep = cnt >= min_fill * bin_s / 10.0
    return (uk[keep] + 0.5) * bin_s, sums[keep] / cnt[keep]


def clearest_days(tb: np.ndarray, yb: np.ndarray, tz: str = "Europe/Madrid", max_days: int = 4,
                  max_ratio: float = 3.0, min_daylight_h: float = 5.0) -> list:
    """The local dates of the clearest days in binned production (:func:`bins`), clearest first:
    total variation / (2 * max) at most ``max_ratio`` (1 for a clear day's bell), at least ``min_daylight_h`` of bins above
    5 % of the day's maximum; at most ``max_days``."""
    if not len(tb):
        return []
    days = pd.to_datetime(tb, unit="s", utc=True).tz_convert(tz).date
    out = []
    for d in sorted(set(days)):
        y = yb[days == d]
        tt = tb[days == d]
        mx = y.max() if len(y) else 0.0
        if mx <= 0 or np.sum(y > 0.05 * mx) * BIN_S / 3600.0 < min_daylight_h:
            continue
        gap = np.diff(tt) > 1.5 * BIN_S  # a gap breaks the curve: its jump is not counted
        tv = float(np.sum(np.abs(np.diff(y))[~gap]))
        r = tv / (2.0 * mx)
        if r <= max_ratio:
            out.append((r, d))
    return [d for _, d in sorted(out)[:max_days]]


def fit(t_s, production_w, latitude_deg: float = MANRESA[0], longitude_deg: float = MANRESA[1],
        altitude_m: float = MANRESA[2], tz: str = "Europe/Madrid", max_days: int = 4,
        min_fit_hours: float = 12.0, default: PVParams | None = None) -> PVParams | None:
    """Fit tilt, azimuth and peak (and take the clip) from a production history (module docstring).

    Args:
        t_s: epoch s (UTC) of the samples; production_w: W at them (10-s samples or coarser).
        latitude_deg, longitude_deg, altitude_m: the site.
        tz: the zone the days are cut in.
        max_days: clearest days used.
        min_fit_hours: clear daylight hours needed to fit the orientation (else only the peak).
        default: the orientation kept when it is not fitted (tilt 30, south).
    Returns:
        The fitted :class:`PVParams`, or None when the history has no clear enough day.
    """
    from scipy.optimize import least_squares

    tb, yb = bins(t_s, production_w)
    days = clearest_days(tb, yb, tz, max_days)
    if not days:
        return None
    local = pd.to_datetime(tb, unit="s", utc=True).tz_convert(tz).date
    sel = np.isin(local, days)
    t, y = tb[sel], yb[sel]
    sk = sky(t, latitude_deg, longitude_deg, altitude_m)
    up = sk.zenith < 85.0
    t, y = t[up], y[up]
    sk = Sky(*(a[up] for a in (sk.times_s, sk.zenith, sk.azimuth, sk.dni, sk.ghi, sk.dhi)))
    clip = float(np.max(yb)) * 1.02
    base = replace(default or PVParams(), latitude_deg=latitude_deg, longitude_deg=longitude_deg,
                   altitude_m=altitude_m, peak_w=1000.0, clip_w=math.inf)

    def peak_for(m: np.ndarray) -> float:
        den = float(np.dot(m, m))
        return float(np.dot(m, y)) * 1000.0 / den if den > 0 else 0.0

    if len(t) * BIN_S / 3600.0 < min_fit_hours:
        m = power_w(sk, base)
        return replace(base, peak_w=peak_for(m), clip_w=clip)
    best = None
    for tilt in range(0, 65, 5):
        for az in range(90, 275, 10):
            m = power_w(sk, replace(base, tilt_deg=float(tilt), azimuth_deg=float(az)))
            pk = peak_for(m)
            cost = float(np.sum((m * pk / 1000.0 - y) ** 2))
            if best is None or cost < best[0]:
                best = (cost, float(tilt), float(az), pk)
    assert best is not None
    scale = max(best[3], 1.0)

    def resid(x: np.ndarray) -> np.ndarray:
        p = replace(base, tilt_deg=x[0], azimuth_deg=x[1], peak_w=x[2] * scale, clip_w=clip)
        return (power_w(sk, p) - y) / scale

    x = np.array([best[1], best[2], 1.0])
    keep = np.ones(len(y), dtype=bool)
    for _ in range(3):  # fit, keep the bins within 10 % of the fit (the clear ones), fit again
        r = least_squares(lambda v: resid(v)[keep], x, bounds=([0.0, 45.0, 0.05], [90.0, 315.0, 5.0]),
                          loss="soft_l1", f_scale=0.03, x_scale=[10.0, 10.0, 0.1])
        x = r.x
        m = resid(x) * scale + y
        near = (y >= 0.9 * m) & (y <= 1.1 * m)
        if near.sum() * BIN_S / 3600.0 < 0.5 * min_fit_hours:
            break
        keep = near
    out = replace(base, tilt_deg=float(x[0]), azimuth_deg=float(x[1]), peak_w=float(x[2] * scale), clip_w=clip)
    # the horizon on each side: the cut (0-25 deg of elevation) that fits the clear days' best
    full = sky(tb[sel], latitude_deg, longitude_deg, altitude_m)
    ys = yb[sel]
    for side in ("horizon_east_deg", "horizon_west_deg"):
        costs = [(float(np.sum((power_w(full, replace(out, **{side: float(h)})) - ys) ** 2)), float(h))
                 for h in range(0, 26)]
        out = replace(out, **{side: min(costs)[1]})
    return out


def profile(p: PVParams, start: datetime, hours: float = 48.0, step_s: float = 300.0) -> ClearSkyProfile:
    """The clear-sky production of ``p`` from ``start`` (aware) for ``hours`` at ``step_s`` steps.
    Raises ValueError for a naive ``start``, ``step_s`` under 60 s or ``hours`` outside (0, 168]."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if not step_s >= 60.0:
        raise ValueError(f"step_s {step_s} must be >= 60")
    if not 0 < hours <= 168:
        raise ValueError(f"hours {hours} must be in (0, 168]")
    t0 = start.timestamp()
    n = int(hours * 3600.0 // step_s) + 1
    times = t0 + step_s * np.arange(n)
    return ClearSkyProfile(t0, float(step_s), tuple(float(v) for v in clear_sky_w(p, times)))


def write_profile(p: PVParams, path, start: datetime | None = None, hours: float = 48.0,
                  step_s: float = 300.0) -> ClearSkyProfile:
    """Write the clear-sky production of ``p`` for the next ``hours`` from ``start`` (default: now,
    to the minute) at ``step_s`` steps to ``path`` (:mod:`.profile`'s JSON; 48 h at 5 min: 577
    values, ~5 KB), atomically. Returns the profile. Raises OSError (cannot write), ValueError
    (as :func:`profile`). Run it from a timer or a command once a day; managing reads it with
    :func:`gestor.forecast.profile.read_profile`."""
    from gestor.forecast.profile import save_profile
    now = datetime.now(timezone.utc)
    if start is None:
        start = now.replace(second=0, microsecond=0)
    prof = profile(p, start, hours, step_s)
    save_profile(path, prof, now.timestamp(), p.to_dict())
    return prof


def fit_and_write(t_s, production_w, path, start: datetime | None = None, hours: float = 48.0,
                  step_s: float = 300.0, **fit_kw) -> PVParams | None:
    """:func:`fit` on a history, then :func:`write_profile`; None (nothing written) when the
    history has no clear enough day."""
    p = fit(t_s, production_w, **fit_kw)
    if p is not None:
        write_profile(p, path, start, hours, step_s)
    return p


__all__ = ["MANRESA", "PVParams", "Sky", "bins", "clear_sky_w", "clearest_days", "fit", "fit_and_write",
           "power_w", "profile", "sky", "write_profile"]
