"""Prefect flow: resample the ingest store onto a regular time grid and a coarser grid.

Thin over :func:`pipeline.resample.resample_store` (one compute task, no retries).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

__all__ = ["resample_flow", "resample_task"]


@task(name="resample-store")
def resample_task(
    src: str,
    dst: str,
    size: int = 80,
    cadence: str | None = None,
    tolerance: str = "2min",
    motion: str | None = None,
    motion_window: int = 4,
) -> dict:
    """Resample *src* (store schema) into *dst* (resampled schema, docs/contracts.md); returns the report summary.

    ``motion`` (e.g. ``"lk"``) also stores per-slot motion fields (:mod:`pipeline.motion_store`).
    """
    from pipeline.resample import resample_store

    report = resample_store(
        src,
        dst,
        size=size,
        cadence=cadence,
        tolerance=tolerance,
        motion=motion,
        motion_window=motion_window,
    )
    warning = report.rejection_warning()
    if warning is not None:
        get_run_logger().warning("%s", warning)
    return report.summary()


@flow(name="resample")
def resample_flow(
    src: str,
    dst: str,
    size: int = 80,
    cadence: str | None = None,
    tolerance: str = "2min",
    motion: str | None = None,
    motion_window: int = 4,
) -> dict:
    """Resample *src* into *dst* at ``size x size`` and *cadence*; returns the summary.

    ``cadence`` None (default): the store's own (:func:`pipeline.window.store_cadence`).

    With ``motion`` (a :mod:`pipeline.motion` name) the store also gets ``motion``.
    """
    summary = resample_task(
        src,
        dst,
        size=size,
        cadence=cadence,
        tolerance=tolerance,
        motion=motion,
        motion_window=motion_window,
    )
    get_run_logger().info("resampled %s -> %s: %s", src, dst, summary)
    return summary
