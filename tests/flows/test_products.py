"""Forecast products: CF NetCDF, Zarr archive, verification, atomic publishing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from flows import products
from flows.dashboard import make_server
from tests.flows.conftest import build_forecast, build_observations

REPO = Path(__file__).resolve().parents[2]
SMALL = {"map_size_px": (200, 180), "coastline_resolution": "110m", "n_obs_frames": 2}


# --------------------------------------------------------------------------- NetCDF / CF


def test_netcdf_roundtrip_is_identical_and_cf_clean(tmp_path, forecast_ds):
    rate_attrs = dict(forecast_ds["rainfall_rate"].attrs)
    path = products.write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
    reopened = products.open_forecast_netcdf(path)
    xr.testing.assert_identical(reopened, products.to_cf(forecast_ds))
    np.testing.assert_array_equal(
        reopened["rainfall_rate"].values, forecast_ds["rainfall_rate"].values
    )
    assert reopened["lead_time"].values.tolist() == [6, 12, 18, 24, 30, 36]
    assert pd.Timestamp(reopened["valid_time"].values[-1]) == pd.Timestamp("2026-06-01 12:36")
    assert products.check_cf(path) == []
    assert forecast_ds["rainfall_rate"].attrs == rate_attrs  # input untouched


def test_netcdf_has_cf_attributes(tmp_path, forecast_ds):
    path = products.write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
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
    path = products.write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
    _break(path, var, attr, value)
    problems = products.check_cf(path)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_check_cf_flags_missing_conventions(tmp_path, forecast_ds):
    path = products.write_forecast_netcdf(forecast_ds, tmp_path / "f.nc")
    with netCDF4.Dataset(path, "a") as nc:
        nc.delncattr("Conventions")
    assert products.check_cf(path) == ["global: Conventions is ''; expected 'CF-1.x'"]


def test_check_cf_rejects_non_netcdf(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file")
    with pytest.raises(ValueError, match="bad.nc"):
        products.check_cf(bad)


def test_to_cf_rejects_rain_rate_in_other_units(forecast_ds):
    forecast_ds["rainfall_rate"].attrs["units"] = "m s-1"
    with pytest.raises(ValueError, match="rainfall_rate.*'m s-1'"):
        products.to_cf(forecast_ds)


def test_schema_check_names_missing_variables(forecast_ds):
    with pytest.raises(ValueError, match=r"lacks \['rainfall_rate'\]"):
        products.to_cf(forecast_ds.drop_vars("rainfall_rate"))


# --------------------------------------------------------------------------- Zarr archive


def test_zarr_append_is_keyed_by_issue_time(tmp_path):
    store = tmp_path / "fc.zarr"
    first = build_forecast("2026-06-01T12:00", model="trajgru")
    second = build_forecast("2026-06-01T12:06", model="convgru")
    assert products.append_forecast_zarr(first, store) == 0
    assert products.append_forecast_zarr(second, store) == 1
    again = first.copy(deep=True)
    again["rainfall_rate"][:] = 7.0
    assert products.append_forecast_zarr(again, store) == 0

    ds = products.open_forecast_zarr(store).load()
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
    products.append_forecast_zarr(build_forecast("2026-06-01T12:06"), store)
    earlier = build_forecast("2026-06-01T12:00")
    with pytest.raises(ValueError, match="earlier than the last one"):
        products.append_forecast_zarr(earlier, store)


def test_zarr_append_refuses_other_lead_times(tmp_path):
    store = tmp_path / "fc.zarr"
    products.append_forecast_zarr(build_forecast("2026-06-01T12:00"), store)
    other = build_forecast("2026-06-01T12:06", leads=(6, 12))
    with pytest.raises(ValueError, match="lead_time"):
        products.append_forecast_zarr(other, store)


_KILLED_PUBLISH = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import icechunk
from flows import products
from tests.flows.conftest import build_forecast

def die(*args, **kwargs):  # inside the archive write: every chunk written, nothing committed
    os.kill(os.getpid(), signal.SIGKILL)

icechunk.Session.commit = die
products.append_forecast_zarr(build_forecast("2026-06-01T12:06", model="convgru"), sys.argv[1])
"""


