"""Interpolation skill: hide observed frames, reconstruct them, score against the truth.

:func:`evaluate_interpolation` takes a resampled store (docs/contracts.md, Resampled schema)
and, for each gap length ``L`` (default 1 to 5 slots), picks *cases*: runs of ``L`` observed
slots with an observed slot on each side and the ``window`` slots before all observed,
holding rain (at least ``min_rain_fraction`` of the valid pixels of the hidden frames at or
above 0.5 mm/h). Cases are spread evenly over the record (at most ``max_cases`` per
length, the same cases for every method). Each method of
:func:`nowcast.interpolation.get_interpolator` reconstructs the hidden frames from the frames
around them (one Lucas-Kanade motion estimate per case, shared by the methods that use
motion), and the reconstructions are scored against the hidden truth on the valid pixels
of both neighbours:

- CSI per rain-rate threshold (0.5, 2, 5, 10, 30 mm/h, HKO-7), contingency counts summed
  over all hidden frames (:func:`nowcast.metrics.contingency_counts`);
- B-MSE, the HKO-7 balanced MSE on the p/255 scale (per frame the sum of
  ``w * err^2``, averaged over frames; :func:`nowcast.metrics.balanced_weights`);
- FSS (fractions skill score, Roberts and Lean 2008) per threshold over a square
  neighbourhood of ``fss_scale`` pixels, pooled over the frames (a private implementation:
  the metrics module has none on this branch).

The result is a table (:class:`pandas.DataFrame`, one row per method and gap length);
:func:`skill_markdown` prints it as the table of docs/interpolation.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nowcast.interpolation.methods import estimate_motion, get_interpolator
from nowcast.metrics import balanced_weights, categorical_scores, contingency_counts
from pipeline import units

__all__ = ["evaluate_interpolation", "fss", "skill_markdown"]

CSI_THRESHOLDS_MMH: tuple[float, ...] = (0.5, 2.0, 5.0, 10.0, 30.0)
FSS_THRESHOLDS_MMH: tuple[float, ...] = (0.5, 2.0, 5.0)


def _window_mean(x: np.ndarray, scale: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(x.astype(np.float64), size=(1, scale, scale), mode="constant")


def fss(pred: np.ndarray, obs: np.ndarray, threshold: float, scale: int, mask=None) -> float:
    """Fractions skill score of frames ``(N, H, W)`` pooled over the frames.

    ``1 - sum (Pf - Po)^2 / (sum Pf^2 + sum Po^2)`` with ``Pf``, ``Po`` the fractions of
    pixels at or above *threshold* in ``scale x scale`` windows (outside the frame and
    the mask: no event); NaN when neither field has an event.
    """
    valid = np.ones(pred.shape, bool) if mask is None else np.asarray(mask, bool)
    with np.errstate(invalid="ignore"):
        pf = _window_mean((np.asarray(pred) >= threshold) & valid, scale)
        po = _window_mean((np.asarray(obs) >= threshold) & valid, scale)
    den = float((pf**2).sum() + (po**2).sum())
    return float("nan") if den == 0 else 1.0 - float(((pf - po) ** 2).sum()) / den


def _cases(observed: np.ndarray, rainy: np.ndarray, gap: int, window: int, max_cases: int):
    n = len(observed)
    cands = []
    for a in range(window, n - gap):  # hidden slots a .. a + gap - 1
        lo, hi = a - window, a + gap + 1
        if hi > n or not observed[lo:hi].all():
            continue
        if rainy[a : a + gap].all():
            cands.append(a)
    if len(cands) > max_cases:
        pick = np.linspace(0, len(cands) - 1, max_cases).round().astype(int)
        cands = [cands[i] for i in np.unique(pick)]
    return cands


def _rate(norm: np.ndarray) -> np.ndarray:
    dbz = units.normalized_to_dbz(norm)
    return np.where(norm <= 1e-6, 0.0, units.dbz_to_rainrate(dbz))


def evaluate_interpolation(
    store,
    methods: Sequence[str] = ("linear", "advection"),
    gap_lengths: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    run=None,
    predictor: object | None = None,
    window: int = 5,
    max_cases: int = 40,
    min_rain_fraction: float = 0.02,
    fss_scale: int = 5,
) -> pd.DataFrame:
    """Score the interpolation methods on hidden observed frames (module docstring).

    Parameters
    ----------
    store : path or xarray.Dataset
        Resampled store (its ``observed`` slots; filled slots are never used).
    methods : sequence of str
        :data:`nowcast.interpolation.INTERPOLATOR_NAMES` to score.
    gap_lengths : sequence of int
        Hidden run lengths in slots.
    run, predictor
        For ``model`` (a trained run directory, or a predictor).
    window : int
        Slots before a case that must be observed (motion estimate, model inputs).
    max_cases : int
        Cases per gap length at most.
    min_rain_fraction : float
        Wet fraction (>= 0.5 mm/h) a hidden frame must have.
    fss_scale : int
        FSS neighbourhood side, pixels.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``gap``, ``cases``, ``CSI_<thr>`` per threshold, ``B-MSE``,
        ``FSS_<thr>`` per FSS threshold.
    """
    from pipeline.window import as_dataset

    ds = as_dataset(store)
    observed = np.asarray(ds["observed"].values, bool)
    cadence = float(ds.attrs.get("cadence_minutes", 6.0))
    dbz = np.asarray(ds["reflectivity"].values, np.float32)
    mask = np.asarray(ds["mask"].values, bool) & observed[:, None, None] & np.isfinite(dbz)
    norm = np.where(mask, (dbz - units.DBZ_MIN) / units.DBZ_RANGE, 0.0).astype(np.float32)
    norm = np.clip(norm, 0.0, 1.0)
    wet_edge = float(units.rainrate_to_normalized(np.asarray(0.5)))
    n_valid = np.maximum(mask.reshape(len(mask), -1).sum(axis=1), 1)
    rainy = ((norm >= wet_edge) & mask).reshape(len(mask), -1).sum(axis=1) / n_valid
    rainy = rainy >= float(min_rain_fraction)
    interps = {m: get_interpolator(m, run=run, predictor=predictor) for m in methods}
    rows = []
    for gap in gap_lengths:
        gap = int(gap)
        cases = _cases(observed, rainy, gap, int(window), int(max_cases))
        preds = {m: [] for m in methods}
        truth, valid = [], []
        for a in cases:
            before, after = a - 1, a + gap
            hist = norm[before - window + 1 : before + 1]
            hist_mask = mask[before - window + 1 : before + 1]
            frames = np.concatenate([hist, norm[after][None]])
            times = np.r_[np.arange(-(window - 1), 1) * cadence, (gap + 1) * cadence]
            fmask = np.concatenate([hist_mask, mask[after][None]])
            motion = estimate_motion(frames, times, cadence, fmask)
            s = np.arange(1, gap + 1) / (gap + 1)
            ok = mask[before] & mask[after]
            for m, fn in interps.items():
                out = fn(
                    norm[before], norm[after], s, span_steps=float(gap + 1), motion=motion,
                    history=hist, history_mask=hist_mask, cadence_minutes=cadence,
                )  # fmt: skip
                preds[m].append(np.clip(out, 0.0, 1.0))
            truth.append(norm[a : a + gap])
            valid.append(np.broadcast_to(ok & mask[a : a + gap], (gap,) + ok.shape))
        row_base = {"gap": gap, "cases": len(cases)}
        if not cases:
            for m in methods:
                rows.append({"method": m, **row_base})
            continue
        obs_n = np.concatenate(truth)
        val = np.concatenate(valid)
        obs_r = _rate(obs_n)
        weights = balanced_weights(obs_n) * val
        for m in methods:
            pred_n = np.concatenate(preds[m])
            pred_r = _rate(pred_n)
            counts = contingency_counts(pred_r, obs_r, CSI_THRESHOLDS_MMH, val).sum(axis=0)
            csi = categorical_scores(*counts.T)["CSI"]
            bmse = float(np.mean((weights * (pred_n - obs_n) ** 2).sum(axis=(1, 2))))
            row = {"method": m, **row_base}
            row |= {f"CSI_{t:g}": float(c) for t, c in zip(CSI_THRESHOLDS_MMH, csi, strict=True)}
            row["B-MSE"] = bmse
            for t in FSS_THRESHOLDS_MMH:
                row[f"FSS_{t:g}"] = fss(pred_r, obs_r, t, fss_scale, val)
            rows.append(row)
    return pd.DataFrame(rows)


def skill_markdown(table: pd.DataFrame, title: str = "") -> str:
    """The table as Markdown (scores to 3 decimals, B-MSE to 1), one row per method and gap."""
    cols = [c for c in table.columns]
    lines = ([f"**{title}**", ""] if title else []) + [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                cells.append("" if np.isnan(v) else (f"{v:.1f}" if c == "B-MSE" else f"{v:.3f}"))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
