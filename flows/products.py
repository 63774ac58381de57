"""Forecast products for operators: CF NetCDF, a Zarr forecast archive, maps and a site.

A forecast dataset (contract C5, made by ``nowcast.forecast.make_forecast_dataset``)
has dims ``(lead_time, y, x)``; variables ``reflectivity`` (dBZ, float32) and
``rainfall_rate`` (mm/h, float32); coords ``lead_time`` (int minutes), ``valid_time``
(lead_time) datetime64, scalar ``issue_time``, ``y``, ``x`` (km), ``lat``, ``lon``
(y, x) and the ``crs`` grid mapping; attrs ``model``, ``source``, ``history``.

CF choices (CF standard-name table v84+)
----------------------------------------
- ``rainfall_rate``: standard name ``rainfall_rate`` (canonical units ``m s-1``, a
  depth of liquid water per time), written in the convertible units ``mm h-1``. The
  other candidate, ``rainfall_flux``, is a mass flux (``kg m-2 s-1``) and would need
  the values rescaled, so it is not used.
- ``reflectivity``: standard name ``equivalent_reflectivity_factor``, units ``dBZ``.
- ``lead_time``: ``forecast_period`` in ``minutes`` (convertible to the canonical ``s``);
  ``valid_time``: ``time``; ``issue_time``: ``forecast_reference_time``; both encoded
  as int64 ``seconds since 1970-01-01 00:00:00``.
- ``x``/``y``: ``projection_x_coordinate``/``projection_y_coordinate`` in ``km``;
  ``lat``/``lon`` in ``degrees_north``/``degrees_east``; data variables name them in
  ``coordinates`` and point ``grid_mapping`` at ``crs``.

:func:`check_cf` checks these rules (a small, offline subset of the CF conventions;
``cfchecker`` is not used because it downloads the standard-name table at run time).

Publishing
----------
:func:`publish_run` writes ``<site_dir>/runs/<YYYYmmddTHHMMZ>/`` (forecast NetCDF,
one PNG map per observation and forecast frame, an animated GIF loop, ``run.json``)
atomically: everything is built in ``<site_dir>/.tmp-<pid>-<id>/`` and moved into place
with one ``os.rename``; only then are ``latest.json``, ``status.json``, ``scores.json``
and the dashboard's ``data.js`` swapped with write-to-temp + ``os.replace``. A reader
(the dashboard) only ever follows ``latest.json``/``data.js``, so it never sees a
half-written run, and a publish killed at any point leaves the previous run served. The
sequence of swaps is itself undone when it fails or is killed half-way
(:class:`flows._site_journal.SiteJournal`), and a corrupt ``status.json`` or
``scores.json`` is set aside (renamed, logged) and started afresh.
Leftover temporary directories of dead publishers are removed by the next publish.
Publishes into one site are serialised with an exclusive ``flock`` on
``<site_dir>/.publish.lock``. Runs beyond ``keep_runs`` (oldest first) are deleted,
never the one being served. Republishing an issue time replaces its run directory; for
that one case, there is a short window (two renames) in which the old directory is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from flows._site_journal import SiteJournal
from flows.dashboard import atomic_write_json, render_site
from pipeline.store_engine import join_location
from pipeline.units import RAIN_THRESHOLDS_MMH, dbz_to_rainrate

RUN_STATUSES: tuple[str, ...] = ("ok", "skipped", "failed")
"""Values of the ``status`` of a run in ``status.json``."""

RUN_ID_FORMAT = "%Y%m%dT%H%MZ"
"""``strftime`` format of a run directory name (issue time, UTC)."""

_TIME_ENCODING = {"units": "seconds since 1970-01-01 00:00:00", "dtype": "int64"}

STANDARD_NAME_UNITS: dict[str, tuple[str, ...]] = {
    "rainfall_rate": ("m s-1", "mm s-1", "mm h-1", "mm hr-1", "mm/h"),
    "equivalent_reflectivity_factor": ("dBZ",),
    "forecast_period": ("s", "seconds", "minutes", "min", "hours", "h"),
    "forecast_reference_time": ("<time>",),
    "time": ("<time>",),
    "projection_x_coordinate": ("m", "km"),
    "projection_y_coordinate": ("m", "km"),
    "latitude": ("degrees_north",),
    "longitude": ("degrees_east",),
}
"""Standard names :func:`check_cf` knows, with units accepted for each
(``<time>`` = a ``"<unit> since <date>"`` string)."""

_GRID_MAPPING_PARAMS: dict[str, tuple[str, ...]] = {
    "azimuthal_equidistant": (
        "longitude_of_projection_origin",
        "latitude_of_projection_origin",
        "false_easting",
        "false_northing",
    ),
    "latitude_longitude": (),
    "lambert_azimuthal_equal_area": (
        "longitude_of_projection_origin",
        "latitude_of_projection_origin",
        "false_easting",
        "false_northing",
    ),
}

_CF_ATTRS: dict[str, dict[str, str]] = {
    "reflectivity": {
        "standard_name": "equivalent_reflectivity_factor",
        "long_name": "radar reflectivity at 2 km altitude",
        "units": "dBZ",
    },
    "rainfall_rate": {
        "standard_name": "rainfall_rate",
        "long_name": "rain rate from reflectivity (Z = 58.53 R^1.56)",
        "units": "mm h-1",
    },
    "lead_time": {"standard_name": "forecast_period", "long_name": "lead time", "units": "minutes"},
    "valid_time": {"standard_name": "time", "long_name": "valid time"},
    "issue_time": {"standard_name": "forecast_reference_time", "long_name": "issue time"},
    "x": {
        "standard_name": "projection_x_coordinate",
        "long_name": "easting from the radar",
        "units": "km",
        "axis": "X",
    },
    "y": {
        "standard_name": "projection_y_coordinate",
        "long_name": "northing from the radar",
        "units": "km",
        "axis": "Y",
    },
    "lat": {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"},
    "lon": {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"},
}
_UNIT_ALIASES = {
    "reflectivity": {"dBZ", "dbz"},
    "rainfall_rate": {"mm h-1", "mm/h", "mm hr-1", "mm h**-1"},
    "lead_time": {"minutes", "min"},
    "x": {"km"},
    "y": {"km"},
    "lat": {"degrees_north", "degree_north"},
    "lon": {"degrees_east", "degree_east"},
}

_publish_hook: Callable[[str], None] | None = None
"""Test hook called at each publish stage (``"file:<name>"``, ``"renamed"``,
``"latest"``); lets a test stop a publish midway. Not part of the public API."""


# --------------------------------------------------------------------------- NetCDF


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


def to_cf(ds: xr.Dataset) -> xr.Dataset:
    """Copy of a forecast dataset with the CF attributes and encodings of the products.

    Parameters
    ----------
    ds : xarray.Dataset
        Forecast in the C5 schema (see module docstring).

    Returns
    -------
    xarray.Dataset
        Same values; CF ``standard_name``/``long_name``/``units`` on every variable,
        ``grid_mapping`` and ``coordinates`` on the data variables, time encodings
        and ``Conventions = "CF-1.10"``.

    Raises
    ------
    ValueError
        If *ds* is not in the C5 schema or a variable carries units other than the
        schema's (e.g. ``rainfall_rate`` in ``m s-1``).
    """
    _require_forecast_schema(ds)
    out = ds.copy()
    for name, attrs in _CF_ATTRS.items():
        if name not in out.variables:
            continue
        var = out[name]
        given = var.attrs.get("units")
        if given is not None and name in _UNIT_ALIASES and given not in _UNIT_ALIASES[name]:
            raise ValueError(
                f"variable {name!r} has units {given!r}; expected one of "
                f"{sorted(_UNIT_ALIASES[name])}"
            )
        new_attrs = {**var.attrs, **attrs}
        if name in ("valid_time", "issue_time"):
            new_attrs.pop("units", None)
            new_attrs.pop("calendar", None)
        out[name].attrs = new_attrs
    coords = [c for c in ("lat", "lon", "valid_time", "issue_time") if c in out.coords]
    for name in ("reflectivity", "rainfall_rate"):
        out[name].attrs.pop("coordinates", None)
        out[name].attrs["grid_mapping"] = "crs"
        out[name].encoding = {
            "coordinates": " ".join(coords),
            "zlib": True,
            "complevel": 2,
            "shuffle": True,
            "dtype": "float32",
            "_FillValue": np.float32(np.nan),
        }
    for name in ("valid_time", "issue_time"):
        out[name] = out[name].astype("datetime64[ns]")
        out[name].encoding = dict(_TIME_ENCODING)
    for name in ("x", "y", "lead_time"):
        if name in out.variables:
            out[name].encoding = {"_FillValue": None}
    for name in ("lat", "lon"):  # (y, x) float64: 3.7 MB at 480 x 480 unless compressed
        if name in out.variables:
            out[name].encoding = {"_FillValue": None, "zlib": True, "complevel": 2, "shuffle": True}
    if "crs" not in out.coords:
        out = out.set_coords("crs")
    out["crs"].encoding = {"_FillValue": None}
    out.attrs = {
        **ds.attrs,
        "Conventions": "CF-1.10",
        "title": f"Radar precipitation nowcast issued {_iso(ds['issue_time'].values)}",
        "featureType": "grid",
    }
    out.attrs.setdefault("model", "unknown")
    out.attrs.setdefault("source", "radar nowcast")
    out.attrs.setdefault("history", "")
    return out


def write_forecast_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a forecast as a CF-1.10 NetCDF-4 file (netCDF4 engine, zlib level 2 + shuffle).

    Parameters
    ----------
    ds : xarray.Dataset
        Forecast in the C5 schema.
    path : path-like
        File to write; its directory must exist. An existing file is replaced.

    Returns
    -------
    pathlib.Path
        *path*.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"directory {path.parent} for the NetCDF product does not exist")
    to_cf(ds).to_netcdf(path, engine="netcdf4", format="NETCDF4")
    return path


def open_forecast_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a product of :func:`write_forecast_netcdf` back into the C5 schema.

    ``lead_time`` stays integer minutes (no timedelta decoding), ``crs`` is a
    coordinate and ``grid_mapping`` an attribute again, so the result is identical to
    :func:`to_cf` of the dataset written.
    """
    ds = xr.open_dataset(path, engine="netcdf4", decode_coords="all", decode_timedelta=False)
    loaded = ds.load()
    ds.close()
    for name in loaded.data_vars:
        gm = loaded[name].encoding.get("grid_mapping")
        if gm is not None:
            loaded[name].attrs["grid_mapping"] = gm
    return loaded


