"""Input-window access (pipeline.window): slots, the newest observed frame, re-exports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.schema import resampled_dataset, store_dataset
from pipeline.window import (
    DEFAULT_CADENCE,
    newest_observed_time,
    observations_dataset,
    store_cadence,
    window_slots,
)

T0 = pd.Timestamp("2015-06-01 12:00")


def test_window_slots_end_at_the_issue_time():
    slots = window_slots(T0, 3, 6.0)
    assert slots.tolist() == [T0 - pd.Timedelta("12min"), T0 - pd.Timedelta("6min"), T0]
    assert window_slots(T0, 2, pd.Timedelta("5min"))[0] == T0 - pd.Timedelta("5min")


def test_window_slots_refuse_an_empty_window():
    with pytest.raises(ValueError, match="a window needs n >= 1 slots, got 0"):
        window_slots(T0, 0)


def test_newest_observed_time_skips_unobserved_slots():
    times = pd.date_range(T0, periods=4, freq="6min")
    ds = resampled_dataset(times, np.zeros((4, 4, 4)), observed=[True, True, False, False])
    assert newest_observed_time(ds) == T0 + pd.Timedelta("6min")


def test_newest_observed_time_of_a_store_is_its_last_frame():
    times = pd.DatetimeIndex([T0, T0 + pd.Timedelta("7min")])  # irregular: the store schema
    ds = store_dataset(times, np.zeros((2, 4, 4)), np.ones((2, 4, 4), bool))
    assert newest_observed_time(ds) == T0 + pd.Timedelta("7min")


def test_newest_observed_time_refuses_an_empty_store():
    ds = store_dataset(pd.DatetimeIndex([]), np.zeros((0, 4, 4)), np.zeros((0, 4, 4), bool))
    with pytest.raises(ValueError, match="holds no frame yet: no issue time"):
        newest_observed_time(ds)


def test_newest_observed_time_refuses_a_store_with_nothing_observed():
    times = pd.date_range(T0, periods=2, freq="6min")
    ds = resampled_dataset(times, np.zeros((2, 4, 4)), observed=[False, False])
    with pytest.raises(ValueError, match="has no observed frame: no issue time"):
        newest_observed_time(ds)


def test_observations_are_in_the_resampled_schema_on_the_coarse_grid():
    times = pd.date_range(T0, periods=3, freq="6min")
    dbz = np.full((3, 12, 12), -10.0, np.float32)
    dbz[:, :3, :3] = 30.0  # one coarse pixel (factor 3) at 30 dBZ
    ds = resampled_dataset(times, dbz, observed=[True, False, True])
    obs = observations_dataset(ds, [times[1], times[2], T0 + pd.Timedelta("30min")], size=4)
    assert obs.sizes == {"time": 3, "y": 4, "x": 4}
    assert obs["observed"].values.tolist() == [False, True, False]
    assert obs["reflectivity"].values[1, 0, 0] == pytest.approx(30.0, abs=1e-4)
    assert obs["reflectivity"].values[1, 0, 1] == pytest.approx(-10.0, abs=1e-4)
    assert np.isnan(obs["reflectivity"].values[[0, 2]]).all()
    assert obs["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"


def test_nowcast_forecast_re_exports_the_same_functions():
    import nowcast.forecast as nf
    import pipeline.window as pw

    assert nf.load_window is pw.load_window and nf.observations_dataset is pw.observations_dataset
    assert nf.check_window is pw.check_window and nf.InputWindow is pw.InputWindow


def _frames(times):
    n = len(times)
    return store_dataset(times, np.zeros((n, 4, 4)), np.ones((n, 4, 4), bool))


def test_store_cadence_is_read_from_the_frame_times():
    # 5-minute frames with one missing and one 1 minute late: the most frequent spacing
    minutes = [0, 5, 10, 20, 26, 30, 35]
    times = pd.Timestamp("2010-08-26 07:00") + pd.to_timedelta(minutes, unit="min")
    assert store_cadence(_frames(times)) == pd.Timedelta("5min")
    hko = pd.date_range(T0, periods=5, freq="6min")
    assert store_cadence(_frames(hko)) == pd.Timedelta("6min")


def test_store_cadence_prefers_the_stores_own_attributes():
    times = pd.date_range(T0, periods=3, freq="10min")  # every other 5-minute file
    ds = _frames(times)
    ds.attrs["nominal_cadence_minutes"] = 5.0  # written by the ingest from its source
    assert store_cadence(ds) == pd.Timedelta("5min")
    slots = pd.date_range(T0, periods=4, freq="5min")
    res = resampled_dataset(slots, np.zeros((4, 4, 4)), cadence_minutes=5.0)
    assert store_cadence(res) == pd.Timedelta("5min")


def test_store_cadence_of_a_single_frame_is_the_default():
    assert store_cadence(_frames(pd.DatetimeIndex([T0]))) == DEFAULT_CADENCE == pd.Timedelta("6min")
