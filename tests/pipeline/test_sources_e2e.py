"""End to end on a non-HKO-7 source: ODIM files -> ingest -> resample -> forecast -> map."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import geo
from pipeline.grid_fit import fit_plan
from tests.pipeline import radar_formats as rf

TIMES = pd.date_range("2023-06-01 12:00", periods=6, freq="6min")


@pytest.mark.slow
def test_odim_archive_to_forecast_map(tmp_path):
    from flows.cli import app

    root = tmp_path / "odim"
    for k, t in enumerate(TIMES):
        raw = np.zeros((20, 30), np.uint8)
        raw[:2] = 255
        raw[8:12, 4 + k : 10 + k] = 150  # 43 dBZ, one pixel east per frame
        rf.write_odim(root / f"c{k}.h5", raw, t.strftime("%Y%m%d%H%M%S"))
    store, res = tmp_path / "radar.zarr", tmp_path / "res.zarr"
    out = CliRunner().invoke(
        app, ["ingest", str(root), str(store), "--source", "odim", "--no-progress"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["frames_written"] == 6

    from pipeline.resample import resample_store
    from pipeline.store import open_store

    resample_store(store, res, size=10, progress=False)
    rs = open_store(res)
    assert fit_plan(20, 30, 10).pad == (5, 5, 0, 0)  # 20 x 30 padded to 30 x 30, 3 x 3 blocks
    assert rs.sizes["y"] == rs.sizes["x"] == 10
    assert not rs["mask"].values[:, :2].any()  # padding rows (5 of each block of 6) invalid
    assert rs["crs"].attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"

    from nowcast.forecast import baseline_predictor, make_forecast

    fc = make_forecast(baseline_predictor("persistence", in_frames=5), res, TIMES[-1], [6, 12])
    path = tmp_path / "forecast.nc"
    fc.to_netcdf(path)
    import xarray as xr

    back = xr.open_dataset(path, decode_coords="all")
    assert back["crs"].attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    projection, extent = geo.map_projection(back)
    # the source's 1000..1060 km x -1040..-1000 km, padded by 10 km north and south
    assert extent == pytest.approx((1000e3, 1060e3, -1050e3, -990e3), abs=1.0)
    import pyproj

    want = pyproj.CRS.from_proj4(rf.ODIM_PROJ)
    assert pyproj.CRS(projection.proj4_init).equals(want, ignore_axis_order=True)

    from products.maps import MapGrid, MapRenderer

    grid = MapGrid.from_dataset(back)
    assert grid.extent_m() == pytest.approx(extent, abs=1.0)
    png = MapRenderer(grid, coastlines=True, resolution="110m").render(
        np.asarray(back["rain_rate"][0]) if "rain_rate" in back else np.zeros((10, 10)),
        tmp_path / "map.png",
    )
    assert png.stat().st_size > 0


@pytest.mark.slow
def test_odim_store_forecast_on_its_own_grid_is_published_with_its_area(tmp_path):
    """A non-square source grid is forecast and published as it is (no resample)."""
    from flows.cli import app

    root = tmp_path / "odim"
    for k, t in enumerate(TIMES):
        raw = np.zeros((20, 30), np.uint8)
        raw[:2] = 255
        raw[8:12, 4 + k : 10 + k] = 150  # 43 dBZ, one pixel east per frame
        rf.write_odim(root / f"c{k}.h5", raw, t.strftime("%Y%m%d%H%M%S"))
    store, site, nc = tmp_path / "radar.zarr", tmp_path / "site", tmp_path / "fc.nc"
    runner = CliRunner()
    for args in (
        ["ingest", str(root), str(store), "--source", "odim", "--no-progress"],
        ["forecast", "--store", str(store), "--baseline", "persistence", "--out", str(nc)],
        ["publish", str(nc), "--store", str(store), "--site", str(site)],
    ):
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output
    import xarray as xr

    fc = xr.open_dataset(nc, decode_coords="all")
    assert (fc.sizes["y"], fc.sizes["x"]) == (20, 30)
    lead0 = fc["reflectivity"].isel(lead_time=0).values
    assert lead0[9, 10] == pytest.approx(43.0, abs=0.3)  # persistence of the last frame
    assert np.isnan(lead0[9, 3]) or lead0[9, 3] < 0  # west of the cell: no echo
    _, extent = geo.map_projection(fc)
    assert extent == pytest.approx((1000e3, 1060e3, -1040e3, -1000e3), abs=1.0)  # the source's
    run = next((site / "runs").iterdir())
    assert len(list((run / "maps").glob("fc_*.png"))) == fc.sizes["lead_time"]
