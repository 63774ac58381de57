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
    :meth:`nowcast.metrics.MetricAccumulator.result` for the variables. Defined in
    :mod:`nowcast.scoring` (the core loop, which :mod:`nowcast.robustness` uses too) and
    importable from here.
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
    A trained run directory (and/or the baselines) on a store split and sampling scheme, as
    :class:`EvaluateOptions` (:mod:`nowcast.options`, re-exported here) say;
    writes ``results.nc``, ``results.md``, ``skill.png`` (and ``results_extra.nc``,
    ``robustness.*`` when asked) into ``RUN_DIR/eval/<split>_<scheme>/``.

Uncertainty (:mod:`nowcast.verification`, docs/verification.md): :func:`evaluate_run` keeps
per-sequence sums of every score (``sequences.nc``) and adds to ``results.nc`` the FSS,
bootstrap intervals of every per-lead and summary score, paired differences of the first
predictor against the others with a verdict, per case (each of several stores, or days)
and pooled; ``results.md`` and ``skill.png`` show them.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from nowcast.contract import Nowcaster
from nowcast.options import EvaluateOptions
from nowcast.reports import plot_skill, summarize, to_markdown
from nowcast.robustness import evaluate_robustness, plot_robustness, robustness_to_markdown
from nowcast.scoring import evaluate_predictors
from nowcast.verification.cases import Cases, open_cases

__all__ = [
    "EvaluateOptions",
    "EvaluationOutputs",
    "evaluate_predictors",
    "evaluate_robustness",
    "evaluate_run",
    "plot_robustness",
    "plot_skill",
    "robustness_to_markdown",
    "summarize",
    "to_markdown",
]


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

    def summary(self) -> dict[str, Any]:
        """Plain values: ``out_dir``, ``files``, ``table`` (``results.md``), ``predictors``
        and ``lines``, one line of headline scores per predictor (what ``nowcast evaluate``
        prints: CSI at the lowest threshold, B-MSE, MSE x 1e4, SSIM x 1e2, PSNR; CRPS x 1e2
        with ensembles)."""
        s = summarize(self.results)
        thr = float(s["threshold"].values[0])
        lines = []
        if self.results.attrs.get("skipped_stores"):
            lines.append(f"skipped: {self.results.attrs['skipped_stores']}")
        for name in s["predictor"].values:
            sp = s.sel(predictor=name)
            ci = ""
            if "summary_CSI_lower" in self.results:  # the pooled (or only) case: the last
                r = self.results.isel(case=-1)
                lo, hi = (
                    float(r[f"summary_CSI_{k}"].sel(predictor=name).isel(threshold=0))
                    for k in ("lower", "upper")
                )
                ci = f" [{lo:.4f}, {hi:.4f}]"
            lines.append(
                f"{name}: CSI(>={thr:g} mm/h) {float(sp['CSI'].sel(threshold=thr)):.4f}{ci}  "
                f"B-MSE {float(sp['B-MSE']):.1f}  MSE x1e4 {float(sp['MSE']) * 1e4:.2f}  "
                f"SSIM x1e2 {float(sp['SSIM']) * 1e2:.2f}  PSNR {float(sp['PSNR']):.2f}"
            )
        if "CRPS" in self.results:
            crps = self.results["CRPS"].mean("lead_time")
            for name in crps["predictor"].values:
                lines.append(f"{name}: CRPS x1e2 {float(crps.sel(predictor=name)) * 1e2:.4f}")
        return {
            "out_dir": str(self.out_dir),
            "files": [str(p) for p in self.files],
            "table": str(self.out_dir / "results.md"),
            "predictors": [str(p) for p in self.results["predictor"].values],
            "lines": lines,
        }


def _write_netcdf(ds: xr.Dataset, path: Path) -> Path:
    from pipeline.atomic import atomic_write

    return atomic_write(path, ds.to_netcdf)


