"""Verification (products.verify): hand-computed CSI, masks, rolling scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from products.archive import append_forecast_zarr, open_forecast_zarr
from products.site import record_scores
from products.verify import VerificationScores, verify_forecast
from tests.products.conftest import build_forecast, build_observations

# --------------------------------------------------------------------------- verification


def _rect_forecast_and_obs() -> tuple[xr.Dataset, xr.Dataset]:
    """Forecast 10 mm/h on rows 0-9, cols 20-29; observed 10 mm/h on cols 25-34."""
    fc = build_forecast("2026-06-01T12:00", leads=(6, 12))
    rate = np.zeros((2, 80, 80), np.float32)
    rate[:, 0:10, 20:30] = 10.0
    fc["rainfall_rate"][:] = rate
    obs = build_observations("2026-06-01T12:06", n=1)  # only lead 6 has an observation
    rain = np.full((1, 80, 80), -10.0, np.float32)
    rain[:, 0:10, 25:35] = 45.0  # dBZ -> 54 mm/h
    obs["reflectivity"][:] = rain
    obs["mask"][:] = True
    return fc, obs


def test_verify_forecast_hand_computed_csi():
    fc, obs = _rect_forecast_and_obs()
    scores = verify_forecast(fc, obs, thresholds_mmh=(0.5, 5.0, 30.0))
    # hits 50, misses 50, false alarms 50 at 0.5 and 5 mm/h; at 30 mm/h the forecast
    # has no rain: hits 0, misses 100 -> 0; lead 12 has no observation -> NaN.
    np.testing.assert_allclose(scores.csi[:, 0], [1 / 3, 1 / 3, 0.0])
    assert np.isnan(scores.csi[:, 1]).all()
    assert scores.lead_time == (6, 12)


def test_verify_forecast_of_an_archived_forecast(tmp_path):
    """Forecasts read back from the Zarr archive (one issue time) verify the same."""
    fc, obs = _rect_forecast_and_obs()
    append_forecast_zarr(fc, tmp_path / "fc.zarr")
    archived = open_forecast_zarr(tmp_path / "fc.zarr").isel(issue_time=0).load()
    scores = verify_forecast(archived, obs, thresholds_mmh=(0.5, 5.0, 30.0))
    np.testing.assert_allclose(scores.csi[:, 0], [1 / 3, 1 / 3, 0.0])
    assert scores.issue_time == pd.Timestamp("2026-06-01T12:00")


def test_verify_forecast_ignores_masked_pixels():
    fc, obs = _rect_forecast_and_obs()
    obs["mask"][:, :, 30:35] = False  # the 50 missed pixels are not valid
    scores = verify_forecast(fc, obs, thresholds_mmh=(5.0,))
    assert scores.csi[0, 0] == pytest.approx(0.5)  # hits 50, false alarms 50


def test_verify_forecast_skips_nan_forecast_pixels_and_undefined_csi():
    fc, obs = _rect_forecast_and_obs()
    fc["rainfall_rate"][:, 0:10, 20:25] = np.nan  # the 50 false alarms are not forecast
    scores = verify_forecast(fc, obs, thresholds_mmh=(5.0, 100.0))
    assert scores.csi[0, 0] == pytest.approx(0.5)  # hits 50, misses 50, false alarms 0
    assert np.isnan(scores.csi[1, 0])  # no rain >= 100 mm/h forecast nor observed


def test_record_scores_rolling_mean(tmp_path):
    site = tmp_path / "site"
    csi_a = np.array([[0.5, np.nan], [0.2, 0.1]])
    csi_b = np.array([[0.3, 0.4], [np.nan, 0.3]])
    for t, csi in (("2026-06-01T12:00", csi_a), ("2026-06-01T12:06", csi_b)):
        record_scores(
            site,
            VerificationScores(pd.Timestamp(t), (6, 12), (0.5, 5.0), csi),
        )
    doc = json.loads((site / "scores.json").read_text())
    assert [e["issue_time"] for e in doc["entries"]] == [
        "2026-06-01T12:00:00Z",
        "2026-06-01T12:06:00Z",
    ]
    assert doc["entries"][0]["csi"] == [[0.5, None], [0.2, 0.1]]
    assert doc["rolling"]["n_forecasts"] == 2
    assert doc["rolling"]["csi_mean"] == [[0.4, 0.4], [0.2, 0.2]]
    assert (site / "scores.png").stat().st_size > 0
