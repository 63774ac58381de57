"""The options of a job: one object from the command line through the flow to the library.

:class:`TrainOptions` (what :func:`nowcast.training.train` runs with) and
:class:`EvaluateOptions` (what :func:`nowcast.evaluate.evaluate_run` runs with) are plain,
frozen dataclasses with nothing heavy imported, so the ``nowcast`` command builds its flags
from their fields at start-up (:mod:`flows._cli_options`): ``nowcast train`` and
``nowcast flow train`` (``evaluate`` and ``flow evaluate``) build the same object from the
same flags and hand it on unchanged, through the Prefect flow and task, to the library.
A field added here becomes a flag of both commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EvaluateOptions", "TrainOptions"]


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
        Wall-clock budget for this invocation (see :mod:`nowcast.training.fit`).
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
    init : path, optional
        Start from the weights of this trained run's ``best.pt`` (fine-tuning); the
        learning rate, epochs and budget are this run's own (:mod:`nowcast.training.stores`).
    train_only : tuple of str
        Train only the parameters whose names start with one of these prefixes (e.g.
        ``("smoothing",)``: the Lagrangian model's scale damping); empty: all.
    crop : int, optional
        Train on random ``crop x crop``-pixel crops of each window (large composites);
        stores smaller than the crop are named and skipped.
    allow_other_grid : bool
        Accept training stores (or an ``init`` run) of different network pixel sizes
        (:mod:`nowcast.training.rungrid`); the difference is recorded in the run.
    use_interpolated : bool
        Count the store's filled gaps (``interpolated`` slots, ``nowcast resample
        --fill-gaps``) as frames of the training windows; default False: they are gaps, as
        if never filled. Validation never uses them.
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
    init: str | None = None
    train_only: tuple[str, ...] = ()
    crop: int | None = None
    allow_other_grid: bool = False
    use_interpolated: bool = False


@dataclass(frozen=True)
class EvaluateOptions:
    """How to evaluate a run and/or the baselines (:func:`nowcast.evaluate.evaluate_run`).

    Attributes
    ----------
    split : str
        Dataset split (``train``, ``valid``, ``test``...), passed to
        :class:`pipeline.dataset.RadarSequenceDataset`.
    scheme : str
        Sampling scheme: ``regular``, ``irregular_input``, ``irregular_target``,
        ``irregular``.
    baselines : tuple of str
        Baselines scored alongside the run (:data:`nowcast.baselines.BASELINE_NAMES`, e.g.
        ``("persistence", "pysteps")``); empty: none. Without a run they are scored alone.
    extra_lead_times : tuple of float
        Lead times (minutes) not trained on; they must lie on the data's time grid
        (multiples of its cadence: with HKO-7's 6-minute frames a 3-minute lead has no
        ground truth and is refused). Evaluated on a ``regular`` dataset long enough to
        reach the largest one and reported separately (``results_extra.nc`` and a section of
        ``results.md``). Regular-only models that cannot produce them are skipped.
    perturb : bool or mapping
        True: robustness evaluation at :data:`nowcast.perturb.DEFAULT_LEVELS`; a mapping
        ``{corruption: levels}``: those levels. Writes ``robustness.nc``, ``robustness.md``,
        ``robustness.png``.
    perturb_samples : int, optional
        Run the robustness evaluation (one pass per corruption level) on only the first
        ``perturb_samples`` samples, to bound its cost.
    in_frames, out_frames : int, optional
        Sequence lengths; default the run's configuration (baselines only: 5 and 20, the
        HKO-7 benchmark setting).
    split_fractions : tuple of 3 floats
        Chronological train/valid/test fractions of the store's days (as in training).
    day_files : mapping, optional
        ``{"train": ..., "valid": ..., "test": ...}`` day lists (HKO-7
        ``hko7_rainy_<split>_days.txt`` files or iterables of days); overrides
        ``split_fractions`` (see :func:`pipeline.dataset.split_days`).
    stride : int
        Slots between consecutive sample windows (HKO-7: 5).
    allow_other_grid : bool
        Evaluate a run on a store whose network pixel size differs from the one it was
        trained at (:mod:`nowcast.training.rungrid`; refused otherwise); the difference is
        recorded in ``results.nc`` (attribute ``grid_notes``).
    batch_size : int
        Samples per batch.
    max_samples : int, optional
        Evaluate only the first ``max_samples`` samples.
    seed : int
        Seeds the sampling scheme, the corruptions and the ensemble members.
    device : str
        ``cpu`` or ``cuda``.
    progress : bool
        Show a tqdm bar.
    members : int, optional
        Score ensembles of this many members: the run's model through
        :class:`nowcast.ensemble.EnsembleNowcaster`, ensemble baselines (``steps``) with
        as many members; the probabilistic scores go into ``results.nc``, a section of
        ``results.md`` and ``probabilistic.png``.
    probability : str
        Estimator of the exceedance probabilities scored (reliability, ROC), a name of
        :data:`nowcast.probability.METHODS`: ``"debiased"`` (the finite-ensemble
        correction, as the published products use) or ``"fraction"`` (``k / N``).
    calibration : path, optional
        A :class:`nowcast.calibration.ProbabilityCalibration` file (``nowcast
        calibrate``): the run's model is scored with its calibrated probabilities, the
        baselines with ``probability``. Needs ``members`` (the fitted member count).
    bootstrap : int
        Resamples of the bootstrap behind every interval and paired difference
        (:mod:`nowcast.verification`, docs/verification.md); 0: point scores only.
    confidence : float
        Level of the intervals, in (0, 1) (0.9: the 5th to the 95th percentile).
    bootstrap_block : int, optional
        Block length (consecutive sequences) of the moving-block bootstrap; default the
        number of windows that share a frame (``ceil(window / stride)``).
    fss_scales_km : tuple of float
        Neighbourhood sides (km) of the fractions skill score, converted to pixels with the
        store's pixel size; empty: no FSS.
    cases : str
        What a case of the per-case tables is: ``"store"`` (each ``--data`` store, e.g. one
        event) or ``"day"`` (each day of each store). Several cases are also pooled.
    """

    split: str = "test"
    scheme: str = "regular"
    baselines: tuple[str, ...] = ()
    extra_lead_times: tuple[float, ...] = ()
    perturb: bool | Mapping[str, Sequence[float]] = False
    perturb_samples: int | None = None
    in_frames: int | None = None
    out_frames: int | None = None
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    day_files: Mapping[str, Any] | None = None
    stride: int = 5
    allow_other_grid: bool = False
    batch_size: int = 4
    max_samples: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    members: int | None = None
    probability: str = "debiased"
    calibration: str | None = None
    bootstrap: int = 1000
    confidence: float = 0.9
    bootstrap_block: int | None = None
    fss_scales_km: tuple[float, ...] = (10.0, 20.0, 40.0)
    cases: str = "store"
