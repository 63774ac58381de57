"""Input-window access: frames of a radar store at nominal times, on a chosen grid.

What forecasting (:mod:`nowcast.forecast`), publishing and verification read from a store in
the store or resampled schema (docs/contracts.md):

- :func:`window_slots`: the nominal times of a window ending at an issue time;
- :func:`load_window`: the frames of those slots (each filled by the nearest store frame within
  a tolerance; in a resampled store only an observed slot counts) as an :class:`InputWindow`;
- :func:`check_window`: the HKO-7 missing-frame rule on a window (docs/facts.md section 3);
- :func:`downsize_window`: the frames on a coarser grid (block mean in linear Z);
- :func:`observations_dataset`: observed frames on a forecast's grid
  (docs/contracts.md, Observations on the forecast grid);
- :func:`newest_observed_time`: the time of the newest observed frame (a forecast cycle's
  store clock);
- :func:`store_cadence`: the store's own time between frames (the default cadence of a
  forecast and of a resample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.schema import coarse_coords, resampled_dataset
from pipeline.spatial import downsize

__all__ = [
    "InputWindow",
    "as_dataset",
    "check_window",
    "downsize_window",
    "load_window",
    "newest_observed_time",
    "observations_dataset",
    "store_cadence",
    "window_slots",
]

DEFAULT_CADENCE = pd.Timedelta("6min")
"""Cadence of a store that says nothing and holds fewer than two frames (HKO-7's)."""


MIN_VALID_FRACTION = 0.5
"""A coarse pixel is valid when at least this fraction of its fine pixels is valid."""


@dataclass
class InputWindow:
    """Frames of one input window on the predictor's time grid.

    Attributes
    ----------
    slots : pandas.DatetimeIndex
        ``(T,)`` nominal frame times, the last one is the issue time.
    times : list of pandas.Timestamp or None
        ``(T,)`` store time used for each slot (``None`` = missing).
    dbz : numpy.ndarray
        ``(T, H, W)`` float32 reflectivity in dBZ, NaN where missing or unobserved.
    mask : numpy.ndarray
        ``(T, H, W)`` bool, True = valid pixel.
    observed : numpy.ndarray
        ``(T,)`` bool, True = a frame was found for the slot.
    interpolated : numpy.ndarray
        ``(T,)`` bool, True = that frame is a filled gap of a resampled store (its
        ``interpolated`` flag), not an observation.
    """

    slots: pd.DatetimeIndex
    times: list
    dbz: np.ndarray
    mask: np.ndarray
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    interpolated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def check_window(observed: Sequence[bool], max_consecutive_missing: int = 2) -> str | None:
    """HKO-7 rule on one window: the reason it is refused, or ``None`` when it is usable.

    Parameters
    ----------
    observed : sequence of bool
        ``(T,)`` True where the frame exists.
    max_consecutive_missing : int
        Longest run of missing frames still accepted (HKO-7: 2).

    Examples
    --------
    >>> check_window([True, False, False, True]) is None
    True
    >>> check_window([True, False, False, False, True])
    '3 consecutive input frames missing (more than 2 allowed)'
    """
    obs = np.asarray(observed, dtype=bool)
    if obs.size == 0 or not obs.any():
        return "no input frame observed"
    run = longest = 0
    for o in obs:
        run = 0 if o else run + 1
        longest = max(longest, run)
    if longest > max_consecutive_missing:
        return (
            f"{longest} consecutive input frames missing "
            f"(more than {max_consecutive_missing} allowed)"
        )
    return None


def as_dataset(store: xr.Dataset | str | Path) -> xr.Dataset:
    """*store* itself when it is a dataset, else :func:`pipeline.store.open_store` of it."""
    if isinstance(store, xr.Dataset):
        return store
    from pipeline.store import open_store

    return open_store(store)


def _match_slots(
    store: xr.Dataset, slots: pd.DatetimeIndex, tolerance: pd.Timedelta, filled: bool = True
) -> np.ndarray:
    """Index into ``store.time`` for each slot (nearest within tolerance, observed), -1 if none."""
    times = pd.DatetimeIndex(store["time"].values)
    if len(times) == 0:
        return np.full(len(slots), -1, dtype=np.int64)
    idx = times.get_indexer(slots, method="nearest", tolerance=tolerance)
    if "observed" in store:
        ok = np.zeros(len(idx), dtype=bool)
        sel = idx >= 0
        if sel.any():
            ok[sel] = np.asarray(store["observed"].values)[idx[sel]]
            if filled and "interpolated" in store:  # filled gaps serve as inputs (flagged)
                ok[sel] |= np.asarray(store["interpolated"].values, bool)[idx[sel]]
        idx = np.where(ok, idx, -1)
    return idx


def load_window(
    store: xr.Dataset | str | Path,
    slots: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    tolerance: str | pd.Timedelta = "2min",
    use_interpolated: bool = True,
) -> InputWindow:
    """Read the frames of *slots* from a store (store or resampled schema, docs/contracts.md).

    Parameters
    ----------
    store : xarray.Dataset or path
        Store opened with ``pipeline.store.open_store`` (or its path).
    slots : sequence of timestamps
        ``(T,)`` nominal frame times.
    tolerance : str or Timedelta
        A store frame at most this far from a slot fills it (nearest one wins).
    use_interpolated : bool
        Take a resampled store's filled gaps (``interpolated`` slots) as frames, flagged in
        ``InputWindow.interpolated`` (forecast inputs); False: they are missing.

    Returns
    -------
    InputWindow
        Frames in dBZ ``(T, H, W)`` (NaN where missing), masks, observed flags.
    """
    ds = as_dataset(store)
    slots = pd.DatetimeIndex(slots)
    idx = _match_slots(ds, slots, pd.Timedelta(tolerance), use_interpolated)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    found = idx >= 0
    if found.all():
        dbz, mask = _read_frames(ds, idx)
    else:
        dbz = np.full((len(slots), ny, nx), np.nan, dtype=np.float32)
        mask = np.zeros((len(slots), ny, nx), dtype=bool)
        if found.any():
            dbz[found], mask[found] = _read_frames(ds, idx[found])
    mask &= np.isfinite(dbz)
    times_all = pd.DatetimeIndex(ds["time"].values) if found.any() else None
    times = [times_all[i] if i >= 0 else None for i in idx]
    filled = np.zeros(len(slots), bool)
    if "interpolated" in ds and found.any():
        filled[found] = np.asarray(ds["interpolated"].values, bool)[idx[found]]
    return InputWindow(
        slots=slots, times=times, dbz=dbz, mask=mask, observed=found, interpolated=filled
    )


def _read_frames(ds: xr.Dataset, take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(len(take), H, W)`` float32 dBZ and bool validity of store frames *take*.

    One synchronous dask computation for both variables (a few frames: thread hand-offs
    would cost more than they save), a slice when the frames are consecutive.
    """
    import dask

    if len(take) and np.all(np.diff(take) == 1):
        sel = {"time": slice(int(take[0]), int(take[-1]) + 1)}
    else:
        sel = {"time": take}
    arrays = [ds["reflectivity"].isel(sel).data]
    if "mask" in ds:
        arrays.append(ds["mask"].isel(sel).data)
    lazy = [not isinstance(a, np.ndarray) for a in arrays]
    if any(lazy):
        arrays = list(dask.compute(*arrays, scheduler="synchronous"))
    # computed arrays are fresh; in-memory ones are copied (never hand out views of them)
    out = [
        np.array(a, dtype=dt, copy=None if fresh else True)
        for a, dt, fresh in zip(arrays, (np.float32, bool), lazy, strict=False)
    ]
    if len(out) == 1:
        out.append(np.ones(out[0].shape, dtype=bool))
    return out[0], out[1]


def grid_size(forecast: xr.Dataset) -> int | None:
    """The ``size`` argument that puts observations on *forecast*'s grid.

    A forecast on a coarse grid is square (``size x size``); one on a store's own grid,
    which may not be square, gets None (the store's grid, not downsized).
    """
    h, w = forecast.sizes["y"], forecast.sizes["x"]
    return h if h == w else None


def downsize_window(dbz: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W)`` dBZ and validity onto ``size x size`` (:func:`pipeline.spatial.downsize`).

    Block mean in linear Z over the valid fine pixels; a coarse pixel is valid when at
    least half of its fine pixels are.
    """
    t, h, w = dbz.shape
    if h == size and w == size:
        return dbz, mask
    if h % size or w % size or h != w:
        raise ValueError(
            f"cannot downsize a {h}x{w} grid to {size}x{size}: the size must divide the side"
        )
    return downsize(dbz, mask, h // size, average="z", min_valid_fraction=MIN_VALID_FRACTION)


def observations_dataset(
    store: xr.Dataset | str | Path,
    times: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    size: int | None = None,
    tolerance: str | pd.Timedelta = "2min",
) -> xr.Dataset:
    """Observed frames at nominal *times*, on a ``size x size`` grid, for products and scores.

    Parameters
    ----------
    store : xarray.Dataset or path
        Radar store (store or resampled schema, docs/contracts.md).
    times : sequence of timestamps
        ``(T,)`` nominal times; each is filled by the nearest store frame within
        *tolerance*, or left unobserved (a filled gap of a resampled store, its
        ``interpolated`` slots, is unobserved here: products and scores show and score
        observations only).
    size : int, optional
        Grid side (downsized like the forecasts); ``None`` = the store's grid.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)``: ``reflectivity`` (dBZ float32, NaN where not observed or
        not valid), ``mask`` (bool), ``observed`` (time) bool; coords ``time`` (the
        nominal times), ``y``, ``x``, ``lat``, ``lon``, ``crs``. This is the
        ``observations_ds`` of ``products.site.publish_run`` / ``products.verify.verify_forecast``.
    """
    ds = as_dataset(store)
    win = load_window(ds, times, tolerance, use_interpolated=False)  # never filled gaps
    dbz, mask = (win.dbz, win.mask) if size is None else downsize_window(win.dbz, win.mask, size)
    dbz = np.where(mask, dbz, np.nan).astype(np.float32)
    grid = coarse_coords(ds, size)
    return resampled_dataset(win.slots, dbz, mask, win.observed, grid=grid, cadence_minutes=None)


def window_slots(
    end: str | pd.Timestamp, n: int, cadence_minutes: float | pd.Timedelta = 6.0
) -> pd.DatetimeIndex:
    """The ``n`` nominal times of a window ending at *end*, every cadence, oldest first.

    Examples
    --------
    >>> window_slots("2015-06-01 12:00", 3).strftime("%H:%M").tolist()
    ['11:48', '11:54', '12:00']
    """
    if n < 1:
        raise ValueError(f"a window needs n >= 1 slots, got {n}")
    cad = (
        cadence_minutes
        if isinstance(cadence_minutes, pd.Timedelta)
        else pd.Timedelta(minutes=float(cadence_minutes))
    )
    end = pd.Timestamp(end)
    return pd.DatetimeIndex([end - k * cad for k in range(n - 1, -1, -1)])


def newest_observed_time(store: xr.Dataset | str | Path) -> pd.Timestamp:
    """Time of the newest frame of *store* (in a resampled store, the newest observed slot).

    Raises
    ------
    ValueError
        If the store holds no frame, or (resampled) no observed slot.
    """
    ds = as_dataset(store)
    name = store if not isinstance(store, xr.Dataset) else "dataset"
    if ds.sizes.get("time", 0) == 0:
        raise ValueError(f"store {name} holds no frame yet: no issue time")
    times = pd.DatetimeIndex(ds["time"].values)
    if "observed" in ds:
        obs = np.asarray(ds["observed"].values, bool)
        if not obs.any():
            raise ValueError(f"store {name} has no observed frame: no issue time")
        times = times[obs]
    return times[-1]


def store_cadence(store: xr.Dataset | str | Path) -> pd.Timedelta:
    """The store's own time between frames, read from the store, never assumed.

    In order: the ``cadence_minutes`` attribute of a resampled store; the
    ``nominal_cadence_minutes`` attribute an ingest writes from its radar source
    (:attr:`pipeline.sources.RadarSource.cadence`: 5 min for KNMI, 6 min for HKO-7); the
    most frequent spacing of the store's frame times, in whole minutes (a store made
    before that attribute existed); :data:`DEFAULT_CADENCE` for a store of fewer than two
    frames.

    Parameters
    ----------
    store : xarray.Dataset or path
        Radar store in the store or resampled schema (docs/contracts.md).

    Returns
    -------
    pandas.Timedelta
        Positive cadence.
    """
    ds = as_dataset(store)
    for key in ("cadence_minutes", "nominal_cadence_minutes"):
        value = ds.attrs.get(key)
        if value is not None and float(value) > 0:
            return pd.Timedelta(minutes=float(value))
    times = pd.DatetimeIndex(ds["time"].values) if "time" in ds.variables else None
    if times is None or len(times) < 2:
        return DEFAULT_CADENCE
    steps = np.round(np.diff(times.asi8) / 60e9)  # whole minutes
    steps = steps[steps > 0]
    if not steps.size:
        return DEFAULT_CADENCE
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(minutes=float(values[np.argmax(counts)]))  # the smallest on a tie
