"""Robustness of the nowcasts: scores against input corruption levels.

:func:`evaluate_robustness` re-runs :func:`nowcast.scoring.evaluate_predictors` per
corruption (:mod:`nowcast.perturb`) and level; :func:`robustness_to_markdown` and
:func:`plot_robustness` report it. :func:`nowcast.evaluate.evaluate_run` writes
``robustness.nc``, ``robustness.md`` and ``robustness.png`` with them (``--perturb``).
These names are also importable from :mod:`nowcast.evaluate`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from nowcast.contract import Nowcaster
from nowcast.perturb import DEFAULT_LEVELS, Perturbation
from nowcast.reports import _LABEL, _SCALE, _fmt, _table, summarize
from nowcast.scoring import _names, evaluate_predictors

__all__ = ["evaluate_robustness", "plot_robustness", "robustness_to_markdown"]


def evaluate_robustness(
    predictors: Mapping[str, Nowcaster],
    dataset: torch.utils.data.Dataset,
    batch_size: int = 4,
    *,
    levels: Mapping[str, Sequence[float]] | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> xr.Dataset:
    """Re-run :func:`evaluate_predictors` for each corruption and level.

    Parameters
    ----------
    predictors, dataset, batch_size
        As in :func:`evaluate_predictors`.
    levels : mapping of str to sequence of float, optional
        Corruption name (:data:`nowcast.perturb.PERTURBATION_NAMES`) -> levels; default
        :data:`nowcast.perturb.DEFAULT_LEVELS`. All kinds need the same number of levels.
        Level 0 is evaluated once and shared.
    seed : int
        Seed of the corruptions (see :class:`nowcast.perturb.Perturbation`).
    **kwargs
        Passed on to :func:`evaluate_predictors` (``max_samples``, ``progress``, ...).

    Returns
    -------
    xarray.Dataset
        The scores of :func:`evaluate_predictors` with two more dims, ``corruption`` and
        ``level_index``, and the 2-D coordinate ``level`` (corruption, level_index).
    """
    levels = dict(DEFAULT_LEVELS if levels is None else levels)
    if not levels:
        raise ValueError("no corruption levels given")
    sizes = {len(v) for v in levels.values()}
    if len(sizes) != 1:
        raise ValueError(f"every corruption needs the same number of levels; got {levels}")
    clean: xr.Dataset | None = None
    per_kind = []
    for kind, kind_levels in levels.items():
        parts = []
        for level in kind_levels:
            if float(level) == 0.0:
                if clean is None:
                    clean = evaluate_predictors(predictors, dataset, batch_size, **kwargs)
                parts.append(clean)
            else:
                pert = Perturbation(kind, float(level), seed)
                parts.append(
                    evaluate_predictors(
                        predictors, dataset, batch_size, perturbation=pert, **kwargs
                    )
                )
        kd = xr.concat(parts, dim="level_index", join="outer", combine_attrs="drop_conflicts")
        per_kind.append(kd)
    out = xr.concat(per_kind, dim="corruption", join="outer", combine_attrs="drop_conflicts")
    out = out.assign_coords(
        corruption=("corruption", _names(levels)),
        level=(("corruption", "level_index"), np.asarray(list(levels.values()), dtype=np.float64)),
    )
    out = out.assign_coords(level_index=np.arange(out.sizes["level_index"]))
    out.attrs["seed"] = int(seed)
    return out


_ROBUST_SCORES = ("CSI_low", "CSI_mid", "B-MSE", "MSE", "SSIM")


def _robust_series(summary: xr.Dataset, key: str) -> tuple[xr.DataArray, str]:
    thr = summary["threshold"].values
    if key == "CSI_low":
        return summary["CSI"].sel(threshold=thr[0]), f"CSI >= {thr[0]:g} mm/h"
    if key == "CSI_mid":
        t = thr[len(thr) // 2]
        return summary["CSI"].sel(threshold=t), f"CSI >= {t:g} mm/h"
    return summary[key] * _SCALE[key], _LABEL[key]


def robustness_to_markdown(robust: xr.Dataset, title: str = "Robustness") -> str:
    """Markdown tables of scores (mean over leads) against corruption level, per corruption."""
    s = summarize(robust)
    parts = [f"# {title}", ""]
    for kind in robust["corruption"].values:
        lv = robust["level"].sel(corruption=kind).values
        parts += [f"## {kind}", ""]
        for key in _ROBUST_SCORES:
            da, label = _robust_series(s.sel(corruption=kind), key)
            header = [f"{label} \\ level"] + [f"{v:g}" for v in lv]
            rows = [
                [str(name)] + [_fmt(float(v), 5) for v in da.sel(predictor=name).values]
                for name in robust["predictor"].values
            ]
            parts += [_table(header, rows), ""]
    return "\n".join(parts)


def plot_robustness(robust: xr.Dataset, out_png: str | os.PathLike) -> Path:
    """Plot each score (mean over leads) against corruption level; one line per predictor."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    s = summarize(robust)
    kinds = list(robust["corruption"].values)
    fig, axes = plt.subplots(
        len(kinds),
        len(_ROBUST_SCORES),
        figsize=(3.2 * len(_ROBUST_SCORES), 2.8 * len(kinds)),
        squeeze=False,
    )
    for i, kind in enumerate(kinds):
        lv = robust["level"].sel(corruption=kind).values
        for j, key in enumerate(_ROBUST_SCORES):
            da, label = _robust_series(s.sel(corruption=kind), key)
            for name in robust["predictor"].values:
                axes[i, j].plot(lv, da.sel(predictor=name).values, marker="o", label=str(name))
            axes[i, j].set_title(label, fontsize=9)
            axes[i, j].set_xlabel(f"{kind} level")
            axes[i, j].grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
