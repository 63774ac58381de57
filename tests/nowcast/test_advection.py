"""Semi-Lagrangian advection in torch: exact answers and agreement with pysteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.advection import advect, resize_motion, sample, trajectory


def _blob(n: int = 64, cx: float = 30.0, cy: float = 34.0, s: float = 4.0) -> torch.Tensor:
    y, x = np.mgrid[:n, :n].astype(np.float64)
    f = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return torch.from_numpy(f)[None, None]


def _uniform(n: int, u: float, v: float, dtype=torch.float64) -> torch.Tensor:
    m = torch.zeros(1, 2, n, n, dtype=dtype)
    m[:, 0] = u
    m[:, 1] = v
    return m


def test_integer_translation_is_an_exact_shift():
    f = _blob(s=2.5)
    out = advect(f, _uniform(64, 3.0, -2.0), [1.0, 2.0, 4.0])
    for j, s in enumerate((1, 2, 4)):
        want = torch.roll(f, shifts=(-2 * s, 3 * s), dims=(-2, -1))
        # the blob stays far from the edges, so the roll's wrap-around plays no part
        torch.testing.assert_close(out[:, j], want, rtol=0, atol=1e-10)


def test_fractional_steps_and_speeds_are_exact_on_a_linear_field():
    n = 40
    y, x = np.mgrid[:n, :n].astype(np.float64)
    f = torch.from_numpy(x + 2.0 * y)[None, None]
    out = advect(f, _uniform(n, 0.5, 0.25), [1.0, 2.5])
    inner = (slice(4, -4), slice(4, -4))
    for j, s in enumerate((1.0, 2.5)):
        want = (x - 0.5 * s) + 2.0 * (y - 0.25 * s)
        np.testing.assert_allclose(out[0, j, 0].numpy()[inner], want[inner], atol=1e-9)


def test_fractional_speed_with_integer_total_is_a_shift():
    f = _blob()
    out = advect(f, _uniform(64, 1.5, 0.0), [2.0])  # 1.5 px per step for 2 steps = 3 px
    torch.testing.assert_close(out[:, 0], torch.roll(f, 3, dims=-1), rtol=0, atol=1e-12)


def test_solid_body_rotation_follows_the_circle():
    n, c = 101, 50.0
    omega = 2 * np.pi / 200  # radians per step
    y, x = np.mgrid[:n, :n].astype(np.float64)
    m = torch.zeros(1, 2, n, n, dtype=torch.float64)
    m[0, 0] = torch.from_numpy(-omega * (y - c))
    m[0, 1] = torch.from_numpy(omega * (x - c))
    steps = [5.0, 20.0]
    disp = trajectory(m, steps)[0].numpy()
    r = np.hypot(x - c, y - c)
    inside = r < 35
    for j, s in enumerate(steps):
        a = -omega * s  # the source point is the target rotated backwards
        sx = c + np.cos(a) * (x - c) - np.sin(a) * (y - c)
        sy = c + np.sin(a) * (x - c) + np.cos(a) * (y - c)
        err = np.hypot(x + disp[j, 0] - sx, y + disp[j, 1] - sy)
        # midpoint rule: error per step ~ r (omega)^3 / 4; 20 steps at r = 35: ~0.005 px
        assert err[inside].max() < 0.01, (s, err[inside].max())
    # a rotated blob keeps its mass and its distance from the centre
    f = _blob(n, cx=80.0, cy=50.0, s=3.0)
    out = sample(f, trajectory(m, [50.0]))[0, 0, 0].numpy()  # a quarter turn
    assert abs(out.sum() - f.sum().item()) / f.sum().item() < 0.02
    iy, ix = np.unravel_index(out.argmax(), out.shape)
    assert (ix, iy) == (50, 80)  # (80, 50) turned by +90 degrees about (50, 50)


def test_agrees_with_pysteps_semilagrangian():
    from pysteps import nowcasts

    rng = np.random.default_rng(3)
    n = 96
    y, x = np.mgrid[:n, :n].astype(np.float64)
    u = 1.5 + 0.8 * np.sin(2 * np.pi * y / n)
    v = -1.0 + 0.6 * np.cos(2 * np.pi * x / n)
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.random((n, n)), 2.0)
    steps = [1, 2, 3, 4, 5, 6]
    ref = nowcasts.get_method("extrapolation")(
        field, np.stack([u, v]), steps, extrap_kwargs={"outval": 0.0}
    )
    ours = advect(
        torch.from_numpy(field)[None, None], torch.from_numpy(np.stack([u, v]))[None], steps
    )[0, :, 0].numpy()
    # away from the inflow edges (where pysteps' "constant" mode and grid_sample's zero
    # padding treat the last half pixel differently) the two agree to rounding
    inner = (slice(0, None), slice(20, -20), slice(20, -20))
    np.testing.assert_allclose(ours[inner], ref[inner], rtol=0, atol=1e-10)
    # in the inflow band pysteps reads 0 beyond the last pixel while the bilinear sampler
    # blends the edge pixel with 0 over the last pixel: the frames still agree on average
    assert np.abs(ours - ref).mean() < 1e-2


def test_mask_marks_inflow_pixels_invalid():
    n = 16
    f = torch.ones(1, 1, n, n)
    mask = torch.ones(1, 1, n, n)
    out, valid = advect(f, _uniform(n, 2.0, 0.0, torch.float32), [1.0, 3.0], mask=mask)
    assert valid.dtype == torch.bool
    assert not valid[0, 0, 0, :, :2].any() and valid[0, 0, 0, :, 2:].all()
    assert not valid[0, 1, 0, :, :6].any() and valid[0, 1, 0, :, 6:].all()
    assert out[0, 1, 0, :, :6].abs().max() < 1e-6  # no echo read from outside
    # an invalid source region stays invalid where it moves to
    mask2 = mask.clone()
    mask2[..., 5:8] = 0
    _, valid2 = advect(f, _uniform(n, 2.0, 0.0, torch.float32), [1.0], mask=mask2)
    assert not valid2[0, 0, 0, :, 7:10].any() and valid2[0, 0, 0, :, 10:].all()


def test_gradients_flow_to_the_field_and_the_motion():
    f = _blob(24, 12, 12, 3).requires_grad_(True)
    m = _uniform(24, 0.7, 0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: advect(a, b, [1.0, 1.5]), (f, m), atol=1e-6)


def test_resize_motion_scales_to_the_new_grid():
    m = _uniform(80, 1.0, -0.5, torch.float32)
    big = resize_motion(m, (480, 480))
    assert big.shape == (1, 2, 480, 480)
    torch.testing.assert_close(big[:, 0], torch.full((1, 480, 480), 6.0))
    torch.testing.assert_close(big[:, 1], torch.full((1, 480, 480), -3.0))


def test_bad_arguments_name_what_is_expected():
    f = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"motion must have shape \(B, 2, H, W\)"):
        advect(f, torch.zeros(1, 3, 8, 8), [1.0])
    with pytest.raises(ValueError, match="steps must not decrease"):
        advect(f, torch.zeros(1, 2, 8, 8), [2.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        advect(f, torch.full((1, 2, 8, 8), float("nan")), [1.0])
