"""Radar grid geometry (pipeline.geo)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import geo


def _great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
    dlat, dlon = p2 - p1, np.deg2rad(lon2 - lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * geo.EARTH_RADIUS_M / 1000 * np.arcsin(np.sqrt(a))


def test_native_grid_pixel_centres():
    g = geo.grid_coords()
    assert g.x.shape == g.y.shape == (480,)
    assert g.lat.shape == g.lon.shape == (480, 480)
    assert g.x[0] == pytest.approx(-256 + 256 / 480)
    assert g.x[-1] == pytest.approx(256 - 256 / 480)
    np.testing.assert_allclose(np.diff(g.x), geo.PIXEL_KM)
    np.testing.assert_allclose(np.diff(g.y), -geo.PIXEL_KM)  # row 0 is north
    assert geo.PIXEL_KM == pytest.approx(1.0667, abs=1e-4)


def test_coarse_grid_centres_are_block_means_of_native_centres():
    fine, coarse = geo.grid_coords(480), geo.grid_coords(80)
    np.testing.assert_allclose(coarse.x, fine.x.reshape(80, 6).mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(coarse.y, fine.y.reshape(80, 6).mean(axis=1), atol=1e-12)
    assert coarse.x[1] - coarse.x[0] == pytest.approx(6.4)


def test_azimuthal_equidistant_preserves_distance_and_bearing_from_the_radar():
    g = geo.grid_coords(80)
    xx, yy = np.meshgrid(g.x, g.y)
    dist = _great_circle_km(geo.RADAR_LAT, geo.RADAR_LON, g.lat, g.lon)
    np.testing.assert_allclose(dist, np.hypot(xx, yy), rtol=1e-9)
    # due north of the radar keeps the radar's longitude; north is up (row 0)
    col = int(np.argmin(np.abs(g.x - 3.2)))
    assert g.lat[0, col] > g.lat[-1, col]
    mid = geo.grid_coords(2, extent_km=200.0)
    assert mid.lon[0, 0] < geo.RADAR_LON < mid.lon[0, 1]
    assert mid.lat[1, 0] < geo.RADAR_LAT < mid.lat[0, 0]


def test_lat_lon_match_pyproj_and_cartopy():
    pyproj = pytest.importorskip("pyproj")
    ccrs = pytest.importorskip("cartopy.crs")
    g = geo.grid_coords(40)
    xx, yy = np.meshgrid(g.x, g.y)
    crs = pyproj.CRS.from_wkt(geo.crs_attrs()["crs_wkt"])
    to_ll = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(xx, yy)
    np.testing.assert_allclose(lon, g.lon, atol=1e-9)
    np.testing.assert_allclose(lat, g.lat, atol=1e-9)
    pts = geo.cartopy_crs().transform_points(ccrs.PlateCarree(), g.lon, g.lat)
    np.testing.assert_allclose(pts[..., 0] / 1000, xx, atol=1e-6)
    np.testing.assert_allclose(pts[..., 1] / 1000, yy, atol=1e-6)


def test_crs_attrs_are_cf_grid_mapping():
    a = geo.crs_attrs()
    assert a["grid_mapping_name"] == "azimuthal_equidistant"
    assert a["latitude_of_projection_origin"] == geo.RADAR_LAT
    assert a["longitude_of_projection_origin"] == geo.RADAR_LON
    assert a["false_easting"] == a["false_northing"] == 0.0
    assert a["earth_radius"] == geo.EARTH_RADIUS_M


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_grid_size_raises(size):
    with pytest.raises(ValueError, match="positive integer"):
        geo.grid_coords(size)


def test_bad_extent_raises():
    with pytest.raises(ValueError, match="extent_km"):
        geo.grid_coords(10, extent_km=0.0)
