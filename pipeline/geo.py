"""Radar geometry: the HKO-7 grid, and the grid of any other source (:class:`Grid`).

HKO-7 frames cover 512 km x 512 km centred on Hong Kong at 480 x 480 pixels (about
1.07 km per pixel, docs/facts.md section 1). The archive ships no georeferencing, so this
module fixes one: an azimuthal-equidistant projection centred on the Tai Mo Shan radar
(``RADAR_LAT``, ``RADAR_LON``; the public position of the site, rounded to about 100 m)
on a sphere of radius ``EARTH_RADIUS_M``. Over +-256 km the spherical and ellipsoidal
forms differ by far less than one pixel.

Conventions (docs/contracts.md, Units and conventions):

- ``x`` (km) grows east with the column index, ``y`` (km) grows north and *decreases*
  with the row index (row 0 is the northern edge), both at pixel centres;
- ``grid_coords(size)`` serves any square grid over the same extent (80 x 80 for the
  thesis's downsized frames: 6.4 km pixels whose centres are the means of the 6 x 6
  native pixel centres they cover).

Other sources (:mod:`pipeline.sources`, docs/sources.md) bring their own projection and
extent: a :class:`Grid` holds the source's PROJ string (metres, as the files give it) and
the pixel-centre ``x``/``y`` in km (the unit of every store's coordinates, so that the
code downstream is the same for all sources); :meth:`Grid.cf_attrs` gives the CF grid
mapping (pyproj's ``to_cf``, ``crs_wkt`` in km, ``proj4_params``) that the store carries,
and :func:`cartopy_crs_from_attrs` turns such a grid mapping back into a cartopy CRS for
maps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

RADAR_LAT: float = 22.4106
"""Latitude of the Tai Mo Shan weather radar (degrees north)."""
RADAR_LON: float = 114.1243
"""Longitude of the Tai Mo Shan weather radar (degrees east)."""
EXTENT_KM: float = 512.0
"""Side of the square HKO-7 domain in km."""
NATIVE_SIZE: int = 480
"""Pixels per side of an HKO-7 frame."""
PIXEL_KM: float = EXTENT_KM / NATIVE_SIZE
"""Native pixel size in km (512 / 480, about 1.067 km)."""
EARTH_RADIUS_M: float = 6_371_000.0
"""Radius of the spherical earth the projection uses, in metres."""


@dataclass(frozen=True)
class GridCoords:
    """Pixel-centre coordinates of a square radar grid.

    Attributes
    ----------
    x : np.ndarray
        ``(size,)`` float64, km east of the radar, increasing.
    y : np.ndarray
        ``(size,)`` float64, km north of the radar, decreasing (row 0 is north).
    lat : np.ndarray
        ``(size, size)`` float64 degrees north, indexed ``[row, column]``.
    lon : np.ndarray
        ``(size, size)`` float64 degrees east, indexed ``[row, column]``.
    """

    x: np.ndarray
    y: np.ndarray
    lat: np.ndarray
    lon: np.ndarray


def _proj4() -> str:
    return (
        f"+proj=aeqd +lat_0={RADAR_LAT} +lon_0={RADAR_LON} +x_0=0 +y_0=0 "
        f"+R={EARTH_RADIUS_M:.1f} +units=km +no_defs"
    )


def _inverse_aeqd(x_km: np.ndarray, y_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form inverse azimuthal-equidistant projection on the sphere.

    Parameters
    ----------
    x_km, y_km : np.ndarray
        Projection coordinates in km (same shape).

    Returns
    -------
    lat, lon : np.ndarray
        Degrees, same shape as the inputs.
    """
    phi0 = np.deg2rad(RADAR_LAT)
    lam0 = np.deg2rad(RADAR_LON)
    r = EARTH_RADIUS_M / 1000.0
    rho = np.hypot(x_km, y_km)
    c = rho / r
    sin_c, cos_c = np.sin(c), np.cos(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(rho > 0, y_km * sin_c * np.cos(phi0) / np.where(rho > 0, rho, 1.0), 0.0)
    lat = np.arcsin(np.clip(cos_c * np.sin(phi0) + ratio, -1.0, 1.0))
    lon = lam0 + np.arctan2(x_km * sin_c, rho * np.cos(phi0) * cos_c - y_km * np.sin(phi0) * sin_c)
    return np.rad2deg(lat), np.rad2deg(lon)


def grid_coords(size: int = NATIVE_SIZE, extent_km: float = EXTENT_KM) -> GridCoords:
    """Pixel-centre coordinates of a ``size x size`` grid over the HKO-7 domain.

    Parameters
    ----------
    size : int
        Pixels per side (480 native, 80 for the thesis's downsized frames).
    extent_km : float
        Side of the square domain in km, centred on the radar.

    Returns
    -------
    GridCoords
        ``x`` and ``y`` in km (``y`` decreasing), 2-D ``lat``/``lon`` of shape ``(size, size)``.

    Raises
    ------
    ValueError
        If ``size`` is not a positive integer or ``extent_km`` is not positive.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
        raise ValueError(f"grid size must be a positive integer, got {size!r}")
    if not np.isfinite(extent_km) or extent_km <= 0:
        raise ValueError(f"extent_km must be a positive number of km, got {extent_km!r}")
    step = extent_km / size
    x = -extent_km / 2.0 + (np.arange(size, dtype=np.float64) + 0.5) * step
    y = x[::-1].copy()
    xx, yy = np.meshgrid(x, y)
    lat, lon = _inverse_aeqd(xx, yy)
    return GridCoords(x=x, y=y, lat=lat, lon=lon)


def crs_attrs() -> dict[str, object]:
    """CF grid-mapping attributes of the radar projection (for the scalar ``crs`` variable).

    Returns
    -------
    dict
        ``grid_mapping_name: azimuthal_equidistant``, projection origin, false
        easting/northing (km, the unit of ``x``/``y``), ``earth_radius`` (m) and
        ``crs_wkt`` (WKT2 from pyproj when available).
    """
    attrs: dict[str, object] = {
        "grid_mapping_name": "azimuthal_equidistant",
        "longitude_of_projection_origin": RADAR_LON,
        "latitude_of_projection_origin": RADAR_LAT,
        "false_easting": 0.0,
        "false_northing": 0.0,
        "earth_radius": EARTH_RADIUS_M,
        "proj4_params": _proj4(),
        "long_name": "azimuthal equidistant projection centred on the Tai Mo Shan radar",
    }
    try:
        import pyproj
    except ImportError:  # pragma: no cover - pyproj comes with cartopy
        return attrs
    attrs["crs_wkt"] = pyproj.CRS.from_proj4(_proj4()).to_wkt()
    return attrs


def cartopy_crs():
    """The radar projection as a cartopy CRS (x/y in metres, as cartopy expects).

    Returns
    -------
    cartopy.crs.AzimuthalEquidistant
        Multiply the dataset's km coordinates by 1000 for ``extent``/``transform`` use.
    """
    import cartopy.crs as ccrs

    globe = ccrs.Globe(ellipse=None, semimajor_axis=EARTH_RADIUS_M, semiminor_axis=EARTH_RADIUS_M)
    return ccrs.AzimuthalEquidistant(
        central_longitude=RADAR_LON, central_latitude=RADAR_LAT, globe=globe
    )


# --------------------------------------------------------------------------- any source grid

_UNITS_RE = re.compile(r"\s*\+(units|to_meter|vunits)=\S+")


def proj_in_km(projection: str) -> str:
    """The PROJ string *projection* with its x/y unit set to km (``+units=km``).

    Examples
    --------
    >>> proj_in_km("+proj=somerc +lat_0=46.95 +units=m +no_defs")
    '+proj=somerc +lat_0=46.95 +no_defs +units=km'
    """
    if not isinstance(projection, str) or "+proj=" not in projection:
        raise ValueError(f"expected a PROJ string ('+proj=...'), got {projection!r}")
    return _UNITS_RE.sub("", projection).strip() + " +units=km"


def proj_in_m(projection: str) -> str:
    """The PROJ string *projection* with its x/y unit set to metres (``+units=m``)."""
    return proj_in_km(projection)[: -len("+units=km")] + "+units=m"


@dataclass(frozen=True)
class Grid:
    """The grid of one radar source: projection and pixel-centre coordinates.

    Attributes
    ----------
    projection : str
        PROJ string of the source's projection (any ``+units``; :func:`proj_in_km` is
        applied wherever km are needed).
    x : np.ndarray
        ``(W,)`` float64 pixel-centre eastings in km, increasing with the column.
    y : np.ndarray
        ``(H,)`` float64 pixel-centre northings in km, decreasing with the row (row 0 is
        the northern edge).
    """

    projection: str
    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        proj_in_km(self.projection)  # validates
        x, y = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
        if x.ndim != 1 or y.ndim != 1 or x.size < 2 or y.size < 2:
            raise ValueError(f"grid x/y must be 1-D with >= 2 values, got {x.shape}, {y.shape}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("grid x/y must be finite numbers")
        if not (np.diff(x) > 0).all() or not (np.diff(y) < 0).all():
            raise ValueError("grid x must increase and y decrease (row 0 is north)")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` pixels."""
        return (self.y.size, self.x.size)

    @property
    def pixel_size_km(self) -> tuple[float, float]:
        """``(dx, dy)``: pixel width and height in km."""
        return (float(self.x[1] - self.x[0]), float(self.y[0] - self.y[1]))

    @property
    def extent_km(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)``: pixel-edge extent in km of the projection."""
        dx, dy = self.pixel_size_km
        return (
            float(self.x[0] - dx / 2),
            float(self.x[-1] + dx / 2),
            float(self.y[-1] - dy / 2),
            float(self.y[0] + dy / 2),
        )

    def crs(self):
        """The projection as a :class:`pyproj.CRS` with x/y in km."""
        import pyproj

        return pyproj.CRS.from_proj4(proj_in_km(self.projection))

    def lat_lon(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lat, lon)``: ``(H, W)`` float64 degrees of the pixel centres."""
        import pyproj

        tr = pyproj.Transformer.from_crs(self.crs(), "EPSG:4326", always_xy=True)
        xx, yy = np.meshgrid(self.x, self.y)
        lon, lat = tr.transform(xx, yy)
        return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)

    def cf_attrs(self) -> dict[str, object]:
        """CF grid-mapping attributes (pyproj ``to_cf``; false easting/northing in km)."""
        import warnings

        attrs: dict[str, object] = {}
        with warnings.catch_warnings():  # e.g. somerc (MeteoSwiss): CF has no skew angle;
            warnings.simplefilter("ignore", UserWarning)  # crs_wkt and proj4_params keep it
            cf = self.crs().to_cf()
        for key, value in cf.items():
            attrs[key] = list(value) if isinstance(value, tuple) else value
        attrs["proj4_params"] = proj_in_km(self.projection)
        attrs.setdefault("long_name", "projection of the radar source grid")
        return attrs


