"""Stores on S3-compatible object storage: a moto server on 127.0.0.1, started and stopped
here (ingest, read-back, history, resample from the bucket, conflicting commits, two ingests
at once, a forecast cycle reading the store from the bucket)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import hko7
from pipeline.ingest import ingest_archive
from pipeline.store import StoreWriter, create_store, open_store, store_log

moto_server = pytest.importorskip("moto.server")

BUCKET = "radar-test"
TIMES = pd.date_range("2015-06-01 00:00", periods=40, freq="6min")


@pytest.fixture(scope="module")
def s3():
    """Endpoint and credentials of a fresh moto S3 server, set in the environment."""
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        boto3.client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1"
        ).create_bucket(Bucket=BUCKET)
        yield env
    server.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hko7s3")
    ramp = (np.arange(480 * 480) % 256).astype(np.uint8).reshape(480, 480)
    for k, t in enumerate(TIMES):
        frame = ramp.copy()
        frame[100:140, 10 * k : 10 * k + 40] = 200  # a block moving 10 px a frame
        hko7.write_frame(hko7.frame_path(root, t), frame)
    return root


def test_ingest_read_back_log_and_resample_on_object_storage(s3, archive, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.resample import resample_store

    url = f"s3://{BUCKET}/stores/radar.zarr"
    first = ingest_archive(archive, url, end=TIMES[19], progress=False, batch_size=16)
    rest = ingest_archive(archive, url, progress=False, batch_size=16)
    assert (first.frames_written, rest.frames_written, rest.skipped_existing) == (20, 20, 20)
    local = tmp_path / "radar.zarr"
    ingest_archive(archive, local, progress=False)
    ds = open_store(url)
    assert ds.sizes["time"] == 40
    xr.testing.assert_identical(ds.load(), open_store(local).load())
    assert ds["reflectivity"].values[7, 120, 70 + 5] == np.float32(200 / 255 * 70 - 10)

    res = CliRunner().invoke(app, ["store", "log", url])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    # batches of 16, 4, 16 and 4 frames, the empty schema, "Repository initialized"
    assert len(lines) == first.batches + rest.batches + 2
    assert "ingest: add 4 frames, 2015-06-01 03:36 to 2015-06-01 03:54" in lines[0]

    from_bucket = resample_store(url, tmp_path / "a.zarr", size=96, progress=False)
    from_disk = resample_store(local, tmp_path / "b.zarr", size=96, progress=False)
    assert from_bucket.n_observed == from_disk.n_observed == 40
    a, b = open_store(tmp_path / "a.zarr").load(), open_store(tmp_path / "b.zarr").load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_a_conflicting_commit_on_object_storage_is_refused(s3):
    url = f"s3://{BUCKET}/stores/conflict.zarr"
    create_store(url, size=16)
    with StoreWriter(url) as w1, StoreWriter(url) as w2:  # no lock on object storage
        g1 = w1.prepare(first_time_chunk=0, length=1)
        g2 = w2.prepare(first_time_chunk=0, length=2)
        g1["time"][:] = [0]
        g2["time"][:] = [0, 360]
        w1.commit("one frame")
        with pytest.raises(RuntimeError, match="another writer committed"):
            w2.commit("two frames")
    assert open_store(url).sizes["time"] == 1
    assert [m for _, _, m in store_log(url)][0] == "one frame"


def test_two_ingests_at_once_into_a_bucket_store_write_every_frame_once(s3, archive, tmp_path):
    import threading

    from pipeline.sources import get_source, new_store_attrs

    url = f"s3://{BUCKET}/stores/shared.zarr"
    create_store(url, attrs=new_store_attrs(get_source("hko7")))  # as an ingest creates it
    reports, errors = [], []

    def run(**bounds):
        try:
            reports.append(ingest_archive(archive, url, progress=False, batch_size=16, **bounds))
        except Exception as err:  # pragma: no cover - shown by the assert below
            errors.append(err)

    threads = [
        threading.Thread(target=run, kwargs={"end": TIMES[29]}),
        threading.Thread(target=run, kwargs={"start": TIMES[10]}),  # overlaps 10 .. 29
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sum(r.frames_written for r in reports) == len(TIMES)  # every frame exactly once
    ds = open_store(url)
    want = pd.DatetimeIndex(list(TIMES), name="time").as_unit("ns")
    pd.testing.assert_index_equal(ds.indexes["time"], want)
    local = tmp_path / "radar.zarr"
    ingest_archive(archive, local, progress=False)
    xr.testing.assert_identical(ds.load(), open_store(local).load())


@pytest.mark.slow  # maps of a 480 x 480 forecast: ~10 s
def test_a_forecast_cycle_reads_its_store_from_the_bucket(s3, archive, tmp_path):
    from products.cf import open_forecast_netcdf
    from products.cycle import ForecastSettings, forecast_cycle

    url = f"s3://{BUCKET}/stores/cycle.zarr"
    ingest_archive(archive, url, progress=False)
    site = tmp_path / "site"
    settings = ForecastSettings(
        url,
        str(site),
        baseline="persistence",
        lead_minutes=(6, 12),
        in_frames=2,
        n_obs_frames=1,
        coastline_resolution="110m",
    )
    issue = TIMES[30]
    result = forecast_cycle(settings, now=issue)
    assert result.status == "ok", result
    fc = open_forecast_netcdf(site / "runs" / issue.strftime("%Y%m%dT%H%MZ") / "forecast.nc")
    last = open_store(url)["reflectivity"].sel(time=issue).values
    for lead in range(2):  # persistence: the frame at the issue time at every lead
        np.testing.assert_allclose(fc["reflectivity"].values[lead], last, atol=1e-4)


def test_resample_from_bucket_to_bucket_with_motion_equals_a_local_resample(s3, archive, tmp_path):
    """`nowcast resample s3://... s3://... --motion lk`: the store, its history and the gap
    table in the bucket; values equal a local resample and the PNG-derived dBZ."""
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.resample import resample_store
    from pipeline.store_engine import read_object

    src = f"s3://{BUCKET}/e2e/radar.zarr"
    ingest_archive(archive, src, progress=False, batch_size=16)
    dst = f"s3://{BUCKET}/e2e/small.zarr"
    args = ["resample", src, dst, "--size", "96", "--motion", "lk", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    local_src = tmp_path / "radar.zarr"
    ingest_archive(archive, local_src, progress=False)
    local = resample_store(local_src, tmp_path / "small.zarr", size=96, motion="lk", progress=False)
    ds = open_store(dst).load()
    xr.testing.assert_identical(
        ds.drop_attrs(), open_store(tmp_path / "small.zarr").load().drop_attrs()
    )
    assert ds.sizes["time"] == 240 and int(ds["observed"].sum()) == 40 == local.n_observed
    assert ds["motion"].shape == (240, 2, 96, 96)
    # slot 7 holds frame 7: the 200-pixel block covers fine rows 100-139, columns 70-109
    np.testing.assert_allclose(ds["reflectivity"].values[7, 24, 18], 200 / 255 * 70 - 10, atol=1e-4)
    assert [m for _, _, m in store_log(dst)][0].startswith(
        "resample radar.zarr: 40 of 240 slots observed, 96 x 96, cadence 6 min, motion lk"
    )
    gaps = read_object(f"s3://{BUCKET}/e2e/small.gaps.csv").decode().split()
    assert gaps == ["start,end,length", "2015-06-01T04:00:00,2015-06-01T23:54:00,200"]
    # training samples come from the bucket just as from the disk
    from pipeline.dataset import RadarSequenceDataset

    kw = dict(days=["2015-06-01"], n_in=5, n_out=5, stride=5)
    a, b = RadarSequenceDataset(dst, **kw), RadarSequenceDataset(tmp_path / "small.zarr", **kw)
    assert len(a) == len(b) == 7  # windows starting at slots 0, 5, ..., 30 (frames 0-39)
    for got, want in zip(a[6], b[6], strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    again = CliRunner().invoke(app, args)  # an existing store is refused, not replaced
    assert again.exit_code == 2 and "already exists" in again.output


def test_forecasts_from_a_bucket_store_into_a_bucket_archive(s3, archive, tmp_path):
    """`nowcast forecast --store s3://...`, then two forecast cycles whose archive lives in
    the bucket (the site stays a directory): issue times, persistence values, history, and
    the second cycle verifying the first from the bucket archive."""
    from typer.testing import CliRunner

    from flows.cli import app
    from products.archive import open_forecast_zarr
    from products.cf import open_forecast_netcdf
    from products.cycle import ForecastSettings, forecast_cycle

    store = f"s3://{BUCKET}/fc/radar.zarr"
    ingest_archive(archive, store, progress=False)
    out = tmp_path / "one" / "forecast.nc"
    res = CliRunner().invoke(
        app,
        ["forecast", "--store", store, "--baseline", "persistence", "--out", str(out),
         "--issue-time", "2015-06-01T03:00", "--leads", "6,12", "--in-frames", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    fc = open_forecast_netcdf(out)
    assert pd.Timestamp(fc["issue_time"].values) == TIMES[30]
    frame30 = open_store(store)["reflectivity"].values[30]
    np.testing.assert_allclose(fc["reflectivity"].values[1], frame30, atol=1e-4)

    archive_url = f"s3://{BUCKET}/fc/forecasts.zarr"
    settings = ForecastSettings(
        store, str(tmp_path / "site"), baseline="persistence", lead_minutes=(6, 12),
        in_frames=2, n_obs_frames=1, coastline_resolution="110m", archive=archive_url,
    )  # fmt: skip
    first = forecast_cycle(settings, now=TIMES[30])
    second = forecast_cycle(settings, now=TIMES[32])
    assert (first.status, second.status) == ("ok", "ok")
    assert second.verified_issue_time == "2015-06-01T03:00:00Z"  # read from the bucket
    assert not (tmp_path / "site" / "forecasts.zarr").exists()
    fz = open_forecast_zarr(archive_url)
    assert list(pd.DatetimeIndex(fz["issue_time"].values)) == [TIMES[30], TIMES[32]]
    np.testing.assert_allclose(fz["reflectivity"].values[1, 0], open_store(store)[
        "reflectivity"].values[32], atol=1e-4)  # fmt: skip
    messages = [m for _, _, m in store_log(archive_url)]
    assert messages[:2] == [
        "publish: forecast issued 2015-06-01 03:12 by persistence",
        "publish: forecast issued 2015-06-01 03:00 by persistence (first of the archive)",
    ]


@pytest.mark.slow  # a 2-process dask cluster: ~10 s
def test_ingest_on_a_process_cluster_into_a_bucket_commits_once(s3, archive, tmp_path):
    """dask workers (separate processes, the AWS_* variables inherited) write the chunks
    into forks of the session straight to the bucket; one commit for the batch."""
    distributed = pytest.importorskip("dask.distributed")

    url = f"s3://{BUCKET}/cluster/radar.zarr"
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        report = ingest_archive(
            archive, url, progress=False, scheduler_address=cluster.scheduler_address
        )
    assert (report.frames_written, report.batches) == (40, 1)
    assert [m for _, _, m in store_log(url)][:2] == [
        "ingest: add 40 frames, 2015-06-01 00:00 to 2015-06-01 03:54",
        "create an empty radar store (480 x 480 frames)",
    ]
    local = tmp_path / "radar.zarr"
    ingest_archive(archive, local, progress=False)
    xr.testing.assert_identical(open_store(url).load(), open_store(local).load())


def test_a_resample_that_loses_a_commit_race_on_object_storage_is_refused(s3, archive, monkeypatch):
    from pipeline import resample as rs
    from pipeline.store import CommitConflictError

    src = f"s3://{BUCKET}/race/radar.zarr"
    ingest_archive(archive, src, progress=False)
    dst = f"s3://{BUCKET}/race/small.zarr"
    rs.resample_store(src, dst, size=48, progress=False)
    original = rs._SourceReader.downsized
    other = []

    def with_a_rival(self, *args):
        if not other:  # another resample commits while this one is writing its blocks
            other.append("started")
            rs.resample_store(src, dst, size=96, overwrite=True, progress=False)
        return original(self, *args)

    monkeypatch.setattr(rs._SourceReader, "downsized", with_a_rival)
    with pytest.raises(CommitConflictError, match="another writer committed.*run the resample"):
        rs.resample_store(src, dst, size=24, overwrite=True, progress=False)
    assert open_store(dst).sizes["x"] == 96  # the rival's commit stands, nothing of ours
