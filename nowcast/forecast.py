"""Forecast generation: from a radar store and a predictor to a forecast dataset.

A *predictor* is anything with the predictor call contract (docs/contracts.md)::

    y = fn(x, t_in, t_out, input_mask=None)

with ``x (B, T_in, 1, H, W)`` on the normalised pixel scale p/255, ``t_in (B, T_in)`` and
``t_out (B, T_out)`` in minutes relative to the last input frame, and ``y (B, T_out, 1, H, W)``
in p/255. :class:`Predictor` wraps such a callable with what forecasting needs to know
about it (number of input frames, cadence, grid size, whether it takes arbitrary lead
times). Build one with :func:`baseline_predictor` (persistence, pysteps, ...) or
:func:`run_predictor` (a trained run directory, loaded with ``nowcast.runs.load_run``).

:func:`make_forecast` selects the input window ending at the issue time from a store in
the store schema (480 x 480, irregular times) or the resampled schema (regular grid with
``observed``), applies the HKO-7 missing-frame rule (a window with more than
``max_consecutive_missing`` consecutive missing frames, or with none observed, is refused
with :class:`InsufficientInputError`; a frame present but without a valid pixel, a radar
outage, counts as missing, so an all-masked window is refused too), downsizes the frames to
the predictor's grid when they differ (block mean in linear Z over valid pixels, like
``pipeline.resample``), runs the predictor and returns a dataset in the forecast schema:
dims ``(lead_time, y, x)``, ``reflectivity`` (dBZ) and ``rainfall_rate`` (mm/h). The three
schemas are in docs/contracts.md. ``make_forecast_dataset`` is the same function under the
name docs/contracts.md uses.

:func:`load_window`, :func:`check_window` and :func:`observations_dataset` (observed frames
on the forecast grid, the form ``products.site.publish_run`` and
``products.verify.verify_forecast`` take) live in :mod:`pipeline.window` and are
re-exported here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast.contract import Nowcaster
from pipeline import units
from pipeline.schema import coarse_coords, forecast_dataset
from pipeline.window import (  # re-exported: input-window access lives in pipeline.window
    InputWindow,
    as_dataset,
    check_window,
    downsize_window,
    load_window,
    observations_dataset,
    window_slots,
)

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
    """A :class:`nowcast.contract.Nowcaster` plus what forecasting needs to know about it.

    Parameters
    ----------
    name : str
        Name written into the forecast's ``model`` attribute.
    fn : nowcast.contract.Nowcaster
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
    run_grid : mapping, optional
        The grid a trained run was trained at (:func:`nowcast.training.rundir.run_grid`);
        :func:`make_forecast` refuses a store of another network pixel size.
    """

    name: str
    fn: Nowcaster
    in_frames: int
    cadence_minutes: float = _DEFAULT_CADENCE_MIN
    image_size: int | None = None
    continuous_time: bool = True
    source: str = ""
    run_grid: Mapping[str, Any] | None = None


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
        run_grid=_run_grid(meta, cfg),
    )


def _run_grid(meta, cfg) -> dict | None:
    """The run's grid record plus its network side (None for a hand-made predictor)."""
    from nowcast.training.rundir import run_grid

    if not isinstance(meta, dict) or not hasattr(cfg, "image_size"):
        return None
    return {**run_grid(meta, cfg), "network_side": int(cfg.image_size)}


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


def step_count(predictor, leads: np.ndarray) -> int:
    """Frames *predictor* makes for *leads* (every step up to the longest for a regular one).

    Computed without allocating the steps, so an absurd lead is refused by
    :func:`check_forecast_size` rather than by an allocation.
    """
    if predictor.continuous_time:
        return int(len(leads))
    return int(round(float(np.max(leads)) / float(predictor.cadence_minutes)))


def check_forecast_size(
    predictor,
    ds: xr.Dataset,
    leads: np.ndarray,
    *,
    members: int | None = None,
    n_thresholds: int = 0,
    n_percentiles: int = 0,
    keep_members: bool = False,
    probability: str = "fraction",
) -> None:
    """Refuse a forecast whose estimated memory exceeds what the machine has, before allocation.

    Parameters
    ----------
    predictor : Predictor
        Its grid (``image_size``, else the store's ``y`` x ``x``), cadence and kind.
    ds : xarray.Dataset
        The radar store (only its sizes are read).
    leads : numpy.ndarray
        ``(L,)`` lead times in minutes (validated).
    members, n_thresholds, n_percentiles, keep_members
        Of an ensemble forecast (see :func:`pipeline.guards.ensemble_bytes`).
    probability : str
        Probability estimator (``"debiased"`` adds its binomial table).

    Raises
    ------
    pipeline.guards.SizeLimitError
        The estimate (in the message, with the memory available) does not fit.
    """
    from pipeline.guards import check_fits, ensemble_bytes

    size = predictor.image_size
    h, w = (size, size) if size else (int(ds.sizes.get("y", 0)), int(ds.sizes.get("x", 0)))
    steps = step_count(predictor, leads)
    nbytes = ensemble_bytes(
        members=members,
        steps=steps,
        height=h,
        width=w,
        n_thresholds=n_thresholds,
        n_percentiles=n_percentiles,
        keep_members=keep_members,
        all_at_once=bool(getattr(predictor.fn, "ensemble", False)),
        debiased=probability == "debiased",
    )
    grid = f"{steps} step{'s' if steps != 1 else ''} on {h} x {w} pixels by {predictor.name}"
    what = f"a forecast of {grid}"
    if members is not None:
        what = f"an ensemble of {int(members)} members, {grid}"
        if n_percentiles:
            what += f" with {n_percentiles} percentiles"
    check_fits(what, nbytes)


