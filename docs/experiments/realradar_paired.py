"""Per-window scores and paired block-bootstrap differences for docs/results.md, "Real radar: the learned nowcast".

An experiment script (not part of the package): it scores trained runs and baselines on
every window of a resampled store with the same windows for all (the dataset of
``nowcast evaluate``), keeps the contingency counts and B-MSE per window and lead, and
compares predictors *paired*: the same windows are resampled together, in blocks of
consecutive windows long enough that overlapping windows fall in one block.

Usage::

    python docs/experiments/realradar_paired.py score STORE OUT.npz --stride 1 \\
        --run NAME=RUN_DIR[@SCALE] ... --baselines persistence,pysteps,sprog
    python docs/experiments/realradar_paired.py report A.npz B.npz ... --model NAME
        [--against NAME,...]

``score`` uses ``--in-frames 5 --out-frames 12 --split-fractions 0,0,1`` (the test split is
the whole store), as the ``nowcast evaluate`` commands of the results file; runs trained at
another pixel size are scored as ``--allow-other-grid`` does (the difference is printed);
``RUN_DIR@SCALE`` multiplies the Lagrangian network's learned change by SCALE
(``LagrangianNowcaster.change_scale``; 0: extrapolation plus the learned damping) and a
final ``+pm`` turns on its probability matching (``LagrangianNowcaster.prob_match``).
``report`` prints per-event and pooled CSI (counts summed over windows, then CSI per lead,
averaged over the leads, as ``nowcast evaluate``), the model minus each baseline and its
90 % circular block-bootstrap interval (2000 resamples; pooled: events resampled separately,
stratified), and a verdict: ahead / behind when the interval excludes zero, else "not
distinguishable".
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

THRESHOLDS = (0.5, 2.0, 5.0, 10.0)


def score(args: argparse.Namespace) -> None:
    from nowcast.baselines import get_baseline
    from nowcast.metrics import MetricAccumulator
    from nowcast.runs import load_run
    from nowcast.training.rungrid import fit_run_to_store
    from pipeline.dataset import RadarSequenceDataset

    ds = RadarSequenceDataset(
        args.store, split="test", n_in=5, n_out=12, stride=args.stride, fractions=(0, 0, 1)
    )
    cadence = float(ds.cadence_minutes)
    predictors = {}
    for spec in args.run:
        name, path = spec.split("=", 1)
        path, pm = (path[:-3], True) if path.endswith("+pm") else (path, False)
        path, _, scale = path.partition("@")  # RUN@0.5: the network's change times 0.5
        model, meta = load_run(path)
        model.prob_match = pm or model.prob_match
        if scale:
            model.change_scale = float(scale)
        for note in fit_run_to_store(model, meta, args.store, allow_other_grid=True):
            print(f"{name}: {note}")
        predictors[name] = model.eval()
    for name in [b for b in args.baselines.split(",") if b]:
        predictors[name] = get_baseline(name, cadence_minutes=cadence)
    names = list(predictors)
    counts = np.zeros((len(names), len(ds), 12, len(THRESHOLDS), 3), np.int64)
    bmse = np.zeros((len(names), len(ds), 12))
    for w in range(len(ds)):
        x, y, t_in, t_out, m_in, m_out = (v[None] for v in ds[w][:6])
        for p, name in enumerate(names):
            with torch.no_grad():
                pred = predictors[name](x, t_in, t_out, input_mask=m_in)
            acc = MetricAccumulator(THRESHOLDS)
            acc.update(pred, y, t_out, m_out)
            r = acc.result()
            counts[p, w] = np.stack(
                [r["hits"].values, r["misses"].values, r["false_alarms"].values], axis=-1
            )
            bmse[p, w] = r["B-MSE"].values
        print(f"window {w + 1}/{len(ds)}", flush=True)
    np.savez(
        args.out,
        names=np.array(names),
        counts=counts,
        bmse=bmse,
        stride=args.stride,
        store=str(args.store),
    )


def _csi(counts: np.ndarray) -> np.ndarray:
    """``(..., window, lead, thr, 3)`` -> ``(..., thr)``: CSI per lead from summed counts,
    averaged over the leads."""
    c = counts.sum(axis=-4)
    with np.errstate(divide="ignore", invalid="ignore"):
        csi = c[..., 0] / (c[..., 0] + c[..., 1] + c[..., 2])
    return np.nanmean(csi, axis=-2)


def _blocks(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a circular block bootstrap resample of ``n`` windows (blocks of
    ``length`` consecutive windows, wrapping around, so every window is equally likely)."""
    starts = rng.integers(0, n, size=math.ceil(n / length))
    return ((starts[:, None] + np.arange(length)[None]).ravel() % n)[:n]


