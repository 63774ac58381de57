"""Tests of nowcast.forecast: input windows, the forecast schema, baselines and runs at any lead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast.forecast import InsufficientInputError, Predictor, baseline_predictor, make_forecast
from pipeline import geo, units
from pipeline.schema import resampled_dataset
from pipeline.window import check_window, load_window, observations_dataset

ISSUE = pd.Timestamp("2015-06-01 12:00")
CAD = pd.Timedelta("6min")


def _zr_rate(dbz: np.ndarray) -> np.ndarray:
    """Rain rate in mm/h of the HKO-7 Z-R relation Z = 58.53 R^1.56, written out here
    (not ``pipeline.units.dbz_to_rainrate``, the code under test)."""
    return (10.0 ** (np.asarray(dbz, np.float64) / 10.0) / 58.53) ** (1.0 / 1.56)


def _blob(size: int, cy: float, cx: float, peak_dbz: float = 45.0, sigma: float = 6.0):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    # background -10 dBZ (no echo), Gaussian bump of reflectivity
    return (-10.0 + (peak_dbz + 10.0) * np.exp(-r2 / (2 * sigma**2))).astype(np.float32)


def _store(frames: np.ndarray, times: pd.DatetimeIndex, observed=None) -> xr.Dataset:
    """A store in the resampled schema around *frames* ``(T, H, W)`` dBZ."""
    return resampled_dataset(times, frames, observed=observed)


def _moving_blob_store(n_frames=6, size=80, vy=1.0, vx=2.0, y0=30.0, x0=20.0):
    times = pd.date_range(end=ISSUE, periods=n_frames, freq=CAD)
    frames = np.stack([_blob(size, y0 + vy * k, x0 + vx * k) for k in range(n_frames)])
    return _store(frames, times), (y0 + vy * (n_frames - 1), x0 + vx * (n_frames - 1))


def _centroid(field: np.ndarray, floor: float = 20.0) -> tuple[float, float]:
    w = np.clip(field - floor, 0.0, None)
    yy, xx = np.mgrid[0 : field.shape[0], 0 : field.shape[1]]
    return float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum())


def test_pysteps_forecast_moves_blob_at_known_speed():
    store, (cy, cx) = _moving_blob_store(vy=1.0, vx=2.0)
    pred = baseline_predictor("pysteps", in_frames=4)
    fc = make_forecast(pred, store, ISSUE, [6, 12, 30])
    for k, lead in enumerate([6, 12, 30]):
        steps = lead / 6
        y, x = _centroid(fc["reflectivity"].values[k])
        assert abs(y - (cy + 1.0 * steps)) < 1.0, (lead, y, cy + steps)
        assert abs(x - (cx + 2.0 * steps)) < 1.0, (lead, x, cx + 2 * steps)
    assert not np.isnan(fc["reflectivity"].values).any()


def test_forecast_schema_and_units():
    store, _ = _moving_blob_store()
    fc = make_forecast(baseline_predictor("persistence", in_frames=3), store, ISSUE, [6, 18])
    assert fc["reflectivity"].dims == ("lead_time", "y", "x")
    assert fc["reflectivity"].dtype == np.float32
    assert fc["rainfall_rate"].dtype == np.float32
    assert fc["lead_time"].values.tolist() == [6, 18]
    assert fc["lead_time"].attrs["units"] == "minutes"
    assert pd.DatetimeIndex(fc["valid_time"].values).tolist() == [
        pd.Timestamp("2015-06-01 12:06"),
        pd.Timestamp("2015-06-01 12:18"),
    ]
    assert pd.Timestamp(fc["issue_time"].values) == ISSUE
    assert fc.attrs["model"] == "persistence"
    assert {"source", "history"} <= set(fc.attrs)
    assert fc["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
    np.testing.assert_array_equal(fc["lat"].values, store["lat"].values)
    # persistence: both leads are the last input frame (dBZ -> p/255 -> dBZ round trip)
    last = store["reflectivity"].values[-1]
    np.testing.assert_allclose(fc["reflectivity"].values[1], last, atol=1e-4)
    # rain rate follows the HKO-7 Z-R relation; no echo (-10 dBZ) is 0 mm/h
    peak = np.unravel_index(np.argmax(last), last.shape)
    expected = _zr_rate(fc["reflectivity"].values[0][peak])
    assert fc["rainfall_rate"].values[0][peak] == pytest.approx(expected, rel=1e-5)
    assert fc["rainfall_rate"].values[0][0, 0] == 0.0


def test_window_rule_refuses_three_consecutive_missing():
    times = pd.date_range(end=ISSUE, periods=6, freq=CAD)
    frames = np.stack([_blob(40, 20, 20) for _ in times])
    store = _store(frames, times, observed=[True, True, False, False, False, True])
    with pytest.raises(InsufficientInputError, match="3 consecutive input frames missing"):
        make_forecast(baseline_predictor("persistence", in_frames=5), store, ISSUE, [6])


def test_window_rule_accepts_two_missing_and_persistence_uses_latest_observed():
    times = pd.date_range(end=ISSUE, periods=5, freq=CAD)
    frames = np.stack([_blob(40, 10 + 3 * k, 20) for k in range(5)])
    store = _store(frames, times, observed=[True, True, True, False, False])
    fc = make_forecast(baseline_predictor("persistence", in_frames=5), store, ISSUE, [6])
    np.testing.assert_allclose(fc["reflectivity"].values[0], frames[2], atol=1e-4)


def test_check_window_cases():
    assert check_window([True, False, False, True]) is None
    assert check_window([False, False, False]) == "no input frame observed"
    assert check_window([True, False, True], max_consecutive_missing=0) == (
        "1 consecutive input frames missing (more than 0 allowed)"
    )


def test_load_window_matches_within_tolerance_only():
    # store-schema store: irregular times, no `observed` variable
    times = pd.DatetimeIndex(["2015-06-01 11:48", "2015-06-01 11:56", "2015-06-01 12:03"])
    frames = np.stack([np.full((8, 8), v, np.float32) for v in (10.0, 20.0, 30.0)])
    store = _store(frames, times).drop_vars("observed")
    slots = pd.date_range(end=ISSUE, periods=3, freq=CAD)  # 11:48, 11:54, 12:00
    win = load_window(store, slots, tolerance="2min")
    assert win.observed.tolist() == [True, True, False]  # 11:56 is 2 min off, 12:03 is 3
    assert win.times[1] == pd.Timestamp("2015-06-01 11:56")
    assert win.dbz[1, 0, 0] == 20.0
    assert np.isnan(win.dbz[2]).all()
    assert not win.mask[2].any()


def test_bad_leads_rejected():
    store, _ = _moving_blob_store()
    pred = baseline_predictor("persistence", in_frames=2)
    with pytest.raises(ValueError, match="positive whole minutes"):
        make_forecast(pred, store, ISSUE, [6, 7.5])


def test_downsizes_full_resolution_store_to_predictor_grid():
    size = 480
    times = pd.date_range(end=ISSUE, periods=2, freq=CAD)
    frames = np.full((2, size, size), -10.0, np.float32)
    frames[:, :6, :6] = 30.0  # exactly one coarse pixel (factor 6) at 30 dBZ
    store = _store(frames, times)
    pred = baseline_predictor("persistence", in_frames=2, image_size=80)
    fc = make_forecast(pred, store, ISSUE, [6])
    assert fc.sizes == {"lead_time": 1, "y": 80, "x": 80}
    g = geo.grid_coords(80)
    np.testing.assert_allclose(fc["x"].values, g.x)
    np.testing.assert_allclose(fc["lat"].values, g.lat)
    assert fc["reflectivity"].values[0, 0, 0] == pytest.approx(30.0, abs=1e-3)
    assert fc["reflectivity"].values[0, 0, 1] == pytest.approx(-10.0, abs=1e-3)


def test_regular_only_predictor_gets_every_step_and_keeps_requested():
    calls = []

    def fake_regular(x, t_in, t_out, input_mask=None):
        calls.append(t_out.numpy().tolist())
        b, _, _, h, w = x.shape
        import torch

        lead = t_out[:, :, None, None, None] / 60.0  # value = lead in hours
        return lead.expand(b, t_out.shape[1], 1, h, w).to(torch.float32)

    pred = Predictor("fake", fake_regular, in_frames=2, continuous_time=False)
    store, _ = _moving_blob_store(size=16)
    fc = make_forecast(pred, store, ISSUE, [12, 30])
    assert calls == [[[6.0, 12.0, 18.0, 24.0, 30.0]]]
    np.testing.assert_allclose(
        fc["reflectivity"].values[:, 0, 0], units.normalized_to_dbz([0.2, 0.5]), atol=1e-4
    )
    with pytest.raises(ValueError, match="regular lead times only"):
        make_forecast(pred, store, ISSUE, [9])


def test_observations_dataset_on_forecast_grid_verifies_by_hand():
    from products.verify import verify_forecast

    times = pd.date_range(end=ISSUE + CAD, periods=2, freq=CAD)  # 12:00 and 12:06
    obs = np.full((2, 24, 24), -10.0, np.float32)
    one = float(units.rainrate_to_dbz(1.0))
    obs[1, :6, :24] = one  # 1 mm/h over coarse row 0 (4 coarse pixels) at 12:06
    store = _store(obs, times)
    pred = baseline_predictor("persistence", in_frames=1, image_size=4)
    fc = make_forecast(pred, store, ISSUE, [6, 12])
    o = observations_dataset(store, fc["valid_time"].values, size=4)
    assert o["observed"].values.tolist() == [True, False]  # 12:12 has not arrived
    assert o.sizes == {"time": 2, "y": 4, "x": 4}
    np.testing.assert_allclose(o["reflectivity"].values[0, 0], one, atol=1e-4)
    assert np.isnan(o["reflectivity"].values[1]).all()
    # hand-made forecast: rain at 2 of the 4 observed rain pixels and at 1 dry pixel
    rate = np.zeros((2, 4, 4), np.float32)
    rate[0, 0, :2] = 1.0
    rate[0, 3, 3] = 1.0
    fc["rainfall_rate"].values[:] = rate
    scores = verify_forecast(fc, o, thresholds_mmh=[0.5, 2.0])
    assert scores.csi[0, 0] == pytest.approx(2 / 5)  # hits 2, misses 2, false alarms 1
    assert np.isnan(scores.csi[1, 0])  # no event at 2 mm/h
    assert np.isnan(scores.csi[0, 1])  # lead 12 not observed yet


def _save_untrained_run(run_dir, model_name: str, config: str = "small"):
    """A run directory with ``best.pt`` in the training code's format (untrained weights)."""
    import dataclasses

    import torch

    from nowcast.configs import load_config
    from nowcast.models import get_model

    torch.manual_seed(0)
    cfg = load_config(config)
    model = get_model(model_name, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": 1,
        "model_name": model_name,
        "model_state": model.state_dict(),
        "config": dataclasses.asdict(cfg),
        "meta": {},
    }
    torch.save(ckpt, run_dir / "best.pt")
    return cfg