def _is_time_units(units: str) -> bool:
    import cftime

    try:
        cftime.num2date(0, units)
    except (ValueError, TypeError):
        return False
    return True


def check_cf(path: str | os.PathLike[str]) -> list[str]:
    """Check a NetCDF product against the CF rules used by the products.

    Checks: global ``Conventions`` is ``CF-x.y``; every data and coordinate variable
    (except the grid mapping) has ``units``; ``standard_name`` is one of
    :data:`STANDARD_NAME_UNITS` with accepted units; time units parse as
    ``"<unit> since <date>"``; ``grid_mapping`` names an existing variable with a
    known ``grid_mapping_name`` and its parameters; every name in ``coordinates``
    exists; every dimension has a coordinate variable; latitude/longitude exist for
    gridded data variables.

    Parameters
    ----------
    path : path-like
        NetCDF file.

    Returns
    -------
    list of str
        One message per problem (``"<variable>: <problem>"``); empty when compliant.

    Raises
    ------
    ValueError
        If *path* is not a readable NetCDF file.
    """
    import netCDF4

    problems: list[str] = []
    try:
        nc = netCDF4.Dataset(str(path), "r")
    except OSError as exc:
        raise ValueError(f"cannot open {path} as NetCDF: {exc}") from exc
    with nc:
        nc.set_auto_mask(False)
        conv = str(getattr(nc, "Conventions", ""))
        if not any(part.startswith("CF-") for part in conv.replace(",", " ").split()):
            problems.append(f"global: Conventions is {conv!r}; expected 'CF-1.x'")
        variables = nc.variables
        grid_mappings = {
            str(v.getncattr("grid_mapping"))
            for v in variables.values()
            if "grid_mapping" in v.ncattrs()
        }
        for dim in nc.dimensions:
            if dim not in variables:
                problems.append(f"{dim}: dimension has no coordinate variable")
        for name, var in variables.items():
            attrs = {a: var.getncattr(a) for a in var.ncattrs()}
            is_grid_mapping = name in grid_mappings or "grid_mapping_name" in attrs
            if is_grid_mapping:
                gm_name = attrs.get("grid_mapping_name")
                if gm_name not in _GRID_MAPPING_PARAMS:
                    problems.append(
                        f"{name}: grid_mapping_name {gm_name!r} is not one of "
                        f"{sorted(_GRID_MAPPING_PARAMS)}"
                    )
                else:
                    for param in _GRID_MAPPING_PARAMS[gm_name]:
                        if param not in attrs:
                            problems.append(f"{name}: grid mapping lacks attribute {param!r}")
                continue
            if var.dtype == str or getattr(var.dtype, "kind", "") in ("S", "U"):
                continue
            units = attrs.get("units")
            if units is None:
                problems.append(f"{name}: no units attribute")
            std = attrs.get("standard_name")
            if std is not None:
                accepted = STANDARD_NAME_UNITS.get(str(std))
                if accepted is None:
                    problems.append(
                        f"{name}: standard_name {std!r} is not in the known table "
                        f"{sorted(STANDARD_NAME_UNITS)}"
                    )
                elif units is not None:
                    if accepted == ("<time>",):
                        if not _is_time_units(str(units)):
                            problems.append(
                                f"{name}: time units {units!r} do not parse as "
                                "'<unit> since <date>'"
                            )
                    elif str(units) not in accepted:
                        problems.append(
                            f"{name}: units {units!r} are not valid for standard_name "
                            f"{std!r}; expected one of {list(accepted)}"
                        )
            if units is not None and " since " in str(units) and not _is_time_units(str(units)):
                if std not in ("time", "forecast_reference_time"):
                    problems.append(f"{name}: time units {units!r} do not parse")
            if "grid_mapping" in attrs:
                gm = str(attrs["grid_mapping"])
                if gm not in variables:
                    problems.append(f"{name}: grid_mapping {gm!r} is not a variable")
                elif "grid_mapping_name" not in variables[gm].ncattrs():
                    problems.append(
                        f"{name}: grid mapping variable {gm!r} has no grid_mapping_name"
                    )
            coord_names = str(attrs.get("coordinates", "")).split()
            for c in coord_names:
                if c not in variables:
                    problems.append(f"{name}: coordinates names {c!r}, which is not a variable")
            if var.ndim >= 2 and name not in nc.dimensions:
                has_lat = any(
                    getattr(variables[c], "standard_name", None) == "latitude"
                    for c in coord_names
                    if c in variables
                )
                if {"y", "x"} <= set(var.dimensions) and var.dimensions[-2:] == ("y", "x"):
                    if std not in ("latitude", "longitude") and not has_lat:
                        problems.append(f"{name}: gridded variable lists no latitude coordinate")
                    if std not in ("latitude", "longitude") and "grid_mapping" not in attrs:
                        problems.append(f"{name}: gridded variable has no grid_mapping")
    return problems


