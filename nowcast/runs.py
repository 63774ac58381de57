"""Load a trained run directory (written by :func:`nowcast.training.train`) back into a model.

``RUN_DIR/best.pt`` is a dict of tensors and plain Python values, read with
:func:`nowcast.training.rundir.read_checkpoint` (``torch.load(..., weights_only=True)``, so
a checkpoint can never run code); its layout is described in :mod:`nowcast.training.rundir`.

Older or hand-made checkpoints may carry ``"config_name"`` (a shipped configuration name
or YAML path) instead of ``"config"``; both are accepted.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from nowcast.training.rundir import BEST_CHECKPOINT, read_checkpoint

__all__ = ["load_run"]


def _config_from_checkpoint(ckpt: dict[str, Any], path: Path):
    from nowcast.configs import ExperimentConfig, load_config

    if isinstance(ckpt.get("config"), dict):
        data = dict(ckpt["config"])
        known = {f.name for f in dataclasses.fields(ExperimentConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{path}: config has unknown key(s) {unknown}; expected a subset of {sorted(known)}"
            )
        try:
            return ExperimentConfig(**data)
        except TypeError as err:
            raise ValueError(f"{path}: cannot rebuild the experiment config: {err}") from err
    if isinstance(ckpt.get("config_name"), str):
        return load_config(ckpt["config_name"])
    raise ValueError(f"{path} holds neither a 'config' dict nor a 'config_name' string")


def load_run(
    run_dir: str | os.PathLike, checkpoint: str = BEST_CHECKPOINT, map_location: str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the trained model of a run directory, in eval mode.

    Parameters
    ----------
    run_dir : path
        Directory written by the training code.
    checkpoint : str
        File name inside ``run_dir`` (``best.pt`` or ``last.pt``).
    map_location : str
        Device the weights are loaded to.

    Returns
    -------
    model : torch.nn.Module
        ``model(x, t_in, t_out, input_mask=None)`` (docs/contracts.md, Predictor call contract), in eval mode.
    meta : dict
        ``{"model_name", "config" (ExperimentConfig), "path", **checkpoint["meta"]}``.

    Raises
    ------
    ValueError
        Missing or unreadable checkpoint, missing keys, or weights that do not fit the model.
    """
    from nowcast.models import get_model

    path = Path(run_dir) / checkpoint
    if not path.is_file():
        raise ValueError(f"no checkpoint {checkpoint!r} in run directory {run_dir}")
    ckpt = read_checkpoint(path, map_location=map_location)
    missing = [k for k in ("model_name", "model_state") if k not in ckpt]
    if missing:
        raise ValueError(f"{path} lacks key(s) {missing}; found {sorted(ckpt)}")
    config = _config_from_checkpoint(ckpt, path)
    model = get_model(str(ckpt["model_name"]), config)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit model {ckpt['model_name']!r}: {err}") from err
    model.eval()
    meta = dict(ckpt.get("meta") or {})
    meta.update({"model_name": str(ckpt["model_name"]), "config": config, "path": str(path)})
    return model, meta
