"""Ensemble evaluation over a real resampled Zarr store: scores, reports, CLI ``--members``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from nowcast.baselines import get_baseline
from nowcast.ensemble import EnsembleNowcaster
from nowcast.evaluate import EvaluateOptions, evaluate_predictors, evaluate_run
from tests.nowcast.test_evaluate import DAYS, STATIC_DAY, _dataset, store  # noqa: F401


def test_unperturbed_persistence_ensemble_on_a_static_field_has_zero_crps(store):  # noqa: F811
    ens = EnsembleNowcaster(
        get_baseline("persistence"),
        n_members=3,
        motion_rel=0,
        motion_abs=0,
        noise_scale=0,
        dry_mmh=None,
    )
    res = evaluate_predictors({"ens": ens}, _dataset(store, [STATIC_DAY]), 3, progress=False)
    r = res.sel(predictor="ens")
    # zero displacement through the bilinear warp: exact up to float32 rounding
    np.testing.assert_allclose(r["CRPS"].values, 0.0, atol=1e-7)
    np.testing.assert_allclose(r["ensemble_spread"].values, 0.0, atol=1e-7)
    np.testing.assert_allclose(r["ROC_AUC"].sel(threshold=0.5).values, 1.0)
    assert int(r["n_members"]) == 3


def test_a_deterministic_predictor_scores_as_one_member_with_crps_equal_to_mae(store):  # noqa: F811
    res = evaluate_predictors(
        {"persistence": get_baseline("persistence")},
        _dataset(store, [DAYS[3]]),
        3,
        members=4,
        progress=False,
    )
    r = res.sel(predictor="persistence")
    assert int(r["n_members"]) == 1 and r.sizes["rank"] == 2
    assert float(r["CRPS"].max()) > 0
    np.testing.assert_allclose(r["CRPS"].values, r["MAE"].values, rtol=1e-5)


def test_evaluate_run_with_members_scores_steps_and_writes_the_reports(store, tmp_path):  # noqa: F811
    options = EvaluateOptions(
        split="test",
        baselines=("pysteps", "steps"),
        in_frames=4,
        out_frames=3,
        max_samples=2,
        members=2,
        progress=False,
    )
    out = evaluate_run(None, store, options, out_dir=tmp_path / "ev")
    assert (tmp_path / "ev" / "probabilistic.png").stat().st_size > 0
    reopened = xr.open_dataset(tmp_path / "ev" / "results.nc").load()
    xr.testing.assert_identical(reopened, out.results)
    for var in ("CRPS", "reliability", "ROC_AUC", "rank_histogram"):
        assert "predictor" in reopened[var].dims
    assert reopened["n_members"].sel(predictor="steps") == 2
    assert reopened["n_members"].sel(predictor="pysteps") == 1
    assert reopened.attrs["probability_method"] == "debiased"  # the products' estimator
    md = (tmp_path / "ev" / "results.md").read_text()
    assert "## Probabilistic scores" in md and "| steps | 2 |" in md


def test_cli_members_must_be_positive(store):  # noqa: F811
    from flows.cli import app

    res = CliRunner().invoke(
        app,
        ["evaluate", "--baselines", "steps", "--data", str(store), "--out", "x", "--members", "0"],
    )
    assert res.exit_code == 2
    assert "--members" in res.output


@pytest.mark.parametrize("bad", [0, -2])
def test_steps_refuses_a_bad_member_count(bad):
    import torch

    with pytest.raises(ValueError, match=f"n_members must be >= 1; got {bad}"):
        get_baseline("steps")(
            torch.zeros(1, 3, 1, 8, 8), torch.zeros(1, 3), torch.ones(1, 1), n_members=bad
        )


def test_a_calibration_fitted_on_validation_scores_the_model_with_its_tables(store, tmp_path):  # noqa: F811
    from nowcast.calibration import ProbabilityCalibration, fit_calibration
    from tests.nowcast.test_forecast import _save_untrained_run

    _save_untrained_run(tmp_path / "run", "convgru")
    common = dict(in_frames=4, out_frames=3, max_samples=3, members=3, progress=False)
    valid = evaluate_run(
        tmp_path / "run", store, EvaluateOptions(split="valid", **common), out_dir=tmp_path / "v"
    )
    tables = valid.results["exceedance_count"].sel(predictor="convgru")
    assert float(tables.sum()) == float(tables.isel(threshold=0).sum()) * tables.sizes["threshold"]
    cal = fit_calibration(xr.open_dataset(tmp_path / "v" / "results.nc"))
    cal.save(tmp_path / "cal.nc")
    options = EvaluateOptions(
        split="test", baselines=("steps",), calibration=str(tmp_path / "cal.nc"), **common
    )
    out = evaluate_run(tmp_path / "run", store, options, out_dir=tmp_path / "t").results
    assert out.attrs["calibrated_predictors"] == "convgru"
    assert out.attrs["calibration"] == str(tmp_path / "cal.nc")
    back = ProbabilityCalibration.load(tmp_path / "cal.nc")
    for lead in out["lead_time"].values:
        table = back.table(2.0, float(lead))
        rel = out.sel(predictor="convgru", lead_time=lead, threshold=2.0)
        fc = rel["reliability_forecast"].values
        counts = out["exceedance_count"].sel(predictor="convgru", lead_time=lead, threshold=2.0)
        # each bin's mean forecast lies within the table values of the counts it holds
        used = table[counts.values > 0]
        finite = fc[np.isfinite(fc)]
        assert np.all((finite >= used.min() - 1e-9) & (finite <= used.max() + 1e-9))
    assert out.attrs["probability_method"] == "debiased"  # what steps is scored with


def test_cli_calibrate_writes_a_calibration_and_evaluate_needs_members(store, tmp_path):  # noqa: F811
    from flows.cli import app
    from nowcast.calibration import ProbabilityCalibration

    acc_ds = _calibration_tables()
    acc_ds.to_netcdf(tmp_path / "results.nc")
    res = CliRunner().invoke(
        app, ["calibrate", str(tmp_path / "results.nc"), "--out", str(tmp_path / "c.nc")]
    )
    assert res.exit_code == 0, res.output
    assert "calibrated the ensemble: 2 members, thresholds 2 mm/h, leads 6-12 min" in res.output
    assert ProbabilityCalibration.load(tmp_path / "c.nc").n_members == 2
    args = ["evaluate", "--baselines", "steps", "--data", str(store), "--out", str(tmp_path)]
    res = CliRunner().invoke(app, [*args, "--calibration", str(tmp_path / "c.nc")])
    assert res.exit_code == 2 and "--calibration needs --members N" in res.output


def _calibration_tables() -> xr.Dataset:
    count = np.array([[[100.0, 10.0, 5.0], [100.0, 10.0, 5.0]]])  # (threshold, lead, k)
    observed = np.array([[[1.0, 4.0, 4.0], [2.0, 5.0, 3.0]]])
    return xr.Dataset(
        {
            "exceedance_count": (("threshold", "lead_time", "members_above"), count),
            "exceedance_observed": (("threshold", "lead_time", "members_above"), observed),
        },
        coords={"threshold": [2.0], "lead_time": [6.0, 12.0], "members_above": [0, 1, 2]},
    )
