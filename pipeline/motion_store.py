"""Per-slot motion fields in a resampled store (docs/contracts.md, Resampled schema: motion variables).

:func:`write_motion` adds two variables to a resampled store (it is what
``resample_store(..., motion="lk")`` and ``nowcast resample --motion lk`` call):

``motion`` ``(time, component, y, x)`` float32
    ``motion[t]`` is the motion estimated by :func:`pipeline.motion.get_motion` from the
    observed frames among slots ``t - (window - 1) .. t`` (the slot itself need not be
    observed; irregular gaps are handled), in **pixels of the store's grid per cadence
    step**. ``component`` is ``["x", "y"]``: x along columns (+ to the right, east), y along
    rows (+ downwards), the ``(u, v)`` layout of pysteps and of the TrajGRU warp. Where no
    motion could be estimated the field is 0 (zero motion, persistence) and
    ``motion_fallback`` says why. Attributes: ``units`` ("pixel per cadence step"),
    ``cadence_minutes``, ``pixel_km`` (grid spacing), ``km_per_h_per_unit`` (multiply by
    it for km/h), ``motion_method``, ``motion_window`` (slots), ``motion_kwargs`` (JSON),
    ``long_name``, ``comment``, ``grid_mapping``.
``motion_fallback`` ``(time,)`` int8
    0 where the motion was estimated, otherwise the index of the reason in
    :data:`pipeline.motion.FALLBACK_STATUSES` (CF ``flag_values`` / ``flag_meanings``):
    1 too_few_frames (fewer than 2 observed frames in the window), 2 no_rain,
    3 uniform_field, 4 frozen_field, 5 no_vectors, 6 method_failed.

Memory is bounded: the work is one dask task per block of ``block_chunks`` time chunks,
each reading its slots plus the ``window - 1`` slots before it straight from the Zarr
arrays and writing its own (chunk-aligned) region, run by dask's threaded scheduler.
Per-slot fallback warnings are gathered into one log line per run.
"""

from __future__ import annotations

import json
import logging
import os
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.motion import FALLBACK_STATUSES, get_motion, quiet_pysteps
from pipeline.units import DBZ_MIN, DBZ_RANGE

__all__ = ["COMPONENTS", "MOTION_VARIABLES", "write_motion"]

logger = logging.getLogger(__name__)

COMPONENTS: tuple[str, str] = ("x", "y")
"""Values of the ``component`` coordinate of ``motion``."""

MOTION_VARIABLES: tuple[str, str] = ("motion", "motion_fallback")


def _pixel_km(ds: xr.Dataset) -> float:
    x = ds["x"].to_numpy()
    if len(x) < 2:
        raise ValueError("store has fewer than 2 x coordinates: cannot tell the pixel size")
    units = str(ds["x"].attrs.get("units", "km")).lower()
    scale = 1e-3 if units in ("m", "metre", "meter", "metres", "meters") else 1.0
    return float(abs(x[1] - x[0]) * scale)


def _template(ds: xr.Dataset, attrs: dict, time_chunk: int) -> tuple[xr.Dataset, dict]:
    import dask.array as da

    n, ny, nx = ds.sizes["time"], ds.sizes["y"], ds.sizes["x"]
    flags = {
        "long_name": "why the slot's motion is zero motion (0: estimated)",
        "flag_values": np.arange(len(FALLBACK_STATUSES), dtype=np.int8),
        "flag_meanings": " ".join(FALLBACK_STATUSES),
    }
    out = xr.Dataset(
        {
            "motion": (
                ("time", "component", "y", "x"),
                da.zeros((n, 2, ny, nx), dtype=np.float32, chunks=(time_chunk, 2, ny, nx)),
                attrs,
            ),
            "motion_fallback": (
                ("time",),
                da.zeros((n,), dtype=np.int8, chunks=(time_chunk,)),
                flags,
            ),
        },
        coords={
            "component": (
                "component",
                np.array(COMPONENTS, dtype=object),  # variable-length UTF-8 in Zarr
                {"long_name": "motion component: x (columns, + right), y (rows, + down)"},
            )
        },
    )
    encoding = {
        "motion": {"chunks": (time_chunk, 2, ny, nx), "_FillValue": None},
        "motion_fallback": {"chunks": (time_chunk,), "_FillValue": None},
    }
    return out, encoding


