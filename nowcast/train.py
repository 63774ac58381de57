"""Training loop for the nowcasting models: checkpoints, exact resume, DDP, AMP.

Public surface: :func:`train`, :class:`TrainSettings`, :class:`TrainOptions`,
:class:`TrainResult`, :class:`EarlyStopping`, :class:`TrainingDivergedError`,
:func:`data_fingerprint`, :func:`get_schedule` and :data:`SCHEDULE_NAMES`.

What a run does
---------------
* Optimiser: Adam with the thesis's settings from the config's ``train:`` section
  (``lr`` 1e-4, ``betas`` (0.5, 0.999) for HKO-7: the thesis's "momentum 0.5" is Adam's
  beta1), gradient-norm clipping at ``grad_clip``.
* Loss: :func:`nowcast.losses.get_loss` (``thesis`` by default, ``balanced`` or ``balanced_csi``), masked
  with the dataset's ``target_mask``.
* LR schedule (``lr_schedule``): ``plateau`` (default) multiplies the LR by ``lr_factor``
  (0.5) after every epoch whose validation loss is not below the best so far
  (``ReduceLROnPlateau`` with ``lr_patience`` 0); with early stopping after two rises in a
  row this means: one rise halves the LR, a second consecutive rise stops the run. Also
  ``step`` (x ``lr_factor`` every ``lr_step_epochs`` epochs) and ``constant``. The thesis
  names "a learning rate updating mechanism" without details; none of these depend on the
  total number of epochs, so extending a finished run with ``--resume --epochs N`` is
  consistent.
* Early stopping: stop when the validation loss rises two epochs in a row (each epoch's
  loss above the previous epoch's, :class:`EarlyStopping`); the epoch with the lowest
  validation loss is kept in ``best.pt``.
* Data order: epoch ``e`` visits the training samples in an order drawn from
  ``numpy.random.default_rng([seed, e])`` (concatenated permutations, as many samples as
  ``iters_per_epoch * batch_size``), so it depends on (seed, epoch) only. With RNG states
  (python, numpy, torch, CUDA) restored from ``last.pt``, a run resumed at an epoch boundary
  ends with bit-identical weights to an uninterrupted one (same seed, CPU). Validation uses a
  fixed, evenly spaced subset of the validation split (``val_samples``, all by default) and
  averages per-sample losses, so it does not depend on batching or on the number of
  processes.
* A time budget (``time_budget_minutes``) is checked after every step (at least one step
  and one epoch are always made); when it runs out the current epoch ends early (it is
  validated and checkpointed as usual, marked ``truncated``), so a budgeted run always
  leaves a usable ``best.pt``. A truncated epoch
  counts like any other for the LR schedule and early stopping. Resuming continues with the
  next epoch; only runs that stop at epoch boundaries resume bit-identically.
* NaN or inf in the training loss, the gradient norm or the validation loss stops the run
  with :class:`TrainingDivergedError` naming the epoch and step; nothing is written for the
  bad epoch, so ``last.pt`` still holds the last good state.
* Multi-process: started under ``torchrun`` (``WORLD_SIZE`` > 1) the loop uses
  DistributedDataParallel (gloo on CPU, nccl on CUDA). ``batch_size`` is the GLOBAL batch:
  each step's global batch (same indices as a one-process run) is split into equal
  per-rank slices, so a two-process run follows the one-process run up to float rounding.
  Only rank 0 writes files.
* Mixed precision (``amp=True``, CUDA only): ``torch.autocast(float16)`` for the forward
  pass and a ``GradScaler``; the loss is computed in float32.

Run directory layout
--------------------
::

    RUN_DIR/
      last.pt          state after the latest epoch: model, optimiser, scheduler, grad
                       scaler, RNG states, early-stopping state, history, settings,
                       config (plain dict), data fingerprint; resume from here
      best.pt          the epoch with the lowest validation loss: model_state, model_name,
                       config (plain dict), meta (epoch, val_loss, scheme, loss, seed,
                       frames, data fingerprint, settings)
      metrics.csv      one row per epoch (train/val loss, val MSE/MAE, lr, samples/s, ...)
      metrics.json     the same rows plus the run description and the stop reason
                       (max_epochs, early_stopping, time_budget, diverged; running while
                       the run is in progress)
      loss_curve.png   training and validation loss per epoch, best epoch marked; drawn
                       when an invocation ends (the tables are rewritten every epoch)

Checkpoints are written atomically (temporary file + ``os.replace``) and hold only
tensors and plain Python values, so ``torch.load(..., weights_only=True)`` reads them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nowcast.losses import DEFAULT_WEIGHTS, get_loss, masked_mae, masked_mse

__all__ = [
    "SCHEDULE_NAMES",
    "EarlyStopping",
    "TrainOptions",
    "TrainResult",
    "TrainSettings",
    "TrainingDivergedError",
    "data_fingerprint",
    "get_schedule",
    "train",
]

CHECKPOINT_FORMAT = 1


class TrainingDivergedError(RuntimeError):
    """The loss (or gradient) became NaN or infinite; the run was stopped."""


# --------------------------------------------------------------------------- settings
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


@dataclass(frozen=True)
class TrainOptions:
    """How to run (not what to optimise): overrides, seed, device, limits.

    Attributes
    ----------
    epochs, iters_per_epoch, batch_size, loss, lr, val_samples
        Override the config's ``train:`` values when not None.
    seed : int
        Seeds model initialisation, data order and RNGs.
    resume : bool
        Continue from ``RUN_DIR/last.pt`` (required when it exists).
    time_budget_minutes : float or None
        Wall-clock budget for this invocation (see the module docstring).
    device : str
        ``cpu`` or ``cuda``.
    amp : bool
        Mixed precision (CUDA only).
    train_split, val_split : str
        Dataset splits used for training and validation.
    split_fractions : tuple of 3 floats
        Chronological train / valid / test fractions of the store's days
        (:func:`pipeline.dataset.split_days`).
    stride : int
        Slots between consecutive windows (HKO-7 ``sequent`` mode).
    progress : bool
        Show a tqdm bar (rank 0 only).
    """

    epochs: int | None = None
    iters_per_epoch: int | None = None
    batch_size: int | None = None
    loss: str | None = None
    lr: float | None = None
    val_samples: int | None = None
    seed: int = 0
    resume: bool = False
    time_budget_minutes: float | None = None
    device: str = "cpu"
    amp: bool = False
    train_split: str = "train"
    val_split: str = "valid"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    stride: int = 5
    progress: bool = True


@dataclass
class TrainResult:
    """Summary of a finished (or budget-stopped) run."""

    run_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best_val_loss: float
    stopped_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- early stopping
class EarlyStopping:
    """Stop when the validation loss rises ``patience`` epochs in a row.

    A "rise" is an epoch whose validation loss is strictly above the previous epoch's;
    any epoch that does not rise resets the count.

    Parameters
    ----------
    patience : int
        Consecutive rises that stop the run (thesis: 2).
    """

    def __init__(self, patience: int = 2) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.previous: float | None = None
        self.rises = 0

    def step(self, val_loss: float) -> bool:
        """Record one epoch's validation loss; return True when training should stop."""
        val_loss = float(val_loss)
        if not math.isfinite(val_loss):
            raise ValueError(f"validation loss must be finite, got {val_loss!r}")
        if self.previous is not None and val_loss > self.previous:
            self.rises += 1
        else:
            self.rises = 0
        self.previous = val_loss
        return self.rises >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Plain-value state for checkpoints."""
        return {"patience": self.patience, "previous": self.previous, "rises": self.rises}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.patience = int(state["patience"])
        self.previous = None if state["previous"] is None else float(state["previous"])
        self.rises = int(state["rises"])


# --------------------------------------------------------------------------- LR schedules
def _plateau(optimizer: torch.optim.Optimizer, s: TrainSettings):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=s.lr_factor, patience=s.lr_patience
    )


def _step(optimizer: torch.optim.Optimizer, s: TrainSettings):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.lr_step_epochs, gamma=s.lr_factor)


def _constant(optimizer: torch.optim.Optimizer, s: TrainSettings):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=_one)


def _one(epoch: int) -> float:
    return 1.0


_SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, TrainSettings], Any]] = {
    "plateau": _plateau,
    "step": _step,
    "constant": _constant,
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(_SCHEDULES)
"""Names accepted by :func:`get_schedule`."""


def get_schedule(name: str) -> Callable[[torch.optim.Optimizer, TrainSettings], Any]:
    """Return the LR-schedule factory ``make(optimizer, settings) -> scheduler``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists :data:`SCHEDULE_NAMES`.
    """
    key = str(name).lower()
    if key not in _SCHEDULES:
        raise ValueError(
            f"unknown lr_schedule {name!r}; valid names are {', '.join(SCHEDULE_NAMES)}"
        )
    return _SCHEDULES[key]


def _schedule_step(scheduler: Any, val_loss: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()


# --------------------------------------------------------------------------- data
def data_fingerprint(store_path: str | os.PathLike) -> dict[str, Any]:
    """Identify the training data: path, time range, size and a hash of the time axis.

    Parameters
    ----------
    store_path : path
        A resampled store (C3 schema, :func:`pipeline.store.open_store`).

    Returns
    -------
    dict
        ``store`` (absolute path), ``time_start``, ``time_end`` (ISO strings), ``n_times``,
        ``n_observed``, ``shape`` ([ny, nx]) and ``sha256`` of the time stamps and
        ``observed`` flags. Resuming refuses data whose hash differs.
    """
    from pipeline.store import open_store

    ds = open_store(store_path)
    times = np.asarray(ds["time"].values).astype("datetime64[ns]")
    if "observed" in ds:
        observed = np.asarray(ds["observed"].values).astype(bool)
    else:
        observed = np.ones(times.shape, dtype=bool)
    digest = hashlib.sha256()
    digest.update(times.astype(np.int64).tobytes())
    digest.update(observed.astype(np.uint8).tobytes())
    return {
        "store": str(Path(store_path).resolve()),
        "time_start": str(times[0]) if times.size else "",
        "time_end": str(times[-1]) if times.size else "",
        "n_times": int(times.size),
        "n_observed": int(observed.sum()),
        "shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "sha256": digest.hexdigest(),
    }


def _worker_context(num_workers: int) -> str | None:
    """``"spawn"`` for loader workers: a forked worker of a process that already runs threads
    (Prefect's flow runner, dask) inherits their locks and exit hooks and can die at exit."""
    return "spawn" if num_workers > 0 else None


def _epoch_order(n_items: int, n_needed: int, seed: int, epoch: int) -> np.ndarray:
    """Sample indices of one epoch: concatenated permutations from rng([seed, epoch])."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    reps = -(-n_needed // n_items)
    return np.concatenate([rng.permutation(n_items) for _ in range(reps)])[:n_needed]


def _val_indices(n_items: int, n_wanted: int | None) -> np.ndarray:
    if n_wanted is None or n_wanted >= n_items:
        return np.arange(n_items)
    return np.unique(np.linspace(0, n_items - 1, n_wanted).round().astype(np.int64))


class _IndexSampler(torch.utils.data.Sampler):
    """Yield a fixed list of indices (this rank's share of an epoch's order)."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = [int(i) for i in indices]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# --------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_type: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        initialised_here = True
    return _Dist(rank=rank, world=world, local_rank=local_rank, initialised_here=initialised_here)


def _all_sum(values: list[float], dist_info: _Dist, device: torch.device) -> list[float]:
    if dist_info.world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


# --------------------------------------------------------------------------- RNG state
def _rng_state(device: torch.device) -> dict[str, Any]:
    # The legacy global numpy RNG is saved on purpose: datasets or augmentations may use it.
    name, key, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": [str(name), [int(k) for k in key], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached)
    )
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- checkpoints
def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt / not a checkpoint
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a training checkpoint of format {CHECKPOINT_FORMAT} "
            f"(got format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)})"
        )
    return ckpt


