"""Benchmark: a 20-member, 20-lead ensemble at 480 x 480, our model against pysteps STEPS.

Both ensembles are made in the same run from the same 5-frame input window of a synthetic
480 x 480 store (:func:`benchmarks.forecast._make_store`, one regular hour with
``--quick``; or ``--store PATH``), at the issue time with the most rain
(:func:`benchmarks.forecast._pick_issue`):

``model``
    :class:`nowcast.ensemble.EnsembleNowcaster` around an untrained Lagrangian model
    (``--model``, default ``trajgru_ode`` of ``small_lagrangian``: an 80 x 80 network grid,
    the forecast on the full grid), members streamed one at a time and reduced to the
    products (exceedance probabilities per HKO-7 threshold and the ensemble mean) by
    :func:`nowcast.ensemble.ensemble_products`;
``steps``
    the ``steps`` baseline of :mod:`nowcast.baselines` (pysteps STEPS, 6 cascade levels),
    which returns every member at once, reduced to the same products.

Each runs once; seconds are wall clock, ``*_extra_rss_mb`` the rise of the process's peak
resident memory above its level before that ensemble (Linux ``/proc/self/clear_refs``).
Prints ONE JSON line::

    {"size": 480, "leads": 20, "members": 20, "model_s": ..., "steps_s": ...,
     "ratio_model_to_steps": ..., "model_extra_rss_mb": ..., "steps_extra_rss_mb": ...,
     "ratio_rss_model_to_steps": ..., "peak_rss_mb": ...}

Run: ``.venv/bin/python benchmarks/ensemble.py [--members 20] [--leads 20] [--quick]
[--store PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.forecast import (  # noqa: E402
    _make_store,
    _pick_issue,
    _proc_status_mb,
    _reset_peak,
    _vm_hwm_mb,
)


def _window(ds, issue, n_in: int = 5):
    """``(x (1, n_in, 1, H, W) p/255, t_in (1, n_in))`` from the store at *issue*."""
    import pandas as pd
    import torch

    from pipeline.units import dbz_to_normalized

    slots = [issue - pd.Timedelta(minutes=6 * k) for k in range(n_in - 1, -1, -1)]
    frames = ds["reflectivity"].sel(time=slots, method="nearest").values
    x = dbz_to_normalized(np.nan_to_num(frames, nan=-10.0)).clip(0, 1).astype(np.float32)
    t_in = torch.tensor([[-6.0 * (n_in - 1 - k) for k in range(n_in)]])
    return torch.from_numpy(x)[None, :, None], t_in


def _measure(fn) -> tuple[float, float | None, object]:
    can_reset = _reset_peak()
    start = _proc_status_mb("VmRSS") or 0.0
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = _vm_hwm_mb() if can_reset else None
    return seconds, None if peak is None else max(peak - start, 0.0), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--leads", type=int, default=20)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="a 1-hour synthetic archive")
    parser.add_argument("--model", default="trajgru_ode")
    parser.add_argument("--config", default="small_lagrangian")
    args = parser.parse_args(argv)
    if args.members < 1 or args.leads < 1:
        parser.error("--members and --leads must be >= 1")

    import torch

    from nowcast.baselines import get_baseline
    from nowcast.configs import load_config
    from nowcast.ensemble import EnsembleNowcaster, ensemble_products
    from nowcast.models import get_model
    from pipeline.store import open_store

    with contextlib.redirect_stdout(sys.stderr):
        import pysteps  # noqa: F401  (it prints where its configuration is)

    t_out = torch.tensor([[6.0 * (k + 1) for k in range(args.leads)]])
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        path = args.store if args.store is not None else _make_store(Path(tmp), args.quick)
        ds = open_store(path)
        issue, wet = _pick_issue(ds, 5)
        x, t_in = _window(ds, issue)
        size = int(x.shape[-1])
        torch.manual_seed(0)
        model = get_model(args.model, load_config(args.config)).eval()
        ens = EnsembleNowcaster(model, n_members=args.members, seed=0)
        steps = get_baseline("steps", n_members=args.members, seed=0)

        def run_model():
            return ensemble_products(ens.members(x, t_in, t_out))

        def run_steps():
            return ensemble_products(iter(steps(x, t_in, t_out).unbind(1)))

        model_s, model_mb, prod_m = _measure(run_model)
        steps_s, steps_mb, prod_s = _measure(run_steps)
        for prod in (prod_m, prod_s):
            if prod["probability"].shape != (1, args.leads, 5, size, size):
                raise ValueError(f"products have shape {prod['probability'].shape}")
    figures = {
        "size": size,
        "leads": args.leads,
        "members": args.members,
        "issue_time": issue.strftime("%Y-%m-%dT%H:%M"),
        "wet_fraction": round(wet, 3),
        "model": f"{args.model} ({args.config}, untrained)",
        "model_s": round(model_s, 3),
        "steps_s": round(steps_s, 3),
        "ratio_model_to_steps": round(model_s / steps_s, 4),
    }
    if model_mb is not None and steps_mb is not None:
        figures["model_extra_rss_mb"] = round(model_mb, 1)
        figures["steps_extra_rss_mb"] = round(steps_mb, 1)
        figures["ratio_rss_model_to_steps"] = round(model_mb / max(steps_mb, 1e-9), 4)
    figures["peak_rss_mb"] = round(_vm_hwm_mb() or 0.0, 1)
    figures["torch_threads"] = torch.get_num_threads()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
