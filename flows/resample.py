"""Prefect flow: resample the ingest store onto a regular time grid and a coarser grid.

Thin over :func:`pipeline.resample.resample_store` (one compute task, no retries); with
``fill_gaps`` the short gaps are filled (:func:`nowcast.interpolation.fill_gaps`) in the
same commit, as ``nowcast resample --fill-gaps``.
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
    fill_gaps: int | None = None,
    interpolation: str = "advection",
    fill_window: int = 5,
    run: str | None = None,
) -> dict:
    """Resample *src* (store schema) into *dst* (resampled schema, docs/contracts.md); returns the report summary.

    ``motion`` (e.g. ``"lk"``) also stores per-slot motion fields (:mod:`pipeline.motion_store`);
    ``fill_gaps`` N fills gaps of at most N slots with *interpolation* (flag ``interpolated``).
    """
    from flows._cli_resample import _gap_filler
    from pipeline.resample import resample_store

    report = resample_store(
        src,
        dst,
        size=size,
        cadence=cadence,
        tolerance=tolerance,
        motion=motion,
        motion_window=motion_window,
        after_write=_gap_filler(fill_gaps, interpolation, fill_window, run, dst),
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
    fill_gaps: int | None = None,
    interpolation: str = "advection",
    fill_window: int = 5,
    run: str | None = None,
) -> dict:
    """Resample *src* into *dst* at ``size x size`` and *cadence*; returns the summary.

    ``cadence`` None (default): the store's own (:func:`pipeline.window.store_cadence`).

    With ``motion`` (a :mod:`pipeline.motion` name) the store also gets ``motion``; with
    ``fill_gaps`` its short gaps are filled (``interpolated`` flag).
    """
    summary = resample_task(
        src,
        dst,
        size=size,
        cadence=cadence,
        tolerance=tolerance,
        motion=motion,
        motion_window=motion_window,
        fill_gaps=fill_gaps,
        interpolation=interpolation,
        fill_window=fill_window,
        run=run,
    )
    get_run_logger().info("resampled %s -> %s: %s", src, dst, summary)
    return summary
