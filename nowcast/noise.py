"""Stochastic perturbation fields of the ensembles: power-law and cascade-like noise.

:func:`powerlaw_noise`
    Gaussian random fields with a power spectrum ``k**-beta`` (unit variance), used for the
    motion perturbations.
:func:`band_autocorrelation` and :func:`band_power`
    Per scale band (``n_bands`` octave-like rings of radial wavenumber, as the levels of a
    STEPS cascade), the lag-1 correlation between two fields and a field's power, both
    estimated from the inputs of a nowcast.
:func:`cascade_noise`
    A scale-dependent noise whose predictability decays with lead, as in STEPS: in Fourier
    space each wavenumber follows an AR(1) ``W_s = rho_k W_{s-1} + sqrt(1 - rho_k**2) E_s``
    started at ``W_0 = 0`` (``E_s`` white), so after ``s`` steps the fraction
    ``1 - rho_k**(2 s)`` of the variance at scale ``k`` is random; the noise has the
    observed field's power per band times that fraction. Small scales, whose ``rho_k`` is
    low, become unpredictable within a few steps, large ones slowly.

Conventions: fields ``(..., H, W)``; wavenumbers in cycles per pixel (numpy ``fftfreq``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "band_autocorrelation",
    "band_index",
    "band_power",
    "cascade_noise",
    "powerlaw_noise",
]


def _radial_k(h: int, w: int) -> np.ndarray:
    """``(H, W // 2 + 1)`` radial wavenumber (cycles per pixel) of the rfft2 grid."""
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(kx**2 + ky**2)


def powerlaw_noise(rng: np.random.Generator, shape: tuple[int, ...], beta: float) -> np.ndarray:
    """Gaussian random fields with a power-law spectrum, unit variance per field.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the white noise.
    shape : tuple of int
        ``(..., H, W)``; every leading index is an independent field.
    beta : float
        Spectral exponent of the power spectrum ``P(k) ~ k**-beta`` (0 = white noise;
        rainfall fields are near 3, motion fields smoother).

    Returns
    -------
    numpy.ndarray
        ``shape`` float32, each field of mean 0 and standard deviation 1.
    """
    h, w = shape[-2:]
    white = rng.standard_normal(shape)
    k = _radial_k(h, w)
    k[0, 0] = np.inf  # no mean
    filt = k ** (-beta / 2.0)
    filt[0, 0] = 0.0
    f = np.fft.irfft2(np.fft.rfft2(white) * filt, s=(h, w))
    f -= f.mean(axis=(-2, -1), keepdims=True)
    std = f.std(axis=(-2, -1), keepdims=True)
    return (f / np.where(std > 0, std, 1.0)).astype(np.float32)


def band_index(h: int, w: int, n_bands: int = 6) -> np.ndarray:
    """``(H, W // 2 + 1)`` int: the scale band of each rfft2 wavenumber, -1 for the mean.

    Band edges are geometric between the lowest wavenumber ``1 / max(H, W)`` and the
    highest (``sqrt(0.5)``), so each band spans the same ratio of scales (an octave for
    ``n_bands = 6`` at 80 x 80, as the levels of pysteps' cascades); band 0 is the largest
    scales.
    """
    if int(n_bands) < 1:
        raise ValueError(f"n_bands must be >= 1; got {n_bands}")
    k = _radial_k(h, w)
    edges = np.geomspace(1.0 / max(h, w), np.sqrt(0.5) + 1e-9, int(n_bands) + 1)
    idx = np.clip(np.searchsorted(edges, k, side="right") - 1, 0, int(n_bands) - 1)
    idx[0, 0] = -1
    return idx


def band_power(field: np.ndarray, bands: np.ndarray, n_bands: int) -> np.ndarray:
    """Mean power ``|F(k)|**2 / (H W)`` per band of a field ``(H, W)`` -> ``(n_bands,)``.

    With these units a field's variance is the sum of its power over the full (two-sided)
    spectrum divided by ``H W``; white noise of variance ``s**2`` has power ``s**2`` at every
    wavenumber.
    """
    h, w = field.shape[-2:]
    spec = np.abs(np.fft.rfft2(field - field.mean())) ** 2 / (h * w)
    out = np.zeros(int(n_bands))
    for j in range(int(n_bands)):
        sel = bands == j
        out[j] = spec[sel].mean() if sel.any() else 0.0
    return out


def band_autocorrelation(
    a: np.ndarray, b: np.ndarray, bands: np.ndarray, n_bands: int, floor: float = 0.0
) -> np.ndarray:
    """Correlation of two fields ``(H, W)`` per scale band -> ``(n_bands,)`` in [floor, 0.999].

    ``sum Re(A conj(B)) / sqrt(sum |A|**2 sum |B|**2)`` over each band's wavenumbers (the
    correlation of the two fields band-pass filtered to the band); a band with no power in
    either field gets ``floor``.
    """
    fa = np.fft.rfft2(a - a.mean())
    fb = np.fft.rfft2(b - b.mean())
    out = np.full(int(n_bands), float(floor))
    for j in range(int(n_bands)):
        sel = bands == j
        den = np.sqrt(np.sum(np.abs(fa[sel]) ** 2) * np.sum(np.abs(fb[sel]) ** 2))
        if den > 0:
            out[j] = float(np.sum((fa[sel] * np.conj(fb[sel])).real) / den)
    return np.clip(out, float(floor), 0.999)


def cascade_noise(
    rng: np.random.Generator,
    n_steps: int,
    shape: tuple[int, int],
    rho: np.ndarray,
    power: np.ndarray,
    n_bands: int | None = None,
) -> np.ndarray:
    """Noise fields after 0, 1, ..., ``n_steps`` steps, scale by scale (see the module doc).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the white noise (``n_steps`` fields of ``shape``).
    n_steps : int
        Number of steps.
    shape : (H, W)
        Field size.
    rho : numpy.ndarray
        ``(n_bands,)`` lag-1 (one step) correlation per band (:func:`band_index` bands).
    power : numpy.ndarray
        ``(n_bands,)`` power per band (:func:`band_power`) of the field to imitate.
    n_bands : int, optional
        Default ``len(rho)``.

    Returns
    -------
    numpy.ndarray
        ``(n_steps + 1, H, W)`` float32; entry ``s`` has, in band ``j``, the power
        ``power[j] * (1 - rho[j]**(2 s))`` (entry 0 is zero); consecutive entries are
        correlated as the AR(1) says.
    """
    h, w = shape
    nb = len(rho) if n_bands is None else int(n_bands)
    rho = np.asarray(rho, dtype=np.float64)
    power = np.asarray(power, dtype=np.float64)
    if rho.shape != (nb,) or power.shape != (nb,):
        raise ValueError(f"rho and power must be ({nb},); got {rho.shape} and {power.shape}")
    if np.any((rho < 0) | (rho >= 1)) or np.any(power < 0):
        raise ValueError(f"rho must lie in [0, 1) and power >= 0; got {rho} and {power}")
    bands = band_index(h, w, nb)
    r = np.where(bands >= 0, rho[np.maximum(bands, 0)], 0.0)
    amp = np.where(bands >= 0, np.sqrt(power[np.maximum(bands, 0)]), 0.0)
    innov = np.sqrt(1.0 - r**2)
    out = np.zeros((int(n_steps) + 1, h, w), dtype=np.float32)
    state = np.zeros(r.shape, dtype=np.complex128)
    for s in range(1, int(n_steps) + 1):
        white = np.fft.rfft2(rng.standard_normal((h, w)))  # power 1 per wavenumber
        state = r * state + innov * white
        out[s] = np.fft.irfft2(amp * state, s=(h, w))
    return out
