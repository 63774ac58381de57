"""Block averaging of radar frames in a physically additive space (linear Z or rain rate).

Shared by the resampler (:mod:`pipeline.resample`, which re-exports :func:`downsize`) and by
forecasting (``nowcast.forecast`` downsizes input windows to a model's grid the same way).
"""

from __future__ import annotations

import numpy as np

from pipeline import units

__all__ = ["downsize"]


def _z_forward(dbz: np.ndarray) -> np.ndarray:
    return np.power(10.0, dbz / 10.0)


def _z_inverse(z: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(z)


_AVERAGES = {
    "z": (_z_forward, _z_inverse),
    "rainrate": (units.dbz_to_rainrate, units.rainrate_to_dbz),
}


def _check_average(average: str) -> str:
    key = str(average).lower()
    if key not in _AVERAGES:
        raise ValueError(f"unknown average {average!r}; valid names: {sorted(_AVERAGES)}")
    return key


def downsize(
    dbz: np.ndarray,
    valid: np.ndarray,
    factor: int,
    average: str = "z",
    min_valid_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Block-average reflectivity frames in linear Z (or rain-rate) space.

    Parameters
    ----------
    dbz : numpy.ndarray, shape (T, H, W)
        Reflectivity in dBZ.
    valid : numpy.ndarray of bool, shape (T, H, W)
        True where a fine pixel may be used.
    factor : int
        Block size; must divide H and W.
    average : {"z", "rainrate"}
        Space in which the mean is taken (linear reflectivity ``10**(dBZ/10)``, or rain
        rate with HKO-7's Z-R relation).
    min_valid_fraction : float
        A coarse pixel is valid when at least this fraction of its fine pixels is valid.

    Returns
    -------
    dbz_coarse : numpy.ndarray of float32, shape (T, H // factor, W // factor)
        dBZ of the mean over the valid fine pixels; NaN where a block has none.
    valid_coarse : numpy.ndarray of bool, same shape
        Coarse validity.
    """
    forward, inverse = _AVERAGES[_check_average(average)]
    if not 0.0 < min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction must be in (0, 1], got {min_valid_fraction}")
    if dbz.ndim != 3 or dbz.shape != valid.shape:
        raise ValueError(f"dbz and valid must both be (T, H, W), got {dbz.shape} and {valid.shape}")
    t, h, w = dbz.shape
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"factor {factor} does not divide the frame shape {(h, w)}")
    use = valid & np.isfinite(dbz)
    lin = forward(np.where(use, dbz, 0.0).astype(np.float64))
    return _block_mean(lin, use, factor, inverse, min_valid_fraction)


def _block_sum(a: np.ndarray, factor: int, dtype: type) -> np.ndarray:
    """Sum of ``(T, H, W)`` over ``factor x factor`` blocks by strided adds (fast in numpy)."""
    cols = a[:, :, 0::factor].astype(dtype)
    for k in range(1, factor):
        cols += a[:, :, k::factor]
    out = cols[:, 0::factor, :].copy()
    for k in range(1, factor):
        out += cols[:, k::factor, :]
    return out


def _block_mean(
    lin: np.ndarray, use: np.ndarray, factor: int, inverse, min_valid_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``lin`` over the ``use`` pixels of each block, mapped back with ``inverse``."""
    np.multiply(lin, use, out=lin)  # lin is finite everywhere: zero the unused pixels
    total = _block_sum(lin, factor, np.float64)
    count = _block_sum(use, factor, np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    out = np.where(count > 0, inverse(mean), np.nan).astype(np.float32)
    valid_coarse = count >= min_valid_fraction * factor * factor
    return out, valid_coarse
