"""The fractions skill score (Roberts and Lean 2008), streamed as per-frame sums.

For a threshold and a square neighbourhood of ``n`` pixels a side, both fields become
binary (value >= threshold, only where the target is valid), each is smoothed by an
``n x n`` moving average with zeros outside the frame (``scipy.ndimage.uniform_filter``,
``mode="constant"``: the convention of ``pysteps.verification.spatialscores.fss``), and

    FSS = 1 - sum (P_f - P_o)^2 / (sum P_f^2 + sum P_o^2)

with the sums over pixels and frames. :func:`fss_sums` returns, per frame, the numerator
and the denominator; summing them over any set of frames (sequences, a bootstrap resample)
and dividing gives that set's FSS (:func:`fss_from_sums`), so no field is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_FSS_SCALES_KM", "fss_from_sums", "fss_sums", "scales_to_pixels"]

DEFAULT_FSS_SCALES_KM: tuple[float, ...] = (10.0, 20.0, 40.0)
"""Neighbourhood sides (km) at which ``nowcast evaluate`` scores the FSS."""


def scales_to_pixels(scales_km: Sequence[float], pixel_km: float) -> tuple[int, ...]:
    """Neighbourhood sides in km -> whole pixels (rounded, at least 1).

    Parameters
    ----------
    scales_km : sequence of float
        Sides of the square neighbourhoods (km).
    pixel_km : float
        The store's pixel size (km).

    Returns
    -------
    tuple of int
        Sides in pixels, one per scale.
    """
    if not pixel_km > 0:
        raise ValueError(f"pixel size must be positive (km); got {pixel_km}")
    bad = [s for s in scales_km if not s > 0]
    if bad:
        raise ValueError(f"FSS scales must be positive (km); got {list(scales_km)}")
    return tuple(max(1, int(round(float(s) / pixel_km))) for s in scales_km)


def _fractions(binary: np.ndarray, n: int) -> np.ndarray:
    """``n x n`` moving average of ``(N, H, W)`` frames, zeros outside (pysteps' convention)."""
    from scipy.ndimage import uniform_filter1d

    if n <= 1:
        return binary
    out = uniform_filter1d(binary, int(n), axis=-1, mode="constant", cval=0.0)
    return uniform_filter1d(out, int(n), axis=-2, mode="constant", cval=0.0)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame sum of ``a * b`` of ``(N, H, W)`` float32 frames, as float64 ``(N,)``."""
    n = a.shape[0]
    r = np.matmul(a.reshape(n, 1, -1), b.reshape(n, -1, 1))
    return r.reshape(n).astype(np.float64)


def fss_sums(
    pred: np.ndarray,
    obs: np.ndarray,
    thresholds: Sequence[float],
    scales_px: Sequence[int],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Per-frame FSS numerator and denominator.

    Parameters
    ----------
    pred, obs : numpy.ndarray
        ``(..., H, W)`` forecast and observed fields, in the unit of ``thresholds``.
    thresholds : sequence of float
        Event thresholds (value >= threshold is an event).
    scales_px : sequence of int
        Neighbourhood sides in pixels (1: the pixel itself).
    mask : numpy.ndarray, optional
        ``(..., H, W)``, true where the observation is valid; elsewhere neither field has
        an event.

    Returns
    -------
    numpy.ndarray
        float64 ``(..., K, S, 2)``: ``sum (P_f - P_o)^2`` and ``sum P_f^2 + sum P_o^2`` over
        each frame's pixels, per threshold ``K`` and scale ``S``. Frames without an event
        in either field add zeros (and cost nothing). Fractions are float32; the sums are
        per-frame dot products, so ``sum (P_f - P_o)^2`` is
        ``sum P_f^2 + sum P_o^2 - 2 sum P_f P_o``.
    """
    pred = np.asarray(pred)
    obs = np.asarray(obs)
    if pred.shape != obs.shape or pred.ndim < 2:
        raise ValueError(f"pred {pred.shape} and obs {obs.shape} must be equal (..., H, W)")
    lead = pred.shape[:-2]
    h, w = pred.shape[-2:]
    p = pred.reshape(-1, h, w)
    o = obs.reshape(-1, h, w)
    m = np.ones(p.shape, dtype=bool) if mask is None else np.asarray(mask, bool).reshape(p.shape)
    out = np.zeros((p.shape[0], len(thresholds), len(scales_px), 2), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        for k, thr in enumerate(thresholds):
            fb = (p >= thr) & m
            ob = (o >= thr) & m
            some = np.flatnonzero(fb.any(axis=(-2, -1)) | ob.any(axis=(-2, -1)))
            if some.size == 0:
                continue
            fb = fb[some].astype(np.float32)
            ob = ob[some].astype(np.float32)
            for j, n in enumerate(scales_px):
                fs, os_ = _fractions(fb, n), _fractions(ob, n)
                ff, oo, fo = _dot(fs, fs), _dot(os_, os_), _dot(fs, os_)
                out[some, k, j, 0] = np.maximum(ff + oo - 2.0 * fo, 0.0)
                out[some, k, j, 1] = ff + oo
    return out.reshape(lead + out.shape[1:])


def fss_from_sums(sums: np.ndarray) -> np.ndarray:
    """FSS from summed numerators and denominators (``(..., 2)`` -> ``(...)``).

    NaN where the denominator is 0 (no event in either field at any pixel).
    """
    sums = np.asarray(sums, dtype=np.float64)
    num, den = sums[..., 0], sums[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 1.0 - num / np.where(den > 0, den, 1.0), np.nan)
