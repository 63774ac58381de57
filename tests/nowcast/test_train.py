"""Training loop: exact resume, early stopping, divergence, time budget, torchrun (DDP)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nowcast.configs import load_config
from nowcast.training import (
    EarlyStopping,
    TrainingDivergedError,
    TrainOptions,
    TrainSettings,
    get_schedule,
    train,
)
from nowcast.training import fit as train_module
from pipeline.schema import resampled_dataset, resampled_encoding

SIZE = 16
FRACTIONS = (1 / 3, 1 / 3, 1 / 3)  # 3 days: one for training, one for validation, one for test

_TINY_CONFIG = """\
name: tiny
image_size: 16
in_frames: 3
out_frames: 3
cadence_minutes: 6
models:
  common:
    channels: [4, 4, 4]
    down: [[1, 4, 3, 2, 1], [4, 4, 3, 2, 1], [4, 4, 3, 2, 1]]
    up: [[4, 4, 4, 2, 1, 0], [4, 4, 4, 2, 1, 0], [4, 4, 3, 2, 1, 1]]
    head_channels: 4
    links: [2, 2, 2]
    mda_window: 3
    ode_hidden: [4, 4, 4]
    ode_layers: 2
    ode_step_minutes: 6
train:
  optimizer: adam
  lr: 1.0e-2
  betas: [0.9, 0.999]
  batch_size: 2
  max_epochs: 4
  iters_per_epoch: 3
  val_samples: 4
  early_stopping_patience: 10
  lr_schedule: plateau
  grad_clip: 1.0
"""


def _write_tiny_store(path: Path, n_days: int = 3, gaps=(100, 101)) -> Path:
    """A resampled store (resampled schema), 16 x 16, a blob moving 1 px east per 6-min frame."""
    times = pd.date_range("2024-06-01", periods=240 * n_days, freq="6min")
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    refl = np.empty((len(times), SIZE, SIZE), np.float32)
    for k in range(len(times)):
        dx = np.abs(xx - k % SIZE)
        dx = np.minimum(dx, SIZE - dx)
        refl[k] = -10.0 + 55.0 * np.exp(-(dx**2 + (yy - SIZE / 2) ** 2) / 18.0)
    observed = np.ones(len(times), bool)
    observed[list(gaps)] = False
    ds = resampled_dataset(times, refl, observed=observed)
    ds.to_zarr(path, mode="w", consolidated=False, encoding=resampled_encoding(ds))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(store path, config path) shared by the tests of this module."""
    root = tmp_path_factory.mktemp("train")
    store = _write_tiny_store(root / "tiny.zarr")
    config = root / "tiny.yaml"
    config.write_text(_TINY_CONFIG)
    return store, config


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions run far faster on one thread on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _options(**kw) -> TrainOptions:
    return TrainOptions(progress=False, split_fractions=FRACTIONS, seed=7, **kw)


def _state(run_dir: Path, name: str = "last.pt") -> dict:
    return torch.load(run_dir / name, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- resume
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tiny, tmp_path):
    store, config = tiny
    straight = train("trajgru", config, store, tmp_path / "a", options=_options(epochs=4))
    train("trajgru", config, store, tmp_path / "b", options=_options(epochs=2))
    resumed = train(
        "trajgru", config, store, tmp_path / "b", options=_options(epochs=4, resume=True)
    )

    assert straight.epochs_completed == resumed.epochs_completed == 4
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, tensor in a["model_state"].items():
        assert torch.equal(tensor, b["model_state"][key]), key
    for key, value in a["optimizer_state"]["state"].items():
        assert torch.equal(value["exp_avg_sq"], b["optimizer_state"]["state"][key]["exp_avg_sq"])
    assert [r["val_loss"] for r in straight.history] == [r["val_loss"] for r in resumed.history]


def test_a_different_seed_gives_different_weights(tiny, tmp_path):
    """Guards the resume test: weights do depend on the seed (data order, initialisation)."""
    store, config = tiny
    train("convgru", config, store, tmp_path / "a", options=_options(epochs=1))
    other = TrainOptions(progress=False, split_fractions=FRACTIONS, seed=8, epochs=1)
    train("convgru", config, store, tmp_path / "b", options=other)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert any(not torch.equal(v, b["model_state"][k]) for k, v in a["model_state"].items())


def test_existing_run_is_not_overwritten_without_resume(tiny, tmp_path):
    store, config = tiny
    train("convgru", config, store, tmp_path / "run", options=_options(epochs=1))
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train("convgru", config, store, tmp_path / "run", options=_options(epochs=2))


