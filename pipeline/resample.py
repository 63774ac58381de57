"""Resample an ingest store onto a regular time grid with explicit gaps, and downsize it.

The ingest store (:mod:`pipeline.store`, docs/contracts.md Store schema) holds the frames that exist, at the
times they were taken. Models and sample indices want a *regular* grid: one slot every
``cadence`` from 00:00 of the first day to the last slot of the last day, and an explicit
per-slot ``observed`` flag. :func:`resample_store` builds that grid:

Time
    Each source frame goes to the nearest slot when it lies within ``tolerance`` of it
    (inclusive: with the defaults a frame 2 min off the 6-min grid snaps, one 3 min off is
    *rejected*: reported and not used). ``tolerance`` must be below half the cadence so a
    frame can never be equally near two slots. When several frames snap to one slot the
    nearest wins (the earlier on a tie) and the others are reported as *collisions*.
    Slots with no frame stay gaps: ``reflectivity`` NaN, ``mask`` False, ``observed`` False.

Space
    ``size`` must divide the source grid size (480 -> 80 is a 6 x 6 block average).
    Averaging happens in a physically additive space, not in dBZ: linear reflectivity
    ``Z = 10 ** (dBZ / 10)`` (``average="z"``, the default) or rain rate with HKO-7's Z-R
    relation (``average="rainrate"``), over the *valid* fine pixels of each block only.
    A coarse pixel is valid (``mask`` True) when at least ``min_valid_fraction`` (default
    0.5) of its fine pixels are valid. Its reflectivity is the mean over the valid fine
    pixels whenever there is at least one (so an invalid coarse pixel may still carry a
    value) and NaN when it has none. Coordinates are the coarse pixel centres (the
    mean of the fine centres), ``lat``/``lon`` come from :func:`pipeline.geo.grid_coords`
    at the new resolution, and the ``crs`` grid mapping is copied from the source.

Output store (docs/contracts.md, Resampled schema; open it with :func:`pipeline.store.open_store`)
    dims ``(time, y, x)``; ``reflectivity`` float32 dBZ (NaN where unobserved), ``mask``
    bool, ``observed`` (time) bool; coords ``time``, ``y``, ``x``, ``lat``, ``lon``,
    ``crs``; attributes ``cadence_minutes`` and the resampling settings; with
    ``motion="lk"`` (or another :mod:`pipeline.motion` name) also ``motion``
    ``(time, component, y, x)`` and ``motion_fallback`` (time), described in
    :mod:`pipeline.motion_store` (no motion: the store is exactly as before). Time chunks of
    ``time_chunk`` slots (default 32: a training clip spans <= 30 slots, so it touches at
    most two chunks). Blocks of slots with no observed frame are never written: Zarr
    returns the fill values (NaN / False), so a sparse multi-year grid costs little.

Next to the store (``OUT.zarr`` -> ``OUT.gaps.csv`` and ``OUT.resample.json``) go the gap
table (``start``, ``end``: first and last missing slot, ``length`` in slots) and the
report as JSON (summary figures, snapped, rejected and colliding frames); see
:mod:`pipeline.resample_report`.

Source and output may be directories or ``s3://bucket/prefix`` URLs (object storage,
endpoint and credentials from the ``AWS_*`` environment variables, as for the ingest
store); beside an ``s3://`` output the gap table and report are objects of the bucket.

Re-running into an existing ``dst`` is refused unless ``overwrite=True``. The output is
an Icechunk repository (:mod:`pipeline.store`), one commit per resample saying what it
wrote (``nowcast store log OUT.zarr``). A new local store is built in a temporary sibling
and renamed into place once committed, so an interrupted run never leaves a half-written
``dst`` (on object storage the repository is created in place: until the commit it holds
no group, and a rerun writes into it); overwriting an Icechunk ``dst`` is a new commit
(readers of the earlier snapshot keep it); a plain Zarr ``dst`` of before is swapped for
the new one by two renames.

Memory is bounded: the source is read one block of slots at a time (``block_chunks``
output chunks, 64 slots by default, about 60 MB of 480 x 480 float64 work arrays).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time as _time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.grid_fit import fit_plan, pad_frames
from pipeline.resample_report import ResampleReport, sidecar_paths, write_sidecars
from pipeline.schema import coarse_coords, resampled_dataset, resampled_encoding
from pipeline.spatial import _AVERAGES, _block_mean, _check_average, downsize
from pipeline.window import store_cadence

__all__ = [
    "ResampleReport",
    "gap_table",
    "resample_store",
    "sidecar_paths",
    "snap_to_grid",
    "downsize",
]

_DAY = pd.Timedelta("1D")
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- time grid


def _as_timedelta(value: str | pd.Timedelta, name: str) -> pd.Timedelta:
    try:
        td = pd.Timedelta(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} must be a duration like '6min', got {value!r}") from err
    if pd.isna(td) or td < pd.Timedelta(0):
        raise ValueError(f"{name} must be a non-negative duration, got {value!r}")
    return td


def _grid_params(
    cadence: str | pd.Timedelta, tolerance: str | pd.Timedelta
) -> tuple[pd.Timedelta, pd.Timedelta]:
    cadence = _as_timedelta(cadence, "cadence")
    tolerance = _as_timedelta(tolerance, "tolerance")
    if cadence <= pd.Timedelta(0) or _DAY % cadence != pd.Timedelta(0):
        raise ValueError(f"cadence must be positive and divide one day, got {cadence}")
    if tolerance * 2 >= cadence:
        raise ValueError(
            f"tolerance must be below half the cadence ({cadence / 2}), got {tolerance}: "
            "otherwise a frame could be equally near two slots"
        )
    return cadence, tolerance


def snap_to_grid(
    times: pd.DatetimeIndex | np.ndarray,
    cadence: str | pd.Timedelta = "6min",
    tolerance: str | pd.Timedelta = "2min",
) -> tuple[pd.DatetimeIndex, np.ndarray, dict[str, pd.DataFrame]]:
    """Assign frame times to the slots of a regular whole-day grid.

    Parameters
    ----------
    times : pandas.DatetimeIndex or numpy.ndarray of datetime64, shape (N,)
        Frame times, sorted or not, at least one.
    cadence : str or pandas.Timedelta
        Slot spacing; must divide one day.
    tolerance : str or pandas.Timedelta
        Largest accepted distance (inclusive) between a frame and its slot; must be below
        ``cadence / 2``.

    Returns
    -------
    slots : pandas.DatetimeIndex, shape (S,)
        The grid: 00:00 of the first frame's day to the last slot of the last frame's day.
    source_index : numpy.ndarray of int64, shape (S,)
        For each slot the position in ``times`` of the frame it holds, -1 for a gap.
    details : dict of pandas.DataFrame
        ``snapped``, ``rejected``, ``collisions`` (see :class:`ResampleReport`).
    """
    cadence, tolerance = _grid_params(cadence, tolerance)
    t = pd.DatetimeIndex(times).as_unit("ns")
    if len(t) == 0:
        raise ValueError("snap_to_grid needs at least one frame time, got none")
    if t.hasnans:
        raise ValueError("frame times contain NaT")
    start = t.min().floor("D")
    end = t.max().floor("D") + _DAY - cadence
    slots = pd.date_range(start, end, freq=cadence, name="time")

    step = cadence.value
    rel = (t.asi8 - start.value).astype(np.int64)
    nearest = np.floor_divide(rel + step // 2, step)  # round half up; ties impossible
    offset = rel - nearest * step
    ok = np.abs(offset) <= tolerance.value

    def _frame_table(sel: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "frame_time": t[sel],
                "slot_time": slots[0] + pd.to_timedelta(nearest[sel] * step, unit="ns"),
                "offset_s": offset[sel] / 1e9,
            }
        ).reset_index(drop=True)

    source_index = np.full(len(slots), -1, dtype=np.int64)
    # nearest first, then earlier frame: the first one written into a slot wins
    cand = np.flatnonzero(ok)
    order = np.lexsort((t.asi8[cand], np.abs(offset[cand]), nearest[cand]))
    cand = cand[order]
    kept_slot: dict[int, int] = {}
    collisions = []
    for i in cand.tolist():
        s = int(nearest[i])
        if s in kept_slot:
            collisions.append((slots[s], t[kept_slot[s]], t[i]))
        else:
            kept_slot[s] = i
            source_index[s] = i
    details = {
        "snapped": _frame_table(ok & (offset != 0)),
        "rejected": _frame_table(~ok),
        "collisions": pd.DataFrame(
            collisions, columns=["slot_time", "kept_time", "dropped_time"]
        ).astype("datetime64[ns]"),
    }
    return slots, source_index, details


def gap_table(observed: pd.Series | xr.DataArray) -> pd.DataFrame:
    """Runs of consecutive unobserved slots.

    Parameters
    ----------
    observed : pandas.Series or xarray.DataArray of bool, shape (S,)
        Per-slot flag indexed by slot time.

    Returns
    -------
    pandas.DataFrame
        Columns ``start`` and ``end`` (times of the first and last missing slot of each
        gap, inclusive) and ``length`` (number of slots), in time order.
    """
    if isinstance(observed, xr.DataArray):
        observed = observed.to_series()
    flags = np.asarray(observed.to_numpy(), dtype=bool)
    times = pd.DatetimeIndex(observed.index)
    missing = np.concatenate([[False], ~flags, [False]]).astype(np.int8)
    edges = np.diff(missing)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return pd.DataFrame(
        {
            "start": times[starts],
            "end": times[ends],
            "length": (ends - starts + 1).astype(np.int64),
        }
    )


class _SourceReader:
    """Reads blocks of source frames straight from the Zarr arrays of an ingest store.

    The ingest store keeps reflectivity as uint8 pixels with ``scale_factor``/``add_offset``:
    their linear values then come from a 256-entry lookup table (decoded dBZ as float32,
    exactly what :func:`pipeline.store.open_store` returns), which is ~50x faster than
    decoding through xarray and exponentiating every pixel. Float sources take the
    generic path through :func:`downsize`.
    """

    def __init__(self, path, average: str) -> None:
        import zarr

        group = zarr.open_group(str(path) if isinstance(path, Path) else path, mode="r")
        self.refl, self.mask = group["reflectivity"], group["mask"]
        attrs = dict(self.refl.attrs)
        self.forward, self.inverse = _AVERAGES[average]
        self.lut = None
        if np.issubdtype(self.refl.dtype, np.integer) and self.refl.dtype.itemsize == 1:
            codes = np.arange(256, dtype=np.float64)
            dbz = (
                codes * float(attrs.get("scale_factor", 1.0)) + float(attrs.get("add_offset", 0.0))
            ).astype(np.float32)
            self.lut = self.forward(dbz.astype(np.float64)).astype(np.float32)
        else:
            self.scale = float(attrs.get("scale_factor", 1.0))
            self.offset = float(attrs.get("add_offset", 0.0))

    def downsized(
        self, lo: int, hi: int, sel: np.ndarray, plan, min_valid_fraction: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Coarse dBZ and validity of source frames ``lo + sel`` (``sel`` into ``lo:hi``)."""
        raw, use = pad_frames(
            np.asarray(self.refl[lo:hi])[sel], np.asarray(self.mask[lo:hi], dtype=bool)[sel], plan
        )
        factor = plan.factor
        if self.lut is not None:
            return _block_mean(self.lut[raw], use, factor, self.inverse, min_valid_fraction)
        dbz = raw.astype(np.float64) * self.scale + self.offset
        use &= np.isfinite(dbz)
        lin = self.forward(np.where(use, dbz, 0.0))
        return _block_mean(lin, use, factor, self.inverse, min_valid_fraction)


