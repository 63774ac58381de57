"""Object storage that fails cleanly: a missing bucket, refused credentials, a dead endpoint
and throttling are one ``error:`` line (exit 2); transient faults are retried for the
budget of NOWCAST_STORE_RETRY_SECONDS; concurrent creators and ingests (threads and
separate processes) into one bucket store end with every frame exactly once. Against moto
servers on 127.0.0.1, faults injected by a TCP proxy on 127.0.0.1."""

# ruff: noqa: F811 (the fixtures s3 and archive of test_object_storage, imported)

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.ingest import ingest_archive
from pipeline.objectstore import StoreAccessError, retry_seconds
from pipeline.objectstore.access import forget_checks
from pipeline.objectstore.faultproxy import FaultProxy
from pipeline.store import CommitConflictError, StoreWriter, create_store, open_store, store_log
from tests.pipeline.test_object_storage import BUCKET, TIMES, archive, s3  # noqa: F401 (fixtures)

WANT = pd.DatetimeIndex(list(TIMES), name="time").as_unit("ns")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


@pytest.fixture(scope="module")
def atomic_s3():
    """A moto server with atomic conditional writes (as S3), its endpoint set."""
    import boto3

    from pipeline.objectstore.moto_local import AtomicMotoServer

    server = AtomicMotoServer()
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
        yield env
    server.stop()


@pytest.fixture
def proxy(s3):
    """A fault proxy in front of the moto server, set as the endpoint."""
    host, port = s3["AWS_ENDPOINT_URL"].removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port))).start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", proxy.url)
        forget_checks()
        yield proxy
    proxy.stop()
    forget_checks()


def test_a_missing_bucket_is_one_line_for_every_command(s3, archive, tmp_path):
    url = "s3://nobucket/x.zarr"
    runner = CliRunner()
    ingest = _one_error_line(runner.invoke(app, ["ingest", str(archive), url, "--no-progress"]))
    assert ingest == (
        f"error: {url} (endpoint {s3['AWS_ENDPOINT_URL']}): cannot reach the bucket: the "
        "bucket does not exist (NoSuchBucket: The specified bucket does not exist)"
    )
    log = _one_error_line(runner.invoke(app, ["store", "log", url]))
    assert "NoSuchBucket" in log
    resample = ["resample", url, str(tmp_path / "small.zarr"), "--size", "48", "--no-progress"]
    assert "NoSuchBucket" in _one_error_line(runner.invoke(app, resample))
    fc = ["forecast", "--store", url, "--baseline", "persistence", "--leads", "6"]
    forecast = _one_error_line(runner.invoke(app, [*fc, "--out", str(tmp_path / "f.nc")]))
    assert "the bucket does not exist" in forecast