# --------------------------------------------------------------------------- Zarr archive


def _issue_time(ds: xr.Dataset) -> pd.Timestamp:
    return pd.Timestamp(ds["issue_time"].values)


def append_forecast_zarr(ds: xr.Dataset, store: str | os.PathLike[str]) -> int:
    """Add one forecast to a Zarr archive of forecasts keyed by issue time.

    The archive has dims ``(issue_time, lead_time, y, x)`` (chunk 1 along
    ``issue_time``), ``valid_time (issue_time, lead_time)`` and ``model (issue_time)``.
    Writing an issue time that is already there replaces it in place (a region write),
    so re-running a publish never duplicates a forecast. The archive is an Icechunk
    repository: each call is one commit (message ``publish: forecast issued ... by
    MODEL``), made under the writer lock beside the archive, so a publish killed inside
    the write leaves the archive at its last commit and the next publish succeeds.

    Parameters
    ----------
    ds : xarray.Dataset
        Forecast in the C5 schema.
    store : path-like or str
        Archive directory or ``s3://bucket/prefix`` URL (an Icechunk repository); created
        on the first call.

    Returns
    -------
    int
        Index of the forecast along ``issue_time`` in the archive.

    Raises
    ------
    ValueError
        If *ds* is not in the C5 schema, its lead times or grid differ from the
        archive's, or its issue time is earlier than the archive's last one and not
        already present (the archive stays sorted).
    """
    from pipeline.store import as_location, store_lock

    _require_forecast_schema(ds)
    store = as_location(store)  # a directory, or an s3:// URL
    issue = _issue_time(ds)
    # the archive holds the fields; the motion of a Lagrangian forecast stays in its NetCDF
    new = ds.drop_vars(["motion", "component"], errors="ignore")
    model = str(ds.attrs.get("model", "unknown"))
    new = new.drop_vars("issue_time").expand_dims(issue_time=[np.datetime64(issue, "ns")])
    new["valid_time"] = new["valid_time"].expand_dims(issue_time=new["issue_time"])
    new = new.assign_coords(model=("issue_time", np.array([model], dtype=object)))
    if "crs" in new.coords:
        new = new.reset_coords("crs")
    new.attrs = {k: v for k, v in ds.attrs.items() if k in ("source",)}
    for name in ("reflectivity", "rainfall_rate"):
        new[name].encoding = {"chunks": (1, *ds[name].shape)}
        new[name].attrs.pop("grid_mapping", None)
        new[name].attrs["grid_mapping"] = "crs"
    with store_lock(store):
        return _append_in_session(new, ds, store, issue, model)


