"""The store's cadence is read, not assumed: ``nowcast forecast`` and ``nowcast resample`` on
5-minute stores (issue 24, point 3).

A KNMI-format folder of eight 5-minute files (00:00 .. 00:35, written with the format writer
of ``tests/pipeline/radar_formats.py``) is ingested with ``--source knmi``; an HKO-style store
of 5-minute frames without the source's attribute checks the fallback (the spacing of the frame
times). The real KNMI event of the real-radar folder (``$NOWCAST_REALRADAR``) is used when
present and skipped, saying why, when not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from pipeline.store import open_store
from tests.pipeline import radar_formats as rf
from tests.pipeline.test_resample import make_source_store

T0 = pd.Timestamp("2019-01-01 00:00")
FIVE_MIN_LEADS = list(range(5, 61, 5))


def _real_radar() -> Path:
    """The real-radar folder: ``$NOWCAST_REALRADAR``, else a ``shared/realradar`` beside the
    checkout or one of its parents (read in place, never copied)."""
    if os.environ.get("NOWCAST_REALRADAR"):
        return Path(os.environ["NOWCAST_REALRADAR"])
    for parent in Path(__file__).resolve().parents[2:]:
        if (parent / "shared" / "realradar").is_dir():
            return parent / "shared" / "realradar"
    return Path("realradar-not-found")


REAL_KNMI = _real_radar() / "knmi" / "20100826"


def _invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def knmi_store(tmp_path_factory) -> Path:
    """Ingest store of eight 5-minute KNMI files, 00:00 .. 00:35 (a rain cell at (100, 100))."""
    root = tmp_path_factory.mktemp("knmi5")
    raw = np.zeros((765, 700), np.uint16)
    raw[90:110, 90:110] = 100  # 1.00 mm in 5 min = 12 mm/h
    for k in range(8):
        t = T0 + pd.Timedelta(minutes=5 * k)
        rf.write_knmi(root / "files" / f"RAD_NL25_RAP_5min_{t:%Y%m%d%H%M}.h5", raw)
    store = root / "k.zarr"
    res = _invoke(["ingest", root / "files", store, "--source", "knmi", "--no-progress"])
    assert res.exit_code == 0, res.output
    return store


def _forecast(store: Path, out: Path) -> xr.Dataset:
    res = _invoke(["forecast", "--store", store, "--baseline", "persistence", "--out", out])
    assert res.exit_code == 0, res.output
    return xr.open_dataset(out, decode_timedelta=False)


def test_ingest_records_the_sources_cadence(knmi_store):
    assert open_store(knmi_store).attrs["nominal_cadence_minutes"] == 5.0


def test_forecast_issues_at_the_newest_frame_with_the_stores_cadence(knmi_store, tmp_path):
    fc = _forecast(knmi_store, tmp_path / "f.nc")
    assert pd.Timestamp(fc["issue_time"].values) == T0 + pd.Timedelta("35min")  # newest frame
    assert fc["lead_time"].values.tolist() == FIVE_MIN_LEADS
    inputs = "00:15, 2019-01-01T00:20, 2019-01-01T00:25, 2019-01-01T00:30, 2019-01-01T00:35"
    assert fc.attrs["source"] == f"baseline persistence; inputs 2019-01-01T{inputs}"


def test_forecast_reads_the_cadence_of_a_store_without_the_attribute(tmp_path):
    times = pd.date_range("2015-06-01 12:00", periods=7, freq="5min")  # 12:00 .. 12:30
    pixels = np.full((7, 48, 48), 60, np.uint8)
    store = make_source_store(tmp_path / "s.zarr", times, pixels)
    assert "nominal_cadence_minutes" not in open_store(store).attrs
    fc = _forecast(store, tmp_path / "f.nc")
    assert pd.Timestamp(fc["issue_time"].values) == pd.Timestamp("2015-06-01 12:30")
    assert fc["lead_time"].values.tolist() == FIVE_MIN_LEADS


def test_forecast_leads_given_are_kept(knmi_store, tmp_path):
    out = tmp_path / "f.nc"
    res = _invoke(
        ["forecast", "--store", knmi_store, "--baseline", "persistence", "--leads", "6,12"]
        + ["--out", out]
    )
    assert res.exit_code == 0, res.output
    assert xr.open_dataset(out, decode_timedelta=False)["lead_time"].values.tolist() == [6, 12]


def _summary(output: str) -> dict:
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def test_resample_defaults_to_the_stores_cadence(knmi_store, tmp_path):
    res = _invoke(["resample", knmi_store, tmp_path / "r.zarr", "--size", "35", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    s = _summary(res.output)
    assert (s["cadence_minutes"], s["n_slots"], s["n_observed"], s["n_rejected"]) == (
        5.0,
        288,
        8,
        0,
    )
    assert open_store(tmp_path / "r.zarr").attrs["cadence_minutes"] == 5.0


def test_resample_warns_when_a_requested_cadence_rejects_frames(knmi_store, tmp_path):
    out = tmp_path / "r6.zarr"
    res = _invoke(["resample", knmi_store, out, "--size", "35", "--cadence", "6min"])
    assert res.exit_code == 0, res.output
    # 00:15 is 3 min from 00:12 and 00:18: rejected; the other seven snap
    warnings = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: cadence 6 min rejects 1 (farther than 2 min from every slot) of the 8 "
        f"frames of {knmi_store}; 7 of 240 slots observed; the store's cadence is 5 min "
        "(leave --cadence out to use it)"
    ]
    assert _summary(res.output)["n_rejected"] == 1


@pytest.mark.skipif(not REAL_KNMI.is_dir(), reason=f"real KNMI event not present ({REAL_KNMI})")
def test_real_knmi_event_is_forecast_at_its_own_cadence(tmp_path):
    store = tmp_path / "k.zarr"
    res = _invoke(["ingest", REAL_KNMI, store, "--source", "knmi", "--no-progress"])
    assert res.exit_code == 0, res.output
    fc = _forecast(store, tmp_path / "k.nc")
    assert pd.Timestamp(fc["issue_time"].values) == pd.Timestamp("2010-08-26 07:35")
    assert fc["lead_time"].values.tolist() == FIVE_MIN_LEADS
    res = _invoke(["resample", store, tmp_path / "r6.zarr", "--cadence", "6min", "--no-progress"])
    assert res.exit_code == 0, res.output
    (warning,) = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert "rejects 15 (farther than 2 min from every slot) of the 92 frames" in warning
    assert "77 of 240 slots observed; the store's cadence is 5 min" in warning


def test_a_forecast_cycle_on_a_5_minute_store_uses_its_cadence(knmi_store, tmp_path):
    """The scheduled path (serve, flow forecast, replay): the same issue time, inputs, leads."""
    from products.cycle import ForecastSettings, forecast_cycle

    settings = ForecastSettings(
        store=str(knmi_store),
        site=str(tmp_path / "site"),
        baseline="persistence",
        lead_minutes=None,
        n_obs_frames=1,
        coastline_resolution="110m",
    )
    result = forecast_cycle(settings)
    assert (result.status, result.issue_time) == ("ok", "2019-01-01T00:35:00Z")
    assert result.lead_minutes == FIVE_MIN_LEADS
    fc = xr.open_dataset(Path(result.run_dir) / "forecast.nc", decode_timedelta=False)
    assert fc.attrs["source"].endswith(
        "inputs 2019-01-01T00:15, 2019-01-01T00:20, "
        "2019-01-01T00:25, 2019-01-01T00:30, 2019-01-01T00:35"
    )
