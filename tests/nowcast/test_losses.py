"""Training losses against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.losses import (
    LOSS_NAMES,
    balanced_loss,
    get_loss,
    masked_mae,
    masked_mse,
    thesis_loss,
)
from pipeline.units import rainrate_to_normalized


def _frames(value: float, shape=(2, 3, 1, 16, 16)) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.float32)


def test_thesis_loss_of_a_constant_offset_matches_the_formula():
    target = _frames(0.5)
    pred = _frames(0.6)
    # constant frames: variances are 0, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1)
    c1 = 0.01**2
    ssim = (2 * 0.6 * 0.5 + c1) / (0.6**2 + 0.5**2 + c1)
    expected = 0.1**2 + 0.1 + 0.05 * (1 - ssim)
    # float32 blur of constant frames leaves variances of ~1e-8: tolerance 1e-5 absolute
    assert float(thesis_loss(pred, target)) == pytest.approx(expected, abs=1e-5)


def test_thesis_loss_of_a_perfect_forecast_is_zero():
    target = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(thesis_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)


def test_masked_errors_count_only_valid_pixels():
    target = _frames(0.3, (1, 1, 1, 4, 4))
    pred = target.clone()
    pred[..., :2] += 0.2  # left half: error 0.2
    pred[..., 2:] += 0.4  # right half: error 0.4, masked out
    mask = torch.zeros_like(target)
    mask[..., :2] = 1.0
    assert float(masked_mse(pred, target, mask)) == pytest.approx(0.04, rel=1e-5)
    assert float(masked_mae(pred, target, mask)) == pytest.approx(0.2, rel=1e-5)
    # without the mask both halves count
    assert float(masked_mse(pred, target)) == pytest.approx((0.04 + 0.16) / 2, rel=1e-5)


def test_masked_pixels_get_no_gradient():
    target = torch.rand(1, 2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    pred = (target + 0.1).requires_grad_(True)
    mask = torch.ones_like(target)
    mask[..., 8:, :] = 0.0
    get_loss("thesis")(pred, target, mask).backward()
    assert torch.count_nonzero(pred.grad[..., 8:, :]) == 0
    assert torch.count_nonzero(pred.grad[..., :8, :]) > 0


def _one_pixel_per_band() -> torch.Tensor:
    """Columns of targets inside each HKO-7 rain band: <2, [2,5), [5,10), [10,30), >=30 mm/h."""
    rates = np.array([1.0, 3.0, 7.0, 20.0, 40.0])
    col = torch.tensor(rainrate_to_normalized(rates), dtype=torch.float32)
    return col.view(1, 1, 1, 1, 5).expand(1, 1, 1, 3, 5).contiguous()


def test_balanced_loss_weights_each_rain_band():
    target = _one_pixel_per_band()
    pred = target + 0.1
    # weights 1, 2, 5, 10, 30 -> mean 9.6; each pixel err^2 + |err| = 0.11
    assert float(balanced_loss(pred, target)) == pytest.approx(9.6 * 0.11, rel=1e-4)


def test_balanced_loss_with_mask_excludes_the_heavy_rain_column():
    target = _one_pixel_per_band()
    pred = target - 0.1
    mask = torch.ones_like(target)
    mask[..., 4] = 0.0
    # (1 + 2 + 5 + 10) / 4 valid columns
    assert float(balanced_loss(pred, target, mask)) == pytest.approx(4.5 * 0.11, rel=1e-4)


def test_loss_weights_can_be_changed():
    target = _frames(0.5)
    pred = _frames(0.7)
    loss = thesis_loss(pred, target, weights={"mse": 2.0, "mae": 0.0, "ssim": 0.0})
    assert float(loss) == pytest.approx(2 * 0.04, rel=1e-5)


def test_unknown_loss_weight_is_rejected():
    with pytest.raises(ValueError, match="valid keys are"):
        thesis_loss(_frames(0.5), _frames(0.5), weights={"l1": 1.0})


def test_registry_lists_valid_names():
    assert set(LOSS_NAMES) == {"thesis", "balanced", "balanced_csi"}
    assert get_loss("THESIS") is thesis_loss
    with pytest.raises(ValueError, match="thesis, balanced, balanced_csi"):
        get_loss("huber")


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 1, 16, 16\) and \(2, 3, 1, 8, 8\)"):
        thesis_loss(_frames(0.5), _frames(0.5, (2, 3, 1, 8, 8)))


def test_soft_csi_matches_the_hand_computed_score():
    from nowcast.losses import soft_csi
    from pipeline.units import rainrate_to_normalized

    thr = float(rainrate_to_normalized(2.0))
    target = torch.zeros(1, 1, 1, 2, 4)
    target[..., 0, :2] = thr + 0.2  # two observed events
    pred = torch.zeros_like(target)
    pred[..., 0, 1:3] = thr + 0.5  # one hit, one false alarm, one miss
    # far from the threshold the sigmoid is 0 or 1 to 1e-10: CSI = 1 / (1 + 1 + 1)
    assert abs(float(soft_csi(pred, target, None, 2.0)) - 1 / 3) < 1e-4
    mask = torch.ones_like(target)
    mask[..., 0, 2] = 0  # the false alarm is not counted where the target is invalid
    assert abs(float(soft_csi(pred, target, mask, 2.0)) - 1 / 2) < 1e-4


def test_balanced_csi_loss_adds_the_csi_terms_to_the_balanced_loss():
    from nowcast.losses import CSI_THRESHOLDS_MMH, balanced_csi_loss, balanced_loss, soft_csi

    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 1, 8, 8, generator=g)
    target = torch.rand(2, 3, 1, 8, 8, generator=g)
    want = balanced_loss(pred, target) + 0.3 * sum(
        (1 - soft_csi(pred, target, None, t, per_lead=True)).mean() for t in CSI_THRESHOLDS_MMH
    )
    got = balanced_csi_loss(pred, target, weights={"csi": 0.3})
    assert abs(float(got) - float(want)) < 1e-6
    assert get_loss("balanced_csi") is balanced_csi_loss
    p = pred.clone().requires_grad_(True)
    balanced_csi_loss(p, target).backward()
    assert float(p.grad.abs().sum()) > 0


def test_lead_balance_keeps_the_value_and_equalises_relative_gradients():
    from nowcast.losses import balanced_csi_loss, balanced_loss

    target = torch.zeros(1, 2, 1, 4, 4)
    pred = torch.zeros(1, 2, 1, 4, 4)
    pred[:, 0] = 0.1  # small error at lead 1
    pred[:, 1] = 0.4  # large error at lead 2
    pred.requires_grad_(True)
    w = {"csi": 0.0, "lead_balance": 1.0}
    loss = balanced_csi_loss(pred, target, weights=w)
    assert abs(float(loss.detach()) - float(balanced_loss(pred.detach(), target))) < 1e-6
    loss.backward()
    # d(mean_t log L_t)/dp per lead, times the mean loss: L_t = e^2 + e per pixel
    g = pred.grad[0, :, 0, 0, 0]
    l1, l2 = 0.1**2 + 0.1, 0.4**2 + 0.4
    mean = (l1 + l2) / 2
    want1 = mean / l1 * (2 * 0.1 + 1) / 16 / 2
    want2 = mean / l2 * (2 * 0.4 + 1) / 16 / 2
    assert abs(float(g[0]) - want1) < 1e-6 and abs(float(g[1]) - want2) < 1e-6


def test_soft_csi_per_lead_scores_each_lead_on_its_own():
    from nowcast.losses import soft_csi
    from pipeline.units import rainrate_to_normalized

    thr = float(rainrate_to_normalized(5.0))
    target = torch.zeros(1, 2, 1, 1, 4)
    target[..., :2] = thr + 0.3
    pred = torch.zeros_like(target)
    pred[:, 0, ..., :2] = thr + 0.5  # lead 1 perfect: CSI 1
    pred[:, 1, ..., 1:3] = thr + 0.5  # lead 2: 1 hit, 1 false alarm, 1 miss: CSI 1/3
    per = soft_csi(pred, target, None, 5.0, per_lead=True)
    assert per.shape == (2,)
    assert abs(float(per[0]) - 1.0) < 1e-4 and abs(float(per[1]) - 1 / 3) < 1e-4
    assert abs(float(soft_csi(pred, target, None, 5.0)) - 3 / 5) < 1e-4  # pooled: 3 / (3+1+1)
