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
# # 02 - Sampling schemes
#
# Which frames a training sample uses. The thesis trains with four time-sampling
# schemes (Table 5.3, `pipeline.sampling.get_scheme`): a *collection* is `N_IN`
# sorted input positions and `N_OUT` target positions drawn from the scheme's input
# and target intervals of a window of `span` slots; sample `i` uses collection
# `i % set_size`. Windows themselves follow the HKO-7 benchmark rules
# (`pipeline.sampling.hko7_clips`: at most 2 missing frames in a row, `sequent`
# stride 5), evaluated here on the resampled store's `observed` flags.

# %% tags=["parameters"]
# Parameters (defaults: the work directory of `make demo`)
STORE = "../demo-run/radar80.zarr"  # resampled store (pipeline.resample)
N_IN = 10  # input frames per sample (thesis: 10)
N_OUT = 10  # target frames per sample (thesis: 10)
N_SHOW = 4  # samples drawn per scheme
SEED = 0  # seed of the collections
STRIDE = 5  # slots between window starts (HKO-7 sequent mode)
HKO7_IN, HKO7_OUT = 5, 20  # the HKO-7 benchmark clip (5 in, 20 out)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline.sampling import SCHEME_NAMES, get_scheme, hko7_clips, scheme_windows
from pipeline.store import open_store

ds = open_store(STORE)
cadence_min = float(ds.attrs.get("cadence_minutes", 6))
observed = ds["observed"].to_series().astype(bool)
schemes = {name: get_scheme(name, n_in=N_IN, n_out=N_OUT, seed=SEED) for name in SCHEME_NAMES}
scheme_table = pd.DataFrame(
    {
        name: {
            "set size": s.set_size,
            "input interval": s.input_interval,
            "target interval": s.target_interval,
            "window (slots)": s.span,
            "window (min)": s.span * cadence_min,
        }
        for name, s in schemes.items()
    }
).T
scheme_table

# %% [markdown]
# ## The schemes on a time axis
#
# Times are minutes relative to the last input frame (0). Blue: inputs, orange:
# targets, grey ticks: the slots of the window the sample is taken from.

# %%
sample_times = {}
fig, axes = plt.subplots(
    len(schemes),
    1,
    figsize=(11, 1.1 * N_SHOW * len(schemes) / 2 + 1),
    sharex=True,
    layout="constrained",
)
for ax, (name, s) in zip(axes, schemes.items(), strict=True):
    sample_times[name] = []
    for i in range(N_SHOW):
        t_in, t_out = s.times(i, cadence_min)
        in_pos, _ = s.positions(i)
        window = (np.arange(1, s.span + 1) - in_pos[-1]) * cadence_min
        ax.plot(window, np.full(window.size, i), "|", color="0.75", ms=10)
        ax.plot(
            t_in,
            np.full(t_in.size, i),
            "o",
            color="tab:blue",
            ms=5,
            label="input" if i == 0 else None,
        )
        ax.plot(
            t_out,
            np.full(t_out.size, i),
            "s",
            color="tab:orange",
            ms=5,
            label="target" if i == 0 else None,
        )
        sample_times[name].append((t_in.tolist(), t_out.tolist()))
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(N_SHOW), [f"sample {i}" for i in range(N_SHOW)])
    ax.set_ylim(N_SHOW - 0.5, -0.5)
    ax.set_title(f"{name}: set size {s.set_size}, window {s.span} slots", fontsize=10)
axes[0].legend(loc="upper left", ncol=2)
axes[-1].set_xlabel("minutes relative to the last input frame")
plt.show()

# %% [markdown]
# ## Valid clips per day
#
# HKO-7 benchmark clips (`HKO7_IN` + `HKO7_OUT` frames, `sequent`, stride
# `STRIDE`) and the windows each scheme can use, per day of the store (a window is
# counted on the day it starts). Days with long gaps yield few or none.

# %%
clip_starts = hko7_clips(
    observed,
    in_len=HKO7_IN,
    out_len=HKO7_OUT,
    stride=STRIDE,
    cadence=pd.Timedelta(minutes=cadence_min),
)
days = observed.index.normalize().unique()
per_day = pd.DataFrame(index=pd.DatetimeIndex(days, name="day"))
per_day["observed slots"] = observed.groupby(observed.index.normalize()).sum()
per_day[f"HKO-7 clips ({HKO7_IN}+{HKO7_OUT})"] = (
    clip_starts.normalize().value_counts().reindex(days, fill_value=0).to_numpy()
)
for name, s in schemes.items():
    starts = scheme_windows(observed, s, stride=STRIDE, cadence=pd.Timedelta(minutes=cadence_min))
    per_day[name] = starts.normalize().value_counts().reindex(days, fill_value=0).to_numpy()
per_day = per_day.astype(int)
per_day.index = per_day.index.strftime("%Y-%m-%d")
print(
    f"{len(clip_starts)} HKO-7 clips ({HKO7_IN}+{HKO7_OUT}, stride {STRIDE}) on {len(days)} days: "
    + ", ".join(f"{day} {n}" for day, n in per_day[f"HKO-7 clips ({HKO7_IN}+{HKO7_OUT})"].items())
)
per_day

# %%
fig, ax = plt.subplots(figsize=(11, 3.5), layout="constrained")
per_day.drop(columns="observed slots").plot.bar(ax=ax, width=0.8)
ax.set_ylabel("valid clips / windows")
ax.set_title(f"Valid clips per day (stride {STRIDE}, at most 2 missing frames in a row)")
plt.show()

# %% [markdown]
# ## Summary and checks

# %%
summary = {
    "cadence_minutes": cadence_min,
    "set_sizes": {name: int(s.set_size) for name, s in schemes.items()},
    "spans": {name: int(s.span) for name, s in schemes.items()},
    "sample_times": sample_times,
    "hko7_clip_starts": [str(t) for t in clip_starts],
    "clips_per_day": per_day[f"HKO-7 clips ({HKO7_IN}+{HKO7_OUT})"].to_dict(),
    "windows_per_day": {name: per_day[name].to_dict() for name in schemes},
}
for name in schemes:
    for t_in, t_out in sample_times[name]:
        assert t_in[-1] == 0 and min(t_out) > 0 and len(t_in) == N_IN and len(t_out) == N_OUT
assert sum(summary["clips_per_day"].values()) == len(clip_starts)
{k: summary[k] for k in ("set_sizes", "spans", "clips_per_day")}