# --------------------------------------------------------------------------- store


def _template(
    src: xr.Dataset,
    slots: pd.DatetimeIndex,
    observed: np.ndarray,
    size: int,
    cadence: pd.Timedelta,
    settings: dict,
    time_chunk: int,
) -> xr.Dataset:
    import dask.array as da

    n = len(slots)
    shape = (n, size, size)
    chunks = (time_chunk, size, size)
    refl_attrs = {
        k: v
        for k, v in src["reflectivity"].attrs.items()
        if k
        not in ("scale_factor", "add_offset", "_FillValue", "valid_range", "valid_min", "valid_max")
    }
    refl_attrs["comment"] = "dBZ; NaN where no valid fine pixel or the slot is unobserved"
    refl_attrs["cell_methods"] = (
        f"area: mean (in {'linear Z' if settings['average'] == 'z' else 'rain rate'} "
        f"over valid fine pixels, {fit_plan(src.sizes['y'], src.sizes['x'], size).factor}x"
        f"{fit_plan(src.sizes['y'], src.sizes['x'], size).factor} blocks)"
    )
    mask_attrs = {k: v for k, v in src["mask"].attrs.items() if k != "grid_mapping"}
    mask_attrs["comment"] = (
        f"True where >= {settings['min_valid_fraction']:g} of the fine pixels were valid; "
        "False in unobserved slots"
    )
    ds = resampled_dataset(
        slots,
        da.full(shape, np.nan, dtype=np.float32, chunks=chunks),
        da.zeros(shape, dtype=bool, chunks=chunks),
        observed,
        grid=coarse_coords(src, size),
        cadence_minutes=None,
    )
    ds["reflectivity"].attrs = refl_attrs
    ds["mask"].attrs = mask_attrs
    ds["time"].attrs["long_name"] = f"slot time (UTC), regular {cadence} grid"
    attrs = dict(src.attrs)
    history = attrs.get("history", "")
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs["history"] = (
        f"{history}\n" if history else ""
    ) + f"{stamp} pipeline.resample.resample_store({json.dumps(settings, sort_keys=True)})"
    attrs["cadence_minutes"] = float(cadence / pd.Timedelta("1min"))
    attrs.update({f"resample_{k}": v for k, v in settings.items() if k != "cadence"})
    ds.attrs = attrs
    return ds


