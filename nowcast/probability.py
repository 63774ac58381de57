"""Exceedance probabilities from a finite ensemble, behind a name registry.

An ensemble of ``N`` members gives, at each pixel, the number ``k`` of members at or above
a rain threshold. Two estimators of the probability of exceedance are offered
(:func:`get_method`):

``"fraction"``
    ``k / N``, the usual ensemble probability (pysteps ``ensemblestats.excprob``).
``"debiased"``
    The empirical-Bayes posterior mean ``E[p | k]`` of the forecast probability ``p``
    (:func:`debiased_probability`). With members and the truth drawn from the same
    distribution, ``k`` is a binomial draw ``Bin(N, p)``, and among the pixels that share
    one ``k`` the truth exceeds the threshold with frequency ``E[p | k]``, not ``k / N``:
    when most pixels of a field have a small ``p`` (heavy rain is rare) ``E[p | k] < k / N``
    for every ``k >= 1``, so ``k / N`` is over-confident even for a perfect ensemble, the
    more so the fewer the members. The distribution ``g`` of ``p`` over a field is estimated
    from that field's own histogram of ``k`` (nonparametric maximum likelihood of the
    binomial mixture by EM on a grid of ``p``; Kiefer and Wolfowitz 1956, Efron's
    "g-modelling"), frame by frame and threshold by threshold: nothing is fitted to an
    archive. The estimate is monotone in ``k`` within a frame (so it ranks a frame's
    pixels as ``k / N`` does), equals 0 where no member exceeds the threshold anywhere in
    the frame, and tends to ``k / N`` as ``N`` grows. It lowers most probabilities of rare
    events, so an ROC curve drawn at fixed probability thresholds (0, 0.1, ..., 1, as
    :mod:`nowcast.probscores` does) has fewer points above 0 and a smaller trapezoid area.

Both map counts ``(..., H, W)`` to probabilities of the same shape::

    method = get_method("debiased")
    prob = method(counts, n_members)          # counts: (B, T, K, H, W) ints
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["METHODS", "debiased_probability", "fraction_probability", "get_method"]

_GRID = np.linspace(0.0, 1.0, 201)
_EM_ITERATIONS = 400


def fraction_probability(
    counts: np.ndarray, n_members: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """``k / N``: counts ``(..., H, W)`` of members at or above a threshold -> probability.

    ``valid`` is accepted for the common signature and not used.
    """
    n = _check(counts, n_members)
    return np.asarray(counts, dtype=np.float64) / n


def debiased_probability(
    counts: np.ndarray, n_members: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Empirical-Bayes ``E[p | k]`` per frame (see the module docstring).

    Parameters
    ----------
    counts : numpy.ndarray
        ``(..., H, W)`` integers in ``0..n_members``: members at or above the threshold;
        each ``(H, W)`` frame gets its own estimate of the distribution of ``p``.
    n_members : int
        Ensemble size ``N`` (>= 1).
    valid : numpy.ndarray, optional
        Boolean, broadcastable to ``counts``: the pixels whose ``k`` enter the frame's
        histogram (e.g. inside the radar's coverage). Every pixel gets a probability.

    Returns
    -------
    numpy.ndarray
        ``counts``' shape, float64 in ``[0, 1]``.
    """
    n = _check(counts, n_members)
    k = np.asarray(counts)
    if k.ndim < 2:
        raise ValueError(f"counts must be (..., H, W); got shape {k.shape}")
    ok = (
        np.ones(k.shape, bool)
        if valid is None
        else np.broadcast_to(np.asarray(valid, bool), k.shape)
    )
    frames = k.reshape(-1, k.shape[-2] * k.shape[-1]).astype(np.int64)
    oks = ok.reshape(frames.shape)
    out = np.empty(frames.shape, np.float64)
    like = _binomial_table(n)  # (N + 1, G)
    for i in range(frames.shape[0]):
        hist = np.bincount(frames[i][oks[i]], minlength=n + 1).astype(np.float64)
        out[i] = posterior_means(hist, like)[frames[i]]
    return out.reshape(k.shape)


def posterior_means(hist: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """``E[p | k]`` for ``k = 0..N`` from a histogram of counts ``(N + 1,)``.

    ``like`` is the binomial table ``P(k | p)`` on the grid of ``p`` (built when None).
    A histogram with no pixel at ``k >= 1`` gives zeros; an empty one ``k / N``.
    """
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.size - 1
    if n < 1:
        raise ValueError(f"the histogram needs N + 1 >= 2 bins; got {hist.size}")
    if like is None:
        like = _binomial_table(n)
    total = hist.sum()
    if total <= 0:
        return np.arange(n + 1) / n
    if hist[1:].sum() <= 0:  # no pixel exceeds: the frame's p is 0
        return np.zeros(n + 1)
    g = np.full(_GRID.size, 1.0 / _GRID.size)
    for _ in range(_EM_ITERATIONS):
        pk = like @ g
        g = g * (like.T @ (hist / np.maximum(pk, 1e-300))) / total
    pk = like @ g
    post = (like * _GRID[None, :]) @ g / np.maximum(pk, 1e-300)
    # for k with P(k) ~ 0 (not seen, far from the seen ones) fall back to k / N
    post = np.where(pk > 1e-12, post, np.arange(n + 1) / n)
    return np.maximum.accumulate(np.clip(post, 0.0, 1.0))


def _binomial_table(n: int) -> np.ndarray:
    from scipy.stats import binom

    return binom.pmf(np.arange(n + 1)[:, None], n, _GRID[None, :])


def _check(counts, n_members) -> int:
    n = int(n_members)
    if n < 1:
        raise ValueError(f"n_members must be >= 1; got {n_members}")
    k = np.asarray(counts)
    if k.size and (k.min() < 0 or k.max() > n):
        raise ValueError(f"counts must lie in 0..{n} (n_members); got {k.min()}..{k.max()}")
    return n


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "fraction": fraction_probability,
    "debiased": debiased_probability,
}
"""Probability estimators by name (:func:`get_method`)."""


def get_method(name: str) -> Callable[..., np.ndarray]:
    """The estimator ``f(counts, n_members, valid=None) -> probability`` called ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown probability method {name!r}; expected one of {sorted(METHODS)}"
        ) from None
