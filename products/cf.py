"""CF-1.10 NetCDF forecast product: CF attributes and encodings, writer, reader, checker.

A forecast dataset is in the products' forecast schema (:mod:`products._common`); the
NetCDF file adds the CF metadata chosen here.

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
- Ensemble products (:mod:`nowcast.ensemble_forecast`, docs/ensembles.md "Products"):
  ``probability_of_rainfall_rate_above_threshold`` in ``1`` on a ``threshold``
  coordinate of standard name ``rainfall_rate`` (``mm h-1``) with
  ``spp__relative_to_threshold``; ``reflectivity_percentile`` on ``percentile`` (``%``);
  the members ``reflectivity_members`` on ``realization`` (standard name
  ``realization``, units ``1``). They get the ``grid_mapping``, ``coordinates`` and
  compression of the deterministic fields.

:func:`check_cf` checks these rules (a small, offline subset of the CF conventions;
``cfchecker`` is not used because it downloads the standard-name table at run time).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.schema import validate_forecast
from products._common import _TIME_ENCODING, _iso

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
    "realization": ("1",),
    "lwe_thickness_of_precipitation_amount": ("mm", "m"),
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
ENSEMBLE_VARIABLES: tuple[str, ...] = (
    "probability_of_rainfall_rate_above_threshold",
    "reflectivity_percentile",
    "reflectivity_members",
)
"""Gridded variables of an ensemble forecast written like ``reflectivity``."""
_RELATIVE_TO_THRESHOLD: tuple[str, ...] = (
    "greater_than",
    "greater_than_or_equal_to",
    "less_than",
    "less_than_or_equal_to",
)
_ENSEMBLE_COORDS: tuple[str, ...] = ("threshold", "percentile", "realization")

_UNIT_ALIASES = {
    "reflectivity": {"dBZ", "dbz"},
    "rainfall_rate": {"mm h-1", "mm/h", "mm hr-1", "mm h**-1"},
    "lead_time": {"minutes", "min"},
    "x": {"km"},
    "y": {"km"},
    "lat": {"degrees_north", "degree_north"},
    "lon": {"degrees_east", "degree_east"},
}


def to_cf(ds: xr.Dataset) -> xr.Dataset:
    """Copy of a forecast dataset with the CF attributes and encodings of the products.

    Parameters
    ----------
    ds : xarray.Dataset
        Forecast in the forecast schema (docs/contracts.md).

    Returns
    -------
    xarray.Dataset
        Same values; CF ``standard_name``/``long_name``/``units`` on every variable,
        ``grid_mapping`` and ``coordinates`` on the data variables, time encodings
        and ``Conventions = "CF-1.10"``.

    Raises
    ------
    ValueError
        If *ds* is not in the forecast schema or a variable carries units other than the
        schema's (e.g. ``rainfall_rate`` in ``m s-1``).
    """
    validate_forecast(ds)
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
    gridded = ["reflectivity", "rainfall_rate"] + [n for n in ENSEMBLE_VARIABLES if n in out]
    for name in gridded:
        _encode_gridded(out[name], coords)
    for name in out.data_vars:
        # a forecast read back from its NetCDF (open_forecast_netcdf) holds the grid mapping
        # both as an attribute and as an encoding; xarray refuses to write it twice
        if "grid_mapping" in out[name].attrs:
            out[name].encoding.pop("grid_mapping", None)
    _accumulations_cf(out)
    for name in ("valid_time", "issue_time"):
        out[name] = out[name].astype("datetime64[ns]")
        out[name].encoding = dict(_TIME_ENCODING)
    for name in ("x", "y", "lead_time", *_ENSEMBLE_COORDS):
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


def _encode_gridded(da: xr.DataArray, coords: list[str]) -> None:
    """A ``(..., y, x)`` field's CF attributes and NetCDF encoding (float32, zlib level 2)."""
    da.attrs.pop("coordinates", None)
    da.attrs["grid_mapping"] = "crs"
    da.encoding = {
        "coordinates": " ".join(coords),
        "zlib": True,
        "complevel": 2,
        "shuffle": True,
        "dtype": "float32",
        "_FillValue": np.float32(np.nan),
    }


def _accumulations_cf(out: xr.Dataset) -> None:
    """Encodings of the rain accumulations (``lwe_thickness_of_precipitation_amount``, mm;
    :mod:`products.accumulation`): ``(y, x)`` fields like the rates, without ``valid_time``."""
    coords = [c for c in ("lat", "lon", "issue_time") if c in out.coords]
    for name in out.data_vars:
        if out[name].attrs.get("standard_name") != "lwe_thickness_of_precipitation_amount":
            continue
        _encode_gridded(out[name], coords)


def write_forecast_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a forecast as a CF-1.10 NetCDF-4 file (netCDF4 engine, zlib level 2 + shuffle).

    Parameters
    ----------
    ds : xarray.Dataset
        Forecast in the forecast schema (docs/contracts.md).
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
    """Open a product of :func:`write_forecast_netcdf` back into the forecast schema (docs/contracts.md).

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
    gridded data variables; every name in ``ancillary_variables`` exists; a
    ``probability_of_...`` variable is in ``1``; ``spp__relative_to_threshold`` is one of
    ``greater_than[_or_equal_to]`` / ``less_than[_or_equal_to]``.

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
            for c in str(attrs.get("ancillary_variables", "")).split():
                if c not in variables:
                    problems.append(
                        f"{name}: ancillary_variables names {c!r}, which is not a variable"
                    )
            if name.startswith("probability_of_") and units is not None and str(units) != "1":
                problems.append(f"{name}: a probability has units {units!r}; expected '1'")
            rel = attrs.get("spp__relative_to_threshold")
            if rel is not None and str(rel) not in _RELATIVE_TO_THRESHOLD:
                problems.append(
                    f"{name}: spp__relative_to_threshold {rel!r} is not one of "
                    f"{list(_RELATIVE_TO_THRESHOLD)}"
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
