"""Operator dashboard: site generation, the CLI, and the page in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from products.dashboard import (
    make_server,
    render_site,
    scores_chart_title,
    verification_schedule,
)
from products.site import publish_run, record_run, record_scores
from products.verify import VerificationScores
from tests.products.conftest import build_ensemble_forecast, build_forecast, build_observations

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def _read_data_js(site: Path) -> dict:
    text = (site / "data.js").read_text()
    prefix = "window.NOWCAST_DATA = "
    assert text.startswith(prefix)
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site with one published run (2 observed + 3 forecast frames), a failed run
    and one verified forecast."""
    root = tmp_path_factory.mktemp("site")
    record_run(root, "2026-06-01T11:54", "failed", reason="radar offline")
    record_scores(
        root,
        VerificationScores(
            pd.Timestamp("2026-06-01T11:00"),
            (6, 12, 18),
            (0.5, 5.0),
            np.array([[0.8, 0.6, 0.5], [0.4, np.nan, 0.2]]),
        ),
    )
    publish_run(
        build_forecast("2026-06-01T12:00", leads=(6, 12, 18)),
        build_observations("2026-06-01T12:00", n=2),
        root,
        n_obs_frames=2,
        coastline_resolution="50m",
    )
    return root


def test_render_site_before_any_run(tmp_path):
    record_run(tmp_path, "2026-06-01T12:00", "skipped", reason="no new frames")
    data = _read_data_js(tmp_path)
    assert data["latest"] is None
    assert data["scores"] is None
    assert [(r["status"], r["reason"]) for r in data["status"]["runs"]] == [
        ("skipped", "no new frames")
    ]
    assert (tmp_path / "index.html").is_file()


def test_render_site_rejects_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        render_site(tmp_path / "nope")


def test_render_site_reports_corrupt_json(tmp_path):
    (tmp_path / "status.json").write_text("{not json")
    with pytest.raises(ValueError, match="status.json is not valid JSON"):
        render_site(tmp_path)


def test_site_data_matches_json_files(site):
    data = _read_data_js(site)
    assert data["latest"] == json.loads((site / "latest.json").read_text())
    assert data["scores"]["csi_mean"] == [[0.8, 0.6, 0.5], [0.4, None, 0.2]]
    assert [r["status"] for r in data["status"]["runs"]] == ["ok", "failed"]
    assert data["scores_chart"] == "scores.png"
    with Image.open(site / "scores.png") as im:
        assert im.size == (500, 300)