def grid_from_edges(
    projection: str,
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    shape: tuple[int, int],
    unit: str = "m",
) -> Grid:
    """A :class:`Grid` from its pixel-edge bounds (pysteps' ``x1, y1, x2, y2`` metadata).

    Parameters
    ----------
    projection : str
        PROJ string.
    x1, y1, x2, y2 : float
        Lower-left and upper-right pixel edges in *unit*.
    shape : (int, int)
        ``(H, W)`` pixels.
    unit : {"m", "km"}
        Unit of the bounds.

    Returns
    -------
    Grid
        Pixel centres ``x1 + (j + 0.5) dx`` and ``y2 - (i + 0.5) dy``, in km.
    """
    scale = {"m": 1e-3, "km": 1.0}.get(unit)
    if scale is None:
        raise ValueError(f"grid bounds unit must be 'm' or 'km', got {unit!r}")
    h, w = (int(n) for n in shape)
    if not np.isfinite([x1, y1, x2, y2]).all():
        raise ValueError(f"grid bounds ({x1}, {y1}) - ({x2}, {y2}) are not finite numbers")
    if h < 2 or w < 2 or not (x2 > x1 and y2 > y1):
        raise ValueError(
            f"grid bounds ({x1}, {y1}) - ({x2}, {y2}) and shape {shape} do not make a grid"
        )
    dx, dy = (x2 - x1) * scale / w, (y2 - y1) * scale / h
    x = x1 * scale + (np.arange(w) + 0.5) * dx
    y = y2 * scale - (np.arange(h) + 0.5) * dy
    return Grid(projection=projection, x=x, y=y)


