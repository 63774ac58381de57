"""The grid a run was trained at, and whether a store fits it: pixel size, domain, cadence.

A network learns in its own pixels and steps: motion corrections, growth and the
scale-damping weights of the Lagrangian mode (docs/models.md) are in pixels of its
``image_size x image_size`` grid and per step of its cadence. The same weights on a
store whose network pixel is 10 km instead of 6.4 km see every rain cell at another
scale. So a run records what it was trained at (:func:`store_grid`, kept in the
checkpoint's ``meta["grid"]`` by :mod:`nowcast.training.rundir`), and forecasting,
evaluating or fine-tuning on another store compares (:func:`check_store`):

- **network pixel size** (the store's domain in km over the network's grid side; for a
  model on the store's own grid that is the store's pixel size): a difference of more
  than 1 % is refused with one line naming both values, unless the caller passes
  ``allow_other_grid`` (then the difference is reported, not hidden);
- **cadence**: the models take lead times in minutes, so a continuous-time model adapts:
  its inputs and leads are the store's minutes, and a Lagrangian model's store motion
  (pixels per store step) is rescaled to pixels per step of its own cadence
  (:func:`adapt_model`). A regular-only model (ConvGRU, TrajGRU) steps one frame per
  cadence step and is refused on another cadence.

Record layout (plain values, ``meta["grid"]``)::

    {"pixel_km": float, "network_pixel_km": float, "domain_km": [height, width],
     "shape": [ny, nx], "cadence_minutes": float, "projection": str,
     "stores": [ {one per training store} ]}

``network_pixel_km`` is None for a run trained on stores of different network pixel
sizes (with ``allow_other_grid``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "GridMismatchError",
    "adapt_model",
    "check_store",
    "fit_run_to_store",
    "merge_grids",
    "store_grid",
]

_REL_TOL = 0.01
"""Relative difference of pixel sizes below which two grids count as the same."""


class GridMismatchError(ValueError):
    """A store whose pixel size or cadence the run cannot handle (message: one line)."""


def store_grid(
    path: Any, network_side: int | None = None, crop: int | None = None
) -> dict[str, Any]:
    """The grid of a resampled store as the network sees it.

    Parameters
    ----------
    path : path or xarray.Dataset
        Resampled store (docs/contracts.md, Resampled schema): ``x``/``y`` in km and the
        ``cadence_minutes`` attribute (an ingest store has none: cadence None).
    network_side : int, optional
        Side of the network's grid in pixels (``config.image_size``) when the frames are
        block-averaged onto it (Lagrangian models, forecasts on a larger grid); default
        the store's (or crop's) side: the network runs on the store's pixels.
    crop : int, optional
        Side of the square crops trained on (``TrainOptions.crop``), pixels.

    Returns
    -------
    dict
        ``store``, ``pixel_km`` (mean of dx, dy), ``shape`` ([ny, nx] of the store or
        crop), ``domain_km`` ([height, width] of it), ``network_pixel_km`` (domain height
        over ``network_side``), ``cadence_minutes`` and ``projection`` (the grid mapping's
        PROJ string, for the record: the networks work on any projection at the same pixel
        size).
    """
    import xarray as xr

    if isinstance(path, xr.Dataset):
        ds, path = path, path.encoding.get("source") or "the store"
    else:
        from pipeline.store import open_store

        ds = open_store(path)
    ny, nx = int(ds.sizes["y"]), int(ds.sizes["x"])
    dx = abs(float(ds["x"][1] - ds["x"][0])) if nx > 1 else float("nan")
    dy = abs(float(ds["y"][1] - ds["y"][0])) if ny > 1 else dx
    pixel = (dx + dy) / 2.0
    if crop is not None:
        ny, nx = min(ny, int(crop)), min(nx, int(crop))
    cadence = ds.attrs.get("cadence_minutes")
    side = int(network_side or ny)
    return {
        "store": str(path),
        "pixel_km": round(pixel, 6),
        "shape": [ny, nx],
        "domain_km": [round(ny * pixel, 3), round(nx * pixel, 3)],
        "network_pixel_km": round(ny * pixel / side, 6),
        "cadence_minutes": None if cadence is None else float(cadence),
        "projection": str(ds["crs"].attrs.get("proj4_params", "")) if "crs" in ds else "",
    }


def merge_grids(grids: Sequence[Mapping[str, Any]], *, allow_other_grid: bool) -> dict:
    """The run's grid record from the grids of its training stores.

    Raises
    ------
    GridMismatchError
        Stores of different network pixel sizes or cadences without ``allow_other_grid``
        (cadences must always agree: one run has one cadence).
    """
    first = dict(grids[0])
    for g in grids[1:]:
        if g["cadence_minutes"] != first["cadence_minutes"]:
            raise GridMismatchError(
                f"training stores have different cadences: {first['store']} "
                f"{first['cadence_minutes']:g} min, {g['store']} {g['cadence_minutes']:g} min; "
                "resample them to one cadence"
            )
        if not _same(g["network_pixel_km"], first["network_pixel_km"]):
            if not allow_other_grid:
                raise GridMismatchError(
                    f"training stores have different pixel sizes: {first['store']} "
                    f"{_km(first['network_pixel_km'])} per network pixel, {g['store']} "
                    f"{_km(g['network_pixel_km'])}; resample them alike or pass "
                    "--allow-other-grid"
                )
            first["network_pixel_km"] = None
    first["stores"] = [dict(g) for g in grids]
    return first


def check_store(
    run_grid: Mapping[str, Any],
    store: Mapping[str, Any],
    *,
    continuous_time: bool,
    allow_other_grid: bool = False,
    run_name: str = "the run",
    hint: str = "pass --allow-other-grid",
) -> list[str]:
    """Compare a store's grid with the run's; return what differs (and is adapted).

    Parameters
    ----------
    run_grid : mapping
        The run's record (:func:`nowcast.training.rundir.run_grid`).
    store : mapping
        :func:`store_grid` of the store, with the run's network side.
    continuous_time : bool
        Whether the model takes any lead time in minutes (it then adapts to the cadence).
    allow_other_grid : bool
        Accept another network pixel size (reported in the returned list).
    run_name : str
        How the run is named in the message.
    hint : str
        How the caller allows another pixel size (end of the message).

    Returns
    -------
    list of str
        One note per adaptation (empty: the store matches).

    Raises
    ------
    GridMismatchError
        One line naming both values: another pixel size without ``allow_other_grid``, or
        another cadence for a regular-only model.
    """
    notes: list[str] = []
    run_px, px = run_grid.get("network_pixel_km"), store["network_pixel_km"]
    unknown = run_px is None and bool(run_grid.get("assumed"))  # an old run: not checked
    if not unknown and not _same(run_px, px):
        trained = (
            "stores of several pixel sizes"
            if run_px is None
            else f"{_km(run_px)} per network pixel ({_domain(run_grid)})"
        )
        line = (
            f"{run_name} was trained at {trained}; {store['store']} gives "
            f"{_km(px)} per network pixel ({_domain(store)})"
        )
        if not allow_other_grid:
            raise GridMismatchError(f"{line}: resample the store to the run's pixel size or {hint}")
        notes.append(line + " (allowed: --allow-other-grid)")
    run_cad, cad = run_grid.get("cadence_minutes"), store["cadence_minutes"]
    if run_cad is not None and cad is not None and not math.isclose(run_cad, cad):
        line = (
            f"{run_name} was trained at a {run_cad:g}-min cadence; {store['store']} has a "
            f"{cad:g}-min cadence"
        )
        if not continuous_time:
            raise GridMismatchError(
                f"{line}: this model steps one frame per cadence step; resample the store to "
                f"{run_cad:g} min"
            )
        notes.append(line + " (adapted: lead times in minutes, store motion rescaled)")
    return notes


def fit_run_to_store(
    model: Any, meta: Mapping[str, Any], store: str | os.PathLike, allow_other_grid: bool
) -> list[str]:
    """Check a loaded run against a resampled store and adapt its model to the cadence.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model (:func:`nowcast.runs.load_run`).
    meta : mapping
        Its ``meta`` (with ``config`` and ``path``).
    store : path
        The resampled store it is about to forecast or be scored on.
    allow_other_grid : bool
        Accept another network pixel size.

    Returns
    -------
    list of str
        Notes on what differs and was adapted (also the assumption of an old run).

    Raises
    ------
    GridMismatchError
        See :func:`check_store`.
    """
    from nowcast.training.rundir import run_grid

    config = meta["config"]
    grid = run_grid(meta, config)
    full = bool(getattr(model, "full_resolution", False))
    target = store_grid(store, network_side=int(config.image_size) if full else None)
    name = f"run {Path(str(meta.get('path', 'run'))).parent}"
    notes = [grid["assumed"]] if grid.get("assumed") else []
    notes += check_store(
        grid,
        target,
        continuous_time=bool(getattr(model, "continuous_time", False)),
        allow_other_grid=allow_other_grid,
        run_name=name,
    )
    adapt_model(model, target["cadence_minutes"])
    return notes


def adapt_model(model: Any, store_cadence_minutes: float | None) -> None:
    """Tell a Lagrangian model the cadence of the store motion it is given.

    The store's ``motion`` is in pixels per store step; the model's own steps are of its
    configured cadence. A model without ``motion_cadence_minutes`` is left unchanged.
    """
    if store_cadence_minutes is not None and hasattr(model, "motion_cadence_minutes"):
        model.motion_cadence_minutes = float(store_cadence_minutes)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b))


def _km(value: float | None) -> str:
    return "mixed" if value is None else f"{value:.4g} km"


def _domain(grid: Mapping[str, Any]) -> str:
    h, w = grid.get("domain_km") or (float("nan"), float("nan"))
    ny, nx = grid.get("shape") or (0, 0)
    return f"{h:.4g} x {w:.4g} km domain, {ny} x {nx} pixels"
