"""Real radar as training data: the run's grid, several stores, crops, ``--init``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from nowcast.advection import advect
from nowcast.configs import load_config
from nowcast.evaluate import evaluate_run
from nowcast.models import get_model
from nowcast.options import EvaluateOptions
from nowcast.runs import load_run
from nowcast.training import TrainOptions, train
from nowcast.training.rundir import read_checkpoint, run_grid
from nowcast.training.rungrid import GridMismatchError, check_store
from nowcast.training.stores import CroppedDataset
from pipeline.dataset import RadarSequenceDataset
from pipeline.schema import resampled_dataset, resampled_encoding
from tests.nowcast.test_train import _TINY_CONFIG, SIZE, _write_tiny_store

FRACTIONS = (1 / 3, 1 / 3, 1 / 3)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(store, config, trained trajgru run, trained trajgru_ode run)."""
    root = tmp_path_factory.mktemp("stores")
    store = _write_tiny_store(root / "tiny.zarr")
    config = root / "tiny.yaml"
    config.write_text(_TINY_CONFIG)
    opts = _options(epochs=1)
    train("trajgru", config, store, root / "run", options=opts)
    train("trajgru_ode", config, store, root / "ode", options=opts)
    return store, config, root / "run", root / "ode"


def _options(**kw) -> TrainOptions:
    kw.setdefault("iters_per_epoch", 2)
    return TrainOptions(progress=False, split_fractions=FRACTIONS, seed=7, **kw)


def _restamped(src: Path, dst: Path, *, scale: float = 1.0, cadence: float | None = None) -> Path:
    """A copy of *src* with pixels *scale* times larger and/or another cadence."""
    ds = xr.open_zarr(src, consolidated=False).load()
    times = ds.indexes["time"]
    if cadence is not None:
        times = pd.date_range(times[0], periods=len(times), freq=f"{cadence:g}min")
    out = resampled_dataset(
        times,
        ds["reflectivity"].values,
        observed=ds["observed"].values,
        cadence_minutes=cadence or ds.attrs["cadence_minutes"],
    )
    out = out.assign_coords(x=out["x"] * scale, y=out["y"] * scale)
    out.to_zarr(dst, mode="w", consolidated=False, encoding=resampled_encoding(out))
    return dst


def _eval_options(**kw) -> EvaluateOptions:
    return EvaluateOptions(
        split="test", split_fractions=FRACTIONS, max_samples=2, progress=False, **kw
    )


# --------------------------------------------------------------------------- the run's grid
def test_a_run_records_its_pixel_size_domain_and_cadence(tiny):
    store, _, run, _ = tiny
    grid = read_checkpoint(run / "best.pt")["meta"]["grid"]
    # resampled_dataset's default grid: the HKO-7 domain (512 km) on 16 x 16 pixels
    assert grid["pixel_km"] == pytest.approx(512 / SIZE)
    assert grid["network_pixel_km"] == pytest.approx(32.0)
    assert grid["domain_km"] == [pytest.approx(512.0), pytest.approx(512.0)]
    assert grid["shape"] == [SIZE, SIZE] and grid["cadence_minutes"] == 6.0
    assert [s["store"] for s in grid["stores"]] == [str(store)]
    assert "+proj=aeqd" in grid["projection"]  # the HKO-7 grid's azimuthal equidistant


def test_an_old_run_without_a_grid_loads_with_a_stated_assumption(tiny, tmp_path):
    store, _, run, _ = tiny
    ckpt = read_checkpoint(run / "best.pt")
    del ckpt["meta"]["grid"]
    (tmp_path / "old").mkdir()
    torch.save(ckpt, tmp_path / "old" / "best.pt")
    model, meta = load_run(tmp_path / "old")
    grid = run_grid(meta, meta["config"])
    assert grid["network_pixel_km"] is None and grid["cadence_minutes"] == 6.0
    assert "pixel size is unknown and not checked" in grid["assumed"]
    # evaluating it on any pixel size works, and the results say what was assumed
    other = _restamped(store, tmp_path / "big.zarr", scale=2.0)
    out = evaluate_run(tmp_path / "old", other, _eval_options(), out_dir=tmp_path / "ev")
    assert "records no grid" in out.results.attrs["grid_notes"]


