"""Replay of an HKO-7 archive into a radar store as if the frames arrived live.

There is no live radar here, so :func:`replay_archive` plays an HKO-7 archive into the
store frame by frame: a simulated clock starts at the archive's first frame and advances
``step_minutes`` per tick; at each tick the frames whose time has "arrived" are ingested
(:func:`pipeline.ingest.ingest_archive` with ``start``/``end``), then ``on_tick(now)`` is
called, e.g. a forecast cycle at the simulated time
(:func:`products.cycle.forecast_cycle`, or the Prefect flow through
:func:`flows.serve.run_forecast_cycle`), and the replay sleeps so that simulated time runs
``speed`` times faster than the wall clock (``speed=0``: no sleeping). Run
``nowcast replay`` to feed a store while ``nowcast serve`` forecasts from it, or give
``nowcast replay`` a site to run the forecast cycles itself at simulated issue times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["ReplayReport", "replay_archive"]


@dataclass
class ReplayReport:
    """What :func:`replay_archive` did.

    Attributes
    ----------
    ticks : int
        Simulated clock ticks.
    frames_ingested : int
        Frames written into the store.
    corrupt : list of (str, str)
        Frames reported unreadable by ingest (path, reason), skipped.
    results : list
        Return values of ``on_tick`` (one per tick it was called).
    start, end : pandas.Timestamp
        Simulated time of the first and last tick.
    seconds : float
        Wall-clock duration.
    """

    ticks: int = 0
    frames_ingested: int = 0
    corrupt: list = field(default_factory=list)
    results: list = field(default_factory=list)
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    seconds: float = 0.0


def replay_archive(
    archive: str | Path,
    store: str | Path,
    *,
    speed: float = 60.0,
    start: object = None,
    end: object = None,
    step_minutes: float = 6.0,
    on_tick: Callable[[pd.Timestamp], object] | None = None,
    workers: int | None = None,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayReport:
    """Feed *archive* into *store* as if the frames arrived live, *speed* x faster.

    Parameters
    ----------
    archive : path
        HKO-7 archive root.
    store : path
        Radar store (created by ingest when missing).
    speed : float
        Simulated seconds per wall-clock second (60: an hour of radar in a minute);
        0 replays as fast as possible.
    start, end : timestamp-like, optional
        Part of the archive to replay (inclusive).
    step_minutes : float
        Simulated minutes per tick.
    on_tick : callable, optional
        Called with the simulated time after each tick's frames are in the store; its
        return values are collected in :attr:`ReplayReport.results`.
    workers : int, optional
        Decoding threads for ingest.
    progress : bool
        Show a tqdm bar over ticks.
    sleep : callable
        Sleep function (tests may pass a no-op).

    Returns
    -------
    ReplayReport

    Raises
    ------
    ValueError
        Negative speed, non-positive step, or no frame in the requested range.
    """
    from pipeline.console.progress import progress_bar as tqdm
    from pipeline.hko7 import discover_frames
    from pipeline.ingest import ingest_archive

    if not speed >= 0:
        raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed!r}")
    if not step_minutes > 0:
        raise ValueError(f"step_minutes must be > 0, got {step_minutes!r}")
    t_wall = time.perf_counter()
    frames = discover_frames(archive, start=start, end=end)
    if frames.empty:
        raise ValueError(f"no frame in archive {archive} between {start} and {end}")
    times = pd.DatetimeIndex(frames.index)
    step = pd.Timedelta(minutes=step_minutes)
    first = times[0].ceil(step)
    n_ticks = int((times[-1] - first) / step) + 1
    if times[-1] > first + (n_ticks - 1) * step:
        n_ticks += 1
    report = ReplayReport(start=first)
    done_until: pd.Timestamp | None = None
    bar = tqdm(total=n_ticks, desc="replay", unit="tick", disable=not progress)
    for k in range(n_ticks):
        tick_wall = time.perf_counter()
        now = first + k * step
        new = times <= now if done_until is None else (times > done_until) & (times <= now)
        if new.any():
            t0 = times[new][0]
            rep = ingest_archive(archive, store, start=t0, end=now, workers=workers, progress=False)
            report.frames_ingested += int(rep.frames_written)
            report.corrupt.extend((str(p), str(r)) for p, r in rep.corrupt)
        done_until = now
        if on_tick is not None:
            report.results.append(on_tick(now))
        report.ticks += 1
        report.end = now
        bar.update(1)
        bar.set_postfix(now=now.strftime("%Y-%m-%d %H:%M"), frames=report.frames_ingested)
        if speed > 0 and k < n_ticks - 1:
            wait = step.total_seconds() / speed - (time.perf_counter() - tick_wall)
            if wait > 0:
                sleep(wait)
    bar.close()
    report.seconds = time.perf_counter() - t_wall
    return report