def _merged(files: list[str]) -> tuple[list[str], list[dict]]:
    """The files' scores grouped by store (predictors of several files side by side)."""
    by_store: dict[str, dict] = {}
    for path in files:
        f = dict(np.load(path))
        store = str(f["store"])
        if store not in by_store:
            by_store[store] = f
            continue
        ev = by_store[store]
        if f["counts"].shape[1:] != ev["counts"].shape[1:]:
            raise ValueError(f"{path}: other windows than the first file of {store}")
        ev["names"] = np.r_[ev["names"], f["names"]]
        ev["counts"] = np.concatenate([ev["counts"], f["counts"]])
        ev["bmse"] = np.concatenate([ev["bmse"], f["bmse"]])
    return [Path(s).name for s in by_store], list(by_store.values())


def report(args: argparse.Namespace) -> None:
    files, events = _merged(args.files)
    args.files = files
    rng = np.random.default_rng(0)
    n_boot = 2000
    rows = []
    for path, ev in zip(args.files, events, strict=True):
        names = [str(n) for n in ev["names"]]
        length = math.ceil(17 / int(ev["stride"]))  # windows overlapping one window
        ev["length"] = length
        ev["list"] = names
        csi = _csi(ev["counts"])
        line = " | ".join(
            f"{n} " + " / ".join(f"{v:.3f}" for v in csi[i]) for i, n in enumerate(names)
        )
        rows.append(f"{path}: {ev['counts'].shape[1]} windows | {line}")
    print("\n".join(rows))
    model = args.model
    against = args.against.split(",") if args.against else events[0]["list"]
    for base in [n for n in against if n != model]:
        print(f"\n{model} - {base} (CSI at {', '.join(map(str, THRESHOLDS))} mm/h; B-MSE)")
        boots_all = []
        for path, ev in zip(args.files, events, strict=True):
            i, j = ev["list"].index(model), ev["list"].index(base)
            d = _csi(ev["counts"][i]) - _csi(ev["counts"][j])
            db = ev["bmse"][j].mean() - ev["bmse"][i].mean()  # positive: model better
            boots = []
            for _ in range(n_boot):
                idx = _blocks(ev["counts"].shape[1], ev["length"], rng)
                bd = _csi(ev["counts"][i][idx]) - _csi(ev["counts"][j][idx])
                bb = ev["bmse"][j][idx].mean() - ev["bmse"][i][idx].mean()
                boots.append(np.r_[bd, bb])
            boots = np.asarray(boots)
            boots_all.append((boots, ev["counts"][[i, j]], ev["bmse"][[i, j]]))
            print(f"  {path}: " + _fmt(np.r_[d, db], boots))
        if len(events) > 1:
            # pooled: counts summed over all events' windows, events resampled separately
            ci = np.concatenate([c[0] for _, c, _ in boots_all])
            cj = np.concatenate([c[1] for _, c, _ in boots_all])
            bi = np.concatenate([b[0] for _, _, b in boots_all])
            bj = np.concatenate([b[1] for _, _, b in boots_all])
            d = np.r_[_csi(ci) - _csi(cj), bj.mean() - bi.mean()]
            pooled = []
            for _ in range(n_boot):
                parts = [_blocks(ev["counts"].shape[1], ev["length"], rng) for ev in events]
                ii = np.concatenate(
                    [c[0][idx] for (_, c, _), idx in zip(boots_all, parts, strict=True)]
                )
                jj = np.concatenate(
                    [c[1][idx] for (_, c, _), idx in zip(boots_all, parts, strict=True)]
                )
                bii = np.concatenate(
                    [b[0][idx] for (_, _, b), idx in zip(boots_all, parts, strict=True)]
                )
                bjj = np.concatenate(
                    [b[1][idx] for (_, _, b), idx in zip(boots_all, parts, strict=True)]
                )
                pooled.append(np.r_[_csi(ii) - _csi(jj), bjj.mean() - bii.mean()])
            print("  pooled: " + _fmt(d, np.asarray(pooled)))


def _fmt(d: np.ndarray, boots: np.ndarray) -> str:
    lo, hi = np.quantile(boots, 0.05, axis=0), np.quantile(boots, 0.95, axis=0)
    out = []
    for k in range(len(d)):
        verdict = "ahead" if lo[k] > 0 else "behind" if hi[k] < 0 else "n.d."
        fmt = (
            "{:+.3f} [{:+.3f}, {:+.3f}] {}"
            if k < len(THRESHOLDS)
            else "{:+.1f} [{:+.1f}, {:+.1f}] {}"
        )
        out.append(fmt.format(d[k], lo[k], hi[k], verdict))
    return " | ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("store")
    s.add_argument("out")
    s.add_argument("--stride", type=int, default=1)
    s.add_argument("--run", action="append", default=[])
    s.add_argument("--baselines", default="")
    r = sub.add_parser("report")
    r.add_argument("files", nargs="+")
    r.add_argument("--model", required=True)
    r.add_argument("--against", default="", help="Comma-separated names (default: all).")
    args = parser.parse_args()
    score(args) if args.cmd == "score" else report(args)


if __name__ == "__main__":
    main()