def call_times(predictor, leads: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``t_in (T_in,)``, the lead times to call with and the indices of *leads* among them.

    A regular-only predictor is called with every step up to the longest lead and the
    requested ones are kept (used by :func:`make_forecast` and the ensemble forecasts).
    """
    t = int(predictor.in_frames)
    cad = float(predictor.cadence_minutes)
    t_in = (np.arange(t, dtype=np.float32) - (t - 1)) * cad
    if predictor.continuous_time:
        return t_in, leads.astype(np.float32), np.arange(len(leads))
    steps = leads / cad
    if not np.allclose(steps, np.round(steps)):
        raise ValueError(
            f"predictor {predictor.name!r} takes regular lead times only "
            f"(multiples of {cad:g} min), got {leads.tolist()}"
        )
    steps = np.round(steps).astype(int)
    return t_in, (np.arange(1, steps.max() + 1) * cad).astype(np.float32), steps - 1


def _run(predictor: Predictor, x: np.ndarray, m: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """Call the predictor on one window; ``x, m (T, H, W)``; returns ``(L, H, W)`` p/255."""
    import torch

    t_in, t_call, keep = call_times(predictor, leads)
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
    """Forecast from the frames up to *issue_time* in *store* (docs/contracts.md, Forecast schema).

    Parameters
    ----------
    predictor : Predictor
        See :func:`baseline_predictor`, :func:`run_predictor`.
    store : xarray.Dataset or path
        Radar store in the store or resampled schema (docs/contracts.md).
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
    pipeline.guards.SizeLimitError
        The forecast would not fit in memory (:func:`check_forecast_size`; a ValueError).
    """
    leads = _validate_leads(lead_minutes)
    ds = as_dataset(store)
    if predictor.run_grid is not None:  # the store's km per network pixel against the run's
        from nowcast.training.rungrid import check_store, store_grid

        check_store(
            predictor.run_grid,
            store_grid(ds, network_side=int(predictor.run_grid["network_side"])),
            continuous_time=predictor.continuous_time,
            run_name=predictor.source,
            hint="train a run on this grid",
        )
    issue = pd.Timestamp(issue_time)
    if issue.tzinfo is not None:
        issue = issue.tz_convert("UTC").tz_localize(None)
    check_forecast_size(predictor, ds, leads)
    slots = window_slots(issue, predictor.in_frames, predictor.cadence_minutes)
    win = load_window(ds, slots, tolerance)
    size = predictor.image_size  # None: the store's own grid, square or not
    dbz, mask = _refuse_or_downsize(win, size, issue, max_consecutive_missing)
    x = units.dbz_to_normalized_float32(dbz, mask)
    y = _run(predictor, x, mask, leads)
    out_dbz, rate = units.normalized_to_dbz_and_rainrate_float32(y)
    return _forecast_dataset(ds, size, issue, leads, out_dbz, rate, predictor, win)


def _refuse_or_downsize(
    win: InputWindow, size: int | None, issue: pd.Timestamp, max_consecutive_missing: int
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
    dbz, mask = (win.dbz, win.mask) if size is None else downsize_window(win.dbz, win.mask, size)
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
    size: int | None,
    issue: pd.Timestamp,
    leads: np.ndarray,
    dbz: np.ndarray,
    rate: np.ndarray,
    predictor: Predictor,
    win: InputWindow,
) -> xr.Dataset:
    grid = coarse_coords(ds, size)
    used = [t.strftime("%Y-%m-%dT%H:%M") for t in win.times if t is not None]
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fallback = getattr(predictor.fn, "last_fallback", None)
    out = forecast_dataset(  # fallback: e.g. S-PROG extrapolated a frozen field instead
        issue,
        leads,
        dbz,
        rate,
        grid=grid,
        motion=_motion_variable(predictor, ds, dbz.shape[-2:]),
        model=predictor.name,
        source=f"{predictor.source}; inputs {', '.join(used)}",
        history=f"{now} nowcast.forecast.make_forecast ({predictor.in_frames} input frames)",
        fallback=str(fallback) if fallback else None,
    )
    return _note_interpolated(out, win)


def _note_interpolated(fc: xr.Dataset, win: InputWindow) -> xr.Dataset:
    """Say in *fc*'s attributes which input frames were interpolated (filled gaps), if any."""
    filled = np.asarray(getattr(win, "interpolated", np.zeros(0, bool)), bool)
    if not filled.any():
        return fc
    slots = [t.strftime("%Y-%m-%dT%H:%M") for t, f in zip(win.slots, filled, strict=True) if f]
    fc.attrs["interpolated_inputs"] = ", ".join(slots)
    note = (
        f"issued from {len(slots)} interpolated input frame(s) (filled gaps, not observed): "
        + ", ".join(slots)
    )
    fc.attrs["comment"] = f"{fc.attrs['comment']}; {note}" if fc.attrs.get("comment") else note
    return fc


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


make_forecast_dataset = make_forecast
"""Alias of :func:`make_forecast` (the name docs/contracts.md uses)."""
