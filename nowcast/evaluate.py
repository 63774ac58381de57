"""Evaluate nowcasts: HKO-7 protocol and thesis metrics, baselines, robustness, reports.

Everything streams over a dataset of sample items (docs/contracts.md, Sample schema)
``(inputs, targets, t_in, t_out, input_mask, target_mask)`` batch by batch (predictions are
never all held in memory), and every predictor follows the predictor call contract (docs/contracts.md)
``predictor(x, t_in, t_out, input_mask=None) -> y`` with ``(B, T, 1, H, W)`` tensors in p/255.

Public functions
----------------
:func:`evaluate_predictors`
    Scores of several predictors on one dataset -> :class:`xarray.Dataset` with dims
    ``predictor``, ``lead_time`` (minutes), ``threshold`` (mm/h); see
    :meth:`nowcast.metrics.MetricAccumulator.result` for the variables.
:func:`summarize`
    Mean over lead times (categorical scores and B-MSE/B-MAE: plain mean over lead times, as
    the HKO-7 benchmark prints them; MSE/MAE/SSIM/PSNR: mean over all valid frames).
:func:`to_markdown`, :func:`plot_skill`
    Tables and a picture (CSI and HSS against lead time per threshold, one line per
    predictor, plus B-MSE, MSE, SSIM and PSNR).
:func:`evaluate_robustness`, :func:`robustness_to_markdown`, :func:`plot_robustness`
    Re-run the evaluation per corruption level (:mod:`nowcast.perturb`); defined in
    :mod:`nowcast.robustness` and importable from here.
:func:`evaluate_run`
    A trained run directory (and/or the baselines) on a store split and sampling scheme;
    writes ``results.nc``, ``results.md``, ``skill.png`` (and ``results_extra.nc``,
    ``robustness.*`` when asked) into ``RUN_DIR/eval/<split>_<scheme>/``.

Ensembles: with ``members=N`` (``nowcast evaluate --members N``) every predictor is also
scored as an ensemble (:mod:`nowcast.probscores`: CRPS, reliability, ROC, rank histogram,
spread against skill per lead time); the run's model is wrapped in
:class:`nowcast.ensemble.EnsembleNowcaster`, ``steps`` gives its own members, deterministic
baselines count as one member; the deterministic scores are those of the ensemble mean.

Units: B-MSE / B-MAE are per-frame SUMS in p/255 units, so they scale with the number of
pixels (an 80 x 80 frame gives 36 times less than HKO-7's 480 x 480 for the same per-pixel
errors). MSE, MAE are stored per pixel in p/255 units; reports print them x 1e4 and SSIM
x 1e2, as the thesis does.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from nowcast.contract import Nowcaster
from nowcast.ensemble import predict_members
from nowcast.metrics import MetricAccumulator
from nowcast.perturb import Perturbation
from nowcast.probscores import EnsembleScoreAccumulator
from nowcast.reports import plot_skill, summarize, to_markdown
from pipeline.units import RAIN_THRESHOLDS_MMH

__all__ = [
    "EvaluationOutputs",
    "evaluate_predictors",
    "evaluate_run",
    "plot_skill",
    "summarize",
    "to_markdown",
]


# --------------------------------------------------------------------------- core loop
def _names(values) -> np.ndarray:
    """Labels as an object array of str (what NetCDF string variables read back as)."""
    return np.array([str(v) for v in values], dtype=object)


def _select_leads(t_out: torch.Tensor, lead_times: Sequence[float] | None) -> torch.Tensor | None:
    """Column indices of ``t_out`` (B, T) matching ``lead_times``; None = all columns."""
    if lead_times is None:
        return None
    first = t_out[0]
    if not torch.allclose(t_out, first.expand_as(t_out)):
        raise ValueError(
            "lead_times selection needs the same target times in every sample (a regular "
            "target scheme); this dataset has irregular target times"
        )
    idx = []
    for lead in lead_times:
        hit = torch.nonzero(torch.isclose(first, torch.tensor(float(lead), dtype=first.dtype)))
        if hit.numel() == 0:
            raise ValueError(
                f"no ground truth at lead time {lead} min; the dataset's target lead times are "
                f"{[round(float(v), 3) for v in first]} min"
            )
        idx.append(int(hit[0, 0]))
    return torch.tensor(idx)


def evaluate_predictors(
    predictors: Mapping[str, Nowcaster],
    dataset: torch.utils.data.Dataset,
    batch_size: int = 4,
    *,
    thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH,
    lead_times: Sequence[float] | None = None,
    perturbation: Perturbation | None = None,
    max_samples: int | None = None,
    device: str | torch.device = "cpu",
    skip_failing: bool = False,
    num_workers: int = 0,
    progress: bool = True,
    members: int | None = None,
    ensemble_seed: int = 0,
) -> xr.Dataset:
    """Score several predictors on one dataset, streaming over batches.

    Parameters
    ----------
    predictors : mapping of str to nowcast.contract.Nowcaster
        Name -> ``predictor(x, t_in, t_out, input_mask=None) -> y`` (a model with the predictor call contract of docs/contracts.md
        or a baseline of :mod:`nowcast.baselines`). Modules are run under ``torch.no_grad``.
    dataset : torch.utils.data.Dataset
        Items ``(inputs (T_in,1,H,W), targets (T_out,1,H,W), t_in (T_in,), t_out (T_out,),
        input_mask (T_in,1,H,W), target_mask (T_out,1,H,W))`` (docs/contracts.md, Sample schema), p/255, minutes.
    batch_size : int
        Samples per batch.
    thresholds_mmh : sequence of float
        Rain thresholds of the categorical scores (mm/h).
    lead_times : sequence of float, optional
        Evaluate only these target lead times (minutes); needs identical ``t_out`` in every
        sample. The predictors are asked for all target times up to the largest selected one
        (so regular-only models see contiguous steps) and scored on the selected ones.
    perturbation : Perturbation, optional
        Corrupts the inputs (and input mask) of every batch before the predictors see them;
        the same corrupted batch goes to every predictor.
    max_samples : int, optional
        Use only the first ``max_samples`` items.
    device : str or torch.device
        Where inputs are moved before calling the predictors.
    skip_failing : bool
        If True a predictor raising ``ValueError`` (e.g. a regular-only model asked for
        irregular times) is dropped and the reason stored in ``attrs["skipped"]``; if False
        the error propagates.
    num_workers : int
        DataLoader workers.
    progress : bool
        Show a tqdm bar (batches, samples/s).
    members : int, optional
        Also score the predictors as ensembles (:mod:`nowcast.probscores`): ensemble
        predictors (``ensemble = True``, :mod:`nowcast.baselines`) are asked for ``members``
        members (seeded by ``ensemble_seed``), deterministic ones count as one member. The
        deterministic scores are then those of the ensemble mean. An ensemble predictor
        is always scored this way (with its own member count when ``members`` is None).
    ensemble_seed : int
        Seed of the ensemble members.

    Returns
    -------
    xarray.Dataset
        Dims ``predictor``, ``lead_time``, ``threshold``; variables as in
        :meth:`nowcast.metrics.MetricAccumulator.result` plus ``seconds_per_sample``
        (predictor). Attrs ``n_samples`` and ``skipped``. With ensembles also the variables
        of :meth:`nowcast.probscores.EnsembleScoreAccumulator.result` (``CRPS``,
        ``reliability``, ``ROC_AUC``, ``rank_histogram``, ...).
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    if not predictors:
        raise ValueError("no predictors given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    n = len(dataset)
    if max_samples is not None:
        n = min(n, int(max_samples))
        dataset = Subset(dataset, range(n))
    if n == 0:
        raise ValueError("the dataset has no samples to evaluate")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        # spawned workers: forked ones inherit the locks of the caller's threads (Prefect, dask)
        multiprocessing_context="spawn" if num_workers > 0 else None,
    )
    device = torch.device(device)
    accs = {name: MetricAccumulator(thresholds_mmh) for name in predictors}
    probabilistic = members is not None or any(
        getattr(p, "ensemble", False) for p in predictors.values()
    )
    prob_accs = {name: EnsembleScoreAccumulator(thresholds_mmh) for name in predictors}
    seconds = dict.fromkeys(predictors, 0.0)
    skipped: dict[str, str] = {}
    for p in predictors.values():
        if isinstance(p, torch.nn.Module):
            p.eval()

    bar = tqdm(total=n, unit="sample", desc="evaluate", disable=not progress)
    for b, batch in enumerate(loader):
        if len(batch) != 6:
            raise ValueError(
                f"dataset items must be (inputs, targets, t_in, t_out, input_mask, "
                f"target_mask); got {len(batch)} elements"
            )
        x, y, t_in, t_out, in_mask, out_mask = batch
        cols = _select_leads(t_out, lead_times)
        t_ask = t_out
        if cols is not None:
            # ask for every target time up to the last selected one (regular-only models
            # need contiguous steps), then keep the selected columns
            t_ask = t_out[:, : int(cols.max()) + 1]
            y, t_out, out_mask = y[:, cols], t_out[:, cols], out_mask[:, cols]
        if perturbation is not None:
            x, in_mask = perturbation(x, in_mask, b)
        xd, tid, tod, md = (v.to(device) for v in (x, t_in, t_ask, in_mask))
        for name, predictor in predictors.items():
            if name in skipped:
                continue
            start = time.perf_counter()
            try:
                with torch.no_grad():
                    if probabilistic:
                        ens = predict_members(predictor, xd, tid, tod, md, members, ensemble_seed)
                        pred = ens.mean(dim=1)
                    else:
                        pred = predictor(xd, tid, tod, input_mask=md)
            except ValueError as err:
                if not skip_failing:
                    raise
                skipped[name] = str(err)
                continue
            seconds[name] += time.perf_counter() - start
            if cols is not None and tuple(pred.shape[:2]) == tuple(t_ask.shape):
                pred = pred[:, cols.to(pred.device)]
                if probabilistic:
                    ens = ens[:, :, cols.to(ens.device)]
            if tuple(pred.shape) != tuple(y.shape):
                raise ValueError(
                    f"predictor {name!r} returned shape {tuple(pred.shape)}; expected "
                    f"{tuple(y.shape)} (B, T_out, 1, H, W)"
                )
            accs[name].update(pred.float().cpu(), y, t_out, out_mask)
            if probabilistic:
                prob_accs[name].update(ens.float().cpu(), y, t_out, out_mask)
        bar.update(x.shape[0])
    bar.close()

    kept = [name for name in predictors if name not in skipped]
    if not kept:
        raise ValueError(f"every predictor failed: {skipped}")
    parts = [accs[name].result() for name in kept]
    if probabilistic:
        parts = [
            xr.merge([part, prob_accs[name].result()], join="outer")
            for part, name in zip(parts, kept, strict=True)
        ]
    ds = xr.concat(parts, dim="predictor", join="outer")
    ds = ds.assign_coords(predictor=("predictor", _names(kept)))
    ds["seconds_per_sample"] = ("predictor", np.array([seconds[k] / n for k in kept]))
    ds.attrs["n_samples"] = int(n)
    ds.attrs["skipped"] = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    return ds


