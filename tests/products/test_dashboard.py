"""Operator dashboard: site generation, the CLI, and the page in headless Chromium."""

from __future__ import annotations

import json
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
from products.dashboard import make_server, render_site
from products.site import publish_run, record_run, record_scores
from products.verify import VerificationScores
from tests.products.conftest import (
    _browser_unavailable,
    build_ensemble_forecast,
    build_forecast,
    build_observations,
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
