"""Benchmark: publishing one forecast run (NetCDF, Zarr archive, maps, GIF, dashboard).

Builds, in a temporary directory, a forecast in the forecast schema (docs/contracts.md) (``--size`` x ``--size``
grid of :mod:`pipeline.geo`, ``--leads`` lead times every 6 minutes, a storm moving east)
and ``--obs`` observation frames, then publishes ``--runs`` consecutive issue times into
one site with :func:`products.site.publish_run` (default 640 x 600 maps, 10 m coastline).
The first publish includes the one-off costs (imports, coastline projection).

Prints ONE JSON line::

    {"size": 480, "frames_per_run": 30, "first_publish_s": ..., "publish_s_median": ...,
     "ms_per_map": ..., "netcdf_mb": ..., "gif_mb": ..., "run_dir_mb": ...,
     "zarr_mb_per_run": ..., "peak_rss_mb": ...}

Run: ``.venv/bin/python benchmarks/publish.py [--size 480 --leads 20 --obs 10 --runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


def _storm(x: np.ndarray, y: np.ndarray, cx: float) -> np.ndarray:
    xx, yy = np.meshgrid(x, y)
    return (-10.0 + 50.0 * np.exp(-((xx - cx) ** 2 + yy**2) / (2 * 40.0**2))).astype(np.float32)


def _forecast(issue: pd.Timestamp, size: int, leads: int) -> xr.Dataset:
    from pipeline import geo
    from pipeline.schema import forecast_dataset
    from pipeline.units import dbz_to_rainrate

    g = geo.grid_coords(size)
    lead = np.arange(1, leads + 1, dtype=np.int64) * 6
    refl = np.stack([_storm(g.x, g.y, 1.2 * m) for m in lead])
    rate = dbz_to_rainrate(refl).astype(np.float32)
    return forecast_dataset(issue, lead, refl, rate, model="benchmark", source="synthetic")


def _observations(end: pd.Timestamp, size: int, n: int) -> xr.Dataset:
    from pipeline import geo
    from pipeline.schema import resampled_dataset

    g = geo.grid_coords(size)
    times = pd.date_range(end=end, periods=n, freq="6min")
    minutes = (times - end) / pd.Timedelta("1min")
    refl = np.stack([_storm(g.x, g.y, 1.2 * m) for m in minutes])
    mask = np.ones(refl.shape, dtype=bool)
    mask[:, :, : size // 10] = False
    return resampled_dataset(times, refl, mask, cadence_minutes=None)


def _mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--leads", type=int, default=20)
    parser.add_argument("--obs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from products.site import publish_run

    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        for k in range(args.runs):
            issue = pd.Timestamp("2026-06-01T12:00") + k * pd.Timedelta("6min")
            fc = _forecast(issue, args.size, args.leads)
            obs = _observations(issue, args.size, args.obs)
            t0 = time.perf_counter()
            result = publish_run(fc, obs, site, n_obs_frames=args.obs, progress=False)
            times.append(time.perf_counter() - t0)
        run = result.run_dir
        n_frames = args.obs + args.leads
        steady = times[1:] or times
        figures = {
            "size": args.size,
            "frames_per_run": n_frames,
            "first_publish_s": round(times[0], 2),
            "publish_s_median": round(statistics.median(steady), 2),
            "ms_per_map": round(1000 * statistics.median(steady) / n_frames, 1),
            "netcdf_mb": round(_mb(run / "forecast.nc"), 2),
            "gif_mb": round(_mb(run / "loop.gif"), 2),
            "run_dir_mb": round(_mb(run), 2),
            "zarr_mb_per_run": round(_mb(site / "forecasts.zarr") / args.runs, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
