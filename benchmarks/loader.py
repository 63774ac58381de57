"""Benchmark: resample throughput and the Dataset loader rate at 80 x 80, next to a training step.

Builds (in a temporary directory) an ingest store of ``--days`` days of 480 x 480 frames
(a smooth field moving at constant speed, with a few gaps), resamples it to 80 x 80, then
times a ``DataLoader`` over :class:`pipeline.dataset.RadarSequenceDataset` (regular scheme,
``small`` config frame counts, batch 4) with 0 and 2 workers, and a training step
(forward + backward + Adam step) of the ``small`` ConvGRU for the same batch.

Prints ONE JSON line::

    {"resample_frames_per_s": ..., "loader_samples_per_s_w0": ..., "loader_samples_per_s_w2": ...,
     "train_samples_per_s_convgru_small": ..., ...}

Run: ``.venv/bin/python benchmarks/loader.py [--days 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _make_source(path: Path, days: int) -> int:
    from pipeline.store import StoreWriter, create_store

    n = 240 * days
    times = pd.date_range("2015-06-01", periods=n, freq="6min").as_unit("ns")
    keep = np.ones(n, dtype=bool)
    keep[50:53] = False
    keep[130:131] = False
    times = times[keep]
    rng = np.random.default_rng(0)
    base = rng.normal(size=(480 + 2 * n, 480))
    # smooth once with a box filter (cumsum trick) to get rain-like blobs
    k = 15
    c = np.cumsum(np.cumsum(np.pad(base, k), 0), 1)
    smooth = (
        c[2 * k :, 2 * k :] - c[: -2 * k, 2 * k :] - c[2 * k :, : -2 * k] + c[: -2 * k, : -2 * k]
    )
    smooth = (smooth - smooth.mean()) / smooth.std()
    create_store(path, size=480)
    with StoreWriter(path) as w:
        g = w.prepare(first_time_chunk=0, length=len(times))
        slots = np.flatnonzero(keep)
        for b0 in range(0, len(times), 64):
            sel = slots[b0 : b0 + 64]
            frames = np.stack([smooth[2 * s : 2 * s + 480, :480] for s in sel])
            g["reflectivity"][b0 : b0 + len(sel)] = np.clip(60 + 50 * frames, 0, 255).astype(
                np.uint8
            )
            g["mask"][b0 : b0 + len(sel)] = True
        g["time"][:] = (times.asi8 // 10**9).astype(np.int64)
        w.commit()
    return len(times)


def _loader_rate(ds, workers: int, n_batches: int) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up not counted
    t0 = time.perf_counter()
    seen = 0
    for _ in range(n_batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        seen += batch[0].shape[0]
    return seen / (time.perf_counter() - t0)


def _train_rate(ds, n_steps: int) -> float | None:
    try:
        from nowcast.configs import load_config
        from nowcast.models import get_model
    except ImportError:
        return None
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model = get_model("convgru", load_config("small"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y, t_in, t_out, m_in, m_out = next(iter(DataLoader(ds, batch_size=4)))
    model.train()

    def step() -> None:
        opt.zero_grad()
        pred = model(x, t_in, t_out, input_mask=m_in)
        loss = (((pred - y) ** 2) * m_out).mean()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step()
    return n_steps * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=10)
    args = parser.parse_args()

    import torch

    from pipeline.dataset import RadarSequenceDataset
    from pipeline.resample import resample_store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_frames = _make_source(tmp / "src", args.days)
        t0 = time.perf_counter()
        resample_store(tmp / "src", tmp / "r80.zarr", size=80, progress=False)
        resample_s = time.perf_counter() - t0
        ds = RadarSequenceDataset(
            tmp / "r80.zarr",
            days=pd.date_range("2015-06-01", periods=args.days, freq="D"),
            scheme="regular",
            n_in=5,
            n_out=5,
            stride=1,
        )
        t0 = time.perf_counter()
        for i in range(min(200, len(ds))):
            ds[i]
        item_ms = (time.perf_counter() - t0) / min(200, len(ds)) * 1e3
        w0 = _loader_rate(ds, 0, args.batches)
        w2 = _loader_rate(ds, 2, args.batches)
        train = _train_rate(ds, args.train_steps)
    print(
        json.dumps(
            {
                "frames_480": n_frames,
                "resample_480_to_80_frames_per_s": round(n_frames / resample_s, 1),
                "dataset_item_ms_80x80_10frames": round(item_ms, 3),
                "loader_samples_per_s_w0": round(w0, 1),
                "loader_samples_per_s_w2": round(w2, 1),
                "train_samples_per_s_convgru_small": None if train is None else round(train, 1),
                "batch_size": 4,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
