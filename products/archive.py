"""Zarr (Icechunk) archive of the published forecasts, keyed by issue time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.schema import validate_forecast
from products._common import _TIME_ENCODING, _issue_time


def append_forecast_zarr(ds: xr.Dataset, store: str | os.PathLike[str]) -> int:
    """Add one forecast to a Zarr archive of forecasts keyed by issue time.

    The archive has dims ``(issue_time, lead_time, y, x)`` (chunk 1 along
    ``issue_time``), ``valid_time (issue_time, lead_time)`` and ``model (issue_time)``;
    the exceedance probabilities of an ensemble forecast are archived too
    (``probability_of_rainfall_rate_above_threshold`` on ``(issue_time, lead_time,
    threshold, y, x)``) when the archive was started with them (see
    :func:`_match_probabilities`), and so are the rain accumulations
    (``precipitation_amount_*`` on ``(issue_time, y, x)``, :mod:`products.accumulation`,
    the ones the archive was started with); percentiles, members and motion are not.
    Writing an issue time that is already there replaces it in place (a region write),
    so re-running a publish never duplicates a forecast. The archive is an Icechunk
    repository: each call is one commit (message ``publish: forecast issued ... by
    MODEL``), made under the writer lock beside the archive, so a publish killed inside
    the write leaves the archive at its last commit and the next publish succeeds.

    Parameters
    ----------
    ds : xarray.Dataset
        Forecast in the forecast schema (docs/contracts.md).
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
        If *ds* is not in the forecast schema, its lead times or grid differ from the
        archive's, or its issue time is earlier than the archive's last one and not
        already present (the archive stays sorted).
    """
    from pipeline.store import as_location, store_lock

    validate_forecast(ds)
    store = as_location(store)  # a directory, or an s3:// URL
    issue = _issue_time(ds)
    # the archive holds the fields and the exceedance probabilities; the motion of a
    # Lagrangian forecast, an ensemble's percentiles and members stay in its NetCDF
    new = ds.drop_vars(list(_NETCDF_ONLY), errors="ignore")
    model = str(ds.attrs.get("model", "unknown"))
    new = new.drop_vars("issue_time").expand_dims(issue_time=[np.datetime64(issue, "ns")])
    new["valid_time"] = new["valid_time"].expand_dims(issue_time=new["issue_time"])
    new = new.assign_coords(model=("issue_time", np.array([model], dtype=object)))
    if "crs" in new.coords:
        new = new.reset_coords("crs")
    new.attrs = {k: v for k, v in ds.attrs.items() if k in ("source",)}
    for name in _archived(new):
        new[name].encoding = {"chunks": (1, *ds[name].shape)}
        new[name].attrs.pop("grid_mapping", None)
        new[name].attrs["grid_mapping"] = "crs"
    for name in _amounts(new):  # the window's times vary per issue: the archive has issue_time
        for key in ("window_start", "window_end", "comment"):
            new[name].attrs.pop(key, None)
    with store_lock(store):
        return _append_in_session(new, ds, store, issue, model)


_PROBABILITY = "probability_of_rainfall_rate_above_threshold"
_NETCDF_ONLY: tuple[str, ...] = (
    "motion",
    "component",
    "reflectivity_percentile",
    "percentile",
    "reflectivity_members",
    "realization",
)
"""Variables of a forecast that stay in its NetCDF file and are not archived."""


def _archived(ds: xr.Dataset) -> list[str]:
    """The gridded variables the archive keeps of *ds*."""
    return [n for n in ("reflectivity", "rainfall_rate", _PROBABILITY) if n in ds] + _amounts(ds)


_AMOUNT = "lwe_thickness_of_precipitation_amount"


def _amounts(ds: xr.Dataset) -> list[str]:
    """The rain accumulations of *ds* (:mod:`products.accumulation`), archived as they come."""
    return [str(n) for n in ds.data_vars if ds[n].attrs.get("standard_name") == _AMOUNT]


def _match_accumulations(new: xr.Dataset, old: xr.Dataset) -> xr.Dataset:
    """*new* with exactly the accumulation variables of the archive *old*.

    An accumulation the archive has and the forecast lacks (a window its leads did not
    reach) is NaN; one the archive was started without is left out (it stays in the
    NetCDF).
    """
    have, keep = set(_amounts(new)), set(_amounts(old))
    new = new.drop_vars(sorted(have - keep))
    for name in sorted(keep - have):
        shape = (1, new.sizes["y"], new.sizes["x"])
        field = np.full(shape, np.nan, np.float32)
        new[name] = xr.Variable(("issue_time", "y", "x"), field, dict(old[name].attrs))
    return new


def _match_probabilities(new: xr.Dataset, old: xr.Dataset, store: object) -> xr.Dataset:
    """*new* with the exceedance probabilities the archive *old* has (or has not).

    An archive started with deterministic forecasts stays without probabilities (the
    ensemble's stay in its NetCDF; move the archive aside to start one with them); a
    deterministic forecast in an archive with probabilities gets NaN probabilities.
    """
    if _PROBABILITY not in old:
        return new.drop_vars([_PROBABILITY, "threshold"], errors="ignore")
    thresholds = old["threshold"].values
    if _PROBABILITY not in new:
        shape = (1, new.sizes["lead_time"], len(thresholds), new.sizes["y"], new.sizes["x"])
        field = np.full(shape, np.nan, np.float32)
        dims = ("issue_time", "lead_time", "threshold", "y", "x")
        new = new.assign_coords(threshold=old["threshold"].variable)
        new[_PROBABILITY] = xr.Variable(dims, field, dict(old[_PROBABILITY].attrs))
    elif not np.array_equal(new["threshold"].values, thresholds):
        raise ValueError(
            f"forecast has probability thresholds {new['threshold'].values.tolist()} mm/h; "
            f"the archive {store} has {thresholds.tolist()} (they must match)"
        )
    return new


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
        for name in _archived(new):
            encoding[name] = {"chunks": (1, *ds[name].shape)}
        new.to_zarr(session.store, mode="w", encoding=encoding, consolidated=False)
        session.commit(message + " (first of the archive)")
        return 0
    old = xr.open_zarr(session.store, consolidated=False, decode_timedelta=False)
    try:
        problem = _mismatch(new, old, store, issue)
        if problem is not None:
            raise ArchiveMismatchError(problem)
        times = pd.DatetimeIndex(old["issue_time"].values)
        new = _match_probabilities(new, old, store)
        new = _match_accumulations(new, old)
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
    drop = [n for n in new.coords if n in ("lead_time", "y", "x", "lat", "lon", "threshold")]
    new.drop_vars(drop).to_zarr(session.store, append_dim="issue_time", consolidated=False)
    session.commit(message)
    return len(times)


class ArchiveMismatchError(ValueError):
    """A forecast that the existing forecast archive cannot take (other leads, grid, ...)."""


_ADVICE = (
    "make the forecast with the archive's lead times (nowcast forecast ... --leads {leads}), "
    "or publish into another archive (nowcast publish ... --archive OTHER.zarr; "
    "nowcast serve / flow forecast --archive) or another site"
)


def _listed(values, limit: int = 24) -> str:
    """Every value of *values* (up to *limit*, then how many more), comma-separated."""
    items = [f"{v:g}" if isinstance(v, float) else str(v) for v in list(values)]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(items)


def _lead_difference(new: np.ndarray, old: np.ndarray) -> str:
    """What differs between two lead-time lists, both named in full."""
    only_new = [int(v) for v in new if v not in set(old.tolist())]
    only_old = [int(v) for v in old if v not in set(new.tolist())]
    text = (
        f"the forecast has {len(new)} lead times ({_listed(new.tolist())} min), the archive "
        f"{len(old)} ({_listed(old.tolist())} min)"
    )
    if only_new or only_old:
        parts = []
        if only_new:
            parts.append(f"only in the forecast: {_listed(only_new)}")
        if only_old:
            parts.append(f"only in the archive: {_listed(only_old)}")
        return text + "; " + "; ".join(parts)
    return text + "; the same values in another order"


def _mismatch(new: xr.Dataset, old: xr.Dataset, store: object, issue) -> str | None:
    """Why the forecast *new* cannot be added to the archive *old*, or None."""
    head = f"cannot publish the forecast issued {pd.Timestamp(issue):%Y-%m-%d %H:%M} into the "
    head += f"forecast archive {store}: "
    new_leads = np.asarray(new["lead_time"].values)
    old_leads = np.asarray(old["lead_time"].values)
    if not np.array_equal(new_leads, old_leads):
        leads = ",".join(str(int(v)) for v in old_leads)
        return head + _lead_difference(new_leads, old_leads) + "; " + _ADVICE.format(leads=leads)
    for name in ("y", "x"):
        a, b = np.asarray(new[name].values), np.asarray(old[name].values)
        if a.shape != b.shape or not np.array_equal(a, b):
            return head + (
                f"the forecast is on a {new.sizes['y']} x {new.sizes['x']} grid "
                f"(x {float(new['x'].min()):g} .. {float(new['x'].max()):g} km), the archive's "
                f"on {old.sizes['y']} x {old.sizes['x']} (x {float(old['x'].min()):g} .. "
                f"{float(old['x'].max()):g} km); publish into another archive "
                "(nowcast publish ... --archive OTHER.zarr) or another site"
            )
    if _PROBABILITY in old and _PROBABILITY in new:
        a, b = new["threshold"].values, old["threshold"].values
        if not np.array_equal(a, b):
            return head + (
                f"the forecast has probability thresholds {_listed(a.tolist())} mm/h, the "
                f"archive {_listed(b.tolist())} mm/h; publish into another archive "
                "(--archive OTHER.zarr) or another site"
            )
    times = pd.DatetimeIndex(old["issue_time"].values)
    issue = pd.Timestamp(issue)
    if len(times) and issue < times[-1] and issue not in times:
        return head + (
            f"it is earlier than the last one in the archive ({times[-1]:%Y-%m-%d %H:%M}), "
            "which is kept sorted by issue time; publish into another archive "
            "(--archive OTHER.zarr) or another site"
        )
    return None


def check_forecast_archive(ds: xr.Dataset, store: str | os.PathLike[str] | None) -> None:
    """Refuse, before anything is drawn or written, a forecast the archive cannot take.

    Parameters
    ----------
    ds : xarray.Dataset
        Forecast in the forecast schema (docs/contracts.md).
    store : path-like, str or None
        The forecast archive (:func:`append_forecast_zarr`); None or an archive that does
        not exist yet takes any forecast.

    Raises
    ------
    ArchiveMismatchError
        The archive has other lead times (both lists named in full, and what is only in
        each), another grid or other probability thresholds, or a later last issue time;
        the message says what to do (``--leads``, ``--archive``).
    """
    if store is None or not forecast_archive_exists(store):
        return
    old = open_forecast_zarr(store)
    try:
        problem = _mismatch(ds, old, store, _issue_time(ds))
    finally:
        old.close()
    if problem is not None:
        raise ArchiveMismatchError(problem)


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
