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
# # 01 - Archive tour
#
# A look at the radar **ingest store** (docs/contracts.md, Store schema: `reflectivity`
# in dBZ, `mask`, 480 x 480, irregular `time`) without loading it: the store is opened lazily with
# `pipeline.store.open_store` and only a sample of frames is ever read, so this
# works the same on a year of data (~90k frames).
#
# 1. coverage: frames per day, the gaps on the 6-minute grid, the longest gaps;
# 2. the rain-rate distribution of the valid pixels of a sample of frames;
# 3. a few frames on a map (offline Natural Earth coastlines);
# 4. the masks (per-frame validity combined with the static exclude mask).

# %% tags=["parameters"]
# Parameters (defaults: the work directory of `make demo`)
STORE = "../demo-run/radar.zarr"  # ingest store (pipeline.ingest)
CADENCE = "6min"  # nominal frame spacing
TOLERANCE = "2min"  # frames this close to a slot count for that slot
SAMPLE_FRAMES = 48  # frames read for the distribution and the masks
MAP_FRAMES = 3  # frames drawn on maps (the rainiest of the sample)
COASTLINE_RESOLUTION = "50m"  # Natural Earth scale: 10m, 50m or 110m

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from pipeline.resample import gap_table, snap_to_grid
from pipeline.store import open_store
from pipeline.units import RAIN_THRESHOLDS_MMH, dbz_to_rainrate
from products.maps import MapGrid, draw_rain, map_axes, rain_colorbar

ds = open_store(STORE)  # lazy: dask arrays, nothing read yet
ds

# %% [markdown]
# The store is an Icechunk repository and `open_store` reads a read-only session
# of its latest snapshot (later ingests do not change what `ds` reads). The
# equivalent with icechunk and xarray only (uint8 pixels decoded by xarray's CF
# scale/offset, in float64):
#
# ```python
# import icechunk, xarray as xr
# repo = icechunk.Repository.open(icechunk.local_filesystem_storage(STORE))
# ds = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
# ```
#
# `nowcast store log STORE` lists the commits (one per ingest batch);
# `open_store(STORE, snapshot=ID)` opens an earlier one.

# %% [markdown]
# ## 1. Coverage
#
# Frames per day against the nominal count (one frame per `CADENCE`), then the gaps:
# the frame times are put on the whole-day grid of `CADENCE` slots with
# `pipeline.resample.snap_to_grid` (a frame within `TOLERANCE` of a slot fills it:
# the same rule as the resampled store), and `pipeline.resample.gap_table` lists the
# runs of empty slots.

# %%
times = pd.DatetimeIndex(ds["time"].values)
cadence = pd.Timedelta(CADENCE)
nominal_per_day = int(pd.Timedelta("1D") / cadence)
frames_per_day = times.normalize().value_counts().sort_index().rename("frames")
frames_per_day.index.name = "day"

slots, source_index, snap_details = snap_to_grid(times, cadence, TOLERANCE)
observed = pd.Series(source_index >= 0, index=slots, name="observed")
gaps = gap_table(observed)
gaps["minutes"] = gaps["length"] * (cadence / pd.Timedelta("1min"))
n_gaps = len(gaps)

print(f"{len(times)} frames from {times[0]} to {times[-1]} on {len(frames_per_day)} days")
print(
    f"{observed.sum()} of {len(slots)} slots observed ({observed.mean():.1%}), "
    f"{n_gaps} gaps, {len(snap_details['snapped'])} frames snapped off-grid, "
    f"{len(snap_details['rejected'])} too far from any slot"
)
coverage = (
    pd.DataFrame(
        {
            "frames": frames_per_day,
            "observed_slots": observed.groupby(observed.index.normalize()).sum(),
        }
    )
    .fillna(0)
    .astype(int)
)
coverage["coverage"] = coverage["observed_slots"] / nominal_per_day
coverage

