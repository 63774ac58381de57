"""Private world of :mod:`pipeline.synthetic`: fixed geography, weather regimes, diurnal cycle.

Everything here is what makes the synthetic weather *predictable beyond advection*:

* **Geography** (:func:`geography`): one fixed synthetic area, the same for every seed (the
  archive layout stays exactly HKO-7's). Land lies to the north with a ragged coastline, bays
  and islands; the sea to the south. Terrain (relative height 0..1) is isotropic multi-scale
  relief on land, tapering to 0 at the coast. The weather engine enhances rain over terrain
  (more on the windward slopes) and, on convective afternoons, over land and along the coast:
  a forcing that stays in place while the rain moves through.
* **Diurnal cycle** (:func:`diurnal`): ``cos(2 pi (t_local - 15 h) / 24 h)``, local solar time
  = frame time (taken as UTC) + 8 h: +1 at 15:00 local, -1 at 03:00 local.
* **Regimes** (:func:`regime_for_day`): spells of 1-4 days sharing their steering direction
  and speed, convective character, rain coverage, intensity and texture anisotropy. A day
  starts a new regime when its own draw says so (probability ``regime_start_prob``) or when it
  is the fourth day after the last forced start (days since 2000-01-01 divisible by 4), so
  regimes last 1-4 days. Every value is a pure function of ``(seed, day)``: a day does not
  depend on which other days are generated.
* **Midnight knots** (:func:`midnight_knot`): steering wind, mean coverage, intensity and
  texture axis at each midnight (regime value plus a small daily deviation). A day's slow
  variables move smoothly from its own midnight knot to the next one (veering, speeding up or
  slowing down over the day; continuous across midnight).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import ndimage

PIXEL_KM = 512.0 / 480.0
UTC_OFFSET_H = 8.0
"""Local solar time of the synthetic area = frame time + 8 hours."""
_GEO_SEED = 20_150_601
_EPOCH = pd.Timestamp("2000-01-01").toordinal()


@dataclass(frozen=True)
class Geography:
    """The fixed synthetic area on the ``(size, size)`` grid (row 0 = north).

    Attributes
    ----------
    land : numpy.ndarray
        ``(size, size)`` bool, True over land.
    terrain : numpy.ndarray
        ``(size, size)`` float32 relative height, 0 at sea level and over the sea, max 1.
    slope_x, slope_y : numpy.ndarray
        ``(size, size)`` float32 terrain gradient (relative height per 10 pixels), x = columns.
    coast : numpy.ndarray
        ``(size, size)`` float32 in 0..1, 1 on the coastline, fading within about 25 pixels.
    land_smooth, terrain_smooth : numpy.ndarray
        ``(size, size)`` float32 land fraction (Gaussian, 12 pixels) and terrain (4 pixels)
        smoothed: the forcing maps, free of sharp stationary edges.
    """

    land: np.ndarray
    terrain: np.ndarray
    slope_x: np.ndarray
    slope_y: np.ndarray
    coast: np.ndarray
    land_smooth: np.ndarray
    terrain_smooth: np.ndarray


def _spectral_noise(rng: np.random.Generator, size: int, beta: float, k_min: float) -> np.ndarray:
    """Isotropic Gaussian noise with power ``|k|^beta`` above ``k_min`` (cycles/pixel), sd 1."""
    k = np.fft.fftfreq(size)
    kr = np.hypot(k[:, None], k[None, :])
    amp = np.power(np.maximum(kr, k_min), beta / 2.0)
    amp[0, 0] = 0.0
    f = np.fft.ifft2(amp * np.fft.fft2(rng.standard_normal((size, size)))).real
    return (f - f.mean()) / f.std()


@lru_cache(maxsize=2)
def geography(size: int = 480) -> Geography:
    """The synthetic area's fixed land, terrain and coastline (cached; same for every seed).

    Parameters
    ----------
    size : int
        Grid side (pixels).

    Returns
    -------
    Geography
    """
    rng = np.random.default_rng(_GEO_SEED)
    rows = np.arange(size, dtype=float)[:, None] - (size - 1) / 2.0
    ragged = _spectral_noise(rng, size, -3.6, 1.0 / 300.0)
    # land to the north: a tilt plus ragged noise gives a coastline with bays and islands
    land = (-rows / (0.35 * size) + 0.55 * ragged + 0.15) > 0.0
    land = ndimage.binary_opening(land, iterations=2)
    inland = ndimage.gaussian_filter(land.astype(float), 10.0)
    relief = _spectral_noise(rng, size, -3.2, 1.0 / 150.0)
    terrain = np.clip(relief + 0.3, 0.0, None) * np.clip(2.0 * inland - 0.4, 0.0, 1.0) * land
    terrain = ndimage.gaussian_filter(terrain, 2.0) * land
    terrain = terrain / terrain.max()
    smooth = ndimage.gaussian_filter(terrain, 3.0)
    gy, gx = np.gradient(smooth)
    # forcing maps are smooth (no sharp stationary edges for the rain to lock onto)
    coast_band = ndimage.gaussian_filter(land.astype(float), 12.0)
    coast = np.clip(4.0 * coast_band * (1.0 - coast_band), 0.0, 1.0)
    land_smooth = ndimage.gaussian_filter(land.astype(float), 12.0)
    relief_smooth = ndimage.gaussian_filter(terrain, 4.0)
    f32 = np.float32
    return Geography(
        land=land,
        terrain=terrain.astype(f32),
        slope_x=(10.0 * gx).astype(f32),
        slope_y=(10.0 * gy).astype(f32),
        coast=coast.astype(f32),
        land_smooth=land_smooth.astype(f32),
        terrain_smooth=relief_smooth.astype(f32),
    )


def diurnal(times: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Diurnal phase ``cos(2 pi (t_local - 15 h) / 24 h)`` of frame times (+1 at 15:00 local).

    Parameters
    ----------
    times : pandas.DatetimeIndex or numpy.ndarray
        ``(T,)`` frame times (UTC).

    Returns
    -------
    numpy.ndarray
        ``(T,)`` float in [-1, 1].
    """
    t = pd.DatetimeIndex(times)
    hours = (t.hour + t.minute / 60.0 + UTC_OFFSET_H) % 24.0
    return np.cos(2.0 * np.pi * (np.asarray(hours) - 15.0) / 24.0)


