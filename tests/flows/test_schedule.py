"""Scheduled forecasts in replay mode: real Prefect flow runs at simulated issue times."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import hko7, units
from tests.products.test_cycle import _small_store

T0 = pd.Timestamp("2015-06-01 12:00")
CAD = pd.Timedelta("6min")
N_FRAMES = 16  # 12:00 .. 13:30
GAP = [pd.Timestamp("2015-06-01 12:42"), T0 + 8 * CAD, T0 + 9 * CAD]  # 12:42, 12:48, 12:54


def _frame(k: int) -> np.ndarray:
    """480 x 480 pixels: a 40 dBZ square moving 12 px east per frame over no echo."""
    px = np.zeros(hko7.FRAME_SHAPE, np.uint8)
    x0 = 60 + 12 * k
    px[198:288, x0 : x0 + 90] = units.dbz_to_pixel(40.0)
    return px


@pytest.fixture(scope="module")
def gap_archive(tmp_path_factory):
    """16 frame times, every 6 min from 12:00, with 12:42-12:54 missing (3 in a row)."""
    root = tmp_path_factory.mktemp("gap_archive")
    for k in range(N_FRAMES):
        t = T0 + k * CAD
        if t in GAP:
            continue
        hko7.write_frame(hko7.frame_path(root, t), _frame(k))
    return root


@pytest.mark.slow
def test_replay_runs_scheduled_forecasts_and_skips_the_gap(gap_archive, tmp_path, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort, LogSort
    from prefect.logging.handlers import APILogHandler

    from flows.serve import run_forecast_cycle
    from pipeline.store import open_store
    from products.replay import replay_archive

    store, site = tmp_path / "radar.zarr", tmp_path / "site"
    cycle_at = {T0 + 4 * CAD, T0 + 9 * CAD, T0 + 12 * CAD, T0 + 15 * CAD}
    # 12:24 ok | 12:54: 12:42-12:54 missing -> skipped | 13:12: 2 missing -> ok | 13:30 ok

    def on_tick(now):
        if now not in cycle_at:
            return None
        # the store holds exactly what has "arrived" by the simulated time
        assert pd.DatetimeIndex(open_store(store)["time"].values)[-1] <= now
        return run_forecast_cycle(
            store,
            site,
            baseline="persistence",
            now=now,
            lead_minutes=[6, 12],
            image_size=80,
            n_obs_frames=2,
            coastline_resolution="110m",
        )

    report = replay_archive(gap_archive, store, speed=0, on_tick=on_tick, progress=False)

    assert report.ticks == N_FRAMES
    assert report.frames_ingested == N_FRAMES - 3
    results = [r for r in report.results if r is not None]
    assert [r["issue_time"] for r in results] == [
        "2015-06-01T12:24:00Z",
        "2015-06-01T12:54:00Z",
        "2015-06-01T13:12:00Z",
        "2015-06-01T13:30:00Z",
    ]
    assert [r["status"] for r in results] == ["ok", "skipped", "ok", "ok"]
    reason = results[1]["reason"]
    assert reason.startswith("3 consecutive input frames missing (more than 2 allowed)")
    assert "2015-06-01 12:42, 2015-06-01 12:48, 2015-06-01 12:54" in reason

    # every flow run ended Completed, the skipped one included
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_ASC, limit=200)
        ours = [r for r in runs if r.parameters.get("site") == str(site.resolve())]
        assert len(ours) == 4
        assert [r.state.type.value for r in ours] == ["COMPLETED"] * 4
        # the skipped run's logger reported the reason to the Prefect API
        APILogHandler().flush()
        skipped_id = ours[1].id
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[skipped_id])),
            limit=200,
            offset=0,
            sort=LogSort.TIMESTAMP_ASC,
        )
    assert f"skipped 2015-06-01T12:54:00Z: {reason}" in [log.message for log in logs]

    # products of every completed run exist; the skipped run is logged with its reason
    for r in results:
        run_id = pd.Timestamp(r["issue_time"]).strftime("%Y%m%dT%H%MZ")
        run_dir = site / "runs" / run_id
        if r["status"] == "ok":
            assert (run_dir / "forecast.nc").is_file()
            assert (run_dir / "loop.gif").is_file()
            assert (run_dir / "maps" / "fc_012.png").is_file()
        else:
            assert not run_dir.exists()
    status = json.loads((site / "status.json").read_text())["runs"]
    by_time = {s["issue_time"]: s for s in status}
    assert by_time["2015-06-01T12:54:00Z"]["status"] == "skipped"
    assert by_time["2015-06-01T12:54:00Z"]["reason"] == reason
    assert by_time["2015-06-01T13:30:00Z"]["status"] == "ok"
    latest = json.loads((site / "latest.json").read_text())
    assert latest["run_id"] == "20150601T1330Z"

    # 13:30 verified the 13:12 forecast (valid 13:18 and 13:24 observed by then):
    # persistence of a square moving 2 coarse px per frame: CSI = 11/19 after one step
    # (15 x 15 coarse-pixel square shifted by 2 columns: 13*15 hits over 17*15)
    assert results[3]["verified_issue_time"] == "2015-06-01T13:12:00Z"
    scores = json.loads((site / "scores.json").read_text())["entries"]
    entry = next(e for e in scores if e["issue_time"] == "2015-06-01T13:12:00Z")
    assert entry["lead_time"] == [6, 12]
    assert entry["csi"][0][0] == pytest.approx(13 / 17, abs=1e-3)
    assert entry["csi"][0][1] == pytest.approx(11 / 19, abs=1e-3)


@pytest.mark.slow
def test_nowcast_serve_runs_on_its_schedule_and_stops_on_sigterm(tmp_path):
    """``nowcast serve`` starts a local Prefect server, runs the flow every 6 s, stops cleanly."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    store = _small_store(tmp_path / "s.zarr")
    site, work = tmp_path / "site", tmp_path / "work"
    nowcast = Path(sys.executable).parent / "nowcast"
    cmd = [str(nowcast), "serve", "--store", str(store), "--site", str(site)]
    cmd += ["--baseline", "persistence", "--interval", "0.1", "--leads", "6,12"]
    cmd += ["--workdir", str(work)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (site / "latest.json").exists():
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    latest = json.loads((site / "latest.json").read_text())
    assert latest["run_id"] == "20150601T1242Z"  # store clock: the newest frame
    assert (work / ".prefect" / "server.log").is_file()  # the local server lived there
    assert not (site / ".prefect").exists()


@pytest.mark.slow
def test_a_killed_nowcast_serve_takes_its_prefect_server_and_flow_runs_with_it(tmp_path):
    """kill -9 of ``nowcast serve``: its watchdog stops the Prefect server and flow runs."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from flows._serve_reaper import TOKEN_ENV, _holders

    store = _small_store(tmp_path / "s.zarr")
    site, work = tmp_path / "site", tmp_path / "work"
    nowcast = Path(sys.executable).parent / "nowcast"
    cmd = [str(nowcast), "serve", "--store", str(store), "--site", str(site)]
    cmd += ["--baseline", "persistence", "--interval", "0.1", "--leads", "6,12"]
    cmd += ["--workdir", str(work)]
    token = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env[TOKEN_ENV] = token  # the processes serve starts inherit it
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (site / "latest.json").exists():  # the server runs and has run a cycle
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        children = [pid for pid in _holders(token) if pid != proc.pid]
        assert children, "serve started no process of its own"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 60
        while _holders(token) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _holders(token)
    finally:
        for pid in _holders(token):
            os.kill(pid, signal.SIGKILL)
        log.close()
    assert left == [], f"orphans of serve: {left} (of {children})"
