"""Benchmark the networks on this CPU: time and memory of forward and forward+backward.

Prints one JSON line per (configuration, model) with: parameters, forward and
forward+backward seconds per sample (median of the repeats, after ``--warmup`` untimed runs), and the peak
resident-memory growth (MiB) of each pass over the process's memory after building the model.
Every measurement runs in a fresh child process, so peaks do not leak from one to the next.
For a model with its own training objective (``shrvqvae``) the forward pass is the plain
call (sampling its ``ensemble_members`` members and taking their mean) and the
forward+backward pass is its training objective (``target=``) and its gradient.

Usage::

    python benchmarks/models.py                       # small and hko7, all models
    python benchmarks/models.py --configs small --models trajgru_ode --repeats 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time

_DEFAULT_BATCH = {"small": 4, "hko7": 1, "mnist": 1}


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``: now, ``VmHWM``: peak), MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _measure(
    config: str,
    model_name: str,
    batch: int,
    repeats: int,
    backward: bool,
    threads: int,
    warmup: int,
    queue,
) -> None:
    import torch

    from nowcast.configs import load_config
    from nowcast.models import count_parameters, get_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(config)
    model = get_model(model_name, cfg)
    size = cfg.image_size
    x = torch.rand(batch, cfg.in_frames, 1, size, size)
    t_in = (torch.arange(-(cfg.in_frames - 1), 1.0) * cfg.cadence_minutes).expand(batch, -1)
    t_out = (torch.arange(1, cfg.out_frames + 1.0) * cfg.cadence_minutes).expand(batch, -1)
    target = torch.rand(batch, cfg.out_frames, 1, size, size)
    own = bool(getattr(model, "trains_itself", False))
    rss0 = _status_mib("VmRSS")
    times = []
    for i in range(repeats + warmup):
        start = time.perf_counter()
        if backward:
            model.zero_grad(set_to_none=True)
            if own:
                model(x, t_in, t_out, target=target)["loss"].backward()
            else:
                y = model(x, t_in, t_out)
                y.square().mean().backward()
        else:
            with torch.no_grad():
                y = model(x, t_in, t_out)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    queue.put(
        {
            "parameters": count_parameters(model),
            "seconds_per_sample": statistics.median(times) / batch,
            "peak_mib": _status_mib("VmHWM") - rss0,
        }
    )


def _run(
    config: str,
    model_name: str,
    batch: int,
    repeats: int,
    backward: bool,
    threads: int,
    warmup: int,
) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = (config, model_name, batch, repeats, backward, threads, warmup, queue)
    proc = ctx.Process(target=_measure, args=args, daemon=True)
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    """Parse arguments, run the measurements, print JSON lines."""
    from nowcast.models import MODEL_NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["small", "hko7"])
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    parser.add_argument("--batch", type=int, default=None, help="default: 4 small, 1 otherwise")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the repeats")
    args = parser.parse_args()
    for config in args.configs:
        batch = args.batch or _DEFAULT_BATCH.get(config, 1)
        for name in args.models:
            fwd = _run(config, name, batch, args.repeats, False, args.threads, args.warmup)
            both = _run(config, name, batch, args.repeats, True, args.threads, args.warmup)
            record = {
                "benchmark": "models",
                "config": config,
                "model": name,
                "batch": batch,
                "threads": args.threads,
                "repeats": args.repeats,
                "parameters": fwd["parameters"],
                "forward_s_per_sample": round(fwd["seconds_per_sample"], 4),
                "forward_backward_s_per_sample": round(both["seconds_per_sample"], 4),
                "forward_peak_mib": round(fwd["peak_mib"], 1),
                "forward_backward_peak_mib": round(both["peak_mib"], 1),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