def _archive_repo(store):
    """The Icechunk repository of the forecast archive, created when missing."""
    from pipeline.store import open_or_create_repo

    return open_or_create_repo(store, what="forecast archive")


def _append_in_session(new: xr.Dataset, ds: xr.Dataset, store: Path, issue, model: str) -> int:
    """Write *new* (one issue) into a writable session of the archive; one commit."""
    import zarr

    session = _archive_repo(store).writable_session("main")
    message = f"publish: forecast issued {issue:%Y-%m-%d %H:%M} by {model}"
    if "issue_time" not in zarr.open_group(session.store, mode="a"):
        encoding: dict[str, dict[str, Any]] = {
            "issue_time": dict(_TIME_ENCODING),
            "valid_time": dict(_TIME_ENCODING),
        }
        for name in ("reflectivity", "rainfall_rate"):
            encoding[name] = {"chunks": (1, *ds[name].shape)}
        new.to_zarr(session.store, mode="w", encoding=encoding, consolidated=False)
        session.commit(message + " (first of the archive)")
        return 0
    old = xr.open_zarr(session.store, consolidated=False, decode_timedelta=False)
    try:
        for name in ("lead_time", "y", "x"):
            if not np.array_equal(old[name].values, new[name].values):
                raise ValueError(
                    f"forecast {issue} has {name} {new[name].values.tolist()[:8]}...; the "
                    f"archive {store} has {old[name].values.tolist()[:8]}... (they must match)"
                )
        times = pd.DatetimeIndex(old["issue_time"].values)
    finally:
        old.close()
    per_issue = [n for n in new.variables if "issue_time" in new[n].dims]
    new = new[per_issue]
    if issue in times:
        i = int(times.get_loc(issue))
        new.drop_vars([n for n in new.variables if "issue_time" not in new[n].dims]).to_zarr(
            session.store, region={"issue_time": slice(i, i + 1)}, consolidated=False
        )
        session.commit(message + " (replaces the earlier one)")
        return i
    if len(times) and issue < times[-1]:
        raise ValueError(
            f"forecast issued {issue} is earlier than the last one in {store} ({times[-1]}); "
            "the archive is kept sorted by issue time"
        )
    drop = [n for n in new.coords if n in ("lead_time", "y", "x", "lat", "lon")]
    new.drop_vars(drop).to_zarr(session.store, append_dim="issue_time", consolidated=False)
    session.commit(message)
    return len(times)


