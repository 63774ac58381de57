"""Rain accumulations as products: CF variables, maps, dashboard layers, archive, verification."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from products.accumulation import (
    AMOUNT_STANDARD_NAME,
    accumulation_variables,
    add_accumulations,
    observed_accumulation,
)
from products.archive import append_forecast_zarr, open_forecast_zarr
from products.cf import check_cf, open_forecast_netcdf, to_cf, write_forecast_netcdf
from tests.products.conftest import build_forecast, build_observations

ISSUE = "2026-06-01T12:00"
LEADS = tuple(range(6, 121, 6))


def _forecast(leads=LEADS, issue=ISSUE):
    """build_forecast's storm with the motion of a Lagrangian forecast (what pysteps gives)."""
    from pipeline.schema import forecast_dataset

    fc = build_forecast(issue, leads=leads)
    v = np.zeros((2, 80, 80), np.float32)
    v[0] = 1.0  # 64 km/h east = one 6.4-km pixel per 6-min step
    motion = xr.Variable(
        ("component", "y", "x"),
        v,
        {"units": "pixel per cadence step", "cadence_minutes": 6.0, "grid_mapping": "crs"},
    )
    grid = {k: fc[k].variable for k in ("y", "x", "lat", "lon", "crs")}
    return forecast_dataset(
        issue, np.asarray(leads), fc["reflectivity"].values, fc["rainfall_rate"].values,
        grid=grid, motion=motion, model="trajgru", source="synthetic test forecast",
    )  # fmt: skip


@pytest.fixture(scope="module")
def truth():
    """Observations of the same storm from 11:00 to 14:00 (the forecast comes true)."""
    from pipeline import geo
    from pipeline.schema import resampled_dataset
    from tests.products.conftest import _blob_dbz

    g = geo.grid_coords(80)
    times = pd.date_range("2026-06-01T11:00", "2026-06-01T14:00", freq="6min")
    minutes = (times - pd.Timestamp(ISSUE)) / pd.Timedelta("1min")
    refl = np.stack([_blob_dbz(80, g.x, g.y, 64.0 * m / 60.0) for m in minutes])
    mask = np.ones(refl.shape, dtype=bool)
    mask[:, :, :10] = False
    return resampled_dataset(times, refl, mask, cadence_minutes=6.0)


@pytest.fixture(scope="module")
def product(truth):
    return add_accumulations(_forecast(), truth)


def test_variables_windows_and_cf_attributes(product):
    names = accumulation_variables(product)
    assert names == [
        "precipitation_amount_last_60min",
        "precipitation_amount_next_60min",
        "precipitation_amount_next_120min",
    ]
    for name in names:
        a = product[name].attrs
        assert (a["standard_name"], a["units"], a["cell_methods"]) == (
            AMOUNT_STANDARD_NAME,
            "mm",
            "time: sum",
        )
        assert product[name].dims == ("y", "x")
    nxt = product["precipitation_amount_next_60min"].attrs
    assert (nxt["window_start"], nxt["window_end"]) == (
        "2026-06-01T12:00:00Z",
        "2026-06-01T13:00:00Z",
    )
    last = product["precipitation_amount_last_60min"].attrs
    assert (last["window_start"], last["window_end"]) == (
        "2026-06-01T11:00:00Z",
        "2026-06-01T12:00:00Z",
    )
    short = add_accumulations(_forecast(leads=(6, 12, 18)), None)
    assert accumulation_variables(short) == []
    assert short.attrs["accumulations_skipped"] == (
        "next 60 min (leads end at 18 min); next 120 min (leads end at 18 min)"
    )


def test_forecast_and_observed_amounts_agree_for_a_perfect_forecast(product, truth):
    from products.verify import verify_accumulations

    fc = product["precipitation_amount_next_60min"].values
    obs, _ = observed_accumulation(truth, pd.Timestamp("2026-06-01T13:00"), 80, 60)
    valid = np.isfinite(obs.values) & np.isfinite(fc)
    assert np.isnan(fc[:, :10]).all()  # the issue frame's masked columns: no amount there
    assert fc[valid].max() > 10.0  # a real storm: tens of mm in an hour
    # same storm, same advection correction (the observed one with estimated motion); the
    # forecast's rates keep the no-echo drizzle of -10 dBZ (0.016 mm/h), the observed are 0
    assert np.abs(obs.values[valid & (fc < 0.05)]).max() < 0.05
    wet = valid & (fc >= 0.05)
    np.testing.assert_allclose(fc[wet].sum(), obs.values[wet].sum(), rtol=0.01)
    scores = verify_accumulations(product, truth)
    assert set(scores) == {
        "precipitation_amount_next_60min",
        "precipitation_amount_next_120min",
    }
    csi = scores["precipitation_amount_next_60min"]["csi"]
    assert scores["precipitation_amount_next_60min"]["thresholds_mm"] == [1.0, 5.0, 10.0, 20.0]
    assert min(csi[:3]) > 0.9


