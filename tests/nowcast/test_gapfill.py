"""Tests of gap filling: nowcast resample --fill-gaps, the interpolated flag and its readers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from nowcast.interpolation.gapfill import fillable_gaps
from pipeline import units
from pipeline.schema import validate_resampled
from pipeline.store import open_store
from tests.pipeline.test_resample import make_source_store

SIZE = 48
DAY = pd.Timestamp("2015-06-01")
MISSING = {0, 1, 50, 51, 100, 101, 102, 103, 238, 239}  # start, 2, 4, end


def _pixel(slot: int) -> int:
    return 40 + slot % 150


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A day of uniform frames (pixel 40 + slot % 150), resampled with --fill-gaps 3 linear."""
    root = tmp_path_factory.mktemp("gapfill")
    slots = [s for s in range(240) if s not in MISSING]
    times = [DAY + pd.Timedelta(minutes=6 * s) for s in slots]
    pixels = np.stack([np.full((SIZE, SIZE), _pixel(s), np.uint8) for s in slots])
    src = make_source_store(root / "src", times, pixels)
    out = root / "r.zarr"
    args = ["resample", src, out, "--size", SIZE, "--no-progress", "--fill-gaps", 3]
    res = CliRunner().invoke(app, [str(a) for a in args + ["--interpolation", "linear"]])
    assert res.exit_code == 0, res.output
    return {"src": src, "out": out, "summary": json.loads(res.output.strip().splitlines()[-1])}


def test_only_inner_gaps_up_to_n_are_filled_and_never_observed(filled):
    ds = open_store(filled["out"])
    interp = ds["interpolated"].values
    obs = ds["observed"].values
    assert np.flatnonzero(interp).tolist() == [50, 51]  # the 4-slot gap and the ends stay gaps
    assert not (interp & obs).any()
    assert np.flatnonzero(~obs).tolist() == sorted(MISSING)  # observed untouched
    assert filled["summary"]["fill_gaps"]["n_slots_filled"] == 2
    assert filled["summary"]["fill_gaps"]["n_gaps_left"] == 3
    validate_resampled(ds)
    # a gap longer than N stays a gap: NaN frames, mask False
    assert np.isnan(ds["reflectivity"][100:104].values).all()
    assert not ds["mask"][100:104].values.any()


def test_linear_fill_values_are_the_cross_fade(filled):
    ds = open_store(filled["out"])
    for slot, s in ((50, 1 / 3), (51, 2 / 3)):
        p = (1 - s) * _pixel(49) + s * _pixel(52)
        expected = units.pixel_to_dbz(p)
        np.testing.assert_allclose(ds["reflectivity"][slot].values, expected, atol=1e-3)
        assert ds["mask"][slot].values.all()


def test_fillable_gaps_rules():
    obs = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0], bool)
    assert fillable_gaps(obs, 2) == [(2, 3)]
    assert fillable_gaps(obs, 3) == [(2, 3), (5, 7)]


def test_cli_fill_gaps_larger_than_window_one_line(filled, tmp_path):
    args = ["resample", filled["src"], tmp_path / "x.zarr", "--size", SIZE, "--fill-gaps", 6]
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [
        "error: --fill-gaps 6 is larger than the input window (5 slots); fill at most 5 slots "
        "or widen the window (--fill-window)"
    ]
    assert not (tmp_path / "x.zarr").exists()


def test_cli_model_without_run_one_line(filled, tmp_path):
    args = ["resample", filled["src"], tmp_path / "x.zarr", "--fill-gaps", 2]
    res = CliRunner().invoke(
        app, [str(a) for a in args] + ["--interpolation", "model"], env={"COLUMNS": "300"}
    )
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: interpolation method 'model' needs")


def test_training_uses_filled_slots_only_when_asked(filled):
    from pipeline.dataset import RadarSequenceDataset

    kw = dict(days=[DAY], n_in=2, n_out=1, stride=1, max_consecutive_missing=0)
    plain = RadarSequenceDataset(filled["out"], **kw)
    with_fill = RadarSequenceDataset(filled["out"], use_interpolated=True, **kw)

    def covered(ds):
        return {int(x) for i in range(len(ds)) for x in np.r_[ds._slots(i)]}

    assert not covered(plain) & {50, 51}
    assert {50, 51} <= covered(with_fill)
    assert len(with_fill) > len(plain)


def test_evaluation_windows_never_score_filled_slots(filled):
    from pipeline.dataset import RadarSequenceDataset

    ds = RadarSequenceDataset(filled["out"], days=[DAY], n_in=2, n_out=2, stride=1)
    hits = 0
    for i in range(len(ds)):
        in_slots, out_slots = ds._slots(i)
        for k, slot in enumerate(out_slots):
            if slot in (50, 51):
                hits += 1
                assert float(ds[i][5][k].sum()) == 0.0  # target mask 0: not scored
    assert hits > 0


def test_forecast_from_filled_frames_says_so(filled):
    from nowcast.forecast import baseline_predictor, make_forecast

    pred = baseline_predictor("persistence", in_frames=3)
    fc = make_forecast(pred, filled["out"], DAY + pd.Timedelta(minutes=6 * 51), [6])
    assert fc.attrs["interpolated_inputs"] == "2015-06-01T05:00, 2015-06-01T05:06"
    assert "interpolated input frame" in fc.attrs["comment"]
    plain = make_forecast(pred, filled["out"], DAY + pd.Timedelta(minutes=6 * 60), [6])
    assert "interpolated_inputs" not in plain.attrs


def test_advection_fill_on_the_store_reopens_identically(filled, tmp_path):
    from nowcast.interpolation import fill_gaps
    from pipeline.resample import resample_store

    out = tmp_path / "adv.zarr"

    resample_store(filled["src"], out, size=SIZE, progress=False)
    summary = fill_gaps(out, 2, "advection")
    assert summary["n_slots_filled"] == 2
    ds = open_store(out).load()
    assert np.flatnonzero(ds["interpolated"].values).tolist() == [50, 51]
    again = open_store(out).load()
    xr.testing.assert_identical(ds, again)
    with pytest.raises(ValueError, match="already has 'interpolated'"):
        fill_gaps(out, 2, "advection")


def test_flow_resample_takes_the_same_fill_options(filled, tmp_path):
    args = ["flow", "resample", filled["src"], tmp_path / "x.zarr", "--fill-gaps", 6]
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [
        "error: --fill-gaps 6 is larger than the input window (5 slots); fill at most 5 slots "
        "or widen the window (--fill-window)"
    ]


def test_schema_refuses_a_slot_both_observed_and_interpolated():
    from pipeline.schema import resampled_dataset

    times = pd.date_range("2015-06-01", periods=3, freq="6min")
    ds = resampled_dataset(times, np.zeros((3, 4, 4), np.float32))
    ds["interpolated"] = ("time", np.array([False, True, False]))
    with pytest.raises(ValueError, match="1 slots are both observed and interpolated"):
        validate_resampled(ds)