def test_resume_refuses_another_seed(tiny, tmp_path):
    store, config = tiny
    train("convgru", config, store, tmp_path / "run", options=_options(epochs=1))
    other = TrainOptions(progress=False, split_fractions=FRACTIONS, seed=1, epochs=2, resume=True)
    with pytest.raises(ValueError, match="seed 7 != 1"):
        train("convgru", config, store, tmp_path / "run", options=other)


def test_resume_refuses_other_data(tiny, tmp_path):
    store, config = tiny
    train("convgru", config, store, tmp_path / "run", options=_options(epochs=1))
    other = _write_tiny_store(tmp_path / "other.zarr", gaps=(100, 101, 102))
    with pytest.raises(ValueError, match="data differ"):
        train("convgru", config, other, tmp_path / "run", options=_options(epochs=2, resume=True))


# --------------------------------------------------------------------------- outputs
def test_run_directory_holds_metrics_and_best_checkpoint(tiny, tmp_path):
    store, config = tiny
    result = train("trajgru_ode", config, store, tmp_path / "run", options=_options(epochs=3))
    run = tmp_path / "run"
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    val = [float(r["val_loss"]) for r in rows]
    assert val == pytest.approx([h["val_loss"] for h in result.history])
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["stopped_reason"] == "max_epochs"
    assert doc["best_epoch"] == int(np.argmin(val)) + 1 == result.best_epoch
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    best = _state(run, "best.pt")
    assert best["model_name"] == "trajgru_ode"
    assert best["meta"]["epoch"] == result.best_epoch
    assert best["meta"]["val_loss"] == pytest.approx(min(val))
    assert best["config"]["name"] == "tiny"


def test_best_checkpoint_loads_with_load_run(tiny, tmp_path):
    from nowcast.runs import load_run

    store, config = tiny
    train("trajgru", config, store, tmp_path / "run", options=_options(epochs=1))
    model, meta = load_run(tmp_path / "run")
    saved = _state(tmp_path / "run", "best.pt")["model_state"]
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[key]), key
    assert meta["model_name"] == "trajgru"


# --------------------------------------------------------------------------- stopping
def test_time_budget_ends_the_epoch_early_and_still_validates(tiny, tmp_path):
    store, config = tiny
    result = train(
        "convgru",
        config,
        store,
        tmp_path / "run",
        options=_options(epochs=4, time_budget_minutes=1e-6),
    )
    assert result.stopped_reason == "time_budget"
    assert result.epochs_completed == 1
    assert result.history[0]["steps"] == 1
    assert result.history[0]["truncated"] is True
    assert (tmp_path / "run" / "best.pt").is_file()


def test_huge_learning_rate_stops_with_a_clear_error(tiny, tmp_path):
    store, config = tiny
    with pytest.raises(TrainingDivergedError, match=r"at epoch 1, step \d+"):
        train("convgru", config, store, tmp_path / "run", options=_options(epochs=2, lr=1e30))


def test_nan_loss_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    store, config = tiny
    real = train_module.get_loss
    calls = {"train": 0}

    def poisoned(name):
        loss_fn = real(name)

        def wrapper(pred, target, mask=None, weights=None):
            loss = loss_fn(pred, target, mask, weights)
            if torch.is_grad_enabled():  # training steps (validation runs under no_grad)
                calls["train"] += 1
                if calls["train"] == 5:  # epoch 2 (3 steps per epoch), step 2
                    return loss * float("nan")
            return loss

        return wrapper

    monkeypatch.setattr(train_module, "get_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 2.*last\.pt keeps"):
        train("convgru", config, store, run, options=_options(epochs=3))
    last = _state(run)
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model_state"].values())
    best = _state(run, "best.pt")
    for key, tensor in best["model_state"].items():
        assert torch.equal(tensor, last["model_state"][key])
    assert json.loads((run / "metrics.json").read_text())["stopped_reason"] == "diverged"


def test_early_stopping_after_two_rises_in_a_row():
    stopper = EarlyStopping(patience=2)
    decisions = [stopper.step(v) for v in [1.0, 0.8, 0.9, 0.7, 0.75, 0.8, 0.6]]
    # rises at 0.9 (one), 0.75 (one after a fall), 0.8 (second in a row -> stop)
    assert decisions == [False, False, False, False, False, True, False]


def test_early_stopping_state_round_trips():
    stopper = EarlyStopping(patience=2)
    for v in [1.0, 1.1]:
        stopper.step(v)
    restored = EarlyStopping(patience=5)
    restored.load_state_dict(stopper.state_dict())
    assert restored.step(1.2) is True


def test_early_stopping_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        EarlyStopping().step(float("nan"))


