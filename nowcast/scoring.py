"""Score several predictors on one dataset, streaming batch by batch.

:func:`evaluate_predictors` is the core loop of the evaluation: every predictor follows
the predictor call contract (:class:`nowcast.contract.Nowcaster`, docs/contracts.md)
``predictor(x, t_in, t_out, input_mask=None) -> y`` with ``(B, T, 1, H, W)`` tensors in
p/255, the dataset yields sample items (docs/contracts.md, Sample schema)
``(inputs, targets, t_in, t_out, input_mask, target_mask)``, and predictions are never all
held in memory. :func:`nowcast.evaluate.evaluate_run` (a run directory and the baselines)
and :func:`nowcast.robustness.evaluate_robustness` (per corruption level) are built on it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from nowcast.contract import Nowcaster
from nowcast.ensemble import predict_members
from nowcast.metrics import MetricAccumulator
from nowcast.perturb import Perturbation
from nowcast.probscores import EnsembleScoreAccumulator
from nowcast.verification.fss import fss_from_sums
from nowcast.verification.sequences import SequenceAccumulator
from pipeline.units import RAIN_THRESHOLDS_MMH, rainrate_to_normalized

__all__ = ["evaluate_predictors"]


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


def _add_sequences(
    ds: xr.Dataset,
    seq_accs: Sequence[SequenceAccumulator],
    scales_km: Sequence[float],
    keep: bool,
) -> xr.Dataset:
    """Add the FSS per lead time (and, if ``keep``, the per-sequence sums) to ``ds``."""
    leads = ds["lead_time"].values
    seq = xr.concat([a.result(leads) for a in seq_accs], dim="predictor")
    seq = seq.assign_coords(predictor=ds["predictor"], lead_time=ds["lead_time"])
    seq = seq.assign_coords(threshold=ds["threshold"])
    if scales_km:
        seq = seq.assign_coords(
            scale=("scale", np.asarray(scales_km, dtype=np.float64), {"units": "km"})
        )
        fss = fss_from_sums(seq["seq_fss"].sum("sequence").values)
        ds = ds.assign_coords(scale=seq["scale"])
        ds["FSS"] = (("predictor", "lead_time", "threshold", "scale"), fss)
        ds["FSS"].attrs["long_name"] = "fractions skill score (neighbourhood side: scale)"
    if keep:
        ds = xr.merge([ds, seq], join="left", compat="override")
    return ds


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
    probability: str = "debiased",
    calibrations: Mapping[str, Any] | None = None,
    per_sequence: bool = False,
    fss_scales_km: Sequence[float] = (),
    pixel_km: float | Sequence[float] | np.ndarray | None = None,
) -> xr.Dataset:
    """Score several predictors on one dataset, streaming over batches.

    Parameters
    ----------
    predictors : mapping of str to nowcast.contract.Nowcaster
        Name -> ``predictor(x, t_in, t_out, input_mask=None) -> y`` (a model of
        :mod:`nowcast.models` or a baseline of :mod:`nowcast.baselines`). Modules are run under ``torch.no_grad``.
    dataset : torch.utils.data.Dataset
        Items ``(inputs (T_in,1,H,W), targets (T_out,1,H,W), t_in (T_in,), t_out (T_out,),
        input_mask (T_in,1,H,W), target_mask (T_out,1,H,W))`` (docs/contracts.md, Sample schema), p/255,
        minutes.
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
    probability : str
        Estimator of the exceedance probabilities (:mod:`nowcast.probability`).
    calibrations : mapping of str to nowcast.calibration.ProbabilityCalibration, optional
        Predictor name -> calibration: these predictors' probabilities are the calibrated
        ones (the others keep ``probability``); the results' attribute
        ``calibrated_predictors`` lists them.
    per_sequence : bool
        Also return the per-sequence sums of every score
        (:class:`nowcast.verification.sequences.SequenceAccumulator`: ``seq_counts``,
        ``seq_sums``, ``seq_fss``; dims ``predictor``, ``sequence`` = dataset index, ...),
        what :func:`nowcast.verification.uncertainty.score_uncertainty` resamples.
    fss_scales_km : sequence of float
        Neighbourhood sides (km) of the fractions skill score (needs ``pixel_km``); the
        FSS is scored at every threshold and returned as ``FSS`` (predictor, lead_time,
        threshold, scale) with the coordinate ``scale`` (km).
    pixel_km : float or sequence of float, optional
        The data's pixel size (km), or that of every sample (dataset index order; stores of
        several pixel sizes): the FSS neighbourhood of a sample is its scale in its pixels.

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

    from pipeline.console.progress import progress_bar as tqdm

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
    scales_km = tuple(float(v) for v in fss_scales_km)
    if scales_km and pixel_km is None:
        raise ValueError("FSS scales in km need the data's pixel size (pixel_km)")
    pixels = None
    if pixel_km is not None:
        pixels = np.asarray(pixel_km, dtype=np.float64)
        pixels = np.full(n, float(pixels)) if pixels.ndim == 0 else pixels[:n]
    tracked = per_sequence or bool(scales_km)
    thr_norm = [float(v) for v in rainrate_to_normalized(np.asarray(thresholds_mmh))]
    seq_accs = {name: SequenceAccumulator(thr_norm, scales_km) for name in predictors}
    probabilistic = members is not None or any(
        getattr(p, "ensemble", False) for p in predictors.values()
    )
    calibrations = dict(calibrations or {})
    unknown = sorted(set(calibrations) - set(predictors))
    if unknown:
        raise ValueError(f"calibrations for unknown predictors {unknown}; have {list(predictors)}")
    prob_accs = {
        name: EnsembleScoreAccumulator(
            thresholds_mmh, probability=probability, calibration=calibrations.get(name)
        )
        for name in predictors
    }
    seconds = dict.fromkeys(predictors, 0.0)
    skipped: dict[str, str] = {}
    for p in predictors.values():
        if isinstance(p, torch.nn.Module):
            p.eval()

    bar = tqdm(total=n, unit="sample", desc="evaluate", disable=not progress)
    first = 0
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
            stats = accs[name].update(pred.float().cpu(), y, t_out, out_mask)
            if tracked:
                px = None if pixels is None else pixels[first : first + x.shape[0]]
                seq_accs[name].add(stats, first, px)
            if probabilistic:
                prob_accs[name].update(ens.float().cpu(), y, t_out, out_mask)
        bar.update(x.shape[0])
        first += x.shape[0]
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
    if tracked:
        ds = _add_sequences(ds, [seq_accs[k] for k in kept], scales_km, per_sequence)
    if probabilistic and calibrations:
        ds.attrs["calibrated_predictors"] = ",".join(k for k in kept if k in calibrations)
    ds.attrs["n_samples"] = int(n)
    ds.attrs["skipped"] = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    return ds
