"""Radar geometry of the HKO-7 grid: projection, pixel-centre coordinates, latitude/longitude.

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
"""

from __future__ import annotations

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
