"""Probabilistic scores against hand-computed cases (pysteps.verification underneath)."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.probscores import EnsembleScoreAccumulator
from pipeline.units import rainrate_to_normalized

P2 = float(rainrate_to_normalized(2.0))  # 2 mm/h on the p/255 scale


def _score(members, target, thresholds=(2.0,), leads=(6.0,), probability="fraction"):
    """``members (N, P)``, ``target (P,)`` -> result of one batch at one lead."""
    f = np.asarray(members, dtype=np.float64)[None, :, None, None, None, :]
    o = np.asarray(target, dtype=np.float64)[None, None, None, None, :]
    acc = EnsembleScoreAccumulator(thresholds, probability=probability)
    acc.update(f, o, np.asarray([leads]))
    return acc.result().isel(lead_time=0)


def test_crps_of_a_two_member_ensemble():
    # members {0, 1}, observation 0.25: E|X - y| - E|X - X'| / 2 = 0.5 - 0.25 = 0.25
    r = _score([[0.0], [1.0]], [0.25])
    assert float(r["CRPS"]) == pytest.approx(0.25)
    assert float(r["ensemble_spread"]) == pytest.approx(np.sqrt(0.5))  # unbiased variance
    assert float(r["ensemble_mean_rmse"]) == pytest.approx(0.25)


def test_crps_of_one_member_is_the_absolute_error():
    r = _score([[0.2, 0.5, 0.9]], [0.3, 0.5, 0.6])
    assert float(r["CRPS"]) == pytest.approx((0.1 + 0.0 + 0.3) / 3)


def test_perfectly_reliable_probabilities_lie_on_the_diagonal():
    # 10 members; in group k, k members exceed 2 mm/h and k of every 10 observations do
    n, per = 10, 100
    members, obs, probs = [], [], []
    for k in (0, 2, 4, 6, 8, 10):
        m = np.zeros((n, per))
        m[:k] = P2 + 0.1
        o = np.zeros(per)
        o[: k * per // n] = P2 + 0.1
        members.append(m)
        obs.append(o)
        probs.append(k / n)
    r = _score(np.concatenate(members, axis=1), np.concatenate(obs))
    rel = r["reliability"].sel(threshold=2.0)
    fc = r["reliability_forecast"].sel(threshold=2.0)
    populated = np.isfinite(rel.values)
    assert populated.sum() == 6
    np.testing.assert_allclose(rel.values[populated], fc.values[populated], atol=1e-12)
    np.testing.assert_allclose(np.sort(fc.values[populated]), probs)
    assert int(r["reliability_count"].sel(threshold=2.0).sum()) == 6 * per


def test_roc_area_of_a_perfect_and_of_a_random_forecast():
    rng = np.random.default_rng(0)
    obs = np.where(rng.random(20000) < 0.3, P2 + 0.1, 0.0)
    perfect = np.broadcast_to(obs, (4, obs.size))
    assert float(_score(perfect, obs)["ROC_AUC"].sel(threshold=2.0)) == pytest.approx(1.0)
    random = np.where(rng.random((10, obs.size)) < 0.3, P2 + 0.1, 0.0)
    auc = float(_score(random, obs)["ROC_AUC"].sel(threshold=2.0))
    assert auc == pytest.approx(0.5, abs=0.02)


def test_rank_histogram_of_observations_above_every_member():
    members = np.full((4, 50), 0.4)
    members[1] = 0.5
    r = _score(members, np.full(50, 0.9))
    np.testing.assert_allclose(r["rank_histogram"].values, [0, 0, 0, 0, 1.0])


def test_streaming_over_batches_equals_one_batch():
    rng = np.random.default_rng(1)
    f = rng.random((4, 3, 2, 1, 6, 6))
    o = rng.random((4, 2, 1, 6, 6))
    t = np.tile([6.0, 12.0], (4, 1))
    whole = EnsembleScoreAccumulator()
    whole.update(f, o, t)
    parts = EnsembleScoreAccumulator()
    parts.update(f[:1], o[:1], t[:1])
    parts.update(f[1:], o[1:], t[1:])
    a, b = whole.result(), parts.result()
    for var in ("CRPS", "ROC_AUC", "ensemble_spread", "ensemble_mean_rmse", "reliability_count"):
        np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-12)


def test_masked_pixels_are_not_scored():
    f = np.zeros((1, 2, 1, 1, 1, 2))
    o = np.array([0.0, 0.8]).reshape(1, 1, 1, 1, 2)
    mask = np.array([1.0, 0.0]).reshape(1, 1, 1, 1, 2)
    acc = EnsembleScoreAccumulator()
    acc.update(f, o, np.array([[6.0]]), mask)
    assert float(acc.result()["CRPS"].isel(lead_time=0)) == 0.0


def test_wrong_shapes_are_refused():
    acc = EnsembleScoreAccumulator()
    with pytest.raises(ValueError, match=r"members must be \(B, N, T, 1, H, W\)"):
        acc.update(np.zeros((1, 2, 1, 4, 4)), np.zeros((1, 2, 1, 4, 4)), np.array([[6.0, 12.0]]))
