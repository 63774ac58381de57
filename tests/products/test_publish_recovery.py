"""Site and archive agree after a kill at any publish stage (issue 25, cases 7 to 9).

A publisher process is killed (SIGKILL, from inside the publish hook) at each stage; the
dashboard command's recovery (:func:`products.site.refresh_site`) and then the next
publish must leave ``latest.json``, ``data.js``, ``status.json``, the run directories
and the forecast archive naming the same runs, with no temporary left behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pandas as pd
import pytest

import products.site
from products.archive import open_forecast_zarr
from products.site import PUBLISH_STAGES, publish_run, refresh_site
from tests.products.conftest import build_forecast, build_observations
from tests.products.test_site import REPO, SMALL

FIRST, SECOND, THIRD = "2026-06-01T12:00", "2026-06-01T12:06", "2026-06-01T12:12"
RUN = {FIRST: "20260601T1200Z", SECOND: "20260601T1206Z", THIRD: "20260601T1212Z"}

_KILL_AT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import products.site as P
from tests.products.conftest import build_forecast, build_observations

def hook(stage):
    if stage == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)

P._publish_hook = hook
P.publish_run(
    build_forecast({t!r}, leads=(6, 12)), build_observations({t!r}, n=2), {site!r},
    map_size_px=(200, 180), coastline_resolution="110m", n_obs_frames=2, progress=False,
)
"""

FILE_STAGES = ("file:forecast.nc", "file:maps/fc_006.png", "file:loop.gif", "file:run.json")


def _publish(site, t):
    fc, obs = build_forecast(t, leads=(6, 12)), build_observations(t, n=2)
    return publish_run(fc, obs, site, progress=False, **SMALL)


def _names(site) -> dict[str, object]:
    """What each part of the site and the archive names as the runs."""
    text = (site / "data.js").read_text()
    data = json.loads(text.removeprefix("window.NOWCAST_DATA = ").rstrip().rstrip(";"))
    status = json.loads((site / "status.json").read_text())["runs"]
    archive = open_forecast_zarr(site / "forecasts.zarr")
    issued = [products.site.run_id(t) for t in pd.DatetimeIndex(archive["issue_time"].values)]
    archive.close()
    return {
        "latest.json": json.loads((site / "latest.json").read_text())["run_id"],
        "data.js": data["latest"]["run_id"],
        "status.json": [r["run_id"] for r in status if r["status"] == "ok"],
        "runs": sorted(p.name for p in (site / "runs").iterdir()),
        "archive": sorted(issued),
        "leftovers": sorted(p.name for p in site.glob(".*") if not p.name.endswith(".lock")),
    }


def _agree(runs: list[str]) -> dict[str, object]:
    return {
        "latest.json": runs[-1],
        "data.js": runs[-1],
        "status.json": runs[::-1],
        "runs": runs,
        "archive": runs,
        "leftovers": [],
    }


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    _publish(site, FIRST)
    return site


@pytest.mark.parametrize("stage", [*FILE_STAGES, *PUBLISH_STAGES])
def test_kill_at_any_stage_leaves_site_and_archive_agreeing(site, stage):
    script = _KILL_AT.format(repo=str(REPO), site=str(site), t=SECOND)
    proc = subprocess.run([sys.executable, "-c", script, stage], timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, "the publisher never reached the stage"
    # the archive commit is the point of no return: before it rolled back, after it forward
    kept = (
        PUBLISH_STAGES.index(stage) >= PUBLISH_STAGES.index("archive")
        if (stage in PUBLISH_STAGES)
        else False
    )
    expected = [RUN[FIRST], RUN[SECOND]] if kept else [RUN[FIRST]]
    refresh_site(site)  # nowcast dashboard SITE
    assert _names(site) == _agree(expected)
    _publish(site, THIRD)
    assert _names(site) == _agree([*expected, RUN[THIRD]])


def test_temporaries_of_dead_publishers_are_removed_and_live_ones_kept(site):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (site / f".data.js.tmp-{pid}-0badc0de.js").write_text("window.NOWCAST_DATA = {")
        (site / f".latest.json.tmp-{pid}-0badc0de.json").write_text("{")
        (site / f".tmp-{pid}-0123456789ab").mkdir()
        (site / f".status.json.tmp-{live.pid}-feedface.json").write_text("{")
        from typer.testing import CliRunner

        from flows.cli import app

        res = CliRunner().invoke(app, ["dashboard", str(site)])  # refresh_site behind it
        assert res.exit_code == 0 and res.output == f"dashboard: {site / 'index.html'}\n"
        left = sorted(p.name for p in site.glob(".*") if not p.name.endswith(".lock"))
        assert left == [f".status.json.tmp-{live.pid}-feedface.json"]
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("bad", ['{"runs": "notalist"}', '{"runs": [1, 2]}', '{"runs": {}}'])
def test_status_of_the_wrong_shape_is_set_aside(site, bad):
    (site / "status.json").write_text(bad)
    result = _publish(site, SECOND)
    (aside,) = result.set_aside
    assert aside.startswith("status.json.corrupt-") and (site / aside).read_text() == bad
    names = _names(site)
    assert names["status.json"] == [RUN[SECOND]]  # started afresh
    assert names["archive"] == names["runs"] == [RUN[FIRST], RUN[SECOND]]
    assert names["latest.json"] == names["data.js"] == RUN[SECOND]


def test_a_publish_that_fails_commits_nothing_to_the_archive(site, monkeypatch):
    before = _names(site)

    def hook(stage):
        if stage == "site":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(products.site, "_publish_hook", hook)
    with pytest.raises(OSError, match="No space left on device"):
        _publish(site, SECOND)
    assert _names(site) == before == _agree([RUN[FIRST]])
    monkeypatch.setattr(products.site, "_publish_hook", None)
    wrong = build_forecast(SECOND, leads=(6, 18))  # the archive refuses other lead times
    with pytest.raises(ValueError, match="only in the forecast: 18; only in the archive: 12"):
        publish_run(wrong, build_observations(SECOND, n=2), site, progress=False, **SMALL)
    assert _names(site) == before