def _with_uncertainty(
    results: xr.Dataset, cases: Cases, options: EvaluateOptions
) -> tuple[xr.Dataset, xr.Dataset | None]:
    """Split the per-sequence sums off ``results`` and add the bootstrap's variables.

    Returns the results with intervals, per-case summaries and paired differences
    (:func:`nowcast.verification.uncertainty.score_uncertainty`) and the per-sequence sums
    (``sequences.nc``: with the case and time of every sequence); ``(results, None)``
    without a bootstrap.
    """
    seq_vars = [v for v in results.data_vars if str(v).startswith("seq_")]
    if not seq_vars:
        return results, None
    from nowcast.verification.uncertainty import score_uncertainty

    seq = results[seq_vars]
    results = results.drop_vars(seq_vars)
    results = results.drop_dims(
        [d for d in ("sequence", "category", "field", "part") if d in results.dims]
    )
    index = seq["sequence"].values
    labels, times = cases.labels[index], cases.times[index]
    order = sorted(range(len(index)), key=lambda i: (list(cases.blocks).index(labels[i]), times[i]))
    seq = seq.isel(sequence=order)
    labels, times = labels[order], times[order]
    seq = seq.assign_coords(case=("sequence", labels), time=("sequence", times))
    unc = score_uncertainty(
        seq,
        labels,
        cases.blocks,
        n_resamples=int(options.bootstrap),
        level=float(options.confidence),
        seed=int(options.seed),
    )
    results = xr.merge([results, unc], join="left", compat="override", combine_attrs="override")
    results.attrs.update(unc.attrs)
    seq.attrs.update({"split": options.split, "scheme": options.scheme})
    return results, seq