# --------------------------------------------------------------------------- config/model/data
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


def _resolve_config(config: Any) -> Any:
    if isinstance(config, str | os.PathLike):
        from nowcast.configs import load_config

        return load_config(config)
    return config


def _store_has_motion(data: str | os.PathLike) -> bool:
    """True when the resampled store holds per-slot motion fields (``motion``)."""
    from pipeline.store import open_store

    return "motion" in open_store(data).variables


def _make_datasets(
    data: str | os.PathLike,
    scheme: str,
    config: Any,
    options: TrainOptions,
    with_motion: bool = False,
):
    from pipeline.dataset import RadarSequenceDataset

    kwargs: dict[str, Any] = {"with_motion": True} if with_motion else {}
    kwargs |= {
        "scheme": scheme,
        "n_in": int(config.in_frames),
        "n_out": int(config.out_frames),
        "stride": int(options.stride),
        "seed": int(options.seed),
        "fractions": tuple(options.split_fractions),
    }
    train_ds = RadarSequenceDataset(data, split=options.train_split, **kwargs)
    val_ds = RadarSequenceDataset(data, split=options.val_split, **kwargs)
    return train_ds, val_ds


def _extra_inputs(extra: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keyword inputs from the items beyond the six of every sample (the motion field)."""
    return {"motion": extra[0]} if extra else {}


def _to_device(batch: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [b.to(device, non_blocking=True) for b in batch]


# --------------------------------------------------------------------------- the loop
def train(
    model_name: str,
    config: Any,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    scheme: str = "regular",
    options: TrainOptions | None = None,
) -> TrainResult:
    """Train ``model_name`` on a resampled store and write a run directory.

    Parameters
    ----------
    model_name : str
        A name from :data:`nowcast.models.MODEL_NAMES`.
    config : str, path or ExperimentConfig
        Config name (``small``, ``hko7``, ``mnist``), YAML path or loaded config; its
        ``train:`` mapping gives the :class:`TrainSettings`.
    data : path
        Resampled Zarr store (C3 schema).
    out_dir : path
        Run directory (created; see the module docstring for its layout). If it already
        holds ``last.pt``, ``options.resume`` must be True.
    scheme : str
        Sampling scheme (:func:`pipeline.sampling.get_scheme`): ``regular``,
        ``irregular_input``, ``irregular_target`` or ``irregular``.
    options : TrainOptions, optional
        Seed, resume, device, budget and overrides.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Bad arguments, a checkpoint that does not match the request, a regular-only model
        with an irregular scheme, empty splits.
    TrainingDivergedError
        NaN or inf in the loss or gradients.
    """
    from nowcast.models import get_model

    options = options or TrainOptions()
    cfg = _resolve_config(config)
    settings = TrainSettings.from_mapping(
        getattr(cfg, "train", None),
        max_epochs=options.epochs,
        iters_per_epoch=options.iters_per_epoch,
        batch_size=options.batch_size,
        loss=options.loss,
        lr=options.lr,
        val_samples=options.val_samples,
    )
    device = _resolve_device(options)
    dist_info = _init_distributed(device.type)
    try:
        if dist_info.world > 1 and device.type == "cuda":
            device = torch.device("cuda", dist_info.local_rank)
            torch.cuda.set_device(device)
        if settings.batch_size % dist_info.world:
            raise ValueError(
                f"batch_size {settings.batch_size} (global) is not divisible by the "
                f"{dist_info.world} processes"
            )
        _seed_everything(options.seed)
        model = get_model(model_name, cfg)
        if scheme != "regular" and not getattr(model, "continuous_time", False):
            raise ValueError(
                f"model {model_name!r} works on regular time steps only; use scheme "
                f"'regular' (got {scheme!r}) or a continuous-time model"
            )
        # Lagrangian models read the store's motion fields instead of estimating motion
        # again for every sample (they estimate it themselves when the store has none)
        with_motion = bool(getattr(model, "full_resolution", False)) and _store_has_motion(data)
        train_ds, val_ds = _make_datasets(data, scheme, cfg, options, with_motion=with_motion)
        fingerprint = data_fingerprint(data)
        return _fit(
            model=model,
            model_name=model_name,
            config_dict=_config_to_dict(cfg),
            config_name=str(getattr(cfg, "name", "")),
            train_ds=train_ds,
            val_ds=val_ds,
            out_dir=Path(out_dir),
            settings=settings,
            options=options,
            scheme=scheme,
            fingerprint=fingerprint,
            device=device,
            dist_info=dist_info,
        )
    finally:
        if dist_info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _resolve_device(options: TrainOptions) -> torch.device:
    if options.device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {options.device!r}")
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if options.amp and options.device != "cuda":
        raise ValueError("mixed precision (amp=True) needs device 'cuda'; got device 'cpu'")
    return torch.device(options.device)


def _fit(
    *,
    model: torch.nn.Module,
    model_name: str,
    config_dict: dict[str, Any],
    config_name: str,
    train_ds,
    val_ds,
    out_dir: Path,
    settings: TrainSettings,
    options: TrainOptions,
    scheme: str,
    fingerprint: dict[str, Any],
    device: torch.device,
    dist_info: _Dist,
) -> TrainResult:
    from tqdm.auto import tqdm

    if len(train_ds) == 0:
        raise ValueError(f"the training split {options.train_split!r} has no samples")
    if len(val_ds) == 0:
        raise ValueError(f"the validation split {options.val_split!r} has no samples")
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path = out_dir / "last.pt"
    best_path = out_dir / "best.pt"

    model.to(device)
    loss_fn = get_loss(settings.loss)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=settings.lr,
        betas=tuple(settings.betas),
        weight_decay=settings.weight_decay,
    )
    scheduler = get_schedule(settings.lr_schedule)(optimizer, settings)
    scaler = torch.amp.GradScaler("cuda", enabled=options.amp)
    stopper = EarlyStopping(settings.early_stopping_patience)
    history: list[dict[str, Any]] = []
    best_val = math.inf
    best_epoch: int | None = None
    start_epoch = 0
    stopped_reason = ""

    if last_path.exists() and not options.resume:
        raise ValueError(
            f"{out_dir} already holds a checkpoint (last.pt); pass resume=True (--resume) to "
            f"continue it or choose another run directory"
        )
    if options.resume:
        if not last_path.exists():
            raise ValueError(f"cannot resume: {last_path} does not exist")
        ckpt = _load_checkpoint(last_path)
        _check_resumable(ckpt, model_name, config_dict, settings, scheme, fingerprint, options)
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        scaler.load_state_dict(ckpt["scaler_state"])
        stopper.load_state_dict(ckpt["early_stopping"])
        history = [dict(row) for row in ckpt["history"]]
        best_val = float(ckpt["best_val_loss"])
        best_epoch = ckpt["best_epoch"]
        start_epoch = int(ckpt["epoch"])
        _set_rng_state(ckpt["rng"], device)
        if ckpt["status"] == "early_stopping":
            stopped_reason = "early_stopping"

    net: torch.nn.Module = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    per_rank = settings.batch_size // dist_info.world
    n_needed = settings.iters_per_epoch * settings.batch_size
    val_idx = _val_indices(len(val_ds), settings.val_samples)[dist_info.rank :: dist_info.world]
    deadline = (
        None
        if options.time_budget_minutes is None
        else time.monotonic() + 60.0 * float(options.time_budget_minutes)
    )
    run_info = {
        "model_name": model_name,
        "config_name": config_name,
        "scheme": scheme,
        "seed": options.seed,
        "settings": settings.to_dict(),
        "data_fingerprint": fingerprint,
        "world_size": dist_info.world,
        "device": device.type,
        "amp": options.amp,
        "train_split": options.train_split,
        "val_split": options.val_split,
        "split_fractions": [float(f) for f in options.split_fractions],
        "stride": int(options.stride),
        "train_samples": len(train_ds),
        "val_samples": len(_val_indices(len(val_ds), settings.val_samples)),
    }

    epoch = start_epoch
    try:
        while not stopped_reason:
            if epoch >= settings.max_epochs:
                stopped_reason = "max_epochs"
                break
            # at least one epoch per invocation, so a budget always leaves a checkpoint
            if epoch > start_epoch and _out_of_time(deadline, dist_info, device):
                stopped_reason = "time_budget"
                break
            epoch += 1
            order = _epoch_order(len(train_ds), n_needed, options.seed, epoch)
            order = order.reshape(settings.iters_per_epoch, settings.batch_size)
            mine = order[:, dist_info.rank * per_rank : (dist_info.rank + 1) * per_rank].ravel()
            loader = torch.utils.data.DataLoader(
                train_ds,
                batch_size=per_rank,
                sampler=_IndexSampler(mine),
                num_workers=settings.num_workers,
                multiprocessing_context=_worker_context(settings.num_workers),
                generator=torch.Generator().manual_seed(options.seed * 100_003 + epoch),
                pin_memory=device.type == "cuda",
            )
            net.train()
            t0 = time.perf_counter()
            loss_sum, steps, truncated = 0.0, 0, False
            bar = tqdm(
                total=settings.iters_per_epoch,
                desc=f"epoch {epoch}/{settings.max_epochs}",
                unit="step",
                disable=not (options.progress and dist_info.main),
                leave=False,
            )
            for step, batch in enumerate(loader, start=1):
                x, y, t_in, t_out, m_in, m_out, *extra = _to_device(batch, device)
                with torch.autocast(
                    device_type=device.type, dtype=torch.float16, enabled=options.amp
                ):
                    pred = net(x, t_in, t_out, input_mask=m_in, **_extra_inputs(extra))
                loss = loss_fn(pred.float(), y, m_out, settings.loss_weights)
                out_of_time = deadline is not None and time.monotonic() >= deadline
                total, flag = _all_sum(
                    [float(loss.detach()), float(out_of_time)], dist_info, device
                )
                global_loss = total / dist_info.world
                if not math.isfinite(global_loss):
                    raise TrainingDivergedError(
                        _diverged_message("training loss", global_loss, epoch, step, last_path)
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), settings.grad_clip or math.inf
                )
                if not options.amp and not torch.isfinite(grad_norm):
                    raise TrainingDivergedError(
                        _diverged_message("gradient norm", float(grad_norm), epoch, step, last_path)
                    )
                scaler.step(optimizer)
                scaler.update()
                loss_sum += global_loss
                steps = step
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(
                    loss=f"{global_loss:.4g}",
                    samples_s=f"{steps * settings.batch_size / max(elapsed, 1e-9):.1f}",
                )
                if flag > 0 and step < settings.iters_per_epoch:
                    truncated = True
                    break
            bar.close()
            train_seconds = time.perf_counter() - t0
            del loader

            val = _validate(
                net, val_ds, val_idx, per_rank, loss_fn, settings, device, options, dist_info
            )
            if not math.isfinite(val["val_loss"]):
                raise TrainingDivergedError(
                    _diverged_message("validation loss", val["val_loss"], epoch, steps, last_path)
                )
            lr_used = float(optimizer.param_groups[0]["lr"])
            _schedule_step(scheduler, val["val_loss"])
            is_best = val["val_loss"] < best_val
            if is_best:
                best_val, best_epoch = val["val_loss"], epoch
            stop = stopper.step(val["val_loss"])
            row = {
                "epoch": epoch,
                "steps": steps,
                "samples": steps * settings.batch_size,
                "train_loss": loss_sum / max(steps, 1),
                **val,
                "lr": lr_used,
                "train_seconds": train_seconds,
                "samples_per_s": steps * settings.batch_size / max(train_seconds, 1e-9),
                "best": bool(is_best),
                "truncated": bool(truncated),
            }
            history.append(row)
            if stop:
                stopped_reason = "early_stopping"
            elif truncated:
                stopped_reason = "time_budget"
            if dist_info.main:
                if is_best:
                    _atomic_save(
                        {
                            "format": CHECKPOINT_FORMAT,
                            "model_name": model_name,
                            "model_state": model.state_dict(),
                            "config": config_dict,
                            "meta": {**run_info, "epoch": epoch, "val_loss": val["val_loss"]},
                        },
                        best_path,
                    )
                _atomic_save(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "model_name": model_name,
                        "model_state": model.state_dict(),
                        "optimizer_state": optimizer.state_dict(),
                        "scheduler_state": scheduler.state_dict(),
                        "scaler_state": scaler.state_dict(),
                        "early_stopping": stopper.state_dict(),
                        "rng": _rng_state(device),
                        "epoch": epoch,
                        "status": stopped_reason or "running",
                        "history": history,
                        "best_val_loss": best_val,
                        "best_epoch": best_epoch,
                        "config": config_dict,
                        "settings": settings.to_dict(),
                        "data_fingerprint": fingerprint,
                        "meta": run_info,
                    },
                    last_path,
                )
                _write_metrics(
                    out_dir, history, run_info, best_epoch, best_val, stopped_reason, plot=False
                )
    except TrainingDivergedError:
        stopped_reason = "diverged"
        raise
    finally:
        # the loss curve is drawn once per invocation (also after a divergence), the
        # tables after every epoch
        if dist_info.main and history:
            _write_metrics(
                out_dir, history, run_info, best_epoch, best_val, stopped_reason, plot=True
            )
    return TrainResult(
        run_dir=out_dir,
        epochs_completed=epoch,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        stopped_reason=stopped_reason,
        history=history,
    )


def _out_of_time(deadline: float | None, dist_info: _Dist, device: torch.device) -> bool:
    """True when any rank is past the deadline (all ranks agree)."""
    if deadline is None:
        return False
    late = float(time.monotonic() >= deadline)
    return _all_sum([late], dist_info, device)[0] > 0


def _diverged_message(what: str, value: float, epoch: int, step: int, last_path: Path) -> str:
    keep = (
        f"{last_path} keeps the last good state"
        if last_path.exists()
        else "no checkpoint had been written yet"
    )
    return (
        f"training diverged: {what} is {value} at epoch {epoch}, step {step}; the run is "
        f"stopped and {keep}. Lower the learning rate or check the data."
    )


@torch.no_grad()
def _validate(
    net: torch.nn.Module,
    val_ds,
    indices: np.ndarray,
    batch_size: int,
    loss_fn: Callable[..., torch.Tensor],
    settings: TrainSettings,
    device: torch.device,
    options: TrainOptions,
    dist_info: _Dist,
) -> dict[str, float]:
    """Mean per-sample validation loss, MSE and MAE (all ranks get the same figures)."""
    net.eval()
    loader = torch.utils.data.DataLoader(
        val_ds,
        batch_size=batch_size,
        sampler=_IndexSampler(indices),
        num_workers=settings.num_workers,
        multiprocessing_context=_worker_context(settings.num_workers),
        generator=torch.Generator().manual_seed(0),
    )
    sums = [0.0, 0.0, 0.0, 0.0]
    for batch in loader:
        x, y, t_in, t_out, m_in, m_out, *extra = _to_device(batch, device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=options.amp):
            pred = net(x, t_in, t_out, input_mask=m_in, **_extra_inputs(extra))
        pred = pred.float()
        for i in range(pred.shape[0]):
            p, t, m = pred[i : i + 1], y[i : i + 1], m_out[i : i + 1]
            sums[0] += float(loss_fn(p, t, m, settings.loss_weights))
            sums[1] += float(masked_mse(p, t, m))
            sums[2] += float(masked_mae(p, t, m))
            sums[3] += 1.0
    total = _all_sum(sums, dist_info, device)
    n = max(total[3], 1.0)
    return {"val_loss": total[0] / n, "val_mse": total[1] / n, "val_mae": total[2] / n}


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


# --------------------------------------------------------------------------- outputs
_CSV_FIELDS = (
    "epoch",
    "steps",
    "samples",
    "train_loss",
    "val_loss",
    "val_mse",
    "val_mae",
    "lr",
    "train_seconds",
    "samples_per_s",
    "best",
    "truncated",
)


def _write_metrics(
    out_dir: Path,
    history: list[dict[str, Any]],
    run_info: dict[str, Any],
    best_epoch: int | None,
    best_val: float,
    stopped_reason: str,
    plot: bool,
) -> None:
    """metrics.csv, metrics.json and (``plot``) loss_curve.png, each replaced atomically."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    _atomic_write_text(buf.getvalue(), out_dir / "metrics.csv")
    doc = {
        **run_info,
        "best_epoch": best_epoch,
        "best_val_loss": best_val if math.isfinite(best_val) else None,
        "stopped_reason": stopped_reason or "running",
        "epochs": history,
    }
    _atomic_write_text(json.dumps(doc, indent=2) + "\n", out_dir / "metrics.json")
    if plot:
        _plot_loss_curve(history, best_epoch, run_info, out_dir / "loss_curve.png")


def _plot_loss_curve(
    history: list[dict[str, Any]], best_epoch: int | None, run_info: dict[str, Any], path: Path
) -> None:
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="training loss")
    ax.plot(epochs, [r["val_loss"] for r in history], "s-", label="validation loss")
    if best_epoch is not None:
        best = next(r for r in history if r["epoch"] == best_epoch)
        ax.plot([best_epoch], [best["val_loss"]], "*", ms=14, color="gold", mec="k", label="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{run_info['settings']['loss']} loss")
    ax.set_title(f"{run_info['model_name']} ({run_info['config_name']}, {run_info['scheme']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