def test_refused_credentials_are_one_line(archive, tmp_path, monkeypatch):
    """moto with authentication on: an unknown access key is InvalidAccessKeyId."""
    port = _free_port()
    moto = Path(sys.executable).parent / "moto_server"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "bad")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bad")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        url = "s3://radar/x.zarr"
        runner = CliRunner()
        line = _one_error_line(runner.invoke(app, ["ingest", str(archive), url, "--no-progress"]))
        assert line.endswith(
            "cannot reach the bucket: the credentials were refused (InvalidAccessKeyId: The "
            "AWS Access Key Id you provided does not exist in our records.)"
        )
        fc = ["forecast", "--store", url, "--baseline", "persistence", "--leads", "6"]
        line = _one_error_line(runner.invoke(app, [*fc, "--out", str(tmp_path / "f.nc")]))
        assert "InvalidAccessKeyId" in line and url in line
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_endpoint_where_nothing_listens_is_retried_for_the_budget(archive, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("NOWCAST_STORE_RETRY_SECONDS", "1.5")
    t0 = time.monotonic()
    res = CliRunner().invoke(app, ["ingest", str(archive), "s3://radar/x.zarr", "--no-progress"])
    elapsed = time.monotonic() - t0
    line = _one_error_line(res)
    assert "Could not connect to the endpoint URL" in line
    assert "(set NOWCAST_STORE_RETRY_SECONDS to retry longer)" in line
    tried = float(line.split("gave up after ")[1].split(" s")[0])
    assert 0.5 <= tried <= 1.5 and elapsed < 10


def test_the_retry_budget_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("NOWCAST_STORE_RETRY_SECONDS", "2.5")
    assert retry_seconds() == 2.5
    monkeypatch.setenv("NOWCAST_STORE_RETRY_SECONDS", "soon")
    with pytest.raises(ValueError, match=r"NOWCAST_STORE_RETRY_SECONDS='soon': expected a number"):
        retry_seconds()


def test_throttling_is_retried_then_told(proxy, archive, monkeypatch):
    url = f"s3://{BUCKET}/faults/throttled.zarr"
    proxy.throttle(3)  # the first three connections get 503 SlowDown
    report = ingest_archive(archive, url, progress=False, end=TIMES[9])
    assert report.frames_written == 10 and proxy.refused == 3
    assert open_store(url).sizes["time"] == 10

    forget_checks()
    monkeypatch.setenv("NOWCAST_STORE_RETRY_SECONDS", "1")
    proxy.throttle(10**6)
    with pytest.raises(StoreAccessError, match=r"SlowDown: Please reduce.*gave up after"):
        ingest_archive(archive, f"s3://{BUCKET}/faults/throttled2.zarr", progress=False)


def test_creators_racing_for_a_new_store_all_open_the_one_that_won(s3):
    url = f"s3://{BUCKET}/faults/raced.zarr"
    results, errors = [], []

    def create():
        try:
            results.append(create_store(url, size=16))
        except Exception as err:  # pragma: no cover - shown by the assert below
            errors.append(err)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and results == [url] * 4
    messages = [m for _, _, m in store_log(url)]
    assert messages.count("create an empty radar store (16 x 16 frames)") == 1
    assert open_store(url).sizes == {"time": 0, "y": 16, "x": 16}


def test_an_ingest_that_keeps_losing_gives_up_naming_the_frames_not_written(
    s3,
    archive,
    monkeypatch,
):
    url = f"s3://{BUCKET}/faults/losing.zarr"
    ingest_archive(archive, url, progress=False, end=TIMES[9])

    def always_lose(self, message="update"):
        self._session = None
        raise CommitConflictError("store: another writer committed")

    monkeypatch.setattr(StoreWriter, "commit", always_lose)
    monkeypatch.setenv("NOWCAST_STORE_RETRY_SECONDS", "0.5")
    with pytest.raises(
        StoreAccessError,
        match=r"another writer kept committing first; gave up after .* 30 frames "
        r"\(2015-06-01 01:00 to 2015-06-01 03:54\) not written \(the committed ones are "
        r"kept\); a re-run of the same ingest adds them",
    ):
        ingest_archive(archive, url, progress=False)
    monkeypatch.undo()
    assert open_store(url).sizes["time"] == 10


def _ingest_processes(url: str, archive: Path, ranges: list[tuple[int, int]]) -> None:
    nowcast = Path(sys.executable).parent / "nowcast"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NOWCAST_STORE_RETRY_SECONDS": "120"}
    procs = []
    for a, b in ranges:
        cmd = [str(nowcast), "ingest", str(archive), url, "--no-progress", "--threads", "1"]
        cmd += ["--start", str(TIMES[a]), "--end", str(TIMES[b]), "--batch-size", "16"]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


@pytest.mark.slow  # six ingest processes on a busy machine: ~40 s
def test_two_then_four_ingest_processes_into_one_bucket_store_write_every_frame_once(
    atomic_s3, archive
):
    url = f"s3://{BUCKET}/faults/procs2.zarr"
    _ingest_processes(url, archive, [(0, 19), (20, 39)])  # a new store: creators race too
    ds = open_store(url)
    pd.testing.assert_index_equal(ds.indexes["time"], WANT)

    url = f"s3://{BUCKET}/faults/procs4.zarr"
    _ingest_processes(url, archive, [(0, 9), (10, 19), (20, 29), (30, 39)])
    ds = open_store(url)
    pd.testing.assert_index_equal(ds.indexes["time"], WANT)
    block = np.float32(200 / 255 * 70 - 10)  # frame 7's moving block covers columns 70-109
    assert ds["reflectivity"].values[7, 120, 75] == block


@pytest.mark.slow  # the endpoint is down for 1.5 s in the middle of an ingest
def test_an_outage_in_the_middle_of_an_ingest_loses_and_duplicates_nothing(
    proxy, archive, monkeypatch
):
    import pipeline.ingest as ingest_mod

    url = f"s3://{BUCKET}/faults/outage.zarr"
    create_store(url)
    real_batch = ingest_mod._commit_batch

    def batch_after_an_outage_begins(*args, **kwargs):  # frames found, store open: mid-ingest
        if proxy.refused + proxy.cut == 0 and not proxy._is_down():
            proxy.outage(seconds=1.5)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "_commit_batch", batch_after_an_outage_begins)
    t0 = time.monotonic()
    report = ingest_archive(archive, url, progress=False, batch_size=16)
    assert time.monotonic() - t0 > 1.8  # it rode through the outage
    assert proxy.refused + proxy.cut > 0
    ds = open_store(url)
    pd.testing.assert_index_equal(ds.indexes["time"], WANT)
    assert report.frames_written == 40


