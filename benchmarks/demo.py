"""Benchmark: the whole demo (``nowcast demo``) end to end, timed per step.

Prints ONE JSON line: total seconds and seconds per step (synthesize, ingest, resample,
train, evaluate, forecast_publish). Runs in a temporary work directory unless
``--workdir`` is given (then it is kept). Takes about as long as the demo (goal < 15 min
on a 2-core CPU machine, most of it the training budget).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--train-minutes", type=float, default=3.5)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nowcast-demo-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    from flows._prefect_env import configure

    configure(workdir)
    from flows.demo import demo_flow

    t0 = time.perf_counter()
    try:
        summary = demo_flow(str(workdir), days=args.days, train_minutes=args.train_minutes)
        total = time.perf_counter() - t0
        ok = sum(1 for _, status, _ in summary["cycles"] if status == "ok")
        print(
            json.dumps(
                {
                    "benchmark": "demo",
                    "days": args.days,
                    "train_minutes_budget": args.train_minutes,
                    "total_s": round(total, 1),
                    "steps_s": summary["timings_s"],
                    "forecast_cycles_ok": ok,
                    "forecast_cycles": len(summary["cycles"]),
                }
            )
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
