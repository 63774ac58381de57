"""Metrics against hand-computed answers and against pysteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.metrics import (
    MetricAccumulator,
    balanced_weights,
    categorical_scores,
    contingency_counts,
    psnr_per_frame,
    ssim,
    ssim_per_frame,
)
from pipeline.units import rainrate_to_normalized

OBS = np.array([[0.5, 0.1, 0.7], [0.2, 0.6, 0.0]])
PRED = np.array([[0.6, 0.5, 0.1], [0.1, 0.4, 0.0]])
# threshold 0.4 (event = value >= 0.4): pred events T T F F T F, obs events T F T F T F
# hits 2 (pixels 0 and 4, pixel 4 predicted exactly AT the threshold), false alarm 1 (pixel 1),
# miss 1 (pixel 2), correct negatives 2.


def test_contingency_counts_by_hand():
    counts = contingency_counts(PRED, OBS, [0.4, 0.65])
    np.testing.assert_array_equal(counts[0], [2, 1, 1, 2])
    # 0.65: pred events none; obs events pixel 2 only -> 0 hits, 0 FA, 1 miss, 5 CN
    np.testing.assert_array_equal(counts[1], [0, 0, 1, 5])


def test_categorical_scores_by_hand():
    s = categorical_scores(2, 1, 1, 2)
    assert s["POD"] == pytest.approx(2 / 3)
    assert s["FAR"] == pytest.approx(1 / 3)
    assert s["CSI"] == pytest.approx(0.5)
    # HSS = 2(ad - bc) / ((a+c)(c+d) + (a+b)(b+d)) = 2 * 3 / (3*3 + 3*3) = 1/3
    assert s["HSS"] == pytest.approx(1 / 3)


def test_categorical_scores_nan_without_events():
    s = categorical_scores(0, 0, 0, 10)
    assert np.isnan(s["POD"]) and np.isnan(s["FAR"]) and np.isnan(s["CSI"])


def test_mask_excludes_pixels():
    mask = np.array([[1, 0, 0], [1, 1, 1]], dtype=bool)  # drops the false alarm and the miss
    counts = contingency_counts(PRED, OBS, [0.4], mask)
    np.testing.assert_array_equal(counts[0], [2, 0, 0, 2])


def test_scores_match_pysteps_det_cat_fct():
    from pysteps.verification.detcatscores import det_cat_fct

    rng = np.random.default_rng(3)
    obs = rng.random((40, 50))
    pred = np.clip(obs + rng.normal(0, 0.15, obs.shape), 0, 1)
    pred[:5, :5] = 0.5  # values exactly at the threshold: >= here, > in pysteps
    obs[10:12, 10:12] = 0.5
    for thr in (0.3, 0.5, 0.7):
        counts = contingency_counts(pred, obs, [thr])[0]
        ours = categorical_scores(*counts)
        ref = det_cat_fct(pred, obs, np.nextafter(thr, -np.inf), ["POD", "FAR", "CSI", "HSS"])
        for key in ("POD", "FAR", "CSI", "HSS"):
            assert ours[key] == pytest.approx(ref[key], rel=1e-12), (thr, key)


def test_balanced_weights_per_band():
    edges = rainrate_to_normalized(np.array([2.0, 5.0, 10.0, 30.0]))
    below = np.nextafter(edges, -np.inf)
    values = np.concatenate(
        [[0.0, below[0]], np.ravel(np.column_stack([edges, below[1:].tolist() + [1.0]]))]
    )
    # 0, just below 2 mm/h, 2, just below 5, 5, just below 10, 10, just below 30, 30, 1.0
    expected = [1, 1, 2, 2, 5, 5, 10, 10, 30, 30]
    np.testing.assert_array_equal(balanced_weights(values), expected)
    t = balanced_weights(torch.tensor(values, dtype=torch.float64))
    np.testing.assert_array_equal(t.numpy(), expected)


def test_bmse_bmae_by_hand():
    r = rainrate_to_normalized(np.array([1.0, 3.0, 7.0, 40.0]))  # bands 1, 2, 5, 30
    target = r.reshape(1, 1, 1, 2, 2)
    pred = target + np.array([0.1, -0.1, 0.2, 0.05]).reshape(target.shape)
    acc = MetricAccumulator()
    acc.update(pred, target, np.array([[6.0]]))
    res = acc.result()
    bmse = 1 * 0.01 + 2 * 0.01 + 5 * 0.04 + 30 * 0.0025
    bmae = 1 * 0.1 + 2 * 0.1 + 5 * 0.2 + 30 * 0.05
    assert float(res["B-MSE"].sel(lead_time=6.0)) == pytest.approx(bmse)
    assert float(res["B-MAE"].sel(lead_time=6.0)) == pytest.approx(bmae)
    assert float(res["MSE"].sel(lead_time=6.0)) == pytest.approx((0.01 + 0.01 + 0.04 + 0.0025) / 4)


def test_ssim_identical_is_one_and_constant_frames_by_hand():
    x = torch.rand(2, 3, 1, 24, 24)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    # constant frames a, b: variances 0 -> SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.3, 0.5, 0.01**2
    f64 = torch.float64
    got = ssim_per_frame(
        torch.full((1, 1, 16, 16), a, dtype=f64), torch.full((1, 1, 16, 16), b, dtype=f64)
    )
    assert float(got[0]) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def test_ssim_is_differentiable_and_lower_for_noise():
    target = torch.rand(1, 2, 1, 32, 32)
    pred = (target + 0.2 * torch.randn_like(target)).requires_grad_(True)
    value = ssim(pred, target)
    value.backward()
    assert value.item() < 0.9
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_psnr_constant_error():
    target = np.full((2, 8, 8), 0.3)
    np.testing.assert_allclose(psnr_per_frame(target + 0.1, target), [20.0, 20.0])
    mask = np.ones_like(target)
    pred = target + 0.1
    pred[:, 0, 0] = 5.0  # a huge error on a masked pixel does not count
    mask[:, 0, 0] = 0
    np.testing.assert_allclose(psnr_per_frame(pred, target, mask), [20.0, 20.0])


def test_accumulator_streams_and_groups_by_lead():
    rng = np.random.default_rng(0)
    pred = rng.random((4, 3, 1, 16, 16))
    target = rng.random((4, 3, 1, 16, 16))
    mask = (rng.random(target.shape) > 0.2).astype(np.float32)
    t_out = np.tile([6.0, 12.0, 18.0], (4, 1))
    whole = MetricAccumulator()
    whole.update(pred, target, t_out, mask)
    parts = MetricAccumulator()
    parts.update(pred[:1], target[:1], t_out[:1], mask[:1])
    parts.update(pred[1:], target[1:], t_out[1:], mask[1:])
    a, b = whole.result(), parts.result()
    for var in ("hits", "misses", "B-MSE", "MSE", "SSIM", "PSNR", "CSI"):
        np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-6)
    # counts per lead equal a direct count over the 4 frames of that lead
    thr = rainrate_to_normalized(0.5)
    direct = contingency_counts(pred[:, 1, 0], target[:, 1, 0], [thr], mask[:, 1, 0] > 0)
    assert int(a["hits"].sel(lead_time=12.0, threshold=0.5)) == direct[:, 0, 0].sum()
    assert list(a["lead_time"].values) == [6.0, 12.0, 18.0]


def test_accumulator_skips_fully_masked_frames():
    target = np.full((1, 2, 1, 8, 8), 0.5)
    pred = target + 0.1
    mask = np.ones_like(target)
    mask[0, 1] = 0  # second frame missing
    pred[0, 1] = 0.0  # its error must not count
    acc = MetricAccumulator()
    acc.update(pred, target, np.array([[6.0, 6.0]]), mask)
    res = acc.result()
    assert float(res["MSE"].sel(lead_time=6.0)) == pytest.approx(0.01)
    assert float(res["PSNR"].sel(lead_time=6.0)) == pytest.approx(20.0)
    assert int(res["n_valid_frames"].sel(lead_time=6.0)) == 1
    assert int(res["n_frames"].sel(lead_time=6.0)) == 2


def test_accumulator_rejects_bad_shapes():
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="t_out"):
        acc.update(np.zeros((1, 2, 1, 4, 4)), np.zeros((1, 2, 1, 4, 4)), np.zeros((1, 3)))


def test_accumulator_rejects_nan_predictions():
    acc = MetricAccumulator()
    pred = np.full((1, 1, 1, 4, 4), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        acc.update(pred, np.zeros((1, 1, 1, 4, 4)), np.ones((1, 1)))


def test_numpy_ssim_of_accumulator_equals_torch_ssim():
    from nowcast.metrics import _ssim_frames_numpy

    g = torch.Generator().manual_seed(5)
    p = torch.rand(4, 1, 30, 26, dtype=torch.float64, generator=g)
    t = (p + 0.1 * torch.randn(p.shape, dtype=torch.float64, generator=g)).clamp(0, 1)
    m = (torch.rand(p.shape, dtype=torch.float64, generator=g) > 0.3).double()
    ref = ssim_per_frame(p, t, m).numpy()
    got = _ssim_frames_numpy(p[:, 0].numpy(), t[:, 0].numpy(), m[:, 0].numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.all(ref < 0.95)  # a real comparison, not two perfect scores


def test_accumulator_threshold_order_does_not_matter():
    rng = np.random.default_rng(2)
    pred = rng.random((2, 2, 1, 12, 12))
    target = rng.random((2, 2, 1, 12, 12))
    t_out = np.array([[6.0, 12.0]] * 2)
    a = MetricAccumulator((0.5, 5.0, 30.0))
    b = MetricAccumulator((30.0, 0.5, 5.0))
    a.update(pred, target, t_out)
    b.update(pred, target, t_out)
    ra, rb = a.result(), b.result().sortby("threshold")
    np.testing.assert_array_equal(ra["hits"].values, rb["hits"].values)
    np.testing.assert_array_equal(ra["correct_negatives"].values, rb["correct_negatives"].values)


def test_accumulator_counts_values_exactly_at_a_threshold_as_events():
    """The rule is ``value >= threshold`` for forecasts and observations alike.

    Thresholds at p/255 = 0.25, 0.5, 0.75 (0.2228, 2.949, 39.03 mm/h) round-trip exactly,
    so float32 pixels can sit exactly on them. Pixels (pred, obs):
    0 (0.25, 0.25)  1 (0.5, 0.25)  2 (0.75, 0.75)  3 (0.25-, 0.25)  4 (0.5-, 0.5)  5 (1, 0)
    where x- is the float32 just below x.
    """
    from pipeline.units import normalized_to_rainrate

    below = lambda v: np.nextafter(np.float32(v), np.float32(0))  # noqa: E731
    pred = np.array([0.25, 0.5, 0.75, below(0.25), below(0.5), 1.0], np.float32)
    obs = np.array([0.25, 0.25, 0.75, 0.25, 0.5, 0.0], np.float32)
    thresholds = [float(normalized_to_rainrate(v)) for v in (0.25, 0.5, 0.75)]
    acc = MetricAccumulator(thresholds)
    assert acc._thr_sorted.tolist() == [0.25, 0.5, 0.75]  # exact: ties are real ties
    acc.update(pred.reshape(1, 1, 1, 1, 6), obs.reshape(1, 1, 1, 1, 6), np.array([[6.0]]))
    ds = acc.result()
    table = np.stack(
        [ds[k].values[0] for k in ("hits", "false_alarms", "misses", "correct_negatives")], -1
    )
    # >= 0.25: pred T T T F T T, obs T T T T T F -> hits 0,1,2,4; FA 5; miss 3
    # >= 0.5:  pred F T T F F T, obs F F T F T F -> hit 2; FA 1,5; miss 4; CN 0,3
    # >= 0.75: pred F F T F F T, obs F F T F F F -> hit 2; FA 5; CN 0,1,3,4
    np.testing.assert_array_equal(table, [[4, 1, 1, 0], [1, 2, 1, 2], [1, 1, 0, 4]])
    np.testing.assert_array_equal(
        contingency_counts(pred.reshape(1, 6), obs.reshape(1, 6), [0.25, 0.5, 0.75]), table
    )  # the same rule as the plain counts
