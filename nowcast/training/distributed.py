"""Processes and devices: ``torchrun`` / DDP set-up, cross-rank sums, the device check.

Started under ``torchrun`` (``WORLD_SIZE`` > 1) training joins a process group (gloo on
CPU, nccl on CUDA) that it also leaves when it created it; every rank takes part in the
sums of :func:`_all_sum`, so all ranks agree on losses and on when time is up.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from nowcast.options import TrainOptions


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


def _out_of_time(deadline: float | None, dist_info: _Dist, device: torch.device) -> bool:
    """True when any rank is past the deadline (all ranks agree)."""
    if deadline is None:
        return False
    late = float(time.monotonic() >= deadline)
    return _all_sum([late], dist_info, device)[0] > 0


def _resolve_device(options: TrainOptions) -> torch.device:
    if options.device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {options.device!r}")
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if options.amp and options.device != "cuda":
        raise ValueError("mixed precision (amp=True) needs device 'cuda'; got device 'cpu'")
    return torch.device(options.device)
