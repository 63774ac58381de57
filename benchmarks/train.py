"""Training-step throughput of every model at the ``small`` and ``hko7`` configurations.

One step = forward, thesis loss (MSE + MAE + 0.05 (1 - SSIM)), backward, gradient clipping
and an Adam update, on random frames of the configuration's size and frame counts (the
data loader is measured separately by ``benchmarks/loader.py``). Prints ONE JSON line::

    {"benchmark": "train_step", "device": ..., "threads": ..., "results": [
        {"model", "config", "batch", "steps", "step_s", "samples_per_s", "parameters"}, ...]}

Usage::

    python benchmarks/train.py [--configs small,hko7] [--models all] [--steps 3]
                               [--hko7-batch 1] [--small-batch 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nowcast.configs import load_config
from nowcast.losses import get_loss
from nowcast.models import MODEL_NAMES, count_parameters, get_model


def _step_time(model_name: str, config_name: str, batch: int, steps: int, device: str) -> dict:
    cfg = load_config(config_name)
    torch.manual_seed(0)
    model = get_model(model_name, cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    loss_fn = get_loss("thesis")
    size, t_in, t_out = cfg.image_size, cfg.in_frames, cfg.out_frames
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, t_in, 1, size, size, generator=gen).to(device)
    y = torch.rand(batch, t_out, 1, size, size, generator=gen).to(device)
    cadence = float(cfg.cadence_minutes)
    ti = (torch.arange(t_in, dtype=torch.float32) - (t_in - 1)) * cadence
    to = torch.arange(1, t_out + 1, dtype=torch.float32) * cadence
    ti = ti.expand(batch, -1).to(device)
    to = to.expand(batch, -1).to(device)

    def step() -> None:
        pred = model(x, ti, to)
        loss = loss_fn(pred, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step()  # warm-up (allocations, lazy inits)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - t0) / steps
    return {
        "model": model_name,
        "config": config_name,
        "batch": batch,
        "steps": steps,
        "step_s": round(elapsed, 4),
        "samples_per_s": round(batch / elapsed, 3),
        "parameters": count_parameters(model),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small,hko7")
    parser.add_argument("--models", default="all")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--small-batch", type=int, default=4)
    parser.add_argument("--hko7-batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    models = MODEL_NAMES if args.models == "all" else tuple(args.models.split(","))
    results = []
    for config_name in args.configs.split(","):
        batch = args.hko7_batch if config_name == "hko7" else args.small_batch
        for model_name in models:
            results.append(_step_time(model_name, config_name, batch, args.steps, args.device))
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
