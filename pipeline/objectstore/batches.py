"""Ingest batches redone on object storage: after a commit lost to another writer (the
overlapping changes of two ingests cannot be rebased) or a transient fault, for the retry
budget of :mod:`pipeline.objectstore.access`; then one error naming the frames not written.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.objectstore.access import (
    FIRST_DELAY,
    MAX_DELAY,
    RETRY_ENV,
    StoreAccessError,
    retry_seconds,
    storage_error,
)
from pipeline.store_engine import CommitConflictError, is_url


class BatchRetry:
    """Redo of the batches after a lost commit race or a transient object-storage fault,
    for ``NOWCAST_STORE_RETRY_SECONDS`` (:mod:`pipeline.objectstore`) from the first fault
    on; then one error naming the frames not written (a re-run adds them)."""

    def __init__(self, store: str | Path) -> None:
        self.store = store
        self.t0: float | None = None
        self.delay = FIRST_DELAY
        self.tries = 0

    def after(self, err: Exception, frame_secs: np.ndarray, known: np.ndarray | None) -> None:
        """Wait before the next try, or raise when *err* is not worth retrying.

        Raises
        ------
        StoreAccessError
            The budget is spent or the fault is permanent: names the frames not written.
        Exception
            *err* itself when it is no lost race and no object-storage fault.
        """
        if not is_url(self.store):
            raise err
        fault = None if isinstance(err, CommitConflictError) else storage_error(err)
        if not isinstance(err, CommitConflictError) and fault is None:
            raise err
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        self.tries += 1
        elapsed = now - self.t0
        if (fault is not None and not fault.transient) or elapsed + self.delay > retry_seconds():
            what = "another writer kept committing first" if fault is None else fault.said
            missing = frame_secs if known is None else frame_secs[~np.isin(frame_secs, known)]
            raise StoreAccessError(
                f"store {self.store}: {what}; gave up after {elapsed:.1f} s and {self.tries} "
                f"{'try' if self.tries == 1 else 'tries'} (set {RETRY_ENV} to retry longer): "
                f"{frames_text(missing)} not written (the committed ones are kept); "
                "a re-run of the same ingest adds them",
                transient=fault is None or fault.transient,
                said=what,
            ) from err
        time.sleep(self.delay * (0.5 + random.random() / 2))
        self.delay = min(2 * self.delay, MAX_DELAY)


def frames_text(secs: np.ndarray, most: int = 4) -> str:
    """The frames of *secs* (int64 s since 1970) in words: count and runs of the cadence.

    Examples
    --------
    >>> frames_text(np.array([0, 360, 720, 7200]))
    '4 frames (1970-01-01 00:00 to 1970-01-01 00:12, 1970-01-01 02:00 to 1970-01-01 02:00)'
    """
    if secs.size == 0:
        return "no frames"
    times = pd.DatetimeIndex(np.sort(secs).astype("datetime64[s]"))
    steps = np.diff(np.sort(secs))
    gaps = np.flatnonzero(steps > 1.5 * np.median(steps)) if steps.size else np.zeros(0, int)
    starts = np.r_[0, gaps + 1]
    ends = np.r_[gaps, secs.size - 1]
    runs = [
        f"{times[a]:%Y-%m-%d %H:%M} to {times[b]:%Y-%m-%d %H:%M}"
        for a, b in zip(starts, ends, strict=True)
    ]
    more = f" and {len(runs) - most} more runs" if len(runs) > most else ""
    noun = "frame" if secs.size == 1 else "frames"
    return f"{secs.size} {noun} ({', '.join(runs[:most])}{more})"