def _block_task(path: str, k0: int, k1: int, window: int, times_min, observed, method, cadence):
    """Estimate and write the motion of slots ``k0:k1``; returns their fallback codes."""
    import zarr

    group = zarr.open_group(path, mode="r+")  # a directory or a writable session's store
    lo = max(0, k0 - (window - 1))
    need = observed[lo:k1]
    n = k1 - k0
    out = np.zeros((n, 2) + tuple(group["reflectivity"].shape[1:]), dtype=np.float32)
    codes = np.full(n, FALLBACK_STATUSES.index("too_few_frames"), dtype=np.int8)
    if need.sum() >= 2:
        dbz = np.asarray(group["reflectivity"][lo:k1], dtype=np.float32)
        mask = np.asarray(group["mask"][lo:k1], dtype=bool) & need[:, None, None]
        norm = (dbz - np.float32(DBZ_MIN)) / np.float32(DBZ_RANGE)
        for i in range(n):
            t = k0 + i
            a, b = max(lo, t - (window - 1)) - lo, t + 1 - lo
            if need[a:b].sum() < 2:
                continue
            est = method(norm[a:b], mask[a:b], times_min[lo + a : lo + b], cadence)
            out[i], codes[i] = est.field, est.code
    group["motion"][k0:k1] = out
    group["motion_fallback"][k0:k1] = codes
    return codes


