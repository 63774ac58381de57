"""Forecast archive (products.archive): keyed by issue time, survives a killed write."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from products.archive import append_forecast_zarr, open_forecast_zarr
from tests.products.conftest import build_forecast

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- Zarr archive


def test_zarr_append_is_keyed_by_issue_time(tmp_path):
    store = tmp_path / "fc.zarr"
    first = build_forecast("2026-06-01T12:00", model="trajgru")
    second = build_forecast("2026-06-01T12:06", model="convgru")
    assert append_forecast_zarr(first, store) == 0
    assert append_forecast_zarr(second, store) == 1
    again = first.copy(deep=True)
    again["rainfall_rate"][:] = 7.0
    assert append_forecast_zarr(again, store) == 0

    ds = open_forecast_zarr(store).load()
    assert pd.DatetimeIndex(ds["issue_time"].values).tolist() == [
        pd.Timestamp("2026-06-01 12:00"),
        pd.Timestamp("2026-06-01 12:06"),
    ]
    assert ds.sizes == {"issue_time": 2, "lead_time": 6, "y": 80, "x": 80}
    assert [str(m) for m in ds["model"].values] == ["trajgru", "convgru"]
    np.testing.assert_array_equal(ds["rainfall_rate"].isel(issue_time=0).values, 7.0)
    np.testing.assert_array_equal(
        ds["rainfall_rate"].isel(issue_time=1).values, second["rainfall_rate"].values
    )
    assert pd.Timestamp(ds["valid_time"].values[1, 0]) == pd.Timestamp("2026-06-01 12:12")
    assert ds["lead_time"].values.tolist() == [6, 12, 18, 24, 30, 36]


def test_zarr_append_refuses_earlier_issue_time(tmp_path):
    store = tmp_path / "fc.zarr"
    append_forecast_zarr(build_forecast("2026-06-01T12:06"), store)
    earlier = build_forecast("2026-06-01T12:00")
    with pytest.raises(ValueError, match="earlier than the last one"):
        append_forecast_zarr(earlier, store)


def test_zarr_append_refuses_other_lead_times(tmp_path):
    store = tmp_path / "fc.zarr"
    append_forecast_zarr(build_forecast("2026-06-01T12:00"), store)
    other = build_forecast("2026-06-01T12:06", leads=(6, 12))
    with pytest.raises(ValueError, match="lead_time"):
        append_forecast_zarr(other, store)


_KILLED_PUBLISH = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import icechunk
from products.archive import append_forecast_zarr
from tests.products.conftest import build_forecast

def die(*args, **kwargs):  # inside the archive write: every chunk written, nothing committed
    os.kill(os.getpid(), signal.SIGKILL)

icechunk.Session.commit = die
append_forecast_zarr(build_forecast("2026-06-01T12:06", model="convgru"), sys.argv[1])
"""


def test_a_publish_killed_inside_its_archive_write_leaves_the_archive_usable(tmp_path):
    store = tmp_path / "forecasts.zarr"
    first = build_forecast("2026-06-01T12:00", model="trajgru")
    append_forecast_zarr(first, store)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_PUBLISH, str(store), str(REPO)], timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    ds = open_forecast_zarr(store).load()  # the last commit: one forecast, whole
    assert ds.sizes == {"issue_time": 1, "lead_time": 6, "y": 80, "x": 80}
    assert ds["model"].values.tolist() == ["trajgru"]
    np.testing.assert_array_equal(
        ds["rainfall_rate"].isel(issue_time=0).values, first["rainfall_rate"].values
    )
    # the next publishes go through (before Icechunk: "conflicting sizes for dimension")
    second = build_forecast("2026-06-01T12:06", model="convgru")
    assert append_forecast_zarr(second, store) == 1
    assert append_forecast_zarr(build_forecast("2026-06-01T12:12"), store) == 2
    ds = open_forecast_zarr(store).load()
    assert ds.sizes["issue_time"] == 2 + 1
    assert ds["valid_time"].shape == (3, 6)
    np.testing.assert_array_equal(
        ds["rainfall_rate"].isel(issue_time=1).values, second["rainfall_rate"].values
    )
    from pipeline.store import store_log

    messages = [m for _, _, m in store_log(store)]
    assert messages[0] == "publish: forecast issued 2026-06-01 12:12 by " + str(
        build_forecast("2026-06-01T12:12").attrs.get("model", "unknown")
    )
    assert messages[1] == "publish: forecast issued 2026-06-01 12:06 by convgru"
    assert len(messages) == 4  # three publishes and "Repository initialized"
