"""Forecast archive (products.archive): keyed by issue time, survives a killed write."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from products.archive import (
    ArchiveMismatchError,
    append_forecast_zarr,
    check_forecast_archive,
    open_forecast_zarr,
)
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
    with pytest.raises(ArchiveMismatchError, match="only in the archive: 18, 24, 30, 36;"):
        append_forecast_zarr(other, store)


def test_other_leads_are_named_in_full_with_their_difference_and_what_to_do(tmp_path):
    """Lists that agree where a cut would have stopped them (issue 24, 4): the difference."""
    store = tmp_path / "fc.zarr"
    append_forecast_zarr(build_forecast("2026-06-01T12:00", leads=tuple(range(6, 61, 6))), store)
    longer = build_forecast("2026-06-01T12:06", leads=tuple(range(6, 121, 6)))
    with pytest.raises(ArchiveMismatchError) as info:
        check_forecast_archive(longer, store)
    assert str(info.value) == (
        f"cannot publish the forecast issued 2026-06-01 12:06 into the forecast archive {store}: "
        "the forecast has 20 lead times (6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66, 72, 78, "
        "84, 90, 96, 102, 108, 114, 120 min), the archive 10 (6, 12, 18, 24, 30, 36, 42, 48, "
        "54, 60 min); only in the forecast: 66, 72, 78, 84, 90, 96, 102, 108, 114, 120; "
        "make the forecast with the archive's lead times (nowcast forecast ... --leads "
        "6,12,18,24,30,36,42,48,54,60), or publish into another archive (nowcast publish ... "
        "--archive OTHER.zarr; nowcast serve / flow forecast --archive) or another site"
    )
    five = build_forecast("2026-06-01T12:06", leads=tuple(range(5, 61, 5)))
    with pytest.raises(
        ArchiveMismatchError,
        match=r"only in the forecast: 5, 10, 15, 20, 25, 35, 40, 45, 50, 55; "
        r"only in the archive: 6, 12, 18, 24, 36, 42, 48, 54; make the forecast",
    ):
        check_forecast_archive(five, store)


def test_archive_check_names_other_grids_and_takes_a_matching_forecast(tmp_path):
    store = tmp_path / "fc.zarr"
    check_forecast_archive(build_forecast(), store)  # no archive yet: anything goes
    check_forecast_archive(build_forecast(), None)
    append_forecast_zarr(build_forecast("2026-06-01T12:00"), store)
    check_forecast_archive(build_forecast("2026-06-01T12:06"), store)
    check_forecast_archive(build_forecast("2026-06-01T12:00"), store)  # a republish
    with pytest.raises(ArchiveMismatchError, match="a 40 x 40 grid .* on 80 x 80 "):
        check_forecast_archive(build_forecast("2026-06-01T12:06", size=40), store)


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
