"""Forecast generation: from a radar store and a predictor to a forecast dataset.

A *predictor* is anything with the models' call contract (C4)::

    y = fn(x, t_in, t_out, input_mask=None)

with ``x (B, T_in, 1, H, W)`` on the normalised pixel scale p/255, ``t_in (B, T_in)`` and
``t_out (B, T_out)`` in minutes relative to the last input frame, and ``y (B, T_out, 1, H, W)``
in p/255. :class:`Predictor` wraps such a callable with what forecasting needs to know
about it (number of input frames, cadence, grid size, whether it takes arbitrary lead
times). Build one with :func:`baseline_predictor` (persistence, pysteps, ...) or
:func:`run_predictor` (a trained run directory, loaded with ``nowcast.runs.load_run``).

:func:`make_forecast` selects the input window ending at the issue time from a store in
the ingest schema (C2, 480 x 480, irregular times) or the resampled schema (C3, regular
grid with ``observed``), applies the HKO-7 missing-frame rule (a window with more than
``max_consecutive_missing`` consecutive missing frames, or with none observed, is
refused with :class:`InsufficientInputError`; a frame present but without a valid pixel,
a radar outage, counts as missing, so an all-masked window is refused too), downsizes the frames to the predictor's
grid when they differ (block mean in linear Z over valid pixels, like
``pipeline.resample``), runs the predictor and returns a dataset in the forecast schema
(C5): dims ``(lead_time, y, x)``, ``reflectivity`` (dBZ) and ``rainfall_rate`` (mm/h).
``make_forecast_dataset`` is the same function under the name contract C5 uses.

:func:`observations_dataset` puts observed frames on the forecast grid, the form
``products.site.publish_run`` (maps, loop) and ``products.verify.verify_forecast``
(rolling CSI) take.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import units

__all__ = [
    "InputWindow",
    "InsufficientInputError",
    "Predictor",
    "baseline_predictor",
    "check_window",
    "load_window",
    "make_forecast",
    "run_predictor",
    "make_forecast_dataset",
    "observations_dataset",
]

_DEFAULT_CADENCE_MIN = 6.0
_MIN_VALID_FRACTION = 0.5
"""A coarse pixel is valid when at least this fraction of its fine pixels is valid."""


class InsufficientInputError(ValueError):
    """The input window of a forecast has too many missing frames.

    Attributes
    ----------
    issue_time : pandas.Timestamp
        Issue time of the refused forecast.
    reason : str
        Human-readable reason (which frames are missing, which rule).
    """

    def __init__(self, issue_time: pd.Timestamp, reason: str) -> None:
        super().__init__(f"cannot forecast at {issue_time}: {reason}")
        self.issue_time = issue_time
        self.reason = reason


@dataclass(frozen=True)
class Predictor:
    """A callable with the C4 call contract plus what forecasting needs to know.

    Parameters
    ----------
    name : str
        Name written into the forecast's ``model`` attribute.
    fn : callable
        ``fn(x, t_in, t_out, input_mask=None) -> y``, torch tensors, see module docs.
    in_frames : int
        Number of input frames the predictor takes.
    cadence_minutes : float
        Spacing of the input frames in minutes.
    image_size : int or None
        Side of the square grid the predictor works on; ``None`` = the store's grid.
    continuous_time : bool
        True when ``fn`` accepts any positive lead times (ODE models, baselines).
        Otherwise leads must be multiples of the cadence; the predictor is called with
        every step up to the longest lead and the requested ones are kept.
    source : str
        Free text for the ``source`` attribute (run directory, baseline name).
    """

    name: str
    fn: Callable
    in_frames: int
    cadence_minutes: float = _DEFAULT_CADENCE_MIN
    image_size: int | None = None
    continuous_time: bool = True
    source: str = ""


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
    """

    slots: pd.DatetimeIndex
    times: list
    dbz: np.ndarray
    mask: np.ndarray
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


# ---------------------------------------------------------------------------------------
# predictors