def test_ode_run_forecasts_at_arbitrary_leads(tmp_path):
    from nowcast.forecast import run_predictor

    cfg = _save_untrained_run(tmp_path / "run", "trajgru_ode")
    pred = run_predictor(tmp_path / "run")
    assert pred.continuous_time
    assert (pred.in_frames, pred.image_size) == (cfg.in_frames, cfg.image_size)
    store, _ = _moving_blob_store(n_frames=cfg.in_frames, size=cfg.image_size)
    a = make_forecast(pred, store, ISSUE, [3, 6, 9, 12, 20])
    b = make_forecast(pred, store, ISSUE, [6, 12])
    assert a["lead_time"].values.tolist() == [3, 6, 9, 12, 20]
    assert pd.Timestamp(a["valid_time"].values[0]) == pd.Timestamp("2015-06-01 12:03")
    assert pd.Timestamp(a["valid_time"].values[-1]) == pd.Timestamp("2015-06-01 12:20")
    assert a.attrs["model"] == "trajgru_ode"
    # the frame at a lead does not depend on which other leads were asked for
    np.testing.assert_allclose(
        a["reflectivity"].sel(lead_time=[6, 12]).values, b["reflectivity"].values, atol=1e-3
    )
    assert np.isfinite(a["reflectivity"].values).all()