def hko7_grid(size: int = NATIVE_SIZE) -> Grid:
    """The HKO-7 grid (:func:`grid_coords`) as a :class:`Grid`."""
    g = grid_coords(size)
    return Grid(projection=_proj4(), x=g.x, y=g.y)


def cartopy_crs_from_attrs(
    attrs: dict[str, object], extent_m: tuple[float, float, float, float] | None = None
):
    """A cartopy CRS (metres) from a store's CF grid mapping (``proj4_params`` or ``crs_wkt``).

    Parameters
    ----------
    attrs : dict
        Attributes of the store's ``crs`` variable.
    extent_m : (left, right, bottom, top), optional
        The grid's extent in projection metres: it bounds the projection's domain (a
        projection from a PROJ string has no area of use, and cartopy needs one to clip
        coastlines).

    Returns
    -------
    cartopy.crs.Projection
    """
    import cartopy.crs as ccrs
    import pyproj

    if attrs.get("grid_mapping_name") == "azimuthal_equidistant" and "crs_wkt" not in attrs:
        return cartopy_crs()
    if "proj4_params" in attrs:
        crs = pyproj.CRS.from_proj4(proj_in_m(str(attrs["proj4_params"])))
    elif "crs_wkt" in attrs:
        crs = pyproj.CRS.from_wkt(str(attrs["crs_wkt"]))
        crs = pyproj.CRS.from_proj4(proj_in_m(crs.to_proj4()))
    else:
        raise ValueError(
            f"grid mapping has neither proj4_params nor crs_wkt: {sorted(attrs)}; "
            "cannot make a map projection"
        )
    proj = ccrs.Projection(crs)
    if extent_m is not None:
        left, right, bottom, top = (float(v) for v in extent_m)
        pad_x, pad_y = (right - left) * 0.05, (top - bottom) * 0.05
        proj.bounds = (left - pad_x, right + pad_x, bottom - pad_y, top + pad_y)
    return proj


def map_projection(ds) -> tuple[object, tuple[float, float, float, float]]:
    """Cartopy CRS and ``(left, right, bottom, top)`` extent (metres) of a store's grid.

    Parameters
    ----------
    ds : xarray.Dataset
        A store, resampled store or forecast with ``x``/``y`` (km, pixel centres) and a
        ``crs`` grid mapping.
    """
    x, y = np.asarray(ds["x"].values, float), np.asarray(ds["y"].values, float)
    dx = abs(float(x[1] - x[0])) if x.size > 1 else PIXEL_KM
    dy = abs(float(y[1] - y[0])) if y.size > 1 else PIXEL_KM
    extent = (
        (x.min() - dx / 2) * 1e3,
        (x.max() + dx / 2) * 1e3,
        (y.min() - dy / 2) * 1e3,
        (y.max() + dy / 2) * 1e3,
    )
    extent = tuple(float(v) for v in extent)
    attrs = dict(ds["crs"].attrs) if "crs" in ds.variables else {}
    return cartopy_crs_from_attrs(attrs, extent) if attrs else cartopy_crs(), extent
