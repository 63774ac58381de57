"""Benchmark: motion estimation at 480 x 480, full resolution against the coarse grid.

Times :func:`pipeline.motion.get_motion` on 4 frames of a smooth random rain texture
(about half the domain raining) translated by (+3, -2) pixels per step, and reports the
largest error of either component away from the borders (an eighth of each side):

* ``lk_full_s_480``: Lucas-Kanade at full resolution (``grid=None``, the reference
  computation of the pysteps baseline, idw on a 128-point grid);
* ``lk_s_480`` / ``lk96_s_480``: on the default 128-point grid (block factor 4) and a
  96-point grid (factor 5), with ``ratio_lk_to_full_480``;
* ``vet_s_480``: VET on its default 96-point grid (factor 5).

Each figure is the best of ``--repeat`` runs after one warm-up call (imports). Prints ONE
JSON line. Run: ``.venv/bin/python benchmarks/motion.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import ndimage


def _frames(n: int = 480, u: float = 3.0, v: float = -2.0, t: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    f = ndimage.gaussian_filter(rng.standard_normal((n, n)), n / 40, mode="wrap")
    spec = np.fft.fft2((f - f.mean()) / f.std())
    out = [np.real(np.fft.ifft2(ndimage.fourier_shift(spec, (v * k, u * k)))) for k in range(t)]
    return np.clip(0.3 * np.asarray(out), 0.0, 1.0)


def main() -> None:
    from pipeline.motion import get_motion

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    frames = _frames()
    m = frames.shape[-1] // 8
    cases = {
        "lk_full": get_motion("lk", grid=None, idw_grid=128, cache_pairs=0),
        "lk": get_motion("lk", cache_pairs=0),
        "lk96": get_motion("lk", grid=96, cache_pairs=0),
        "vet": get_motion("vet"),
    }
    out: dict = {}
    for name, method in cases.items():
        method(frames)  # warm-up: imports
        best = np.inf
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            est = method(frames)
            best = min(best, time.perf_counter() - t0)
        inner = est.field[:, m:-m, m:-m]
        err = max(np.abs(inner[0] - 3.0).max(), np.abs(inner[1] + 2.0).max())
        out[f"{name}_s_480"] = round(best, 4)
        out[f"{name}_max_err_px"] = round(float(err), 4)
    out["ratio_lk_to_full_480"] = round(out["lk_s_480"] / out["lk_full_s_480"], 4)
    out["ratio_lk96_to_full_480"] = round(out["lk96_s_480"] / out["lk_full_s_480"], 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