def baseline_predictor(
    name: str,
    in_frames: int = 5,
    cadence_minutes: float = _DEFAULT_CADENCE_MIN,
    image_size: int | None = None,
    **kwargs,
) -> Predictor:
    """A classical baseline (``nowcast.baselines.get_baseline``) as a predictor.

    Parameters
    ----------
    name : str
        Baseline name, e.g. ``"persistence"`` or ``"pysteps"``; an unknown name raises the
        registry's ValueError listing the valid ones.
    in_frames : int
        Input frames handed to the baseline (pysteps' Lucas-Kanade needs >= 2).
    cadence_minutes : float
        Spacing of the input frames in minutes (also the pysteps motion time unit).
    image_size : int, optional
        Grid to run on; ``None`` = the store's own grid (full resolution).
    **kwargs
        Passed to the baseline's constructor.
    """
    import inspect

    from nowcast.baselines import get_baseline

    if in_frames < 1:
        raise ValueError(f"in_frames must be >= 1, got {in_frames}")
    fn = get_baseline(name)
    params = inspect.signature(type(fn)).parameters
    if "cadence_minutes" in params:
        kwargs.setdefault("cadence_minutes", float(cadence_minutes))
    if kwargs:
        fn = get_baseline(name, **kwargs)
    return Predictor(
        name=str(name).lower(),
        fn=fn,
        in_frames=int(in_frames),
        cadence_minutes=float(cadence_minutes),
        image_size=image_size,
        continuous_time=bool(getattr(fn, "continuous_time", True)),
        source=f"baseline {str(name).lower()}",
    )


