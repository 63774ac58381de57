"""CF NetCDF product (products.cf): round trip, CF attributes, the offline checker."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from products.cf import check_cf, open_forecast_netcdf, to_cf, write_forecast_netcdf

# --------------------------------------------------------------------------- NetCDF / CF


def test_netcdf_roundtrip_is_identical_and_cf_clean(tmp_path, forecast_ds):
    rate_attrs = dict(forecast_ds["rainfall_rate"].attrs)
    path = write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
    reopened = open_forecast_netcdf(path)
    xr.testing.assert_identical(reopened, to_cf(forecast_ds))
    np.testing.assert_array_equal(
        reopened["rainfall_rate"].values, forecast_ds["rainfall_rate"].values
    )
    assert reopened["lead_time"].values.tolist() == [6, 12, 18, 24, 30, 36]
    assert pd.Timestamp(reopened["valid_time"].values[-1]) == pd.Timestamp("2026-06-01 12:36")
    assert check_cf(path) == []
    assert forecast_ds["rainfall_rate"].attrs == rate_attrs  # input untouched


def test_netcdf_has_cf_attributes(tmp_path, forecast_ds):
    path = write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
    with netCDF4.Dataset(path) as nc:
        assert nc.Conventions == "CF-1.10"
        rr = nc.variables["rainfall_rate"]
        assert (rr.standard_name, rr.units) == ("rainfall_rate", "mm h-1")
        assert rr.grid_mapping == "crs"
        assert set(rr.coordinates.split()) == {"lat", "lon", "valid_time", "issue_time"}
        assert nc.variables["crs"].grid_mapping_name == "azimuthal_equidistant"
        assert nc.variables["issue_time"].standard_name == "forecast_reference_time"
        assert nc.variables["valid_time"].units.startswith("seconds since 1970-01-01")
        assert nc.variables["valid_time"].dtype == np.int64


def _break(path: Path, var: str, attr: str, value: str | None) -> None:
    with netCDF4.Dataset(path, "a") as nc:
        if value is None:
            nc.variables[var].delncattr(attr)
        else:
            nc.variables[var].setncattr(attr, value)


@pytest.mark.parametrize(
    ("var", "attr", "value", "expected"),
    [
        ("rainfall_rate", "units", None, "rainfall_rate: no units attribute"),
        ("x", "units", None, "x: no units attribute"),
        ("rainfall_rate", "units", "dBZ", "rainfall_rate: units 'dBZ' are not valid"),
        (
            "reflectivity",
            "standard_name",
            "radar_reflectivity",
            "standard_name 'radar_reflectivity'",
        ),
        ("lat", "units", "degrees", "lat: units 'degrees' are not valid"),
        ("valid_time", "units", "seconds after lunch", "valid_time: time units"),
        (
            "reflectivity",
            "grid_mapping",
            "projection",
            "grid_mapping 'projection' is not a variable",
        ),
        ("rainfall_rate", "coordinates", "height lat lon", "'height', which is not a variable"),
        ("reflectivity", "coordinates", "valid_time", "lists no latitude coordinate"),
        ("crs", "grid_mapping_name", "mercatorish", "grid_mapping_name 'mercatorish'"),
    ],
)
def test_check_cf_flags_broken_product(tmp_path, forecast_ds, var, attr, value, expected):
    path = write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
    _break(path, var, attr, value)
    problems = check_cf(path)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_check_cf_flags_missing_conventions(tmp_path, forecast_ds):
    path = write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
    with netCDF4.Dataset(path, "a") as nc:
        nc.delncattr("Conventions")
    assert check_cf(path) == ["global: Conventions is ''; expected 'CF-1.x'"]


def test_check_cf_rejects_non_netcdf(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file")
    with pytest.raises(ValueError, match="bad.nc"):
        check_cf(bad)


def test_to_cf_rejects_rain_rate_in_other_units(forecast_ds):
    forecast_ds["rainfall_rate"].attrs["units"] = "m s-1"
    with pytest.raises(ValueError, match="rainfall_rate.*'m s-1'"):
        to_cf(forecast_ds)


def test_schema_check_names_missing_variables(forecast_ds):
    with pytest.raises(ValueError, match=r"lacks \['rainfall_rate'\]"):
        to_cf(forecast_ds.drop_vars("rainfall_rate"))