# %%
days = observed.index.normalize().unique()
grid_img = observed.to_numpy().reshape(len(days), nominal_per_day)
fig, (ax0, ax1) = plt.subplots(
    1, 2, figsize=(12, 0.5 * len(days) + 2), width_ratios=(1, 3), layout="constrained"
)
ax0.barh(range(len(days)), coverage["frames"].reindex(days, fill_value=0))
ax0.axvline(nominal_per_day, color="k", ls="--", lw=1, label="nominal")
ax0.set_yticks(range(len(days)), [f"{d:%Y-%m-%d}" for d in days])
ax0.invert_yaxis()
ax0.set_xlabel("frames per day")
ax0.legend(loc="lower right")
ax1.imshow(
    grid_img,
    aspect="auto",
    cmap="Greys",
    vmin=0,
    vmax=1,
    interpolation="nearest",
    extent=(0, 24, len(days) - 0.5, -0.5),
)
ax1.set_yticks(range(len(days)), [f"{d:%Y-%m-%d}" for d in days])
ax1.set_xlabel("hour of day (UTC)")
ax1.set_title(f"observed {CADENCE} slots (black) and gaps (white)")
plt.show()

# %%
print("Longest gaps:")
gaps.sort_values(["length", "start"], ascending=[False, True]).head(10)

# %%
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
lengths = gaps["length"].to_numpy()
if len(lengths):
    ax.hist(lengths, bins=np.arange(0.5, lengths.max() + 1.5), color="tab:red")
ax.set_xscale("log")
ax.set_xlabel(f"gap length (slots of {CADENCE})")
ax.set_ylabel("gaps")
ax.set_title("Gap lengths (HKO-7 rejects a clip with more than 2 missing in a row)")
plt.show()

# %% [markdown]
# ## 2. Rain-rate distribution
#
# `SAMPLE_FRAMES` frames evenly spread over the store are read (only those chunks),
# converted from dBZ to mm/h with the HKO-7 Z-R relation (`pipeline.units`), and
# the valid pixels counted. docs/facts.md section 10 gives the ranges seen on real
# rain events (fraction >= 0.5 mm/h: 0.16-0.33; >= 5 mm/h: 0.004-0.047).

# %%
n_sample = min(SAMPLE_FRAMES, ds.sizes["time"])
sample_idx = np.unique(np.linspace(0, ds.sizes["time"] - 1, n_sample).round().astype(int))
sample = ds[["reflectivity", "mask"]].isel(time=sample_idx).load()
sample_times = pd.DatetimeIndex(sample["time"].values)
dbz = sample["reflectivity"].to_numpy()
valid = sample["mask"].to_numpy().astype(bool) & np.isfinite(dbz)
rates = dbz_to_rainrate(dbz[valid])
exceedance = pd.Series(
    {thr: float((rates >= thr).mean()) for thr in RAIN_THRESHOLDS_MMH},
    name="fraction of valid pixels >=",
)
exceedance.index.name = "threshold (mm/h)"
print(f"{len(sample_idx)} frames, {valid.sum():,} valid pixels")
exceedance.to_frame()

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.5), layout="constrained")
wet = rates[rates >= 0.05]
if wet.size:
    ax0.hist(wet, bins=np.logspace(np.log10(0.05), np.log10(max(wet.max(), 1.0)), 50))
ax0.set_xscale("log")
ax0.set_yscale("log")
for thr in RAIN_THRESHOLDS_MMH:
    ax0.axvline(thr, color="k", lw=0.6, ls=":")
ax0.set_xlabel("rain rate (mm/h)")
ax0.set_ylabel("valid pixels")
ax0.set_title("Rain rates of the sampled frames (>= 0.05 mm/h)")
wet_fraction = [
    float((dbz_to_rainrate(d[v]) >= RAIN_THRESHOLDS_MMH[0]).mean()) if v.any() else np.nan
    for d, v in zip(dbz, valid, strict=True)
]
ax1.plot(sample_times, wet_fraction, "o", ms=3)
ax1.set_ylabel(f"fraction >= {RAIN_THRESHOLDS_MMH[0]} mm/h")
ax1.set_title("Rain area per sampled frame")
fig.autofmt_xdate()
plt.show()

