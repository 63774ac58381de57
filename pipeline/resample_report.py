"""What :func:`pipeline.resample.resample_store` reports, and the files it writes beside
the resampled store: the gap table (``OUT.gaps.csv``: ``start``, ``end``, ``length`` in
slots) and the report as JSON (``OUT.resample.json``).

Beside a local store they are files; beside an ``s3://bucket/prefix/OUT.zarr`` store they
are objects of the same bucket (``s3://bucket/prefix/OUT.gaps.csv``, ...), written with the
endpoint and credentials of the store (:func:`pipeline.store_engine.write_object`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ResampleReport", "sidecar_paths", "write_sidecars"]


@dataclass
class ResampleReport:
    """What :func:`resample_store` did.

    Attributes
    ----------
    src, dst : str
        Source and output store paths.
    size : int
        Output grid size (pixels per side).
    cadence, tolerance : pandas.Timedelta
        Slot spacing and snapping tolerance.
    n_slots, n_observed : int
        Slots on the grid, and slots holding a frame.
    snapped : pandas.DataFrame
        Frames that were off the grid but within tolerance: columns ``frame_time``,
        ``slot_time``, ``offset_s``.
    rejected : pandas.DataFrame
        Frames farther than ``tolerance`` from every slot (not used): same columns, the
        slot being the nearest one.
    collisions : pandas.DataFrame
        Frames dropped because a nearer frame took their slot: ``slot_time``,
        ``kept_time``, ``dropped_time``.
    gaps : pandas.DataFrame
        One row per run of unobserved slots: ``start``, ``end`` (first and last missing
        slot), ``length`` (slots). See :func:`gap_table`.
    seconds : float
        Wall time of the run.
    motion : dict or None
        Summary of the per-slot motion (:func:`pipeline.motion_store.write_motion`) when
        it was computed.
    after_write : dict or None
        Summary of the step run on the store before the commit (``after_write`` of
        :func:`resample_store`: the gap filling of ``--fill-gaps``), when there was one.
    """

    src: str
    dst: str
    size: int
    cadence: pd.Timedelta
    tolerance: pd.Timedelta
    n_slots: int
    n_observed: int
    snapped: pd.DataFrame
    rejected: pd.DataFrame
    collisions: pd.DataFrame
    gaps: pd.DataFrame
    seconds: float = 0.0
    motion: dict | None = None
    after_write: dict | None = None
    store_cadence: pd.Timedelta | None = None
    """The source store's own cadence (:func:`pipeline.window.store_cadence`)."""

    @property
    def observed_fraction(self) -> float:
        """Fraction of slots that hold a frame."""
        return self.n_observed / self.n_slots if self.n_slots else 0.0

    @property
    def n_gaps(self) -> int:
        """Number of runs of consecutive unobserved slots."""
        return len(self.gaps)

    @property
    def longest_gap(self) -> int:
        """Length in slots of the longest gap (0 when there is none)."""
        return int(self.gaps["length"].max()) if len(self.gaps) else 0

    def rejection_warning(self) -> str | None:
        """One line saying how many frames the cadence rejected, or None when none was.

        Names the store's own cadence when the requested one differs (a 6-minute grid on
        a 5-minute store rejects about one frame in six).
        """
        n_rej, n_col = len(self.rejected), len(self.collisions)
        if not n_rej and not n_col:
            return None
        n_frames = self.n_observed + n_rej + n_col
        cad = self.cadence / pd.Timedelta("1min")
        parts = []
        if n_rej:
            tol = self.tolerance / pd.Timedelta("1min")
            parts.append(f"rejects {n_rej} (farther than {tol:g} min from every slot)")
        if n_col:
            parts.append(f"drops {n_col} (a nearer frame took their slot)")
        line = (
            f"cadence {cad:g} min {' and '.join(parts)} of the {n_frames} frames of "
            f"{self.src}; {self.n_observed} of {self.n_slots} slots observed"
        )
        if self.store_cadence is not None and self.store_cadence != self.cadence:
            own = self.store_cadence / pd.Timedelta("1min")
            line += f"; the store's cadence is {own:g} min (leave --cadence out to use it)"
        return line

    def summary(self) -> dict:
        """Summary figures as a JSON-serialisable dict."""
        return {
            "src": self.src,
            "dst": self.dst,
            "size": self.size,
            "cadence_minutes": self.cadence / pd.Timedelta("1min"),
            "tolerance_seconds": self.tolerance.total_seconds(),
            "n_slots": self.n_slots,
            "n_observed": self.n_observed,
            "observed_fraction": round(self.observed_fraction, 6),
            "n_gaps": self.n_gaps,
            "longest_gap_slots": self.longest_gap,
            "n_snapped": len(self.snapped),
            "n_rejected": len(self.rejected),
            "n_collisions": len(self.collisions),
            "seconds": round(self.seconds, 3),
        } | self._extras()

    def _extras(self) -> dict:
        """The motion and gap filling summaries, when there are any."""
        out = {} if self.motion is None else {"motion": self.motion}
        return out | ({} if self.after_write is None else {"fill_gaps": self.after_write})


def sidecar_paths(dst: str | os.PathLike) -> tuple[Path | str, Path | str]:
    """Locations of the gap table CSV and report JSON written next to a resampled store.

    Paths for a local *dst*, ``s3://`` URLs (str) beside an object-storage *dst*.
    """
    from pipeline.store_engine import is_url

    if is_url(dst):
        base, _, name = str(dst).rstrip("/").rpartition("/")
        stem = name[: -len(".zarr")] if name.endswith(".zarr") else name
        return f"{base}/{stem}.gaps.csv", f"{base}/{stem}.resample.json"
    dst = Path(dst)
    stem = dst.name[: -len(".zarr")] if dst.name.endswith(".zarr") else dst.name
    return dst.with_name(f"{stem}.gaps.csv"), dst.with_name(f"{stem}.resample.json")


def write_sidecars(report: ResampleReport, dst: str | os.PathLike) -> None:
    """Write the gap table and the JSON report of *report* next to the store *dst*."""
    from pipeline.store_engine import is_url, write_object

    gaps_csv, report_json = sidecar_paths(dst)
    table = io.StringIO()
    report.gaps.to_csv(table, index=False, date_format="%Y-%m-%dT%H:%M:%S")

    def _records(df: pd.DataFrame) -> list[dict]:
        out = df.copy()
        for col in out.columns:
            if np.issubdtype(out[col].dtype, np.datetime64):
                out[col] = out[col].dt.strftime("%Y-%m-%dT%H:%M:%S")
        return out.to_dict(orient="records")

    payload = dict(
        report.summary(),
        snapped=_records(report.snapped),
        rejected=_records(report.rejected),
        collisions=_records(report.collisions),
    )
    text = json.dumps(payload, indent=1)
    if is_url(dst):
        write_object(str(gaps_csv), table.getvalue().encode())
        write_object(str(report_json), text.encode())
    else:
        Path(gaps_csv).write_text(table.getvalue())
        Path(report_json).write_text(text)