def _tmp_sibling(dst: Path, tag: str) -> Path:
    return dst.with_name(f".{dst.name}.{tag}-{os.getpid()}")


def _check_source(source: xr.Dataset, src_path: Path, size: int):
    """Check the source against the store schema (docs/contracts.md); its :class:`FitPlan`."""
    for var in ("reflectivity", "mask"):
        if var not in source:
            raise ValueError(f"source store {src_path} has no variable {var!r}")
    plan = fit_plan(source.sizes.get("y", 0), source.sizes.get("x", 0), size)  # pads non-square
    if source.sizes.get("time", 0) == 0:
        raise ValueError(f"source store {src_path} holds no frames: nothing to resample")
    return plan


def resample_store(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    size: int = 80,
    cadence: str | pd.Timedelta | None = None,
    tolerance: str | pd.Timedelta = "2min",
    *,
    average: str = "z",
    min_valid_fraction: float = 0.5,
    time_chunk: int = 32,
    block_chunks: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    motion: str | None = None,
    motion_window: int = 4,
    motion_kwargs: dict | None = None,
    after_write: Callable[[object], dict] | None = None,
) -> ResampleReport:
    """Resample an ingest store onto a regular time grid and an ``size x size`` grid.

    Parameters
    ----------
    src : path or str
        Ingest store (docs/contracts.md, Store schema): a directory or an
        ``s3://bucket/prefix`` URL, opened with :func:`pipeline.store.open_store`.
    dst : path or str
        Output store to create (docs/contracts.md, Resampled schema): a directory or an
        ``s3://`` URL (endpoint and credentials from the ``AWS_*`` environment variables).
        Refused when it exists unless ``overwrite``; one Icechunk commit (a new local
        store: built beside and renamed in; on object storage: created in place, nothing
        visible before the commit).
    size : int
        Output pixels per side; must divide the source size (480: 1, 2, 3, 4, 5, 6, 8, 10,
        12, 15, 16, 20, 24, 30, 32, 40, 48, 60, 80, 96, 120, 160, 240, 480).
    cadence : str or pandas.Timedelta, optional
        Slot spacing (must divide one day); None (default): the source store's own
        (:func:`pipeline.window.store_cadence`: 6 min for HKO-7, 5 min for KNMI). A
        cadence that rejects frames says so in :meth:`ResampleReport.rejection_warning`.
    tolerance : str or pandas.Timedelta
        Snapping tolerance, inclusive, below ``cadence / 2``.
    average : {"z", "rainrate"}
        Space for the spatial mean (see :func:`downsize`).
    min_valid_fraction : float
        Fraction of valid fine pixels for a coarse pixel to be valid.
    time_chunk : int
        Output chunk length in slots.
    block_chunks : int
        Output chunks processed per block (bounds memory).
    overwrite : bool
        Replace an existing ``dst`` (atomically: a new commit, or a rename).
    progress : bool
        Show a tqdm bar (slots, slots/s).
    motion : str, optional
        Also store per-slot motion fields (``motion``, ``motion_fallback``) estimated with
        this :mod:`pipeline.motion` method (e.g. ``"lk"``) from the resampled frames; see
        :mod:`pipeline.motion_store`. None (default): no motion, the store is unchanged.
    motion_window : int
        Slots per motion estimate (the slot and the ``motion_window - 1`` before it).
    motion_kwargs : dict, optional
        Arguments of the motion method (e.g. ``{"grid": 64}``).
    after_write : callable, optional
        Called with the open output store once the frames (and motion) are written and
        before the commit, e.g. the gap filling of ``nowcast resample --fill-gaps``
        (:func:`nowcast.interpolation.fill_gaps`); its dict goes into the report as
        ``after_write``.

    Returns
    -------
    ResampleReport
        Also written as ``<dst stem>.resample.json``; the gap table as
        ``<dst stem>.gaps.csv``, both next to ``dst`` (objects in the bucket for a URL).
    """
    from pipeline.console.progress import progress_bar as tqdm
    from pipeline.store import is_icechunk_store, is_old_layout, is_url, open_repo, open_store
    from pipeline.store_engine import as_location, holds_group, remove_stale_siblings

    t0 = _time.perf_counter()
    src_path, dst_path = as_location(src), as_location(dst)
    if not is_url(src_path) and not src_path.exists():
        raise ValueError(f"source store {src_path} does not exist")
    if is_url(src_path) or is_url(dst_path):
        same = str(src_path).rstrip("/") == str(dst_path).rstrip("/")
    else:
        same = dst_path.resolve() == src_path.resolve()
    if same:
        raise ValueError(f"dst {dst_path} is the source store; choose another path")
    for what in remove_stale_siblings(dst_path):  # a killed resample's temporary store
        _log.warning("%s: %s left by a killed resample", dst_path, what)
    if holds_group(dst_path) and not overwrite:
        msg = f"output store {dst_path} already exists; pass overwrite=True (--overwrite)"
        raise FileExistsError(msg + " to replace it")
    if not is_url(dst_path) and not dst_path.parent.is_dir():
        raise ValueError(f"parent directory of {dst_path} does not exist")
    if time_chunk < 1 or block_chunks < 1:
        raise ValueError(
            f"time_chunk and block_chunks must be >= 1, got {time_chunk}, {block_chunks}"
        )
    average = _check_average(average)
    if cadence is not None:
        cad, tol = _grid_params(cadence, tolerance)  # refused before any work
    if not 0.0 < float(min_valid_fraction) <= 1.0:
        raise ValueError(f"min_valid_fraction must be in (0, 1], got {min_valid_fraction}")
    if motion is not None:
        from pipeline.motion import get_motion

        get_motion(motion, **(motion_kwargs or {}))  # unknown name: fail before any work
        if int(motion_window) < 2:
            raise ValueError(f"motion_window must be >= 2 slots, got {motion_window}")

    # pin the latest snapshot: a concurrent ingest cannot change the frames under us
    target = src_path
    if is_url(src_path) or is_icechunk_store(src_path) or is_old_layout(src_path):
        target = open_repo(src_path).readonly_session(branch="main").store
    source = open_store(target)
    try:
        plan = _check_source(source, src_path, size)
        own_cadence = store_cadence(source)
        cad, tol = _grid_params(own_cadence if cadence is None else cadence, tolerance)
    except ValueError:
        source.close()
        raise

    slots, source_index, details = snap_to_grid(source.indexes["time"], cadence=cad, tolerance=tol)
    observed = source_index >= 0
    settings = {
        "source": str(src_path),
        "size": int(size),
        "cadence": str(cad),
        "tolerance_seconds": float(tol.total_seconds()),
        "average": average,
        "min_valid_fraction": float(min_valid_fraction),
    }
    if motion is not None:
        settings.update(motion=str(motion).lower(), motion_window=int(motion_window))
    from pipeline.store_engine import commit_session, place_store, replacement_session

    tmp = None if is_url(dst_path) else _tmp_sibling(dst_path, "tmp")
    try:
        session, fresh = replacement_session(dst_path, tmp)
        out = session.store
        template = _template(source, slots, observed, size, cad, settings, time_chunk)
        template.to_zarr(
            out,
            mode="w",
            compute=False,
            consolidated=False,
            encoding=resampled_encoding(template, time_chunk),
        )
        block = time_chunk * block_chunks
        n = len(slots)
        reader = _SourceReader(target, average)
        with tqdm(total=n, unit="slot", disable=not progress, desc="resample") as bar:
            for k0 in range(0, n, block):
                k1 = min(k0 + block, n)
                idx = source_index[k0:k1]
                have = idx >= 0
                if have.any():
                    lo, hi = int(idx[have].min()), int(idx[have].max()) + 1
                    sel = idx[have] - lo
                    c_dbz, c_valid = reader.downsized(lo, hi, sel, plan, min_valid_fraction)
                    out_dbz = np.full((k1 - k0, size, size), np.nan, dtype=np.float32)
                    out_valid = np.zeros((k1 - k0, size, size), dtype=bool)
                    out_dbz[have], out_valid[have] = c_dbz, c_valid
                    xr.Dataset(
                        {
                            "reflectivity": (("time", "y", "x"), out_dbz),
                            "mask": (("time", "y", "x"), out_valid),
                        }
                    ).to_zarr(out, region={"time": slice(k0, k1)}, consolidated=False)
                bar.update(k1 - k0)
        motion_summary = None
        if motion is not None:
            from pipeline.motion_store import write_motion

            motion_summary = write_motion(
                out,
                motion,
                motion_window,
                method_kwargs=motion_kwargs,
                block_chunks=block_chunks,
                label=str(dst_path),
            )
        after_summary = None if after_write is None else after_write(out)
        name = str(src_path).rstrip("/").rsplit("/", 1)[-1]
        commit_session(
            session,
            f"resample {name}: {int(observed.sum())} of {len(slots)} slots observed, {size} x "
            f"{size}, cadence {cad / pd.Timedelta('1min'):g} min"
            + (f", motion {motion}" if motion else ""),
            dst_path,
            "run the resample again (with --overwrite if the other one completed)",
        )
        if fresh:
            place_store(tmp, dst_path, _tmp_sibling(dst_path, "old"))
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        source.close()

    obs_series = pd.Series(observed, index=slots)
    report = ResampleReport(
        src=str(src_path),
        dst=str(dst_path),
        size=int(size),
        cadence=cad,
        tolerance=tol,
        n_slots=len(slots),
        n_observed=int(observed.sum()),
        snapped=details["snapped"],
        rejected=details["rejected"],
        collisions=details["collisions"],
        gaps=gap_table(obs_series),
        seconds=_time.perf_counter() - t0,
        motion=motion_summary,
        after_write=after_summary,
        store_cadence=own_cadence,
    )
    write_sidecars(report, dst_path)
    return report