def test_evaluating_on_another_pixel_size_is_refused_naming_both(tiny, tmp_path):
    store, _, run, _ = tiny
    other = _restamped(store, tmp_path / "big.zarr", scale=2.0)
    with pytest.raises(GridMismatchError, match=r"trained at 32 km per network pixel .* 64 km"):
        evaluate_run(run, other, _eval_options(), out_dir=tmp_path / "ev")


def test_another_pixel_size_is_scored_when_allowed_and_recorded(tiny, tmp_path):
    store, _, run, _ = tiny
    other = _restamped(store, tmp_path / "big.zarr", scale=2.0)
    opts = _eval_options(allow_other_grid=True)
    out = evaluate_run(run, other, opts, out_dir=tmp_path / "ev")
    assert "64 km per network pixel" in out.results.attrs["grid_notes"]
    again = xr.open_dataset(tmp_path / "ev" / "results.nc")
    assert again.attrs["grid_notes"] == out.results.attrs["grid_notes"]


def test_cli_refuses_another_pixel_size_with_one_line(tiny, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    store, _, run, _ = tiny
    other = _restamped(store, tmp_path / "big.zarr", scale=2.0)
    args = ["evaluate", "--run", str(run), "--data", str(other), "--split-fractions"]
    args += ["0.3333,0.3333,0.3334", "--max-samples", "2", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: run ")
    assert "32 km" in lines[0] and "64 km" in lines[0]


def test_a_regular_only_model_refuses_another_cadence(tiny, tmp_path):
    store, _, run, _ = tiny
    other = _restamped(store, tmp_path / "five.zarr", cadence=5.0)
    with pytest.raises(GridMismatchError, match=r"6-min cadence; .* 5-min cadence"):
        evaluate_run(run, other, _eval_options(), out_dir=tmp_path / "ev")


def test_a_continuous_time_model_adapts_to_another_cadence(tiny, tmp_path):
    store, _, _, ode = tiny
    other = _restamped(store, tmp_path / "five.zarr", cadence=5.0)
    out = evaluate_run(ode, other, _eval_options(), out_dir=tmp_path / "ev")
    notes = out.results.attrs["grid_notes"]
    assert "6-min cadence" in notes and "5-min cadence" in notes and "adapted" in notes
    assert list(out.results["lead_time"].values) == [5.0, 10.0, 15.0]


def test_lagrangian_store_motion_is_rescaled_to_the_model_cadence():
    """Motion of 1 px per 5-min store step, a 6-min model: a 20-min lead moves 4 px."""
    model = get_model("trajgru_ode", load_config("small_lagrangian")).eval()
    model.motion_cadence_minutes = 5.0
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 5, 1, 80, 80), dtype=np.float32))
    tin = ((torch.arange(5) - 4) * 5.0)[None].float()
    tout = torch.tensor([[5.0, 10.0, 20.0]])
    v = torch.zeros(1, 2, 80, 80)
    v[:, 0] = 1.0
    with torch.no_grad():
        y = model(x, tin, tout, motion=v)
    want = advect(x[:, -1], v, [1.0, 2.0, 4.0])  # store steps of 5 min
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)


def test_check_store_accepts_the_same_grid_within_one_percent():
    run = {"network_pixel_km": 6.4, "cadence_minutes": 6.0}
    store = {"store": "s", "network_pixel_km": 6.45, "cadence_minutes": 6.0}
    assert check_store(run, store, continuous_time=False) == []


