# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 - Model comparison
#
# Scores written by `nowcast.evaluate.evaluate_run` (`RUN_DIR/eval/<split>_<scheme>/
# results.nc`, dims `predictor` x `lead_time` x `threshold`) for several runs and the
# baselines they were evaluated with, then one case: the observation, each model,
# pysteps and persistence for the same issue time, as maps.
#
# Runs evaluated on different samples are not comparable: the `n_samples`,
# `split` and `scheme` attributes of each file are shown and checked.

# %% tags=["parameters"]
# Parameters (defaults: the work directory of `make demo`)
RUN_DIRS = ["../demo-run/run"]  # trained runs, each with eval/<EVAL_NAME>/results.nc
EVAL_NAME = "test_regular"  # <split>_<scheme> sub-directory of RUN_DIR/eval
STORE = "../demo-run/radar80.zarr"  # resampled store, for the case maps
SPLIT = "test"  # split the case is taken from
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # as in training / evaluation
CASE_INDEX = None  # test sample shown; None = the rainiest of the first CASE_SEARCH
CASE_SEARCH = 24
CASE_LEADS = 3  # lead times drawn (first, middle, last ...)
COASTLINE_RESOLUTION = "50m"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import xarray as xr
from IPython.display import display

from nowcast.baselines import BASELINE_NAMES, get_baseline
from nowcast.evaluate import summarize
from nowcast.runs import load_run
from pipeline.dataset import RadarSequenceDataset
from pipeline.store import open_store
from pipeline.units import normalized_to_rainrate
from products.maps import MapGrid, draw_rain, map_axes, rain_colorbar

if not RUN_DIRS:
    raise ValueError("RUN_DIRS is empty: give at least one evaluated run directory")
parts, sources = [], {}
for run_dir in map(Path, RUN_DIRS):
    path = run_dir / "eval" / EVAL_NAME / "results.nc"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `nowcast evaluate` on {run_dir} first")
    with xr.open_dataset(path) as f:
        res = f.load()
    keep = []
    for name in res["predictor"].values.astype(str):
        label = name
        if name not in BASELINE_NAMES and label in sources:
            label = f"{name} ({run_dir.name})"  # same model in two runs
        if label in sources:  # a baseline already taken from an earlier run
            continue
        sources[label] = {"run": str(run_dir), "predictor": name, **res.attrs}
        keep.append((name, label))
    sel = res.sel(predictor=[n for n, _ in keep])
    parts.append(sel.assign_coords(predictor=[lab for _, lab in keep]))
results = xr.concat(parts, dim="predictor", join="outer")
info = pd.DataFrame(sources).T[["run", "predictor", "split", "scheme", "n_samples"]]
info

# %%
if info["n_samples"].nunique() > 1 or info["scheme"].nunique() > 1:
    print(
        "WARNING: the runs were evaluated on different samples or schemes:",
        info[["scheme", "n_samples"]].drop_duplicates().to_dict("records"),
    )
predictors = [str(p) for p in results["predictor"].values]
leads = results["lead_time"].to_numpy()
thresholds = results["threshold"].to_numpy()
print(
    f"{len(predictors)} predictors, lead times {leads.min():g}-{leads.max():g} min, "
    f"thresholds {[float(t) for t in thresholds]} mm/h"
)

# %% [markdown]
# ## CSI and HSS against lead time
#
# One panel per rain threshold (mm/h), one line per predictor.

# %%
styles = {"persistence": dict(color="0.4", ls="--"), "pysteps": dict(color="k", ls=":")}
fig, axes = plt.subplots(
    2,
    len(thresholds),
    figsize=(3.2 * len(thresholds), 6),
    sharex=True,
    squeeze=False,
    layout="constrained",
)
for row, score in enumerate(("CSI", "HSS")):
    for col, thr in enumerate(thresholds):
        ax = axes[row, col]
        for p in predictors:
            y = results[score].sel(predictor=p, threshold=thr)
            ax.plot(leads, y, marker="o", ms=3, label=p, **styles.get(p, {}))
        ax.set_title(f"{score} >= {thr:g} mm/h", fontsize=10)
        ax.grid(alpha=0.3)
        if row == 1:
            ax.set_xlabel("lead time (min)")
axes[0, 0].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## The thesis's metrics side by side
#
# Means over lead times (`nowcast.evaluate.summarize`): CSI and HSS per threshold,
# B-MSE / B-MAE (per-frame sums on the p/255 scale, so they scale with the frame
# size), MSE and MAE x 1e4, SSIM x 1e2 and PSNR, as the thesis prints them.

# %%
mean = summarize(results)
table = pd.DataFrame(index=pd.Index(predictors, name="predictor"))
for thr in thresholds:
    table[f"CSI {thr:g}"] = mean["CSI"].sel(threshold=thr).to_numpy()
for thr in thresholds:
    table[f"HSS {thr:g}"] = mean["HSS"].sel(threshold=thr).to_numpy()
scale = {"B-MSE": 1.0, "B-MAE": 1.0, "MSE": 1e4, "MAE": 1e4, "SSIM": 1e2, "PSNR": 1.0}
for var, k in scale.items():
    label = var if k == 1.0 else f"{var} x{k:.0e}".replace("+0", "")
    table[label] = mean[var].to_numpy() * k