@dataclass(frozen=True)
class Regime:
    """Weather shared by the 1-4 days of a regime.

    Attributes
    ----------
    start : pandas.Timestamp
        First day of the regime.
    length : int
        Days in the regime (1-4).
    direction : float
        Steering direction (radians, 0 = towards +x (east), pi/2 = towards +y (south)).
    speed_kmh : float
        Steering speed.
    convective : float
        Convective character in 0..1 (cells, land/coast afternoon forcing, diurnal coverage).
    coverage : float
        Mean rain coverage (fraction >= 0.5 mm/h of the disc).
    intensity_c : float
        dBZ scale of the rain above the threshold (see :class:`pipeline._synth_weather`).
    stretch_axis : float
        Axis of the texture's stretch (radians).
    """

    start: pd.Timestamp
    length: int
    direction: float
    speed_kmh: float
    convective: float
    coverage: float
    intensity_c: float
    stretch_axis: float


def _is_start(seed: int, ordinal: int, prob: float) -> bool:
    if (ordinal - _EPOCH) % 4 == 0:
        return True
    return bool(np.random.default_rng([seed, ordinal, 11]).random() < prob)


def regime_for_day(
    seed: int,
    day: object,
    start_prob: float = 0.35,
    speed_kmh: tuple[float, float] = (45.0, 75.0),
    coverage: tuple[float, float] = (0.19, 0.29),
    intensity_c: tuple[float, float] = (11.5, 13.0),
    convective_prob: float = 0.4,
) -> Regime:
    """The regime *day* belongs to (a pure function of ``(seed, day)``).

    Parameters
    ----------
    seed : int
        Archive seed.
    day : date-like
        The day.
    start_prob : float
        Probability that a day not forced to start a regime starts one.
    speed_kmh, coverage, intensity_c : tuple of float
        Ranges of the regime's steering speed, mean coverage and intensity scale.
    convective_prob : float
        Probability that a regime is convective (convective character 0.6-1, else 0-0.3).

    Returns
    -------
    Regime
    """
    d = pd.Timestamp(day).normalize().toordinal()
    first = d
    while not _is_start(seed, first, start_prob):
        first -= 1
    last = d
    while not _is_start(seed, last + 1, start_prob):
        last += 1
    rng = np.random.default_rng([seed, first, 12])
    convective = rng.random() < convective_prob
    return Regime(
        start=pd.Timestamp.fromordinal(first),
        length=last - first + 1,
        direction=float(rng.uniform(0.0, 2.0 * np.pi)),
        speed_kmh=float(rng.uniform(*speed_kmh)),
        convective=float(rng.uniform(0.6, 1.0) if convective else rng.uniform(0.0, 0.3)),
        coverage=float(rng.uniform(*coverage)),
        intensity_c=float(rng.uniform(*intensity_c)),
        stretch_axis=float(rng.uniform(0.0, np.pi)),
    )


