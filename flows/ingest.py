"""Prefect flow: ingest an HKO-7 archive into the Zarr store, one task per day.

Thin over :func:`pipeline.ingest.ingest_archive`. The days of the requested range are
found by walking the archive tree (:func:`pipeline.hko7.discover_frames`, nothing is
decoded) and each day becomes one task, run on a dask cluster through
``prefect_dask.DaskTaskRunner``: a local cluster by default, or an existing one given by
its scheduler address. Tasks are coarse on purpose (Prefect costs about 0.15 s per task on
dask, docs/facts.md section 9): the per-frame decoding happens inside the day task with
dask's threaded scheduler (Pillow and zlib release the GIL). Writers of one store are
serialised by the store's own lock (``pipeline.store.StoreWriter``), and the store keeps
time sorted whatever order the days finish in, so concurrent day tasks are safe.

With ``scheduler_address`` (``nowcast flow ingest --scheduler-address ...``) the flow
runs one task instead, :func:`ingest_on_cluster`: the cluster's workers decode and write
the chunks of each batch in parallel, each into a fork of the batch's Icechunk session,
and the task commits once per batch (:func:`pipeline.ingest.ingest_archive` with
``scheduler_address``). Day tasks on a remote cluster would each commit on their own:
serialised by the lock of a local store, racing each other on object storage.

Day tasks are I/O and retry twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from prefect import flow, get_run_logger, task

if TYPE_CHECKING:
    from pipeline.ingest import IngestReport

__all__ = ["archive_days", "ingest_day", "ingest_flow", "ingest_on_cluster", "make_task_runner"]


def archive_days(archive: str | Path, start=None, end=None, source: str = "hko7") -> list[str]:
    """Days (``YYYY-MM-DD``) of the archive that hold frames in ``[start, end]``."""
    from pipeline.sources import get_source

    frames = get_source(source).discover(archive, start=start, end=end)
    days = pd.DatetimeIndex(frames.index).normalize().unique()
    return [d.strftime("%Y-%m-%d") for d in days]


def _report_summary(report: IngestReport) -> dict:
    """Plain-value (JSON-ready) summary of an :class:`pipeline.ingest.IngestReport`.

    The fields are read by name, so a renamed field fails here instead of being dropped.
    """
    return {
        "frames_written": int(report.frames_written),
        "skipped_existing": int(report.skipped_existing),
        "seconds": float(report.seconds),
        "frames_per_second": float(report.frames_per_second),
        "corrupt": [[str(p), str(r)] for p, r in report.corrupt],
    }


@task(name="ingest-day", retries=2, retry_delay_seconds=2)
def ingest_day(
    archive: str,
    store: str,
    day: str,
    threads: int | None = None,
    start: str | None = None,
    end: str | None = None,
    source: str = "hko7",
) -> dict:
    """Ingest the frames of one day (``YYYY-MM-DD``) into *store*; returns a summary dict.

    *threads* decode the frames (``nowcast flow ingest --threads``; default: CPUs).
    *start* / *end* (inclusive) clip the day, for the first and last day of a range.
    """
    from pipeline.ingest import ingest_archive

    day_start = pd.Timestamp(day)
    day_end = day_start + pd.Timedelta("1D") - pd.Timedelta("1ns")
    start = max(day_start, pd.Timestamp(start)) if start is not None else day_start
    end = min(day_end, pd.Timestamp(end)) if end is not None else day_end
    report = ingest_archive(
        archive, store, start=start, end=end, workers=threads, progress=False, source=source
    )
    summary = _report_summary(report)
    summary["day"] = day
    logger = get_run_logger()
    logger.info(
        "day %s: %s frames written, %s already there, %d corrupt",
        day,
        summary["frames_written"],
        summary["skipped_existing"],
        len(summary["corrupt"]),
    )
    for path, reason in summary["corrupt"]:
        logger.warning("corrupt frame skipped: %s (%s)", path, reason)
    return summary


@task(name="ingest-on-cluster", retries=2, retry_delay_seconds=2)
def ingest_on_cluster(
    archive: str,
    store: str,
    scheduler_address: str,
    start: str | None = None,
    end: str | None = None,
    source: str = "hko7",
) -> dict:
    """Ingest ``[start, end]`` of *archive* with the chunks written on the dask cluster at
    *scheduler_address* (one commit per batch); returns a summary dict (``day``: the range)."""
    from pipeline.ingest import ingest_archive

    report = ingest_archive(
        archive, store, start=start, end=end, scheduler_address=scheduler_address,
        progress=False, source=source,
    )  # fmt: skip
    summary = _report_summary(report)
    summary["day"] = f"{start or 'first'}..{end or 'last'}"
    summary["commits"] = int(report.batches)
    get_run_logger().info(
        "%s frames written on the cluster %s in %d commit(s), %d corrupt",
        summary["frames_written"], scheduler_address, report.batches,
        len(summary["corrupt"]),
    )  # fmt: skip
    return summary


def make_task_runner(address: str | None = None, n_workers: int = 2, processes: bool | None = None):
    """The dask task runner: an existing cluster at *address*, or a local one.

    Parameters
    ----------
    address : str, optional
        Scheduler address of an existing dask cluster (``tcp://host:8786``). Its workers
        must reach the same Prefect API as this process (``PREFECT_API_URL``).
    n_workers : int
        Workers of the local cluster (one thread each).
    processes : bool, optional
        Local cluster with worker processes (True) or threads in this process (False).
        Default: processes only when ``PREFECT_API_URL`` names a Prefect server. With
        Prefect's temporary local server (no ``PREFECT_API_URL``) every worker process
        would start a temporary server of its own (about 20-30 s each, all on one
        SQLite file), so threads are used; the frame decoding in a day task releases
        the GIL (Pillow, zlib), so threads still decode in parallel.
    """
    import os

    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    if processes is None:
        processes = bool(os.environ.get("PREFECT_API_URL"))
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": int(n_workers),
            "threads_per_worker": 1,
            "processes": bool(processes),
            "dashboard_address": "127.0.0.1:0",  # local only, any free port
        }
    )


@flow(name="ingest")
def ingest_flow(
    archive: str,
    store: str,
    start: str | None = None,
    end: str | None = None,
    threads: int | None = None,
    source: str = "hko7",
    scheduler_address: str | None = None,
) -> dict:
    """Ingest the days of *archive* in ``[start, end]`` into *store* (one task per day).

    *threads* decode the frames of each day task (default: CPUs). Run it with a task
    runner from :func:`make_task_runner`, e.g.
    ``ingest_flow.with_options(task_runner=make_task_runner())(archive, store)``;
    without one Prefect's default thread pool runs the day tasks. With
    *scheduler_address* (a dask scheduler, ``tcp://host:8786``) one task
    (:func:`ingest_on_cluster`) writes the chunks on that cluster instead, one commit per
    batch.

    Returns
    -------
    dict
        ``days`` (list of per-day summaries: ``day``, ``frames_written``,
        ``skipped_existing``, ``seconds``, ``frames_per_second``, ``corrupt``),
        ``frames_written``, ``corrupt`` (list of ``[path, reason]``).
    """
    from pipeline.sources import get_source, new_store_attrs
    from pipeline.store import create_store

    logger = get_run_logger()
    days = archive_days(archive, start, end, source)
    if not days:
        raise ValueError(f"no frames in archive {archive} between {start} and {end}")
    if source == "hko7":  # other sources: the first day lays the store out
        # a no-op for an existing store (directory or s3:// URL)
        create_store(store, attrs=new_store_attrs(get_source(source)))
    if scheduler_address:
        summary = ingest_on_cluster(archive, store, scheduler_address, start, end, source)
        return {
            "days": [summary],
            "frames_written": int(summary["frames_written"]),
            "corrupt": summary["corrupt"],
        }
    logger.info("ingesting %d day(s) of %s into %s", len(days), archive, store)
    futures = [ingest_day.submit(archive, store, d, threads, start, end, source) for d in days]
    summaries = [f.result() for f in futures]
    total = sum(int(s["frames_written"]) for s in summaries)
    corrupt = [c for s in summaries for c in s["corrupt"]]
    logger.info("ingest done: %d frames written, %d corrupt skipped", total, len(corrupt))
    return {"days": summaries, "frames_written": total, "corrupt": corrupt}
