"""Benchmark: 20-lead forecasts at 480 x 480 through ``nowcast.forecast.make_forecast``.

Every predictor forecasts from the same input window of the same store, opened once:
persistence, pysteps (Lucas-Kanade + semi-Lagrangian extrapolation) and every model of
the Lagrangian configurations (``--configs``, default ``small_lagrangian`` and
``hko7_lagrangian``), built untrained (``get_model(name, load_config(config)).eval()``)
and run on the store's full grid (``image_size=None``). A configuration that
``load_config`` rejects (not there yet) is skipped with a note on stderr.

The store is a synthetic archive made by :func:`pipeline.synthetic.generate_archive`
(1 day, seed 0; one regular hour with ``--quick``) ingested into a temporary 480 x 480 store, or
``--store PATH`` (ingest or resampled schema). The issue time is the one with the most rain
(pixels >= 20 dBZ in the newest frame; the newest of equals) among those whose input slots
all have a frame.

Each predictor runs once untimed (imports, caches), then ``--repeat`` timed calls; the
median is reported. Prints ONE JSON line::

    {"size": 480, "leads": 20, "issue_time": ..., "wet_fraction": ...,
     "persistence_s_480": ..., "pysteps_s_480": ...,
     "trajgru_ode_small_s_480": ..., "ratio_trajgru_ode_small_to_pysteps_480": ..., ...
     "persistence_extra_rss_mb_480": ..., ..., "peak_rss_mb": ..., "torch_threads": ...}

An ensemble by construction (``shrvqvae``: its members are sampled, and it forecasts on its
own ``image_size`` grid, the 480 x 480 inputs block-averaged to it, since it has no Lagrangian
mode) is timed through :func:`nowcast.ensemble_forecast.make_ensemble_forecast` instead, for
one member and for ten: ``shrvqvae_small_1m_s_480``, ``shrvqvae_small_10m_s_480`` (and
their ``_extra_rss_mb_480``), with ``--ensemble-repeat`` timed calls (default 1: a call
samples 20 leads x the latent grid position by position).

``<predictor>_extra_rss_mb_480`` is how far the process's resident memory rose above its
level before that predictor's calls (Linux: the peak is reset through
``/proc/self/clear_refs`` before each predictor; absent where that is not possible);
``peak_rss_mb`` is the peak of the whole run (imports, synthesis and ingest included).

Run: ``.venv/bin/python benchmarks/forecast.py [--repeat 3] [--store PATH] [--quick]
[--models trajgru_ode,trajgru_attention | none]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

LEADS = tuple(range(6, 121, 6))
"""20 lead times, every 6 minutes up to 2 hours."""
DEFAULT_CONFIGS = ("small_lagrangian", "hko7_lagrangian")
_TOLERANCE = pd.Timedelta("2min")


def _note(text: str) -> None:
    print(f"benchmarks/forecast.py: {text}", file=sys.stderr)


def _proc_status_mb(field: str) -> float | None:
    """``VmHWM`` (peak) or ``VmRSS`` (current) resident memory in MB, None if unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _vm_hwm_mb() -> float | None:
    return _proc_status_mb("VmHWM")


_PEAK_MB = [0.0]
"""Highest VmHWM seen before a reset: the whole run's peak survives the resets."""


def _reset_peak() -> bool:
    _PEAK_MB[0] = max(_PEAK_MB[0], _vm_hwm_mb() or 0.0)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _make_store(tmp: Path, quick: bool) -> Path:
    from pipeline.ingest import ingest_archive
    from pipeline.synthetic import generate_archive

    hours = dict(hours=1, first_hour=11, irregular=False, corrupt=False, empty_day=False)
    hours = hours if quick else {}
    generate_archive(tmp / "archive", start="2015-06-01", days=1, seed=0, progress=False, **hours)
    ingest_archive(tmp / "archive", tmp / "radar.zarr", progress=False)
    return tmp / "radar.zarr"