# --------------------------------------------------------------------------- several stores
def test_training_on_two_stores_uses_the_windows_of_both(tiny, tmp_path):
    store, config, _, _ = tiny
    second = _write_tiny_store(tmp_path / "second.zarr", gaps=(5,))
    train("trajgru", config, [store, second], tmp_path / "run", options=_options(epochs=1))
    meta = read_checkpoint(tmp_path / "run" / "best.pt")["meta"]
    one = RadarSequenceDataset(store, split="train", n_in=3, n_out=3, fractions=FRACTIONS)
    two = RadarSequenceDataset(second, split="train", n_in=3, n_out=3, fractions=FRACTIONS)
    assert meta["train_samples"] == len(one) + len(two)
    stores = [fp["store"] for fp in meta["data_fingerprint"]["stores"]]
    assert stores == [str(Path(store).resolve()), str(second.resolve())]
    assert len(meta["grid"]["stores"]) == 2


def test_a_store_shorter_than_the_window_is_named_and_skipped(tiny, tmp_path, caplog):
    store, config, _, _ = tiny
    short = tmp_path / "short.zarr"
    times = pd.date_range("2024-07-01", periods=4, freq="6min")  # 4 slots < 3 + 3
    ds = resampled_dataset(times, np.zeros((4, SIZE, SIZE), np.float32) - 10.0)
    ds.to_zarr(short, mode="w", consolidated=False, encoding=resampled_encoding(ds))
    with caplog.at_level(logging.WARNING, logger="nowcast.training.stores"):
        train("trajgru", config, [short, store], tmp_path / "run", options=_options(epochs=1))
    assert f"skipping store {short}" in caplog.text and "no window of 6 frames" in caplog.text
    with pytest.raises(ValueError, match=r"no training window in .*short\.zarr"):
        train("trajgru", config, [short], tmp_path / "run2", options=_options(epochs=1))


def test_stores_of_different_pixel_sizes_need_allow_other_grid(tiny, tmp_path):
    store, config, _, _ = tiny
    big = _restamped(store, tmp_path / "big.zarr", scale=2.0)
    with pytest.raises(GridMismatchError, match=r"different pixel sizes: .* 32 km .* 64 km"):
        train("trajgru", config, [store, big], tmp_path / "run", options=_options(epochs=1))
    opts = _options(epochs=1, allow_other_grid=True)
    train("trajgru", config, [store, big], tmp_path / "run", options=opts)
    grid = read_checkpoint(tmp_path / "run" / "best.pt")["meta"]["grid"]
    assert grid["network_pixel_km"] is None
    assert [g["network_pixel_km"] for g in grid["stores"]] == [32.0, 64.0]


# --------------------------------------------------------------------------- crops
def test_crops_are_seeded_in_bounds_and_cut_the_same_window(tiny):
    store, *_ = tiny
    full = RadarSequenceDataset(
        store, split="train", n_in=3, n_out=3, fractions=FRACTIONS, with_motion=False
    )
    crops = CroppedDataset(full, 8, seed=3)
    assert crops.per_window == 4 and len(crops) == 4 * len(full)
    again = CroppedDataset(full, 8, seed=3)
    positions = [crops.position(i) for i in range(len(crops))]
    assert positions == [again.position(i) for i in range(len(crops))]
    assert all(0 <= r <= 8 and 0 <= c <= 8 for r, c in positions)
    assert len(set(positions)) > 1
    r, c = crops.position(5)
    item, whole = crops[5], full[1]
    assert item[0].shape == (3, 1, 8, 8)
    assert torch.equal(item[0], whole[0][..., r : r + 8, c : c + 8])
    assert torch.equal(item[5], whole[5][..., r : r + 8, c : c + 8])


