"""Prefect flow: one forecast cycle (thin over :mod:`products.cycle`).

:func:`forecast_flow` runs the steps of :func:`products.cycle.run_cycle` as Prefect tasks:
publishing and the status log are I/O and retry twice; forecasting and verification are
compute and do not. A skipped cycle ends *Completed* with ``status`` ``"skipped"``; a
forecast that raises fails the flow run (and is recorded as ``failed`` in the site).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from products.cycle import (
    CycleSteps,
    ForecastSettings,
    make_cycle_forecast,
    publish_cycle,
    record_skip,
    run_cycle,
    verify_earlier,
)

__all__ = ["forecast_flow"]

# Inputs are datasets and settings: nothing to cache, so no input hashing either.
_forecast_task = task(make_cycle_forecast, name="make-forecast", cache_policy=NO_CACHE)
_record_skip_task = task(
    record_skip, name="record-skip", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE
)
_verify_task = task(verify_earlier, name="verify-earlier-forecast", cache_policy=NO_CACHE)
_publish_task = task(
    publish_cycle, name="publish-run", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE
)


@flow(name="forecast")
def forecast_flow(
    store: str,
    site: str,
    run: str | None = None,
    baseline: str | None = None,
    lead_minutes: list[int] | None = None,
    now: str | None = None,
    clock: str = "store",
    in_frames: int | None = None,
    image_size: int | None = None,
    max_consecutive_missing: int = 2,
    keep_runs: int = 24,
    n_obs_frames: int = 5,
    coastline_resolution: str = "10m",
    members: int | None = None,
    seed: int = 0,
    archive: str = "forecasts.zarr",
    calibration: str | None = None,
) -> dict:
    """One forecast cycle as a Prefect flow (see the module docstring).

    Returns
    -------
    dict
        :class:`CycleResult` as a dict; ``status`` is ``ok`` or ``skipped`` (the flow run
        is Completed in both cases), ``reason`` says why a cycle was skipped.
    """
    settings = ForecastSettings(
        store=str(store),
        site=str(site),
        run=run,
        baseline=baseline,
        lead_minutes=tuple(int(v) for v in lead_minutes) if lead_minutes else None,
        in_frames=in_frames,
        image_size=image_size,
        max_consecutive_missing=max_consecutive_missing,
        clock=clock,
        keep_runs=keep_runs,
        n_obs_frames=n_obs_frames,
        coastline_resolution=coastline_resolution,
        members=members,
        seed=seed,
        archive=str(archive),
        calibration=calibration,
    )
    logger = get_run_logger()
    steps = CycleSteps(_forecast_task, _record_skip_task, _verify_task, _publish_task, logger.info)
    return run_cycle(settings, now, steps).to_dict()
