"""Rain accumulations as products: observed over the last hour, forecast for the next hours.

:func:`add_accumulations` adds to a forecast dataset (docs/contracts.md, Forecast schema)
one ``(y, x)`` variable per window, CF-1.10 ``lwe_thickness_of_precipitation_amount`` in
``mm`` with ``cell_methods: "time: sum"``:

``precipitation_amount_next_<W>min``
    forecast rain from the issue time to ``W`` minutes after it (default 60 and 120 when
    the leads reach them; windows beyond the last lead are left out), from the observed
    frame at the issue time (when the store has it; otherwise the first lead stands for
    it) and the forecast rates;
``precipitation_amount_last_<W>min``
    observed rain over the ``W`` minutes up to the issue time (default 60), from the
    store's observed frames on the forecast grid (a window whose first or last frame is
    missing is left out; inner missing frames, filled gaps included, are bridged by the
    advection correction across the longer interval).

Both are advection-corrected (:func:`nowcast.interpolation.accumulate`, sub-steps of at most
1 minute): the forecast with its own motion field (``motion``, when the predictor is
Lagrangian) or one estimated from its frames, the observations with motion estimated from
their frames (Lucas-Kanade). Attributes say the window (``window_start``, ``window_end``
ISO times), the method and the sub-step. :data:`AMOUNT_LEVELS_MM` is the colour scale of the
maps (:mod:`products.maps`), :data:`AMOUNT_THRESHOLDS_MM` the thresholds of the rolling
verification (:mod:`products.verify`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import units
from pipeline.window import grid_size
from products.prob_scale import AMOUNT_LEVELS_MM, amount_colormap  # shared with the maps

__all__ = [
    "AMOUNT_LEVELS_MM",
    "AMOUNT_STANDARD_NAME",
    "AMOUNT_THRESHOLDS_MM",
    "DEFAULT_FORECAST_WINDOWS",
    "DEFAULT_OBSERVED_WINDOWS",
    "accumulation_variables",
    "add_accumulations",
    "amount_colormap",
    "forecast_accumulation",
    "observed_accumulation",
    "write_accumulation_maps",
]

AMOUNT_STANDARD_NAME = "lwe_thickness_of_precipitation_amount"
DEFAULT_FORECAST_WINDOWS: tuple[int, ...] = (60, 120)
DEFAULT_OBSERVED_WINDOWS: tuple[int, ...] = (60,)
AMOUNT_THRESHOLDS_MM: tuple[float, ...] = (1.0, 5.0, 10.0, 20.0)
"""Thresholds of the accumulation CSI in the rolling verification, mm in the window."""
SUBSTEP_MINUTES = 1.0


def layer_label(da: xr.DataArray) -> str:
    """Dashboard label of an accumulation, e.g. ``Rain next 60 min (mm)``."""
    kind = "next" if str(da.attrs.get("long_name", "")).startswith("forecast") else "last"
    return f"Rain {kind} {int(da.attrs['window_minutes'])} min (mm)"


def write_accumulation_maps(
    forecast_ds: xr.Dataset,
    out,
    *,
    map_size_px: tuple[int, int],
    coastline_resolution: str,
    hook=lambda stage: None,
) -> tuple[list[str], list[dict]]:
    """One rain-amount PNG per accumulation variable under ``out / "maps"``.

    Parameters
    ----------
    forecast_ds : xarray.Dataset
        Forecast with accumulation variables (:func:`add_accumulations`).
    out : pathlib.Path
        Run directory being built (``maps/`` exists).
    map_size_px, coastline_resolution
        As for the rain-rate maps (:class:`products.maps.MapRenderer`, ``scale="amount"``).
    hook : callable
        Called with ``"file:<name>"`` after each file.

    Returns
    -------
    files : list of str
        ``maps/acc_<variable suffix>.png`` names relative to *out*.
    layers : list of dict
        One per accumulation: ``id`` (the variable name), ``label``, ``kind =
        "accumulation"``, ``window_start``, ``window_end``, ``frames`` (one, the map).
    """
    from products.maps import MapGrid, MapRenderer

    names = accumulation_variables(forecast_ds)
    if not names:
        return [], []
    files, layers = [], []
    grid = MapGrid.from_dataset(forecast_ds)
    with MapRenderer(
        grid, size_px=map_size_px, resolution=coastline_resolution, scale="amount"
    ) as renderer:
        for name in names:
            da = forecast_ds[name]
            image = f"maps/acc_{name.removeprefix('precipitation_amount_')}.png"
            title = (
                f"{layer_label(da)}  {da.attrs['window_start'][:16].replace('T', ' ')} to "
                f"{da.attrs['window_end'][11:16]} UTC"
            )
            renderer.render(np.asarray(da.values, np.float64), out / image, title=title)
            files.append(image)
            hook(f"file:{image}")
            lead = int(
                round(
                    (pd.Timestamp(da.attrs["window_end"][:19]) - _issue(forecast_ds))
                    / pd.Timedelta("1min")
                )
            )
            layers.append(
                {
                    "id": name,
                    "label": layer_label(da),
                    "kind": "accumulation",
                    "window_start": da.attrs["window_start"],
                    "window_end": da.attrs["window_end"],
                    "frames": [
                        {"lead_time": lead, "valid_time": da.attrs["window_end"], "image": image}
                    ],
                }
            )
    return files, layers


def _issue(ds: xr.Dataset) -> pd.Timestamp:
    return pd.Timestamp(ds["issue_time"].values)


def accumulation_variables(ds: xr.Dataset) -> list[str]:
    """Names of the accumulation variables of *ds* (standard name ``lwe_thickness_...``)."""
    return [
        str(v) for v in ds.data_vars if ds[v].attrs.get("standard_name") == AMOUNT_STANDARD_NAME
    ]


def _attrs(kind: str, start: pd.Timestamp, end: pd.Timestamp, how: str) -> dict:
    minutes = int(round((end - start) / pd.Timedelta("1min")))
    return {
        "standard_name": AMOUNT_STANDARD_NAME,
        "long_name": f"{kind} rain accumulation over {minutes} min",
        "units": "mm",
        "cell_methods": "time: sum",
        "window_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window_end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window_minutes": minutes,
        "comment": how,
        "grid_mapping": "crs",
    }


def _motion_of(frames_dbz: np.ndarray, minutes: np.ndarray, cadence: float) -> np.ndarray:
    from nowcast.interpolation import estimate_motion

    norm = units.dbz_to_normalized(np.where(np.isfinite(frames_dbz), frames_dbz, units.DBZ_MIN))
    return estimate_motion(norm.astype(np.float32), minutes, cadence)


def _cadence(fc: xr.Dataset) -> float:
    if "motion" in fc and "cadence_minutes" in fc["motion"].attrs:
        return float(fc["motion"].attrs["cadence_minutes"])
    leads = np.asarray(fc["lead_time"].values, float)
    return float(leads[0]) if len(leads) else 6.0


def forecast_accumulation(
    fc: xr.Dataset, window_minutes: int, analysis_rate: np.ndarray | None = None
) -> xr.DataArray | None:
    """Forecast rain (mm) from the issue time to *window_minutes* after it, or None.

    Parameters
    ----------
    fc : xarray.Dataset
        Forecast (``rainfall_rate`` ``(lead_time, y, x)`` mm/h).
    window_minutes : int
        Window length; None is returned when the leads do not reach it.
    analysis_rate : numpy.ndarray, shape (y, x), optional
        Observed rate at the issue time (mm/h); default: the first lead's.

    Returns
    -------
    xarray.DataArray or None
        ``(y, x)`` float32 mm with the CF attributes of the module docstring.
    """
    from nowcast.interpolation import accumulate

    leads = np.asarray(fc["lead_time"].values, dtype=float)
    if len(leads) == 0 or leads.max() < window_minutes:
        return None
    keep = leads <= window_minutes
    rates = np.asarray(fc["rainfall_rate"].values, np.float32)[keep]
    first = rates[0] if analysis_rate is None else np.asarray(analysis_rate, np.float32)
    minutes = np.concatenate([[0.0], leads[keep]])
    stack = np.concatenate([first[None], rates])
    cadence = _cadence(fc)
    if "motion" in fc:
        motion, source = np.asarray(fc["motion"].values, np.float32), "the forecast's motion"
    else:
        dbz = np.asarray(fc["reflectivity"].values, np.float32)[keep][:4]
        motion = _motion_of(dbz, leads[keep][:4], cadence)
        source = "motion estimated from the forecast frames (Lucas-Kanade)"
    acc = accumulate(
        stack, minutes, motion, motion_minutes=cadence, substep_minutes=SUBSTEP_MINUTES
    )
    issue = pd.Timestamp(fc["issue_time"].values)
    how = (
        f"advection-corrected sum of the forecast rain rates, sub-steps <= "
        f"{SUBSTEP_MINUTES:g} min, {source}; start: "
        + ("the observed frame at the issue time" if analysis_rate is not None else "lead 1")
    )
    end = issue + pd.Timedelta(minutes=window_minutes)
    return xr.DataArray(acc, dims=("y", "x"), attrs=_attrs("forecast", issue, end, how))


def observed_accumulation(
    store, issue: pd.Timestamp, size: int | None, window_minutes: int = 60, cadence: float = 6.0
) -> tuple[xr.DataArray | None, np.ndarray | None]:
    """Observed rain (mm) over *window_minutes* up to *issue* on the forecast grid.

    Returns
    -------
    (xarray.DataArray or None, numpy.ndarray or None)
        The ``(y, x)`` accumulation (None when the first or last frame of the window is
        missing) and the observed rate at the issue time ``(y, x)`` mm/h (None if missing).
    """
    from nowcast.interpolation import accumulate
    from pipeline.window import observations_dataset

    n = int(round(window_minutes / cadence)) + 1
    times = pd.date_range(end=issue, periods=n, freq=pd.Timedelta(minutes=cadence))
    obs = observations_dataset(store, times, size=size)
    have = np.asarray(obs["observed"].values, bool)
    dbz = np.asarray(obs["reflectivity"].values, np.float32)
    all_rates = np.where(np.isfinite(dbz), units.dbz_to_rainrate(dbz), np.nan)
    all_rates = np.where(dbz <= units.DBZ_MIN + 1e-3, 0.0, all_rates).astype(np.float32)
    rate_now = all_rates[-1] if have[-1] else None  # no echo (<= -10 dBZ): 0, as forecasts
    if not (have[0] and have[-1]):
        return None, rate_now
    minutes = ((times - times[0]) / pd.Timedelta("1min")).to_numpy(float)[have]
    frames, rates = dbz[have], all_rates[have]
    motion = _motion_of(frames[-4:], minutes[-4:], cadence)
    acc = accumulate(
        rates, minutes, motion, motion_minutes=cadence, substep_minutes=SUBSTEP_MINUTES
    )
    how = (
        f"advection-corrected sum of the observed rain rates ({int(have.sum())} of {n} frames), "
        f"sub-steps <= {SUBSTEP_MINUTES:g} min, motion estimated from the frames (Lucas-Kanade)"
    )
    da = xr.DataArray(acc, dims=("y", "x"), attrs=_attrs("observed", times[0], times[-1], how))
    return da, rate_now


def add_accumulations(
    fc: xr.Dataset,
    store=None,
    *,
    windows: Sequence[int] = DEFAULT_FORECAST_WINDOWS,
    observed_windows: Sequence[int] = DEFAULT_OBSERVED_WINDOWS,
) -> xr.Dataset:
    """*fc* with its accumulation variables added (module docstring).

    Parameters
    ----------
    fc : xarray.Dataset
        Forecast in the forecast schema.
    store : path or xarray.Dataset, optional
        The radar store it was issued from (observed accumulations and the issue-time
        frame); None: forecast accumulations only, starting from the first lead.
    windows, observed_windows : sequence of int
        Minutes of the forecast and observed windows.

    Returns
    -------
    xarray.Dataset
        A shallow copy with ``precipitation_amount_next_<W>min`` /
        ``precipitation_amount_last_<W>min``; windows that cannot be made are listed in
        the ``accumulations_skipped`` attribute.
    """
    out = fc.copy()
    issue = pd.Timestamp(fc["issue_time"].values)
    cadence = _cadence(fc)
    size = grid_size(fc)  # None on a store's own grid, which may not be square
    skipped: list[str] = []
    rate_now = None
    if store is not None:
        for w in observed_windows:
            acc, now = observed_accumulation(store, issue, size, int(w), cadence)
            rate_now = now if rate_now is None else rate_now
            if acc is None:
                skipped.append(f"last {int(w)} min (first or last frame missing)")
            else:
                out[f"precipitation_amount_last_{int(w)}min"] = acc
    for w in windows:
        acc = forecast_accumulation(fc, int(w), rate_now)
        if acc is None:
            skipped.append(f"next {int(w)} min (leads end at {int(fc['lead_time'].max())} min)")
        else:
            out[f"precipitation_amount_next_{int(w)}min"] = acc
    if skipped:
        out.attrs["accumulations_skipped"] = "; ".join(skipped)
    return out
