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
    """

    issue_time: pd.Timestamp
    lead_time: tuple[int, ...]
    thresholds_mmh: tuple[float, ...]
    csi: np.ndarray = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as ``null``)."""
        return {
            "issue_time": _iso(self.issue_time),
            "lead_time": [int(v) for v in self.lead_time],
            "thresholds_mmh": [float(v) for v in self.thresholds_mmh],
            "csi": [[_json_float(v) for v in row] for row in np.asarray(self.csi)],
        }


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
