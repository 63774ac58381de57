"""Bootstrap intervals of the scores and paired differences, from per-sequence sums.

The unit resampled is the whole sequence (sample window), never the pixel or the frame:
frames of one sequence share its weather. Within a case (an event, a store, a day) the
sequences are taken in time order and resampled with the **moving-block bootstrap**
(Kunsch 1989) in its circular form (Politis and Romano 1992): blocks of ``l`` consecutive
sequences, wrapping around the case's end, are drawn with replacement and concatenated
up to the case's length. ``l`` is the number of windows that share a frame
with a window (``ceil(span / stride)`` for windows of ``span`` frames every ``stride``
slots; see :func:`block_length`), so two blocks that do not touch share no frame; with
windows that do not overlap ``l = 1``, the plain bootstrap over sequences. Several cases
are pooled by resampling each case on its own, with its own length and block length
(stratified by case), and summing: each resample has every case's number of sequences.

A resample is a vector of multiplicities (how often each sequence was drawn); its scores
are computed from its weighted **sums** (:func:`nowcast.verification.sequences.scores_from_sums`):
a ratio score (CSI, HSS, FSS) of a resample is the ratio of the resample's summed counts,
not a mean of per-sequence ratios. Paired differences use the same resamples for the
reference (the model, or the first predictor) and each other predictor. Intervals are
percentile intervals at ``level`` (e.g. 0.9: the 5th and 95th percentiles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "VERDICTS",
    "block_length",
    "block_resample_weights",
    "percentile_interval",
    "verdict",
]

VERDICTS = ("ahead", "behind", "not distinguishable")
"""Verdicts of a paired difference (reference against another predictor)."""


def block_length(starts: Sequence[int], span: int) -> int:
    """Block length of the moving-block bootstrap for windows starting at ``starts``.

    Parameters
    ----------
    starts : sequence of int
        Start slots of the windows in time order (slots of the store's time grid).
    span : int
        Slots a window covers (input and target frames).

    Returns
    -------
    int
        The largest number of windows starting within ``span`` slots of one window (that
        window included): the windows that share a frame with it; 1 when none overlap.
    """
    s = np.sort(np.asarray(starts, dtype=np.int64))
    if s.size == 0:
        return 1
    ends = np.searchsorted(s, s + int(span), side="left")
    return max(1, int((ends - np.arange(s.size)).max()))


def block_resample_weights(
    n: int, block: int, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Multiplicities of ``n`` ordered sequences in circular block bootstrap resamples.

    ``ceil(n / block)`` blocks of ``block`` consecutive sequences, each starting at a
    uniformly drawn sequence and wrapping around the end (Politis and Romano 1992), cut
    to ``n``: every sequence has the same chance to be drawn, so the resamples' mean
    equals the sample's (the plain moving-block bootstrap draws the first and last
    sequences less often, a bias that matters for the few dozen windows of an event).

    Parameters
    ----------
    n : int
        Sequences of the case, in time order.
    block : int
        Block length (clipped to ``[1, n]``); 1 = the ordinary bootstrap.
    n_resamples : int
        Number of resamples ``R``.
    rng : numpy.random.Generator
        Random source.

    Returns
    -------
    numpy.ndarray
        float64 ``(R, n)``; each row sums to ``n``.
    """
    if n < 1:
        return np.zeros((n_resamples, 0))
    block = int(min(max(block, 1), n))
    k = math.ceil(n / block)
    starts = rng.integers(0, n, size=(n_resamples, k))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_resamples, -1)[:, :n] % n
    w = np.zeros((n_resamples, n), dtype=np.float64)
    np.add.at(w, (np.arange(n_resamples)[:, None], idx), 1.0)
    return w


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (resamples), NaN resamples left out.

    Parameters
    ----------
    samples : numpy.ndarray
        ``(R, ...)`` statistic of each resample.
    level : float
        Coverage, in (0, 1).

    Returns
    -------
    lower, upper : numpy.ndarray
        ``(...)``; NaN where every resample is NaN.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie in (0, 1); got {level}")
    a = (1.0 - level) / 2.0
    samples = np.asarray(samples, dtype=np.float64)
    if samples[0].size == 0:
        return np.zeros(samples.shape[1:]), np.zeros(samples.shape[1:])
    ok = np.isfinite(samples).any(axis=0)
    filled = np.where(ok[None], samples, 0.0)
    with np.errstate(invalid="ignore"):
        q = np.nanquantile(filled, [a, 1.0 - a], axis=0)
    lo, hi = q[0], q[1]
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)


def verdict(lower: np.ndarray, upper: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Verdict of a paired difference ``reference - other`` from its interval.

    ``ahead``: the interval lies wholly on the side where the reference is better;
    ``behind``: wholly on the other side; else (zero inside, or NaN) ``not distinguishable``.

    Returns
    -------
    numpy.ndarray
        Object array of str, the shape of ``lower``.
    """
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    better = lower > 0 if higher_is_better else upper < 0
    worse = upper < 0 if higher_is_better else lower > 0
    out = np.full(lower.shape, VERDICTS[2], dtype=object)
    out[better] = VERDICTS[0]
    out[worse] = VERDICTS[1]
    return out
