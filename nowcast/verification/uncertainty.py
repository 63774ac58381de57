"""Confidence intervals and paired differences of every score, per case and pooled.

:func:`score_uncertainty` turns the per-sequence sums of :func:`nowcast.scoring.evaluate_predictors`
(``per_sequence=True``; :mod:`nowcast.verification.sequences`) into the variables that
``results.nc`` carries next to the point scores; the method is that of
:mod:`nowcast.verification.bootstrap` (moving-block bootstrap over whole sequences within a
case, stratified by case when pooled; percentile intervals). docs/verification.md explains
the choices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from nowcast.verification.bootstrap import (
    block_resample_weights,
    percentile_interval,
    verdict,
)
from nowcast.verification.sequences import HIGHER_IS_BETTER, scores_from_sums

__all__ = ["POOLED", "score_uncertainty"]

POOLED = "pooled"
"""Case label of the pooled scores when several cases are scored."""


def _dims(name: str) -> tuple[str, ...]:
    if name == "FSS":
        return ("threshold", "scale")
    if name in ("POD", "FAR", "CSI", "HSS"):
        return ("threshold",)
    return ()


def _scores(seq: xr.Dataset, weights: np.ndarray | None, idx: np.ndarray) -> dict:
    """Scores of every predictor from the sums over sequences ``idx`` (weights (R, n))."""
    parts = []
    for var in ("seq_counts", "seq_sums", "seq_fss"):
        if var not in seq:
            parts.append(None)
            continue
        a = seq[var].values[:, idx].astype(np.float64)  # (P, n, ...)
        if weights is None:
            parts.append(a.sum(axis=1))
        else:
            flat = a.reshape(a.shape[0], a.shape[1], -1)
            r = np.einsum("rn,pnf->rpf", weights, flat)
            parts.append(r.reshape((weights.shape[0], a.shape[0]) + a.shape[2:]))
    return scores_from_sums(*parts)


def score_uncertainty(
    seq: xr.Dataset,
    cases: Sequence[str],
    blocks: Mapping[str, int],
    *,
    n_resamples: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    reference: str | None = None,
) -> xr.Dataset:
    """Intervals, per-case summaries and paired differences from per-sequence sums.

    Parameters
    ----------
    seq : xarray.Dataset
        ``seq_counts``, ``seq_sums`` (and ``seq_fss``) with dims ``predictor``,
        ``sequence`` (in time order within each case), ``lead_time``, ...
        (:meth:`nowcast.verification.sequences.SequenceAccumulator.result` per predictor).
    cases : sequence of str
        Case (event, store, day) of each sequence, ``len == seq.sizes["sequence"]``.
    blocks : mapping of str to int
        Block length of each case (:func:`nowcast.verification.bootstrap.block_length`),
        capped at half the case's sequences (the ``block_length`` variable: the one used).
    n_resamples : int
        Bootstrap resamples (>= 1).
    level : float
        Confidence level of the intervals.
    seed : int
        Seed of the resampling.
    reference : str, optional
        Predictor the others are compared with (default: the first).

    Returns
    -------
    xarray.Dataset
        Dims ``case`` (each case, then ``pooled`` when there are several), ``predictor``,
        ``baseline`` (the predictors other than the reference), ``lead_time``,
        ``threshold``, ``scale``. Per score S (POD, FAR, CSI, HSS, FSS, B-MSE, B-MAE, MSE,
        MAE, SSIM, PSNR): ``S_lower`` / ``S_upper`` (predictor, lead_time, ...) of the
        per-lead score over all sequences; ``summary_S`` with ``summary_S_lower`` /
        ``summary_S_upper`` (case, predictor, ...); ``paired_diff_S`` (reference minus
        baseline) with ``paired_diff_S_lower`` / ``_upper`` and ``paired_verdict_S``
        (``ahead`` / ``behind`` / ``not distinguishable``, the reference's standing).
        ``n_sequences``, ``block_length`` (used) and ``overlap_windows`` (before the cap)
        (case). Attributes record the level, the
        resamples, the method, the pooling and the reference.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    cases = np.asarray([str(c) for c in cases], dtype=object)
    if len(cases) != seq.sizes["sequence"]:
        raise ValueError(f"{len(cases)} case labels for {seq.sizes['sequence']} sequences")
    names = [str(p) for p in seq["predictor"].values]
    reference = names[0] if reference is None else str(reference)
    if reference not in names:
        raise ValueError(f"unknown reference predictor {reference!r}; valid names: {names}")
    ref = names.index(reference)
    others = [i for i in range(len(names)) if i != ref]
    labels = list(dict.fromkeys(cases))
    rng = np.random.default_rng(seed)
    index = {c: np.flatnonzero(cases == c) for c in labels}
    # a block of half a case or more would make the (circular) resamples near-rotations of
    # the case itself, with an interval of about zero width: cap it at half the case
    used = {c: int(min(max(blocks[c], 1), max(1, len(index[c]) // 2))) for c in labels}
    weights = {c: block_resample_weights(len(index[c]), used[c], n_resamples, rng) for c in labels}
    groups = [(c, index[c], weights[c]) for c in labels]
    if len(labels) > 1:
        groups.append(
            (
                POOLED,
                np.concatenate([index[c] for c in labels]),
                np.concatenate([weights[c] for c in labels], axis=1),
            )
        )
    out: dict[str, tuple] = {}
    summaries: dict[str, list] = {}
    for label, idx, w in groups:
        point = _scores(seq, None, idx)
        boot = _scores(seq, w, idx)
        for name, (_per_lead, summ) in point.items():
            dims = _dims(name)
            b_per, b_sum = boot[name]
            lo, hi = percentile_interval(b_sum, level)
            diff = summ[ref][None] - summ[others]
            b_diff = b_sum[:, ref][:, None] - b_sum[:, others]
            dlo, dhi = percentile_interval(b_diff, level)
            summaries.setdefault(name, []).append((summ, lo, hi, diff, dlo, dhi))
            if label == groups[-1][0]:
                plo, phi = percentile_interval(b_per, level)
                for suffix, arr in (("lower", plo), ("upper", phi)):
                    out[f"{name}_{suffix}"] = (("predictor", "lead_time") + dims, arr)
    case_labels = [g[0] for g in groups]
    for name, rows in summaries.items():
        dims = _dims(name)
        s, lo, hi, d, dlo, dhi = (np.stack([r[i] for r in rows]) for i in range(6))
        out[f"summary_{name}"] = (("case", "predictor") + dims, s)
        out[f"summary_{name}_lower"] = (("case", "predictor") + dims, lo)
        out[f"summary_{name}_upper"] = (("case", "predictor") + dims, hi)
        out[f"paired_diff_{name}"] = (("case", "baseline") + dims, d)
        out[f"paired_diff_{name}_lower"] = (("case", "baseline") + dims, dlo)
        out[f"paired_diff_{name}_upper"] = (("case", "baseline") + dims, dhi)
        out[f"paired_verdict_{name}"] = (
            ("case", "baseline") + dims,
            verdict(dlo, dhi, HIGHER_IS_BETTER[name]),
        )
    n_seq = [len(g[1]) for g in groups]
    blk = [used[c] for c in labels]
    if len(labels) > 1:
        blk.append(-1)
    coords = {
        "case": ("case", np.array(case_labels, dtype=object)),
        "predictor": ("predictor", np.array(names, dtype=object)),
        "baseline": ("baseline", np.array([names[i] for i in others], dtype=object)),
    }
    ds = xr.Dataset(out, coords=coords)
    ds["n_sequences"] = ("case", np.array(n_seq, dtype=np.int64))
    ds["block_length"] = ("case", np.array(blk, dtype=np.int64))
    ds["block_length"].attrs["comment"] = "-1: pooled (each case with its own block length)"
    overlap = [int(max(blocks[c], 1)) for c in labels] + ([-1] if len(labels) > 1 else [])
    ds["overlap_windows"] = ("case", np.array(overlap, dtype=np.int64))
    ds["overlap_windows"].attrs["comment"] = (
        "windows sharing a frame with a window (before the cap at half the case); "
        "n_sequences / overlap_windows is about the case's number of independent blocks"
    )
    pooling = (
        f"{POOLED}: the sums of all {len(labels)} cases; resampled stratified by case (each "
        "case block-resampled on its own with its own length and block length)"
        if len(labels) > 1
        else "one case"
    )
    ds.attrs.update(
        {
            "confidence_level": float(level),
            "bootstrap_resamples": int(n_resamples),
            "bootstrap_seed": int(seed),
            "bootstrap_method": (
                "circular moving-block bootstrap over whole sequences in time order within "
                "each case; "
                "block length = windows sharing a frame; scores of a resample from its summed "
                "counts and sums; percentile intervals"
            ),
            "pooling": pooling,
            "paired_reference": reference,
            "paired_difference": "reference minus baseline, on the same resamples",
        }
    )
    return ds