def test_training_on_crops_records_the_crop_and_skips_small_stores(tiny, tmp_path, caplog):
    store, config, _, _ = tiny
    opts = _options(epochs=1, crop=8)
    train("trajgru", config, store, tmp_path / "run", options=opts)
    meta = read_checkpoint(tmp_path / "run" / "best.pt")["meta"]
    one = RadarSequenceDataset(store, split="train", n_in=3, n_out=3, fractions=FRACTIONS)
    assert meta["train_samples"] == 4 * len(one)
    assert meta["grid"]["shape"] == [8, 8] and meta["grid"]["domain_km"] == [256.0, 256.0]
    with caplog.at_level(logging.WARNING, logger="nowcast.training.stores"):
        with pytest.raises(ValueError, match="no training window"):
            train("trajgru", config, store, tmp_path / "r2", options=_options(epochs=1, crop=32))
    assert "smaller than the 32 x 32 crop" in caplog.text
    with pytest.raises(ValueError, match=r"--crop must be a positive number of pixels, got 0"):
        train("trajgru", config, store, tmp_path / "r3", options=_options(crop=0))


# --------------------------------------------------------------------------- --init
def test_init_starts_from_the_run_and_train_only_keeps_the_rest(tiny, tmp_path):
    store, config, run, _ = tiny
    start = read_checkpoint(run / "best.pt")["model_state"]
    prefix = sorted(start)[0].split(".")[0]
    opts = _options(epochs=1, init=str(run), train_only=(prefix,), lr=1e-2)
    train("trajgru", config, store, tmp_path / "ft", options=opts)
    ckpt = read_checkpoint(tmp_path / "ft" / "best.pt")
    after = ckpt["model_state"]
    kept = [k for k in start if not k.startswith(prefix)]
    moved = [k for k in start if k.startswith(prefix) and start[k].is_floating_point()]
    assert kept and moved
    for key in kept:
        assert torch.equal(after[key], start[key]), key
    assert any(not torch.equal(after[k], start[k]) for k in moved)
    assert ckpt["meta"]["init"]["run"] == str(run.resolve())
    assert ckpt["meta"]["settings"]["lr"] == 1e-2


def test_init_refuses_another_model_and_a_missing_run(tiny, tmp_path):
    store, config, run, _ = tiny
    with pytest.raises(ValueError, match=r"holds model 'trajgru', not 'convgru'"):
        train("convgru", config, store, tmp_path / "a", options=_options(init=str(run)))
    with pytest.raises(ValueError, match=r"no best\.pt in that directory"):
        train("trajgru", config, store, tmp_path / "b", options=_options(init=str(tmp_path)))


def test_init_from_another_pixel_size_needs_allow_other_grid(tiny, tmp_path):
    store, config, run, _ = tiny
    big = _restamped(store, tmp_path / "big.zarr", scale=2.0)
    with pytest.raises(GridMismatchError, match=r"--init .* 32 km .* 64 km"):
        train("trajgru", config, big, tmp_path / "a", options=_options(init=str(run)))
    opts = _options(epochs=1, init=str(run), allow_other_grid=True)
    train("trajgru", config, big, tmp_path / "b", options=opts)
    notes = read_checkpoint(tmp_path / "b" / "best.pt")["meta"]["init"]["notes"]
    assert len(notes) == 1 and "64 km per network pixel" in notes[0]


def test_train_only_that_matches_nothing_lists_the_names(tiny, tmp_path):
    store, config, _, _ = tiny
    with pytest.raises(ValueError, match=r"--train-only nothing matches no parameter"):
        train("trajgru", config, store, tmp_path / "a", options=_options(train_only=("nothing",)))


