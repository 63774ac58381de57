"""Prefect flow: publish a forecast file into a site (thin over ``flows.products``).

The forecast NetCDF (written by ``nowcast forecast --out``) is read back, the
observations before its issue time are taken from the radar store on the forecast's
grid, and :func:`flows.products.publish_run` writes the run, the maps, the loop and the
dashboard atomically. Publishing is I/O: it retries twice.
"""

from __future__ import annotations

from flows._prefect_env import configure

configure()

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

__all__ = ["publish_file", "publish_flow"]


def publish_file(
    forecast_nc: str | Path,
    store: str | Path,
    site: str | Path,
    n_obs_frames: int = 5,
    keep_runs: int = 24,
    coastline_resolution: str = "10m",
) -> str:
    """Publish the forecast in *forecast_nc* with observations from *store* into *site*.

    Returns
    -------
    str
        The run directory written.

    Raises
    ------
    ValueError
        *forecast_nc* is missing or not a forecast NetCDF file, or *site* is a file.
    """
    from flows.products import open_forecast_netcdf, publish_run
    from pipeline.window import observations_dataset, window_slots

    path = Path(forecast_nc)
    if not path.is_file():
        raise ValueError(f"forecast file {path} does not exist")
    if Path(site).exists() and not Path(site).is_dir():
        raise ValueError(f"site {site} is a file; expected a site directory (new or published)")
    try:
        fc = open_forecast_netcdf(path)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"forecast file {path} is not a NetCDF forecast (nowcast forecast --out): {err}"
        ) from err
    if "issue_time" not in fc.coords or "reflectivity" not in fc:
        raise ValueError(f"forecast file {path} has no issue_time or reflectivity: not a forecast")
    issue = pd.Timestamp(fc["issue_time"].values)
    n = max(int(n_obs_frames), 1)
    times = window_slots(issue, n, 6.0)
    obs = observations_dataset(store, times, size=fc.sizes["y"])
    result = publish_run(
        fc,
        obs,
        site,
        keep_runs=keep_runs,
        n_obs_frames=n,
        coastline_resolution=coastline_resolution,
    )
    return str(result.run_dir)


_publish_task = task(
    publish_file, name="publish-forecast", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE
)


@flow(name="publish")
def publish_flow(
    forecast_nc: str,
    store: str,
    site: str,
    n_obs_frames: int = 5,
    keep_runs: int = 24,
    coastline_resolution: str = "10m",
) -> str:
    """Publish one forecast file into *site*; returns the run directory."""
    run_dir = _publish_task(
        forecast_nc,
        store,
        site,
        n_obs_frames=n_obs_frames,
        keep_runs=keep_runs,
        coastline_resolution=coastline_resolution,
    )
    get_run_logger().info("published %s to %s", forecast_nc, run_dir)
    return run_dir
