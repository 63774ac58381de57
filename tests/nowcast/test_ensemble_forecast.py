"""nowcast.ensemble_forecast: ensembles of a trained run and of STEPS in the forecast schema."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.ensemble_forecast import PROBABILITY_NAME, make_ensemble_forecast, parse_percentiles
from nowcast.forecast import baseline_predictor, make_forecast
from pipeline.units import dbz_to_normalized, rainrate_to_normalized
from tests.nowcast.test_forecast import ISSUE, _moving_blob_store, _save_untrained_run


def _fraction_above(members_dbz: np.ndarray, thresholds) -> np.ndarray:
    """``(L, K, H, W)`` fraction of ``(N, L, H, W)`` members at or above each threshold."""
    p = dbz_to_normalized(members_dbz)
    thr = [np.float32(rainrate_to_normalized(t)) for t in thresholds]
    return np.stack([(p >= t).mean(axis=0) for t in thr], axis=1)


def test_lagrangian_run_ensemble_mean_probabilities_and_motion(tmp_path):
    from nowcast.forecast import run_predictor

    cfg = _save_untrained_run(tmp_path / "run", "trajgru_ode", config="small_lagrangian")
    store, _ = _moving_blob_store(n_frames=cfg.in_frames, size=80, vx=2.0)
    pred = run_predictor(tmp_path / "run")
    fc = make_ensemble_forecast(
        pred, store, ISSUE, [6, 12], members=3, seed=4, keep_members=True, probability="fraction"
    )
    assert fc.sizes["realization"] == 3 and "motion" in fc  # the wrapped model's motion
    prob = fc[PROBABILITY_NAME].values
    np.testing.assert_allclose(
        prob, _fraction_above(fc["reflectivity_members"].values, fc["threshold"].values), atol=1e-6
    )
    assert set(np.round(np.unique(prob) * 3, 5).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    members = dbz_to_normalized(fc["reflectivity_members"].values)
    assert not np.allclose(members[0], members[1])  # independent draws, not copies
    np.testing.assert_allclose(
        dbz_to_normalized(fc["reflectivity"].values), members.mean(axis=0), atol=1e-5
    )
    det = make_forecast(pred, store, ISSUE, [6, 12])
    assert sorted(det.data_vars) == ["motion", "rainfall_rate", "reflectivity"]


def test_steps_ensemble_uses_its_own_members_reproducibly():
    store, _ = _moving_blob_store(n_frames=4, size=64)
    pred = baseline_predictor("steps", in_frames=4)
    kw = dict(members=3, seed=2, percentiles=[50], probability="fraction")
    a = make_ensemble_forecast(pred, store, ISSUE, [6, 12], **kw)
    b = make_ensemble_forecast(pred, store, ISSUE, [6, 12], **kw)
    np.testing.assert_array_equal(a[PROBABILITY_NAME].values, b[PROBABILITY_NAME].values)
    prob = a[PROBABILITY_NAME].values
    assert set(np.round(np.unique(prob) * 3, 5).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert prob.max() == 1.0  # the storm's core rains in every member
    assert a.attrs["ensemble_method"] == "members of the ensemble predictor steps"
    assert a["reflectivity_percentile"].dims == ("lead_time", "percentile", "y", "x")


def test_bad_members_and_percentiles_are_refused():
    store, _ = _moving_blob_store(n_frames=3, size=16)
    pred = baseline_predictor("persistence", in_frames=3)
    with pytest.raises(ValueError, match="members must be >= 1; got 0"):
        make_ensemble_forecast(pred, store, ISSUE, [6], members=0)
    with pytest.raises(ValueError, match="percentiles must be numbers like 10,50,90; got 'a,b'"):
        parse_percentiles("a,b")
    assert parse_percentiles("10, 90") == (10.0, 90.0)


def test_calibrated_probabilities_are_the_calibration_of_the_member_counts():
    from nowcast.calibration import ProbabilityCalibration
    from pipeline.units import RAIN_THRESHOLDS_MMH

    cal = ProbabilityCalibration(
        thresholds_mmh=tuple(RAIN_THRESHOLDS_MMH),
        n_members=3,
        lead_range=(6.0, 60.0),
        coefficients=np.tile([-0.5, 0.9, 0.0, -0.3, 0, 0, 0, 0, 0], (len(RAIN_THRESHOLDS_MMH), 1)),
    )
    store, _ = _moving_blob_store(n_frames=4, size=32)
    pred = baseline_predictor("steps", in_frames=4)
    fc = make_ensemble_forecast(
        pred, store, ISSUE, [6, 12], members=3, seed=1, keep_members=True, calibration=cal
    )
    k = np.rint(_fraction_above(fc["reflectivity_members"].values, fc["threshold"].values) * 3)
    for j, lead in enumerate((6, 12)):
        for i, t in enumerate(fc["threshold"].values):
            expected = cal.table(float(t), lead)[k[j, i].astype(int)]
            np.testing.assert_allclose(fc[PROBABILITY_NAME].values[j, i], expected, rtol=1e-6)
    assert "calibration fitted on validation days" in fc[PROBABILITY_NAME].attrs["comment"]
    with pytest.raises(ValueError, match="fitted for 3 members; got 2"):
        make_ensemble_forecast(pred, store, ISSUE, [6], members=2, calibration=cal)