def forecast_archive_exists(store: str | os.PathLike[str]) -> bool:
    """True when *store* holds a forecast archive (Icechunk, or a plain Zarr group)."""
    from pipeline.store import is_icechunk_store

    return is_icechunk_store(store) or (Path(store) / "zarr.json").exists()


def open_forecast_zarr(store: str | os.PathLike[str]) -> xr.Dataset:
    """Open the forecast archive of :func:`append_forecast_zarr` lazily.

    An Icechunk archive is read from a read-only session of its latest snapshot (the
    dataset keeps that snapshot while later publishes commit); a plain Zarr group written
    before the archive moved to Icechunk is opened as it is.
    """
    from pipeline.store import is_icechunk_store, open_repo

    target = store
    if is_icechunk_store(store):
        target = open_repo(store).readonly_session(branch="main").store
    return xr.open_zarr(target, consolidated=False, decode_timedelta=False)


# --------------------------------------------------------------------------- verification


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
    alarms)`` with rain = rate >= threshold.

    Parameters
    ----------
    forecast_ds : xarray.Dataset
        Forecast in the C5 schema.
    observations_ds : xarray.Dataset
        ``reflectivity`` (time, y, x) in dBZ on the same grid, optional ``mask``
        (time, y, x) bool; times matching ``valid_time`` exactly are used.
    thresholds_mmh : sequence of float
        Rain thresholds in mm/h.

    Returns
    -------
    VerificationScores
    """
    _require_forecast_schema(forecast_ds)
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
        o = obs_rate[valid][None, :] >= thr[:, None]
        f = fc_rate[valid][None, :] >= thr[:, None]
        hits = (o & f).sum(axis=1)
        union = (o | f).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            csi[:, j] = np.where(union > 0, hits / np.maximum(union, 1), np.nan)
    return VerificationScores(
        issue_time=_issue_time(forecast_ds),
        lead_time=tuple(leads),
        thresholds_mmh=tuple(float(t) for t in thr),
        csi=csi,
    )


# --------------------------------------------------------------------------- publishing


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_run` wrote.

    Attributes
    ----------
    run_dir : pathlib.Path
        ``<site_dir>/runs/<run id>``.
    run_id : str
        Directory name, the issue time as ``YYYYmmddTHHMMZ``.
    files : tuple of str
        Files of the run, relative to the site directory.
    removed_runs : tuple of str
        Run ids deleted by the retention rule.
    set_aside : tuple of str
        Corrupt site logs renamed before publishing (see :mod:`flows._site_journal`).
    """

    run_dir: Path
    run_id: str
    files: tuple[str, ...]
    removed_runs: tuple[str, ...]
    set_aside: tuple[str, ...] = ()