def evaluate_run(
    run_dir: str | os.PathLike | None,
    data: str | os.PathLike,
    options: EvaluateOptions | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
) -> EvaluationOutputs:
    """Evaluate a trained run (and/or the classical baselines) on a store split and scheme.

    Parameters
    ----------
    run_dir : path or None
        Training run directory (``best.pt``, see :func:`nowcast.runs.load_run`); None for
        baselines only (then ``options.baselines`` names them and ``out_dir`` is required).
    data : path or sequence of paths
        Resampled Zarr store (docs/contracts.md, Resampled schema); several (events,
        radars; same cadence and frame size): every case scored on its own and pooled
        (``options.cases``, docs/verification.md).
    options : EvaluateOptions, optional
        Split, scheme, baselines, extra lead times, robustness, ensembles, sample counts,
        seed, device (:class:`nowcast.options.EvaluateOptions`; the same object
        ``nowcast evaluate`` and ``nowcast flow evaluate`` build from their flags).
    out_dir : path, optional
        Output directory; default ``RUN_DIR/eval/<split>_<scheme>``.

    Returns
    -------
    EvaluationOutputs
    """
    options = options or EvaluateOptions()
    split, scheme, seed, device = options.split, options.scheme, options.seed, options.device
    in_frames, out_frames, members = options.in_frames, options.out_frames, options.members
    batch_size, max_samples = options.batch_size, options.max_samples
    extra_lead_times, perturb = options.extra_lead_times, options.perturb
    from nowcast.baselines import get_baseline
    from pipeline.dataset import _frame_shape

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
        "stride": int(options.stride),
        "fractions": tuple(float(f) for f in options.split_fractions),
        "day_files": options.day_files,
    }
    stores = [data] if isinstance(data, str | os.PathLike) else list(data)
    if members is not None:  # a size that cannot fit is refused before anything is read
        _check_ensemble_size(options, members, out_frames, _frame_shape(stores[0]))
    cases = open_cases(
        data, split, scheme, ds_kwargs, cases=options.cases, block=options.bootstrap_block
    )
    dataset = cases.dataset
    cadence = float(cases.cadence_minutes)
    data_text = ", ".join(str(p) for p in stores)
    grid_notes = []
    if run_dir is not None:  # each store's pixel size and cadence against the run's
        from nowcast.training.rungrid import fit_run_to_store

        for store in stores:
            for note in fit_run_to_store(model, meta, store, options.allow_other_grid):
                if note not in grid_notes:
                    grid_notes.append(note)
    if members is not None:
        from nowcast.ensemble import EnsembleNowcaster

        # an ensemble by construction (shrvqvae) samples its own members
        predictors = {
            k: p
            if getattr(p, "ensemble", False)
            else EnsembleNowcaster(p, n_members=members, seed=seed, cadence_minutes=cadence)
            for k, p in predictors.items()
        }
    for name in options.baselines:
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
    calibrations = {}
    if options.calibration is not None:
        if members is None or run_dir is None:
            raise ValueError("a calibration needs --members N and a run directory (its model)")
        from nowcast.calibration import ProbabilityCalibration

        calibration = ProbabilityCalibration.load(options.calibration)
        if calibration.n_members != members:
            raise ValueError(
                f"{options.calibration} was fitted for {calibration.n_members} members; "
                f"evaluate with --members {calibration.n_members} (got {members})"
            )
        calibrations = {meta["model_name"]: calibration}
    common = {
        "max_samples": max_samples,
        "device": device,
        "progress": options.progress,
        "members": members,
        "ensemble_seed": seed,
        "probability": options.probability,
        "calibrations": calibrations,
    }
    fss = {"fss_scales_km": options.fss_scales_km if cases.pixel_km is not None else ()}
    results = evaluate_predictors(
        predictors,
        dataset,
        batch_size,
        per_sequence=options.bootstrap > 0,
        pixel_km=cases.pixel_km,
        **fss,
        **common,
    )
    results.attrs.update({"split": split, "scheme": scheme, "data": data_text})
    if cases.skipped:
        results.attrs["skipped_stores"] = "; ".join(cases.skipped)
    if cases.pixel_km is not None:
        results.attrs["pixel_km"] = ", ".join(
            f"{n}: {v:g}" for n, v in zip(cases.names, cases.store_pixel_km, strict=True)
        )
    if grid_notes:
        results.attrs["grid_notes"] = "; ".join(grid_notes)
    results, sequences = _with_uncertainty(results, cases, options)
    if "CRPS" in results:
        results.attrs["probability_method"] = options.probability
        results.attrs["deterministic_scores"] = "of the ensemble mean (the members' mean)"
        sampled = [k for k, p in predictors.items() if getattr(p, "sampled_members", False)]
        if sampled:  # ensembles by construction: the members are the model's own samples
            results.attrs["sampled_members"] = ",".join(sampled)
        if calibrations:
            results.attrs["calibration"] = str(options.calibration)
    outputs = EvaluationOutputs(out_dir=out_dir, results=results)

    if extra_lead_times:
        extra_scheme = "regular"  # identical target times in every sample
        extra_kw = {**ds_kwargs, "n_out": int(round(max(steps)))}
        extra_ds = open_cases(data, split, extra_scheme, extra_kw).dataset
        outputs.extra = evaluate_predictors(
            predictors, extra_ds, batch_size, lead_times=leads, skip_failing=True, **common
        )
        outputs.extra.attrs.update({"split": split, "scheme": extra_scheme, "data": data_text})
        outputs.files.append(_write_netcdf(outputs.extra, out_dir / "results_extra.nc"))

    outputs.files.append(_write_netcdf(results, out_dir / "results.nc"))
    if sequences is not None:
        outputs.files.append(_write_netcdf(sequences, out_dir / "sequences.nc"))
    title = f"Evaluation: {split} split, {scheme} sampling"
    md = to_markdown(results, title=title, extra=outputs.extra)
    if "CRPS" in results:
        from nowcast.probscores import plot_probabilistic, probabilistic_markdown

        md += "\n" + probabilistic_markdown(results)
        md += (
            "\nThe deterministic scores above are those of the ensemble mean (the members' "
            "mean)"
            + (
                f"; {results.attrs['sampled_members']} sampled its own members."
                if "sampled_members" in results.attrs
                else "."
            )
            + "\n"
        )
        outputs.files.append(plot_probabilistic(results, out_dir / "probabilistic.png", title))
    (out_dir / "results.md").write_text(md, encoding="utf-8")
    outputs.files.append(out_dir / "results.md")
    outputs.files.append(plot_skill(results, out_dir / "skill.png", title=title))

    if perturb:
        levels = None if perturb is True else perturb
        n_robust = min(
            v for v in (max_samples, options.perturb_samples, len(dataset)) if v is not None
        )
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


def _check_ensemble_size(
    options: EvaluateOptions, members: int, out_frames: int, frame: tuple[int, int]
) -> None:
    """Refuse ``--members`` whose batch of ensembles cannot fit in memory (before any run).

    The estimate is :func:`pipeline.guards.ensemble_bytes` of one sample (``out_frames``
    plus the extra lead times, on the store's ``frame`` grid, the debiased estimator's
    table) times the batch size.
    """
    from pipeline.guards import check_fits, ensemble_bytes
    from pipeline.units import RAIN_THRESHOLDS_MMH

    steps = int(out_frames) + len(options.extra_lead_times or ())
    per_sample = ensemble_bytes(
        members=int(members),
        steps=steps,
        height=frame[0],
        width=frame[1],
        n_thresholds=len(RAIN_THRESHOLDS_MMH),
        all_at_once=True,  # EnsembleNowcaster.__call__ stacks the members it scores
        debiased=options.probability == "debiased",
    )
    what = (
        f"evaluating ensembles of {int(members)} members, {steps} steps on {frame[0]} x "
        f"{frame[1]} pixels, batches of {int(options.batch_size)}"
    )
    check_fits(what, int(options.batch_size) * per_sample)
