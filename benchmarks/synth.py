"""Benchmark: generate a 2-day synthetic HKO-7 archive (480 frames of 480 x 480) and read it.

Prints one JSON line: generation seconds and frames/s, archive size, discovery and read speed.
Usage: ``python benchmarks/synth.py [--days 2] [--seed 0] [--workers 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from pipeline import hko7
from pipeline.synthetic import generate_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        t0 = time.perf_counter()
        report = generate_archive(
            root, days=args.days, seed=args.seed, progress=False, workers=args.workers
        )
        gen_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        t0 = time.perf_counter()
        frames = hko7.discover_frames(root)
        disc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_read = 0
        for path in frames["frame_path"]:
            try:
                hko7.read_frame(path)
                n_read += 1
            except hko7.FrameReadError:
                pass
        read_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "benchmark": "synth",
                "days": args.days,
                "workers": args.workers,
                "grid_frames": len(report.grid_times),
                "frames_written": report.n_frames,
                "generate_s": round(gen_s, 2),
                "generate_frames_per_s": round(len(report.grid_times) / gen_s, 1),
                "archive_mb": round(size / 2**20, 1),
                "discover_s": round(disc_s, 3),
                "read_frames_per_s": round(n_read / read_s, 1),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