@pytest.mark.slow  # Icechunk's own retries inside one request: ~20-40 s
def test_an_endpoint_that_dies_mid_ingest_is_one_line_and_a_rerun_completes(
    proxy, archive, monkeypatch
):
    url = f"s3://{BUCKET}/faults/dies.zarr"
    create_store(url)
    monkeypatch.setenv("NOWCAST_STORE_RETRY_SECONDS", "2")
    import pipeline.ingest as ingest_mod

    real_batch = ingest_mod._commit_batch

    def batch_after_the_endpoint_dies(*args, **kwargs):  # frames found, store open
        proxy.outage()  # down for good
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "_commit_batch", batch_after_the_endpoint_dies)
    args = ["ingest", str(archive), url, "--no-progress", "--batch-size", "16", "--threads", "1"]
    line = _one_error_line(CliRunner().invoke(app, args))
    assert url in line and "gave up after" in line
    proxy.restore()
    forget_checks()
    monkeypatch.setattr(ingest_mod, "_commit_batch", real_batch)
    report = ingest_archive(archive, url, progress=False)
    assert report.frames_written + report.skipped_existing == 40
    pd.testing.assert_index_equal(open_store(url).indexes["time"], WANT)


# what Icechunk 1.1 raised here (tails of the error chains, from the runs above)
NO_BUCKET = """  x error getting object from object store service error
  |-> service error
  |-> unhandled error (NoSuchBucket)
  `-> Error { code: "NoSuchBucket", message: "The specified bucket does not exist", aws_request_id: "OPx0" }
"""
REFUSED = """  x error getting object metadata from object store dispatch failure
  |-> dispatch failure
  |-> io error
  |-> client error (Connect)
  |-> tcp connect error
  `-> Connection refused (os error 111)
"""


def test_icechunk_errors_are_read_as_permanent_or_transient(monkeypatch):
    import icechunk

    from pipeline.objectstore import describe_storage_error, storage_error

    missing = storage_error(icechunk.IcechunkError(NO_BUCKET))
    assert (missing.said, missing.transient) == (
        "the bucket does not exist (NoSuchBucket: The specified bucket does not exist)",
        False,
    )
    refused = storage_error(icechunk.IcechunkError(REFUSED))
    assert (refused.said, refused.transient) == ("Connection refused (os error 111)", True)
    assert storage_error(icechunk.IcechunkError("the repository doesn't exist")) is None
    assert storage_error(ValueError("s3 object store")) is None  # only storage errors
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert describe_storage_error(icechunk.IcechunkError(REFUSED)) == (
        "object storage http://127.0.0.1:9: transient fault: Connection refused (os error 111)"
    )


def test_a_writer_whose_frame_times_are_stale_is_refused_before_it_writes(s3):
    """w1 read the times, w2 committed since: w1's batch would overwrite w2's frames."""
    url = f"s3://{BUCKET}/faults/stale.zarr"
    create_store(url, size=16)
    with StoreWriter(url) as w1, StoreWriter(url) as w2:
        assert w1.times().size == 0
        g2 = w2.prepare(first_time_chunk=0, length=1)
        g2["time"][:] = [360]
        w2.commit("one frame")
        with pytest.raises(CommitConflictError, match="another writer committed since its"):
            w1.prepare(first_time_chunk=0, length=1)
        assert w1.times().tolist() == [360]  # read again: w1 may go on from the new tip
        g1 = w1.prepare(first_time_chunk=0, length=2)
        g1["time"][:] = [0, 360]
        w1.commit("two frames")
    assert open_store(url)["time"].values.astype("datetime64[s]").astype(int).tolist() == [0, 360]
