"""Probabilistic scores of ensemble nowcasts, accumulated over batches.

:class:`EnsembleScoreAccumulator` streams ensembles ``(B, N, T, 1, H, W)`` and targets
``(B, T, 1, H, W)`` (p/255, the target mask selecting valid pixels) per lead time and
scores them with :mod:`pysteps.verification` (``probscores`` and ``ensscores``):

``CRPS`` (predictor, lead_time)
    Continuous ranked probability score on the p/255 scale (for one member it is the MAE).
``reliability`` (lead_time, threshold, prob_bin)
    Observed frequency of exceeding each rain threshold (mm/h, :data:`RAIN_THRESHOLDS_MMH`)
    in each of 10 forecast-probability bins (the probability from the number of members at
    or above the threshold, by the accumulator's ``probability`` estimator,
    :mod:`nowcast.probability`: the finite-ensemble ``"debiased"`` one by default, or the
    fraction ``k / N``); ``reliability_forecast`` the mean forecast probability of the
    bin and ``reliability_count`` its number of pixels. Bins with fewer than ``min_count``
    pixels are NaN. The bins are pysteps' (edges ``linspace(-1e-6, 1 + 1e-6, 11)``, right
    closed), so with 10 members a probability ``k / 10`` falls in the bin whose nominal
    centre ``prob_bin`` is ``k / 10 + 0.05``: plot against ``reliability_forecast``.
``ROC_AUC`` (lead_time, threshold), ``ROC_POD``, ``ROC_POFD`` (..., prob_threshold)
    The ROC curve over 11 probability thresholds 0, 0.1, ..., 1 and its area (pysteps'
    trapezoids).
``rank_histogram`` (lead_time, rank)
    Normalised rank histogram (``N + 1`` ranks) over pixels where the observation or a
    member reaches 0.1 mm/h (pysteps' ``X_min``; ties broken at random by pysteps).
``ensemble_spread``, ``ensemble_mean_rmse`` (lead_time)
    Spread against skill: ``sqrt(mean member variance)`` (unbiased, over members) and the
    RMSE of the ensemble mean, p/255.
``exceedance_count``, ``exceedance_observed`` (lead_time, threshold, members_above)
    The count tables of the probabilities: pixels with ``k = 0..N`` members at or above
    the threshold, and how many of them the observation exceeded. A validation split's
    tables are what :func:`nowcast.calibration.fit_calibration` fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from pipeline.units import RAIN_THRESHOLDS_MMH, rainrate_to_normalized

__all__ = ["EnsembleScoreAccumulator", "exceedance_probability"]

_N_BINS = 10
_N_PROB_THRS = 11
_RANK_MIN_MMH = 0.1


def exceedance_probability(members: np.ndarray, threshold: float) -> np.ndarray:
    """Fraction of members at or above ``threshold``: ``(N, ...) -> (...)``."""
    return (np.asarray(members) >= threshold).mean(axis=0)


class EnsembleScoreAccumulator:
    """Streaming CRPS, reliability, ROC, rank histogram and spread-skill per lead time.

    Parameters
    ----------
    thresholds_mmh : sequence of float
        Rain thresholds (mm/h) of the reliability diagram and ROC curve.
    min_count : int
        Reliability bins with fewer pixels (over all batches) are NaN.
    probability : str
        Estimator of the exceedance probability (reliability and ROC), a name of
        :data:`nowcast.probability.METHODS`; each ``(H, W)`` frame of a sample and lead is
        estimated on its own (its valid target pixels).
    calibration : nowcast.calibration.ProbabilityCalibration, optional
        Score the calibrated probabilities instead (``probability`` is then ignored and
        the results' ``probability_method`` is ``"calibrated"``); it must have every
        threshold and the ensemble's member count.
    """

    def __init__(
        self,
        thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH,
        min_count: int = 10,
        probability: str = "debiased",
        calibration=None,
    ) -> None:
        from nowcast.probability import get_method

        self._estimate = get_method(probability)
        self.calibration = calibration
        self.probability = "calibrated" if calibration is not None else probability
        self.thresholds_mmh = tuple(float(t) for t in thresholds_mmh)
        self.thresholds = [float(rainrate_to_normalized(t)) for t in self.thresholds_mmh]
        self.min_count = int(min_count)
        self.n_members: int | None = None
        self._leads: dict[float, dict] = {}

    def _state(self, lead: float) -> dict:
        from pysteps.verification import ensscores, probscores

        if lead not in self._leads:
            self._leads[lead] = {
                "crps": probscores.CRPS_init(),
                "rel": [probscores.reldiag_init(t, _N_BINS, 0) for t in self.thresholds],
                "roc": [probscores.ROC_curve_init(t, _N_PROB_THRS) for t in self.thresholds],
                "rank": ensscores.rankhist_init(
                    self.n_members, float(rainrate_to_normalized(_RANK_MIN_MMH))
                ),
                "var": 0.0,
                "se": 0.0,
                "n": 0,
                "k_count": np.zeros((len(self.thresholds), self.n_members + 1)),
                "k_observed": np.zeros((len(self.thresholds), self.n_members + 1)),
            }
        return self._leads[lead]

    def update(self, members, target, t_out, target_mask=None) -> None:
        """Add a batch.

        Parameters
        ----------
        members : array-like, shape (B, N, T, 1, H, W)
            Ensemble forecasts, p/255 (tensors are converted).
        target : array-like, shape (B, T, 1, H, W)
            Observations, p/255.
        t_out : array-like, shape (B, T)
            Lead times (min); scores are kept per distinct lead (rounded to 1e-6 min).
        target_mask : array-like, optional, shape of ``target``
            1 = valid pixel; invalid pixels are not scored.
        """
        from pysteps.verification import ensscores, probscores

        f = _np(members).astype(np.float64)
        o = _np(target).astype(np.float64)
        if f.ndim != 6 or o.ndim != 5 or f.shape[:1] + f.shape[2:] != o.shape:
            raise ValueError(
                f"members must be (B, N, T, 1, H, W) and target (B, T, 1, H, W) with the "
                f"same B, T, H, W; got {f.shape} and {o.shape}"
            )
        if self.n_members is None:
            self.n_members = int(f.shape[1])
        elif f.shape[1] != self.n_members:
            raise ValueError(f"expected {self.n_members} members per batch; got {f.shape[1]}")
        if target_mask is not None:
            o = np.where(_np(target_mask) > 0.5, o, np.nan)
        valid = np.isfinite(o[:, :, 0])  # (B, T, H, W)
        leads = np.round(_np(t_out).astype(np.float64), 6)
        counts = [(f[:, :, :, 0] >= thr).sum(axis=1) for thr in self.thresholds]
        if self.calibration is not None:
            probs = [
                self.calibration.probability(c, f.shape[1], t, leads)
                for c, t in zip(counts, self.thresholds_mmh, strict=True)
            ]
        else:
            probs = [self._estimate(c, f.shape[1], valid=valid) for c in counts]
        # (B, T, H, W) each
        for lead in np.unique(leads):
            bi, ti = np.nonzero(leads == lead)
            fl = np.moveaxis(f[bi, :, ti], 1, 0).reshape(f.shape[1], -1)  # (N, P)
            ol = o[bi, ti].reshape(-1)
            st = self._state(float(lead))
            ok = np.isfinite(ol)
            if not ok.any():
                continue
            fl, ol = fl[:, ok], ol[ok]
            probscores.CRPS_accum(st["crps"], fl, ol)
            for k in range(len(self.thresholds)):
                prob = probs[k][bi, ti].reshape(-1)[ok]
                probscores.reldiag_accum(st["rel"][k], prob, ol)
                probscores.ROC_curve_accum(st["roc"][k], prob, ol)
                above = counts[k][bi, ti].reshape(-1)[ok]
                st["k_count"][k] += np.bincount(above, minlength=self.n_members + 1)
                st["k_observed"][k] += np.bincount(
                    above, weights=(ol >= self.thresholds[k]), minlength=self.n_members + 1
                )
            ensscores.rankhist_accum(st["rank"], fl, ol)
            mean = fl.mean(axis=0)
            if fl.shape[0] > 1:
                st["var"] += float(fl.var(axis=0, ddof=1).sum())
            st["se"] += float(((mean - ol) ** 2).sum())
            st["n"] += int(ol.size)

    def result(self) -> xr.Dataset:
        """Scores as an :class:`xarray.Dataset` (see the module docstring for variables)."""
        from pysteps.verification import ensscores, probscores

        if not self._leads:
            raise ValueError("no batch was accumulated")
        leads = sorted(self._leads)
        nt, nl = len(self.thresholds), len(leads)
        crps = np.full(nl, np.nan)
        rel = np.full((nl, nt, _N_BINS), np.nan)
        relf = np.full((nl, nt, _N_BINS), np.nan)
        relc = np.zeros((nl, nt, _N_BINS), dtype=np.int64)
        auc = np.full((nl, nt), np.nan)
        pod = np.full((nl, nt, _N_PROB_THRS), np.nan)
        pofd = np.full((nl, nt, _N_PROB_THRS), np.nan)
        rank = np.full((nl, self.n_members + 1), np.nan)
        spread = np.full(nl, np.nan)
        rmse = np.full(nl, np.nan)
        k_count = np.stack([self._leads[lead]["k_count"] for lead in leads])
        k_observed = np.stack([self._leads[lead]["k_observed"] for lead in leads])
        with np.errstate(invalid="ignore", divide="ignore"):
            for i, lead in enumerate(leads):
                st = self._leads[lead]
                if st["n"] == 0:
                    continue
                crps[i] = probscores.CRPS_compute(st["crps"])
                for k in range(nt):
                    r = st["rel"][k]
                    count = r["num_idx"]
                    full = count >= max(self.min_count, 1)
                    relc[i, k] = count
                    rel[i, k] = np.where(full, r["Y_sum"] / np.maximum(count, 1), np.nan)
                    relf[i, k] = np.where(full, r["X_sum"] / np.maximum(count, 1), np.nan)
                    pofd_k, pod_k, area = probscores.ROC_curve_compute(st["roc"][k], True)
                    pod[i, k], pofd[i, k], auc[i, k] = pod_k, pofd_k, area
                if np.sum(st["rank"]["n"]) > 0:
                    rank[i] = ensscores.rankhist_compute(st["rank"], normalize=True)
                spread[i] = np.sqrt(st["var"] / st["n"]) if self.n_members > 1 else 0.0
                rmse[i] = np.sqrt(st["se"] / st["n"])
        centres = (np.arange(_N_BINS) + 0.5) / _N_BINS
        return xr.Dataset(
            {
                "CRPS": ("lead_time", crps),
                "reliability": (("lead_time", "threshold", "prob_bin"), rel),
                "reliability_forecast": (("lead_time", "threshold", "prob_bin"), relf),
                "reliability_count": (("lead_time", "threshold", "prob_bin"), relc),
                "ROC_AUC": (("lead_time", "threshold"), auc),
                "ROC_POD": (("lead_time", "threshold", "prob_threshold"), pod),
                "ROC_POFD": (("lead_time", "threshold", "prob_threshold"), pofd),
                "rank_histogram": (("lead_time", "rank"), rank),
                "ensemble_spread": ("lead_time", spread),
                "ensemble_mean_rmse": ("lead_time", rmse),
                "exceedance_count": (("lead_time", "threshold", "members_above"), k_count),
                "exceedance_observed": (("lead_time", "threshold", "members_above"), k_observed),
                "n_members": ((), int(self.n_members)),
            },
            attrs={"probability_method": self.probability},
            coords={
                "lead_time": ("lead_time", np.asarray(leads), {"units": "minutes"}),
                "threshold": ("threshold", np.asarray(self.thresholds_mmh), {"units": "mm/h"}),
                "prob_bin": ("prob_bin", centres),
                "prob_threshold": ("prob_threshold", np.linspace(0.0, 1.0, _N_PROB_THRS)),
                "rank": ("rank", np.arange(self.n_members + 1)),
                "members_above": ("members_above", np.arange(self.n_members + 1)),
            },
        )


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


# --------------------------------------------------------------------------- reports
def _pooled_reliability(res: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """Reliability pooled over lead times: (forecast prob, observed freq) per threshold/bin."""
    c = res["reliability_count"].fillna(0)
    obs = (res["reliability"].fillna(0) * c).sum("lead_time") / c.sum("lead_time")
    fc = (res["reliability_forecast"].fillna(0) * c).sum("lead_time") / c.sum("lead_time")
    return fc, obs


def probabilistic_markdown(results: xr.Dataset) -> str:
    """Markdown tables of the probabilistic scores (mean over leads, then per lead).

    Parameters
    ----------
    results : xarray.Dataset
        With the variables of :meth:`EnsembleScoreAccumulator.result` and a ``predictor``
        dim (as :func:`nowcast.evaluate.evaluate_predictors` returns with ``members``).

    Returns
    -------
    str
    """
    thr = [f"{t:g}" for t in results["threshold"].values]
    header = (
        ["predictor", "members", "CRPS x1e2"] + [f"ROC AUC {t}" for t in thr] + ["spread / RMSE"]
    )
    rows = []
    for name in results["predictor"].values:
        r = results.sel(predictor=name)
        ratio = float(r["ensemble_spread"].mean() / r["ensemble_mean_rmse"].mean())
        rows.append(
            [str(name), str(int(r["n_members"])), f"{float(r['CRPS'].mean()) * 1e2:.4f}"]
            + [f"{float(v):.3f}" for v in r["ROC_AUC"].mean("lead_time").values]
            + [f"{ratio:.3f}"]
        )
    lines = [
        "## Probabilistic scores",
        "",
        "CRPS on the p/255 scale (x1e2; for one member it is the MAE), ROC area for exceeding "
        "each threshold (mm/h), mean over lead times; spread / RMSE: ensemble spread over "
        "the RMSE of the ensemble mean (1 = a well dispersed ensemble).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lead_header = ["predictor", "lead (min)", "CRPS x1e2", "spread x1e2", "RMSE x1e2"] + [
        f"ROC AUC {t}" for t in thr
    ]
    lines += [
        "",
        "### Per lead time",
        "",
        "| " + " | ".join(lead_header) + " |",
        "|" + "|".join("---" for _ in lead_header) + "|",
    ]
    for name in results["predictor"].values:
        r = results.sel(predictor=name)
        for lead in r["lead_time"].values:
            rl = r.sel(lead_time=lead)
            if not np.isfinite(float(rl["CRPS"])):
                continue
            row = [str(name), f"{lead:g}"]
            row += [
                f"{float(rl[k]) * 1e2:.4f}"
                for k in ("CRPS", "ensemble_spread", "ensemble_mean_rmse")
            ]
            row += [f"{float(v):.3f}" for v in rl["ROC_AUC"].values]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_probabilistic(results: xr.Dataset, out_png, title: str | None = None):
    """CRPS, spread and RMSE, ROC area against lead; reliability diagrams; rank histograms.

    Parameters
    ----------
    results : xarray.Dataset
        As for :func:`probabilistic_markdown`.
    out_png : path
        Output PNG.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
    """
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    thresholds = results["threshold"].values
    leads = results["lead_time"].values
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.5))
    fc, obs = _pooled_reliability(results)
    for name in results["predictor"].values:
        r = results.sel(predictor=name)
        line = axes[0, 0].plot(leads, r["CRPS"].values * 1e2, marker=".", label=str(name))[0]
        axes[0, 1].plot(leads, r["ensemble_mean_rmse"].values * 1e2, color=line.get_color())
        axes[0, 1].plot(leads, r["ensemble_spread"].values * 1e2, ls="--", color=line.get_color())
        for j, t in enumerate(thresholds[:2]):
            axes[0, 2 + j].plot(leads, r["ROC_AUC"].sel(threshold=t).values, marker=".")
        for j, t in enumerate((2.0, 10.0)):
            if t in thresholds:
                axes[1, j].plot(
                    fc.sel(predictor=name, threshold=t),
                    obs.sel(predictor=name, threshold=t),
                    marker="o",
                )
        rank = r["rank_histogram"].dropna("rank", how="all").mean("lead_time")
        axes[1, 2].plot(np.linspace(0, 1, rank.sizes["rank"]), rank.values, marker=".")
    axes[0, 0].set_title("CRPS x1e2 (p/255)")
    axes[0, 1].set_title("RMSE of mean (-) and spread (--) x1e2")
    for j, t in enumerate(thresholds[:2]):
        axes[0, 2 + j].set_title(f"ROC area >= {t:g} mm/h")
    for j, t in enumerate((2.0, 10.0)):
        axes[1, j].plot([0, 1], [0, 1], color="grey", lw=0.8)
        axes[1, j].set_title(f"reliability >= {t:g} mm/h")
        axes[1, j].set_xlabel("forecast probability")
        axes[1, j].set_ylabel("observed frequency")
    axes[1, 2].set_title("rank histogram (rank / N)")
    axes[1, 3].axis("off")
    axes[0, 0].legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xlabel("lead time (min)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Probabilistic scores")
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