table.round(4)

# %%
bars = ["B-MSE", "B-MAE", "MSE x1e4", "MAE x1e4", "SSIM x1e2", "PSNR"]
fig, axes = plt.subplots(1, len(bars), figsize=(3 * len(bars), 3.2), layout="constrained")
colors = plt.cm.tab10(np.arange(len(predictors)) % 10)
for ax, col in zip(axes, bars, strict=True):
    ax.bar(range(len(predictors)), table[col], color=colors)
    ax.set_xticks(range(len(predictors)), predictors, rotation=45, ha="right", fontsize=8)
    better = "higher" if col.startswith(("SSIM", "PSNR")) else "lower"
    ax.set_title(f"{col} ({better} is better)", fontsize=9)
plt.show()

# %% [markdown]
# ## A case: observation vs models vs pysteps
#
# One sample of the `SPLIT` split of the store (the same windows as the evaluation),
# forecast by every run's model, pysteps (Lucas-Kanade + semi-Lagrangian
# extrapolation) and persistence, at a few lead times.

# %%
models = {}
for run_dir in map(Path, RUN_DIRS):
    model, meta = load_run(run_dir)
    label = (
        meta["model_name"]
        if meta["model_name"] not in models
        else f"{meta['model_name']} ({run_dir.name})"
    )
    models[label] = (model, meta["config"])
first_cfg = next(iter(models.values()))[1]
dataset = RadarSequenceDataset(
    STORE,
    split=SPLIT,
    scheme="regular",
    n_in=first_cfg.in_frames,
    n_out=first_cfg.out_frames,
    fractions=SPLIT_FRACTIONS,
)
if len(dataset) == 0:
    raise ValueError(f"split {SPLIT!r} of {STORE} has no valid sample")
if CASE_INDEX is None:
    n_try = min(CASE_SEARCH, len(dataset))
    wet = [float((dataset[i][1] * dataset[i][5]).mean()) for i in range(n_try)]
    case_index = int(np.argmax(wet))
else:
    case_index = int(CASE_INDEX)
x, y, t_in, t_out, m_in, m_out = (v[None] for v in dataset[case_index])
case_time = dataset.item_time(case_index)
cadence = float(dataset.cadence_minutes)
predictors_case = {name: m for name, (m, _) in models.items()}
for name in ("pysteps", "persistence"):
    predictors_case[name] = get_baseline(name, cadence_minutes=cadence)
forecasts = {}
with torch.no_grad():
    for name, predict in predictors_case.items():
        forecasts[name] = predict(x, t_in, t_out, input_mask=m_in)[0, :, 0].numpy()
print(
    f"case {case_index}: issued {case_time} UTC (last input frame), leads {t_out[0].tolist()} min"
)

# %%
grid = MapGrid.from_dataset(open_store(STORE))
n_leads = min(CASE_LEADS, t_out.shape[1])
lead_cols = np.unique(np.linspace(0, t_out.shape[1] - 1, n_leads).round().astype(int))
rows = ["observed", *forecasts]
truth = y[0, :, 0].numpy()
valid_out = m_out[0, :, 0].numpy() > 0
fig, axes = map_axes(len(rows), len(lead_cols), grid, size=2.4)
for r, name in enumerate(rows):
    for c, j in enumerate(lead_cols):
        field = truth[j] if name == "observed" else forecasts[name][j]
        # grey where the observation is not valid, in every row
        im = draw_rain(
            axes[r, c],
            grid,
            normalized_to_rainrate(np.clip(field, 0, 1)),
            valid_out[j],
            f"{name} +{t_out[0, j]:g} min",
            resolution=COASTLINE_RESOLUTION,
        )
rain_colorbar(fig, axes, im)
display(fig)

# %% [markdown]
# ## Summary and checks

# %%
obs_rain = normalized_to_rainrate(truth)
summary = {
    "predictors": predictors,
    "lead_times": [float(v) for v in leads],
    "thresholds": [float(v) for v in thresholds],
    "mean_csi": {
        p: {f"{t:g}": float(table.loc[p, f"CSI {t:g}"]) for t in thresholds} for p in predictors
    },
    "case_index": case_index,
    "case_time": str(case_time),
    "case_leads": [float(v) for v in t_out[0]],
    "case_obs_max_mmh": [
        float(obs_rain[j][valid_out[j]].max()) if valid_out[j].any() else None
        for j in range(len(obs_rain))
    ],
    "case_forecasts": sorted(forecasts),
}
# the table shows the mean over lead times of what the files hold: the same float32
# values averaged again, equal up to the order of summation (relative 1e-6, float32's
# resolution is 1.2e-7)
CSI_RTOL = 1e-6
for p in predictors:
    for thr in thresholds:
        expect = float(results["CSI"].sel(predictor=p, threshold=thr).mean(skipna=True))
        got = summary["mean_csi"][p][f"{thr:g}"]
        same = np.isclose(expect, got, rtol=CSI_RTOL, atol=0.0)
        assert np.isnan(expect) and np.isnan(got) or same, (p, thr, expect, got)
assert all(f.shape == truth.shape for f in forecasts.values())
{k: summary[k] for k in ("predictors", "case_time", "case_forecasts")}