@dataclass(frozen=True)
class Knot:
    """The weather's slow variables at 00:00 of a day (a pure function of ``(seed, day)``).

    Attributes
    ----------
    direction : float
        Steering direction (radians).
    speed_kmh : float
        Steering speed.
    coverage : float
        Mean rain coverage.
    intensity_c : float
        dBZ scale of the rain above the threshold.
    stretch_axis : float
        Axis of the texture's stretch (radians).
    """

    direction: float
    speed_kmh: float
    coverage: float
    intensity_c: float
    stretch_axis: float


def midnight_knot(
    seed: int, day: object, direction_sd_deg: float = 15.0, speed_rel_sd: float = 0.12, **kw
) -> Knot:
    """The slow variables at 00:00 of *day*: its regime's values plus a small daily deviation.

    A day's slow variables move from its own midnight knot to the next day's, so they are
    continuous across midnight and follow the regime (veering towards the next regime's
    steering on the day before a change).

    Parameters
    ----------
    seed : int
        Archive seed.
    day : date-like
        The day whose midnight this is.
    direction_sd_deg, speed_rel_sd : float
        Spread of the daily deviation from the regime's direction and (relative) speed.
    **kw
        Passed to :func:`regime_for_day`.

    Returns
    -------
    Knot
    """
    d = pd.Timestamp(day).normalize()
    reg = regime_for_day(seed, d, **kw)
    rng = np.random.default_rng([seed, d.toordinal(), 13])
    direction = reg.direction + np.deg2rad(rng.normal(0.0, direction_sd_deg))
    speed = reg.speed_kmh * float(np.exp(rng.normal(0.0, speed_rel_sd)))
    cov = float(np.clip(reg.coverage * np.exp(rng.normal(0.0, 0.08)), 0.05, 0.5))
    return Knot(
        direction=float(direction),
        speed_kmh=speed,
        coverage=cov,
        intensity_c=float(reg.intensity_c * np.exp(rng.normal(0.0, 0.03))),
        stretch_axis=float(reg.stretch_axis + np.deg2rad(rng.normal(0.0, 10.0))),
    )


def steering_knot(
    seed: int, day: object, direction_sd_deg: float = 15.0, speed_rel_sd: float = 0.12, **kw
) -> tuple[float, float]:
    """Steering ``(direction rad, speed km/h)`` at 00:00 of *day* (see :func:`midnight_knot`)."""
    k = midnight_knot(seed, day, direction_sd_deg, speed_rel_sd, **kw)
    return k.direction, k.speed_kmh
