"""Tests of nowcast.interpolation: interpolators, accumulations with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.interpolation import accumulate, estimate_motion, get_interpolator

H, W = 24, 100


def _moving_block(n_frames=11, step_px=6, rate=10.0):
    """A 4 x 4 block of *rate* mm/h moving *step_px* columns per 6-min frame."""
    r = np.zeros((n_frames, H, W), np.float32)
    for k in range(n_frames):
        r[k, 10:14, 5 + step_px * k : 9 + step_px * k] = rate
    v = np.zeros((2, H, W), np.float32)
    v[0] = step_px
    return r, v


def test_moving_block_advection_gives_one_stripe_of_exact_length_and_total():
    r, v = _moving_block()
    acc = accumulate(r, np.arange(11) * 6.0, v, motion_minutes=6.0, substep_minutes=1.0)
    row = acc[11]
    # 61 one-minute sub-steps (trapezoid), the block moves 1 column per minute:
    # columns 5 .. 68 are wet (4 + 60 columns), inner columns 4 sub-steps of 10 mm/h
    assert np.flatnonzero(row > 1e-6).tolist() == list(range(5, 69))
    # column c is wet in sub-steps c-8 .. c-5 of 0 .. 60, the first and last count half
    np.testing.assert_allclose(row[9:65], 4 * 10.0 / 60.0, rtol=1e-5)
    ramp = np.array([0.5, 1.5, 2.5, 3.5]) * 10.0 / 60.0
    np.testing.assert_allclose(row[5:9], ramp, rtol=1e-5)
    np.testing.assert_allclose(row[65:69], ramp[::-1], rtol=1e-5)
    np.testing.assert_allclose(acc.sum(), 16 * 10.0 * 1.0, rtol=1e-5)  # 16 px x 10 mm/h x 1 h
    assert np.abs(acc[:10]).max() < 1e-6 and np.abs(acc[14:]).max() < 1e-6  # float32 warps


def test_moving_block_plain_sum_gives_the_stripes():
    r, _ = _moving_block()
    acc = accumulate(r, np.arange(11) * 6.0, method="sum")
    row = acc[11]
    expected = np.zeros(W, np.float32)
    for k in range(11):  # each frame stands for 6 min (half of it at the ends)
        expected[5 + 6 * k : 9 + 6 * k] = 1.0 if 0 < k < 10 else 0.5
    np.testing.assert_allclose(row, expected, rtol=1e-6)
    assert (row[9:11] == 0).all()  # the stripes: dry columns between the frames' blocks
    np.testing.assert_allclose(acc.sum(), 160.0, rtol=1e-6)


def test_field_at_rest_same_accumulation_with_either_method():
    rng = np.random.default_rng(0)
    field = np.zeros((H, W), np.float32)
    field[5:15, 20:40] = rng.uniform(1, 30, (10, 20))
    r = np.repeat(field[None], 11, axis=0)
    norm = np.repeat((field / 30.0)[None], 4, axis=0)
    v = estimate_motion(norm, np.arange(4) * 6.0, 6.0)  # frozen field: zero motion
    assert np.all(v == 0)
    adv = accumulate(r, np.arange(11) * 6.0, v)
    plain = accumulate(r, np.arange(11) * 6.0, method="sum")
    np.testing.assert_allclose(adv, plain, rtol=1e-5)
    np.testing.assert_allclose(plain, field * 1.0, rtol=1e-5)  # 1 h of a constant rate


def test_accumulation_nan_outside_coverage_and_irregular_times():
    r = np.full((3, 4, 4), 6.0, np.float32)
    r[1, 0, 0] = np.nan
    acc = accumulate(r, [0.0, 6.0, 30.0], np.zeros((2, 4, 4), np.float32))
    assert np.isnan(acc[0, 0])
    np.testing.assert_allclose(acc[1:, 1:], 6.0 * 0.5, rtol=1e-6)  # 30 min of 6 mm/h


def test_accumulate_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        accumulate(np.zeros((2, 3, 3)), [6.0, 0.0], method="sum")
    with pytest.raises(ValueError, match="needs a motion field"):
        accumulate(np.zeros((2, 3, 3)), [0.0, 6.0])
    with pytest.raises(
        ValueError, match="unknown accumulation method 'foo'; valid names: advection, sum"
    ):
        accumulate(np.zeros((2, 3, 3)), [0.0, 6.0], method="foo")


def test_linear_interpolator_cross_fades():
    lin = get_interpolator("linear")
    out = lin(np.full((2, 2), 0.2), np.full((2, 2), 0.8), [0.25, 0.5])
    np.testing.assert_allclose(out[:, 0, 0], [0.35, 0.5], rtol=1e-6)


def test_advection_interpolator_exact_for_a_block_moving_whole_pixels():
    before = np.zeros((H, W), np.float32)
    before[10:14, 10:14] = 0.5
    after = np.roll(before, 9, axis=1)  # 9 columns in 3 steps
    v = np.zeros((2, H, W), np.float32)
    v[0] = 3.0
    out = get_interpolator("advection")(before, after, [1 / 3, 2 / 3], span_steps=3.0, motion=v)
    np.testing.assert_allclose(out[0], np.roll(before, 3, axis=1), atol=1e-6)
    np.testing.assert_allclose(out[1], np.roll(before, 6, axis=1), atol=1e-6)
    lin = get_interpolator("linear")(before, after, [1 / 3])
    assert lin[0].max() < 0.5  # the cross-fade shows two faint copies instead


def test_model_interpolator_queries_the_predictor():
    from nowcast.forecast import baseline_predictor

    pred = baseline_predictor("persistence", in_frames=2)
    before = np.full((H, W), 0.4, np.float32)
    after = np.full((H, W), 0.4, np.float32)
    out = get_interpolator("model", predictor=pred)(
        before, after, [0.5], span_steps=2.0, motion=np.zeros((2, H, W), np.float32),
        history=np.stack([before, before]),
    )  # fmt: skip
    np.testing.assert_allclose(out, 0.4, rtol=1e-6)


def test_registry_errors():
    with pytest.raises(
        ValueError, match="unknown interpolator 'foo'; valid names: linear, advection, model"
    ):
        get_interpolator("foo")
    with pytest.raises(ValueError, match="'model' needs a trained run"):
        get_interpolator("model")
    with pytest.raises(ValueError, match="fractions must be in"):
        get_interpolator("linear")(np.zeros((2, 2)), np.zeros((2, 2)), [1.0])


def _moving_store(n=16, size=64, step=3):
    import pandas as pd

    from pipeline.schema import resampled_dataset

    times = pd.date_range("2015-06-01 12:00", periods=n, freq="6min")
    rng = np.random.default_rng(1)
    tex = rng.uniform(30, 50, (12, 12)).astype(np.float32)
    refl = np.full((n, size, size), -10.0, np.float32)
    for k in range(n):
        refl[k, 20:32, 2 + step * k : 14 + step * k] = tex
    return resampled_dataset(times, refl)


def test_skill_advection_beats_linear_on_a_translating_cell():
    from nowcast.interpolation.skill import evaluate_interpolation, fss, skill_markdown

    table = evaluate_interpolation(_moving_store(), gap_lengths=(1, 3), max_cases=3)
    assert table["cases"].tolist() == [3, 3, 3, 3]
    for gap in (1, 3):
        lin = table[(table.method == "linear") & (table.gap == gap)].iloc[0]
        adv = table[(table.method == "advection") & (table.gap == gap)].iloc[0]
        assert adv["CSI_10"] > lin["CSI_10"]
        assert adv["B-MSE"] < lin["B-MSE"]
    assert "| advection | 3 | 3 |" in skill_markdown(table)
    f = np.zeros((1, 10, 10))
    f[0, 2:5, 2:5] = 3.0
    assert fss(f, f, 1.0, 3) == 1.0
    assert fss(f, np.zeros_like(f), 1.0, 3) == 0.0
