"""Ingest throughput next to bare PNG decoding of the same files; prints ONE JSON line.

Figures:

- ``decode_fps_1``: Pillow decode of every frame PNG, one process, one thread;
- ``decode_fps_workers``: the same with a pool of ``workers`` threads (the ingest default);
- ``ingest_fps``: :func:`pipeline.ingest.ingest_archive` into a fresh store with default
  workers (frames *and* masks decoded, masks combined with the static mask, Zarr written),
  frames written per second (the archive's corrupt frames are reported and skipped);
- ``ratio``: ``ingest_fps / decode_fps_workers`` (goal >= 0.7), ``ratio_vs_single`` too;
- ``decode_cpu_ms_per_frame`` / ``ingest_cpu_ms_per_frame`` / ``cpu_ratio``: CPU time
  (all threads) per frame; steadier than wall-clock rates on a shared machine;
- ``reingest_s``: a second, idempotent run over the same days (nothing to write);
- ``read_fps``: frames/s reading the store back in 20-frame clips (float32 dBZ and mask)
  through :func:`pipeline.store.open_store`;
- ``store_mb`` / ``archive_mb``: bytes on disk.

Usage::

    python benchmarks/ingest.py [--days 2] [--archive DIR] [--workdir DIR]

Without ``--archive`` a synthetic archive of ``--days`` days is generated with
:func:`pipeline.synthetic.generate_archive` (in a temporary directory unless ``--workdir``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _decode(path: str) -> bool:
    """Pillow-decode one PNG; False for an unreadable one (the synthetic archive has some)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            np.asarray(im)
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def _dir_mb(path: Path) -> float:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.stat(os.path.join(d, f)).st_size
    return total / 1e6


def _make_archive(root: Path, days: int) -> None:
    from pipeline.synthetic import generate_archive

    generate_archive(root, start="2015-06-01", days=days, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--archive", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import dask  # noqa: F401  (warm imports so they are not timed)
    import zarr  # noqa: F401

    from pipeline import hko7
    from pipeline.ingest import ingest_archive
    from pipeline.store import open_store

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        archive = args.archive
        if archive is None:
            archive = tmp / "archive"
            _make_archive(archive, args.days)
        files = list(hko7.discover_frames(archive)["frame_path"])
        workers = os.cpu_count() or 1

        for f in files[:8]:  # warm the page cache like a second pass would
            _decode(f)
        t, c = time.perf_counter(), time.process_time()
        n_ok = sum(_decode(f) for f in files)
        decode_1 = n_ok / (time.perf_counter() - t)
        decode_cpu_ms = (time.process_time() - c) / n_ok * 1e3
        with ThreadPoolExecutor(workers) as pool:
            t = time.perf_counter()
            n_ok = sum(pool.map(_decode, files))
            decode_w = n_ok / (time.perf_counter() - t)

        store = tmp / "store"
        c = time.process_time()
        report = ingest_archive(archive, store, progress=False)
        ingest_cpu_ms = (time.process_time() - c) / max(report.frames_written, 1) * 1e3
        t = time.perf_counter()
        again = ingest_archive(archive, store, progress=False)
        reingest_s = time.perf_counter() - t

        ds = open_store(store)
        t = time.perf_counter()
        n_read = 0
        for i in range(0, ds.sizes["time"], 20):  # 20-frame sequences, as a clip reader does
            clip = ds[["reflectivity", "mask"]].isel(time=slice(i, i + 20)).load()
            n_read += clip.sizes["time"]
        read_fps = n_read / (time.perf_counter() - t)

        print(
            json.dumps(
                {
                    "benchmark": "ingest",
                    "frames": len(files),
                    "frames_decodable": n_ok,
                    "corrupt_reported": len(report.corrupt),
                    "workers": workers,
                    "decode_fps_1": round(decode_1, 1),
                    "decode_fps_workers": round(decode_w, 1),
                    "ingest_fps": round(report.frames_per_second, 1),
                    "ratio": round(report.frames_per_second / decode_w, 3),
                    "ratio_vs_single": round(report.frames_per_second / decode_1, 3),
                    "decode_cpu_ms_per_frame": round(decode_cpu_ms, 3),
                    "ingest_cpu_ms_per_frame": round(ingest_cpu_ms, 3),
                    "cpu_ratio": round(decode_cpu_ms / ingest_cpu_ms, 3),
                    "ingest_s": round(report.seconds, 3),
                    "reingest_s": round(reingest_s, 3),
                    "reingest_written": again.frames_written,
                    "read_fps": round(read_fps, 1),
                    "archive_mb": round(_dir_mb(archive), 1),
                    "store_mb": round(_dir_mb(store), 1),
                    "load_avg_1min": round(os.getloadavg()[0], 2),
                }
            )
        )


if __name__ == "__main__":
    main()