def run_id(issue_time: Any) -> str:
    """Run directory name of an issue time, e.g. ``20260601T1200Z``."""
    ts = pd.Timestamp(issue_time)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime(RUN_ID_FORMAT)


def _iso(t: Any) -> str:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_float(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) else round(f, 4)


def _hook(stage: str) -> None:
    if _publish_hook is not None:
        _publish_hook(stage)


@contextlib.contextmanager
def _site_lock(site_dir: Path) -> Iterator[None]:
    with open(site_dir / ".publish.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_tmp(site_dir: Path) -> None:
    for tmp in site_dir.glob(".tmp-*"):
        parts = tmp.name.split("-")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1
        if tmp.is_dir() and (pid < 0 or not _pid_alive(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
    for old in (site_dir / "runs").glob(".old-*"):
        shutil.rmtree(old, ignore_errors=True)


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


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or remove it") from exc


def _record_status(
    site_dir: Path, issue_time: Any, status: str, reason: str, history_len: int
) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
    doc = _read_json(site_dir / "status.json", {"runs": []})
    runs = [r for r in doc.get("runs", []) if r.get("issue_time") != _iso(issue_time)]
    runs.insert(
        0,
        {
            "issue_time": _iso(issue_time),
            "run_id": run_id(issue_time),
            "status": status,
            "reason": reason,
            "recorded_at": _iso(pd.Timestamp.now(tz="UTC")),
        },
    )
    runs.sort(key=lambda r: r["issue_time"], reverse=True)
    atomic_write_json(site_dir / "status.json", {"runs": runs[:history_len]})


def record_scores(
    site_dir: str | os.PathLike[str], scores: VerificationScores, *, history_len: int = 48
) -> None:
    """Add one verification to the rolling scores of a site and refresh the dashboard.

    ``scores.json`` keeps the last *history_len* verified forecasts (one per issue
    time; re-verifying an issue time replaces its entry) and their mean CSI per
    threshold and lead time (NaN entries ignored), written atomically.
    """
    site = Path(site_dir)
    site.mkdir(parents=True, exist_ok=True)
    with _site_lock(site), SiteJournal(site):
        _record_scores(site, scores, history_len)
        render_site(site)


def _record_scores(site_dir: Path, scores: VerificationScores, history_len: int) -> None:
    doc = _read_json(site_dir / "scores.json", {"entries": []})
    entry = scores.to_json()
    entries = [e for e in doc.get("entries", []) if e.get("issue_time") != entry["issue_time"]]
    entries.append(entry)
    entries.sort(key=lambda e: e["issue_time"])
    entries = entries[-history_len:]
    atomic_write_json(site_dir / "scores.json", {"entries": entries, "rolling": _rolling(entries)})


def _rolling(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean CSI over the entries sharing the newest entry's leads and thresholds."""
    if not entries:
        return {}
    last = entries[-1]
    same = [
        e
        for e in entries
        if e["lead_time"] == last["lead_time"] and e["thresholds_mmh"] == last["thresholds_mmh"]
    ]
    stack = np.array(
        [[[np.nan if v is None else v for v in row] for row in e["csi"]] for e in same],
        dtype=np.float64,
    )
    count = np.isfinite(stack).sum(axis=0)
    total = np.nansum(stack, axis=0)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return {
        "n_forecasts": len(same),
        "first_issue_time": same[0]["issue_time"],
        "last_issue_time": last["issue_time"],
        "lead_time": last["lead_time"],
        "thresholds_mmh": last["thresholds_mmh"],
        "csi_mean": [[_json_float(v) for v in row] for row in mean],
    }


def record_run(
    site_dir: str | os.PathLike[str],
    issue_time: Any,
    status: str,
    reason: str = "",
    *,
    history_len: int = 48,
) -> None:
    """Log a run that produced no product (``skipped``/``failed``) and refresh the site.

    Parameters
    ----------
    site_dir : path-like
        Site directory (created if missing).
    issue_time : datetime-like
        Issue time the run was for.
    status : str
        One of :data:`RUN_STATUSES`.
    reason : str
        Why it was skipped or failed (shown on the dashboard).
    history_len : int
        Number of runs kept in ``status.json``.
    """
    site = Path(site_dir)
    site.mkdir(parents=True, exist_ok=True)
    with _site_lock(site), SiteJournal(site):
        _record_status(site, issue_time, status, reason, history_len)
        render_site(site)


def _obs_frames(
    forecast_ds: xr.Dataset, observations_ds: xr.Dataset, n_obs_frames: int
) -> xr.Dataset:
    issue = _issue_time(forecast_ds)
    times = pd.DatetimeIndex(observations_ds["time"].values)
    keep = np.flatnonzero(times <= issue)[-n_obs_frames:] if n_obs_frames > 0 else []
    return observations_ds.isel(time=list(keep))


def _build_run(
    forecast_ds: xr.Dataset,
    obs: xr.Dataset,
    out: Path,
    *,
    status: str,
    reason: str,
    map_size_px: tuple[int, int],
    coastline_resolution: str,
    progress: bool,
) -> list[str]:
    """Write every file of one run into *out*; return their names relative to *out*."""
    from tqdm.auto import tqdm

    from flows.maps import MapGrid, MapRenderer, frame_title, write_loop_gif

    files: list[str] = []
    (out / "maps").mkdir(parents=True)
    write_forecast_netcdf(forecast_ds, out / "forecast.nc")
    files.append("forecast.nc")
    _hook("file:forecast.nc")
    issue = _issue_time(forecast_ds)
    frames: list[dict[str, Any]] = []
    grid = MapGrid.from_dataset(forecast_ds)
    bar = tqdm(
        total=obs.sizes["time"] + forecast_ds.sizes["lead_time"],
        desc=f"maps {run_id(issue)}",
        unit="map",
        disable=not progress,
        leave=False,
    )
    with bar, MapRenderer(grid, size_px=map_size_px, resolution=coastline_resolution) as renderer:
        for i, t in enumerate(pd.DatetimeIndex(obs["time"].values)):
            frame = obs.isel(time=i)
            rain = dbz_to_rainrate(frame["reflectivity"].values)
            valid = frame["mask"].values.astype(bool) if "mask" in frame else None
            if "observed" in frame and not bool(frame["observed"].values):
                rain = np.full(grid.shape, np.nan)
            name = f"maps/obs_{i:02d}.png"
            renderer.render(rain, out / name, valid=valid, title=frame_title(t))
            lead = int(round((t - issue) / pd.Timedelta("1min")))
            frames.append(
                {"kind": "observation", "valid_time": _iso(t), "lead_time": lead, "image": name}
            )
            files.append(name)
            bar.update()
            _hook(f"file:{name}")
        valid_times = pd.DatetimeIndex(forecast_ds["valid_time"].values)
        for j, lead in enumerate(int(v) for v in forecast_ds["lead_time"].values):
            rain = np.asarray(forecast_ds["rainfall_rate"].isel(lead_time=j).values, np.float64)
            valid = None
            if "mask" in forecast_ds:
                valid = forecast_ds["mask"].isel(lead_time=j).values.astype(bool)
            name = f"maps/fc_{lead:03d}.png"
            title = frame_title(valid_times[j], lead, issue)
            motion = forecast_ds["motion"].values if "motion" in forecast_ds else None
            renderer.render(rain, out / name, valid=valid, title=title, motion=motion)
            frames.append(
                {
                    "kind": "forecast",
                    "valid_time": _iso(valid_times[j]),
                    "lead_time": lead,
                    "image": name,
                }
            )
            files.append(name)
            bar.update()
            _hook(f"file:{name}")
    write_loop_gif([out / f["image"] for f in frames], out / "loop.gif")
    files.append("loop.gif")
    _hook("file:loop.gif")
    manifest = {
        "run_id": run_id(issue),
        "issue_time": _iso(issue),
        "model": str(forecast_ds.attrs.get("model", "unknown")),
        "source": str(forecast_ds.attrs.get("source", "")),
        "status": status,
        "reason": reason,
        "created": _iso(pd.Timestamp.now(tz="UTC")),
        "grid": _grid_summary(forecast_ds),
        "frames": frames,
        "loop": "loop.gif",
        "netcdf": "forecast.nc",
    }
    atomic_write_json(out / "run.json", manifest)
    files.append("run.json")
    _hook("file:run.json")
    return files


def _grid_summary(ds: xr.Dataset) -> dict[str, Any]:
    """``{"y": H, "x": W, "pixel_km": dx}`` of a forecast grid (shown on the dashboard)."""
    x = np.asarray(ds["x"].values, dtype=np.float64)
    dx = abs(float(x[1] - x[0])) if x.size > 1 else float("nan")
    return {
        "y": int(ds.sizes["y"]),
        "x": int(ds.sizes["x"]),
        "pixel_km": _json_float(dx),
    }


def _apply_retention(site_dir: Path, keep_runs: int, served: str) -> list[str]:
    runs = sorted(p.name for p in (site_dir / "runs").iterdir() if not p.name.startswith("."))
    doomed = [r for r in runs[: max(len(runs) - keep_runs, 0)] if r != served]
    for r in doomed:
        shutil.rmtree(site_dir / "runs" / r, ignore_errors=True)
    return doomed


def publish_run(
    forecast_ds: xr.Dataset,
    observations_ds: xr.Dataset,
    site_dir: str | os.PathLike[str],
    *,
    status: str = "ok",
    reason: str = "",
    scores: VerificationScores | None = None,
    keep_runs: int = 24,
    history_len: int = 48,
    n_obs_frames: int = 10,
    zarr_store: str | os.PathLike[str] | None = "forecasts.zarr",
    map_size_px: tuple[int, int] = (640, 600),
    coastline_resolution: str = "10m",
    progress: bool = True,
) -> PublishResult:
    """Publish one forecast run atomically and regenerate the dashboard.

    Parameters
    ----------
    forecast_ds : xarray.Dataset
        Forecast in the C5 schema (see module docstring).
    observations_ds : xarray.Dataset
        Recent observations on the same grid: ``reflectivity`` (time, y, x) dBZ,
        optional ``mask`` (time, y, x) bool and ``observed`` (time) bool. The last
        *n_obs_frames* frames at or before the issue time are drawn.
    site_dir : path-like
        Site directory (created if missing). Nothing is written outside it except
        *zarr_store* when given as an absolute path.
    status : str
        Status recorded for this run (one of :data:`RUN_STATUSES`, normally ``"ok"``).
    reason : str
        Note shown next to the status (e.g. ``"2 input frames missing"``).
    scores : VerificationScores, optional
        Verification of an earlier forecast (:func:`verify_forecast`) to add to the
        rolling scores.
    keep_runs : int
        Number of run directories kept (oldest deleted first; >= 1).
    history_len : int
        Entries kept in ``status.json`` and ``scores.json``.
    n_obs_frames : int
        Observation frames drawn before the forecast frames.
    zarr_store : path-like, str or None
        Forecast archive, relative to *site_dir* unless absolute or an ``s3://`` URL
        (object storage; the site itself stays a directory); None = no archive.
    map_size_px : tuple of int
        ``(width, height)`` of every map PNG.
    coastline_resolution : str
        Natural Earth scale of the coastline (``"10m"``, ``"50m"``, ``"110m"``).
    progress : bool
        Show a tqdm bar (maps drawn, rate) while the maps are drawn.

    Returns
    -------
    PublishResult

    Raises
    ------
    ValueError
        Bad schema, grids that differ, unknown status, ``keep_runs < 1``.
    """
    _require_forecast_schema(forecast_ds)
    _require_same_grid(forecast_ds, observations_ds)
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
    if keep_runs < 1:
        raise ValueError(f"keep_runs must be >= 1, got {keep_runs}")
    site = Path(site_dir)
    site.mkdir(parents=True, exist_ok=True)
    (site / "runs").mkdir(exist_ok=True)
    issue = _issue_time(forecast_ds)
    rid = run_id(issue)
    obs = _obs_frames(forecast_ds, observations_ds, n_obs_frames)
    with _site_lock(site), SiteJournal(site) as journal:
        _clean_stale_tmp(site)
        tmp = site / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            names = _build_run(
                forecast_ds,
                obs,
                tmp,
                status=status,
                reason=reason,
                map_size_px=map_size_px,
                coastline_resolution=coastline_resolution,
                progress=progress,
            )
            if zarr_store is not None:
                append_forecast_zarr(forecast_ds, join_location(site, zarr_store))
            final = site / "runs" / rid
            if final.exists():
                aside = site / "runs" / f".old-{rid}-{uuid.uuid4().hex[:8]}"
                os.rename(final, aside)
                os.rename(tmp, final)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _hook("renamed")
        files = tuple(f"runs/{rid}/{n}" for n in names)
        manifest = json.loads((final / "run.json").read_text())
        atomic_write_json(
            site / "latest.json",
            {
                "run_id": rid,
                "path": f"runs/{rid}",
                "issue_time": _iso(issue),
                "files": files,
                "manifest": manifest,
            },
        )
        _hook("latest")
        _record_status(site, issue, status, reason, history_len)
        if scores is not None:
            _record_scores(site, scores, history_len)
        render_site(site)
        journal.commit()  # the new site is complete: from here on it stays
        removed = _apply_retention(site, keep_runs, served=rid)
    return PublishResult(
        run_dir=final,
        run_id=rid,
        files=files,
        removed_runs=tuple(removed),
        set_aside=tuple(p.name for p in journal.set_aside),
    )


def read_latest(site_dir: str | os.PathLike[str]) -> Mapping[str, Any] | None:
    """Contents of ``<site_dir>/latest.json`` (None before the first publish)."""
    return _read_json(Path(site_dir) / "latest.json", None)