def test_netcdf_is_cf_and_reopens_identically(product, tmp_path):
    path = write_forecast_netcdf(product, tmp_path / "f.nc")
    assert check_cf(path) == []
    back = open_forecast_netcdf(path)
    for name in accumulation_variables(product):
        xr.testing.assert_identical(back[name], to_cf(product)[name])


def test_maps_and_dashboard_layers(product, tmp_path):
    from products.site import publish_run

    product = product.copy()
    product.attrs["interpolated_inputs"] = "2026-06-01T11:54"
    publish_run(
        product,
        build_observations(ISSUE, n=2),
        tmp_path,
        n_obs_frames=2,
        coastline_resolution="110m",
        map_size_px=(320, 300),
    )
    run = tmp_path / "runs" / "20260601T1200Z"
    manifest = json.loads((run / "run.json").read_text())
    layers = manifest["accumulations"]
    assert [(la["id"], la["label"]) for la in layers] == [
        ("precipitation_amount_last_60min", "Rain last 60 min (mm)"),
        ("precipitation_amount_next_60min", "Rain next 60 min (mm)"),
        ("precipitation_amount_next_120min", "Rain next 120 min (mm)"),
    ]
    assert [la["frames"][0]["lead_time"] for la in layers] == [0, 60, 120]
    for la in layers:
        assert (run / la["frames"][0]["image"]).is_file()
    assert "maps/acc_next_60min.png" in (tmp_path / "data.js").read_text()
    assert "layers" not in manifest  # a deterministic run keeps its rate frames as they were
    assert manifest["interpolated_inputs"] == "2026-06-01T11:54"  # issued from a filled gap


def test_archive_keeps_the_accumulations_it_started_with(product, tmp_path):
    store = tmp_path / "fz.zarr"
    append_forecast_zarr(product, store)
    later = add_accumulations(_forecast(issue="2026-06-01T12:06"), None)
    later = later.drop_vars("precipitation_amount_next_120min")
    append_forecast_zarr(later, store)
    with open_forecast_zarr(store) as fz:
        assert fz["precipitation_amount_next_60min"].dims == ("issue_time", "y", "x")
        assert "precipitation_amount_last_60min" in fz
        assert np.isnan(fz["precipitation_amount_next_120min"].values[1]).all()
        np.testing.assert_allclose(
            fz["precipitation_amount_next_60min"].values[0],
            product["precipitation_amount_next_60min"].values,
        )


def test_forecast_cycle_publishes_accumulation_maps(tmp_path):
    """What `make demo` runs per issue time: the cycle's run has rain-amount maps and layers."""
    from products.cycle import ForecastSettings, forecast_cycle
    from tests.products.test_cycle import _small_store

    store = _small_store(tmp_path / "s.zarr", n=11)
    site = tmp_path / "site"
    leads = tuple(range(6, 61, 6))
    s = ForecastSettings(
        str(store), str(site), baseline="persistence", lead_minutes=leads, n_obs_frames=1,
        coastline_resolution="110m",
    )  # fmt: skip
    assert forecast_cycle(s).status == "ok"
    run = site / "runs" / "20150601T1300Z"
    assert sorted(p.name for p in (run / "maps").glob("acc_*")) == [
        "acc_last_60min.png",
        "acc_next_60min.png",
    ]
    manifest = json.loads((run / "run.json").read_text())
    assert [la["id"] for la in manifest["accumulations"]] == [
        "precipitation_amount_last_60min",
        "precipitation_amount_next_60min",
    ]
    with xr.open_dataset(run / "forecast.nc") as ds:
        assert ds["precipitation_amount_next_60min"].attrs["cell_methods"] == "time: sum"


def test_rolling_accumulation_csi_is_the_mean_of_the_verified_forecasts():
    from products.verify import rolling_accumulations

    def entry(csi):
        return {
            "accumulations": {
                "precipitation_amount_next_60min": {
                    "window_minutes": 60,
                    "thresholds_mm": [1.0, 5.0, 10.0, 20.0],
                    "csi": csi,
                }
            }
        }

    roll = rolling_accumulations([entry([0.5, 0.4, None, None]), entry([0.7, None, 0.2, None])])
    assert roll == {
        "rolling_accumulations": {
            "precipitation_amount_next_60min": {
                "n_forecasts": 2,
                "thresholds_mm": [1.0, 5.0, 10.0, 20.0],
                "csi_mean": [0.6, 0.4, 0.2, None],
            }
        }
    }
    assert rolling_accumulations([{"csi": [[0.1]]}]) == {}
