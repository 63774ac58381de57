"""Fit any source grid to the square grids the resampler and the models use.

Radar sources (:mod:`pipeline.sources`) come on their own grids: HKO-7 480 x 480, OPERA
composites 1900 x 2200, KNMI 765 x 700, MeteoSwiss 640 x 710... The resampled store
(docs/contracts.md, Resampled schema) and every model work on square ``size x size``
frames, and the networks need ``size`` to be a multiple of their total stride
(docs/sources.md). The rule
(:func:`fit_plan`):

- a **square** source grid of side ``n`` must be divisible by ``size`` (``n / size`` x
  ``n / size`` block means, as for HKO-7's 480 -> 80; nothing is padded or cropped);
- a **non-square** grid ``H x W`` is first **padded**, centred, to the square of side
  ``N = size * ceil(max(H, W) / size)`` with invalid pixels (mask False, so a coarse pixel
  that is mostly padding is invalid by ``min_valid_fraction``), on the same pixel spacing;
  nothing of the source is cut off. The padded ``x``/``y`` extend the source's
  coordinates, so the map of a resampled store shows the whole source domain.

``lat``/``lon`` of the coarse grid come from the store's grid mapping (pyproj), or from
:func:`pipeline.geo.grid_coords` for the HKO-7 grid (the same values as before).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr


@dataclass(frozen=True)
class FitPlan:
    """How a ``(ny, nx)`` grid becomes ``(size, size)``.

    Attributes
    ----------
    factor : int
        Source pixels per coarse pixel along each axis.
    pad : tuple of int
        ``(top, bottom, left, right)`` invalid pixels added around the source.
    """

    factor: int
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def padded(self) -> bool:
        """Whether any padding is added."""
        return any(self.pad)


def fit_plan(ny: int, nx: int, size: int) -> FitPlan:
    """The :class:`FitPlan` of a ``(ny, nx)`` source for ``size x size`` output.

    Raises
    ------
    ValueError
        If *size* is not positive, or a square grid's side is not a multiple of it (the
        message lists the valid sizes).

    Examples
    --------
    >>> fit_plan(480, 480, 80)
    FitPlan(factor=6, pad=(0, 0, 0, 0))
    >>> fit_plan(640, 710, 64)
    FitPlan(factor=12, pad=(64, 64, 29, 29))
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if ny == nx:
        if nx % size:
            raise ValueError(
                f"size {size} does not divide the source grid size {nx}; valid sizes: "
                f"{[d for d in range(1, nx + 1) if nx % d == 0]}"
            )
        return FitPlan(factor=nx // size)
    factor = math.ceil(max(ny, nx) / size)
    side = factor * size
    py, px = side - ny, side - nx
    return FitPlan(factor=factor, pad=(py // 2, py - py // 2, px // 2, px - px // 2))


def pad_frames(raw: np.ndarray, use: np.ndarray, plan: FitPlan) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``(T, ny, nx)`` frames and validity by *plan* (values 0, validity False)."""
    if not plan.padded:
        return raw, use
    top, bottom, left, right = plan.pad
    width = ((0, 0), (top, bottom), (left, right))
    return np.pad(raw, width), np.pad(use, width, constant_values=False)


def _extend(values: np.ndarray, before: int, after: int) -> np.ndarray:
    step = float(values[1] - values[0])
    head = values[0] - step * np.arange(before, 0, -1)
    tail = values[-1] + step * np.arange(1, after + 1)
    return np.concatenate([head, values, tail])


def _lat_lon(src: xr.Dataset, x: np.ndarray, y: np.ndarray, extent_km: float):
    """``(lat, lon)`` ``(len(y), len(x))`` of pixel centres in the store's projection."""
    from pipeline import geo

    attrs = dict(src["crs"].attrs) if "crs" in src.variables else {}
    if attrs.get("grid_mapping_name", "azimuthal_equidistant") == "azimuthal_equidistant" and (
        "proj4_params" not in attrs or attrs["proj4_params"] == geo.crs_attrs()["proj4_params"]
    ):
        grid = geo.grid_coords(size=x.size, extent_km=extent_km)
        if np.allclose(grid.x, x, atol=1e-6 * extent_km) and np.allclose(
            grid.y, y, atol=1e-6 * extent_km
        ):
            return grid.lat, grid.lon
        raise ValueError(
            "source x/y are not the radar-centred grid of pipeline.geo.grid_coords("
            f"{x.size}, extent_km={extent_km}); cannot compute lat/lon of the grid"
        )
    proj = attrs.get("proj4_params")
    if proj is None:
        import pyproj

        proj = pyproj.CRS.from_wkt(str(attrs["crs_wkt"])).to_proj4()
    return geo.Grid(projection=str(proj), x=x, y=y).lat_lon()


def coarse_coords(src: xr.Dataset, size: int, plan: FitPlan | None = None) -> dict:
    """x, y (coarse pixel centres, km), lat and lon of the ``size x size`` grid of *src*.

    Parameters
    ----------
    src : xarray.Dataset
        An ingest store with ``x``/``y`` (km), ``lat``/``lon`` and a ``crs`` grid mapping.
    size : int
        Output pixels per side.
    plan : FitPlan, optional
        Default :func:`fit_plan` of the store's grid.

    Returns
    -------
    dict of xarray.DataArray
        ``x``, ``y`` (1-D) and ``lat``, ``lon`` ``(y, x)``, with the source's attributes.
    """
    plan = plan or fit_plan(src.sizes["y"], src.sizes["x"], size)
    top, bottom, left, right = plan.pad
    x = _extend(src["x"].to_numpy().astype(np.float64), left, right)
    y = _extend(src["y"].to_numpy().astype(np.float64), top, bottom)
    x = x.reshape(size, plan.factor).mean(axis=1)
    y = y.reshape(size, plan.factor).mean(axis=1)
    extent = abs(float(src["x"][1] - src["x"][0])) * plan.factor * size
    lat, lon = _lat_lon(src, x, y, extent)

    def attrs(name: str) -> dict:
        return dict(src[name].attrs) if name in src.variables else {}

    return {
        "x": xr.DataArray(x, dims="x", attrs=attrs("x")),
        "y": xr.DataArray(y, dims="y", attrs=attrs("y")),
        "lat": xr.DataArray(np.asarray(lat), dims=("y", "x"), attrs=attrs("lat")),
        "lon": xr.DataArray(np.asarray(lon), dims=("y", "x"), attrs=attrs("lon")),
    }