def test_cli_dashboard_regenerates_site(site, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(site, copy)
    (copy / "data.js").unlink()
    (copy / "app.js").unlink()
    result = CliRunner().invoke(app, ["dashboard", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "app.js").is_file()
    assert _read_data_js(copy)["latest"]["run_id"] == "20260601T1200Z"


def test_cli_dashboard_rejects_missing_dir(tmp_path):
    result = CliRunner().invoke(
        app, ["dashboard", str(tmp_path / "missing")], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2
    assert "is not a directory" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_dashboard_serves_over_http(site):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "dashboard", str(site), "--serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data.js", timeout=2) as r:
                    body, cache = r.read().decode(), r.headers.get("Cache-Control")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "server never came up"
                time.sleep(0.2)
        assert body.startswith("window.NOWCAST_DATA = ")
        assert cache == "no-store"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert "<title>Radar nowcast</title>" in r.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/" in out


# --------------------------------------------------------------------------- browser


def _browser_unavailable(reason: str) -> None:
    """Skip a browser test, or fail it when ``CI`` is set (CI must run the browser tests)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set but the browser tests cannot run: {reason}")
    pytest.skip(reason)


def test_browser_tests_fail_instead_of_skipping_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set but the browser tests cannot run"):
        _browser_unavailable("no chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="^no chromium$"):
        _browser_unavailable("no chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="^no chromium$"):
        _browser_unavailable("no chromium")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver, installing them when missing.

    Where they cannot be had the browser tests skip, except under ``CI`` (set by CI
    runners: ``CI=true``), where they fail.
    """
    try:
        import selenium  # noqa: F401
    except ImportError:
        _browser_unavailable("selenium is not installed (it is in the dev extras)")
    paths = (shutil.which("chromium"), shutil.which("chromedriver"))
    if None in paths and shutil.which("apt-get"):
        try:
            subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600)
            subprocess.run(
                ["apt-get", "install", "-y", "chromium", "chromium-driver"],
                check=True,
                capture_output=True,
                timeout=900,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            _browser_unavailable(
                f"chromium is not installed and `apt-get install chromium` failed: {exc}"
            )
        paths = (shutil.which("chromium"), shutil.which("chromedriver"))
    if None in paths:
        _browser_unavailable("chromium / chromedriver not found and apt-get is not available")
    return paths  # type: ignore[return-value]


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromium[1]), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def served(site):
    server = make_server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _wait(driver, predicate, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)


_IMAGES_JS = (
    "return Array.from(document.images).filter(i => !i.hidden)"
    ".map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
)


def _all_images_loaded(driver):
    images = driver.execute_script(_IMAGES_JS)
    return images if images and all(done for _, done, _ in images) else False


@pytest.mark.browser
def test_dashboard_in_headless_chromium(browser, served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(served)
    images = _wait(browser, _all_images_loaded)
    # frame + 5 thumbnails + the scores chart, all decoded
    assert len(images) == 7
    assert all(width > 0 for _, _, width in images), images
    text = lambda id_: browser.find_element(By.ID, id_).text  # noqa: E731

    # Opens on the last observation, the issue time.
    assert text("valid-time") == "2026-06-01 12:00 UTC"
    assert text("frame-kind") == "Observed"
    slider = browser.find_element(By.ID, "slider")
    assert slider.get_attribute("max") == "4"
    slider.send_keys(Keys.ARROW_RIGHT)
    slider.send_keys(Keys.ARROW_RIGHT)
    assert text("valid-time") == "2026-06-01 12:12 UTC"
    assert text("frame-kind") == "Forecast"
    assert text("lead-time") == "+12 min"
    frame = browser.find_element(By.ID, "frame")
    assert frame.get_attribute("src").endswith("/runs/20260601T1200Z/maps/fc_012.png")
    _wait(browser, lambda d: d.execute_script("return document.getElementById('frame').complete"))
    assert browser.execute_script("return document.getElementById('frame').naturalWidth") == 640
    slider.send_keys(Keys.HOME)
    assert text("valid-time") == "2026-06-01 11:54 UTC"

    # Play advances through the frames, pause stops.
    browser.find_element(By.ID, "play").click()
    _wait(browser, lambda d: text("valid-time") != "2026-06-01 11:54 UTC", timeout=5)
    browser.find_element(By.ID, "play").click()
    assert "Play" in text("play")

    # a deterministic run has no layer switch
    assert not browser.find_element(By.ID, "layer-box").is_displayed()

    header = text("run-info")
    assert "issued 2026-06-01 12:00 UTC" in header and "model trajgru" in header
    assert "80 \u00d7 80 px (6.40 km)" in header
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#status-table tbody tr")]
    assert rows == ["2026-06-01 12:00 UTC ok", "2026-06-01 11:54 UTC failed radar offline"]
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#scores-table tbody td")]
    assert cells == ["≥ 0.5", "0.80", "0.60", "0.50", "≥ 5", "0.40", "–", "0.20"]

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        assert im.size[0] >= 1000


@pytest.mark.browser
def test_dashboard_works_from_file_url(browser, site):
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    images = _wait(browser, _all_images_loaded)
    assert all(width > 0 for _, _, width in images), images
    assert browser.find_element(By.ID, "valid-time").text == "2026-06-01 12:00 UTC"


@pytest.mark.browser
def test_open_page_follows_a_new_run(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    server = make_server(copy, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/?refresh=0.5")
        info = lambda: browser.find_element(By.ID, "run-info").text  # noqa: E731
        _wait(browser, lambda d: "issued 2026-06-01 12:00 UTC" in info())
        publish_run(
            build_forecast("2026-06-01T12:06", leads=(6, 12, 18)),
            build_observations("2026-06-01T12:06", n=2),
            copy,
            n_obs_frames=2,
            coastline_resolution="110m",
            map_size_px=(320, 300),
        )
        _wait(browser, lambda d: "issued 2026-06-01 12:06 UTC" in info())
        images = _wait(browser, _all_images_loaded)
        assert all(width > 0 for _, _, width in images), images
        assert browser.find_element(By.ID, "valid-time").text == "2026-06-01 12:06 UTC"
        frame_src = browser.find_element(By.ID, "frame").get_attribute("src")
        assert "/runs/20260601T1206Z/maps/obs_01.png" in frame_src
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def ensemble_site(tmp_path_factory) -> Path:
    """A site with one ensemble run: 2 observed frames, leads 6 and 12, probability layers."""
    root = tmp_path_factory.mktemp("ensemble_site")
    publish_run(
        build_ensemble_forecast("2026-06-01T12:00", leads=(6, 12)),
        build_observations("2026-06-01T12:00", n=2),
        root,
        n_obs_frames=2,
        coastline_resolution="110m",
        map_size_px=(320, 300),
    )
    return root


@pytest.mark.browser
def test_dashboard_switches_to_a_probability_layer(browser, ensemble_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.get_log("browser")  # drop what the pages of earlier tests logged
    browser.get((ensemble_site / "index.html").as_uri())
    _wait(browser, _all_images_loaded)
    text = lambda id_: browser.find_element(By.ID, id_).text  # noqa: E731
    assert browser.find_element(By.ID, "layer-box").is_displayed()
    assert "model trajgru_ens \u00b7 3 members \u00b7 80" in text("run-info")
    select = Select(browser.find_element(By.ID, "layer"))
    assert [o.text for o in select.options] == [
        "Forecast (ensemble mean)",
        "P(rain \u2265 0.5 mm/h)",
        "P(rain \u2265 2 mm/h)",
        "P(rain \u2265 5 mm/h)",
        "P(rain \u2265 10 mm/h)",
        "P(rain \u2265 30 mm/h)",
    ]
    slider = browser.find_element(By.ID, "slider")
    slider.send_keys(Keys.END)  # the last frame: +12 min
    frame = browser.find_element(By.ID, "frame")
    assert frame.get_attribute("src").endswith("/maps/fc_012.png")
    assert text("frame-kind") == "Forecast"
    select.select_by_visible_text("P(rain \u2265 2 mm/h)")
    assert frame.get_attribute("src").endswith("/runs/20260601T1200Z/maps/prob_2mmh_012.png")
    assert text("frame-kind") == "P(rain \u2265 2 mm/h)"
    assert text("lead-time") == "+12 min"
    images = _wait(browser, _all_images_loaded)
    assert all(width > 0 for _, _, width in images), images
    assert browser.execute_script("return document.getElementById('frame').naturalWidth") == 320
    strip = [i.get_attribute("src") for i in browser.find_elements(By.CSS_SELECTOR, "#strip img")]
    assert [s.rsplit("/", 1)[-1] for s in strip] == [
        "obs_00.png",
        "obs_01.png",
        "prob_2mmh_006.png",
        "prob_2mmh_012.png",
    ]
    slider.send_keys(Keys.HOME)  # observations stay observations
    assert text("frame-kind") == "Observed"
    select.select_by_visible_text("Forecast (ensemble mean)")
    slider.send_keys(Keys.END)
    assert frame.get_attribute("src").endswith("/maps/fc_012.png")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


# --------------------------------------------------------------------------- layout

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