def test_early_stopping_ends_a_run(tiny, tmp_path, monkeypatch):
    store, config = tiny
    scripted = iter([0.5, 0.6, 0.7, 0.1])

    def fake_validate(*args, **kwargs):
        return {"val_loss": next(scripted), "val_mse": 0.0, "val_mae": 0.0}

    monkeypatch.setattr(train_module, "_validate", fake_validate)
    options = TrainOptions(progress=False, split_fractions=FRACTIONS, seed=7, epochs=4)
    cfg = load_config(config)
    cfg.train["early_stopping_patience"] = 2
    result = train("convgru", cfg, store, tmp_path / "run", options=options)
    assert result.stopped_reason == "early_stopping"
    assert result.epochs_completed == 3
    assert result.best_epoch == 1


# --------------------------------------------------------------------------- settings
def test_thesis_settings_come_from_the_hko7_config():
    settings = TrainSettings.from_mapping(load_config("hko7").train)
    assert settings.lr == 1e-4
    assert settings.betas == (0.5, 0.999)
    assert (settings.batch_size, settings.max_epochs, settings.iters_per_epoch) == (4, 25, 8000)
    assert settings.loss == "thesis"
    assert settings.loss_weights == {"mse": 1.0, "mae": 1.0, "ssim": 0.05}


def test_loss_override_drops_the_weights_of_the_config_loss():
    # hko7 trains with the thesis loss and its weights (mse, mae, ssim)
    settings = TrainSettings.from_mapping(load_config("hko7").train, loss="balanced")
    assert settings.loss == "balanced"
    assert settings.loss_weights is None


def test_small_config_trains_with_the_balanced_loss_and_can_switch_back():
    assert TrainSettings.from_mapping(load_config("small").train).loss == "balanced"
    settings = TrainSettings.from_mapping(load_config("small").train, loss="thesis")
    assert settings.loss == "thesis"
    assert settings.loss_weights is None


def test_loss_weights_must_fit_the_loss():
    with pytest.raises(ValueError, match=r"\['ssim'\].*valid keys are \['mae', 'mse'\]"):
        TrainSettings(loss="balanced", loss_weights={"ssim": 0.05})


def test_unknown_train_key_lists_valid_keys():
    with pytest.raises(ValueError, match="valid keys are.*iters_per_epoch"):
        TrainSettings.from_mapping({"learning_rate": 1e-3})


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ValueError, match="plateau, step, constant"):
        get_schedule("cosine")


def test_amp_on_cpu_is_refused(tiny, tmp_path):
    store, config = tiny
    with pytest.raises(ValueError, match="amp=True.*needs device 'cuda'"):
        train("convgru", config, store, tmp_path / "run", options=_options(amp=True))


def test_regular_only_model_refuses_irregular_scheme(tiny, tmp_path):
    store, config = tiny
    with pytest.raises(ValueError, match="regular time steps only"):
        train("trajgru", config, store, tmp_path / "r", scheme="irregular", options=_options())


# --------------------------------------------------------------------------- torchrun
@pytest.mark.slow
def test_two_process_torchrun_matches_one_process(tiny, tmp_path):
    _, config = tiny
    # no gaps: every rank then sees the same number of valid pixels, and the mean of the two
    # per-rank losses is exactly the one-process loss of the global batch
    store = _write_tiny_store(tmp_path / "full.zarr", gaps=())
    one = train("convgru", config, store, tmp_path / "one", options=_options(epochs=2))

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "flows.cli",
        "train",
        "--model",
        "convgru",
        "--config",
        str(config),
        "--data",
        str(store),
        "--out",
        str(tmp_path / "two"),
        "--epochs",
        "2",
        "--seed",
        "7",
        "--split-fractions",
        ",".join(str(f) for f in FRACTIONS),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert doc["world_size"] == 2
    two_hist = doc["epochs"]
    # epoch 1 starts from identical weights: the losses agree to float rounding
    assert two_hist[0]["train_loss"] == pytest.approx(one.history[0]["train_loss"], rel=1e-5)
    assert two_hist[0]["val_loss"] == pytest.approx(one.history[0]["val_loss"], rel=1e-5)
    # later, Adam's normalised steps turn rounding in near-zero gradients into updates of up
    # to lr (1e-2) per step: losses still agree closely, weights within a few steps' size
    assert two_hist[1]["train_loss"] == pytest.approx(one.history[1]["train_loss"], rel=1e-3)
    assert two_hist[1]["val_loss"] == pytest.approx(one.history[1]["val_loss"], rel=1e-3)
    w1 = _state(tmp_path / "one")["model_state"]
    w2 = _state(tmp_path / "two")["model_state"]
    for key, tensor in w1.items():
        torch.testing.assert_close(w2[key], tensor, rtol=0, atol=1e-2)