def run_predictor(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """A trained run directory (``nowcast.runs.load_run``) as a predictor.

    The grid size, number of input frames and cadence come from the run's configuration;
    ``continuous_time`` from the model (ODE and attention models accept any lead). A
    Lagrangian model (``full_resolution``) forecasts on the store's own grid
    (``image_size=None``) whatever its network's grid.
    """
    import torch

    from nowcast.runs import load_run

    run_dir = Path(run_dir)
    model, meta = load_run(run_dir)
    model = model.to(torch.device(device)).eval()
    cfg = _run_config(meta)
    in_frames = int(_get(cfg, "in_frames", 5))
    image_size = _get(cfg, "image_size", None)
    cadence = float(_get(cfg, "cadence_minutes", _DEFAULT_CADENCE_MIN) or _DEFAULT_CADENCE_MIN)
    name = str(
        (meta.get("model_name") if isinstance(meta, dict) else None)
        or getattr(model, "name", type(model).__name__)
    )
    if getattr(model, "full_resolution", False):
        image_size = None  # Lagrangian models forecast on the store's own grid
    return Predictor(
        name=name,
        fn=model,
        in_frames=in_frames,
        cadence_minutes=cadence,
        image_size=int(image_size) if image_size is not None else None,
        continuous_time=bool(getattr(model, "continuous_time", False)),
        source=f"run {run_dir}",
    )


def _run_config(meta) -> object:
    if isinstance(meta, dict):
        cfg = meta.get("config", meta)
        return cfg if cfg is not None else {}
    return getattr(meta, "config", meta)


def _get(obj, key: str, default):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for sub in obj.values():
            if isinstance(sub, dict) and key in sub:
                return sub[key]
        return default
    return getattr(obj, key, default)


# ---------------------------------------------------------------------------------------
# input window


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


def _as_dataset(store: xr.Dataset | str | Path) -> xr.Dataset:
    if isinstance(store, xr.Dataset):
        return store
    from pipeline.store import open_store

    return open_store(store)


def _match_slots(store: xr.Dataset, slots: pd.DatetimeIndex, tolerance: pd.Timedelta) -> np.ndarray:
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
        idx = np.where(ok, idx, -1)
    return idx


def load_window(
    store: xr.Dataset | str | Path,
    slots: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    tolerance: str | pd.Timedelta = "2min",
) -> InputWindow:
    """Read the frames of *slots* from a store (C2 or C3 schema).

    Parameters
    ----------
    store : xarray.Dataset or path
        Store opened with ``pipeline.store.open_store`` (or its path).
    slots : sequence of timestamps
        ``(T,)`` nominal frame times.
    tolerance : str or Timedelta
        A store frame at most this far from a slot fills it (nearest one wins).

    Returns
    -------
    InputWindow
        Frames in dBZ ``(T, H, W)`` (NaN where missing), masks, observed flags.
    """
    ds = _as_dataset(store)
    slots = pd.DatetimeIndex(slots)
    idx = _match_slots(ds, slots, pd.Timedelta(tolerance))
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
    return InputWindow(slots=slots, times=times, dbz=dbz, mask=mask, observed=found)


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


def _downsize(dbz: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W)`` dBZ and validity onto ``size x size`` (``pipeline.resample.downsize``).

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
    from pipeline.resample import downsize

    return downsize(dbz, mask, h // size, average="z", min_valid_fraction=_MIN_VALID_FRACTION)


def _coarse_coords(ds: xr.Dataset, size: int) -> dict[str, xr.Variable]:
    """Coordinates ``y, x, lat, lon`` of the store's grid, coarsened to ``size x size``.

    Any source's grid: lat/lon from its grid mapping (:func:`pipeline.grid_fit.coarse_coords`).
    """
    if ds.sizes["y"] == size and ds.sizes["x"] == size:
        return {k: ds[k].variable for k in ("y", "x", "lat", "lon") if k in ds.coords}
    from pipeline.grid_fit import coarse_coords

    return {k: v.variable for k, v in coarse_coords(ds, size).items()}


# ---------------------------------------------------------------------------------------
# forecast


def _validate_leads(lead_minutes: Sequence[int] | np.ndarray) -> np.ndarray:
    leads = np.asarray(lead_minutes)
    if leads.ndim != 1 or leads.size == 0:
        raise ValueError(f"lead_minutes must be a non-empty 1-D sequence, got {lead_minutes!r}")
    if not np.all(np.equal(np.mod(leads, 1), 0)) or np.any(leads <= 0):
        raise ValueError(
            f"lead_minutes must be positive whole minutes, got {leads.tolist()} "
            "(the forecast schema stores lead_time as integer minutes)"
        )
    if np.any(np.diff(leads) <= 0):
        raise ValueError(f"lead_minutes must be strictly increasing, got {leads.tolist()}")
    return leads.astype(np.int64)


def _run(predictor: Predictor, x: np.ndarray, m: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """Call the predictor on one window; ``x, m (T, H, W)``; returns ``(L, H, W)`` p/255."""
    import torch

    t = predictor.in_frames
    cad = predictor.cadence_minutes
    t_in = (np.arange(t, dtype=np.float32) - (t - 1)) * cad
    if predictor.continuous_time:
        t_call = leads.astype(np.float32)
        keep = np.arange(len(leads))
    else:
        steps = leads / cad
        if not np.allclose(steps, np.round(steps)):
            raise ValueError(
                f"predictor {predictor.name!r} takes regular lead times only "
                f"(multiples of {cad:g} min), got {leads.tolist()}"
            )
        steps = np.round(steps).astype(int)
        t_call = (np.arange(1, steps.max() + 1) * cad).astype(np.float32)
        keep = steps - 1
    xt = torch.from_numpy(np.ascontiguousarray(x[None, :, None], dtype=np.float32))
    mt = torch.from_numpy(m[None, :, None].astype(np.float32))
    with torch.no_grad():
        y = predictor.fn(
            xt, torch.from_numpy(t_in[None]), torch.from_numpy(t_call[None]), input_mask=mt
        )
    y = y.detach().cpu().numpy()
    expected = (1, len(t_call), 1, x.shape[1], x.shape[2])
    if y.shape != expected:
        raise ValueError(
            f"predictor {predictor.name!r} returned shape {y.shape}, expected {expected}"
        )
    if len(keep) == len(t_call):
        return y[0, :, 0]  # a view: every step was asked for
    return y[0, keep, 0]


def make_forecast(
    predictor: Predictor,
    store: xr.Dataset | str | Path,
    issue_time: str | pd.Timestamp | np.datetime64,
    lead_minutes: Sequence[int],
    *,
    max_consecutive_missing: int = 2,
    tolerance: str | pd.Timedelta = "2min",
) -> xr.Dataset:
    """Forecast from the frames up to *issue_time* in *store* (C5 forecast schema).

    Parameters
    ----------
    predictor : Predictor
        See :func:`baseline_predictor`, :func:`run_predictor`.
    store : xarray.Dataset or path
        Radar store in the ingest (C2) or resampled (C3) schema.
    issue_time : timestamp
        Time of the newest input frame; inputs are the ``predictor.in_frames`` slots
        ``issue_time - k * cadence``, k = T-1..0, each filled by the nearest store frame
        within *tolerance*.
    lead_minutes : sequence of int
        ``(L,)`` positive, increasing lead times in minutes. Any values for
        continuous-time predictors; multiples of the cadence otherwise.
    max_consecutive_missing : int
        HKO-7 rule: a window with a longer run of missing frames is refused.
    tolerance : str or Timedelta
        Matching tolerance between slots and store times.

    Returns
    -------
    xarray.Dataset
        Dims ``(lead_time, y, x)``; ``reflectivity`` (dBZ, float32) and ``rainfall_rate``
        (mm/h, float32; 0 where the forecast is at or below the no-echo level -10 dBZ);
        coords ``lead_time`` (int minutes), ``valid_time``, scalar ``issue_time``, ``y``,
        ``x``, ``lat``, ``lon``, ``crs``; attrs ``model``, ``source``, ``history``, and
        ``fallback`` when the predictor fell back to a simpler method (the reason).

    Raises
    ------
    InsufficientInputError
        The input window breaks the missing-frame rule (reason in ``.reason``).
    ValueError
        Bad lead times, or a predictor returning the wrong shape.
    """
    leads = _validate_leads(lead_minutes)
    ds = _as_dataset(store)
    issue = pd.Timestamp(issue_time)
    if issue.tzinfo is not None:
        issue = issue.tz_convert("UTC").tz_localize(None)
    cad = pd.Timedelta(minutes=predictor.cadence_minutes)
    slots = pd.DatetimeIndex([issue - k * cad for k in range(predictor.in_frames - 1, -1, -1)])
    win = load_window(ds, slots, tolerance)
    size = predictor.image_size or ds.sizes["y"]
    dbz, mask = _refuse_or_downsize(win, size, issue, max_consecutive_missing)
    x = units.dbz_to_normalized_float32(dbz, mask)
    y = _run(predictor, x, mask, leads)
    out_dbz, rate = units.normalized_to_dbz_and_rainrate_float32(y)
    return _forecast_dataset(ds, size, issue, leads, out_dbz, rate, predictor, win)


def _refuse_or_downsize(
    win: InputWindow, size: int, issue: pd.Timestamp, max_consecutive_missing: int
) -> tuple[np.ndarray, np.ndarray]:
    """The window on the predictor's grid, or :class:`InsufficientInputError`.

    A frame that is present but has no valid pixel on the predictor's grid (a radar
    outage: mask all False) counts as missing, as the baselines and models treat it;
    a window with no frame holding a valid pixel is refused.
    """
    stamp = [s.strftime("%Y-%m-%d %H:%M") for s in win.slots]
    reason = check_window(win.observed, max_consecutive_missing)
    if reason is not None:
        missing = [t for t, o in zip(stamp, win.observed, strict=True) if not o]
        raise InsufficientInputError(issue, f"{reason}; missing: {', '.join(missing)}")
    dbz, mask = _downsize(win.dbz, win.mask, size)
    usable = win.observed & mask.reshape(mask.shape[0], -1).any(axis=1)
    if not usable.any():
        raise InsufficientInputError(
            issue,
            f"all {len(stamp)} input frames ({stamp[0]} to {stamp[-1]}) are fully masked "
            "(present but with no valid pixel: a radar outage); nothing to forecast from",
        )
    reason = check_window(usable, max_consecutive_missing)
    if reason is not None:
        missing = [t for t, u in zip(stamp, usable, strict=True) if not u]
        raise InsufficientInputError(
            issue,
            f"{reason} (frames with no valid pixel count as missing); missing or fully "
            f"masked: {', '.join(missing)}",
        )
    return dbz, mask


def _forecast_dataset(
    ds: xr.Dataset,
    size: int,
    issue: pd.Timestamp,
    leads: np.ndarray,
    dbz: np.ndarray,
    rate: np.ndarray,
    predictor: Predictor,
    win: InputWindow,
) -> xr.Dataset:
    coords: dict[str, object] = dict(_coarse_coords(ds, size))
    coords["lead_time"] = xr.Variable(
        "lead_time", leads, {"units": "minutes", "long_name": "forecast lead time"}
    )
    coords["valid_time"] = xr.Variable(
        "lead_time",
        np.datetime64(issue.to_datetime64(), "ns") + leads.astype("timedelta64[m]"),
        {"long_name": "valid time of the forecast", "standard_name": "time"},
    )
    coords["issue_time"] = xr.Variable(
        (), np.datetime64(issue.to_datetime64(), "ns"), {"long_name": "forecast issue time"}
    )
    if "crs" in ds.variables:
        coords["crs"] = xr.Variable((), ds["crs"].values, ds["crs"].attrs)
    else:
        from pipeline.geo import crs_attrs

        coords["crs"] = xr.Variable((), np.int32(0), crs_attrs())
    dims = ("lead_time", "y", "x")
    used = [t.strftime("%Y-%m-%dT%H:%M") for t in win.times if t is not None]
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = {
        "title": f"Radar nowcast by {predictor.name}",
        "model": predictor.name,
        "source": f"{predictor.source}; inputs {', '.join(used)}",
        "history": f"{now} nowcast.forecast.make_forecast ({predictor.in_frames} input frames)",
    }
    fallback = getattr(predictor.fn, "last_fallback", None)
    if fallback:  # e.g. S-PROG extrapolated a frozen field instead (nowcast.baselines)
        attrs["fallback"] = str(fallback)
    data = {
        "reflectivity": xr.Variable(
            dims,
            dbz,
            {
                "units": "dBZ",
                "long_name": "forecast equivalent reflectivity factor",
                "standard_name": "equivalent_reflectivity_factor",
                "grid_mapping": "crs",
            },
        ),
        "rainfall_rate": xr.Variable(
            dims,
            rate,
            {
                "units": "mm h-1",
                "long_name": "forecast rain rate (Z = 58.53 R^1.56)",
                "standard_name": "rainfall_rate",
                "grid_mapping": "crs",
            },
        ),
    }
    motion = _motion_variable(predictor, ds, dbz.shape[-2:])
    if motion is not None:
        data["motion"] = motion
        coords["component"] = xr.Variable("component", np.array(["x", "y"], dtype=object))
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _motion_variable(predictor: Predictor, ds: xr.Dataset, shape) -> xr.Variable | None:
    """The motion field a Lagrangian predictor used, ``(component, y, x)``, or None."""
    field = getattr(predictor.fn, "last_motion", None)
    if field is None or tuple(field.shape[-2:]) != tuple(shape) or field.shape[0] != 1:
        return None
    px_km = abs(float(ds["x"][1] - ds["x"][0])) * (ds.sizes["x"] / shape[-1]) if "x" in ds else 0.0
    per_h = 60.0 / predictor.cadence_minutes
    return xr.Variable(
        ("component", "y", "x"),
        np.asarray(field[0].detach().cpu().numpy(), dtype=np.float32),
        {
            "units": "pixel per cadence step",
            "long_name": "motion field of the extrapolation (x: columns, y: rows downwards)",
            "cadence_minutes": float(predictor.cadence_minutes),
            "km_per_h_per_unit": px_km * per_h,
            "grid_mapping": "crs",
        },
    )


# ---------------------------------------------------------------------------------------
# observations on the forecast grid


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
        Radar store (C2 or C3 schema).
    times : sequence of timestamps
        ``(T,)`` nominal times; each is filled by the nearest store frame within
        *tolerance*, or left unobserved.
    size : int, optional
        Grid side (downsized like the forecasts); ``None`` = the store's grid.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)``: ``reflectivity`` (dBZ float32, NaN where not observed or
        not valid), ``mask`` (bool), ``observed`` (time) bool; coords ``time`` (the
        nominal times), ``y``, ``x``, ``lat``, ``lon``, ``crs``. This is the
        ``observations_ds`` of ``products.site.publish_run`` / ``verify_forecast``.
    """
    ds = _as_dataset(store)
    win = load_window(ds, times, tolerance)
    size = size or ds.sizes["y"]
    dbz, mask = _downsize(win.dbz, win.mask, size)
    dbz = np.where(mask, dbz, np.nan).astype(np.float32)
    coords: dict[str, object] = dict(_coarse_coords(ds, size))
    coords["time"] = xr.Variable("time", win.slots.values.astype("datetime64[ns]"))
    if "crs" in ds.variables:
        coords["crs"] = xr.Variable((), ds["crs"].values, ds["crs"].attrs)
    dims = ("time", "y", "x")
    return xr.Dataset(
        {
            "reflectivity": xr.Variable(
                dims, dbz, {"units": "dBZ", "long_name": "observed reflectivity"}
            ),
            "mask": xr.Variable(dims, mask.astype(bool), {"long_name": "valid pixel"}),
            "observed": xr.Variable("time", win.observed.copy()),
        },
        coords=coords,
    )


make_forecast_dataset = make_forecast
"""Alias of :func:`make_forecast` (the name used by contract C5)."""