def test_a_publish_killed_inside_its_archive_write_leaves_the_archive_usable(tmp_path):
    store = tmp_path / "forecasts.zarr"
    first = build_forecast("2026-06-01T12:00", model="trajgru")
    products.append_forecast_zarr(first, store)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_PUBLISH, str(store), str(REPO)], timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    ds = products.open_forecast_zarr(store).load()  # the last commit: one forecast, whole
    assert ds.sizes == {"issue_time": 1, "lead_time": 6, "y": 80, "x": 80}
    assert ds["model"].values.tolist() == ["trajgru"]
    np.testing.assert_array_equal(
        ds["rainfall_rate"].isel(issue_time=0).values, first["rainfall_rate"].values
    )
    # the next publishes go through (before Icechunk: "conflicting sizes for dimension")
    second = build_forecast("2026-06-01T12:06", model="convgru")
    assert products.append_forecast_zarr(second, store) == 1
    assert products.append_forecast_zarr(build_forecast("2026-06-01T12:12"), store) == 2
    ds = products.open_forecast_zarr(store).load()
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
    scores = products.verify_forecast(fc, obs, thresholds_mmh=(0.5, 5.0, 30.0))
    # hits 50, misses 50, false alarms 50 at 0.5 and 5 mm/h; at 30 mm/h the forecast
    # has no rain: hits 0, misses 100 -> 0; lead 12 has no observation -> NaN.
    np.testing.assert_allclose(scores.csi[:, 0], [1 / 3, 1 / 3, 0.0])
    assert np.isnan(scores.csi[:, 1]).all()
    assert scores.lead_time == (6, 12)


def test_verify_forecast_of_an_archived_forecast(tmp_path):
    """Forecasts read back from the Zarr archive (one issue time) verify the same."""
    fc, obs = _rect_forecast_and_obs()
    products.append_forecast_zarr(fc, tmp_path / "fc.zarr")
    archived = products.open_forecast_zarr(tmp_path / "fc.zarr").isel(issue_time=0).load()
    scores = products.verify_forecast(archived, obs, thresholds_mmh=(0.5, 5.0, 30.0))
    np.testing.assert_allclose(scores.csi[:, 0], [1 / 3, 1 / 3, 0.0])
    assert scores.issue_time == pd.Timestamp("2026-06-01T12:00")


def test_verify_forecast_ignores_masked_pixels():
    fc, obs = _rect_forecast_and_obs()
    obs["mask"][:, :, 30:35] = False  # the 50 missed pixels are not valid
    scores = products.verify_forecast(fc, obs, thresholds_mmh=(5.0,))
    assert scores.csi[0, 0] == pytest.approx(0.5)  # hits 50, false alarms 50


def test_record_scores_rolling_mean(tmp_path):
    site = tmp_path / "site"
    csi_a = np.array([[0.5, np.nan], [0.2, 0.1]])
    csi_b = np.array([[0.3, 0.4], [np.nan, 0.3]])
    for t, csi in (("2026-06-01T12:00", csi_a), ("2026-06-01T12:06", csi_b)):
        products.record_scores(
            site,
            products.VerificationScores(pd.Timestamp(t), (6, 12), (0.5, 5.0), csi),
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


# --------------------------------------------------------------------------- publishing


def _read_data_js(site: Path) -> dict:
    text = (site / "data.js").read_text()
    prefix = "window.NOWCAST_DATA = "
    assert text.startswith(prefix)
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))


def test_publish_run_writes_a_complete_run(tmp_path, forecast_ds, observations_ds):
    site = tmp_path / "site"
    result = products.publish_run(forecast_ds, observations_ds, site, n_obs_frames=3)
    assert result.run_id == "20260601T1200Z"
    latest = json.loads((site / "latest.json").read_text())
    assert latest["path"] == "runs/20260601T1200Z"
    assert latest["files"] == list(result.files)
    for rel in latest["files"]:
        assert (site / rel).is_file(), rel
    frames = latest["manifest"]["frames"]
    assert [f["kind"] for f in frames] == ["observation"] * 3 + ["forecast"] * 6
    assert [f["lead_time"] for f in frames] == [-12, -6, 0, 6, 12, 18, 24, 30, 36]
    assert frames[4]["valid_time"] == "2026-06-01T12:12:00Z"
    assert frames[4]["image"] == "maps/fc_012.png"
    with Image.open(site / "runs/20260601T1200Z/maps/fc_012.png") as im:
        assert im.size == (640, 600)
    with Image.open(site / "runs/20260601T1200Z/loop.gif") as gif:
        assert gif.n_frames == 9
    assert products.check_cf(site / "runs/20260601T1200Z/forecast.nc") == []
    archive = products.open_forecast_zarr(site / "forecasts.zarr")
    assert archive.sizes["issue_time"] == 1
    status = json.loads((site / "status.json").read_text())
    assert [(r["issue_time"], r["status"]) for r in status["runs"]] == [
        ("2026-06-01T12:00:00Z", "ok")
    ]
    data = _read_data_js(site)
    assert data["latest"] == latest
    assert not list(site.glob(".tmp-*"))
    for name in ("index.html", "app.js", "style.css"):
        assert (site / name).is_file()