# %% [markdown]
# ## 3. Frames on a map
#
# The rainiest sampled frames, in the radar's azimuthal equidistant projection (from
# the store's CF `crs` variable) with offline Natural Earth coastlines; masked pixels
# are grey, the radar is the cross.

# %%
grid = MapGrid.from_dataset(ds)
rain_area = np.nan_to_num(np.asarray(wet_fraction), nan=-1.0)
map_idx = np.sort(np.argsort(-rain_area, kind="stable")[:MAP_FRAMES])
fig, axes = map_axes(1, len(map_idx), grid, size=3.4)
for ax, k in zip(axes[0], map_idx, strict=True):
    im = draw_rain(
        ax,
        grid,
        dbz_to_rainrate(dbz[k]),
        valid[k],
        f"{sample_times[k]:%Y-%m-%d %H:%M} UTC",
        resolution=COASTLINE_RESOLUTION,
    )
rain_colorbar(fig, axes, im)
display(fig)

# %% [markdown]
# ## 4. Masks
#
# `mask` is True where a pixel may be used: the frame's own `.mask` file AND not the
# static exclude mask. Left: how often each pixel is valid over the sample (the static
# clutter shows as pixels never valid, beam blockage spokes as streaks); right: the
# mask of the rainiest sampled frame, and the valid fraction per sampled frame.

# %%
valid_often = valid.mean(axis=0)
never_valid = float((valid_often == 0).mean())
always_valid = float((valid_often == 1).mean())
fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained", width_ratios=(1, 1, 1.4))
im0 = axes[0].imshow(valid_often, cmap="viridis", vmin=0, vmax=1)
fig.colorbar(im0, ax=axes[0], shrink=0.8, label="fraction of frames valid")
axes[0].set_title(f"never valid {never_valid:.2%}, always valid {always_valid:.2%}")
k = int(map_idx[-1])
axes[1].imshow(valid[k], cmap="Greys_r", vmin=0, vmax=1)
axes[1].set_title(f"mask {sample_times[k]:%Y-%m-%d %H:%M} (white = valid)")
for ax in axes[:2]:
    ax.set_xticks([])
    ax.set_yticks([])
valid_fraction = valid.mean(axis=(1, 2))
axes[2].plot(sample_times, valid_fraction, "o", ms=3)
axes[2].set_ylabel("valid pixel fraction")
axes[2].set_title("Valid pixels per sampled frame")
fig.autofmt_xdate()
plt.show()

# %% [markdown]
# ## Summary and checks

# %%
summary = {
    "n_frames": int(len(times)),
    "frames_per_day": {f"{d:%Y-%m-%d}": int(n) for d, n in frames_per_day.items()},
    "n_slots": int(len(slots)),
    "n_observed_slots": int(observed.sum()),
    "n_gaps": int(n_gaps),
    "gaps": [[str(r.start), str(r.end), int(r.length)] for r in gaps.itertuples()],
    "longest_gap_slots": int(gaps["length"].max()) if n_gaps else 0,
    "sample_times": [str(t) for t in sample_times],
    "exceedance": {str(k): v for k, v in exceedance.items()},
    "never_valid_fraction": never_valid,
}
# the figures shown agree with the store
assert summary["n_frames"] == ds.sizes["time"] == int(frames_per_day.sum())
assert n_gaps == len(gaps) and int(gaps["length"].sum()) == len(slots) - observed.sum()
assert np.all(np.diff(exceedance.to_numpy()) <= 0), "exceedance must fall with threshold"
{k: v for k, v in summary.items() if k not in ("gaps", "sample_times")}
