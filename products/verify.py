"""Verification of a published forecast against the observations that came true (CSI)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.schema import validate_forecast
from pipeline.units import RAIN_THRESHOLDS_MMH, dbz_to_rainrate
from products._common import (
    _iso,
    _issue_time,
    _json_float,
    _require_same_grid,
)


@dataclass(frozen=True)
class VerificationScores:
    """CSI of one forecast against the observations that came true.

    Attributes
    ----------
    issue_time : pandas.Timestamp
        Issue time of the verified forecast.
    lead_time : tuple of int
        ``(L,)`` lead times in minutes.
    thresholds_mmh : tuple of float
        ``(K,)`` rain thresholds in mm/h.
    csi : numpy.ndarray
        ``(K, L)`` critical success index, NaN where undefined (no rain forecast nor
        observed) or where no observation exists for that valid time.
    accumulations : dict
        CSI of the forecast rain accumulations against the observed ones
        (:func:`verify_accumulations`): ``{variable: {"window_minutes", "thresholds_mm",
        "csi"}}``; empty when the forecast has none.
    """

    issue_time: pd.Timestamp
    lead_time: tuple[int, ...]
    thresholds_mmh: tuple[float, ...]
    csi: np.ndarray = field(repr=False)
    accumulations: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as ``null``)."""
        out = {
            "issue_time": _iso(self.issue_time),
            "lead_time": [int(v) for v in self.lead_time],
            "thresholds_mmh": [float(v) for v in self.thresholds_mmh],
            "csi": [[_json_float(v) for v in row] for row in np.asarray(self.csi)],
        }
        if self.accumulations:
            out["accumulations"] = {
                name: {
                    "window_minutes": int(v["window_minutes"]),
                    "thresholds_mm": [float(t) for t in v["thresholds_mm"]],
                    "csi": [_json_float(c) for c in v["csi"]],
                }
                for name, v in self.accumulations.items()
            }
        return out


def verify_forecast(
    forecast_ds: xr.Dataset,
    observations_ds: xr.Dataset,
    thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH,
) -> VerificationScores:
    """CSI per threshold and lead time of a forecast against later observations.

    A pixel counts where the observation is valid (``mask`` True when present, finite
    reflectivity) and the forecast is finite. ``CSI = hits / (hits + misses + false
    alarms)`` with rain = rate >= threshold, from :func:`nowcast.metrics.contingency_counts`
    and :func:`nowcast.metrics.categorical_scores` (the scores of the evaluation).

    Parameters
    ----------
    forecast_ds : xarray.Dataset
        Forecast in the forecast schema (docs/contracts.md).
    observations_ds : xarray.Dataset
        ``reflectivity`` (time, y, x) in dBZ on the same grid, optional ``mask``
        (time, y, x) bool; times matching ``valid_time`` exactly are used.
    thresholds_mmh : sequence of float
        Rain thresholds in mm/h.

    Returns
    -------
    VerificationScores
    """
    from nowcast.metrics import categorical_scores, contingency_counts

    validate_forecast(forecast_ds)
    _require_same_grid(forecast_ds, observations_ds)
    obs_times = pd.DatetimeIndex(observations_ds["time"].values)
    thr = np.asarray(thresholds_mmh, dtype=np.float64)
    leads = [int(v) for v in forecast_ds["lead_time"].values]
    csi = np.full((thr.size, len(leads)), np.nan)
    for j, vt in enumerate(pd.DatetimeIndex(forecast_ds["valid_time"].values)):
        if vt not in obs_times:
            continue
        obs = observations_ds.sel(time=vt)
        obs_rate = dbz_to_rainrate(obs["reflectivity"].values)
        valid = np.isfinite(obs_rate)
        if "mask" in obs:
            valid &= obs["mask"].values.astype(bool)
        fc_rate = np.asarray(forecast_ds["rainfall_rate"].isel(lead_time=j).values, np.float64)
        valid &= np.isfinite(fc_rate)
        counts = contingency_counts(fc_rate, obs_rate, thr.tolist(), mask=valid)  # (K, 4)
        csi[:, j] = categorical_scores(*counts.T)["CSI"]
    return VerificationScores(
        issue_time=_issue_time(forecast_ds),
        lead_time=tuple(leads),
        thresholds_mmh=tuple(float(t) for t in thr),
        csi=csi,
    )