def test_cli_trains_on_two_stores_from_a_run(tiny, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    store, config, run, _ = tiny
    second = _write_tiny_store(tmp_path / "second.zarr", gaps=(5,))
    args = ["train", "--model", "trajgru", "--config", str(config), "--data", str(store)]
    args += ["--data", str(second), "--out", str(tmp_path / "ft"), "--init", str(run)]
    args += ["--epochs", "1", "--iters-per-epoch", "1", "--split-fractions", "0.3333,0.3333,0.3334"]
    args += ["--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = read_checkpoint(tmp_path / "ft" / "best.pt")["meta"]
    assert meta["init"]["run"] == str(run.resolve())
    assert len(meta["data_fingerprint"]["stores"]) == 2


# --------------------------------------------------------------------------- change scale
def test_change_scale_zero_is_the_extrapolation_whatever_the_network():
    """With the change switched off a trained-looking network is ignored: the forecast is
    the extrapolation of the last frame (no damping learned yet)."""
    cfg = load_config("small_lagrangian")
    model = get_model("trajgru_ode", cfg).eval()
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05)  # any weights: not used
    model.change_scale = 0.0
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((1, 5, 1, 80, 80), dtype=np.float32))
    tin = ((torch.arange(5) - 4) * 6.0)[None].float()
    tout = torch.tensor([[6.0, 12.0]])
    v = torch.zeros(1, 2, 80, 80)
    v[:, 1] = 0.5
    with torch.no_grad():
        y = model(x, tin, tout, motion=v)
        model.change_scale = 1.0
        y_net = model(x, tin, tout, motion=v)
    torch.testing.assert_close(y, advect(x[:, -1], v, [1.0, 2.0]), rtol=0, atol=1e-6)
    assert not torch.allclose(y_net, y)


def test_change_scale_comes_from_the_config_and_survives_a_run(tiny, tmp_path):
    store, config, _, _ = tiny
    text = (
        Path(config)
        .read_text()
        .replace(
            "    ode_step_minutes: 6\n",
            "    ode_step_minutes: 6\n    residual: true\n    lagrangian: true\n    lagrangian_change_scale: 0.0\n",
        )
    )
    lag = tmp_path / "lag.yaml"
    lag.write_text(text)
    train("trajgru_ode", lag, store, tmp_path / "run", options=_options(epochs=1))
    model, _ = load_run(tmp_path / "run")
    assert model.change_scale == 0.0
    before = load_run(tmp_path / "run")[0].smoothing.detach().abs().sum()
    assert float(before) > 0  # only the damping table learned (the network is not run)


def test_probability_matching_gives_each_lead_the_last_frames_values_by_rank():
    from nowcast.models.lagrangian import match_distribution

    y = torch.tensor([0.1, 0.5, 0.3, 0.9]).view(1, 1, 1, 2, 2).repeat(1, 2, 1, 1, 1)
    y[0, 1, 0, 0, 0] = 0.7  # second lead: ranks 3, 1, 2 and the masked pixel
    ref = torch.tensor([0.2, 0.6, 0.4, 0.0]).view(1, 1, 2, 2)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 2, 2)
    out = match_distribution(y, ref, mask)
    assert out[0, 0, 0].flatten().tolist() == pytest.approx([0.2, 0.6, 0.4, 0.9])
    assert out[0, 1, 0].flatten().tolist() == pytest.approx([0.6, 0.4, 0.2, 0.9])


def test_damping_scales_set_the_table_and_bad_scales_are_refused():
    from nowcast.models.lagrangian import LagrangianNowcaster

    net = torch.nn.Identity()
    wide = LagrangianNowcaster(net, grid=8, damping_scales=(0, 1, 2, 4, 8, 16))
    assert wide.scales == (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
    assert tuple(wide.smoothing.shape) == (20, 6)
    with pytest.raises(ValueError, match=r"damping_scales must start with 0"):
        LagrangianNowcaster(net, grid=8, damping_scales=(1, 2))


def test_forecast_refuses_a_store_of_another_pixel_size(tiny, tmp_path):
    from nowcast.forecast import make_forecast, run_predictor

    store, _, run, _ = tiny
    predictor = run_predictor(run)
    assert predictor.run_grid["network_pixel_km"] == pytest.approx(32.0)
    issue = xr.open_zarr(store, consolidated=False).indexes["time"][200]
    same = make_forecast(predictor, store, issue, [6, 12])
    assert same.sizes["lead_time"] == 2
    other = _restamped(store, tmp_path / "big.zarr", scale=2.0)
    with pytest.raises(GridMismatchError, match=r"32 km per network pixel .* 64 km .* train a run"):
        make_forecast(predictor, other, issue, [6, 12])
