"""The forecast cycle without Prefect (products.cycle): store clock, skips, failures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

T0 = pd.Timestamp("2015-06-01 12:00")
CAD = pd.Timedelta("6min")


def _small_store(path, n=8, missing=()):
    """A resampled-schema 40 x 40 store of a moving square, every 6 min from T0."""
    from pipeline.schema import resampled_dataset

    times = pd.date_range(T0, periods=n, freq=CAD)
    obs = np.array([t not in missing for t in times])
    refl = np.full((n, 40, 40), -10.0, np.float32)
    for k in range(n):
        refl[k, 10:20, 5 + 2 * k : 15 + 2 * k] = 40.0
    ds = resampled_dataset(times, refl, observed=obs)
    ds.to_zarr(path, mode="w", consolidated=False)
    return path


def test_cycle_without_prefect_store_clock_and_failures(tmp_path):
    from products.cycle import ForecastSettings, forecast_cycle

    store = _small_store(tmp_path / "s.zarr")
    site = tmp_path / "site"
    common = dict(lead_minutes=(6, 12), n_obs_frames=1, coastline_resolution="110m")
    s = ForecastSettings(str(store), str(site), baseline="persistence", **common)
    first = forecast_cycle(s)  # store clock: issue at the newest frame, 12:42
    assert (first.status, first.issue_time) == ("ok", "2015-06-01T12:42:00Z")
    again = forecast_cycle(s)  # no new frame since: skipped, nothing recorded as failed
    assert again.status == "skipped"
    assert again.reason == "no new frame since the run issued at 2015-06-01T12:42:00Z"
    status = json.loads((site / "status.json").read_text())["runs"]
    assert [r["status"] for r in status] == ["ok"]

    broken = ForecastSettings(str(store), str(site), run=str(tmp_path / "no-run"), **common)
    with pytest.raises(ValueError, match="no checkpoint 'best.pt'"):
        forecast_cycle(broken, now="2015-06-01 12:36")
    status = json.loads((site / "status.json").read_text())["runs"]
    failed = next(r for r in status if r["issue_time"] == "2015-06-01T12:36:00Z")
    assert failed["status"] == "failed"
    assert "no checkpoint 'best.pt'" in failed["reason"]


def test_settings_validation():
    from products.cycle import ForecastSettings

    with pytest.raises(ValueError, match="exactly one of run"):
        ForecastSettings("s.zarr", "site")
    with pytest.raises(ValueError, match="unknown clock 'moon'; valid clocks: store, wall"):
        ForecastSettings("s.zarr", "site", baseline="pysteps", clock="moon")
