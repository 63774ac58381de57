"""Evaluation over a real resampled Zarr store: streaming scores, reports, runs, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from PIL import Image

from nowcast.baselines import get_baseline
from nowcast.evaluate import (
    EvaluateOptions,
    evaluate_predictors,
    evaluate_robustness,
    evaluate_run,
    plot_skill,
    summarize,
    to_markdown,
)
from nowcast.metrics import categorical_scores, contingency_counts
from pipeline.dataset import RadarSequenceDataset
from pipeline.resample import resample_store
from pipeline.units import rainrate_to_normalized
from tests.pipeline.test_resample import make_source_store

SIZE = 48
N_DAYS = 10  # split fractions 0.8/0.1/0.1 -> the last day is the test split
FRAMES_PER_DAY = 40
DAYS = pd.date_range("2015-06-01", periods=N_DAYS, freq="D")
STATIC_DAY = DAYS[0]


def _cell(shift: float) -> np.ndarray:
    """Textured rain cell (HKO-7 pixels) centred near x = 8 + shift."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    f = 0.55 * np.exp(-((xx - 8 - shift) ** 2 + (yy - 24) ** 2) / (2 * 4.0**2))
    f += 0.25 * np.exp(-((xx - 11 - shift) ** 2 + (yy - 21) ** 2) / (2 * 2.0**2))
    f += 0.2 * np.exp(-((xx - 5 - shift) ** 2 + (yy - 28) ** 2) / (2 * 1.5**2))
    return np.clip(np.rint(f * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """10 days x 40 frames (6-min); day 1 static, other days a cell moving 0.8 px per frame."""
    root = tmp_path_factory.mktemp("evaluate")
    times, frames = [], []
    for day in DAYS:
        for slot in range(FRAMES_PER_DAY):
            times.append(day + pd.Timedelta(minutes=6 * slot))
            frames.append(_cell(0.0 if day == STATIC_DAY else 0.8 * slot))
    mask = np.ones((len(frames), SIZE, SIZE), dtype=bool)
    mask[:, :, -3:] = False  # a blind strip on the east edge
    src = make_source_store(root / "src", times, np.stack(frames), mask)
    dst = root / "resampled.zarr"
    resample_store(src, dst, size=SIZE, progress=False)
    return dst


def _dataset(store, days, scheme="regular", n_in=4, n_out=6):
    return RadarSequenceDataset(store, days=days, scheme=scheme, n_in=n_in, n_out=n_out)


def test_persistence_on_static_field_is_perfect(store):
    ds = _dataset(store, [STATIC_DAY])
    res = evaluate_predictors({"persistence": get_baseline("persistence")}, ds, 3, progress=False)
    r = res.sel(predictor="persistence")
    assert np.all(r["MSE"].values == 0) and np.all(r["B-MSE"].values == 0)
    assert np.all(r["PSNR"].values == pytest.approx(100.0))
    assert np.all(r["SSIM"].values == pytest.approx(1.0))
    np.testing.assert_array_equal(r["CSI"].sel(threshold=0.5).values, 1.0)
    assert np.all(r["false_alarms"].values == 0) and np.all(r["misses"].values == 0)
    assert list(res["lead_time"].values) == [6.0, 12.0, 18.0, 24.0, 30.0, 36.0]


def test_streamed_counts_equal_direct_count(store):
    """Batches of 3 over 7+ samples give the same counts as counting item by item."""
    ds = _dataset(store, [DAYS[4]])
    res = evaluate_predictors({"persistence": get_baseline("persistence")}, ds, 3, progress=False)
    thr = [float(v) for v in rainrate_to_normalized(np.array([0.5, 5.0]))]
    direct = np.zeros((6, 2, 4), dtype=np.int64)
    for i in range(len(ds)):
        x, y, _, _, _, m_out = ds[i]
        last = x[-1, 0].numpy()
        for k in range(6):
            direct[k] += contingency_counts(last, y[k, 0].numpy(), thr, m_out[k, 0].numpy() > 0)
    r = res.sel(predictor="persistence", threshold=[0.5, 5.0])
    np.testing.assert_array_equal(r["hits"].values, direct[..., 0])
    np.testing.assert_array_equal(r["false_alarms"].values, direct[..., 1])
    np.testing.assert_array_equal(r["misses"].values, direct[..., 2])
    np.testing.assert_array_equal(r["correct_negatives"].values, direct[..., 3])
    np.testing.assert_allclose(
        r["CSI"].values, categorical_scores(*np.moveaxis(direct, -1, 0))["CSI"]
    )
    # masked strip (3 columns) never counted: total = samples x valid pixels per frame
    assert int(
        r[["hits", "false_alarms", "misses", "correct_negatives"]]
        .to_array()
        .sum("variable")
        .isel(lead_time=0, threshold=0)
    ) == len(ds) * SIZE * (SIZE - 3)


def test_pysteps_beats_persistence_on_moving_cell(store):
    ds = _dataset(store, [DAYS[3]])
    preds = {"persistence": get_baseline("persistence"), "pysteps": get_baseline("pysteps")}
    res = evaluate_predictors(preds, ds, 4, progress=False)
    s = summarize(res)
    assert float(s["CSI"].sel(predictor="pysteps", threshold=0.5)) > float(
        s["CSI"].sel(predictor="persistence", threshold=0.5)
    )
    assert float(s["B-MSE"].sel(predictor="pysteps")) < float(
        s["B-MSE"].sel(predictor="persistence")
    )
    md = to_markdown(res, title="t")
    assert "| persistence |" in md and "| pysteps |" in md and "CSI 0.5" in md
    png = plot_skill(res, ds.store_path.parent / "skill.png")
    with Image.open(png) as im:
        assert im.size[0] > 500 and im.size[1] > 400


@pytest.mark.parametrize("scheme", ["irregular_input", "irregular_target", "irregular"])
def test_irregular_schemes_group_frames_by_lead(store, scheme):
    ds = _dataset(store, [DAYS[5]], scheme=scheme)
    assert len(ds) > 0
    preds = {"persistence": get_baseline("persistence"), "pysteps": get_baseline("pysteps")}
    res = evaluate_predictors(preds, ds, 4, progress=False)
    leads = res["lead_time"].values
    # 4 inputs / 6 targets: targets lie 1..(span - 1) slots after the last input
    assert len(leads) >= 6 and leads.min() >= 6 and leads.max() <= 6 * 14
    assert np.all(np.mod(leads, 6) == 0)
    for name in preds:
        assert int(res["n_frames"].sel(predictor=name).sum()) == len(ds) * 6
    assert np.isfinite(summarize(res)["CSI"].sel(threshold=0.5)).all()


def test_robustness_levels_and_level_zero_matches_clean(store):
    ds = _dataset(store, [DAYS[6]])
    preds = {"persistence": get_baseline("persistence")}
    levels = {"gaussian": [0.0, 0.1], "drop_frames": [0.0, 3.0]}
    rob = evaluate_robustness(preds, ds, 4, levels=levels, seed=1, progress=False)
    clean = evaluate_predictors(preds, ds, 4, progress=False)
    assert dict(rob.sizes)["corruption"] == 2 and dict(rob.sizes)["level_index"] == 2
    xr.testing.assert_allclose(
        rob["MSE"].sel(corruption="gaussian", level_index=0, drop=True), clean["MSE"]
    )
    noisy = summarize(rob)["MSE"].sel(corruption="gaussian", predictor="persistence")
    assert float(noisy.isel(level_index=1)) > float(noisy.isel(level_index=0))
    # dropping 3 of 4 inputs: persistence falls back to the only observed (older) frame
    dropped = summarize(rob)["MSE"].sel(corruption="drop_frames", predictor="persistence")
    assert float(dropped.isel(level_index=1)) > float(dropped.isel(level_index=0))


def test_evaluate_run_baselines_only_writes_reports(store, tmp_path):
    options = EvaluateOptions(
        split="test",
        scheme="regular",
        baselines=("persistence",),
        extra_lead_times=(42, 48),
        perturb={"salt_pepper": [0.0, 0.1]},
        in_frames=4,
        out_frames=6,
        progress=False,
    )
    out = evaluate_run(None, store, options, out_dir=tmp_path / "eval")
    names = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert names == sorted(
        [
            "results.nc",
            "results.md",
            "sequences.nc",
            "skill.png",
            "results_extra.nc",
            "robustness.nc",
            "robustness.md",
            "robustness.png",
        ]
    )
    reopened = xr.open_dataset(tmp_path / "eval" / "results.nc").load()
    xr.testing.assert_identical(reopened, out.results)
    assert list(out.extra["lead_time"].values) == [42.0, 48.0]
    md = (tmp_path / "eval" / "results.md").read_text()
    assert "## Lead times not trained on" in md


def test_extra_leads_off_grid_rejected(store, tmp_path):
    options = EvaluateOptions(
        baselines=("persistence",), extra_lead_times=(3,), in_frames=4, out_frames=6, progress=False
    )
    with pytest.raises(ValueError, match="multiples of the data cadence"):
        evaluate_run(None, store, options, out_dir=tmp_path)


def test_predictor_with_wrong_shape_is_reported(store):
    ds = _dataset(store, [DAYS[2]])

    def bad(x, t_in, t_out, input_mask=None):
        return torch.zeros(x.shape[0], 1, 1, SIZE, SIZE)

    with pytest.raises(ValueError, match="predictor 'bad' returned shape"):
        evaluate_predictors({"bad": bad}, ds, 2, progress=False)


def _write_run(run_dir, model_name="convgru"):
    import dataclasses

    from nowcast.configs import load_config
    from nowcast.models import get_model

    torch.manual_seed(0)
    cfg = load_config("small")
    model = get_model(model_name, cfg)
    run_dir.mkdir(parents=True)
    torch.save(
        {
            "format": 1,
            "model_name": model_name,
            "model_state": model.state_dict(),
            "config": json_roundtrip(dataclasses.asdict(cfg)),
            "meta": {"scheme": "regular", "epoch": 0},
        },
        run_dir / "best.pt",
    )
    return model.eval()


def json_roundtrip(d):
    import json

    return json.loads(json.dumps(d))


def test_load_run_restores_identical_model(tmp_path):
    from nowcast.runs import load_run

    original = _write_run(tmp_path / "run")
    model, meta = load_run(tmp_path / "run")
    assert meta["model_name"] == "convgru" and meta["epoch"] == 0
    x = torch.rand(1, 5, 1, 16, 16)
    t_in = torch.tensor([[-24.0, -18.0, -12.0, -6.0, 0.0]])
    t_out = torch.tensor([[6.0, 12.0]])
    with torch.no_grad():
        assert torch.equal(model(x, t_in, t_out), original(x, t_in, t_out))


def test_load_run_rejects_missing_checkpoint(tmp_path):
    from nowcast.runs import load_run

    with pytest.raises(ValueError, match="no checkpoint 'best.pt'"):
        load_run(tmp_path)


def test_cli_evaluates_run_with_baselines(store, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    _write_run(tmp_path / "run")
    args = [
        "evaluate",
        "--run",
        str(tmp_path / "run"),
        "--data",
        str(store),
        "--in-frames",
        "4",
        "--out-frames",
        "6",
        "--baselines",
        "persistence",
        "--extra-leads",
        "42",
        "--max-samples",
        "4",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out_dir = tmp_path / "run" / "eval" / "test_regular"
    res = xr.open_dataset(out_dir / "results.nc")
    assert list(res["predictor"].values) == ["convgru", "persistence"]
    assert res.attrs["n_samples"] == 4
    extra = xr.open_dataset(out_dir / "results_extra.nc")
    # the regular-only ConvGRU is asked for leads 6..42 and scored at 42
    assert list(extra["predictor"].values) == ["convgru", "persistence"]
    assert list(extra["lead_time"].values) == [42.0]
    assert "convgru: CSI(>=0.5 mm/h)" in result.output


def test_cli_baselines_only_needs_out(store):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(
        app, ["evaluate", "--baselines", "persistence", "--data", str(store)]
    )
    assert result.exit_code == 2 and "needs --out DIR" in result.output
