"""Exceedance-probability estimators against known answers (beta-binomial conjugacy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.matching import keep_wet_area
from nowcast.probability import debiased_probability, get_method, posterior_means

N = 20


def _beta_binomial_field(a=0.5, b=4.0, size=(200, 400), seed=0):
    """p ~ Beta(a, b) per pixel, k ~ Bin(N, p) members, truth ~ Bernoulli(p)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, size)
    return rng.binomial(N, p), rng.random(size) < p


def test_fraction_is_k_over_n():
    k = np.array([[0, 5], [10, 20]])
    np.testing.assert_array_equal(get_method("fraction")(k, N), k / N)


def test_debiased_recovers_the_beta_binomial_posterior_mean():
    # with p ~ Beta(a, b), E[p | k] = (k + a) / (N + a + b) exactly
    a, b = 0.5, 4.0
    k, _ = _beta_binomial_field(a, b)
    q = debiased_probability(k, N)
    for kk in (2, 6, 10):
        assert q[k == kk][0] == pytest.approx((kk + a) / (N + a + b), abs=0.01)
    assert (q[k == 6] == q[k == 6][0]).all()  # one value per count within a frame


def test_debiased_is_reliable_for_a_perfect_ensemble_where_the_fraction_is_not():
    k, truth = _beta_binomial_field(size=(400, 500), seed=1)
    q = debiased_probability(k, N)
    for kk in (6, 8):  # E[p | k] = (k + 0.5) / 24.5: 0.035 and 0.053 below k / N
        sel = k == kk
        observed = truth[sel].mean()
        assert abs(observed - q[sel][0]) < 0.02
        assert kk / N - observed > 0.02  # k / N over-states it for rare events


def test_debiased_is_monotone_bounded_and_zero_without_exceedance():
    k, _ = _beta_binomial_field(seed=2)
    means = posterior_means(np.bincount(k.ravel(), minlength=N + 1))
    assert np.all(np.diff(means) >= 0) and means[0] >= 0 and means[-1] <= 1
    np.testing.assert_array_equal(debiased_probability(np.zeros((2, 4, 4), int), N), 0.0)


def test_debiased_estimates_each_frame_from_its_valid_pixels():
    k, _ = _beta_binomial_field(size=(40, 40), seed=3)
    stack = np.stack([k, np.zeros_like(k)])  # (2, H, W): a rainy and a dry frame
    q = debiased_probability(stack, N)
    np.testing.assert_allclose(q[0], debiased_probability(k, N))
    np.testing.assert_array_equal(q[1], 0.0)
    valid = np.zeros(k.shape, bool)
    valid[:20] = True  # only the top half enters the histogram; every pixel is estimated
    q_half = debiased_probability(k, N, valid=valid)
    np.testing.assert_allclose(q_half[:20], debiased_probability(k[:20], N))


def test_unknown_method_lists_the_names():
    with pytest.raises(ValueError, match=r"expected one of \['debiased', 'fraction'\]"):
        get_method("isotonic")


def test_counts_above_the_member_count_are_refused():
    with pytest.raises(ValueError, match="counts must lie in 0..20"):
        debiased_probability(np.full((2, 2), 21), N)


def test_keep_wet_area_keeps_the_references_count_of_largest_values():
    field = torch.tensor([0.0, 0.05, 0.3, 0.2, 0.0, 0.9]).view(1, 1, 1, 2, 3)
    reference = torch.tensor([0.5, 0.5, 0.5, 0.0, 0.0, 0.0]).view(1, 1, 1, 2, 3)
    out = keep_wet_area(field, reference, 0.1)  # 3 wet pixels: 0.9, 0.3, 0.2
    expected = torch.tensor([0.0, 0.0, 0.3, 0.2, 0.0, 0.9]).view(1, 1, 1, 2, 3)
    torch.testing.assert_close(out, expected)
    more = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.0, 0.0]).view(1, 1, 1, 2, 3)
    out4 = keep_wet_area(field, more, 0.1)  # 4 wet: 0.05 is raised to the threshold
    torch.testing.assert_close(out4.flatten()[1], torch.tensor(0.1))
    assert int((out4 >= 0.1).sum()) == 4


def test_keep_wet_area_refuses_other_shapes():
    with pytest.raises(ValueError, match="of one shape"):
        keep_wet_area(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 1, 1, 4, 4), 0.1)
