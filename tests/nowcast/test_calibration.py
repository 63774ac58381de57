"""nowcast.calibration: fitted exceedance probabilities, against exact answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from nowcast.calibration import ProbabilityCalibration, fit_calibration
from nowcast.calibration import _features as features
from nowcast.probscores import EnsembleScoreAccumulator
from pipeline.units import rainrate_to_normalized

LEADS = np.array([6.0, 30.0, 60.0, 120.0])
N = 10


def _tables(coefs: np.ndarray, pixels: float = 1e7) -> xr.Dataset:
    """Count tables whose observed frequencies follow the model with ``coefs`` exactly."""
    x = features(N, LEADS / 60.0)  # (T, N + 1, 9)
    count = np.full((len(coefs), len(LEADS), N + 1), pixels)
    freq = np.stack([1.0 / (1.0 + np.exp(-(x @ c))) for c in coefs])
    return xr.Dataset(
        {
            "exceedance_count": (("threshold", "lead_time", "members_above"), count),
            "exceedance_observed": (("threshold", "lead_time", "members_above"), count * freq),
        },
        coords={
            "threshold": [2.0, 10.0],
            "lead_time": LEADS,
            "members_above": np.arange(N + 1),
        },
    )


# coefficients of 1, L, L^2, sqrt(tau) (1, L, L^2), tau (1, L, L^2)
TRUE = np.array(
    [
        [-0.2, 1.3, -0.05, -0.4, -0.3, 0.02, 0.1, 0.05, -0.01],  # under-confident early
        [-1.0, 0.8, -0.1, -1.5, -0.2, 0.03, 0.3, 0.1, 0.0],
    ]
)


def test_fit_recovers_the_coefficients_of_exactly_calibrated_tables():
    cal = fit_calibration(_tables(TRUE))
    np.testing.assert_allclose(cal.coefficients, TRUE, atol=1e-5)
    assert cal.n_members == N and cal.lead_range == (6.0, 120.0)
    assert cal.thresholds_mmh == (2.0, 10.0)


def test_probabilities_are_the_observed_frequencies_of_each_count_and_lead():
    cal = fit_calibration(_tables(TRUE))
    x = features(N, np.array([0.5]))[0]  # lead 30 min
    expected = 1.0 / (1.0 + np.exp(-(x @ TRUE[1])))
    counts = np.array([[[0, 3], [7, 10]]])  # (1, 2, 2): one frame
    got = cal.probability(counts, N, 10.0, 30.0)
    np.testing.assert_allclose(got[0], expected[[[0, 3], [7, 10]]], rtol=1e-6)
    # per frame leads: frame 0 at 6 min, frame 1 at 120 min; beyond the range = the edge
    two = np.stack([counts[0], counts[0]])
    per = cal.probability(two, N, 2.0, np.array([6.0, 500.0]))
    np.testing.assert_allclose(per[1], cal.probability(counts, N, 2.0, 120.0)[0])
    assert not np.allclose(per[0], per[1])


def test_probabilities_never_decrease_with_the_count():
    wiggly = TRUE.copy()
    wiggly[0, 2] = -0.6  # a strongly concave map that would turn down at large |L|
    cal = fit_calibration(_tables(wiggly))
    for lead in (6.0, 60.0, 120.0):
        table = cal.table(2.0, lead)
        assert np.all(np.diff(table) >= 0)
        assert table[0] < table[-1]


def test_empty_tables_give_the_prior_map():
    ds = _tables(TRUE)
    ds["exceedance_count"][:] = 0.0
    ds["exceedance_observed"][:] = 0.0
    cal = fit_calibration(ds)
    np.testing.assert_allclose(cal.table(2.0, 60.0), (np.arange(N + 1) + 0.5) / (N + 1))


def test_save_and_reopen(tmp_path):
    cal = fit_calibration(_tables(TRUE))
    path = cal.save(tmp_path / "cal" / "calibration.nc")
    back = ProbabilityCalibration.load(path)
    xr.testing.assert_identical(back.to_dataset(), cal.to_dataset())
    np.testing.assert_array_equal(back.table(10.0, 42.0), cal.table(10.0, 42.0))


def test_the_accumulator_keeps_the_count_tables_by_hand():
    thr = float(rainrate_to_normalized(2.0))
    wet, dry = thr + 0.05, 0.0
    # 2 members, 1 sample, 1 lead, a 1 x 4 field: k = 2, 1, 0, 2; observed wet, wet, wet, dry
    members = np.array([[wet, wet, dry, wet], [wet, dry, dry, wet]], np.float32)
    members = members.reshape(1, 2, 1, 1, 1, 4)
    target = np.array([wet, wet, wet, dry], np.float32).reshape(1, 1, 1, 1, 4)
    acc = EnsembleScoreAccumulator([2.0], probability="fraction")
    acc.update(members, target, np.array([[6.0]]))
    res = acc.result()
    np.testing.assert_array_equal(res["exceedance_count"].values[0, 0], [1, 1, 2])
    np.testing.assert_array_equal(res["exceedance_observed"].values[0, 0], [1, 1, 1])


def test_the_accumulator_scores_the_calibrated_probabilities():
    cal = ProbabilityCalibration(
        thresholds_mmh=(2.0,),
        n_members=2,
        lead_range=(6.0, 6.0),
        coefficients=np.array([[-1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]),
    )
    thr = float(rainrate_to_normalized(2.0))
    members = np.full((1, 2, 1, 1, 1, 4), thr + 0.05, np.float32)  # k = 2 everywhere
    target = np.zeros((1, 1, 1, 1, 4), np.float32)
    acc = EnsembleScoreAccumulator([2.0], min_count=1, calibration=cal)
    acc.update(torch.from_numpy(members), target, np.array([[6.0]]))
    res = acc.result()
    expected = cal.table(2.0, 6.0)[2]  # sigmoid(-1 + 0.5 log(2.5 / 0.5))
    np.testing.assert_allclose(expected, 1 / (1 + np.exp(1.0 - 0.5 * np.log(5.0))))
    got = res["reliability_forecast"].sel(threshold=2.0).values[0]
    np.testing.assert_allclose(got[np.isfinite(got)], [expected], rtol=1e-6)
    assert res.attrs["probability_method"] == "calibrated"


def test_another_member_count_is_refused():
    cal = fit_calibration(_tables(TRUE))
    with pytest.raises(ValueError, match="fitted for 10 members; got 20"):
        cal.probability(np.zeros((1, 2, 2), int), 20, 2.0, 6.0)


def test_an_unknown_threshold_is_refused():
    cal = fit_calibration(_tables(TRUE))
    with pytest.raises(ValueError, match=r"no threshold 5 mm/h; it has \[2.0, 10.0\]"):
        cal.probability(np.zeros((1, 2, 2), int), N, 5.0, 6.0)


def test_results_without_tables_are_refused():
    ds = _tables(TRUE).drop_vars("exceedance_observed")
    with pytest.raises(ValueError, match="no 'exceedance_observed': evaluate with --members"):
        fit_calibration(ds)


def test_a_file_that_is_not_a_calibration_is_refused(tmp_path):
    path = tmp_path / "results.nc"
    _tables(TRUE).to_netcdf(path)
    with pytest.raises(ValueError, match="results.nc is not a probability calibration"):
        ProbabilityCalibration.load(path)


def test_several_predictors_need_a_choice():
    ds = xr.concat([_tables(TRUE), _tables(TRUE)], dim="predictor")
    ds = ds.assign_coords(predictor=["model_a", "model_b"])
    with pytest.raises(ValueError, match=r"choose the predictor to calibrate, one of \['model_a'"):
        fit_calibration(ds)
    ds = ds.assign_coords(predictor=["trajgru", "steps"])
    assert fit_calibration(ds).predictor == "trajgru"
