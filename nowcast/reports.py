"""Reports of the evaluation: summaries over lead times, Markdown tables, skill plots.

:func:`summarize`, :func:`to_markdown` and :func:`plot_skill` turn the scores of
:func:`nowcast.evaluate.evaluate_predictors` into the files :func:`nowcast.evaluate.evaluate_run`
writes (``results.md``, ``skill.png``); they are also importable from :mod:`nowcast.evaluate`.
Units as documented there: B-MSE / B-MAE per-frame sums in p/255, MSE / MAE per pixel
(printed x 1e4), SSIM printed x 1e2, PSNR in dB.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["plot_skill", "summarize", "to_markdown"]

_PER_FRAME_SCORES = ("MSE", "MAE", "SSIM", "PSNR")
_SCALE = {"MSE": 1e4, "MAE": 1e4, "SSIM": 1e2, "PSNR": 1.0, "B-MSE": 1.0, "B-MAE": 1.0}
_LABEL = {
    "MSE": "MSE x1e4",
    "MAE": "MAE x1e4",
    "SSIM": "SSIM x1e2",
    "PSNR": "PSNR (dB)",
    "B-MSE": "B-MSE",
    "B-MAE": "B-MAE",
}


# --------------------------------------------------------------------------- summaries
def summarize(results: xr.Dataset) -> xr.Dataset:
    """Average the per-lead scores over lead times.

    Parameters
    ----------
    results : xarray.Dataset
        Output of :func:`evaluate_predictors` (any extra leading dims are kept).

    Returns
    -------
    xarray.Dataset
        ``CSI``, ``POD``, ``FAR``, ``HSS`` (..., threshold) and ``B-MSE``, ``B-MAE`` as the
        plain mean over lead times (HKO-7 convention); ``MSE``, ``MAE``, ``SSIM``, ``PSNR``
        as means over all valid frames (weights ``n_valid_frames``).
    """
    out = {}
    for var in ("CSI", "POD", "FAR", "HSS", "B-MSE", "B-MAE"):
        out[var] = results[var].mean("lead_time", skipna=True)
    w = results["n_valid_frames"].astype(np.float64)
    for var in _PER_FRAME_SCORES:
        val = results[var].fillna(0.0)
        out[var] = (val * w).sum("lead_time") / w.sum("lead_time")
    return xr.Dataset(out, attrs=dict(results.attrs))


def _fmt(value: float, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "nan"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _summary_table(results: xr.Dataset) -> str:
    s = summarize(results)
    thr = [f"{t:g}" for t in results["threshold"].values]
    header = (
        ["predictor"]
        + [f"CSI {t}" for t in thr]
        + [f"HSS {t}" for t in thr]
        + [_LABEL[k] for k in ("B-MSE", "B-MAE", "MSE", "MAE", "SSIM", "PSNR")]
    )
    rows = []
    for name in results["predictor"].values:
        sp = s.sel(predictor=name)
        row = [str(name)]
        row += [_fmt(float(v)) for v in sp["CSI"].values]
        row += [_fmt(float(v)) for v in sp["HSS"].values]
        row += [
            _fmt(float(sp[k]) * _SCALE[k], 5)
            for k in ("B-MSE", "B-MAE", "MSE", "MAE", "SSIM", "PSNR")
        ]
        rows.append(row)
    return _table(header, rows)


def _per_lead_table(results: xr.Dataset) -> str:
    thr = [f"{t:g}" for t in results["threshold"].values]
    header = (
        ["predictor", "lead (min)"]
        + [f"CSI {t}" for t in thr]
        + [f"HSS {t}" for t in thr]
        + [_LABEL[k] for k in ("B-MSE", "MSE", "SSIM", "PSNR")]
        + ["frames"]
    )
    rows = []
    for name in results["predictor"].values:
        r = results.sel(predictor=name)
        for lead in r["lead_time"].values:
            rl = r.sel(lead_time=lead)
            if int(rl["n_frames"].fillna(0)) == 0:
                continue
            row = [str(name), f"{lead:g}"]
            row += [_fmt(float(v)) for v in rl["CSI"].values]
            row += [_fmt(float(v)) for v in rl["HSS"].values]
            row += [_fmt(float(rl[k]) * _SCALE[k], 5) for k in ("B-MSE", "MSE", "SSIM", "PSNR")]
            row += [str(int(rl["n_frames"]))]
            rows.append(row)
    return _table(header, rows)


def to_markdown(
    results: xr.Dataset,
    title: str = "Evaluation",
    extra: xr.Dataset | None = None,
    per_lead: bool = True,
) -> str:
    """Markdown report: a summary table (mean over leads) and a per-lead-time table.

    Parameters
    ----------
    results : xarray.Dataset
        Output of :func:`evaluate_predictors`.
    title : str
        Top heading.
    extra : xarray.Dataset, optional
        Results at lead times the models were not trained on; reported in their own section.
    per_lead : bool
        Include the per-lead-time tables.

    Returns
    -------
    str
    """
    parts = [
        f"# {title}",
        "",
        f"{int(results.attrs.get('n_samples', 0))} sequences. CSI/HSS per threshold (mm/h), "
        "averaged over lead times; B-MSE/B-MAE: per-frame sums in p/255 units averaged over "
        "sequences and lead times; MSE/MAE x1e4, SSIM x1e2 on p/255 frames, PSNR in dB.",
        "",
        "## Summary",
        "",
        _summary_table(results),
    ]
    if "summary_CSI" in results:
        from nowcast.verification.tables import uncertainty_markdown

        parts += ["", "## Intervals and paired differences", "", uncertainty_markdown(results)]
    if results.attrs.get("skipped"):
        parts += ["", f"Skipped: {results.attrs['skipped']}"]
    if results.attrs.get("skipped_stores"):
        parts += ["", f"Stores left out: {results.attrs['skipped_stores']}"]
    if per_lead:
        parts += ["", "## Per lead time", "", _per_lead_table(results)]
    if extra is not None:
        parts += [
            "",
            "## Lead times not trained on",
            "",
            "Scores at lead times outside the training targets (interpolated or beyond the "
            "training horizon); regular-only models that cannot produce them are skipped.",
            "",
            _summary_table(extra),
        ]
        if extra.attrs.get("skipped"):
            parts += ["", f"Skipped: {extra.attrs['skipped']}"]
        if per_lead:
            parts += ["", _per_lead_table(extra)]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- plots
def plot_skill(results: xr.Dataset, out_png: str | os.PathLike, title: str = "") -> Path:
    """Plot CSI, HSS (and FSS) against lead time per threshold, plus B-MSE, MSE, SSIM, PSNR.

    One line per predictor, with its bootstrap interval shaded where ``results`` has
    ``<score>_lower`` / ``_upper`` (``nowcast evaluate``); FSS at the scale nearest 20 km.
    Written as PNG (matplotlib, Agg backend).

    Parameters
    ----------
    results : xarray.Dataset
        Output of :func:`evaluate_predictors`.
    out_png : path
        File to write (its directory must exist).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    thresholds = results["threshold"].values
    ncol = max(len(thresholds), 4)
    cat = ("CSI", "HSS", "FSS") if "FSS" in results else ("CSI", "HSS")
    nrow = len(cat) + 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.85 * nrow), squeeze=False)
    leads = results["lead_time"].values
    # FSS at the scale nearest 20 km (the middle of the usual 10-40 km)
    fss_at = {}
    if "FSS" in results:
        scales = results["scale"].values
        fss_at = {"scale": int(np.argmin(np.abs(np.log(scales / 20.0))))}

    def line(ax, r, name, var, sel, k=1.0):
        (ln,) = ax.plot(leads, r[var].isel(**sel).values * k, marker=".", label=str(name))
        if f"{var}_lower" in r:  # the bootstrap interval of the per-lead score
            lo = r[f"{var}_lower"].isel(**sel).values * k
            hi = r[f"{var}_upper"].isel(**sel).values * k
            ax.fill_between(leads, lo, hi, color=ln.get_color(), alpha=0.15, linewidth=0)

    for name in results["predictor"].values:
        r = results.sel(predictor=name)
        for j, thr in enumerate(thresholds):
            for i, var in enumerate(cat):
                sel = {"threshold": j, **(fss_at if var == "FSS" else {})}
                line(axes[i, j], r, name, var, sel)
                scale = f", {float(results['scale'][fss_at['scale']]):g} km" if var == "FSS" else ""
                axes[i, j].set_title(f"{var} >= {thr:g} mm/h{scale}")
        for j, var in enumerate(("B-MSE", "MSE", "SSIM", "PSNR")):
            line(axes[-1, j], r, name, var, {}, _SCALE[var])
            axes[-1, j].set_title(_LABEL[var])
    for i in range(len(cat)):
        for j in range(len(thresholds), ncol):
            axes[i, j].axis("off")
    for j in range(4, ncol):
        axes[-1, j].axis("off")
    for ax in axes.flat:
        if ax.has_data():
            ax.set_xlabel("lead time (min)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        title or f"Skill against lead time ({int(results.attrs.get('n_samples', 0))} sequences)"
    )
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
