"""Tests of pipeline.motion: known translations recovered, irregular times, grid scaling,
fallbacks, registry errors.

The test field is a smooth random texture (Gaussian-filtered noise, periodic) clipped at
zero, so about half of the domain is rain; it is translated exactly (Fourier shift, integer
or fractional pixels). Errors are measured away from the borders (an eighth of each side),
where content enters or leaves the domain.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import ndimage

from pipeline.motion import (
    FALLBACK_STATUSES,
    MOTION_NAMES,
    MotionEstimate,
    block_average,
    get_motion,
    upsample_motion,
)

LK_TOL = 0.15  # px/step, largest error of either component over the interior (measured <= 0.09)
VET_TOL = 0.2  # measured <= 0.1


def texture(n: int, seed: int = 0, corr: float | None = None) -> np.ndarray:
    """Periodic smooth random field, zero mean, unit variance, ``(n, n)``."""
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal((n, n)), corr or n / 40, mode="wrap")
    return (f - f.mean()) / f.std()


def translated(n, u, v, times_steps=(0, 1, 2, 3), seed=0, corr=None) -> np.ndarray:
    """Frames ``(T, n, n)`` in p/255 of the texture moved by (u, v) px per step."""
    spec = np.fft.fft2(texture(n, seed, corr))
    frames = [
        np.real(np.fft.ifft2(ndimage.fourier_shift(spec, (v * t, u * t)))) for t in times_steps
    ]
    return np.clip(0.3 * np.asarray(frames), 0.0, 1.0)


def interior(field: np.ndarray) -> np.ndarray:
    m = field.shape[-1] // 8
    return field[:, m:-m, m:-m]


def max_error(est: MotionEstimate, u: float, v: float) -> float:
    f = interior(est.field)
    return float(max(np.abs(f[0] - u).max(), np.abs(f[1] - v).max()))


@pytest.mark.parametrize(
    ("name", "n", "u", "v", "tol"),
    [
        ("lk", 480, 3.0, -2.0, LK_TOL),
        ("lk", 480, 1.5, 2.25, LK_TOL),
        ("lk", 80, 3.0, -2.0, LK_TOL),
        ("lk", 80, -1.25, 0.5, LK_TOL),
        ("vet", 480, 3.0, -2.0, VET_TOL),
        ("vet", 480, 1.5, 2.25, VET_TOL),
        ("vet", 80, -1.25, 0.5, VET_TOL),
    ],
)
def test_known_translation_is_recovered(name, n, u, v, tol):
    frames = translated(n, u, v, corr=None if n > 80 else 3.0)
    est = get_motion(name)(frames)
    assert est.fallback is None and est.status == "ok" and est.method == name
    assert est.field.shape == (2, n, n) and est.field.dtype == np.float32
    assert max_error(est, u, v) < tol


def test_irregular_times_give_px_per_step():
    # frames at steps 0, 1, 3, 4 (a gap of 2 steps), 6-minute cadence
    steps = (0, 1, 3, 4)
    frames = translated(80, 2.0, -1.0, times_steps=steps, corr=3.0)
    times = 6.0 * np.asarray(steps)
    est = get_motion("lk")(frames, times=times, cadence_minutes=6.0)
    assert est.status == "ok" and max_error(est, 2.0, -1.0) < LK_TOL
    # VET (costly): one pair two steps apart
    est = get_motion("vet")(frames[1:3], times=times[1:3], cadence_minutes=6.0)
    assert est.status == "ok" and max_error(est, 2.0, -1.0) < VET_TOL
    # the same frames taken as regular would be wrong by the gap's extra step
    wrong = get_motion("lk")(frames)
    assert max_error(wrong, 2.0, -1.0) > 0.3


def test_cadence_sets_the_unit():
    frames = translated(80, 2.0, -1.0, corr=3.0)
    per6 = get_motion("lk")(frames, times=[0, 6, 12, 18], cadence_minutes=6.0)
    per12 = get_motion("lk")(frames, times=[0, 6, 12, 18], cadence_minutes=12.0)
    np.testing.assert_allclose(per12.field, 2 * per6.field, rtol=1e-5, atol=1e-5)


def test_six_times_finer_grid_gives_six_times_the_speed():
    fine = translated(480, 3.0, -2.0)
    coarse, _ = block_average(fine, np.ones(fine.shape, bool), 6)  # 80 x 80, 0.5 / -1/3
    lk = get_motion("lk")
    est_fine, est_coarse = lk(fine), lk(coarse)
    mf = interior(est_fine.field).mean(axis=(1, 2))
    mc = interior(est_coarse.field).mean(axis=(1, 2))
    np.testing.assert_allclose(mc, [0.5, -1 / 3], atol=0.05)
    np.testing.assert_allclose(mf, 6 * mc, atol=0.2)


def test_masked_pixels_are_not_data():
    frames = translated(80, 2.0, -1.0, corr=3.0)
    masks = np.ones(frames.shape, bool)
    masks[:, :, :20] = False
    frames[:, :, :20] = np.nan  # invalid pixels may hold anything
    est = get_motion("lk")(frames, masks)
    assert est.status == "ok"
    f = est.field[:, 10:-10, 30:-10]  # 10 px or more from the masked band and the borders
    assert max(np.abs(f[0] - 2.0).max(), np.abs(f[1] + 1.0).max()) < 0.25


@pytest.mark.parametrize("name", ["lk", "vet"])
@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("zeros", "no_rain"),
        ("uniform", "uniform_field"),
        ("frozen", "frozen_field"),
        ("one_frame", "too_few_frames"),
    ],
)
def test_fallbacks_return_zero_motion_with_a_reason(name, case, status, caplog):
    frames = translated(48, 1.0, 1.0, corr=3.0)
    masks = np.ones(frames.shape, bool)
    if case == "zeros":
        frames[:] = 0.0
    elif case == "uniform":
        frames[:] = 0.5
    elif case == "frozen":
        frames[:] = frames[0]
    else:
        masks[1:] = False
    with caplog.at_level(logging.WARNING, logger="pipeline.motion"):
        est = get_motion(name)(frames, masks)
    assert est.status == status and est.code == FALLBACK_STATUSES.index(status) > 0
    assert isinstance(est.fallback, str) and est.fallback
    np.testing.assert_array_equal(est.field, np.zeros((2, 48, 48), np.float32))
    assert est.fallback in caplog.text


def test_pysteps_failure_falls_back():
    est = get_motion("lk", lk_kwargs={"fd_method": "no-such-detector"})(translated(48, 1, 1))
    assert est.status == "method_failed" and "pysteps lk raised" in est.fallback
    assert not est.field.any()


def test_zero_method():
    est = get_motion("zero")(translated(48, 1, 1))
    assert est.fallback is None and est.method == "zero" and not est.field.any()


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: lk, vet, zero"):
        get_motion("farneback")
    assert MOTION_NAMES == ("lk", "vet", "zero")


def test_bad_arguments_raise():
    lk = get_motion("lk")
    frames = translated(48, 1, 1)
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        lk(frames[0])
    with pytest.raises(ValueError, match="strictly increasing"):
        lk(frames, times=[0, 6, 6, 12])
    with pytest.raises(ValueError, match="masks must have the shape"):
        lk(frames, masks=np.ones((4, 48, 47), bool))


def test_block_average_and_upsample_by_hand():
    a = np.arange(16, dtype=float).reshape(1, 4, 4)
    valid = np.ones(a.shape, bool)
    valid[0, 0, 0] = False  # block (0, 0): mean of 1, 4, 5 (3 of 4 valid)
    mean, ok = block_average(a, valid, 2)
    np.testing.assert_allclose(mean[0], [[10 / 3, 4.5], [10.5, 12.5]])
    assert ok.all()
    mean, ok = block_average(a, valid, 3)  # padded to 6 x 6: block (0, 0) has 8 of 9 valid
    assert ok.tolist() == [[[True, False], [False, False]]]
    # a linear field in coarse pixels comes back linear, scaled by the factor
    coarse = np.stack([np.tile(np.arange(4.0), (4, 1)), np.zeros((4, 4))])
    fine = upsample_motion(coarse, 2, (8, 8))
    np.testing.assert_allclose(fine[0, 0], 2 * np.clip((np.arange(8) - 0.5) / 2, 0, 3))
