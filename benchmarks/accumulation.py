"""Benchmark: advection-corrected 1-hour rain accumulation at 480 x 480 from 6-minute frames.

Prints ONE JSON line: seconds (best of ``--repeat``) of
:func:`nowcast.interpolation.accumulate` over 11 frames (an hour of 6-minute frames, both
ends included) at 1-minute sub-steps with one smooth, non-uniform motion field, and, for
reference, of the plain sum and of the motion estimate (Lucas-Kanade, 4 frames) a product
makes first when its forecast carries no motion. Goal: ``advection_s`` under 0.5 s on the
project's CPU, so it fits inside every forecast cycle.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from nowcast.interpolation import accumulate, estimate_motion

    n = args.size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    motion = np.stack([4.0 + np.sin(yy / n * 3.0), 2.0 * np.cos(xx / n * 2.0)]).astype(np.float32)
    base = np.maximum(0.0, 20.0 * np.sin(xx / 23.0) * np.cos(yy / 31.0)).astype(np.float32)
    frames = np.stack([np.roll(base, 4 * k, axis=1) for k in range(11)])
    frames += rng.uniform(0.0, 0.1, frames.shape).astype(np.float32)
    minutes = np.arange(11) * 6.0

    def best(fn) -> float:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    adv = best(lambda: accumulate(frames, minutes, motion, motion_minutes=6.0))
    plain = best(lambda: accumulate(frames, minutes, method="sum"))
    norm = frames[-4:] / 60.0
    lk = best(lambda: estimate_motion(norm, minutes[-4:], 6.0))
    print(
        json.dumps(
            {
                "benchmark": "accumulation",
                "size": n,
                "frames": 11,
                "cadence_min": 6,
                "substep_min": 1,
                "torch_threads": args.threads,
                "advection_s": round(adv, 4),
                "sum_s": round(plain, 4),
                "motion_lk_s": round(lk, 4),
                "goal_advection_s": 0.5,
                "ok": adv < 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
