"""Fixtures of the products tests: small forecasts and observations on an 80 x 80 grid,
and the headless Chromium of the dashboard tests (skipped without it, failed under CI).

``build_forecast`` / ``build_observations`` are also used by the flow tests and by
subprocess scripts of the tests (``from tests.products.conftest import build_forecast``).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import geo
from pipeline.schema import forecast_dataset, resampled_dataset
from pipeline.units import dbz_to_rainrate


def _blob_dbz(size: int, x_km: np.ndarray, y_km: np.ndarray, cx_km: float) -> np.ndarray:
    """40 dBZ Gaussian storm (sigma 30 km) centred at (cx_km, 0) over a -10 dBZ background."""
    xx, yy = np.meshgrid(x_km, y_km)
    return (-10.0 + 50.0 * np.exp(-((xx - cx_km) ** 2 + yy**2) / (2 * 30.0**2))).astype(np.float32)


def build_forecast(
    issue_time: str = "2026-06-01T12:00",
    leads: tuple[int, ...] = (6, 12, 18, 24, 30, 36),
    size: int = 80,
    speed_kmh: float = 64.0,
    model: str = "trajgru",
) -> xr.Dataset:
    """Forecast (forecast schema): a storm moving east at *speed_kmh*, centred at x=0 at issue."""
    g = geo.grid_coords(size)
    issue = pd.Timestamp(issue_time)
    lead = np.asarray(leads, dtype=np.int64)
    refl = np.stack([_blob_dbz(size, g.x, g.y, speed_kmh * m / 60.0) for m in lead])
    rate = dbz_to_rainrate(refl).astype(np.float32)
    return forecast_dataset(
        issue, lead, refl, rate, model=model, source="synthetic test forecast", history="test"
    )


def build_observations(
    end_time: str = "2026-06-01T12:00",
    n: int = 4,
    size: int = 80,
    speed_kmh: float = 64.0,
) -> xr.Dataset:
    """Observations every 6 min ending at *end_time*, same storm (x=0 at *end_time*).

    The western 10 columns are masked (False) in every frame.
    """
    g = geo.grid_coords(size)
    times = pd.date_range(end=pd.Timestamp(end_time), periods=n, freq="6min")
    minutes = (times - pd.Timestamp(end_time)) / pd.Timedelta("1min")
    refl = np.stack([_blob_dbz(size, g.x, g.y, speed_kmh * m / 60.0) for m in minutes])
    mask = np.ones(refl.shape, dtype=bool)
    mask[:, :, :10] = False
    return resampled_dataset(times, refl, mask, cadence_minutes=None)


@pytest.fixture
def forecast_ds() -> xr.Dataset:
    """A 6-lead, 80 x 80 forecast issued 2026-06-01 12:00 UTC."""
    return build_forecast()


@pytest.fixture
def observations_ds() -> xr.Dataset:
    """Four observation frames 11:42 .. 12:00 UTC on the forecast's grid."""
    return build_observations()


HAND_RAIN_MMH = 3.0
"""Rain rate of the raining members of :func:`hand_members`."""


def hand_members(leads: tuple[int, ...] = (6, 12, 18), size: int = 80) -> np.ndarray:
    """3 members ``(3, L, H, W)`` p/255 with known exceedance probabilities.

    The grid is cut into 4 bands of columns; in band ``k`` (0..3) the members ``m < k``
    rain :data:`HAND_RAIN_MMH` mm/h and the others are dry (0), at every lead. So
    P(>= 0.5 mm/h) = P(>= 2 mm/h) = k / 3 in band k (0, 1/3, 2/3, 1) and P(>= 5) = 0.
    """
    from pipeline.units import rainrate_to_normalized

    wet = np.float32(rainrate_to_normalized(HAND_RAIN_MMH))
    band = np.arange(size) * 4 // size  # (W,) band of each column
    out = np.zeros((3, len(leads), size, size), np.float32)
    for m in range(3):
        out[m][..., band > m] = wet
    return out


def build_ensemble_forecast(
    issue_time: str = "2026-06-01T12:00",
    leads: tuple[int, ...] = (6, 12, 18),
    size: int = 80,
    percentiles: tuple[float, ...] | None = (50.0,),
    keep_members: bool = False,
) -> xr.Dataset:
    """Ensemble forecast of :func:`hand_members`: its mean, probabilities (and percentiles)."""
    import torch

    from nowcast.ensemble import ensemble_products
    from nowcast.ensemble_forecast import add_ensemble_products
    from pipeline import units

    members = hand_members(leads, size)
    stream = (torch.from_numpy(m[None, :, None]) for m in members)
    prods = ensemble_products(stream, percentiles=percentiles, probability="fraction")
    fc = build_forecast(issue_time, leads=leads, size=size, model="trajgru_ens")
    dbz, rate = units.normalized_to_dbz_and_rainrate_float32(prods["mean"][0])
    fc["reflectivity"].values[:] = dbz
    fc["rainfall_rate"].values[:] = rate
    return add_ensemble_products(
        fc,
        prods,
        percentiles=percentiles,
        members=members if keep_members else None,
        seed=7,
        method="hand-built test ensemble",
    )


# --------------------------------------------------------------------------- browser

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


def _browser_unavailable(reason: str) -> None:
    """Skip a browser test, or fail it when ``CI`` is set (CI must run the browser tests)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set but the browser tests cannot run: {reason}")
    pytest.skip(reason)


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
