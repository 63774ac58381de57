"""The pipeline's Prefect flows, run for real on Prefect's temporary local server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr


@pytest.fixture(scope="module")
def ingested(tiny_archive, tmp_path_factory, prefect_server):
    """The tiny archive ingested by the ingest flow (one dask task per day)."""
    from flows.ingest import ingest_flow, make_task_runner

    store = tmp_path_factory.mktemp("flows") / "radar.zarr"
    runner = make_task_runner(n_workers=2, processes=False)
    result = ingest_flow.with_options(task_runner=runner)(str(tiny_archive), str(store))
    return store, result


@pytest.fixture(scope="module")
def resampled(ingested, tmp_path_factory):
    """The ingested store resampled to 80 x 80 by the resample flow."""
    from flows.resample import resample_flow

    dst = tmp_path_factory.mktemp("flows80") / "radar80.zarr"
    summary = resample_flow(str(ingested[0]), str(dst), size=80)
    return dst, summary


def _good_issue_time(store, n_in=5) -> pd.Timestamp:
    """The last slot of the store whose *n_in*-slot window is fully observed."""
    from pipeline.store import open_store

    ds = open_store(store)
    obs = np.asarray(ds["observed"].values, bool)
    ok = np.convolve(obs, np.ones(n_in, int), mode="full")[: len(obs)] == n_in
    return pd.Timestamp(ds["time"].values[np.flatnonzero(ok)[-1]])


def test_ingest_day_summary_carries_every_report_figure(tmp_path):
    from flows.ingest import _report_summary
    from pipeline.ingest import IngestReport

    report = IngestReport(
        store=tmp_path, frames_written=30, skipped_existing=4, seconds=2.0,
        corrupt=[(tmp_path / "RAD150601080000.png", "truncated PNG")],
    )  # fmt: skip
    assert _report_summary(report) == {
        "frames_written": 30,
        "skipped_existing": 4,
        "seconds": 2.0,
        "frames_per_second": 15.0,
        "corrupt": [[str(tmp_path / "RAD150601080000.png"), "truncated PNG"]],
    }
    json.dumps(_report_summary(report))  # plain values only


def test_ingest_flow_fans_out_days_and_equals_library_ingest(
    ingested, tiny_archive, tiny_archive_info, tmp_path
):
    from pipeline.ingest import ingest_archive
    from pipeline.store import open_store

    store, result = ingested
    info = tiny_archive_info
    assert [d["day"] for d in result["days"]] == [d.strftime("%Y-%m-%d") for d in info.days]
    assert result["frames_written"] == len(info.readable_times)
    # each day reports its rate under the name `nowcast ingest` prints
    for day in result["days"]:
        assert day["seconds"] > 0
        assert day["frames_per_second"] == pytest.approx(day["frames_written"] / day["seconds"])
    corrupt_paths = [p for p, _ in result["corrupt"]]
    assert len(corrupt_paths) == len(info.corrupt_times) == 1
    assert corrupt_paths[0].endswith(info.corrupt_times[0].strftime("RAD%y%m%d%H%M00.png"))
    flow_ds = open_store(store)
    np.testing.assert_array_equal(flow_ds["time"].values, info.readable_times.values)
    # the same archive through the library in one call gives an identical store
    ingest_archive(tiny_archive, tmp_path / "direct.zarr", progress=False)
    xr.testing.assert_identical(flow_ds.load(), open_store(tmp_path / "direct.zarr").load())


def test_resample_flow_builds_regular_80px_store(resampled, tiny_archive_info):
    from pipeline.store import open_store

    dst, summary = resampled
    ds = open_store(dst)
    assert (ds.sizes["y"], ds.sizes["x"]) == (80, 80)
    times = pd.DatetimeIndex(ds["time"].values)
    assert (np.diff(times.asi8) == pd.Timedelta("6min").value).all()
    # observed slots: every readable frame snaps to its slot (off-grid ones are 1 min off)
    observed = times[np.asarray(ds["observed"].values, bool)]
    expected = tiny_archive_info.readable_times.floor("6min").unique()
    assert observed.equals(expected)


def test_forecast_cli_then_publish_flow(resampled, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.publish import publish_flow
    from products.cf import check_cf

    dst, _ = resampled
    nc = tmp_path / "fc.nc"
    issue = _good_issue_time(dst)
    args = ["forecast", "--store", str(dst), "--out", str(nc), "--baseline", "pysteps"]
    args += ["--issue-time", str(issue), "--leads", "6,12,30"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert check_cf(nc) == []
    site = tmp_path / "site"
    run_dir = publish_flow(str(nc), str(dst), str(site), coastline_resolution="110m")
    latest = json.loads((site / "latest.json").read_text())
    assert latest["run_id"] == issue.strftime("%Y%m%dT%H%MZ")
    assert run_dir.endswith("runs/" + latest["run_id"])
    frames = latest["manifest"]["frames"]
    assert [f["lead_time"] for f in frames if f["kind"] == "forecast"] == [6, 12, 30]
    assert all((site / latest["path"] / f["image"]).is_file() for f in frames)


@pytest.mark.slow
def test_train_evaluate_and_forecast_flows_with_a_trained_run(resampled, tmp_path):
    from flows.evaluate import evaluate_flow
    from flows.forecast import forecast_flow
    from flows.train import train_flow
    from nowcast.options import EvaluateOptions, TrainOptions

    dst, _ = resampled
    run = tmp_path / "run"
    options = TrainOptions(epochs=1, iters_per_epoch=2, batch_size=2)
    summary = train_flow("convgru", "small", str(dst), str(run), options=options)
    assert summary["epochs_completed"] == 1
    assert (run / "best.pt").is_file()
    ev_options = EvaluateOptions(split="valid", baselines=("persistence",), max_samples=4)
    ev = evaluate_flow(str(run), str(dst), ev_options)
    table = (run / "eval" / "valid_regular" / "results.md").read_text()
    assert ev["predictors"] == ["convgru", "persistence"]
    assert "persistence" in table and "convgru" in table
    site = tmp_path / "site"
    issue = _good_issue_time(dst)
    res = forecast_flow(
        store=str(dst),
        site=str(site),
        run=str(run),
        lead_minutes=[6, 12, 18],
        now=str(issue),
        coastline_resolution="110m",
        n_obs_frames=2,
    )
    assert res["status"] == "ok", res
    fc = xr.open_dataset(site / "runs" / issue.strftime("%Y%m%dT%H%MZ") / "forecast.nc")
    assert fc.attrs["model"] == "convgru"
    assert fc["reflectivity"].shape == (3, 80, 80)
    fc.close()


def test_ingest_flow_respects_start_and_end_inside_days(
    tiny_archive, tiny_archive_info, tmp_path, prefect_server
):
    from flows.ingest import ingest_flow
    from pipeline.store import open_store

    start, end = "2015-06-01 10:00", "2015-06-02 09:00"
    result = ingest_flow(str(tiny_archive), str(tmp_path / "part.zarr"), start=start, end=end)
    assert [d["day"] for d in result["days"]] == ["2015-06-01", "2015-06-02"]
    times = tiny_archive_info.readable_times
    expected = times[(times >= pd.Timestamp(start)) & (times <= pd.Timestamp(end))]
    got = pd.DatetimeIndex(open_store(tmp_path / "part.zarr")["time"].values)
    assert got.equals(expected)


def _store_frame(ds, t, tolerance="2min"):
    """dBZ and validity of the store frame nearest to *t* (within *tolerance*)."""
    i = pd.DatetimeIndex(ds["time"].values).get_indexer(
        [t], method="nearest", tolerance=pd.Timedelta(tolerance)
    )
    assert i[0] >= 0, f"no store frame near {t}"
    frame = ds.isel(time=int(i[0]))
    return frame["reflectivity"].values, frame["mask"].values.astype(bool)


def test_full_resolution_cycles_publish_and_verify_at_480(ingested, resampled, tmp_path):
    """Forecasts from the 480 x 480 ingest store are published and verified at 480 x 480."""
    from PIL import Image

    from pipeline.store import open_store
    from pipeline.units import RAIN_THRESHOLDS_MMH
    from products.archive import open_forecast_zarr
    from products.cf import check_cf, open_forecast_netcdf
    from products.cycle import ForecastSettings, forecast_cycle

    store = ingested[0]
    t1 = _good_issue_time(resampled[0])
    t0 = t1 - pd.Timedelta("12min")
    site = tmp_path / "site"
    settings = ForecastSettings(
        str(store),
        str(site),
        baseline="persistence",
        lead_minutes=(6, 12),
        in_frames=2,
        n_obs_frames=1,
        coastline_resolution="110m",
    )
    first = forecast_cycle(settings, now=t0)
    second = forecast_cycle(settings, now=t1)
    assert (first.status, second.status) == ("ok", "ok"), (first, second)
    assert second.verified_issue_time == t0.strftime("%Y-%m-%dT%H:%M:%SZ")

    ds = open_store(store)
    run1 = site / "runs" / t1.strftime("%Y%m%dT%H%MZ")
    fc = open_forecast_netcdf(run1 / "forecast.nc")
    assert (fc.sizes["y"], fc.sizes["x"]) == (480, 480)
    assert check_cf(run1 / "forecast.nc") == []
    np.testing.assert_array_equal(fc["x"].values, ds["x"].values)
    last, valid = _store_frame(ds, t1)
    np.testing.assert_allclose(fc["reflectivity"].values[1][valid], last[valid], atol=1e-4)
    archive = open_forecast_zarr(site / "forecasts.zarr")
    assert dict(archive.sizes) == {"issue_time": 2, "lead_time": 2, "y": 480, "x": 480}
    archive.close()
    for name in ("obs_00.png", "fc_006.png", "fc_012.png"):
        with Image.open(run1 / "maps" / name) as im:
            assert im.size == (640, 600)

    # the verification of the t0 forecast, by hand on the 480 x 480 frames
    # in dBZ: the thresholds 0.5, 2, 5, 10, 30 mm/h of Z = 58.53 R^1.56 (no pixel value of
    # the 0.2745 dBZ steps of the ingest lies within 1e-3 dBZ of one)
    assert RAIN_THRESHOLDS_MMH == (0.5, 2.0, 5.0, 10.0, 30.0)
    thresholds_dbz = (12.9777, 22.3699, 28.5777, 33.2738, 40.7169)
    fc0, _ = _store_frame(ds, t0)
    entry = json.loads((site / "scores.json").read_text())["entries"][0]
    assert entry["issue_time"] == t0.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert entry["csi"][0][0] is not None  # there is rain at 0.5 mm/h to score
    for j, lead in enumerate((6, 12)):
        obs, ok = _store_frame(ds, t0 + pd.Timedelta(minutes=lead))
        for k, thr in enumerate(thresholds_dbz):
            o, f = obs[ok] >= thr, fc0[ok] >= thr
            union = int((o | f).sum())
            expected = round((o & f).sum() / union, 4) if union else None
            assert entry["csi"][k][j] == pytest.approx(expected, abs=2e-4), (lead, thr)


def test_forecast_cli_at_full_resolution_then_publish_cli(ingested, resampled, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    store = ingested[0]
    issue = _good_issue_time(resampled[0])
    nc = tmp_path / "fc.nc"
    args = ["forecast", "--store", str(store), "--out", str(nc), "--baseline", "persistence"]
    args += ["--issue-time", str(issue), "--leads", "6"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    fc = xr.open_dataset(nc)
    assert fc["reflectivity"].shape == (1, 480, 480)
    fc.close()
    site = tmp_path / "site"
    res = CliRunner().invoke(app, ["publish", str(nc), "--store", str(store), "--site", str(site)])
    assert res.exit_code == 0, res.output
    latest = json.loads((site / "latest.json").read_text())
    assert (site / latest["path"] / "maps" / "fc_006.png").is_file()
    assert latest["manifest"]["grid"] == {"y": 480, "x": 480, "pixel_km": pytest.approx(1.07, 0.01)}


def test_forecast_flow_with_members_publishes_probability_layers(tmp_path, prefect_server):
    from flows.forecast import forecast_flow
    from tests.products.test_cycle import T0, _small_store

    store = _small_store(tmp_path / "s.zarr")
    site = tmp_path / "site"
    res = forecast_flow(
        store=str(store),
        site=str(site),
        baseline="persistence",
        lead_minutes=[6, 12],
        now=str(T0 + pd.Timedelta("42min")),
        coastline_resolution="110m",
        n_obs_frames=1,
        members=4,
        seed=3,
    )
    assert res["status"] == "ok", res
    manifest = json.loads((site / "latest.json").read_text())["manifest"]
    assert manifest["ensemble"]["members"] == 4 and manifest["ensemble"]["seed"] == 3
    assert [la["id"] for la in manifest["layers"]][:3] == ["forecast", "p0.5", "p2"]
    fc = xr.open_dataset(site / "runs" / "20150601T1242Z" / "forecast.nc")
    prob = fc["probability_of_rainfall_rate_above_threshold"].values
    fc.close()
    # debiased probabilities of 0..4 of 4 members: at most 5 values in each frame
    frames = prob.reshape(-1, *prob.shape[-2:])
    assert prob.min() == 0.0 and prob.max() <= 1.0
    assert max(len(np.unique(f)) for f in frames) <= 5
