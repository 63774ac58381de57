"""Source grids (pipeline.geo.Grid) and fitting them to the models' square grids (pipeline.grid_fit)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import geo
from pipeline.grid_fit import fit_plan, pad_frames
from pipeline.sources import get_source
from tests.pipeline import radar_formats as rf


def test_fit_plan_square_unchanged_and_non_square_padded():
    assert fit_plan(480, 480, 80).factor == 6 and not fit_plan(480, 480, 80).padded
    with pytest.raises(ValueError, match="does not divide the source grid size 480"):
        fit_plan(480, 480, 7)
    plan = fit_plan(640, 710, 64)  # CCS4 to 64: 768 = 12 * 64, 128 rows and 58 columns added
    assert (plan.factor, plan.pad) == (12, (64, 64, 29, 29))
    raw, use = pad_frames(np.ones((1, 640, 710), np.uint8), np.ones((1, 640, 710), bool), plan)
    assert raw.shape == use.shape == (1, 768, 768)
    assert use[0, 64:704, 29:739].all() and use.sum() == 640 * 710 and raw[0, 0, 0] == 0


def test_grid_from_edges_centres_extent_and_lat_lon():
    g = geo.grid_from_edges(
        rf.ODIM_PROJ, 1_000_000.0, -1_040_000.0, 1_060_000.0, -1_000_000.0, (20, 30)
    )
    assert g.shape == (20, 30) and g.pixel_size_km == pytest.approx((2.0, 2.0))
    assert g.x[0] == pytest.approx(1001.0) and g.y[0] == pytest.approx(-1001.0)
    assert g.extent_km == pytest.approx((1000.0, 1060.0, -1040.0, -1000.0))
    import pyproj

    lon, lat = pyproj.Transformer.from_crs(
        pyproj.CRS.from_proj4(rf.ODIM_PROJ), "EPSG:4326", always_xy=True
    ).transform(1_059_000.0, -1_039_000.0)
    glat, glon = g.lat_lon()
    assert glat[-1, -1] == pytest.approx(lat, abs=1e-9) and glon[-1, -1] == pytest.approx(
        lon, abs=1e-9
    )
    attrs = g.cf_attrs()
    assert attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    assert attrs["false_easting"] == pytest.approx(1950.0)  # km, the unit of x
    assert attrs["proj4_params"].endswith("+units=km")


def test_proj_units_and_bad_grids():
    assert geo.proj_in_m("+proj=stere +lat_0=90 +units=km") == "+proj=stere +lat_0=90 +units=m"
    with pytest.raises(ValueError, match="expected a PROJ string"):
        geo.proj_in_km("EPSG:3035")
    with pytest.raises(ValueError, match="y decrease"):
        geo.Grid(projection=rf.ODIM_PROJ, x=np.arange(3.0), y=np.arange(3.0))


def test_cartopy_crs_from_attrs_bounds_the_domain():
    g = geo.grid_from_edges(rf.ODIM_PROJ, 0.0, 0.0, 100_000.0, 50_000.0, (5, 10))
    proj = geo.cartopy_crs_from_attrs(g.cf_attrs(), (0.0, 100_000.0, 0.0, 50_000.0))
    assert proj.bounds == pytest.approx((-5_000.0, 105_000.0, -2_500.0, 52_500.0))
    with pytest.raises(ValueError, match="neither proj4_params nor crs_wkt"):
        geo.cartopy_crs_from_attrs({"grid_mapping_name": "lambert_azimuthal_equal_area"})


def test_hko7_source_reads_frame_and_mask(tmp_path):
    from pipeline import hko7, units

    px = np.zeros(hko7.FRAME_SHAPE, np.uint8)
    px[10, 20] = 200
    mask = np.ones(hko7.FRAME_SHAPE, bool)
    mask[0, 0] = False
    hko7.write_frame(tmp_path / "RAD150601000000.png", px)
    hko7.write_mask(tmp_path / "RAD150601000000.mask", mask)
    frame = get_source("hko7").read(
        tmp_path / "RAD150601000000.png", str(tmp_path / "RAD150601000000.mask")
    )
    dbz, valid = frame.to_dbz()
    assert dbz[10, 20] == np.float32(units.pixel_to_dbz(200)) and not valid[0, 0] and valid[1, 1]
    assert frame.grid.shape == (480, 480) and frame.time.minute == 0
    assert (frame.to_pixels()[0] == px).all()  # the store's pixels are the PNG's
