"""Dashboard layout at operator screen sizes (1400 x 1000, 1920 x 1080) in headless
Chromium, with screenshots, and the verification panel's schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from products.dashboard import scores_chart_title, verification_schedule
from products.site import publish_run, record_run, record_scores
from products.verify import VerificationScores
from tests.products.conftest import build_forecast, build_observations
from tests.products.test_dashboard import _all_images_loaded, _read_data_js, _wait

DEMO_LEADS = tuple(range(6, 121, 6))
"""20 leads, 6 .. 120 min: the demo's forecast and its 20-column CSI table."""


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory) -> Path:
    """The demo's shape: 20 leads, 5 observed frames, 640 x 600 maps, one verified
    forecast (with an undefined CSI), three ok runs and a failed one."""
    root = tmp_path_factory.mktemp("demo_site")
    csi = np.round(np.linspace(0.9, 0.0, 100).reshape(5, 20), 2)
    csi[4, 19] = np.nan
    record_scores(
        root,
        VerificationScores(pd.Timestamp("2015-06-01T10:00"), DEMO_LEADS, RAIN_THRESHOLDS, csi),
    )
    record_run(root, "2015-06-01T11:48", "ok")
    record_run(root, "2015-06-01T11:54", "ok")
    publish_run(
        build_forecast("2015-06-01T12:00", leads=DEMO_LEADS),
        build_observations("2015-06-01T12:00", n=5),
        root,
        n_obs_frames=5,
        coastline_resolution="110m",
        progress=False,
    )
    record_run(root, "2015-06-01T12:06", "failed", reason="radar offline: no frame since 12:00")
    return root


RAIN_THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)


def test_verification_schedule_names_the_next_forecast_and_when():
    latest = {
        "manifest": {
            "issue_time": "2015-06-01T12:00:00Z",
            "frames": [
                {"kind": "observation", "lead_time": 0},
                {"kind": "forecast", "lead_time": 6},
                {"kind": "forecast", "lead_time": 120},
            ],
        }
    }
    runs = [
        {"issue_time": t, "status": s}
        for t, s in [
            ("2015-06-01T12:06:00Z", "failed"),
            ("2015-06-01T12:00:00Z", "ok"),
            ("2015-06-01T11:54:00Z", "ok"),
            ("2015-06-01T11:48:00Z", "ok"),
        ]
    ]
    status = {"runs": runs}
    first = verification_schedule(latest, status, None)
    assert first == {
        "last_lead_min": 120,
        "next_issue_time": "2015-06-01T11:48:00Z",
        "next_verified_from": "2015-06-01T13:48:00Z",
    }
    scores = {"entries": [{"issue_time": "2015-06-01T11:48:00Z"}]}
    assert verification_schedule(latest, status, scores)["next_issue_time"] == (
        "2015-06-01T11:54:00Z"
    )
    assert verification_schedule(latest, status, scores)["next_verified_from"] == (
        "2015-06-01T13:54:00Z"
    )
    assert verification_schedule(None, status, None) is None


def test_scores_chart_title_is_singular_for_one_forecast(demo_site):
    data = _read_data_js(demo_site)
    assert data["scores"]["n_forecasts"] == 1
    assert scores_chart_title(1) == "Rolling CSI, 1 verified forecast"
    assert scores_chart_title(2) == "Rolling CSI, last 2 verified forecasts"
    assert data["verification"]["next_issue_time"] == "2015-06-01T11:48:00Z"


def _viewport(driver, width: int, height: int) -> None:
    """Exactly *width* x *height* CSS px of page (no window decorations to subtract)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


_RECT_JS = "var r = document.querySelector(arguments[0]).getBoundingClientRect();" + (
    "return [r.left, r.top, r.right, r.bottom];"
)

_LINES_JS = """
var out = [];
document.querySelectorAll(arguments[0]).forEach(function (el) {
  var range = document.createRange();
  range.selectNodeContents(el);
  var tops = {};
  Array.from(range.getClientRects()).forEach(function (r) { tops[Math.round(r.top)] = 1; });
  out.push(Object.keys(tops).length);
});
return out;
"""


@pytest.mark.browser
@pytest.mark.parametrize("size", [(1400, 1000), (1920, 1080)], ids=["1400x1000", "1920x1080"])
def test_dashboard_layout_at_operator_screen_sizes(browser, demo_site, tmp_path, size):
    """Two columns, no sideways scroll, the frame label whole, tables that fit."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    width, height = size
    _viewport(browser, width, height)
    try:
        browser.get((demo_site / "index.html").as_uri())
        _wait(browser, _all_images_loaded)
        browser.find_element(By.ID, "slider").send_keys(Keys.END)  # the longest label
        assert browser.find_element(By.ID, "frame-label").text == (
            "Forecast +120 min valid 2015-06-01 14:00 UTC"
        )
        _wait(browser, _all_images_loaded)
        shot = tmp_path / f"dashboard-{width}x{height}.png"
        assert browser.save_screenshot(str(shot))
        with Image.open(shot) as im:
            assert im.size == (width, height)
        rect = lambda sel: browser.execute_script(_RECT_JS, sel)  # noqa: E731
        viewer, aside = rect("#viewer"), rect("aside")
        assert aside[0] >= viewer[2]  # side by side: two columns
        assert abs(aside[1] - viewer[1]) < 1
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        label = rect("#frame-label")
        assert viewer[0] <= label[0] and label[2] <= viewer[2]  # the label is not cut
        assert browser.execute_script(
            "var e = document.getElementById('frame-label'); return e.scrollWidth <= e.clientWidth"
        )
        box, card = rect(".table-scroll"), rect("#scores")
        assert card[0] <= box[0] and box[2] <= card[2]  # the CSI table stays in its card
        header = browser.find_elements(By.CSS_SELECTOR, "#scores-table thead th")
        assert len(header) == 21
        assert browser.execute_script(_LINES_JS, "#status-table tbody td:first-child") == [1] * 4
        text = lambda id_: browser.find_element(By.ID, id_).text  # noqa: E731
        assert "1 frame" not in text("run-info") and "25 frames" in text("run-info")
        assert text("scores-table").startswith("CSI of 1 forecast, issued 2015-06-01 10:00 UTC")
        assert text("scores-legend").startswith("\u2013 : CSI undefined at that lead")
        assert text("scores-when") == (
            "Next to be verified: the run issued 2015-06-01 11:48 UTC, from 2015-06-01 "
            "13:48 UTC (once the observations to +120 min are in)."
        )
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.browser
def test_dashboard_says_when_verification_starts(browser, tmp_path):
    from selenium.webdriver.common.by import By

    record_run(tmp_path, "2026-06-01T11:54", "ok")
    publish_run(
        build_forecast("2026-06-01T12:00", leads=(6, 12, 60)),
        build_observations("2026-06-01T12:00", n=1),
        tmp_path,
        n_obs_frames=1,
        coastline_resolution="110m",
        map_size_px=(320, 300),
        progress=False,
    )
    browser.get((tmp_path / "index.html").as_uri())
    _wait(browser, _all_images_loaded)
    text = lambda id_: browser.find_element(By.ID, id_).text  # noqa: E731
    assert text("scores-empty") == "No verified forecasts yet."
    assert text("scores-when") == (
        "A forecast is verified by the first forecast cycle (nowcast serve, replay) after the "
        "observations for all its leads (to +60 min) have arrived: the first, issued "
        "2026-06-01 11:54 UTC, from 2026-06-01 12:54 UTC."
    )
    assert not browser.find_element(By.ID, "scores-legend").is_displayed()
    assert text("run-info").endswith("\u00b7 4 frames")
