"""Helpers shared by the product modules: the grid check, times, JSON values.

A forecast dataset (docs/contracts.md, Forecast schema; made by
``nowcast.forecast.make_forecast_dataset``, checked by :func:`pipeline.schema.validate_forecast`)
has dims ``(lead_time, y, x)``; variables ``reflectivity`` (dBZ, float32) and
``rainfall_rate`` (mm/h, float32); coords ``lead_time`` (int minutes), ``valid_time``
(lead_time) datetime64, scalar ``issue_time``, ``y``, ``x`` (km), ``lat``, ``lon``
(y, x) and the ``crs`` grid mapping; attrs ``model``, ``source``, ``history``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

_TIME_ENCODING = {"units": "seconds since 1970-01-01 00:00:00", "dtype": "int64"}
"""Encoding of ``valid_time`` and ``issue_time`` in the NetCDF product and the archive."""


def _require_same_grid(forecast_ds: xr.Dataset, observations_ds: xr.Dataset) -> None:
    if "reflectivity" not in observations_ds or "time" not in observations_ds.dims:
        raise ValueError(
            "observations dataset needs reflectivity (time, y, x) in dBZ; got variables "
            f"{sorted(observations_ds.data_vars)} and dims {dict(observations_ds.sizes)}"
        )
    for name in ("y", "x"):
        obs_c = observations_ds[name].values if name in observations_ds.coords else None
        fc_c = forecast_ds[name].values
        if obs_c is None or obs_c.shape != fc_c.shape or not np.allclose(obs_c, fc_c):
            raise ValueError(
                f"observations and forecast are on different grids ({name} differs); "
                "resample the observations to the forecast grid first"
            )


def _issue_time(ds: xr.Dataset) -> pd.Timestamp:
    return pd.Timestamp(ds["issue_time"].values)


def _iso(t: Any) -> str:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_float(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) else round(f, 4)


def _read_json(path: Path, default: Any = None) -> Any:
    """Contents of the JSON file *path*; *default* when it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or remove it") from exc
