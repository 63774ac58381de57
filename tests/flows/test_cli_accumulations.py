"""``nowcast forecast`` writes rain accumulations; ``--accumulations`` picks the windows."""

from __future__ import annotations

import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from tests.products.test_cycle import _small_store


def _invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def test_forecast_writes_the_asked_windows(tmp_path):
    store = _small_store(tmp_path / "s.zarr", n=11)  # 12:00 .. 13:00
    out = tmp_path / "f.nc"
    res = _invoke(
        ["forecast", "--store", store, "--baseline", "persistence", "--out", out]
        + ["--leads", "6,12,18,24,30", "--accumulations", "30,60"]
    )
    assert res.exit_code == 0, res.output
    with xr.open_dataset(out) as ds:
        acc = [v for v in ds.data_vars if "precipitation_amount" in v]
        assert acc == ["precipitation_amount_last_60min", "precipitation_amount_next_30min"]
        assert ds.attrs["accumulations_skipped"] == "next 60 min (leads end at 30 min)"
        # persistence: 40 dBZ (= 10.4 mm/h here) held for 30 min where the square is
        rate = float(ds["rainfall_rate"].values[0].max())
        assert abs(float(ds["precipitation_amount_next_30min"].max()) - rate / 2) < 1e-3


def test_bad_accumulations_one_line(tmp_path):
    res = _invoke(
        ["forecast", "--store", tmp_path / "s.zarr", "--baseline", "persistence"]
        + ["--out", tmp_path / "f.nc", "--accumulations", "soon"]
    )
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [
        "error: --accumulations must be comma-separated whole minutes >= 1 (or none), got 'soon'"
    ]
