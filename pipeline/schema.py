"""Constructors and validators of the datasets the stages hand each other.

One place for the schemas of docs/contracts.md, shared by the library, the tests and the
benchmarks:

- :func:`grid_coordinates` and :func:`coarse_coords`: the ``y``, ``x``, ``lat``, ``lon`` (and
  ``crs``) coordinates of a radar grid, new or coarsened from a dataset's;
- :func:`store_dataset` / :func:`validate_store`: the store schema (ingest);
- :func:`resampled_dataset` / :func:`resampled_encoding` / :func:`validate_resampled`: the
  resampled schema (also the form of the observations on a forecast grid);
- :func:`forecast_dataset` / :func:`validate_forecast`: the forecast schema.

The constructors build in-memory datasets that save and reopen identically
(``to_zarr`` then :func:`pipeline.store.open_store`; the grid mapping is in each data
variable's ``encoding``, where xarray puts it when reading). They check shapes, not values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import geo

__all__ = [
    "coarse_coords",
    "forecast_dataset",
    "grid_coordinates",
    "resampled_dataset",
    "resampled_encoding",
    "store_dataset",
    "validate_forecast",
    "validate_resampled",
    "validate_store",
]

FRAME_DIMS: tuple[str, str, str] = ("time", "y", "x")
"""Dims of the frames of the store and resampled schemas."""
FORECAST_DIMS: tuple[str, str, str] = ("lead_time", "y", "x")
"""Dims of the fields of the forecast schema."""
TIME_ENCODING: dict[str, str] = {"units": "seconds since 1970-01-01", "dtype": "int64"}
"""On-disk encoding of ``time`` in the stores."""

STORE_ATTRS: dict[str, str] = {
    "Conventions": "CF-1.10",
    "title": "HKO-7 style radar reflectivity at 2 km altitude (Zarr)",
    "institution": "hko-nowcast pipeline",
    "source": "ground-based weather radar, HKO-7 archive layout (radarPNG, radarPNG_mask, "
    "mask_dat.npz)",
    "history": "pipeline.ingest: HKO-7 uint8 PNG frames copied losslessly (pixel p -> "
    "dBZ = p / 255 * 70 - 10); mask = per-frame mask AND NOT static exclude_mask",
    "references": "Shi et al. 2017, Deep Learning for Precipitation Nowcasting: A Benchmark "
    "and A New Model (HKO-7)",
}
"""Global attributes of the store schema (``pipeline.store.GLOBAL_ATTRS``)."""

_X_ATTRS = {
    "standard_name": "projection_x_coordinate",
    "long_name": "x distance east of the radar (pixel centre)",
    "units": "km",
    "axis": "X",
}
_Y_ATTRS = {
    "standard_name": "projection_y_coordinate",
    "long_name": "y distance north of the radar (pixel centre)",
    "units": "km",
    "axis": "Y",
}
_REFLECTIVITY_ATTRS = {
    "standard_name": "equivalent_reflectivity_factor",
    "long_name": "equivalent radar reflectivity factor at 2 km altitude",
    "units": "dBZ",
}
_MASK_ATTRS = {"long_name": "valid pixel mask (true = use the pixel)"}


# --------------------------------------------------------------------------- grids


def grid_coordinates(size: int, extent_km: float = geo.EXTENT_KM) -> dict[str, xr.Variable]:
    """Coordinates of a ``size x size`` radar grid (:func:`pipeline.geo.grid_coords`).

    Returns
    -------
    dict of str to xarray.Variable
        ``y`` (decreasing) and ``x`` in km, ``lat`` / ``lon`` ``(y, x)`` in degrees, the
        scalar ``crs`` grid mapping; the attributes of the store schema.
    """
    g = geo.grid_coords(size, extent_km)
    return {
        "y": xr.Variable("y", g.y, _Y_ATTRS),
        "x": xr.Variable("x", g.x, _X_ATTRS),
        "lat": xr.Variable(
            ("y", "x"), g.lat, {"standard_name": "latitude", "units": "degrees_north"}
        ),
        "lon": xr.Variable(
            ("y", "x"), g.lon, {"standard_name": "longitude", "units": "degrees_east"}
        ),
        "crs": xr.Variable((), np.int32(0), geo.crs_attrs()),
    }


def coarse_coords(ds: xr.Dataset, size: int | None) -> dict[str, xr.Variable]:
    """Coordinates ``y``, ``x``, ``lat``, ``lon`` (and ``crs``) of *ds*'s grid at ``size x size``.

    The coarse pixel centres and ``lat`` / ``lon`` are those of
    :func:`pipeline.grid_fit.coarse_coords` (means of the fine centres, a non-square grid
    padded first; lat/lon from the grid mapping), with *ds*'s attributes. On *ds*'s own size
    its own coordinates are returned. *ds*'s ``crs`` grid mapping, when it has one, comes
    along (loaded).

    Parameters
    ----------
    ds : xarray.Dataset
        Store, resampled or forecast dataset with 1-D ``y``, ``x`` in km.
    size : int or None
        Pixels per side of the coarse grid (see :func:`pipeline.grid_fit.fit_plan`); None =
        *ds*'s own grid (square or not).

    Raises
    ------
    ValueError
        If *size* does not fit the grid (:func:`pipeline.grid_fit.fit_plan`), or lat/lon of
        the coarse grid cannot be computed from *ds*'s coordinates.
    """
    crs = {}
    if "crs" in ds.variables:  # the grid mapping, loaded (a scalar)
        crs["crs"] = xr.Variable((), np.asarray(ds["crs"].values), dict(ds["crs"].attrs))
    if size is None or (ds.sizes["y"] == size and ds.sizes["x"] == size):
        return {k: ds[k].variable for k in ("y", "x", "lat", "lon") if k in ds.coords} | crs
    from pipeline.grid_fit import coarse_coords as fit_coords

    return {k: v.variable for k, v in fit_coords(ds, size).items()} | crs


def _grid_for(shape: tuple[int, ...], grid: Mapping[str, xr.Variable] | None, what: str):
    ny, nx = shape[-2:]
    if grid is None:
        if ny != nx:
            raise ValueError(f"{what}: frames are {ny} x {nx}; give grid= for a non-square grid")
        return grid_coordinates(nx)
    coords = dict(grid)
    for name, n in (("y", ny), ("x", nx)):
        if name not in coords or coords[name].shape != (n,):
            got = coords[name].shape if name in coords else "none"
            raise ValueError(f"{what}: grid coordinate {name!r} must have shape ({n},), got {got}")
    if "crs" not in coords:
        coords["crs"] = xr.Variable((), np.int32(0), geo.crs_attrs())
    return coords


def _frames(value, name: str, dtype, what: str, ndim: int = 3) -> np.ndarray:
    """*value* as an array of *dtype*; a dask array stays lazy."""
    lazy = hasattr(value, "dask") and hasattr(value, "astype")
    arr = value.astype(dtype) if lazy else np.asarray(value, dtype=dtype)
    if arr.ndim != ndim:
        raise ValueError(f"{what}: {name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _mapped(dims, data, attrs: Mapping, grid_mapping_in_encoding: bool = True) -> xr.Variable:
    var = xr.Variable(dims, data, dict(attrs))
    if grid_mapping_in_encoding:
        var.encoding["grid_mapping"] = "crs"
    return var


# --------------------------------------------------------------------------- store schema


def store_dataset(
    times: Sequence | pd.DatetimeIndex,
    reflectivity: np.ndarray,
    mask: np.ndarray,
    *,
    grid: Mapping[str, xr.Variable] | None = None,
) -> xr.Dataset:
    """A dataset in the store schema (docs/contracts.md, Store schema).

    Parameters
    ----------
    times : sequence of timestamps
        ``(T,)`` observation times, strictly increasing.
    reflectivity : numpy.ndarray
        ``(T, H, W)`` dBZ (``pipeline.units.pixel_to_dbz(p)`` for HKO-7 pixels). ``to_zarr``
        writes it as float32; the ingest store holds the uint8 pixels instead, and both open
        to the same float32 dBZ.
    mask : numpy.ndarray
        ``(T, H, W)`` bool, True = valid pixel.
    grid : mapping, optional
        Coordinates (:func:`grid_coordinates`); default the radar grid of the frames' size.

    Returns
    -------
    xarray.Dataset
        ``reflectivity`` float32, ``mask`` bool, coords ``time``, ``y``, ``x``, ``lat``,
        ``lon``, ``crs``, the store's global attributes; passes :func:`validate_store`.
    """
    what = "store dataset"
    refl = _frames(reflectivity, "reflectivity", np.float32, what)
    valid = _frames(mask, "mask", bool, what)
    t = pd.DatetimeIndex(times).as_unit("ns")
    if valid.shape != refl.shape or refl.shape[0] != len(t):
        raise ValueError(
            f"{what}: reflectivity {refl.shape}, mask {valid.shape} and {len(t)} times differ"
        )
    coords = _grid_for(refl.shape, grid, what)
    data = {
        "reflectivity": _mapped(FRAME_DIMS, refl, _REFLECTIVITY_ATTRS),
        "mask": _mapped(FRAME_DIMS, valid, _MASK_ATTRS),
    }
    time_attrs = {"standard_name": "time", "long_name": "observation time (UTC)", "axis": "T"}
    coords["time"] = xr.Variable("time", t.values, time_attrs, encoding=dict(TIME_ENCODING))
    return xr.Dataset(data, coords=coords, attrs=dict(STORE_ATTRS))


def _check_grid(ds: xr.Dataset, where: str, size: int | None, square: bool) -> None:
    if "crs" not in ds.variables or ds["crs"].attrs.get("grid_mapping_name") is None:
        raise ValueError(f"{where}missing the 'crs' grid-mapping variable")
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    if (square and ny != nx) or (size is not None and (ny != nx or ny != size)):
        raise ValueError(
            f"{where}frames are {ny} x {nx}, expected {size} x {size}"
            if size is not None
            else f"{where}frames are {ny} x {nx}, expected a square grid"
        )
    for c in ("lat", "lon"):
        if c not in ds.coords or ds[c].dims != ("y", "x"):
            raise ValueError(f"{where}missing 2-D coordinate {c!r} (y, x)")
    y, x = ds["y"].values, ds["x"].values
    if y.size > 1 and not (np.diff(y) < 0).all():
        raise ValueError(f"{where}y must decrease with the row index (row 0 is north)")
    if x.size > 1 and not (np.diff(x) > 0).all():
        raise ValueError(f"{where}x must increase with the column index")


def _check_frames(ds: xr.Dataset, where: str) -> None:
    for var in ("reflectivity", "mask"):
        if var not in ds:
            raise ValueError(f"{where}missing variable {var!r}; have {sorted(ds.variables)}")
        if ds[var].dims != FRAME_DIMS:
            raise ValueError(f"{where}{var} has dims {ds[var].dims}, expected {FRAME_DIMS}")
    if ds["reflectivity"].dtype != np.float32:
        raise ValueError(
            f"{where}reflectivity decodes to {ds['reflectivity'].dtype}, expected float32"
        )
    if ds["mask"].dtype != bool:
        raise ValueError(f"{where}mask has dtype {ds['mask'].dtype}, expected bool")


def _check_times(ds: xr.Dataset, where: str) -> np.ndarray:
    t = ds["time"].values
    if t.dtype.kind != "M":
        raise ValueError(f"{where}time has dtype {t.dtype}, expected datetime64")
    step = np.diff(t.astype("datetime64[ns]").astype(np.int64))
    if t.size > 1 and not (step > 0).all():
        raise ValueError(f"{where}time is not strictly increasing (sorted and unique)")
    return step


def validate_store(ds: xr.Dataset, size: int | None = geo.NATIVE_SIZE, name: str = "") -> None:
    """Check that *ds* follows the store schema (docs/contracts.md, Store schema).

    Parameters
    ----------
    ds : xarray.Dataset
        As returned by :func:`pipeline.store.open_store` or :func:`store_dataset`.
    size : int or None
        Expected pixels per side, or None to accept any ``(H, W)`` (a radar source's own
        grid, :mod:`pipeline.sources`).
    name : str
        Name of the store for error messages (its path).

    Raises
    ------
    ValueError
        Naming the first violation found and what was expected.
    """
    where = f"radar store {name}: " if name else "radar store: "
    _check_frames(ds, where)
    _check_grid(ds, where, size, square=False)
    _check_times(ds, where)


# --------------------------------------------------------------------------- resampled


def resampled_dataset(
    times: Sequence | pd.DatetimeIndex,
    reflectivity: np.ndarray,
    mask: np.ndarray | None = None,
    observed: np.ndarray | None = None,
    *,
    grid: Mapping[str, xr.Variable] | None = None,
    cadence_minutes: float | None = 6.0,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """A dataset in the resampled schema (docs/contracts.md, Resampled schema).

    Parameters
    ----------
    times : sequence of timestamps
        ``(T,)`` slot times.
    reflectivity : numpy.ndarray or dask.array.Array
        ``(T, H, W)`` dBZ; set to NaN in unobserved slots (a dask array stays lazy).
    mask : numpy.ndarray, optional
        ``(T, H, W)`` bool, True = valid pixel; set to False in unobserved slots. Default:
        every pixel of an observed slot valid.
    observed : numpy.ndarray, optional
        ``(T,)`` bool, True = the slot holds a frame. Default: every slot observed.
    grid : mapping, optional
        Coordinates (:func:`grid_coordinates`, :func:`coarse_coords`); default the radar grid
        of the frames' size.
    cadence_minutes : float or None
        Slot spacing, the ``cadence_minutes`` attribute (None: no attribute, e.g. the
        observations at a forecast's valid times).
    attrs : mapping, optional
        More global attributes.

    Returns
    -------
    xarray.Dataset
        ``reflectivity`` float32, ``mask`` bool, ``observed`` bool, coords ``time``, ``y``,
        ``x``, ``lat``, ``lon``, ``crs``. Write it with
        ``ds.to_zarr(path, encoding=resampled_encoding(ds))``.
    """
    what = "resampled dataset"
    refl = _frames(reflectivity, "reflectivity", np.float32, what)
    t = pd.DatetimeIndex(times).as_unit("ns")
    obs = np.ones(len(t), bool) if observed is None else np.asarray(observed, dtype=bool)
    if refl.shape[0] != len(t) or obs.shape != (len(t),):
        raise ValueError(
            f"{what}: reflectivity {refl.shape}, observed {obs.shape} and {len(t)} times differ"
        )
    valid = np.ones(refl.shape, bool) if mask is None else _frames(mask, "mask", bool, what)
    if valid.shape != refl.shape:
        raise ValueError(f"{what}: mask {valid.shape} differs from reflectivity {refl.shape}")
    refl = np.where(obs[:, None, None], refl, np.float32(np.nan))
    valid = valid & obs[:, None, None]
    coords = _grid_for(refl.shape, grid, what)
    coords["time"] = xr.Variable(
        "time", t.values, {"standard_name": "time", "long_name": "slot time (UTC)", "axis": "T"}
    )
    data = {
        "reflectivity": _mapped(FRAME_DIMS, refl, _REFLECTIVITY_ATTRS),
        "mask": _mapped(FRAME_DIMS, valid, _MASK_ATTRS),
        "observed": xr.Variable(
            "time", obs, {"long_name": "slot holds a radar frame", "comment": "False for gaps"}
        ),
    }
    out_attrs = {} if cadence_minutes is None else {"cadence_minutes": float(cadence_minutes)}
    return xr.Dataset(data, coords=coords, attrs=out_attrs | dict(attrs or {}))


def resampled_encoding(ds: xr.Dataset, time_chunk: int = 32) -> dict[str, dict]:
    """Zarr encoding of a resampled store: int64 seconds, ``time_chunk`` slots per chunk."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    n = max(ds.sizes["time"], 1)
    return {
        "time": dict(TIME_ENCODING, chunks=(n,)),
        "reflectivity": {
            "chunks": (time_chunk, ny, nx),
            "_FillValue": np.float32(np.nan),
            "grid_mapping": "crs",
        },
        "mask": {"chunks": (time_chunk, ny, nx), "grid_mapping": "crs"},
        "observed": {"chunks": (n,)},
    }


def validate_resampled(ds: xr.Dataset, size: int | None = None, name: str = "") -> None:
    """Check that *ds* follows the resampled schema (docs/contracts.md, Resampled schema).

    Checks the variables, dtypes, grid and the regular slot grid (``cadence_minutes`` when
    given), and the motion variables when present; not the values.

    Raises
    ------
    ValueError
        Naming the first violation found and what was expected.
    """
    where = f"resampled store {name}: " if name else "resampled store: "
    _check_frames(ds, where)
    if "observed" not in ds:
        raise ValueError(f"{where}missing variable 'observed'; have {sorted(ds.variables)}")
    if ds["observed"].dims != ("time",) or ds["observed"].dtype != bool:
        raise ValueError(
            f"{where}observed has dims {ds['observed'].dims} and dtype {ds['observed'].dtype}, "
            "expected ('time',) bool"
        )
    _check_grid(ds, where, size, square=True)
    step = _check_times(ds, where)
    if step.size and (step != step[0]).any():
        raise ValueError(f"{where}time is not a regular grid (spacings {sorted(set(step))} ns)")
    cadence = ds.attrs.get("cadence_minutes")
    if step.size and cadence is not None and step[0] != round(float(cadence) * 60e9):
        raise ValueError(
            f"{where}slots are {step[0] / 60e9:g} min apart but cadence_minutes is {cadence}"
        )
    if "interpolated" in ds:
        _check_interpolated(ds, where)
    if "motion" in ds:
        dims = ("time", "component", "y", "x")
        if ds["motion"].dims != dims or list(ds["component"].values) != ["x", "y"]:
            raise ValueError(
                f"{where}motion has dims {ds['motion'].dims}, expected {dims} with component "
                "['x', 'y']"
            )


def _check_interpolated(ds: xr.Dataset, where: str) -> None:
    """``interpolated`` (time) bool, never True where ``observed`` is (filled gaps)."""
    var = ds["interpolated"]
    if var.dims != ("time",) or var.dtype != bool:
        raise ValueError(
            f"{where}interpolated has dims {var.dims} and dtype {var.dtype}, expected ('time',) bool"
        )
    both = np.asarray(var.values, bool) & np.asarray(ds["observed"].values, bool)
    if both.any():
        first = pd.Timestamp(ds["time"].values[np.flatnonzero(both)[0]])
        raise ValueError(
            f"{where}{int(both.sum())} slots are both observed and interpolated (first {first}); "
            "a filled slot is never observed"
        )


# --------------------------------------------------------------------------- forecast


def forecast_dataset(
    issue_time: object,
    lead_minutes: Sequence[int] | np.ndarray,
    reflectivity: np.ndarray,
    rainfall_rate: np.ndarray,
    *,
    grid: Mapping[str, xr.Variable] | None = None,
    motion: xr.Variable | np.ndarray | None = None,
    model: str = "unknown",
    source: str = "",
    history: str = "",
    fallback: str | None = None,
) -> xr.Dataset:
    """A dataset in the forecast schema (docs/contracts.md, Forecast schema).

    Parameters
    ----------
    issue_time : timestamp-like
        Time of the newest input frame (UTC, naive).
    lead_minutes : sequence of int
        ``(L,)`` whole minutes, positive, strictly increasing.
    reflectivity, rainfall_rate : numpy.ndarray
        ``(L, H, W)`` dBZ and mm/h.
    grid : mapping, optional
        Coordinates ``y``, ``x``, ``lat``, ``lon`` (and ``crs``); default the radar grid of
        the fields' size.
    motion : xarray.Variable or numpy.ndarray, optional
        ``(2, H, W)`` motion field of the extrapolation (pixels per cadence step).
    model, source, history : str
        Global attributes (``title`` says the model).
    fallback : str, optional
        Why the predictor fell back to a simpler method (the ``fallback`` attribute).

    Returns
    -------
    xarray.Dataset
        Passes :func:`validate_forecast`.
    """
    what = "forecast dataset"
    refl = _frames(reflectivity, "reflectivity", np.float32, what)
    rate = _frames(rainfall_rate, "rainfall_rate", np.float32, what)
    leads = np.asarray(lead_minutes)
    if leads.ndim != 1 or refl.shape != rate.shape or refl.shape[0] != leads.size:
        raise ValueError(
            f"{what}: reflectivity {refl.shape}, rainfall_rate {rate.shape} and lead times "
            f"{leads.tolist()} differ"
        )
    issue = pd.Timestamp(issue_time)
    coords = _grid_for(refl.shape, grid, what)
    leads = leads.astype(np.int64)
    issue64 = np.datetime64(issue.to_datetime64(), "ns")
    coords["lead_time"] = xr.Variable(
        "lead_time", leads, {"units": "minutes", "long_name": "forecast lead time"}
    )
    coords["valid_time"] = xr.Variable(
        "lead_time",
        issue64 + leads.astype("timedelta64[m]"),
        {"long_name": "valid time of the forecast", "standard_name": "time"},
    )
    coords["issue_time"] = xr.Variable((), issue64, {"long_name": "forecast issue time"})
    data = {
        "reflectivity": xr.Variable(
            FORECAST_DIMS,
            refl,
            {
                "units": "dBZ",
                "long_name": "forecast equivalent reflectivity factor",
                "standard_name": "equivalent_reflectivity_factor",
                "grid_mapping": "crs",
            },
        ),
        "rainfall_rate": xr.Variable(
            FORECAST_DIMS,
            rate,
            {
                "units": "mm h-1",
                "long_name": "forecast rain rate (Z = 58.53 R^1.56)",
                "standard_name": "rainfall_rate",
                "grid_mapping": "crs",
            },
        ),
    }
    if motion is not None:
        if not isinstance(motion, xr.Variable):
            motion = xr.Variable(
                ("component", "y", "x"),
                np.asarray(motion, dtype=np.float32),
                {"units": "pixel per cadence step", "grid_mapping": "crs"},
            )
        if motion.shape != (2, *refl.shape[1:]):
            raise ValueError(f"{what}: motion must be (2, H, W), got {motion.shape}")
        data["motion"] = motion
        coords["component"] = xr.Variable("component", np.array(["x", "y"], dtype=object))
    attrs = {
        "title": f"Radar nowcast by {model}",
        "model": model,
        "source": source,
        "history": history,
    }
    if fallback:
        attrs["fallback"] = str(fallback)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def validate_forecast(ds: xr.Dataset, what: str = "forecast dataset") -> None:
    """Check that *ds* follows the forecast schema (docs/contracts.md, Forecast schema).

    Raises
    ------
    ValueError
        Naming the missing variables or the first violation and what was expected.
    """
    missing = [n for n in ("reflectivity", "rainfall_rate") if n not in ds.data_vars]
    missing += [
        n for n in ("lead_time", "valid_time", "issue_time", "y", "x") if n not in ds.coords
    ]
    if "crs" not in ds.variables:
        missing.append("crs")
    if missing:
        raise ValueError(
            f"{what} lacks {missing}; expected the forecast schema (docs/contracts.md): "
            "reflectivity and rainfall_rate on (lead_time, y, x), coords lead_time, valid_time, "
            "issue_time, y, x, lat, lon, crs"
        )
    for name in ("reflectivity", "rainfall_rate"):
        if ds[name].dims != FORECAST_DIMS:
            raise ValueError(f"{what}: {name} has dims {ds[name].dims}; expected {FORECAST_DIMS}")
    if ds["issue_time"].ndim != 0:
        raise ValueError(f"{what}: issue_time must be a scalar, got dims {ds['issue_time'].dims}")
    if not np.issubdtype(ds["lead_time"].dtype, np.integer):
        raise ValueError(
            f"{what}: lead_time has dtype {ds['lead_time'].dtype}; expected integer minutes"
        )
