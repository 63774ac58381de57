"""A publish completes or leaves the previous site; corrupt site logs are set aside."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import products.site
from products._site_journal import INDEX_FILES
from products.site import publish_run, record_run
from tests.products.conftest import build_forecast, build_observations
from tests.products.test_site import _KILL_SCRIPT, REPO, SMALL

FIRST, SECOND = "2026-06-01T12:00", "2026-06-01T12:06"


def _publish(site, t):
    return publish_run(build_forecast(t, leads=(6, 12)), build_observations(t, n=2), site, **SMALL)


def _site_bytes(site) -> dict[str, bytes | None]:
    return {n: (site / n).read_bytes() if (site / n).is_file() else None for n in INDEX_FILES}


def _data_js(site) -> dict:
    text = (site / "data.js").read_text()
    return json.loads(text.removeprefix("window.NOWCAST_DATA = ").rstrip().rstrip(";"))


@pytest.fixture
def site(tmp_path):
    """A site with one published run (12:00)."""
    site = tmp_path / "site"
    _publish(site, FIRST)
    return site


def test_corrupt_status_is_set_aside_and_the_publish_completes(site, caplog):
    (site / "status.json").write_text('{"runs": [ {"issue_')
    with caplog.at_level(logging.WARNING, logger="products._site_journal"):
        result = _publish(site, SECOND)
    (aside,) = result.set_aside
    assert aside.startswith("status.json.corrupt-")
    assert (site / aside).read_text() == '{"runs": [ {"issue_'
    assert any("status.json is not valid JSON" in r.getMessage() for r in caplog.records)
    runs = json.loads((site / "status.json").read_text())["runs"]
    assert [(r["issue_time"], r["status"]) for r in runs] == [("2026-06-01T12:06:00Z", "ok")]
    assert json.loads((site / "latest.json").read_text())["run_id"] == "20260601T1206Z"
    data = _data_js(site)
    assert data["latest"]["run_id"] == "20260601T1206Z"
    assert [r["issue_time"] for r in data["status"]["runs"]] == ["2026-06-01T12:06:00Z"]


def test_status_that_is_not_an_object_is_set_aside_by_record_run(site):
    (site / "status.json").write_text("[]")
    record_run(site, "2026-06-01T12:06", "skipped", reason="no new frame")
    asides = sorted(p.name for p in site.glob("status.json.corrupt-*"))
    assert len(asides) == 1 and (site / asides[0]).read_text() == "[]"
    runs = json.loads((site / "status.json").read_text())["runs"]
    assert [(r["status"], r["reason"]) for r in runs] == [("skipped", "no new frame")]


def test_failure_after_latest_moved_restores_the_previous_site(site, monkeypatch):
    before = _site_bytes(site)

    def hook(stage):
        if stage == "latest":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(products.site, "_publish_hook", hook)
    with pytest.raises(OSError, match="No space left on device"):
        _publish(site, SECOND)
    assert _site_bytes(site) == before
    assert sorted(p.name for p in (site / "runs").iterdir()) == ["20260601T1200Z"]
    assert not list(site.glob(".journal-*")) and not list(site.glob(".tmp-*"))
    monkeypatch.setattr(products.site, "_publish_hook", None)
    assert _publish(site, SECOND).run_id == "20260601T1206Z"  # nothing blocks the next one
    assert _data_js(site)["latest"]["run_id"] == "20260601T1206Z"


def test_publish_killed_after_latest_is_rolled_back_by_the_next_change(site, tmp_path):
    before = _site_bytes(site)
    marker = tmp_path / "stopped"
    script = _KILL_SCRIPT.format(repo=str(REPO), site=str(site))
    proc = subprocess.Popen([sys.executable, "-c", script, "latest", str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "publisher exited before reaching the stop point"
            assert time.monotonic() < deadline, "publisher never reached the stop point"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    # killed half-way: latest.json has moved on, data.js has not
    assert json.loads((site / "latest.json").read_text())["run_id"] == "20260601T1206Z"
    assert (site / "data.js").read_bytes() == before["data.js"]
    assert len(list(site.glob(".journal-*"))) == 1
    record_run(site, "2026-06-01T12:12", "skipped", reason="no rain")
    after = _site_bytes(site)
    assert after["latest.json"] == before["latest.json"]
    assert sorted(p.name for p in (site / "runs").iterdir()) == ["20260601T1200Z"]
    runs = json.loads((site / "status.json").read_text())["runs"]
    assert [(r["issue_time"][11:16], r["status"]) for r in runs] == [
        ("12:12", "skipped"),
        ("12:00", "ok"),
    ]
    assert _data_js(site)["latest"]["run_id"] == "20260601T1200Z"
    assert not list(site.glob(".journal-*"))


def _status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_dashboard_server_serves_only_published_files(site):
    import threading

    from products.dashboard import is_published, make_server

    latest = json.loads((site / "latest.json").read_text())
    (site / "status.json.corrupt-20260601T120000Z").write_text("{")
    (site / ".journal-1-x").mkdir()
    (site / ".journal-1-x" / "latest.json").write_text("{}")
    (site / "notes.txt").write_text("private")
    server = make_server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        served = ["/", "/index.html", "/app.js", "/data.js", "/latest.json", "/status.json"]
        served += [f"/{rel}" for rel in latest["files"]]
        assert {u: _status(base + u) for u in served} == {u: 200 for u in served}
        refused = [
            "/.publish.lock",
            "/.journal-1-x/latest.json",
            "/%2Epublish.lock",
            "/runs/",
            "/runs",
            f"/{latest['path']}/",
            f"/{latest['path']}/maps/",
            "/forecasts.zarr/zarr.json",
            "/status.json.corrupt-20260601T120000Z",
            "/notes.txt",
            "/runs/../notes.txt",
            "/runs/%2e%2e/notes.txt",
        ]
        assert {u: _status(base + u) for u in refused} == {u: 404 for u in refused}
    finally:
        server.shutdown()
        server.server_close()
    assert is_published("/runs/20260601T1200Z/maps/fc_006.png?t=1")
    assert not is_published("/runs/.old-20260601T1200Z-ab/run.json")
