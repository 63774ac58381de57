"""Markdown tables of scores with their intervals and of paired differences, per case.

:func:`uncertainty_markdown` renders the variables of
:func:`nowcast.verification.uncertainty.score_uncertainty` (as ``results.nc`` carries them):
for the pooled case (or the only one) and then for every case, a table of the summary
scores with their intervals, one of the fractions skill score, and one of the paired
differences of the reference against every other predictor with the verdict. Units as in
:mod:`nowcast.reports` (MSE / MAE x 1e4, SSIM x 1e2, PSNR dB, B-MSE / B-MAE per-frame sums).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["uncertainty_markdown"]

_SCALE = {"MSE": 1e4, "MAE": 1e4, "SSIM": 1e2}
_LABEL = {"MSE": "MSE x1e4", "MAE": "MAE x1e4", "SSIM": "SSIM x1e2", "PSNR": "PSNR (dB)"}
_CONTINUOUS = ("B-MSE", "B-MAE", "MSE", "MAE", "SSIM", "PSNR")
_SHORT = {"ahead": "ahead", "behind": "behind", "not distinguishable": "n.d."}


def _num(v: float, sign: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "nan"
    a = abs(v)
    digits = 3 if a < 10 else (1 if a < 1000 else 0)
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _cell(v, lo, hi, sign: bool = False) -> str:
    if not np.isfinite(v):
        return "nan"
    return f"{_num(v, sign)} [{_num(lo, sign)}, {_num(hi, sign)}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _columns(res: xr.Dataset) -> list[tuple[str, str, dict]]:
    """(header, score, selection) of the main table's columns."""
    thr = [float(t) for t in res["threshold"].values]
    cols = [(f"CSI {t:g}", "CSI", {"threshold": i}) for i, t in enumerate(thr)]
    cols += [(f"HSS {t:g}", "HSS", {"threshold": i}) for i, t in enumerate(thr)]
    cols += [(_LABEL.get(k, k), k, {}) for k in _CONTINUOUS if f"summary_{k}" in res]
    return cols


def _fss_columns(res: xr.Dataset) -> list[tuple[str, str, dict]]:
    if "summary_FSS" not in res:
        return []
    cols = []
    for i, t in enumerate(res["threshold"].values):
        for j, s in enumerate(res["scale"].values):
            cols.append(
                (f"FSS {float(t):g} mm/h {float(s):g} km", "FSS", {"threshold": i, "scale": j})
            )
    return cols


def _scores_table(res: xr.Dataset, case: int, cols) -> str:
    rows = []
    for p, name in enumerate(res["predictor"].values):
        row = [str(name)]
        for _, score, sel in cols:
            k = _SCALE.get(score, 1.0)
            vals = [
                float(res[f"summary_{score}{suf}"].isel(case=case, predictor=p, **sel)) * k
                for suf in ("", "_lower", "_upper")
            ]
            row.append(_cell(*vals))
        rows.append(row)
    return _table(["predictor"] + [c[0] for c in cols], rows)


def _paired_table(res: xr.Dataset, case: int, cols) -> str:
    rows = []
    for b, name in enumerate(res["baseline"].values):
        row = [str(name)]
        for _, score, sel in cols:
            k = _SCALE.get(score, 1.0)
            vals = [
                float(res[f"paired_diff_{score}{suf}"].isel(case=case, baseline=b, **sel)) * k
                for suf in ("", "_lower", "_upper")
            ]
            v = str(res[f"paired_verdict_{score}"].isel(case=case, baseline=b, **sel).values)
            row.append(
                f"{_cell(*vals, sign=True)} {_SHORT.get(v, v)}" if np.isfinite(vals[0]) else "nan"
            )
        rows.append(row)
    return _table(["baseline"] + [c[0] for c in cols], rows)


def _case_section(res: xr.Dataset, case: int, level: str) -> list[str]:
    cols, fcols = _columns(res), _fss_columns(res)
    n = int(res["n_sequences"].isel(case=case))
    blk = int(res["block_length"].isel(case=case))
    how = (
        "each case block-resampled on its own (stratified)"
        if blk < 0
        else f"blocks of {blk} consecutive sequences"
    )
    note = ""
    if blk > 0 and "overlap_windows" in res:
        indep = n / max(int(res["overlap_windows"].isel(case=case)), 1)
        if indep < 5:
            note = (
                f" Only about {indep:.1f} independent blocks of windows: the bootstrap cannot "
                "see this case's variability, its intervals are too narrow (indicative only)."
            )
    out = [
        f"{n} sequences; {level} intervals, {how}.{note}",
        "",
        _scores_table(res, case, cols),
    ]
    if fcols:
        out += ["", _scores_table(res, case, fcols)]
    if res.sizes.get("baseline", 0):
        ref = res.attrs.get("paired_reference", "the reference")
        out += [
            "",
            f"Paired differences, {ref} minus each baseline (same resamples; ahead / behind: "
            f"the interval excludes 0 on {ref}'s better / worse side; n.d.: not "
            "distinguishable; for B-MSE, B-MAE, MSE, MAE lower is better):",
            "",
            _paired_table(res, case, cols),
        ]
        if fcols:
            out += ["", _paired_table(res, case, fcols)]
    return out


def uncertainty_markdown(results: xr.Dataset) -> str:
    """Markdown of the summary scores with intervals and the paired differences.

    Parameters
    ----------
    results : xarray.Dataset
        ``results.nc`` of ``nowcast evaluate`` with the variables of
        :func:`nowcast.verification.uncertainty.score_uncertainty`.

    Returns
    -------
    str
        The pooled (or only) case first, then one section per case when there are several.
    """
    level = f"{100 * float(results.attrs.get('confidence_level', 0.9)):g} %"
    resamples = int(results.attrs.get("bootstrap_resamples", 0))
    cases = [str(c) for c in results["case"].values]
    head = [
        f"Intervals: {level} percentile intervals of a circular block bootstrap over whole "
        f"sequences ({resamples} resamples; a block = the windows that share a frame); each "
        "cell is `score [lower, upper]`.",
    ]
    last = len(cases) - 1
    if len(cases) > 1:
        head += [
            "",
            f"Pooled over {len(cases) - 1} cases ({', '.join(cases[:-1])}): "
            f"{results.attrs.get('pooling', '')}.",
        ]
    parts = head + [""] + _case_section(results, last, level)
    if len(cases) > 1:
        parts += ["", "## Per case"]
        for i, c in enumerate(cases[:-1]):
            parts += ["", f"### {c}", ""] + _case_section(results, i, level)
    return "\n".join(parts)