def _pick_issue(ds, in_frames: int, cadence_min: float = 6.0) -> tuple[pd.Timestamp, float]:
    """Issue time whose *in_frames* slots all have a frame, with the most rain."""
    times = pd.DatetimeIndex(ds["time"].values)
    usable = np.ones(len(times), bool)
    if "observed" in ds:
        usable = np.asarray(ds["observed"].values, bool)
    cad = pd.Timedelta(minutes=cadence_min)
    candidates, last_idx = [], []
    for t in times[usable].floor(cad).unique():
        slots = pd.DatetimeIndex([t - k * cad for k in range(in_frames - 1, -1, -1)])
        idx = times.get_indexer(slots, method="nearest", tolerance=_TOLERANCE)
        if (idx >= 0).all() and usable[idx].all():
            candidates.append(t)
            last_idx.append(int(idx[-1]))
    if not candidates:
        raise ValueError(f"no issue time in the store has {in_frames} input frames in a row")
    step = max(1, ds.sizes["y"] // 60)
    sub = ds["reflectivity"].isel(
        time=last_idx, y=slice(None, None, step), x=slice(None, None, step)
    )
    wet = (np.nan_to_num(sub.values, nan=-10.0) >= 20.0).mean(axis=(1, 2))
    best = len(wet) - 1 - int(np.argmax(wet[::-1]))  # ties: the newest
    return candidates[best], float(wet[best])


def _predictors(
    configs: list[str], models: list[str] | None
) -> tuple[list[tuple[str, object]], list[tuple[str, object]]]:
    """``(key, Predictor)`` for persistence, pysteps and the configurations' models, and
    those of the ensembles by construction (on their own grid)."""
    import torch

    from nowcast.configs import load_config
    from nowcast.forecast import Predictor, baseline_predictor
    from nowcast.models import MODEL_NAMES, get_model

    out = [
        ("persistence", baseline_predictor("persistence", in_frames=5)),
        ("pysteps", baseline_predictor("pysteps", in_frames=5)),
    ]
    ens: list[tuple[str, object]] = []
    if models is not None and not models:
        return out, ens
    for config in configs:
        try:
            cfg = load_config(config)
        except (ValueError, FileNotFoundError) as err:
            _note(f"configuration {config!r} skipped: {err}")
            continue
        tag = config.removesuffix("_lagrangian")
        listed = [k for k in (cfg.models or {}) if k in MODEL_NAMES] or list(MODEL_NAMES)
        for name in listed if models is None else [m for m in listed if m in models]:
            torch.manual_seed(0)
            m = get_model(name, cfg).eval()
            sampled = bool(getattr(m, "ensemble", False))
            pred = Predictor(
                name=name,
                fn=m,
                in_frames=int(cfg.in_frames),
                cadence_minutes=float(getattr(cfg, "cadence_minutes", 6) or 6),
                image_size=int(cfg.image_size) if sampled else None,
                continuous_time=bool(getattr(m, "continuous_time", False)),
                source=f"untrained {name} ({config})",
            )
            (ens if sampled else out).append((f"{name}_{tag}", pred))
    return out, ens


def _time_predictor(pred, ds, issue, repeat: int) -> tuple[float, float | None, tuple]:
    from nowcast.forecast import make_forecast

    can_reset = _reset_peak()
    start_mb = _proc_status_mb("VmRSS") or 0.0
    fc = make_forecast(pred, ds, issue, LEADS)  # warm-up: imports, caches, lat/lon
    shape = tuple(fc["reflectivity"].shape)
    del fc
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fc = make_forecast(pred, ds, issue, LEADS)
        seconds.append(time.perf_counter() - t0)
        del fc
    peak = _vm_hwm_mb() if can_reset else None
    extra = None if peak is None else max(peak - start_mb, 0.0)
    return statistics.median(seconds), extra, shape


def _time_ensemble(pred, ds, issue, members: int, repeat: int) -> tuple[float, float | None, tuple]:
    from nowcast.ensemble_forecast import make_ensemble_forecast

    can_reset = _reset_peak()
    start_mb = _proc_status_mb("VmRSS") or 0.0
    seconds, shape = [], ()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fc = make_ensemble_forecast(pred, ds, issue, LEADS, members=members, seed=0)
        seconds.append(time.perf_counter() - t0)
        shape = tuple(fc["reflectivity"].shape)
        del fc
    peak = _vm_hwm_mb() if can_reset else None
    extra = None if peak is None else max(peak - start_mb, 0.0)
    return statistics.median(seconds), extra, shape


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per predictor")
    parser.add_argument("--store", type=Path, default=None, help="store to read (default: synth)")
    parser.add_argument(
        "--quick", action="store_true", help="a 1-hour regular synthetic archive (tests)"
    )
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help="comma-separated Lagrangian configurations (skipped when load_config rejects one)",
    )
    parser.add_argument(
        "--models",
        default="all",
        help="comma-separated model names to run from each configuration, 'all' or 'none'",
    )
    parser.add_argument(
        "--ensemble-repeat", type=int, default=1, help="timed calls per sampled ensemble"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    models = None
    if args.models.strip().lower() == "none":
        models = []
    elif args.models.strip().lower() != "all":
        models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]

    import torch

    from pipeline.store import open_store

    with contextlib.redirect_stdout(sys.stderr):
        import pysteps  # noqa: F401  (it prints where its configuration is: not on stdout)

    with tempfile.TemporaryDirectory(prefix="bench-forecast-") as tmp:
        path = args.store if args.store is not None else _make_store(Path(tmp), args.quick)
        if not Path(path).exists():
            parser.error(f"--store {path} does not exist")
        ds = open_store(path)
        size = int(ds.sizes["y"])
        preds, sampled = _predictors(configs, models)
        issue, wet = _pick_issue(ds, max(p.in_frames for _, p in preds + sampled))
        figures: dict[str, object] = {
            "size": size,
            "leads": len(LEADS),
            "issue_time": issue.strftime("%Y-%m-%dT%H:%M"),
            "wet_fraction": round(wet, 3),
        }
        peaks: dict[str, float] = {}
        for key, pred in preds:
            seconds, peak, shape = _time_predictor(pred, ds, issue, args.repeat)
            if shape != (len(LEADS), size, size):
                raise ValueError(f"{key} forecast has shape {shape}, expected 20 x {size} x {size}")
            figures[f"{key}_s_{size}"] = round(seconds, 4)
            if peak is not None:
                peaks[f"{key}_extra_rss_mb_{size}"] = round(peak, 1)
        ref = figures[f"pysteps_s_{size}"]
        for key, _ in preds[2:]:
            figures[f"ratio_{key}_to_pysteps_{size}"] = round(figures[f"{key}_s_{size}"] / ref, 3)
        for key, pred in sampled:
            for n in (1, 10):
                seconds, peak, shape = _time_ensemble(pred, ds, issue, n, args.ensemble_repeat)
                grid = (len(LEADS), pred.image_size, pred.image_size)
                if shape != grid:
                    raise ValueError(f"{key} forecast has shape {shape}, expected {grid}")
                figures[f"{key}_{n}m_s_{size}"] = round(seconds, 3)
                if peak is not None:
                    peaks[f"{key}_{n}m_extra_rss_mb_{size}"] = round(peak, 1)
        figures.update(peaks)
        _reset_peak()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures["peak_rss_mb"] = round(max(rss, _PEAK_MB[0]), 1)
        figures["torch_threads"] = torch.get_num_threads()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
