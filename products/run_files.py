"""The files of one published run: forecast NetCDF, PNG maps, animated loop, ``run.json``.

:func:`build_run` writes them into a new directory (the temporary directory of
:func:`products.site.publish_run`, which moves it into place). Its *hook* is called after
each file with ``"file:<name>"`` (the publish's test hook, ``products.site._publish_hook``).
An ensemble forecast (with exceedance probabilities) also gets one probability map per
threshold and lead time (:mod:`products.prob_maps`) and ``run.json`` lists them as
``layers`` (the first, ``forecast``, is the ensemble mean of ``frames``) with
``ensemble`` (members, seed, method); a deterministic run's files are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.atomic import atomic_write_json
from pipeline.units import dbz_to_rainrate
from products._common import _iso, _issue_time, _json_float
from products.accumulation import write_accumulation_maps
from products.cf import write_forecast_netcdf
from products.prob_maps import PROBABILITY_NAME, write_probability_maps

_DETERMINISTIC_LAYER = {
    "id": "forecast",
    "label": "Forecast (ensemble mean)",
    "kind": "deterministic",
}
"""First layer of an ensemble run: the ``frames`` of the manifest (the ensemble mean)."""

RUN_ID_FORMAT = "%Y%m%dT%H%MZ"
"""``strftime`` format of a run directory name (issue time, UTC)."""


def run_id(issue_time: Any) -> str:
    """Run directory name of an issue time, e.g. ``20260601T1200Z``."""
    ts = pd.Timestamp(issue_time)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime(RUN_ID_FORMAT)


def obs_frames(
    forecast_ds: xr.Dataset, observations_ds: xr.Dataset, n_obs_frames: int
) -> xr.Dataset:
    issue = _issue_time(forecast_ds)
    times = pd.DatetimeIndex(observations_ds["time"].values)
    keep = np.flatnonzero(times <= issue)[-n_obs_frames:] if n_obs_frames > 0 else []
    return observations_ds.isel(time=list(keep))


def build_run(
    forecast_ds: xr.Dataset,
    obs: xr.Dataset,
    out: Path,
    *,
    status: str,
    reason: str,
    map_size_px: tuple[int, int],
    coastline_resolution: str,
    progress: bool,
    hook: Callable[[str], None] = lambda stage: None,
) -> list[str]:
    """Write every file of one run into *out*; return their names relative to *out*.

    The forecast and probability maps are grey outside the radar coverage of *obs*
    (:func:`products.map_layers.coverage_mask` of its ``mask``; nothing is greyed when
    *obs* has no mask or no frame).
    """
    from pipeline.console.progress import progress_bar as tqdm
    from products.map_layers import coverage_mask
    from products.maps import MapGrid, MapRenderer, frame_title, write_loop_gif

    files: list[str] = []
    (out / "maps").mkdir(parents=True)
    write_forecast_netcdf(forecast_ds, out / "forecast.nc")
    files.append("forecast.nc")
    hook("file:forecast.nc")
    issue = _issue_time(forecast_ds)
    frames: list[dict[str, Any]] = []
    grid = MapGrid.from_dataset(forecast_ds)
    # Radar coverage of the observations drawn: outside it the forecast and probability
    # maps are grey like the observed maps (no data must not look like no rain).
    coverage = coverage_mask(obs["mask"].values) if "mask" in obs and obs.sizes["time"] else None
    motion, motion_kmh = None, None
    if "motion" in forecast_ds:
        motion = forecast_ds["motion"].values
        motion_kmh = forecast_ds["motion"].attrs.get("km_per_h_per_unit")
    bar = tqdm(
        total=obs.sizes["time"] + forecast_ds.sizes["lead_time"],
        desc=f"maps {run_id(issue)}",
        unit="map",
        disable=not progress,
        leave=False,
    )
    with bar, MapRenderer(grid, size_px=map_size_px, resolution=coastline_resolution) as renderer:
        for i, t in enumerate(pd.DatetimeIndex(obs["time"].values)):
            frame = obs.isel(time=i)
            rain = dbz_to_rainrate(frame["reflectivity"].values)
            valid = frame["mask"].values.astype(bool) if "mask" in frame else None
            if "observed" in frame and not bool(frame["observed"].values):
                rain = np.full(grid.shape, np.nan)
            name = f"maps/obs_{i:02d}.png"
            renderer.render(rain, out / name, valid=valid, title=frame_title(t))
            lead = int(round((t - issue) / pd.Timedelta("1min")))
            frames.append(
                {"kind": "observation", "valid_time": _iso(t), "lead_time": lead, "image": name}
            )
            files.append(name)
            bar.update()
            hook(f"file:{name}")
        valid_times = pd.DatetimeIndex(forecast_ds["valid_time"].values)
        for j, lead in enumerate(int(v) for v in forecast_ds["lead_time"].values):
            rain = np.asarray(forecast_ds["rainfall_rate"].isel(lead_time=j).values, np.float64)
            valid = coverage
            if "mask" in forecast_ds:
                valid = forecast_ds["mask"].isel(lead_time=j).values.astype(bool)
                valid = valid if coverage is None else valid & coverage
            name = f"maps/fc_{lead:03d}.png"
            title = frame_title(valid_times[j], lead, issue)
            renderer.render(
                rain,
                out / name,
                valid=valid,
                title=title,
                motion=motion,
                motion_km_per_h=None if motion_kmh is None else float(motion_kmh),
            )
            frames.append(
                {
                    "kind": "forecast",
                    "valid_time": _iso(valid_times[j]),
                    "lead_time": lead,
                    "image": name,
                }
            )
            files.append(name)
            bar.update()
            hook(f"file:{name}")
    layers = None
    if PROBABILITY_NAME in forecast_ds:  # an ensemble forecast: one map layer per threshold
        prob_files, layers = write_probability_maps(
            forecast_ds,
            out,
            map_size_px=map_size_px,
            coastline_resolution=coastline_resolution,
            coverage=coverage,
            hook=hook,
        )
        files.extend(prob_files)
    acc_files, acc_layers = write_accumulation_maps(
        forecast_ds, out, map_size_px=map_size_px,
        coastline_resolution=coastline_resolution, hook=hook,
    )  # fmt: skip
    files.extend(acc_files)  # rain-amount maps next to the rate maps (products.accumulation)
    write_loop_gif([out / f["image"] for f in frames], out / "loop.gif")
    files.append("loop.gif")
    hook("file:loop.gif")
    manifest = {
        "run_id": run_id(issue),
        "issue_time": _iso(issue),
        "model": str(forecast_ds.attrs.get("model", "unknown")),
        "source": str(forecast_ds.attrs.get("source", "")),
        "status": status,
        "reason": reason,
        "created": _iso(pd.Timestamp.now(tz="UTC")),
        "grid": _grid_summary(forecast_ds),
        "frames": frames,
        "loop": "loop.gif",
        "netcdf": "forecast.nc",
    }
    if acc_layers:  # the dashboard's rain-amount layers
        manifest["accumulations"] = acc_layers
    if forecast_ds.attrs.get("interpolated_inputs"):  # issued from filled gaps: say so
        manifest["interpolated_inputs"] = str(forecast_ds.attrs["interpolated_inputs"])
    if layers is not None:
        manifest["layers"] = [_DETERMINISTIC_LAYER, *layers]
        manifest["ensemble"] = {
            "members": int(forecast_ds.attrs.get("ensemble_members", 0)),
            "seed": _int_or_none(forecast_ds.attrs.get("ensemble_seed")),
            "method": str(forecast_ds.attrs.get("ensemble_method", "")),
        }
    atomic_write_json(out / "run.json", manifest)
    files.append("run.json")
    hook("file:run.json")
    return files


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _grid_summary(ds: xr.Dataset) -> dict[str, Any]:
    """``{"y": H, "x": W, "pixel_km": dx}`` of a forecast grid (shown on the dashboard)."""
    x = np.asarray(ds["x"].values, dtype=np.float64)
    dx = abs(float(x[1] - x[0])) if x.size > 1 else float("nan")
    return {
        "y": int(ds.sizes["y"]),
        "x": int(ds.sizes["x"]),
        "pixel_km": _json_float(dx),
    }
