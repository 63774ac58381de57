"""Private weather engine of :mod:`pipeline.synthetic`: evolving dBZ fields on the HKO-7 grid.

Model (STEPS / S-PROG-like, documented in :mod:`pipeline.synthetic`; the fixed geography,
regimes and diurnal cycle live in :mod:`pipeline._synth_world`):

* A latent Gaussian field ``L(xi, t)`` lives on a periodic ``N x N`` grid in *Lagrangian*
  coordinates (``latent_px`` fine pixels per latent pixel). Its power spectrum is a power law
  ``|k|^beta`` (flat beyond the scale break) and each Fourier coefficient follows an AR(1)
  process whose 6-minute correlation ``exp(-dt / tau(lambda))`` grows with the wavelength
  ``lambda`` (small cells live minutes, large rain areas hours): growth and decay.
* The Eulerian field seen by the radar is ``L(M(t) x + b(t), t)`` with
  ``M(t) = R(phi(t)) S(s(t), a(t))``: a rotation by the integrated rotation rate and a bounded
  area-preserving stretch ``exp(+-s)`` along the axis ``a`` (``s = s_max tanh(OU)``, aspect
  ratio at most ``exp(2 s_max)``); ``db/dt = -M u0`` carries the translation. One warp per
  frame, so no numerical diffusion accumulates. The stretch is a state, not an integrated strain
  rate: integrating ``dM/dt = -M Omega`` over a day let the deformation grow without bound and
  every newly born cell inherited it (edge-to-edge streaks, orientation coherence up to 0.97).
* Slow variables (steering ``u0(t)``, mean coverage, intensity, texture axis): from the
  knot at this day's midnight to the next one (linear in time, shortest way round: veering and
  speeding up or slowing down), plus small OU fluctuations (also of the rotation and stretch)
  that vanish at midnight, so they are continuous from one day to the next.
* Midnight bridge: a day that reaches 24:00 ends exactly in the next day's first state (a
  pure function of ``(seed, next day)``). Each latent mode is a Gaussian AR(1) process; its
  path conditioned on the end value is the free path (same start, same innovations) plus
  ``(target - free end) * phi**(N-k) * (1 - phi**(2k)) / (1 - phi**(2N))``. The two days'
  translation offsets differ at midnight; the difference is applied to the target as a
  Fourier shift. Innovations come from per-step streams, with the ~1.4 % long-memory modes in
  a stream of their own, so the free path's end is replayed cheaply (the other modes forget
  their past within 40 frames).
* Per frame the field is standardised over the radar disc, the stationary forcing ``F(x, t)``
  is added, and the sum is mapped to dBZ: a time-varying quantile ``1 - f(t)`` sits at the
  0.5 mm/h rain threshold (``f`` = rain coverage, with dry spells and, in convective regimes,
  an afternoon maximum); above it ``dBZ = dbz_thr + c(t) * excess**gamma`` (long tail), below
  it weak echo fading linearly to "no echo" (pixel 0). The forcing (standard deviations of the
  latent field)::

      F = a_terrain * h + a_upslope * max(0, u_hat . grad h) / s99
          + convective * diurnal(t) * (a_land * land + a_coast * coast)

  ``h`` is the terrain, ``u_hat`` the steering direction, ``diurnal`` +1 at 15:00 local and -1
  at 03:00: rain is more frequent and heavier over the hills and on their windward side at all
  times, and over land and the coast on convective afternoons (less there at night). Coverage
  is fixed by the quantile, so the forcing moves rain rather than adding it.
* Convective cells have life cycles. Births are Poisson with a rate that grows with the
  regime's convective character and, in convective regimes, peaks in the afternoon (a factor
  ``1 + cell_diurnal * convective * diurnal(t)``); a birth is placed either over land (weighted
  towards terrain; probability ``cell_land_share * convective * max(diurnal, 0)``, initiation
  in clear air included) or in strong rain (>= 22 dBZ). A cell moves with the flow (fixed in
  Lagrangian coordinates) and adds a textured Gaussian dBZ bump whose amplitude is
  ``peak * sin(pi * age / life) ** 2`` and radius ``sigma * (0.55 + 0.45 sin(pi age / life))``:
  initiation, growth, peak at mid-life and decay. Size-intensity relation: a cell of larger
  radius ``sigma`` has a higher peak (``peak = cell_peak_base + cell_peak_per_px * sigma``
  + noise) and lives longer (``life = cell_life_base + cell_life_per_px * sigma`` + noise).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage

from pipeline._synth_world import diurnal, geography, midnight_knot, regime_for_day
from pipeline.units import rainrate_to_dbz

PIXEL_KM = 512.0 / 480.0
"""Grid spacing of HKO-7 frames (512 km over 480 pixels)."""
RADIUS_PX = 240.0
"""Radius (pixels) of the 256 km observation disc centred on the radar."""
_MEMORY_STEPS = 40
"""Frames after which a "short-memory" latent mode keeps less than 1e-3 of its value."""


@dataclass(frozen=True)
class WeatherParams:
    """Knobs of the synthetic weather (defaults tuned to the real-radar ranges in docs/synthetic.md).

    Attributes
    ----------
    beta : float
        Power-law exponent of the latent field's power spectrum.
    scale_break_km : float
        Wavelength above which the latent spectrum is flat.
    latent_size : int
        Side of the periodic latent grid (latent pixels, power of two).
    latent_px : float
        Fine (HKO-7) pixels per latent pixel.
    tau_ref_min : float
        Lagrangian lifetime (minutes) of the ``tau_ref_km`` wavelength.
    tau_ref_km : float
        Reference wavelength of ``tau_ref_min``.
    tau_exponent : float
        ``tau(lambda) = tau_ref_min * (lambda / tau_ref_km) ** tau_exponent``.
    tau_max_min : float
        Longest lifetime (minutes).
    coverage_range : tuple of float
        Range of a regime's mean rain coverage (fraction >= 0.5 mm/h of the disc).
    coverage_logit_sd, coverage_tau_min : float
        Rain coverage ``f(t)`` fluctuates around the regime's mean as a logit-OU process.
    coverage_diurnal : float
        Relative afternoon increase (and night decrease) of coverage, times the convective
        character.
    dry_spells : tuple of int
        Inclusive range of the number of dry spells per day.
    dry_spell_hours : tuple of float
        Range of a dry spell's length (hours).
    intensity_c : tuple of float
        Range of a regime's dBZ scale ``c`` (dBZ per standardised excess**gamma).
    intensity_gamma : float
        Exponent of the excess above the threshold.
    weak_echo_slope : float
        dBZ per standard deviation below the rain threshold.
    echo_floor_dbz : float
        Weak echo under this becomes "no echo" (pixel 0, -10 dBZ).
    speed_kmh : tuple of float
        Range of a regime's steering speed (km/h).
    knot_direction_sd_deg, knot_speed_rel_sd : float
        Daily deviation of the midnight steering from the regime's.
    speed_rel_sd, direction_sd_deg : float
        OU fluctuations of the steering speed (relative) and direction (degrees) within a day.
    rotation_sd : float
        Standard deviation (radians) of the texture's rotation angle, an OU process that is 0 at
        every midnight (rotation keeps the texture isotropic).
    motion_tau_min : float
        Correlation time of the motion fluctuations.
    stretch_max : float
        Largest log-stretch ``s`` of the texture (aspect ratio ``exp(2 s)``, 2.0 for 0.35).
    stretch_mean, stretch_sd : float
        Mean and standard deviation of the OU process behind ``s = stretch_max * tanh(ou)``.
    stretch_tau_min : float
        Correlation time of the stretch (about a feature's lifetime: deformation is bounded).
    regime_start_prob : float
        Probability that a day not forced to start a regime starts one (regimes last 1-4 days).
    convective_regime_prob : float
        Probability that a regime is convective.
    terrain_forcing, upslope_forcing : float
        Stationary enhancement (latent standard deviations) over terrain and windward slopes.
    land_forcing, coast_forcing : float
        Diurnal enhancement over land and along the coast, times the convective character.
    cells_active : tuple of float
        Mean number of convective cells alive at a time for convective character 0 and 1.
    cell_diurnal : float
        Relative afternoon increase of the cell birth rate, times the convective character.
    cell_land_share : float
        Share of births placed over land at the diurnal maximum of a fully convective regime.
    cell_sigma_px : tuple of float
        Range of a cell's largest Gaussian radius (pixels).
    cell_peak_base, cell_peak_per_px, cell_peak_sd : float
        ``peak dBZ increment = base + per_px * sigma + N(0, sd)`` (size-intensity relation).
    cell_life_base, cell_life_per_px, cell_life_sd : float
        ``lifetime (min) = base + per_px * sigma + N(0, sd)``, clipped to 30-110 minutes.
    cell_texture : float
        A cell's bump is multiplied by ``exp(cell_texture * n)``, ``n`` its own unit-variance
        noise smoothed over 1.5 pixels: ragged cells, not discs.
    """

    beta: float = -3.3
    scale_break_km: float = 1000.0
    latent_size: int = 512
    latent_px: float = 2.0
    tau_ref_min: float = 35.0
    tau_ref_km: float = 32.0
    tau_exponent: float = 0.9
    tau_max_min: float = 600.0
    coverage_range: tuple[float, float] = (0.19, 0.29)
    coverage_logit_sd: float = 0.3
    coverage_tau_min: float = 120.0
    coverage_diurnal: float = 0.2
    dry_spells: tuple[int, int] = (0, 2)
    dry_spell_hours: tuple[float, float] = (1.0, 3.0)
    intensity_c: tuple[float, float] = (11.5, 13.0)
    intensity_gamma: float = 0.7
    weak_echo_slope: float = 25.0
    echo_floor_dbz: float = 0.0
    speed_kmh: tuple[float, float] = (45.0, 75.0)
    knot_direction_sd_deg: float = 15.0
    knot_speed_rel_sd: float = 0.12
    speed_rel_sd: float = 0.08
    direction_sd_deg: float = 8.0
    rotation_sd: float = 0.15
    motion_tau_min: float = 180.0
    stretch_max: float = 0.35
    stretch_mean: float = 0.7
    stretch_sd: float = 0.5
    stretch_tau_min: float = 240.0
    regime_start_prob: float = 0.35
    convective_regime_prob: float = 0.4
    terrain_forcing: float = 0.5
    upslope_forcing: float = 0.35
    land_forcing: float = 0.2
    coast_forcing: float = 0.2
    cells_active: tuple[float, float] = (1.5, 5.0)
    cell_diurnal: float = 0.8
    cell_land_share: float = 0.7
    cell_sigma_px: tuple[float, float] = (2.5, 6.5)
    cell_peak_base: float = 7.0
    cell_peak_per_px: float = 3.0
    cell_peak_sd: float = 1.5
    cell_life_base: float = 20.0
    cell_life_per_px: float = 12.0
    cell_life_sd: float = 8.0
    cell_texture: float = 0.6


@dataclass(frozen=True)
class Cell:
    """One convective cell (times in frames since the day's first frame).

    Attributes
    ----------
    xi : numpy.ndarray
        ``(2,)`` Lagrangian position (fine pixels).
    born : int
        Frame of birth.
    life : float
        Lifetime (frames).
    peak : float
        Largest dBZ increment (reached at mid-life).
    sigma : float
        Largest Gaussian radius (pixels, reached at mid-life).
    row, col : int
        Birth pixel.
    over_land : bool
        Whether the birth pixel is over land.
    initiation : str
        ``"land"`` (initiated over land, clear air included) or ``"rain"`` (in strong rain).
    texture : numpy.ndarray
        ``(m, m)`` float32 multiplicative texture centred on the cell (``m`` odd).
    """

    xi: np.ndarray
    born: int
    life: float
    peak: float
    sigma: float
    row: int
    col: int
    over_land: bool
    initiation: str
    texture: np.ndarray

    def amplitude(self, age: float) -> float:
        """dBZ increment at *age* frames: ``peak * sin(pi * age / life) ** 2`` (0 outside)."""
        if age < 0 or age > self.life:
            return 0.0
        return float(self.peak * np.sin(np.pi * age / self.life) ** 2)

    def radius(self, age: float) -> float:
        """Gaussian radius (pixels) at *age* frames: ``sigma * (0.55 + 0.45 sin(pi age / life))``."""
        return float(self.sigma * (0.55 + 0.45 * np.sin(np.pi * np.clip(age / self.life, 0, 1))))


def _ou(rng: np.random.Generator, n: int, dt: float, tau: float, sd: float) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck path (n steps of dt, correlation time tau, sd)."""
    a = np.exp(-dt / tau)
    eps = rng.standard_normal(n) * sd * np.sqrt(1.0 - a * a)
    out = np.empty(n)
    out[0] = rng.standard_normal() * sd
    for i in range(1, n):
        out[i] = a * out[i - 1] + eps[i]
    return out


def _rotation(angle: float) -> np.ndarray:
    """2 x 2 rotation matrix by *angle* (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _stretch_matrix(s: float, axis: float) -> np.ndarray:
    """Area-preserving symmetric stretch ``exp(s)`` along *axis*, ``exp(-s)`` across it."""
    r = _rotation(axis)
    return r @ np.diag([np.exp(s), np.exp(-s)]) @ r.T


def disc_mask(size: int = 480, radius_px: float = RADIUS_PX) -> np.ndarray:
    """``(size, size)`` bool, True inside the observation disc centred on the grid."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - c) ** 2 + (xx - c) ** 2 <= radius_px**2


class DayWeather:
    """Evolving dBZ fields for ``n_steps`` consecutive frames of ``dt_min`` minutes.

    Parameters
    ----------
    rng : numpy.random.Generator
        The day's random stream (everything not shared with other days is drawn from it).
    n_steps : int
        Number of frames.
    params : WeatherParams
    dt_min : float
        Minutes between frames.
    size : int
        Output frame side (pixels).
    start : pandas.Timestamp, optional
        Time of the first frame (default 2015-06-01 00:00); sets the day's regime, steering
        knots and diurnal phase.
    seed : int
        Archive seed (regimes and steering knots are functions of ``(seed, day)``).

    Attributes
    ----------
    regime : pipeline._synth_world.Regime
        The day's regime.
    u0 : numpy.ndarray
        ``(n_steps, 2)`` steering (fine pixels per minute; x = columns, y = rows).
    coverage : numpy.ndarray
        ``(n_steps,)`` rain coverage of the disc.
    phase : numpy.ndarray
        ``(n_steps,)`` diurnal phase (+1 at 15:00 local).
    cells : list of Cell
        Every cell born so far (filled while iterating).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        n_steps: int,
        params: WeatherParams | None = None,
        dt_min: float = 6.0,
        size: int = 480,
        start: pd.Timestamp | None = None,
        seed: int = 0,
    ) -> None:
        self.p = p = params if params is not None else WeatherParams()
        self.rng = rng
        self.n_steps = n_steps
        self.dt = dt_min
        self.size = size
        start = pd.Timestamp("2015-06-01") if start is None else pd.Timestamp(start)
        day = start.normalize()
        n = p.latent_size
        km_per_latent = p.latent_px * PIXEL_KM
        ky = np.fft.fftfreq(n)[:, None]
        kx = np.fft.rfftfreq(n)[None, :]
        kr = np.sqrt(kx * kx + ky * ky)  # cycles per latent pixel
        kr[0, 0] = np.inf
        lam_km = km_per_latent / kr
        k_break = km_per_latent / p.scale_break_km
        amp = np.power(np.maximum(kr, k_break), p.beta / 2.0)
        amp[0, 0] = 0.0
        amp *= 1.0 / np.sqrt(np.sum(amp**2))  # scale is irrelevant: frames are standardised
        tau = np.minimum(p.tau_ref_min * (lam_km / p.tau_ref_km) ** p.tau_exponent, p.tau_max_min)
        tau[0, 0] = p.tau_max_min
        phi = np.exp(-dt_min / tau)
        self._amp = amp.astype(np.float32)
        self._phi = phi.astype(np.float32)
        self._innov = (amp * np.sqrt(1.0 - phi * phi)).astype(np.float32)
        self._kx, self._ky = kx, ky
        self._seed, self._day = seed, day
        # modes that remember more than 1e-3 of themselves over _MEMORY_STEPS frames
        self._long_idx = np.flatnonzero(phi.astype(np.float64) ** _MEMORY_STEPS > 1e-3)
        self._state, b0 = self._midnight_state(day)

        # output pixel coordinates (fine pixels, relative to the grid centre)
        c = (size - 1) / 2.0
        coords = np.arange(size, dtype=np.float32) - np.float32(c)
        self._x = coords[None, :]
        self._y = coords[:, None]
        self.disc = disc_mask(size)
        self._sample = self.disc.copy()
        self._sample[::2, :] = False
        self._sample[:, ::2] = False

        # regime, steering, diurnal phase
        rkw = dict(
            start_prob=p.regime_start_prob,
            speed_kmh=p.speed_kmh,
            coverage=p.coverage_range,
            intensity_c=p.intensity_c,
            convective_prob=p.convective_regime_prob,
        )
        self.regime = reg = regime_for_day(seed, day, **rkw)
        self.convective = reg.convective
        steps = n_steps
        times = start + pd.to_timedelta(np.arange(steps) * dt_min, unit="min")
        self.times = pd.DatetimeIndex(times)
        self.phase = diurnal(self.times)
        frac = np.asarray((self.times - day) / pd.Timedelta(days=1), dtype=float)
        kkw = dict(direction_sd_deg=p.knot_direction_sd_deg, speed_rel_sd=p.knot_speed_rel_sd)
        k0 = midnight_knot(seed, day, **kkw, **rkw)
        k1 = midnight_knot(seed, day + pd.Timedelta(days=1), **kkw, **rkw)
        self.knots = (k0, k1)
        # slow variables: from this midnight's knot to the next, plus OU fluctuations that
        # vanish at both midnights (continuous from one day to the next)
        taper = np.sin(np.pi * np.clip(frac, 0.0, 1.0))

        def ou(tau_min: float, sd: float) -> np.ndarray:
            return taper * _ou(rng, steps, dt_min, tau_min, sd)

        turn = (k1.direction - k0.direction + np.pi) % (2.0 * np.pi) - np.pi  # shortest way
        direction = (
            k0.direction + turn * frac + np.deg2rad(ou(p.motion_tau_min, p.direction_sd_deg))
        )
        speed_kmh = (k0.speed_kmh + (k1.speed_kmh - k0.speed_kmh) * frac) * np.exp(
            ou(p.motion_tau_min, p.speed_rel_sd)
        )
        speed = speed_kmh / PIXEL_KM / 60.0  # fine px per minute
        self.u0 = np.stack([speed * np.cos(direction), speed * np.sin(direction)], axis=1)
        self.rotation = ou(p.motion_tau_min, p.rotation_sd)
        self.stretch = p.stretch_max * np.tanh(p.stretch_mean + ou(p.stretch_tau_min, p.stretch_sd))
        axis_turn = (k1.stretch_axis - k0.stretch_axis + np.pi / 2) % np.pi - np.pi / 2
        self.stretch_axis = (
            k0.stretch_axis + axis_turn * frac + np.deg2rad(ou(p.stretch_tau_min, 20.0))
        )

        # coverage (knots, OU, afternoon maximum, dry spells inside the day) and intensity
        cov_knots = k0.coverage + (k1.coverage - k0.coverage) * frac
        cov_mean = cov_knots * (1.0 + p.coverage_diurnal * reg.convective * self.phase)
        logit = np.log(cov_mean / (1.0 - cov_mean))
        cov = 1.0 / (1.0 + np.exp(-(logit + ou(p.coverage_tau_min, p.coverage_logit_sd))))
        t_day = frac * 1440.0  # minutes since midnight
        dry = np.zeros(steps)
        n_dry = int(rng.integers(p.dry_spells[0], p.dry_spells[1] + 1))
        for _ in range(n_dry):
            length = rng.uniform(*p.dry_spell_hours) * 60.0
            centre = rng.uniform(length / 2.0, 1440.0 - length / 2.0)  # within the day
            ramp = 75.0
            d = np.abs(t_day - centre) - (length / 2.0 - ramp)
            w = np.clip(1.0 - d / ramp, 0.0, 1.0)
            dry = np.maximum(dry, 0.5 - 0.5 * np.cos(np.pi * w))
        self.coverage = cov * (1.0 - 0.98 * dry)
        c_knots = k0.intensity_c + (k1.intensity_c - k0.intensity_c) * frac
        self.intensity = c_knots * np.exp(ou(p.coverage_tau_min, 0.05))
        self.dbz_thr = float(rainrate_to_dbz(0.5))
        self._b = b0
        self._M = self._map_at(0)
        # a day that reaches the next midnight ends exactly in the next day's first state
        self.reaches_midnight = abs(frac[-1] + dt_min / 1440.0 - 1.0) < 1e-9
        self._M_end = self._map_at(steps - 1)
        self._bridge: np.ndarray | None = None
        if self.reaches_midnight:
            self._M_end = _stretch_matrix(p.stretch_max * np.tanh(p.stretch_mean), k1.stretch_axis)
            self._bridge = self._plan_bridge(day + pd.Timedelta(days=1))

        # stationary forcing (geography) and cells
        geo = geography(size)
        self.geo = geo
        grad = np.hypot(geo.slope_x, geo.slope_y)
        s99 = float(np.percentile(grad[geo.land], 99)) or 1.0
        self._slope_x = geo.slope_x / np.float32(s99)
        self._slope_y = geo.slope_y / np.float32(s99)
        self._terrain_f = np.float32(p.terrain_forcing) * geo.terrain_smooth
        self._diurnal_f = (
            np.float32(p.land_forcing) * geo.land_smooth + np.float32(p.coast_forcing) * geo.coast
        ).astype(np.float32)
        land_idx = np.flatnonzero(geo.land & self._sample)
        w = 0.3 + geo.terrain.ravel()[land_idx]
        self._land_idx = land_idx
        self._land_cdf = np.cumsum(w) / w.sum()
        active = p.cells_active[0] + (p.cells_active[1] - p.cells_active[0]) * reg.convective
        mean_sigma = 0.5 * (p.cell_sigma_px[0] + p.cell_sigma_px[1])
        mean_life_steps = (p.cell_life_base + p.cell_life_per_px * mean_sigma) / dt_min
        self.cell_rate = (
            active
            / mean_life_steps
            * np.clip(1.0 + p.cell_diurnal * reg.convective * self.phase, 0.0, None)
        )
        self.cells: list[Cell] = []
        self._alive: list[Cell] = []

    @staticmethod
    def _complex_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        w = rng.standard_normal((*shape, 2), dtype=np.float32)
        return w.view(np.complex64)[..., 0] * np.float32(np.sqrt(0.5))

    def _noise(self, k: int, long_only: bool = False) -> np.ndarray:
        """Innovations of step *k*, from streams of ``(seed, day, k)`` (regenerable per step).

        The long-memory modes (``_long_idx``) have their own small stream, so the bridge can
        replay their whole path without drawing the full field every step.
        """
        base = [self._seed, self._day.toordinal(), 3, k]
        a = self._complex_noise(np.random.default_rng([*base, 0]), (len(self._long_idx),))
        if long_only:
            return a
        n = self.p.latent_size
        full = self._complex_noise(np.random.default_rng([*base, 1]), (n, n // 2 + 1))
        full.reshape(-1)[self._long_idx] = a
        return full

    def _midnight_state(self, day: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        """Latent Fourier state and translation at 00:00 of *day* (from ``(seed, day)`` only)."""
        rng = np.random.default_rng([self._seed, day.toordinal(), 4])
        n = self.p.latent_size
        state = self._complex_noise(rng, (n, n // 2 + 1)) * self._amp
        return state, rng.uniform(0.0, self.p.latent_size * self.p.latent_px, size=2)

    def _map_at(self, k: int) -> np.ndarray:
        """The latent map ``M`` of frame *k* (``k = n_steps``: the next midnight's)."""
        if k >= self.n_steps:
            return self._M_end
        return _rotation(self.rotation[k]) @ _stretch_matrix(self.stretch[k], self.stretch_axis[k])

    def _plan_bridge(self, next_day: pd.Timestamp) -> np.ndarray:
        """Offset ``D`` that makes the latent AR(1) path end in the next day's first state.

        Every Fourier mode is a Gaussian AR(1) process; conditioned on its value at the next
        midnight, its path is the free path ``y_k`` (same start, same noise) plus
        ``D * phi**(N - k) * (1 - phi**(2 k)) / (1 - phi**(2 N))`` with
        ``D = target - y_N`` (exact conditioning of a Gaussian process). The target is the next
        day's first state, shifted by the difference of the two days' translations at that
        midnight so that both days show the same field there.
        """
        p, n_steps = self.p, self.n_steps
        b, m = self._b.copy(), self._M
        for k in range(n_steps):  # translation at the next midnight (as _advance integrates)
            m_new = self._map_at(k + 1)
            b = b - 0.5 * (m + m_new) @ self.u0[k] * self.dt
            m = m_new
        target, b_next = self._midnight_state(next_day)
        shift = (b - b_next) / p.latent_px  # latent pixels: L_end(eta) = L_next(eta - shift)
        ramp = np.exp(-2j * np.pi * (self._kx * shift[0] + self._ky * shift[1]))
        target = target * ramp.astype(np.complex64)
        # free path's end with the same innovations: long-memory modes over the whole day,
        # the others (which forget all but 1e-3 within _MEMORY_STEPS) over the last steps
        li = self._long_idx
        phi_l, innov_l = self._phi.reshape(-1)[li], self._innov.reshape(-1)[li]
        y_l = self._state.reshape(-1)[li].copy()
        for k in range(n_steps):
            y_l = phi_l * y_l + innov_l * self._noise(k, long_only=True)
        first = max(n_steps - _MEMORY_STEPS, 0)
        y = self._state * self._phi ** np.float32(first)
        for k in range(first, n_steps):
            y = self._phi * y + self._innov * self._noise(k)
        y.reshape(-1)[li] = y_l
        log_phi = np.log(self._phi.astype(np.float64))
        self._log_phi = log_phi.astype(np.float32)
        self._bridge_den = (1.0 - np.exp(2.0 * n_steps * log_phi)).astype(np.float32)
        return (target - y).astype(np.complex64)

    def _latent(self, k: int) -> np.ndarray:
        n = self.p.latent_size
        state = self._state
        if self._bridge is not None:
            lp, den, d = self._log_phi, self._bridge_den, self._bridge
            if k < self.n_steps - _MEMORY_STEPS:  # only long-memory modes feel the end yet
                li = self._long_idx
                lp, den, d = lp.reshape(-1)[li], den.reshape(-1)[li], d.reshape(-1)[li]
            w = np.exp(np.float32(self.n_steps - k) * lp) * (1.0 - np.exp(np.float32(2 * k) * lp))
            if k < self.n_steps - _MEMORY_STEPS:
                state = state.copy()
                state.reshape(-1)[self._long_idx] += d * (w / den)
            else:
                state = state + d * (w / den)
        return scipy.fft.irfft2(state, s=(n, n), workers=1).astype(np.float32, copy=False)

    def _warp(self, latent: np.ndarray) -> np.ndarray:
        p = self.p
        m = self._M / p.latent_px
        b = np.mod(self._b / p.latent_px, p.latent_size)  # the latent field is periodic
        x, y = self._x, self._y
        mx = (np.float32(m[0, 0]) * x + np.float32(b[0])) + np.float32(m[0, 1]) * y
        my = (np.float32(m[1, 0]) * x + np.float32(b[1])) + np.float32(m[1, 1]) * y
        return cv2.remap(latent, mx, my, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)

    def forcing(self, k: int) -> np.ndarray:
        """``(size, size)`` float32 stationary forcing ``F(x, t_k)`` (latent standard deviations)."""
        u = self.u0[k]
        ux, uy = (u / (np.hypot(u[0], u[1]) or 1.0)).astype(np.float32)
        upslope = np.clip(ux * self._slope_x + uy * self._slope_y, 0.0, 1.0)
        f = self._terrain_f + np.float32(self.p.upslope_forcing) * upslope
        g = np.float32(self.convective * self.phase[k])
        return f + g * self._diurnal_f

    def _to_dbz(self, z: np.ndarray, k: int) -> np.ndarray:
        p = self.p
        s = z[self._sample]
        mu = float(s.mean())
        sd = float(s.std()) or 1.0
        z = (z - np.float32(mu)) * np.float32(1.0 / sd) + self.forcing(k)
        z_thr = float(np.quantile(z[self._sample], 1.0 - self.coverage[k]))
        ex = z - np.float32(z_thr)
        pos = np.maximum(ex, 0.0)
        dbz = np.where(
            ex > 0,
            np.float32(self.dbz_thr)
            + np.float32(self.intensity[k]) * np.power(pos, p.intensity_gamma),
            np.float32(self.dbz_thr) + np.float32(p.weak_echo_slope) * ex,
        ).astype(np.float32)
        dbz[dbz < p.echo_floor_dbz] = -10.0
        return dbz

    def _advance(self, k: int) -> None:
        m_new = self._map_at(k + 1)
        self._b = self._b - 0.5 * (self._M + m_new) @ self.u0[k] * self.dt
        self._M = m_new
        self._state = self._phi * self._state + self._innov * self._noise(k)

    def _spawn(self, dbz: np.ndarray, k: int) -> None:
        """Poisson births of frame *k*, over land (afternoon) or in strong rain."""
        p, rng = self.p, self.rng
        c = (self.size - 1) / 2.0
        land_share = p.cell_land_share * self.convective * max(float(self.phase[k]), 0.0)
        for _ in range(int(rng.poisson(self.cell_rate[k]))):
            initiation = "land"
            if rng.random() < land_share and len(self._land_idx):
                pos = int(self._land_idx[np.searchsorted(self._land_cdf, rng.random())])
            else:
                initiation = "rain"
                cand = np.flatnonzero((dbz >= 22.0) & self._sample)
                if len(cand) == 0:
                    continue
                pos = int(cand[rng.integers(len(cand))])
            r, col = divmod(pos, self.size)
            sigma = rng.uniform(*p.cell_sigma_px)
            peak = p.cell_peak_base + p.cell_peak_per_px * sigma + rng.normal(0.0, p.cell_peak_sd)
            life_min = p.cell_life_base + p.cell_life_per_px * sigma
            life_min = float(np.clip(life_min + rng.normal(0.0, p.cell_life_sd), 30.0, 110.0))
            m = 2 * int(np.ceil(3.0 * sigma)) + 3
            noise = ndimage.gaussian_filter(rng.standard_normal((m, m)), 1.5)
            noise /= noise.std() or 1.0
            cell = Cell(
                texture=np.exp(p.cell_texture * noise).astype(np.float32),
                xi=self._M @ np.array([col - c, r - c]) + self._b,
                born=k,
                life=life_min / self.dt,
                peak=float(peak),
                sigma=float(sigma),
                row=r,
                col=col,
                over_land=bool(self.geo.land[r, col]),
                initiation=initiation,
            )
            self.cells.append(cell)
            self._alive.append(cell)

    def _add_cells(self, dbz: np.ndarray, k: int) -> None:
        """Spawn this frame's cells and add the living ones to *dbz* (in place)."""
        self._spawn(dbz, k)
        c = (self.size - 1) / 2.0
        alive = []
        m_inv = np.linalg.inv(self._M)
        for cell in self._alive:
            age = k - cell.born
            if age > cell.life:
                continue
            alive.append(cell)
            x, y = m_inv @ (cell.xi - self._b)
            amp = cell.amplitude(age)
            sigma = cell.radius(age)
            h = int(np.ceil(3.0 * sigma))
            cx, cy = int(round(x + c)), int(round(y + c))
            r0, r1 = max(cy - h, 0), min(cy + h + 1, self.size)
            c0, c1 = max(cx - h, 0), min(cx + h + 1, self.size)
            if r0 >= r1 or c0 >= c1 or amp <= 0.5:
                continue
            yy = (np.arange(r0, r1) - c - y)[:, None]
            xx = (np.arange(c0, c1) - c - x)[None, :]
            m = cell.texture.shape[0] // 2  # texture centred on the cell
            tex = cell.texture[r0 - cy + m : r1 - cy + m, c0 - cx + m : c1 - cx + m]
            bump = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
            add = (amp * bump * tex).astype(np.float32)
            patch = dbz[r0:r1, c0:c1]
            floor = np.float32(self.dbz_thr - 4.0)
            dbz[r0:r1, c0:c1] = np.where(add > 0.5, np.maximum(patch, floor) + add, patch)
        self._alive = alive

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield ``(size, size)`` float32 dBZ fields (no-echo = -10), one per step."""
        for k in range(self.n_steps):
            dbz = self._to_dbz(self._warp(self._latent(k)), k)
            self._add_cells(dbz, k)
            yield dbz
            self._advance(k)