def test_regular_run_refuses_leads_off_its_steps(tmp_path):
    from nowcast.forecast import run_predictor

    _save_untrained_run(tmp_path / "run", "convgru")
    pred = run_predictor(tmp_path / "run")
    assert not pred.continuous_time
    store, _ = _moving_blob_store(n_frames=pred.in_frames, size=pred.image_size)
    fc = make_forecast(pred, store, ISSUE, [6, 18])
    assert fc.sizes["lead_time"] == 2
    with pytest.raises(ValueError, match="regular lead times only"):
        make_forecast(pred, store, ISSUE, [9])


def _outage_store(masked: list[bool], size: int = 24) -> tuple[xr.Dataset, np.ndarray]:
    """Every frame present (``observed``); frames flagged in *masked* have no valid pixel."""
    times = pd.date_range(end=ISSUE, periods=len(masked), freq=CAD)
    frames = np.stack([_blob(size, 6 + 2 * k, 12) for k in range(len(masked))])
    store = _store(frames, times)
    store["mask"].values[np.asarray(masked, bool)] = False
    return store, frames


def test_all_masked_window_is_refused_as_an_outage():
    store, _ = _outage_store([True] * 4)
    with pytest.raises(
        InsufficientInputError, match=r"all 4 input frames \(.*\) are fully masked"
    ) as err:
        make_forecast(baseline_predictor("persistence", in_frames=4), store, ISSUE, [6])
    assert "(2015-06-01 11:42 to 2015-06-01 12:00)" in err.value.reason
    assert "radar outage" in err.value.reason
    assert err.value.issue_time == ISSUE


