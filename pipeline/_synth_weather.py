"""Private weather engine of :mod:`pipeline.synthetic`: evolving dBZ fields on the HKO-7 grid.

Model (STEPS / S-PROG-like, documented in :mod:`pipeline.synthetic`):

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
* Per frame the field is standardised over the radar disc and mapped to dBZ: a time-varying
  quantile ``1 - f(t)`` sits at the 0.5 mm/h rain threshold (``f`` = rain coverage, with dry
  spells); above it ``dBZ = dbz_thr + c(t) * excess**gamma`` (long tail), below it weak echo
  fading linearly to "no echo" (pixel 0).
* Convective cells (Poisson births in strong rain, more on convective days) are fixed in
  Lagrangian coordinates and add a Gaussian dBZ bump whose strength follows
  ``peak * sin(pi * age / life) ** 2``: growth, maturity and decay that extrapolation cannot
  predict.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft

from pipeline.units import rainrate_to_dbz

PIXEL_KM = 512.0 / 480.0
"""Grid spacing of HKO-7 frames (512 km over 480 pixels)."""
RADIUS_PX = 240.0
"""Radius (pixels) of the 256 km observation disc centred on the radar."""


@dataclass(frozen=True)
class WeatherParams:
    """Knobs of the synthetic weather (defaults tuned to REFERENCE.md section 10).

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
    coverage_mean, coverage_logit_sd : float
        Rain coverage ``f(t)`` (fraction >= 0.5 mm/h of the disc) is a logit-OU process.
    coverage_tau_min : float
        Correlation time of the coverage process.
    dry_spells : tuple of int
        Inclusive range of the number of dry spells per day.
    dry_spell_hours : tuple of float
        Range of a dry spell's length (hours).
    intensity_c : tuple of float
        Range of the day's dBZ scale ``c`` (dBZ per standardised excess**gamma).
    intensity_gamma : float
        Exponent of the excess above the threshold.
    weak_echo_slope : float
        dBZ per standard deviation below the rain threshold.
    echo_floor_dbz : float
        Weak echo under this becomes "no echo" (pixel 0, -10 dBZ).
    speed_kmh : tuple of float
        Range of the day's mean steering speed (km/h).
    speed_rel_sd, direction_sd_deg : float
        Fluctuations of the steering speed (relative) and direction (degrees).
    rotation_sd : float
        Standard deviation (1/hour) of the rotation rate (rotation keeps the texture isotropic).
    stretch_max : float
        Largest log-stretch ``s`` of the texture (aspect ratio ``exp(2 s)``, 2.0 for 0.35).
    stretch_mean, stretch_sd : float
        Mean and standard deviation of the OU process behind ``s = stretch_max * tanh(ou)``.
    stretch_tau_min : float
        Correlation time of the stretch (about a feature's lifetime: deformation is bounded).
    motion_tau_min : float
        Correlation time of the motion fluctuations.
    convective_day_prob : float
        Probability that a day is convective (more cells).
    cells_active : tuple of float
        Mean number of convective cells alive at a time on (stratiform, convective) days.
    cell_peak_dbz, cell_sigma_px, cell_life_min : tuple of float
        Ranges of a cell's peak dBZ increment, Gaussian radius (pixels) and lifetime (minutes);
        a cell's strength follows ``sin(pi * age / life) ** 2`` (growth, maturity, decay).
    """

    beta: float = -3.3
    scale_break_km: float = 1000.0
    latent_size: int = 512
    latent_px: float = 2.0
    tau_ref_min: float = 35.0
    tau_ref_km: float = 32.0
    tau_exponent: float = 0.9
    tau_max_min: float = 600.0
    coverage_mean: float = 0.24
    coverage_logit_sd: float = 0.3
    coverage_tau_min: float = 120.0
    dry_spells: tuple[int, int] = (0, 2)
    dry_spell_hours: tuple[float, float] = (1.0, 3.0)
    intensity_c: tuple[float, float] = (11.5, 13.0)
    intensity_gamma: float = 0.7
    weak_echo_slope: float = 25.0
    echo_floor_dbz: float = 0.0
    speed_kmh: tuple[float, float] = (45.0, 75.0)
    speed_rel_sd: float = 0.15
    direction_sd_deg: float = 15.0
    rotation_sd: float = 0.06
    stretch_max: float = 0.35
    stretch_mean: float = 0.7
    stretch_sd: float = 0.5
    stretch_tau_min: float = 240.0
    motion_tau_min: float = 180.0
    convective_day_prob: float = 0.35
    cells_active: tuple[float, float] = (1.5, 5.0)
    cell_peak_dbz: tuple[float, float] = (14.0, 26.0)
    cell_sigma_px: tuple[float, float] = (2.5, 6.0)
    cell_life_min: tuple[float, float] = (30.0, 100.0)


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
        The day's random stream (everything is drawn from it: deterministic).
    n_steps : int
        Number of frames.
    params : WeatherParams
    dt_min : float
        Minutes between frames.
    size : int
        Output frame side (pixels).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        n_steps: int,
        params: WeatherParams | None = None,
        dt_min: float = 6.0,
        size: int = 480,
    ) -> None:
        self.p = p = params if params is not None else WeatherParams()
        self.rng = rng
        self.n_steps = n_steps
        self.dt = dt_min
        self.size = size
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
        self._state = self._noise() * self._amp

        # output pixel coordinates (fine pixels, relative to the grid centre)
        c = (size - 1) / 2.0
        coords = np.arange(size, dtype=np.float32) - np.float32(c)
        self._x = coords[None, :]
        self._y = coords[:, None]
        self.disc = disc_mask(size)
        self._sample = self.disc.copy()
        self._sample[::2, :] = False
        self._sample[:, ::2] = False

        # time series of motion, coverage, intensity
        steps = n_steps
        day_speed = rng.uniform(*p.speed_kmh) / PIXEL_KM / 60.0  # fine px per minute
        day_dir = rng.uniform(0.0, 2.0 * np.pi)
        speed = day_speed * np.exp(_ou(rng, steps, dt_min, p.motion_tau_min, p.speed_rel_sd))
        direction = day_dir + np.deg2rad(
            _ou(rng, steps, dt_min, p.motion_tau_min, p.direction_sd_deg)
        )
        self.u0 = np.stack([speed * np.cos(direction), speed * np.sin(direction)], axis=1)
        per_min = 1.0 / 60.0
        self.omega = _ou(rng, steps, dt_min, p.motion_tau_min, p.rotation_sd) * per_min
        self.stretch = p.stretch_max * np.tanh(
            p.stretch_mean + _ou(rng, steps, dt_min, p.stretch_tau_min, p.stretch_sd)
        )
        self.stretch_axis = rng.uniform(0.0, np.pi) + np.deg2rad(
            _ou(rng, steps, dt_min, p.stretch_tau_min, 20.0)
        )
        self._rot = 0.0

        logit = np.log(p.coverage_mean / (1.0 - p.coverage_mean))
        cov = 1.0 / (
            1.0
            + np.exp(-(logit + _ou(rng, steps, dt_min, p.coverage_tau_min, p.coverage_logit_sd)))
        )
        t_min = np.arange(steps) * dt_min
        dry = np.zeros(steps)
        n_dry = int(rng.integers(p.dry_spells[0], p.dry_spells[1] + 1))
        total = steps * dt_min
        for _ in range(n_dry):
            length = rng.uniform(*p.dry_spell_hours) * 60.0
            centre = rng.uniform(0.0, total)
            ramp = 75.0
            d = np.abs(t_min - centre) - (length / 2.0 - ramp)
            w = np.clip(1.0 - d / ramp, 0.0, 1.0)
            dry = np.maximum(dry, 0.5 - 0.5 * np.cos(np.pi * w))
        self.coverage = cov * (1.0 - 0.98 * dry)
        c_day = rng.uniform(*p.intensity_c)
        self.intensity = c_day * np.exp(_ou(rng, steps, dt_min, p.coverage_tau_min, 0.05))
        self.dbz_thr = float(rainrate_to_dbz(0.5))
        self._M = _stretch_matrix(self.stretch[0], self.stretch_axis[0])
        self._b = rng.uniform(0.0, n * p.latent_px, size=2)
        self.convective = bool(rng.random() < p.convective_day_prob)
        active = p.cells_active[1] if self.convective else p.cells_active[0]
        mean_life_steps = 0.5 * (p.cell_life_min[0] + p.cell_life_min[1]) / dt_min
        self._cell_rate = active / mean_life_steps
        self._cells: list[tuple[np.ndarray, int, float, float, float]] = []

    def _noise(self) -> np.ndarray:
        n = self.p.latent_size
        w = self.rng.standard_normal((n, n // 2 + 1, 2), dtype=np.float32)
        return w.view(np.complex64)[..., 0] * np.float32(np.sqrt(0.5))

    def _latent(self) -> np.ndarray:
        n = self.p.latent_size
        return scipy.fft.irfft2(self._state, s=(n, n), workers=1).astype(np.float32, copy=False)

    def _warp(self, latent: np.ndarray) -> np.ndarray:
        p = self.p
        m = self._M / p.latent_px
        b = np.mod(self._b / p.latent_px, p.latent_size)  # the latent field is periodic
        x, y = self._x, self._y
        mx = (np.float32(m[0, 0]) * x + np.float32(b[0])) + np.float32(m[0, 1]) * y
        my = (np.float32(m[1, 0]) * x + np.float32(b[1])) + np.float32(m[1, 1]) * y
        return cv2.remap(latent, mx, my, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)

    def _to_dbz(self, z: np.ndarray, k: int) -> np.ndarray:
        p = self.p
        s = z[self._sample]
        mu = float(s.mean())
        sd = float(s.std()) or 1.0
        z = (z - np.float32(mu)) * np.float32(1.0 / sd)
        z_thr = float(np.quantile((s - mu) / sd, 1.0 - self.coverage[k]))
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
        dt = self.dt
        k1 = min(k + 1, self.n_steps - 1)
        self._rot -= self.omega[k] * dt
        m_new = _rotation(self._rot) @ _stretch_matrix(self.stretch[k1], self.stretch_axis[k1])
        self._b = self._b - 0.5 * (self._M + m_new) @ self.u0[k] * dt
        self._M = m_new
        self._state = self._phi * self._state + self._innov * self._noise()

    def _add_cells(self, dbz: np.ndarray, k: int) -> None:
        """Spawn convective cells in strong rain and add the living ones (in place).

        A cell is fixed in Lagrangian coordinates (it moves with the flow) and lives
        ``life`` minutes with strength ``peak * sin(pi * age / life) ** 2``.
        """
        p, rng = self.p, self.rng
        c = (self.size - 1) / 2.0
        for _ in range(int(rng.poisson(self._cell_rate))):
            strong = (dbz >= 22.0) & self._sample
            cand = np.flatnonzero(strong)
            if len(cand) == 0:
                break
            r, col = divmod(int(cand[rng.integers(len(cand))]), self.size)
            x0 = np.array([col - c, r - c])
            xi = self._M @ x0 + self._b
            self._cells.append(
                (
                    xi,
                    k,
                    rng.uniform(*p.cell_life_min) / self.dt,
                    rng.uniform(*p.cell_peak_dbz),
                    rng.uniform(*p.cell_sigma_px),
                )
            )
        alive = []
        m_inv = np.linalg.inv(self._M)
        for cell in self._cells:
            xi, born, life, peak, sigma = cell
            age = k - born
            if age > life:
                continue
            alive.append(cell)
            x, y = m_inv @ (xi - self._b)
            amp = peak * np.sin(np.pi * age / life) ** 2
            h = int(np.ceil(3.0 * sigma))
            cx, cy = int(round(x + c)), int(round(y + c))
            r0, r1 = max(cy - h, 0), min(cy + h + 1, self.size)
            c0, c1 = max(cx - h, 0), min(cx + h + 1, self.size)
            if r0 >= r1 or c0 >= c1 or amp <= 0.5:
                continue
            yy = (np.arange(r0, r1) - c - y)[:, None]
            xx = (np.arange(c0, c1) - c - x)[None, :]
            add = (amp * np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))).astype(np.float32)
            patch = dbz[r0:r1, c0:c1]
            floor = np.float32(self.dbz_thr - 4.0)
            dbz[r0:r1, c0:c1] = np.where(add > 0.5, np.maximum(patch, floor) + add, patch)
        self._cells = alive

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield ``(size, size)`` float32 dBZ fields (no-echo = -10), one per step."""
        for k in range(self.n_steps):
            dbz = self._to_dbz(self._warp(self._latent()), k)
            self._add_cells(dbz, k)
            yield dbz
            self._advance(k)
