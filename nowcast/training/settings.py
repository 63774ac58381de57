"""What to optimise and what came out: :class:`TrainSettings`, :class:`TrainResult` and
:class:`TrainingDivergedError` (see :mod:`nowcast.training`).

:class:`TrainSettings` is the config's ``train:`` mapping (the thesis's optimisation
settings). What a caller chooses per invocation (overrides, seed, device, budget, splits)
is :class:`nowcast.options.TrainOptions`, re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nowcast.losses import DEFAULT_WEIGHTS, get_loss
from nowcast.options import TrainOptions
from nowcast.training.schedules import get_schedule

__all__ = ["TrainOptions", "TrainResult", "TrainSettings", "TrainingDivergedError"]


class TrainingDivergedError(RuntimeError):
    """The loss (or gradient) became NaN or infinite; the run was stopped."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings: the config's ``train:`` mapping (thesis defaults).

    Attributes
    ----------
    optimizer : str
        Only ``adam`` (the thesis's optimiser).
    lr : float
        Adam learning rate (thesis: 1e-4).
    betas : tuple of float
        Adam betas; the thesis's "momentum" is beta1 (0.5 for HKO-7, 0.9 for MovingMNIST).
    weight_decay : float
        Adam weight decay (0).
    batch_size : int
        GLOBAL batch size (thesis: 4); divided evenly among DDP processes.
    max_epochs : int
        Upper bound on epochs (thesis: 25).
    iters_per_epoch : int
        Optimiser steps per epoch (thesis: 8000).
    val_samples : int or None
        Validation samples per epoch (evenly spaced over the split); None = all.
    grad_clip : float or None
        Max gradient L2 norm; None = no clipping.
    loss : str
        ``thesis``, ``balanced`` or ``balanced_csi`` (:func:`nowcast.losses.get_loss`).
    loss_weights : dict or None
        Passed to the loss (``{"mse": 1, "mae": 1, "ssim": 0.05}`` for ``thesis``).
    lr_schedule : str
        ``plateau``, ``step`` or ``constant`` (:func:`get_schedule`).
    lr_factor : float
        Multiplier applied by ``plateau`` / ``step``.
    lr_patience : int
        ``plateau``: epochs without improvement before the LR drops.
    lr_step_epochs : int
        ``step``: epochs between drops.
    early_stopping_patience : int
        Stop after this many consecutive rises of the validation loss (thesis: 2).
    num_workers : int
        DataLoader worker processes.
    """

    optimizer: str = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    batch_size: int = 4
    max_epochs: int = 25
    iters_per_epoch: int = 8000
    val_samples: int | None = None
    grad_clip: float | None = 1.0
    loss: str = "thesis"
    loss_weights: dict[str, float] | None = None
    lr_schedule: str = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 0
    lr_step_epochs: int = 5
    early_stopping_patience: int = 2
    num_workers: int = 0

    def __post_init__(self) -> None:
        if str(self.optimizer).lower() != "adam":
            raise ValueError(f"train.optimizer must be 'adam', got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"train.lr must be a positive finite number, got {self.lr!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {self.betas!r}")
        for name in ("batch_size", "max_epochs", "iters_per_epoch", "early_stopping_patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"train.{name} must be a positive integer, got {value!r}")
        if self.val_samples is not None and self.val_samples < 1:
            raise ValueError(f"train.val_samples must be >= 1 or null, got {self.val_samples!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"train.grad_clip must be > 0 or null, got {self.grad_clip!r}")
        if self.num_workers < 0:
            raise ValueError(f"train.num_workers must be >= 0, got {self.num_workers!r}")
        get_loss(self.loss)
        get_schedule(self.lr_schedule)
        if self.loss_weights is not None:
            valid = DEFAULT_WEIGHTS[self.loss.lower()]
            unknown = sorted(set(self.loss_weights) - set(valid))
            if unknown:
                raise ValueError(
                    f"train.loss_weights has key(s) {unknown} that the {self.loss!r} loss does "
                    f"not use; valid keys are {sorted(valid)}"
                )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, **overrides: Any) -> TrainSettings:
        """Build from a config's ``train:`` mapping, then apply non-None ``overrides``.

        Raises
        ------
        ValueError
            On a key that is not a field (the message lists the valid keys).
        """
        values = dict(mapping or {})
        new_loss = overrides.get("loss")
        if new_loss is not None and str(new_loss).lower() != str(values.get("loss", "thesis")):
            # the config's weights belong to the config's loss, not to the override
            values.pop("loss_weights", None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in the config's train: section; valid keys are "
                f"{sorted(names)}"
            )
        if "betas" in values:
            values["betas"] = tuple(float(b) for b in values["betas"])
        for key in ("lr", "weight_decay", "lr_factor"):
            if key in values:
                values[key] = float(values[key])
        if values.get("grad_clip") is not None:
            values["grad_clip"] = float(values["grad_clip"])
        if values.get("loss_weights") is not None:
            values["loss_weights"] = {k: float(v) for k, v in values["loss_weights"].items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-value dict (lists instead of tuples) for checkpoints and JSON."""
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d


@dataclass
class TrainResult:
    """Summary of a finished (or budget-stopped) run."""

    run_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best_val_loss: float
    stopped_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Plain values without the history: ``run_dir`` (str), ``epochs_completed``,
        ``best_epoch``, ``best_val_loss``, ``stopped_reason`` (what the train flow returns)."""
        return {
            "run_dir": str(self.run_dir),
            "epochs_completed": self.epochs_completed,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "stopped_reason": self.stopped_reason,
        }
