"""The dataset constructors and validators of pipeline.schema (docs/contracts.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import geo
from pipeline.schema import (
    coarse_coords,
    forecast_dataset,
    grid_coordinates,
    resampled_dataset,
    resampled_encoding,
    store_dataset,
    validate_forecast,
    validate_resampled,
    validate_store,
)
from pipeline.store import open_store
from pipeline.units import pixel_to_dbz

T0 = pd.Timestamp("2015-06-01 12:00")
TIMES = pd.date_range(T0, periods=4, freq="6min")


def _pixels(n: int = 4, size: int = 12) -> np.ndarray:
    return (np.arange(n * size * size).reshape(n, size, size) * 7) % 256


def _resampled() -> xr.Dataset:
    return resampled_dataset(TIMES, pixel_to_dbz(_pixels()), observed=[True, False, True, True])


def test_store_dataset_saves_and_reopens_identically(tmp_path):
    ds = store_dataset(TIMES, pixel_to_dbz(_pixels()), _pixels() > 100)
    validate_store(ds, size=12)
    ds.to_zarr(tmp_path / "s.zarr", consolidated=False)
    back = open_store(tmp_path / "s.zarr").load()
    xr.testing.assert_identical(back, ds)
    assert back["reflectivity"].dtype == np.float32
    assert back["reflectivity"].values[0, 0, 1] == np.float32(7 / 255 * 70 - 10)


def test_resampled_dataset_saves_and_reopens_identically(tmp_path):
    ds = _resampled()
    validate_resampled(ds, size=12)
    ds.to_zarr(tmp_path / "r.zarr", consolidated=False, encoding=resampled_encoding(ds))
    xr.testing.assert_identical(open_store(tmp_path / "r.zarr").load(), ds)


def test_resampled_dataset_blanks_unobserved_slots():
    ds = _resampled()
    assert np.isnan(ds["reflectivity"].values[1]).all()
    assert not ds["mask"].values[1].any() and ds["mask"].values[[0, 2, 3]].all()
    assert ds["reflectivity"].values[0, 0, 0] == np.float32(-10.0)
    assert ds.attrs == {"cadence_minutes": 6.0}


def test_forecast_dataset_valid_times_are_issue_plus_leads():
    refl = np.full((2, 8, 8), 20.0, np.float32)
    ds = forecast_dataset(T0, [6, 12], refl, np.ones_like(refl), model="test")
    validate_forecast(ds)
    assert ds["valid_time"].values.tolist() == [
        pd.Timestamp("2015-06-01 12:06").value,
        pd.Timestamp("2015-06-01 12:12").value,
    ]
    assert ds["lead_time"].dtype == np.int64 and ds.attrs["title"] == "Radar nowcast by test"


def test_forecast_dataset_with_motion_has_the_component_coordinate():
    refl = np.zeros((1, 8, 8), np.float32)
    ds = forecast_dataset(T0, [6], refl, refl, motion=np.ones((2, 8, 8)))
    assert ds["motion"].dims == ("component", "y", "x")
    assert ds["component"].values.tolist() == ["x", "y"]


def test_grid_coordinates_are_the_radar_grid():
    g, c = geo.grid_coords(6), grid_coordinates(6)
    np.testing.assert_array_equal(c["y"].values, g.y)
    np.testing.assert_array_equal(c["lon"].values, g.lon)
    assert c["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"


def test_coarse_coords_are_means_of_the_fine_centres():
    fine = store_dataset(TIMES[:1], np.zeros((1, 12, 12)), np.ones((1, 12, 12), bool))
    coarse = coarse_coords(fine, 4)
    np.testing.assert_allclose(coarse["x"].values, fine["x"].values.reshape(4, 3).mean(axis=1))
    np.testing.assert_allclose(coarse["lat"].values, geo.grid_coords(4).lat)
    assert coarse["x"].attrs == fine["x"].attrs
    assert coarse_coords(fine, 12)["y"] is fine["y"].variable


def test_coarse_coords_refuses_a_size_that_does_not_divide():
    fine = store_dataset(TIMES[:1], np.zeros((1, 12, 12)), np.ones((1, 12, 12), bool))
    with pytest.raises(
        ValueError,
        match=r"size 5 does not divide the source grid size 12; valid sizes: \[1, 2, 3, 4, 6, 12\]",
    ):
        coarse_coords(fine, 5)


def test_coarse_coords_refuses_a_grid_off_the_radar():
    fine = store_dataset(TIMES[:1], np.zeros((1, 12, 12)), np.ones((1, 12, 12), bool))
    with pytest.raises(ValueError, match="not the radar-centred grid"):
        coarse_coords(fine.assign_coords(x=fine["x"] + 5.0), 4)


def test_constructor_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"reflectivity \(4, 12, 12\), observed \(3,\) and 4"):
        resampled_dataset(TIMES, pixel_to_dbz(_pixels()), observed=[True] * 3)


def test_validate_resampled_refuses_irregular_slots():
    ds = _resampled().isel(time=[0, 1, 3])
    with pytest.raises(ValueError, match="time is not a regular grid"):
        validate_resampled(ds)


def test_validate_resampled_refuses_a_wrong_cadence():
    ds = _resampled().assign_attrs(cadence_minutes=5.0)
    with pytest.raises(ValueError, match="slots are 6 min apart but cadence_minutes is 5.0"):
        validate_resampled(ds)


def test_validate_resampled_needs_observed():
    with pytest.raises(ValueError, match="missing variable 'observed'"):
        validate_resampled(_resampled().drop_vars("observed"))


def test_validate_resampled_refuses_float64_reflectivity():
    ds = _resampled()
    ds["reflectivity"] = ds["reflectivity"].astype(np.float64)
    with pytest.raises(ValueError, match="reflectivity decodes to float64, expected float32"):
        validate_resampled(ds)


def test_validate_resampled_refuses_y_increasing():
    ds = _resampled().isel(y=slice(None, None, -1))
    with pytest.raises(ValueError, match="y must decrease with the row index"):
        validate_resampled(ds)


def test_validate_forecast_lists_what_is_missing():
    ds = forecast_dataset(T0, [6], np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match=r"lacks \['rainfall_rate', 'crs'\]"):
        validate_forecast(ds.drop_vars(["rainfall_rate", "crs"]))


def test_validate_forecast_refuses_float_lead_times():
    ds = forecast_dataset(T0, [6], np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))
    ds = ds.assign_coords(lead_time=ds["lead_time"].astype(float))
    with pytest.raises(ValueError, match="lead_time has dtype float64; expected integer minutes"):
        validate_forecast(ds)
