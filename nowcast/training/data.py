"""Training data: the store fingerprint, the datasets, the per-epoch sample order.

Epoch ``e`` visits the training samples in an order drawn from
``numpy.random.default_rng([seed, e])`` (concatenated permutations, as many samples as
``iters_per_epoch * batch_size``), so it depends on (seed, epoch) only. Validation uses a
fixed, evenly spaced subset of the validation split (``val_samples``, all by default).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nowcast.options import TrainOptions

__all__ = ["data_fingerprint"]


def data_fingerprint(store_path: str | os.PathLike) -> dict[str, Any]:
    """Identify the training data: path, time range, size and a hash of the time axis.

    Parameters
    ----------
    store_path : path
        A resampled store (docs/contracts.md, Resampled schema; :func:`pipeline.store.open_store`).

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
    # filled gaps train only when asked; validation, like evaluation, never scores them
    filled = {"use_interpolated": True} if getattr(options, "use_interpolated", False) else {}
    train_ds = RadarSequenceDataset(data, split=options.train_split, **kwargs, **filled)
    val_ds = RadarSequenceDataset(data, split=options.val_split, **kwargs)
    return train_ds, val_ds


def _extra_inputs(extra: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keyword inputs from the items beyond the six of every sample (the motion field)."""
    return {"motion": extra[0]} if extra else {}


def _to_device(batch: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [b.to(device, non_blocking=True) for b in batch]