def test_fully_masked_frames_count_as_missing():
    # the last three frames are blank: three consecutive "missing" frames, refused
    store, _ = _outage_store([False, False, True, True, True])
    with pytest.raises(InsufficientInputError, match="3 consecutive input frames missing"):
        make_forecast(baseline_predictor("persistence", in_frames=5), store, ISSUE, [6])
    # one blank frame at the end is accepted and persistence uses the frame before it
    store, frames = _outage_store([False, False, False, False, True])
    fc = make_forecast(baseline_predictor("persistence", in_frames=5), store, ISSUE, [6, 12])
    np.testing.assert_allclose(fc["reflectivity"].values[1], frames[3], atol=1e-4)


def test_frame_without_a_valid_pixel_on_the_coarse_grid_is_blank():
    # 480 x 480 frames with one valid fine pixel per frame: on the 80 x 80 grid (blocks
    # of 36 fine pixels, half of them needed) no pixel is valid, so the window is an outage
    times = pd.date_range(end=ISSUE, periods=2, freq=CAD)
    store = _store(np.full((2, 480, 480), 20.0, np.float32), times)
    store["mask"].values[:] = False
    store["mask"].values[:, 100, 100] = True
    pred = baseline_predictor("persistence", in_frames=2, image_size=80)
    with pytest.raises(InsufficientInputError, match="fully masked"):
        make_forecast(pred, store, ISSUE, [6])


def test_full_resolution_persistence_from_an_ingest_store_on_disk(tmp_path):
    """Store-schema store written by the ingest (480 x 480, irregular times): forecast on its grid."""
    from pipeline.ingest import ingest_archive
    from pipeline.store import open_store
    from pipeline.synthetic import generate_archive

    generate_archive(
        tmp_path / "archive",
        days=1,
        hours=1,
        first_hour=11,
        seed=3,
        irregular=False,
        corrupt=False,
        empty_day=False,
        progress=False,
    )
    ingest_archive(tmp_path / "archive", tmp_path / "radar.zarr", progress=False)
    ds = open_store(tmp_path / "radar.zarr")
    issue = pd.Timestamp(ds["time"].values[-1])
    pred = baseline_predictor("persistence", in_frames=3)
    leads = list(range(6, 121, 6))
    fc = make_forecast(pred, ds, issue, leads)
    assert fc.sizes == {"lead_time": 20, "y": 480, "x": 480}
    np.testing.assert_array_equal(fc["x"].values, ds["x"].values)
    np.testing.assert_array_equal(fc["lat"].values, ds["lat"].values)
    last = ds["reflectivity"].isel(time=-1).values
    valid = ds["mask"].isel(time=-1).values
    for k in (0, 19):
        np.testing.assert_allclose(fc["reflectivity"].values[k][valid], last[valid], atol=1e-4)
    assert (fc["reflectivity"].values[0][~valid] == units.DBZ_MIN).all()
    rate = _zr_rate(fc["reflectivity"].values[5])
    rate[fc["reflectivity"].values[5] <= -10.0 + 1e-3] = 0.0
    np.testing.assert_allclose(fc["rainfall_rate"].values[5], rate, rtol=1e-5, atol=1e-6)


def test_lagrangian_run_forecasts_and_publishes_on_the_store_grid(tmp_path):
    """A Lagrangian run (80 x 80 network) forecasts on a 160 x 160 store's own grid."""
    from nowcast.forecast import run_predictor
    from products.archive import open_forecast_zarr
    from products.cf import open_forecast_netcdf
    from products.site import publish_run

    cfg = _save_untrained_run(tmp_path / "run", "trajgru_ode", config="small_lagrangian")
    pred = run_predictor(tmp_path / "run")
    assert pred.image_size is None and cfg.image_size == 80
    store, _ = _moving_blob_store(n_frames=cfg.in_frames, size=160, vx=4.0, x0=40.0, y0=60.0)
    fc = make_forecast(pred, store, ISSUE, [6, 12, 18])
    assert fc.sizes == {"lead_time": 3, "y": 160, "x": 160, "component": 2}
    np.testing.assert_array_equal(fc["x"].values, store["x"].values)
    site = tmp_path / "site"
    obs = observations_dataset(store, [ISSUE], size=160)
    kw = dict(n_obs_frames=1, coastline_resolution="110m", map_size_px=(200, 180), progress=False)
    result = publish_run(fc, obs, site, **kw)
    nc = open_forecast_netcdf(result.run_dir / "forecast.nc")
    assert (nc.sizes["y"], nc.sizes["x"]) == (160, 160)
    archive = open_forecast_zarr(site / "forecasts.zarr")
    assert (archive.sizes["y"], archive.sizes["x"]) == (160, 160)
    archive.close()
    assert (result.run_dir / "maps" / "fc_018.png").is_file()


