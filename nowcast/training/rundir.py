"""The run directory: its file names and the layout of its checkpoints, written and read.

This module is the one place that knows what a run directory holds; the training loop
(:mod:`nowcast.training.fit`, :mod:`nowcast.training.report`) writes it through the
functions here and :func:`nowcast.runs.load_run` reads it through :func:`read_checkpoint`.

Run directory layout
--------------------
::

    RUN_DIR/
      last.pt          state after the latest epoch: model, optimiser, scheduler, grad
                       scaler, RNG states, early-stopping state, history, settings,
                       config (plain dict), data fingerprint; resume from here
      best.pt          the epoch with the lowest validation loss: model_state, model_name,
                       config (plain dict), meta (epoch, val_loss, scheme, loss, seed,
                       frames, data fingerprint, settings, options, grid: the pixel
                       size, domain and cadence trained at, see
                       :mod:`nowcast.training.rungrid`; :func:`run_grid` reads it)
      metrics.csv      one row per epoch (train/val loss, val MSE/MAE, lr, samples/s, ...)
      metrics.json     the same rows plus the run description (model, config, scheme,
                       settings, the :class:`~nowcast.training.TrainOptions` as ``options``)
                       and the stop reason (max_epochs, early_stopping, time_budget,
                       diverged; running while the run is in progress)
      loss_curve.png   training and validation loss per epoch, best epoch marked; drawn
                       when an invocation ends (the tables are rewritten every epoch)

Checkpoints are written atomically (temporary file + ``os.replace``) and hold only
tensors and plain Python values, so ``torch.load(..., weights_only=True)`` reads them
(:func:`read_checkpoint`: a checkpoint can never run code)::

    best.pt: {"format": 1, "model_name": str, "model_state": state_dict,
              "config": dict (dataclasses.asdict of an ExperimentConfig), "meta": dict}
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nowcast.options import TrainOptions
from nowcast.training.settings import TrainSettings
from pipeline.atomic import atomic_write, atomic_write_text

__all__ = [
    "BEST_CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "LAST_CHECKPOINT",
    "LOSS_CURVE",
    "METRICS_CSV",
    "METRICS_JSON",
    "read_checkpoint",
    "run_grid",
]

CHECKPOINT_FORMAT = 1
"""Format number stored in every checkpoint the training loop writes."""

LAST_CHECKPOINT = "last.pt"
"""Resumable state after the latest epoch."""
BEST_CHECKPOINT = "best.pt"
"""The epoch with the lowest validation loss (what :func:`nowcast.runs.load_run` reads)."""
METRICS_CSV = "metrics.csv"
"""One row per epoch."""
METRICS_JSON = "metrics.json"
"""The rows plus the run description and the stop reason."""
LOSS_CURVE = "loss_curve.png"
"""Training and validation loss per epoch."""


# --------------------------------------------------------------------------- writing
def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _atomic_write_text(text: str, path: Path) -> None:
    atomic_write_text(path, text)


def save_best_checkpoint(
    path: Path,
    *,
    model_name: str,
    model: torch.nn.Module,
    config_dict: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """Write ``best.pt`` (layout in the module docstring), atomically."""
    _atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "model_name": model_name,
            "model_state": model.state_dict(),
            "config": config_dict,
            "meta": meta,
        },
        path,
    )


def save_last_checkpoint(
    path: Path,
    *,
    model_name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    early_stopping: Mapping[str, Any],
    rng: Mapping[str, Any],
    epoch: int,
    status: str,
    history: list[dict[str, Any]],
    best_val_loss: float,
    best_epoch: int | None,
    config_dict: dict[str, Any],
    settings: TrainSettings,
    data_fingerprint: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """Write ``last.pt``, everything an exact resume needs, atomically."""
    _atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "model_name": model_name,
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "scaler_state": scaler.state_dict(),
            "early_stopping": early_stopping,
            "rng": rng,
            "epoch": epoch,
            "status": status,
            "history": history,
            "best_val_loss": best_val_loss,
            "best_epoch": best_epoch,
            "config": config_dict,
            "settings": settings.to_dict(),
            "data_fingerprint": data_fingerprint,
            "meta": meta,
        },
        path,
    )


def _config_to_dict(config: Any) -> dict[str, Any]:
    """A plain, JSON-able dict of an ExperimentConfig (for weights_only checkpoints)."""
    if hasattr(config, "to_dict"):
        d = config.to_dict()
    elif dataclasses.is_dataclass(config):
        d = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        d = dict(config)
    else:
        raise ValueError(f"cannot turn a config of type {type(config).__name__} into a dict")
    return json.loads(json.dumps(d, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint config")


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict with ``torch.load(..., weights_only=True)``.

    The one reader of run-directory checkpoints (training resume and
    :func:`nowcast.runs.load_run` alike).

    Parameters
    ----------
    path : path
        A ``.pt`` file.
    map_location : str
        Device the tensors are loaded to.

    Returns
    -------
    dict
        The checkpoint.

    Raises
    ------
    ValueError
        The file cannot be read (corrupt, or it needs unpickling of code) or holds
        something other than a dict.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt file, or one that needs unpickling of code
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, expected a checkpoint dict")
    return ckpt


def run_grid(meta: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """The grid a run was trained at (``meta["grid"]``, :mod:`nowcast.training.rungrid`).

    Runs written before the grid was recorded have no ``grid``: their pixel size is
    unknown (``network_pixel_km`` None, not checked) and their cadence is assumed to be the
    configuration's ``cadence_minutes``; ``assumed`` says so.

    Parameters
    ----------
    meta : mapping
        The checkpoint's ``meta`` (:func:`nowcast.runs.load_run`'s second value).
    config : ExperimentConfig
        The run's configuration (``cadence_minutes``).

    Returns
    -------
    dict
        The record of :mod:`nowcast.training.rungrid`, plus ``assumed`` (str or None).
    """
    grid = meta.get("grid")
    if isinstance(grid, Mapping):
        return {**grid, "assumed": None}
    cadence = float(getattr(config, "cadence_minutes", 6.0))
    shape = (meta.get("data_fingerprint") or {}).get("shape")
    return {
        "pixel_km": None,
        "network_pixel_km": None,
        "domain_km": None,
        "shape": None if shape is None else [int(n) for n in shape],
        "cadence_minutes": cadence,
        "stores": [],
        "assumed": (
            "the run records no grid (written before it was recorded): its pixel size is "
            f"unknown and not checked; its cadence is assumed to be the configuration's "
            f"{cadence:g} min"
        ),
    }


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """A resumable training checkpoint (``last.pt``) of :data:`CHECKPOINT_FORMAT`."""
    ckpt = read_checkpoint(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a training checkpoint of format {CHECKPOINT_FORMAT} "
            f"(got format {ckpt.get('format')})"
        )
    return ckpt


def _check_resumable(
    ckpt: Mapping[str, Any],
    model_name: str,
    config_dict: dict[str, Any],
    settings: TrainSettings,
    scheme: str,
    fingerprint: dict[str, Any],
    options: TrainOptions,
) -> None:
    problems = []
    if ckpt["model_name"] != model_name:
        problems.append(f"model {ckpt['model_name']!r} != {model_name!r}")
    if ckpt["config"] != config_dict:
        problems.append("the model configuration differs")
    if ckpt["meta"].get("scheme") != scheme:
        problems.append(f"scheme {ckpt['meta'].get('scheme')!r} != {scheme!r}")
    if ckpt["meta"].get("seed") != options.seed:
        problems.append(f"seed {ckpt['meta'].get('seed')!r} != {options.seed!r}")
    old = {k: v for k, v in ckpt["settings"].items() if k != "max_epochs"}
    new = {k: v for k, v in settings.to_dict().items() if k != "max_epochs"}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            problems.append(f"train setting {key}: {old.get(key)!r} != {new.get(key)!r}")
    old_fp = ckpt["data_fingerprint"]
    for key in ("sha256", "n_times", "shape"):
        if old_fp.get(key) != fingerprint.get(key):
            problems.append(
                f"data differ ({key}: {old_fp.get(key)!r} in the checkpoint, "
                f"{fingerprint.get(key)!r} in {fingerprint['store']})"
            )
            break
    if problems:
        raise ValueError(
            "cannot resume: the checkpoint does not match this request: " + "; ".join(problems)
        )
