"""Training of the nowcasting models: checkpoints, exact resume, DDP, AMP.

Public surface: :func:`train`, :class:`TrainSettings`, :class:`TrainOptions`,
:class:`TrainResult`, :class:`EarlyStopping`, :class:`TrainingDivergedError`,
:func:`data_fingerprint`, :func:`get_schedule`, :data:`SCHEDULE_NAMES` and
:func:`read_checkpoint`.

Modules
-------
:mod:`~nowcast.training.settings`
    :class:`TrainSettings` (the config's ``train:`` mapping), :class:`TrainResult`.
    :class:`TrainOptions` (one invocation: overrides, seed, device, budget, splits) lives in
    :mod:`nowcast.options`, importable without torch, and is re-exported here.
:mod:`~nowcast.training.fit`
    :func:`train`, the fit loop, validation, :class:`EarlyStopping` (what a run does).
:mod:`~nowcast.training.schedules`
    LR schedules behind :func:`get_schedule`.
:mod:`~nowcast.training.data`
    The datasets, the per-epoch sample order and :func:`data_fingerprint`.
:mod:`~nowcast.training.distributed`
    ``torchrun`` / DDP set-up and cross-rank sums.
:mod:`~nowcast.training.rng`
    Seeding and the RNG states kept for an exact resume.
:mod:`~nowcast.training.rundir`
    The run directory: file names, checkpoint layout, written and read (the one
    ``torch.load(..., weights_only=True)`` of the project's checkpoints).
:mod:`~nowcast.training.report`
    ``metrics.csv``, ``metrics.json`` and ``loss_curve.png``.
:mod:`~nowcast.training.stores`
    Several training stores, random crops, starting from a trained run (``--init``).
:mod:`~nowcast.training.rungrid`
    The grid a run was trained at (pixel size, domain, cadence) and whether a store fits it.

Multi-process training goes through the CLI:
``torchrun --nproc_per_node 2 -m flows.cli train ...`` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

from nowcast.options import TrainOptions
from nowcast.training.data import data_fingerprint
from nowcast.training.fit import EarlyStopping, train
from nowcast.training.rundir import read_checkpoint
from nowcast.training.schedules import SCHEDULE_NAMES, get_schedule
from nowcast.training.settings import TrainingDivergedError, TrainResult, TrainSettings

__all__ = [
    "SCHEDULE_NAMES",
    "EarlyStopping",
    "TrainOptions",
    "TrainResult",
    "TrainSettings",
    "TrainingDivergedError",
    "data_fingerprint",
    "get_schedule",
    "read_checkpoint",
    "train",
]