def test_publish_retention_status_and_republish(tmp_path):
    site = tmp_path / "site"
    obs = build_observations("2026-06-01T12:12", n=3)
    for t in ("2026-06-01T12:00", "2026-06-01T12:06", "2026-06-01T12:12"):
        result = products.publish_run(
            build_forecast(t, leads=(6, 12)), obs, site, keep_runs=2, zarr_store=None, **SMALL
        )
    assert result.removed_runs == ("20260601T1200Z",)
    assert sorted(p.name for p in (site / "runs").iterdir()) == [
        "20260601T1206Z",
        "20260601T1212Z",
    ]
    products.record_run(site, "2026-06-01T12:18", "failed", reason="3 input frames missing")
    products.record_run(site, "2026-06-01T12:24", "skipped", reason="no rain")
    # republishing an issue time replaces its run and its status entry
    products.publish_run(
        build_forecast("2026-06-01T12:12", leads=(6, 12)),
        obs,
        site,
        keep_runs=2,
        zarr_store=None,
        reason="rerun",
        **SMALL,
    )
    runs = json.loads((site / "status.json").read_text())["runs"]
    assert [(r["issue_time"][11:16], r["status"], r["reason"]) for r in runs] == [
        ("12:24", "skipped", "no rain"),
        ("12:18", "failed", "3 input frames missing"),
        ("12:12", "ok", "rerun"),
        ("12:06", "ok", ""),
        ("12:00", "ok", ""),
    ]
    assert json.loads((site / "latest.json").read_text())["run_id"] == "20260601T1212Z"
    assert not list((site / "runs").glob(".old-*"))


def test_publish_rejects_unknown_status(tmp_path, forecast_ds, observations_ds):
    with pytest.raises(ValueError, match="unknown run status 'meh'"):
        products.publish_run(forecast_ds, observations_ds, tmp_path, status="meh")


def test_publish_rejects_observations_on_other_grid(tmp_path, forecast_ds):
    obs = build_observations(size=40)
    with pytest.raises(ValueError, match="different grids"):
        products.publish_run(forecast_ds, obs, tmp_path)


_KILL_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from flows import products
from tests.flows.conftest import build_forecast, build_observations

stop_at, marker = sys.argv[1], Path(sys.argv[2])

def hook(stage):
    if stage == stop_at:
        marker.write_text(stage)
        time.sleep(600)

products._publish_hook = hook
products.publish_run(
    build_forecast("2026-06-01T12:06", leads=(6, 12)),
    build_observations("2026-06-01T12:06", n=2),
    {site!r}, map_size_px=(200, 180), coastline_resolution="110m", n_obs_frames=2,
)
"""


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read()


@pytest.mark.parametrize("stop_at", ["file:maps/fc_006.png", "renamed"])
def test_publish_killed_midway_keeps_previous_run_served(tmp_path, stop_at):
    site = tmp_path / "site"
    products.publish_run(
        build_forecast("2026-06-01T12:00", leads=(6, 12)),
        build_observations("2026-06-01T12:00", n=2),
        site,
        **SMALL,
    )
    before = (site / "latest.json").read_bytes()
    data_before = (site / "data.js").read_bytes()
    marker = tmp_path / "stopped"
    script = _KILL_SCRIPT.format(repo=str(REPO), site=str(site))
    proc = subprocess.Popen([sys.executable, "-c", script, stop_at, str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "publisher exited before reaching the stop point"
            assert time.monotonic() < deadline, "publisher never reached the stop point"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # The half-made run exists (in .tmp-* or already renamed) but is not served.
    leftovers = list(site.glob(".tmp-*"))
    assert (len(leftovers) == 1) == (stop_at != "renamed")
    assert (site / "latest.json").read_bytes() == before
    assert (site / "data.js").read_bytes() == data_before
    latest = json.loads(before)
    assert latest["run_id"] == "20260601T1200Z"

    server = make_server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        status, body = _get(base + "latest.json")
        assert status == 200 and json.loads(body)["run_id"] == "20260601T1200Z"
        for rel in latest["files"]:
            status, body = _get(base + rel)
            assert status == 200 and len(body) > 0, rel
    finally:
        server.shutdown()
        server.server_close()

    # The next publish cleans up after the dead one and serves the new run.
    products.publish_run(
        build_forecast("2026-06-01T12:06", leads=(6, 12)),
        build_observations("2026-06-01T12:06", n=2),
        site,
        **SMALL,
    )
    assert not list(site.glob(".tmp-*"))
    assert json.loads((site / "latest.json").read_text())["run_id"] == "20260601T1206Z"
