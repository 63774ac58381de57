"""Benchmark: metric accumulation and the classical baselines; prints ONE JSON line.

Figures (all on synthetic moving fields, no files):

- ``metrics_frames_per_s_<size>``: :class:`nowcast.metrics.MetricAccumulator` ``update``
  (contingency counts at 5 thresholds, B-MSE/B-MAE, MSE/MAE/PSNR, SSIM) per target frame,
  batches of 4 x 20 frames, at 80 x 80 and 480 x 480;
- ``metrics_peak_mb_480``: peak extra resident memory of one 480 x 480 batch update;
- ``verification_frames_per_s_<size>``: the same update plus what ``nowcast evaluate`` adds
  for its intervals (:class:`nowcast.verification.sequences.SequenceAccumulator`: the
  per-sequence sums and the FSS at 5 thresholds x 3 scales of 10, 20, 40 km at 1 km
  pixels for 480 x 480, 6 km for 80 x 80);
- ``bootstrap_s_hko7_test``: :func:`nowcast.verification.uncertainty.score_uncertainty`
  (1000 resamples) on per-sequence sums the size of HKO-7's test set (6,053 sequences x
  20 leads, 2 predictors) and ``bootstrap_sums_mb_hko7_test``, the size of those sums;
- ``persistence_ms_per_sample_<size>``, ``pysteps_ms_per_sample_<size>``: one call of the
  baseline per sample (5 inputs, 20 leads), 80 x 80 and 480 x 480;
- ``hko7_test_hours_estimate``: time to score pysteps plus the metrics on HKO-7's rainy
  test set (6,053 sequences x 20 leads at 480 x 480) from the figures above.

Run: ``.venv/bin/python benchmarks/evaluate.py [--repeats 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from functools import partial

import numpy as np
import torch


def _moving_batch(batch: int, frames: int, size: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    out = np.empty((batch, frames, 1, size, size), dtype=np.float32)
    for b in range(batch):
        cx, cy = rng.uniform(0.2, 0.5, 2)
        for t in range(frames):
            d2 = (xx - cx - 0.01 * t) ** 2 + (yy - cy) ** 2
            out[b, t, 0] = 0.7 * np.exp(-d2 / 0.01) + 0.05 * rng.random((size, size))
    return torch.from_numpy(np.clip(out, 0, 1))


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (imports, caches)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _verify(seq, acc, pred, target, t_out, mask, px) -> None:
    seq.add(acc.update(pred, target, t_out, mask), 0, px)


def _bootstrap_figures(n_seq: int = 6053, leads: int = 20, predictors: int = 2) -> dict:
    import xarray as xr

    from nowcast.verification.uncertainty import score_uncertainty

    rng = np.random.default_rng(0)
    shape = (predictors, n_seq, leads)
    counts = rng.integers(0, 2000, shape + (5, 4))
    sums = rng.random(shape + (9,)) + 1.0
    fss = rng.random(shape + (5, 3, 2)) * [1.0, 2.0]
    dims = ("predictor", "sequence", "lead_time")
    seq = xr.Dataset(
        {
            "seq_counts": (dims + ("threshold", "category"), counts),
            "seq_sums": (dims + ("field",), sums),
            "seq_fss": (dims + ("threshold", "scale", "part"), fss),
        },
        coords={"predictor": ["a", "b"][:predictors]},
    )
    start = time.perf_counter()
    score_uncertainty(seq, ["hko7"] * n_seq, {"hko7": 4}, n_resamples=1000)
    return {
        "bootstrap_s_hko7_test": round(time.perf_counter() - start, 2),
        "bootstrap_sums_mb_hko7_test": round(seq.nbytes / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own choice)"
    )
    args = parser.parse_args()

    from nowcast.baselines import get_baseline
    from nowcast.metrics import MetricAccumulator
    from nowcast.verification.sequences import SequenceAccumulator

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    figures: dict[str, float | int | str] = {"threads": torch.get_num_threads()}
    for size in (80, 480):
        pred = _moving_batch(4, 20, size, seed=1)
        target = _moving_batch(4, 20, size, seed=2)
        mask = torch.ones_like(target)
        t_out = torch.arange(1, 21, dtype=torch.float32).repeat(4, 1) * 6
        acc = MetricAccumulator()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sec = _time(partial(acc.update, pred, target, t_out, mask), args.repeats)
        figures[f"metrics_frames_per_s_{size}"] = round(80 / sec, 1)
        if size == 480:
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            figures["metrics_peak_mb_480"] = round((rss1 - rss0) / 1024, 1)

        seq = SequenceAccumulator(acc._thr_norm, (10.0, 20.0, 40.0))
        px = np.full(4, 1.0 if size == 480 else 6.0)
        sec = _time(partial(_verify, seq, acc, pred, target, t_out, mask, px), args.repeats)
        figures[f"verification_frames_per_s_{size}"] = round(80 / sec, 1)

        x = _moving_batch(1, 5, size, seed=3)
        t_in = torch.tensor([[-24.0, -18.0, -12.0, -6.0, 0.0]])
        t1 = t_out[:1]
        for name in ("persistence", "pysteps"):
            baseline = get_baseline(name)
            sec = _time(partial(baseline, x, t_in, t1), args.repeats)
            figures[f"{name}_ms_per_sample_{size}"] = round(1000 * sec, 1)

    figures.update(_bootstrap_figures())
    per_seq = figures["pysteps_ms_per_sample_480"] / 1000 + 20 / figures["metrics_frames_per_s_480"]
    figures["hko7_test_hours_estimate"] = round(6053 * per_seq / 3600, 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