def test_lagrangian_forecast_read_back_from_its_netcdf_publishes(tmp_path):
    """The README's `forecast --run ... --out f.nc` then `publish f.nc`: the motion variable's
    grid mapping, read back as an encoding and an attribute, is written once (issue 24, 1)."""
    from nowcast.forecast import run_predictor
    from products.cf import open_forecast_netcdf, write_forecast_netcdf
    from products.site import publish_run

    cfg = _save_untrained_run(tmp_path / "run", "trajgru_ode", config="small_lagrangian")
    store, _ = _moving_blob_store(n_frames=cfg.in_frames, size=80, vx=2.0)
    fc = make_forecast(run_predictor(tmp_path / "run"), store, ISSUE, [6, 12])
    assert "motion" in fc
    write_forecast_netcdf(fc, tmp_path / "f.nc")
    again = open_forecast_netcdf(tmp_path / "f.nc")
    assert again["motion"].attrs["grid_mapping"] == "crs"
    write_forecast_netcdf(again, tmp_path / "g.nc")  # raised "Key 'grid_mapping' already exists"
    xr.testing.assert_identical(open_forecast_netcdf(tmp_path / "g.nc"), again)
    obs = observations_dataset(store, [ISSUE], size=80)
    kw = dict(n_obs_frames=1, coastline_resolution="110m", map_size_px=(200, 180), progress=False)
    result = publish_run(again, obs, tmp_path / "site", **kw)
    published = open_forecast_netcdf(result.run_dir / "forecast.nc")
    np.testing.assert_array_equal(published["motion"].values, fc["motion"].values)


def test_lagrangian_forecast_carries_its_motion_and_moves_the_blob(tmp_path):
    """The motion the model estimated is in the product, in pixels per step of the store grid."""
    from nowcast.forecast import run_predictor

    cfg = _save_untrained_run(tmp_path / "run", "trajgru_ode", config="small_lagrangian")
    store, (cy, cx) = _moving_blob_store(
        n_frames=cfg.in_frames, size=160, vy=2.0, vx=4.0, x0=40.0, y0=50.0
    )
    fc = make_forecast(run_predictor(tmp_path / "run"), store, ISSUE, [6, 12])
    m = fc["motion"]
    assert m.dims == ("component", "y", "x") and list(fc["component"].values) == ["x", "y"]
    assert m.attrs["units"] == "pixel per cadence step"
    near = (slice(int(cy) - 5, int(cy) + 5), slice(int(cx) - 5, int(cx) + 5))
    assert abs(float(m.sel(component="x").values[near].mean()) - 4.0) < 0.6
    assert abs(float(m.sel(component="y").values[near].mean()) - 2.0) < 0.6
    y, x = _centroid(fc["reflectivity"].values[1])
    assert abs(y - (cy + 4.0)) < 1.5 and abs(x - (cx + 8.0)) < 1.5  # two steps on
    assert "fallback" not in fc.attrs


def test_lagrangian_forecast_of_a_frozen_field_says_zero_motion(tmp_path):
    from nowcast.forecast import run_predictor

    cfg = _save_untrained_run(tmp_path / "run", "trajgru_ode", config="small_lagrangian")
    times = pd.date_range(end=ISSUE, periods=cfg.in_frames, freq=CAD)
    frozen = np.stack([_blob(80, 40.0, 40.0)] * cfg.in_frames)  # a radar frame repeated
    fc = make_forecast(run_predictor(tmp_path / "run"), _store(frozen, times), ISSUE, [6, 12])
    assert fc.attrs["fallback"].startswith("zero motion")
    np.testing.assert_allclose(fc["motion"].values, 0.0)
    np.testing.assert_allclose(fc["reflectivity"].values[1], frozen[-1], atol=1e-3)
