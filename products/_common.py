"""Helpers shared by the product modules: the forecast schema check, times, JSON values.

A forecast dataset (contract C5, made by ``nowcast.forecast.make_forecast_dataset``)
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


def _require_forecast_schema(ds: xr.Dataset, what: str = "forecast dataset") -> None:
    missing = [n for n in ("reflectivity", "rainfall_rate") if n not in ds.data_vars]
    missing += [
        n for n in ("lead_time", "valid_time", "issue_time", "y", "x") if n not in ds.coords
    ]
    if "crs" not in ds.variables:
        missing.append("crs")
    if missing:
        raise ValueError(
            f"{what} lacks {missing}; expected the C5 schema: reflectivity and rainfall_rate "
            "on (lead_time, y, x), coords lead_time, valid_time, issue_time, y, x, lat, lon, crs"
        )
    for name in ("reflectivity", "rainfall_rate"):
        if ds[name].dims != ("lead_time", "y", "x"):
            raise ValueError(
                f"{what}: {name} has dims {ds[name].dims}; expected ('lead_time', 'y', 'x')"
            )
    if ds["issue_time"].ndim != 0:
        raise ValueError(f"{what}: issue_time must be a scalar, got dims {ds['issue_time'].dims}")
    if not np.issubdtype(ds["lead_time"].dtype, np.integer):
        raise ValueError(
            f"{what}: lead_time has dtype {ds['lead_time'].dtype}; expected integer minutes"
        )


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
