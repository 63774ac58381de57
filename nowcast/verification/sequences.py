"""Per-sequence sums of the scores: what a bootstrap over sequences resamples.

Every score of the evaluation is a ratio of sums over frames (contingency counts for
POD / FAR / CSI / HSS, sums of B-MSE and of per-frame MSE, MAE, SSIM, PSNR with their frame
counts, FSS numerators and denominators). :class:`SequenceAccumulator` keeps those sums per
sequence (sample) and lead time, a few hundred numbers per sequence, so any weighted sum of
sequences (a resample) gives that resample's scores through :func:`scores_from_sums`
without a forecast in memory. The full sums give exactly the scores of
:class:`nowcast.metrics.MetricAccumulator` and :func:`nowcast.reports.summarize`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from nowcast.metrics import _SUM_FIELDS, categorical_scores
from nowcast.verification.fss import fss_from_sums, fss_sums, scales_to_pixels

__all__ = [
    "CATEGORICAL",
    "HIGHER_IS_BETTER",
    "PER_FRAME",
    "SequenceAccumulator",
    "scores_from_sums",
]

CATEGORICAL = ("POD", "FAR", "CSI", "HSS")
"""Scores from contingency counts (dims ``..., lead_time, threshold``)."""
PER_FRAME = ("MSE", "MAE", "SSIM", "PSNR")
"""Per-frame means, summarised as means over all valid frames."""
HIGHER_IS_BETTER = {
    "POD": True,
    "FAR": False,
    "CSI": True,
    "HSS": True,
    "FSS": True,
    "B-MSE": False,
    "B-MAE": False,
    "MSE": False,
    "MAE": False,
    "SSIM": True,
    "PSNR": True,
}
"""Orientation of every score (the verdict of a paired difference depends on it)."""


class SequenceAccumulator:
    """Per-sequence, per-lead sums of the scores, fed by :meth:`MetricAccumulator.update`.

    Parameters
    ----------
    thresholds_norm : sequence of float
        FSS thresholds on the p/255 scale (those of the categorical scores).
    scales_km : sequence of float
        FSS neighbourhood sides in km; empty: no FSS.
    """

    def __init__(self, thresholds_norm: Sequence[float], scales_km: Sequence[float] = ()) -> None:
        self.thresholds_norm = tuple(float(t) for t in thresholds_norm)
        self.scales_km = tuple(float(s) for s in scales_km)
        self._rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []

    def add(
        self, stats: dict[str, np.ndarray], first_index: int, pixel_km: np.ndarray | None = None
    ) -> None:
        """Add one batch's per-frame statistics (the return of ``MetricAccumulator.update``).

        Parameters
        ----------
        stats : dict
            ``lead`` (B, T), ``counts`` (B, T, K, 4), ``valid``, ``ssim_valid``, ``bmse``,
            ``bmae``, ``mse``, ``mae``, ``ssim``, ``psnr`` (B, T) and ``pred``, ``target``,
            ``mask`` (B, T, H, W).
        first_index : int
            Dataset index of the batch's first sample.
        pixel_km : numpy.ndarray, optional
            ``(B,)`` pixel size (km) of each sample's store; needed with FSS scales (stores
            of several pixel sizes each get their own neighbourhood in pixels).
        """
        valid = stats["valid"].astype(np.float64)
        svalid = stats["ssim_valid"].astype(np.float64)
        cols = {
            "n_frames": np.ones_like(valid),
            "n_valid_frames": valid,
            "n_ssim_frames": svalid,
            **{k: np.asarray(stats[k], dtype=np.float64) for k in ("bmse", "bmae")},
            **{k: np.asarray(stats[k], dtype=np.float64) for k in ("mse", "mae", "psnr")},
            "ssim": np.asarray(stats["ssim"], dtype=np.float64),
        }
        sums = np.stack([cols[f] for f in _SUM_FIELDS], axis=-1)  # (B, T, F)
        fss = None
        if self.scales_km:
            if pixel_km is None:
                raise ValueError("FSS scales in km need the pixel size of every sample")
            px = np.array([scales_to_pixels(self.scales_km, float(v)) for v in pixel_km])
            n_thr, n_sc = len(self.thresholds_norm), len(self.scales_km)
            fss = np.zeros(valid.shape + (n_thr, n_sc, 2))
            for row in np.unique(px, axis=0):
                sel = (px == row).all(axis=1)
                fss[sel] = fss_sums(
                    stats["pred"][sel],
                    stats["target"][sel],
                    self.thresholds_norm,
                    tuple(int(v) for v in row),
                    stats["mask"][sel],
                )
        for b in range(valid.shape[0]):
            self._rows.append(
                (
                    first_index + b,
                    np.asarray(stats["lead"][b], dtype=np.float64),
                    np.asarray(stats["counts"][b], dtype=np.int64),
                    sums[b],
                    None if fss is None else fss[b],
                )
            )

    def result(self, lead_times: Sequence[float]) -> xr.Dataset:
        """The sums as a Dataset with dims ``sequence``, ``lead_time`` (and threshold, scale).

        Parameters
        ----------
        lead_times : sequence of float
            The lead-time coordinate to scatter into (minutes; every lead seen must be in it).

        Returns
        -------
        xarray.Dataset
            ``seq_counts`` (sequence, lead_time, threshold, category: hits, false alarms,
            misses, correct negatives; int64), ``seq_sums`` (sequence, lead_time, field:
            :data:`nowcast.metrics._SUM_FIELDS`), ``seq_fss`` (sequence, lead_time,
            threshold, scale, part: numerator, denominator) when scales were given;
            coordinate ``sequence`` = dataset index. Frames missing at a lead add zeros.
        """
        leads = np.asarray(lead_times, dtype=np.float64)
        n = len(self._rows)
        k = len(self.thresholds_norm)
        counts = np.zeros((n, len(leads), k, 4), dtype=np.int64)
        sums = np.zeros((n, len(leads), len(_SUM_FIELDS)), dtype=np.float64)
        fss = np.zeros((n, len(leads), k, len(self.scales_km), 2), dtype=np.float64)
        index = np.zeros(n, dtype=np.int64)
        for i, (idx, lead, c, s, f) in enumerate(self._rows):
            pos = np.searchsorted(leads, lead)
            if (pos >= len(leads)).any() or not np.allclose(
                leads[np.minimum(pos, len(leads) - 1)], lead
            ):
                raise ValueError(f"lead times {lead} are not all in {leads}")
            index[i] = idx
            np.add.at(counts[i], pos, c)
            np.add.at(sums[i], pos, s)
            if f is not None:
                np.add.at(fss[i], pos, f)
        data = {
            "seq_counts": (("sequence", "lead_time", "threshold", "category"), counts),
            "seq_sums": (("sequence", "lead_time", "field"), sums),
        }
        if self.scales_km:
            data["seq_fss"] = (("sequence", "lead_time", "threshold", "scale", "part"), fss)
        coords = {
            "sequence": index,
            "category": ["hits", "false_alarms", "misses", "correct_negatives"],
            "field": list(_SUM_FIELDS),
        }
        if self.scales_km:
            coords["part"] = ["numerator", "denominator"]
        return xr.Dataset(data, coords=coords)


def scores_from_sums(
    counts: np.ndarray, sums: np.ndarray, fss: np.ndarray | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-lead and summary scores from (summed) per-lead sums, any leading dims.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(..., L, K, 4)`` contingency counts.
    sums : numpy.ndarray
        ``(..., L, F)`` sums of :data:`nowcast.metrics._SUM_FIELDS`.
    fss : numpy.ndarray, optional
        ``(..., L, K, S, 2)`` FSS numerators and denominators.

    Returns
    -------
    dict
        Score -> ``(per_lead, summary)``: per lead ``(..., L[, K[, S]])``; summary over lead
        times as :func:`nowcast.reports.summarize` does it (categorical scores, FSS, B-MSE,
        B-MAE: the mean over the lead times where defined; MSE, MAE, SSIM, PSNR: weighted by
        the valid frames), ``(...[, K[, S]])``.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cat = categorical_scores(*(counts[..., i] for i in range(4)))
    f = {name: sums[..., j] for j, name in enumerate(_SUM_FIELDS)}

    def div(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)

    def lead_mean(x, axis):
        ok = np.isfinite(x)
        n = ok.sum(axis=axis)
        return div(np.where(ok, x, 0.0).sum(axis=axis), n)

    for name in CATEGORICAL:
        out[name] = (cat[name], lead_mean(cat[name], -2))
    if fss is not None and fss.shape[-2] > 0:
        per = fss_from_sums(fss)
        out["FSS"] = (per, lead_mean(per, -3))
    for name, key in (("B-MSE", "bmse"), ("B-MAE", "bmae")):
        per = div(f[key], f["n_frames"])
        out[name] = (per, lead_mean(per, -1))
    nv = f["n_valid_frames"]
    for name, key, den in (
        ("MSE", "mse", "n_valid_frames"),
        ("MAE", "mae", "n_valid_frames"),
        ("SSIM", "ssim", "n_ssim_frames"),
        ("PSNR", "psnr", "n_valid_frames"),
    ):
        per = div(f[key], f[den])
        out[name] = (per, div((np.nan_to_num(per) * nv).sum(axis=-1), nv.sum(axis=-1)))
    return out
