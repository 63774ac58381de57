"""Ensemble forecasts: N members reduced to probability products in the forecast schema.

:func:`make_ensemble_forecast` is :func:`nowcast.forecast.make_forecast` for an ensemble:
the same input window (HKO-7 missing-frame rule, downsizing), then ``members`` members of
the predictor

- an ensemble predictor (``fn.ensemble = True``, e.g. the ``steps`` baseline) is asked for
  its members (pysteps' STEPS makes them all at once, so its memory is ``N x leads``
  fields whatever the products);
- any other predictor (a trained run, a deterministic baseline) is wrapped in
  :class:`nowcast.ensemble.EnsembleNowcaster` (motion perturbations and noise on the
  change, seeded from ``numpy.random.SeedSequence([seed, member])``): it runs once and
  its members are made one at a time.

The members stream through :func:`nowcast.ensemble.ensemble_products`, so memory holds
the products (one count per threshold and a running sum), not ``N x leads`` fields:
except for percentiles and ``keep_members``, which need every member (``N x leads x H x
W`` float32: 20 members, 10 leads at 480 x 480 are 184 MB; percentiles are then taken one
lead at a time).

The dataset is the C5 forecast schema plus the ensemble products (docs/ensembles.md,
"Products"):

- ``reflectivity`` / ``rainfall_rate`` (lead_time, y, x): the **ensemble mean** (the
  mean of the members in p/255, i.e. in dBZ; ``cell_methods = "realization: mean"``),
  the deterministic forecast of an ensemble predictor (``fn.deterministic``);
- ``probability_of_rainfall_rate_above_threshold`` (lead_time, threshold, y, x), units
  ``1``: the fraction of members at or above each threshold, against a ``threshold``
  coordinate of standard name ``rainfall_rate`` (mm h-1) with
  ``spp__relative_to_threshold = "greater_than_or_equal_to"``;
- ``reflectivity_percentile`` (lead_time, percentile, y, x) dBZ when percentiles are
  asked for (linear interpolation between members, as ``numpy.percentile``);
- ``reflectivity_members`` (realization, lead_time, y, x) dBZ with ``keep_members``, the
  ``realization`` coordinate of standard name ``realization``;
- attributes ``ensemble_members``, ``ensemble_seed`` and ``ensemble_method``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from pipeline import units
from pipeline.units import RAIN_THRESHOLDS_MMH

__all__ = [
    "PROBABILITY_NAME",
    "add_ensemble_products",
    "make_ensemble_forecast",
    "member_stream",
    "parse_percentiles",
]

PROBABILITY_NAME = "probability_of_rainfall_rate_above_threshold"
"""Name of the exceedance-probability variable (as :func:`nowcast.ensemble.products_dataset`)."""


def parse_percentiles(values: Sequence[float] | str | None) -> tuple[float, ...] | None:
    """Percentiles ``0..100`` from a sequence or a comma-separated text; None stays None.

    Raises
    ------
    ValueError
        A value that is not a number in 0..100, or an empty list.
    """
    if values is None:
        return None
    if isinstance(values, str):
        parts = [v.strip() for v in values.split(",") if v.strip()]
        try:
            values = [float(v) for v in parts]
        except ValueError as err:
            raise ValueError(f"percentiles must be numbers like 10,50,90; got {values!r}") from err
    out = tuple(float(v) for v in values)
    if not out or any(not 0.0 <= v <= 100.0 for v in out):
        raise ValueError(f"percentiles must be numbers in 0..100 like 10,50,90; got {list(out)}")
    return out


def member_stream(
    predictor,
    x: np.ndarray,
    mask: np.ndarray,
    leads: np.ndarray,
    n_members: int,
    seed: int = 0,
) -> Iterator[torch.Tensor]:
    """Members of *predictor* on one input window, one at a time.

    Parameters
    ----------
    predictor : nowcast.forecast.Predictor
        Its ``fn`` is an ensemble predictor (asked for its members) or a deterministic one
        (wrapped in :class:`nowcast.ensemble.EnsembleNowcaster`).
    x, mask : numpy.ndarray
        ``(T_in, H, W)`` inputs in p/255 and their validity.
    leads : numpy.ndarray
        ``(L,)`` lead times in minutes.
    n_members : int
        Number of members, >= 1.
    seed : int
        Seed of the members.

    Yields
    ------
    torch.Tensor
        ``(1, L, 1, H, W)`` float32 p/255, ``n_members`` times.
    """
    from nowcast.ensemble import EnsembleNowcaster

    if int(n_members) < 1:
        raise ValueError(f"members must be >= 1; got {n_members}")
    from nowcast.forecast import call_times

    t_in, t_call, keep = call_times(predictor, np.asarray(leads))
    xt = torch.from_numpy(np.ascontiguousarray(x[None, :, None], dtype=np.float32))
    mt = torch.from_numpy(np.asarray(mask)[None, :, None].astype(np.float32))
    ti, tc = torch.from_numpy(t_in[None]), torch.from_numpy(t_call[None])
    expected = (1, len(t_call), 1, x.shape[1], x.shape[2])
    keep_t = torch.from_numpy(np.asarray(keep, dtype=np.int64))
    fn = predictor.fn
    if getattr(fn, "ensemble", False):
        with torch.no_grad():
            stacked = fn(xt, ti, tc, input_mask=mt, n_members=int(n_members), seed=int(seed))
        if tuple(stacked.shape) != (1, int(n_members), *expected[1:]):
            raise ValueError(
                f"predictor {predictor.name!r} returned members of shape {tuple(stacked.shape)}, "
                f"expected {(1, int(n_members), *expected[1:])}"
            )
        for m in range(int(n_members)):
            yield stacked[:, m].index_select(1, keep_t).float()
        return
    ens = EnsembleNowcaster(
        fn, n_members=int(n_members), seed=int(seed), cadence_minutes=predictor.cadence_minutes
    )
    for member in ens.members(xt, ti, tc, mt):
        if tuple(member.shape) != expected:
            raise ValueError(
                f"predictor {predictor.name!r} returned shape {tuple(member.shape)}, "
                f"expected {expected}"
            )
        yield member.index_select(1, keep_t)


def add_ensemble_products(
    fc: xr.Dataset,
    products: dict,
    *,
    thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH,
    percentiles: Sequence[float] | None = None,
    members: np.ndarray | None = None,
    seed: int | None = None,
    method: str = "",
) -> xr.Dataset:
    """The forecast *fc* (C5 schema) with the ensemble products of one sample added.

    Parameters
    ----------
    fc : xarray.Dataset
        Forecast on ``(lead_time, y, x)``; its ``reflectivity`` should be the ensemble mean.
    products : dict
        :func:`nowcast.ensemble.ensemble_products` of a batch of one: ``probability``
        ``(1, L, K, H, W)``, optionally ``percentile`` ``(1, L, P, H, W)`` p/255,
        ``n_members``.
    thresholds_mmh, percentiles
        As given to :func:`~nowcast.ensemble.ensemble_products`.
    members : numpy.ndarray, optional
        ``(N, L, H, W)`` members in p/255, written as ``reflectivity_members`` (dBZ).
    seed : int, optional
        Seed of the members (attribute ``ensemble_seed``).
    method : str
        How the members were made (attribute ``ensemble_method``).

    Returns
    -------
    xarray.Dataset
        See the module docstring for the variables and their CF attributes.
    """
    out = fc.copy()
    gridded = {"grid_mapping": "crs"}
    prob = np.asarray(products["probability"])[0].astype(np.float32)
    if prob.shape[:2] != (fc.sizes["lead_time"], len(thresholds_mmh)):
        raise ValueError(
            f"probabilities of shape {prob.shape} do not match {fc.sizes['lead_time']} lead "
            f"times and {len(thresholds_mmh)} thresholds"
        )
    out = out.assign_coords(
        threshold=xr.Variable(
            "threshold",
            np.asarray(thresholds_mmh, dtype=np.float64),
            {
                "standard_name": "rainfall_rate",
                "long_name": "rain-rate threshold",
                "units": "mm h-1",
                "spp__relative_to_threshold": "greater_than_or_equal_to",
            },
        )
    )
    out[PROBABILITY_NAME] = xr.Variable(
        ("lead_time", "threshold", "y", "x"),
        prob,
        {
            "long_name": "probability of rainfall rate at or above threshold",
            "units": "1",
            "valid_min": np.float32(0.0),
            "valid_max": np.float32(1.0),
            "comment": _probability_comment(products),
            **gridded,
        },
    )
    dbz = {"standard_name": "equivalent_reflectivity_factor", "units": "dBZ", **gridded}
    if "percentile" in products:
        if percentiles is None:
            raise ValueError("products hold percentiles: give their values (percentiles=...)")
        out = out.assign_coords(
            percentile=xr.Variable(
                "percentile",
                np.asarray(percentiles, dtype=np.float64),
                {"long_name": "percentile of the ensemble members", "units": "%"},
            )
        )
        out["reflectivity_percentile"] = xr.Variable(
            ("lead_time", "percentile", "y", "x"),
            units.normalized_to_dbz(np.asarray(products["percentile"])[0]).astype(np.float32),
            {**dbz, "long_name": "percentile of the members' reflectivity"},
        )
    if members is not None:
        members = np.asarray(members)
        out = out.assign_coords(
            realization=xr.Variable(
                "realization",
                np.arange(members.shape[0], dtype=np.int32),
                {"standard_name": "realization", "long_name": "ensemble member", "units": "1"},
            )
        )
        out["reflectivity_members"] = xr.Variable(
            ("realization", "lead_time", "y", "x"),
            units.normalized_to_dbz(members).astype(np.float32),
            {**dbz, "long_name": "reflectivity of each ensemble member"},
        )
    for name in ("reflectivity", "rainfall_rate"):
        out[name].attrs["cell_methods"] = "realization: mean"
        out[name].attrs["comment"] = (
            "ensemble mean (reflectivity: mean of the members; rain rate: of that mean)"
        )
    out.attrs["ensemble_members"] = int(products["n_members"])
    if seed is not None:
        out.attrs["ensemble_seed"] = int(seed)
    if method:
        out.attrs["ensemble_method"] = method
    return out


def _probability_comment(products: dict) -> str:
    n = int(products["n_members"])
    if products.get("probability_method") == "calibrated":
        return (
            f"from the {n} ensemble members: the number k of members at or above the "
            f"threshold mapped to a probability by a calibration fitted on validation days "
            f"(nowcast.calibration)"
        )
    if products.get("probability_method", "fraction") == "debiased":
        return (
            f"from the {n} ensemble members: empirical-Bayes estimate E[p | k] of the "
            f"probability given the number k of members at or above the threshold "
            f"(nowcast.probability, 'debiased')"
        )
    return f"fraction of the {n} ensemble members"


def _percentiles(members: list[np.ndarray], percentiles: Sequence[float]) -> np.ndarray:
    """``(L, P, H, W)`` float32 percentiles of ``N`` members ``(L, H, W)``, lead by lead.

    As :func:`nowcast.ensemble.ensemble_products` (linear interpolation, ``numpy.percentile``)
    but one lead at a time, so memory is the members plus one lead of them.
    """
    leads = members[0].shape[0]
    out = np.empty((leads, len(percentiles), *members[0].shape[1:]), np.float32)
    for j in range(leads):
        out[j] = np.percentile(np.stack([m[j] for m in members]), percentiles, axis=0)
    return out


def make_ensemble_forecast(
    predictor,
    store: xr.Dataset | str | Path,
    issue_time: str | pd.Timestamp | np.datetime64,
    lead_minutes: Sequence[int],
    *,
    members: int,
    seed: int = 0,
    percentiles: Sequence[float] | None = None,
    keep_members: bool = False,
    thresholds_mmh: Sequence[float] = RAIN_THRESHOLDS_MMH,
    probability: str = "debiased",
    calibration=None,
    max_consecutive_missing: int = 2,
    tolerance: str | pd.Timedelta = "2min",
) -> xr.Dataset:
    """An ``members``-member ensemble forecast with its products (see the module docstring).

    Parameters
    ----------
    predictor : nowcast.forecast.Predictor
        From ``baseline_predictor`` or ``run_predictor``.
    store, issue_time, lead_minutes, max_consecutive_missing, tolerance
        As for :func:`nowcast.forecast.make_forecast`.
    members : int
        Number of members, >= 1.
    seed : int
        Seed: the same seed gives the same members, another seed other draws.
    percentiles : sequence of float, optional
        Percentiles (0..100) of the members per pixel; they keep every member in memory.
    keep_members : bool
        Write the members (``reflectivity_members`` on ``realization``).
    thresholds_mmh : sequence of float
        Rain thresholds (mm/h) of the exceedance probabilities (default HKO-7's).
    probability : str
        Estimator of the probabilities from the members (:mod:`nowcast.probability`):
        ``"debiased"`` (default) or ``"fraction"``.
    calibration : nowcast.calibration.ProbabilityCalibration, optional
        Calibrated probabilities instead (:mod:`nowcast.calibration`, fitted on
        validation days for this model and ``members``).

    Returns
    -------
    xarray.Dataset
        The C5 forecast (ensemble mean) plus the products.

    Raises
    ------
    nowcast.forecast.InsufficientInputError
        The input window breaks the missing-frame rule.
    ValueError
        Bad members, percentiles or lead times; :class:`pipeline.guards.SizeLimitError`
        when the members, leads and percentiles would not fit in memory (checked before
        anything is allocated).
    """
    from nowcast.ensemble import ensemble_products
    from nowcast.forecast import (
        _forecast_dataset,
        _refuse_or_downsize,
        _validate_leads,
        check_forecast_size,
    )
    from pipeline.window import as_dataset, load_window, window_slots

    if int(members) < 1:
        raise ValueError(f"members must be >= 1; got {members}")
    pcts = parse_percentiles(percentiles)
    leads = _validate_leads(lead_minutes)
    ds = as_dataset(store)
    check_forecast_size(
        predictor,
        ds,
        leads,
        members=int(members),
        n_thresholds=len(thresholds_mmh),
        n_percentiles=len(pcts or ()),
        keep_members=keep_members,
        probability="calibrated" if calibration is not None else probability,
    )
    issue = pd.Timestamp(issue_time)
    if issue.tzinfo is not None:
        issue = issue.tz_convert("UTC").tz_localize(None)
    slots = window_slots(issue, predictor.in_frames, predictor.cadence_minutes)
    win = load_window(ds, slots, tolerance)
    size = predictor.image_size  # None: the store's own grid, square or not (as make_forecast)
    dbz, mask = _refuse_or_downsize(win, size, issue, max_consecutive_missing)
    x = units.dbz_to_normalized_float32(dbz, mask)
    kept: list[np.ndarray] = []  # (L, H, W) p/255 per member, for percentiles and members

    def stream() -> Iterator[torch.Tensor]:
        for m in member_stream(predictor, x, mask, leads, int(members), int(seed)):
            if keep_members or pcts:
                kept.append(m[0, :, 0].cpu().numpy())
            yield m

    prods = ensemble_products(
        stream(),
        thresholds_mmh,
        probability=probability,
        calibration=calibration,
        lead_minutes=np.asarray(leads, np.float64),
    )
    if pcts:
        prods["percentile"] = _percentiles(kept, pcts)[None]
    out_dbz, rate = units.normalized_to_dbz_and_rainrate_float32(
        np.ascontiguousarray(prods["mean"][0], dtype=np.float32)
    )
    fc = _forecast_dataset(ds, size, issue, leads, out_dbz, rate, predictor, win)
    fc.attrs["history"] += (
        f"; nowcast.ensemble_forecast.make_ensemble_forecast ({int(members)} members, "
        f"seed {int(seed)})"
    )
    ensemble = bool(getattr(predictor.fn, "ensemble", False))
    method = (
        f"members of the ensemble predictor {predictor.name}"
        if ensemble
        else f"nowcast.ensemble.EnsembleNowcaster of {predictor.name}"
    )
    return add_ensemble_products(
        fc,
        prods,
        thresholds_mmh=thresholds_mmh,
        percentiles=pcts,
        members=np.stack(kept) if keep_members else None,
        seed=int(seed),
        method=method,
    )
