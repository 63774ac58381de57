"""Prefect flow: publish a forecast file into a site (thin over ``products.cycle``).

The forecast NetCDF (written by ``nowcast forecast --out``) is read back, the
observations before its issue time are taken from the radar store on the forecast's
grid, and :func:`products.site.publish_run` writes the run, the maps, the loop and the
dashboard atomically (:func:`products.cycle.publish_file`). Publishing is I/O: it retries
twice.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from products.cycle import publish_file

__all__ = ["publish_flow"]


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
    archive: str = "forecasts.zarr",
) -> str:
    """Publish one forecast file into *site* (forecast archive *archive*); returns the run directory."""
    run_dir = _publish_task(
        forecast_nc,
        store,
        site,
        n_obs_frames=n_obs_frames,
        keep_runs=keep_runs,
        coastline_resolution=coastline_resolution,
        archive=archive,
    )
    get_run_logger().info("published %s to %s", forecast_nc, run_dir)
    return run_dir
