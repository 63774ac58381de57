"""Training on several stores, on random crops of large ones, and from a trained run.

- **Several stores** (one per event or radar): each store gets its own train and
  validation datasets (its own day split, :func:`pipeline.dataset.split_days`); the
  training and validation sets are their concatenation. A store whose split has no
  window (an event shorter than the window) is named in a logged warning and skipped; only
  when no store is left is it an error.
- **Random crops** (``TrainOptions.crop``): every window of a store larger than
  ``crop x crop`` pixels is seen through ``ceil(ny / crop) * ceil(nx / crop)`` crops (as
  many as cover the store once), each at a position drawn from
  ``numpy.random.default_rng([seed, store, window, k])``: random, but the same in every
  epoch and process, so resuming stays exact. A store smaller than the crop is named and
  skipped. The motion field (when the store has one) is cropped with the frames.
- **From a trained run** (``TrainOptions.init``): the weights of ``RUN/best.pt`` (read
  with :func:`nowcast.training.rundir.read_checkpoint`, the project's one
  ``weights_only`` load) replace the initialisation; the optimiser, schedule and step
  budget are this run's own. ``TrainOptions.train_only`` restricts the trained
  parameters to those whose names start with given prefixes (e.g. ``smoothing`` for the
  Lagrangian model's scale damping); the others keep their values.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nowcast.options import TrainOptions
from nowcast.training.data import _make_datasets, _store_has_motion, data_fingerprint
from nowcast.training.rundir import BEST_CHECKPOINT, read_checkpoint, run_grid
from nowcast.training.rungrid import check_store, merge_grids, store_grid

__all__ = ["CroppedDataset", "as_paths", "init_from_run", "training_data"]

_LOG = logging.getLogger(__name__)


def as_paths(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """One store or several as a list of paths (at least one)."""
    paths = [Path(data)] if isinstance(data, str | os.PathLike) else [Path(d) for d in data]
    if not paths:
        raise ValueError("no training store given (--data)")
    return paths


class CroppedDataset(torch.utils.data.Dataset):
    """The windows of a dataset seen through square crops at seeded random positions.

    Parameters
    ----------
    dataset : RadarSequenceDataset
        Items as docs/contracts.md's Sample schema (frames ``(T, 1, H, W)``, optional
        motion ``(2, H, W)``).
    size : int
        Crop side in pixels (at most the frame's height and width).
    seed, store_index : int
        Seed the positions (:mod:`nowcast.training.stores`).
    """

    def __init__(self, dataset, size: int, seed: int, store_index: int = 0) -> None:
        h, w = dataset._frame_shape
        if size > h or size > w:
            raise ValueError(f"crop {size} x {size} is larger than the {h} x {w} frames")
        self.dataset, self.size = dataset, int(size)
        self.per_window = math.ceil(h / size) * math.ceil(w / size)
        self.seed, self.store_index = int(seed), int(store_index)
        self.shape = (h, w)

    def __len__(self) -> int:
        return len(self.dataset) * self.per_window

    def position(self, index: int) -> tuple[int, int]:
        """``(row, column)`` of the top-left corner of crop *index*."""
        window, k = divmod(int(index), self.per_window)
        rng = np.random.default_rng([self.seed, self.store_index, window, k])
        h, w = self.shape
        return int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        item = self.dataset[int(index) // self.per_window]
        r, c = self.position(index)
        rows, cols = slice(r, r + self.size), slice(c, c + self.size)
        x, y, t_in, t_out, m_in, m_out, *extra = item
        out = (x[..., rows, cols], y[..., rows, cols], t_in, t_out)
        out += (m_in[..., rows, cols], m_out[..., rows, cols])
        return out + tuple(e[..., rows, cols].contiguous() for e in extra)


def training_data(
    data: Sequence[Path],
    scheme: str,
    config: Any,
    options: TrainOptions,
    *,
    motion_capable: bool,
) -> tuple[Any, Any, dict[str, Any], dict[str, Any], bool]:
    """The training and validation sets of one or several stores, their fingerprint and grid.

    Returns
    -------
    train_ds, val_ds : torch Dataset
        One store's datasets, or the concatenation over the stores used.
    fingerprint : dict
        :func:`nowcast.training.data.data_fingerprint` of a single store; for several, the
        combined ``sha256``, total ``n_times``, ``store`` (paths joined by ``", "``) and
        ``stores`` (one fingerprint each).
    grid : dict
        The run's grid record (:func:`nowcast.training.rungrid.merge_grids`).
    with_motion : bool
        Whether the samples carry the stores' motion (all stores have it and the model is
        Lagrangian).

    Raises
    ------
    ValueError
        No store with a training window, or none with a validation window.
    GridMismatchError
        Stores of other pixel sizes or cadences (see :func:`merge_grids`).
    """
    if options.crop is not None and options.crop < 1:
        raise ValueError(f"--crop must be a positive number of pixels, got {options.crop}")
    with_motion = motion_capable and all(_store_has_motion(d) for d in data)
    # a Lagrangian model block-averages any store onto its image_size grid; the others run
    # on the store's (or crop's) own pixels
    side = int(config.image_size) if motion_capable else None
    trains, vals, grids, fps = [], [], [], []
    for i, path in enumerate(data):
        grid = store_grid(path, network_side=side, crop=options.crop)
        full = store_grid(path)["shape"]
        if options.crop is not None and (full[0] < options.crop or full[1] < options.crop):
            _LOG.warning(
                "skipping store %s: its %d x %d frames are smaller than the %d x %d crop",
                path, full[0], full[1], options.crop, options.crop,
            )  # fmt: skip
            continue
        train_ds, val_ds = _make_datasets(path, scheme, config, options, with_motion)
        if len(train_ds) == 0:
            span = int(config.in_frames) + int(config.out_frames)
            _LOG.warning(
                "skipping store %s: its %r split has no window of %d frames (the event is "
                "shorter than the window, or the split has no day)",
                path, options.train_split, span,
            )  # fmt: skip
            continue
        if options.crop is not None:
            train_ds = CroppedDataset(train_ds, options.crop, options.seed, i)
            val_ds = CroppedDataset(val_ds, options.crop, options.seed + 1, i)
        trains.append(train_ds)
        if len(val_ds):
            vals.append(val_ds)
        grids.append(grid)
        fps.append(data_fingerprint(path))
    if not trains:
        raise ValueError(
            f"no training window in {', '.join(map(str, data))} (split {options.train_split!r})"
        )
    if not vals:
        raise ValueError(f"the validation split {options.val_split!r} has no samples in any store")
    grid = merge_grids(grids, allow_other_grid=options.allow_other_grid)
    if len(trains) == 1:
        return trains[0], vals[0], fps[0], grid, with_motion
    digest = hashlib.sha256("".join(fp["sha256"] for fp in fps).encode())
    fingerprint = {
        "store": ", ".join(fp["store"] for fp in fps),
        "n_times": sum(fp["n_times"] for fp in fps),
        "n_observed": sum(fp["n_observed"] for fp in fps),
        "shape": fps[0]["shape"],
        "sha256": digest.hexdigest(),
        "stores": fps,
    }
    concat = torch.utils.data.ConcatDataset
    return concat(trains), concat(vals), fingerprint, grid, with_motion


def init_from_run(
    model: torch.nn.Module,
    model_name: str,
    options: TrainOptions,
    grid: dict[str, Any],
) -> dict[str, Any] | None:
    """Load ``options.init``'s weights into *model* and freeze per ``options.train_only``.

    The init run's grid is checked against the training stores' (another pixel size needs
    ``allow_other_grid``; another cadence a continuous-time model).

    Returns
    -------
    dict or None
        ``{"run", "model_name", "epoch", "grid", "notes"}`` of the init run (for the
        run's ``meta["init"]``); None without ``init``.

    Raises
    ------
    ValueError
        No ``best.pt`` in the run, another model, or weights that do not fit.
    """
    info = None
    if options.init is not None:
        from nowcast.runs import _config_from_checkpoint

        path = Path(options.init) / BEST_CHECKPOINT
        if not path.is_file():
            raise ValueError(f"--init {options.init}: no {BEST_CHECKPOINT} in that directory")
        ckpt = read_checkpoint(path)
        if str(ckpt.get("model_name")) != model_name:
            raise ValueError(
                f"--init {options.init} holds model {ckpt.get('model_name')!r}, not {model_name!r}"
            )
        try:
            model.load_state_dict(ckpt["model_state"])
        except (RuntimeError, KeyError) as err:
            raise ValueError(
                f"--init {options.init}: its weights do not fit this configuration: {err}"
            ) from err
        meta = dict(ckpt.get("meta") or {})
        init_grid = run_grid(meta, _config_from_checkpoint(ckpt, path))
        notes = []
        for store in grid.get("stores") or [grid]:
            notes += check_store(
                init_grid,
                store,
                continuous_time=bool(getattr(model, "continuous_time", False)),
                allow_other_grid=options.allow_other_grid,
                run_name=f"--init {options.init}",
            )
        for note in notes:
            _LOG.info("%s", note)
        info = {
            "run": str(Path(options.init).resolve()),
            "model_name": model_name,
            "epoch": meta.get("epoch"),
            "grid": {k: v for k, v in init_grid.items() if k != "stores"},
            "notes": notes,
        }
    if options.train_only:
        prefixes = tuple(options.train_only)
        names = [n for n, _ in model.named_parameters()]
        if not any(n.startswith(prefixes) for n in names):
            raise ValueError(
                f"--train-only {','.join(prefixes)} matches no parameter; names start with "
                f"{', '.join(sorted({n.split('.')[0] for n in names}))}"
            )
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(prefixes))
    return info