def write_motion(
    store: str | os.PathLike,
    method: str = "lk",
    window: int = 4,
    *,
    method_kwargs: dict | None = None,
    block_chunks: int = 2,
    num_workers: int | None = None,
    overwrite: bool = False,
    label: str | None = None,
) -> dict:
    """Estimate per-slot motion over a resampled store and write ``motion`` into it.

    Parameters
    ----------
    store : path or zarr store
        Resampled store (:func:`pipeline.resample.resample_store`), modified in place: an
        Icechunk store gets one commit; a writable session's store (what
        :func:`~pipeline.resample.resample_store` passes) is written and left to its
        caller to commit.
    method : str
        Motion method, one of :data:`pipeline.motion.MOTION_NAMES`.
    window : int
        Slots per estimate (>= 2): ``motion[t]`` uses the observed frames of slots
        ``t - window + 1 .. t``.
    method_kwargs : dict, optional
        Passed to :func:`pipeline.motion.get_motion` (e.g. ``{"grid": 64}``).
    block_chunks : int
        Time chunks per dask task (bounds memory: a task holds its slots plus
        ``window - 1``).
    num_workers : int, optional
        Threads of dask's scheduler (default: min(4, CPUs)).
    overwrite : bool
        Replace existing motion variables; otherwise a store that has them is refused.
    label : str, optional
        Name of the store in the log line (default: ``store``).

    Returns
    -------
    dict
        Summary: ``method``, ``window``, ``n_estimated`` (slots with status 0),
        ``fallbacks`` (count per status name), ``seconds``.
    """
    import dask

    t0 = _time.perf_counter()
    session = None
    if isinstance(store, str | os.PathLike):
        from pipeline.store import as_location, is_icechunk_store, is_url, open_repo

        path = as_location(store)
        if not is_url(path) and not path.exists():
            raise ValueError(f"store {path} does not exist")
        target = str(path)
        if is_url(path) or is_icechunk_store(path):
            session = open_repo(path).writable_session("main")
            target = session.store
    else:  # an open zarr store (a writable Icechunk session's)
        path, target = Path(label or "store"), store
    window = int(window)
    if window < 2:
        raise ValueError(f"motion window must be >= 2 slots, got {window}")
    if block_chunks < 1:
        raise ValueError(f"block_chunks must be >= 1, got {block_chunks}")
    kwargs = dict(method_kwargs or {})
    estimator = get_motion(method, **kwargs)  # ValueError listing the names
    ds = xr.open_zarr(target, consolidated=False)
    try:
        for var in ("reflectivity", "mask", "observed"):
            if var not in ds:
                raise ValueError(f"store {path} has no {var!r}: not a resampled store")
        present = [v for v in MOTION_VARIABLES if v in ds]
        if present and not overwrite:
            raise ValueError(f"store {path} already has {present}; pass overwrite=True")
        times = pd.DatetimeIndex(ds.indexes["time"])
        cadence = float(
            ds.attrs.get("cadence_minutes", (times[1] - times[0]) / pd.Timedelta("1min"))
        )
        observed = np.asarray(ds["observed"].to_numpy(), dtype=bool)
        import zarr

        # tasks write whole time chunks of their own: align them with the store's chunks
        time_chunk = int(zarr.open_group(target, mode="r")["reflectivity"].chunks[0])
        pixel_km = _pixel_km(ds)
        attrs = {
            "long_name": f"rain motion from the observed frames of the last {window} slots",
            "units": "pixel per cadence step",
            "cadence_minutes": cadence,
            "pixel_km": pixel_km,
            "km_per_h_per_unit": pixel_km * 60.0 / cadence,
            "motion_method": str(method).lower(),
            "motion_window": window,
            "motion_kwargs": json.dumps(kwargs, sort_keys=True),
            "comment": (
                "component x along columns (+ right), y along rows (+ down), pysteps (u, v); "
                "0 where motion_fallback > 0"
            ),
            "grid_mapping": "crs",
        }
        template, encoding = _template(ds, attrs, time_chunk)
        # to_zarr(mode="a") replaces the group's attributes: keep them, and say what ran
        group_attrs = dict(ds.attrs)
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        call = f"{stamp} pipeline.motion_store.write_motion(method={method!r}, window={window})"
        history = group_attrs.get("history", "")
        group_attrs["history"] = f"{history}\n{call}" if history else call
        template.attrs = group_attrs
    finally:
        ds.close()
    if present:
        group = zarr.open_group(target, mode="r+")
        for v in present:
            del group[v]
        if "component" in group:
            del group["component"]
    template.to_zarr(target, mode="a", compute=False, consolidated=False, encoding=encoding)

    times_min = ((times - times[0]) / pd.Timedelta("1min")).to_numpy(dtype=np.float64)
    block = time_chunk * block_chunks
    tasks = [
        dask.delayed(_block_task)(
            target, k0, min(k0 + block, len(times)), window, times_min, observed,
            estimator, cadence,
        )
        for k0 in range(0, len(times), block)
    ]  # fmt: skip
    workers = num_workers or min(4, os.cpu_count() or 1)
    quiet = logging.getLogger("pipeline.motion")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one summary line instead of a warning per slot
    try:
        with quiet_pysteps():  # the tasks run in worker threads: warnings filtered here
            codes = np.concatenate(dask.compute(*tasks, scheduler="threads", num_workers=workers))
    finally:
        quiet.setLevel(level)
    if session is not None:
        session.commit(f"motion: {str(method).lower()} over {window} slots, {len(codes)} slots")
    counts = {s: int((codes == i).sum()) for i, s in enumerate(FALLBACK_STATUSES) if i}
    summary = {
        "method": str(method).lower(),
        "window": window,
        "n_estimated": int((codes == 0).sum()),
        "fallbacks": {k: v for k, v in counts.items() if v},
        "seconds": round(_time.perf_counter() - t0, 3),
    }
    if summary["fallbacks"]:
        n_zero = len(codes) - summary["n_estimated"]
        logger.warning(
            "motion %s on %s: zero motion in %d of %d slots (%s)",
            method, label or path, n_zero, len(codes), summary["fallbacks"],
        )  # fmt: skip
    return summary
