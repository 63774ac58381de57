"""Atomic publishing (products.site): complete runs, retention, a killed publish."""

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

import pytest
from PIL import Image

from products.archive import open_forecast_zarr
from products.cf import check_cf
from products.dashboard import make_server
from products.site import publish_run, record_run
from tests.products.conftest import build_forecast, build_observations

REPO = Path(__file__).resolve().parents[2]
SMALL = {"map_size_px": (200, 180), "coastline_resolution": "110m", "n_obs_frames": 2}


# --------------------------------------------------------------------------- publishing


def _read_data_js(site: Path) -> dict:
    text = (site / "data.js").read_text()
    prefix = "window.NOWCAST_DATA = "
    assert text.startswith(prefix)
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))


def test_publish_run_writes_a_complete_run(tmp_path, forecast_ds, observations_ds):
    site = tmp_path / "site"
    result = publish_run(forecast_ds, observations_ds, site, n_obs_frames=3)
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
    assert check_cf(site / "runs/20260601T1200Z/forecast.nc") == []
    archive = open_forecast_zarr(site / "forecasts.zarr")
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
        result = publish_run(
            build_forecast(t, leads=(6, 12)), obs, site, keep_runs=2, zarr_store=None, **SMALL
        )
    assert result.removed_runs == ("20260601T1200Z",)
    assert sorted(p.name for p in (site / "runs").iterdir()) == [
        "20260601T1206Z",
        "20260601T1212Z",
    ]
    record_run(site, "2026-06-01T12:18", "failed", reason="3 input frames missing")
    record_run(site, "2026-06-01T12:24", "skipped", reason="no rain")
    # republishing an issue time replaces its run and its status entry
    publish_run(
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
        publish_run(forecast_ds, observations_ds, tmp_path, status="meh")


def test_publish_into_an_archive_with_other_leads_is_refused_before_any_map(tmp_path, monkeypatch):
    """Issue 24, 4: the archive's leads are checked first; the site stays as it was."""
    import products.site

    site = tmp_path / "site"
    publish_run(build_forecast("2026-06-01T12:00"), build_observations(), site, **SMALL)
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file() and ".zarr" not in str(p)}
    stages = []
    monkeypatch.setattr(products.site, "_publish_hook", stages.append)
    longer = build_forecast("2026-06-01T12:06", leads=(6, 12, 18, 24, 30, 36, 42, 48))
    obs = build_observations("2026-06-01T12:06")
    with pytest.raises(ValueError, match=r"only in the forecast: 42, 48; make the forecast"):
        publish_run(longer, obs, site, **SMALL)
    assert stages == []  # not one map (nor any other file) was drawn
    after = {p: p.read_bytes() for p in site.rglob("*") if p.is_file() and ".zarr" not in str(p)}
    assert after == before
    assert not (site / "runs" / "20260601T1206Z").exists()
    # into another archive it publishes
    result = publish_run(longer, obs, site, zarr_store=tmp_path / "other.zarr", **SMALL)
    assert result.run_id == "20260601T1206Z"
    assert open_forecast_zarr(tmp_path / "other.zarr")["lead_time"].values.tolist()[-1] == 48


def test_publish_rejects_observations_on_other_grid(tmp_path, forecast_ds):
    obs = build_observations(size=40)
    with pytest.raises(ValueError, match="different grids"):
        publish_run(forecast_ds, obs, tmp_path)


_KILL_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import products.site as P
from tests.products.conftest import build_forecast, build_observations

stop_at, marker = sys.argv[1], Path(sys.argv[2])

def hook(stage):
    if stage == stop_at:
        marker.write_text(stage)
        time.sleep(600)

P._publish_hook = hook
P.publish_run(
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
    publish_run(
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
    publish_run(
        build_forecast("2026-06-01T12:06", leads=(6, 12)),
        build_observations("2026-06-01T12:06", n=2),
        site,
        **SMALL,
    )
    assert not list(site.glob(".tmp-*"))
    assert json.loads((site / "latest.json").read_text())["run_id"] == "20260601T1206Z"