_ROBUSTNESS = ("evaluate_robustness", "plot_robustness", "robustness_to_markdown")


def __getattr__(name: str):
    """The robustness functions live in :mod:`nowcast.robustness` (imported on first use)."""
    if name in _ROBUSTNESS:
        from nowcast import robustness

        return getattr(robustness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- runs
@dataclass
class EvaluationOutputs:
    """What :func:`evaluate_run` produced.

    Attributes
    ----------
    out_dir : pathlib.Path
        Directory holding the files.
    results : xarray.Dataset
        Scores at the evaluated lead times (:func:`evaluate_predictors`).
    extra : xarray.Dataset or None
        Scores at the extra lead times, if asked for.
    robustness : xarray.Dataset or None
        :func:`evaluate_robustness` output, if asked for.
    files : list of pathlib.Path
        Files written.
    """

    out_dir: Path
    results: xr.Dataset
    extra: xr.Dataset | None = None
    robustness: xr.Dataset | None = None
    files: list[Path] = field(default_factory=list)


def _write_netcdf(ds: xr.Dataset, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)
    return path


def evaluate_run(
    run_dir: str | os.PathLike | None,
    data: str | os.PathLike,
    split: str = "test",
    scheme: str = "regular",
    *,
    baselines: bool | Sequence[str] = True,
    extra_lead_times: Sequence[float] | None = None,
    perturb: bool | Mapping[str, Sequence[float]] = False,
    perturb_samples: int | None = None,
    out_dir: str | os.PathLike | None = None,
    in_frames: int | None = None,
    out_frames: int | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    day_files: Mapping[str, Any] | None = None,
    stride: int = 5,
    batch_size: int = 4,
    max_samples: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    members: int | None = None,
) -> EvaluationOutputs:
    """Evaluate a trained run (and/or the classical baselines) on a store split and scheme.

    Parameters
    ----------
    run_dir : path or None
        Training run directory (``best.pt``, see :func:`nowcast.runs.load_run`); None for
        baselines only (then ``out_dir`` is required).
    data : path
        Resampled Zarr store (docs/contracts.md, Resampled schema).
    split : str
        Dataset split (``train``, ``valid``, ``test``...), passed to
        :class:`pipeline.dataset.RadarSequenceDataset`.
    scheme : str
        Sampling scheme: ``regular``, ``irregular_input``, ``irregular_target``,
        ``irregular``.
    baselines : bool or sequence of str
        True: ``persistence`` and ``pysteps``; a sequence: those names
        (:data:`nowcast.baselines.BASELINE_NAMES`); False: none.
    extra_lead_times : sequence of float, optional
        Lead times (minutes) not trained on; they must lie on the data's time grid
        (multiples of its cadence: with HKO-7's 6-minute frames a 3-minute lead has no
        ground truth and is refused). Evaluated on a ``regular`` dataset long enough to
        reach the largest one and reported separately (``results_extra.nc`` and a section of
        ``results.md``). Regular-only models that cannot produce them are skipped.
    perturb : bool or mapping
        True: robustness evaluation at :data:`nowcast.perturb.DEFAULT_LEVELS`; a mapping:
        those levels. Writes ``robustness.nc``, ``robustness.md``, ``robustness.png``.
    perturb_samples : int, optional
        Run the robustness evaluation (one pass per corruption level) on only the first
        ``perturb_samples`` samples, to bound its cost.
    out_dir : path, optional
        Output directory; default ``RUN_DIR/eval/<split>_<scheme>``.
    in_frames, out_frames : int, optional
        Sequence lengths; default the run's configuration (baselines only: 5 and 20, the
        HKO-7 benchmark setting).
    split_fractions : sequence of 3 floats
        Chronological train/valid/test fractions of the store's days (as in training).
    day_files : mapping, optional
        ``{"train": ..., "valid": ..., "test": ...}`` day lists (HKO-7
        ``hko7_rainy_<split>_days.txt`` files or iterables of days); overrides
        ``split_fractions`` (see :func:`pipeline.dataset.split_days`).
    stride : int
        Slots between consecutive sample windows (HKO-7: 5).
    batch_size, max_samples, seed, device, progress
        See :func:`evaluate_predictors`; ``seed`` also seeds the sampling scheme, the
        corruptions and the ensemble members.
    members : int, optional
        Score ensembles of this many members: the run's model through
        :class:`nowcast.ensemble.EnsembleNowcaster`, ensemble baselines (``steps``) with
        as many members; the probabilistic scores go into ``results.nc``, a section of
        ``results.md`` and ``probabilistic.png``.

    Returns
    -------
    EvaluationOutputs
    """
    from nowcast.baselines import get_baseline
    from nowcast.robustness import evaluate_robustness, plot_robustness, robustness_to_markdown
    from pipeline.dataset import RadarSequenceDataset

    predictors: dict[str, Nowcaster] = {}
    if run_dir is not None:
        from nowcast.runs import load_run

        model, meta = load_run(run_dir, map_location=device)
        cfg = meta["config"]
        predictors[meta["model_name"]] = model.to(device)
        in_frames = int(in_frames or cfg.in_frames)
        out_frames = int(out_frames or cfg.out_frames)
    else:
        in_frames = int(in_frames or 5)
        out_frames = int(out_frames or 20)
    if out_dir is None:
        if run_dir is None:
            raise ValueError("out_dir is required when evaluating baselines only (no run_dir)")
        out_dir = Path(run_dir) / "eval" / f"{split}_{scheme}"
    ds_kwargs = {
        "n_in": in_frames,
        "n_out": out_frames,
        "seed": seed,
        "stride": int(stride),
        "fractions": tuple(float(f) for f in split_fractions),
        "day_files": day_files,
    }
    dataset = RadarSequenceDataset(data, split=split, scheme=scheme, **ds_kwargs)
    cadence = float(dataset.cadence_minutes)
    if members is not None:
        from nowcast.ensemble import EnsembleNowcaster

        predictors = {
            k: EnsembleNowcaster(p, n_members=members, seed=seed, cadence_minutes=cadence)
            for k, p in predictors.items()
        }
    names = (
        ["persistence", "pysteps"] if baselines is True else list(baselines) if baselines else []
    )
    for name in names:
        kw = {"n_members": members or 10, "seed": seed} if name == "steps" else {}
        predictors[name] = get_baseline(name, cadence_minutes=cadence, **kw)
    if not predictors:
        raise ValueError("nothing to evaluate: give a run directory or baselines")
    if extra_lead_times:
        leads = sorted({float(v) for v in extra_lead_times})
        steps = [v / cadence for v in leads]
        off = [v for v, s in zip(leads, steps, strict=True) if not math.isclose(s, round(s))]
        if off or min(leads) <= 0:
            raise ValueError(
                f"extra lead times must be positive multiples of the data cadence "
                f"({cadence:g} min) to have ground truth; got {leads}"
            )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "max_samples": max_samples,
        "device": device,
        "progress": progress,
        "members": members,
        "ensemble_seed": seed,
    }
    results = evaluate_predictors(predictors, dataset, batch_size, **common)
    results.attrs.update({"split": split, "scheme": scheme, "data": str(data)})
    outputs = EvaluationOutputs(out_dir=out_dir, results=results)

    if extra_lead_times:
        extra_scheme = "regular"  # identical target times in every sample
        extra_ds = RadarSequenceDataset(
            data,
            split=split,
            scheme=extra_scheme,
            **{**ds_kwargs, "n_out": int(round(max(steps)))},
        )
        outputs.extra = evaluate_predictors(
            predictors, extra_ds, batch_size, lead_times=leads, skip_failing=True, **common
        )
        outputs.extra.attrs.update({"split": split, "scheme": extra_scheme, "data": str(data)})
        outputs.files.append(_write_netcdf(outputs.extra, out_dir / "results_extra.nc"))

    outputs.files.append(_write_netcdf(results, out_dir / "results.nc"))
    title = f"Evaluation: {split} split, {scheme} sampling"
    md = to_markdown(results, title=title, extra=outputs.extra)
    if "CRPS" in results:
        from nowcast.probscores import plot_probabilistic, probabilistic_markdown

        md += "\n" + probabilistic_markdown(results)
        outputs.files.append(plot_probabilistic(results, out_dir / "probabilistic.png", title))
    (out_dir / "results.md").write_text(md, encoding="utf-8")
    outputs.files.append(out_dir / "results.md")
    outputs.files.append(plot_skill(results, out_dir / "skill.png", title=title))

    if perturb:
        levels = None if perturb is True else perturb
        n_robust = min(v for v in (max_samples, perturb_samples, len(dataset)) if v is not None)
        outputs.robustness = evaluate_robustness(
            predictors,
            dataset,
            batch_size,
            levels=levels,
            seed=seed,
            **{**common, "max_samples": n_robust},
        )
        outputs.files.append(_write_netcdf(outputs.robustness, out_dir / "robustness.nc"))
        (out_dir / "robustness.md").write_text(
            robustness_to_markdown(outputs.robustness, f"Robustness: {split}, {scheme}"),
            encoding="utf-8",
        )
        outputs.files.append(out_dir / "robustness.md")
        outputs.files.append(plot_robustness(outputs.robustness, out_dir / "robustness.png"))
    return outputs