def verify_accumulations(
    forecast_ds: xr.Dataset,
    store: Any,
    thresholds_mm: Sequence[float] | None = None,
    size: int | None = None,
) -> dict:
    """CSI of a forecast's rain accumulations against the observed accumulations.

    Each forecast accumulation ``precipitation_amount_next_<W>min`` (:mod:`products.accumulation`)
    is compared with the accumulation observed over the same window (from the store's
    frames, advection-corrected the same way), at the thresholds in mm (default
    :data:`products.accumulation.AMOUNT_THRESHOLDS_MM`: 1, 5, 10 and 20 mm). Windows not yet
    observed (their last frame missing) are left out.

    Parameters
    ----------
    forecast_ds : xarray.Dataset
        Forecast with accumulation variables ``(y, x)`` and ``issue_time``.
    store : path or xarray.Dataset
        The radar store the observations come from.
    thresholds_mm : sequence of float, optional
        Event thresholds (amount >= threshold), mm.
    size : int, optional
        Grid side of the forecast (default its ``x`` size).

    Returns
    -------
    dict
        ``{variable: {"window_minutes": W, "thresholds_mm": [...], "csi": [...]}}``.
    """
    from nowcast.metrics import categorical_scores, contingency_counts
    from products.accumulation import (
        AMOUNT_THRESHOLDS_MM,
        accumulation_variables,
        observed_accumulation,
    )

    thr = list(AMOUNT_THRESHOLDS_MM if thresholds_mm is None else thresholds_mm)
    issue = _issue_time(forecast_ds)
    size = int(forecast_ds.sizes["x"]) if size is None else size
    cadence = _cadence(forecast_ds)
    out = {}
    for name in accumulation_variables(forecast_ds):
        if not name.startswith("precipitation_amount_next_"):
            continue
        w = int(forecast_ds[name].attrs.get("window_minutes", name.split("_")[-1][:-3]))
        obs, _ = observed_accumulation(store, issue + pd.Timedelta(minutes=w), size, w, cadence)
        if obs is None:
            continue
        fc = np.asarray(forecast_ds[name].values, np.float64)
        ob = np.asarray(obs.values, np.float64)
        valid = np.isfinite(fc) & np.isfinite(ob)
        counts = contingency_counts(fc, ob, thr, mask=valid)  # (K, 4)
        csi = categorical_scores(*counts.T)["CSI"]
        out[name] = {"window_minutes": w, "thresholds_mm": thr, "csi": csi.tolist()}
    return out


def _cadence(forecast_ds: xr.Dataset) -> float:
    leads = np.asarray(forecast_ds["lead_time"].values, dtype=np.float64)
    return float(np.min(np.diff(np.r_[0.0, leads]))) if leads.size else 6.0


def rolling_accumulations(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean accumulation CSI over the verified forecasts (``scores.json`` ``rolling_accumulations``).

    Returns
    -------
    dict
        ``{"rolling_accumulations": {variable: {"n_forecasts", "thresholds_mm",
        "csi_mean"}}}``, or ``{}`` when no entry has accumulation scores.
    """
    by_name: dict[str, list] = {}
    thresholds: dict[str, list] = {}
    for e in entries:
        for name, v in (e.get("accumulations") or {}).items():
            if thresholds.setdefault(name, v["thresholds_mm"]) != v["thresholds_mm"]:
                continue
            by_name.setdefault(name, []).append([np.nan if c is None else c for c in v["csi"]])
    if not by_name:
        return {}
    roll = {}
    for name, rows in by_name.items():
        stack = np.asarray(rows, dtype=np.float64)
        count = np.isfinite(stack).sum(axis=0)
        mean = np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1), np.nan)
        roll[name] = {
            "n_forecasts": len(rows),
            "thresholds_mm": thresholds[name],
            "csi_mean": [_json_float(v) for v in mean],
        }
    return {"rolling_accumulations": roll}
