"""Verification with uncertainty: FSS against pysteps and analytic values, bootstrap
intervals that cover at their stated rate, paired differences, per-case and pooled scores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nowcast.baselines import get_baseline
from nowcast.evaluate import EvaluateOptions, evaluate_predictors, evaluate_run, summarize
from nowcast.verification.bootstrap import (
    block_length,
    block_resample_weights,
    percentile_interval,
    verdict,
)
from nowcast.verification.fss import fss_from_sums, fss_sums, scales_to_pixels
from nowcast.verification.sequences import scores_from_sums
from nowcast.verification.uncertainty import score_uncertainty
from tests.nowcast.test_evaluate import DAYS, _dataset, store  # noqa: F401  (fixture)


# --------------------------------------------------------------------------- FSS
@pytest.mark.parametrize(("shift", "scale", "expected"), [(1, 5, 0.8), (2, 4, 0.5), (3, 3, 0.0)])
def test_fss_of_shifted_pixel_is_one_minus_shift_over_scale(shift, scale, expected):
    """One event pixel, forecast ``d`` pixels east: the n x n windows overlap n(n - d)
    pixels, so FSS = 1 - (2/n^2 - 2(n-d)/n^3) / (2/n^2) = 1 - d/n (0 once d >= n)."""
    obs = np.zeros((40, 40))
    obs[20, 15] = 1.0
    pred = np.roll(obs, shift, axis=1)
    sums = fss_sums(pred, obs, [0.5], [scale])
    assert float(fss_from_sums(sums)[0, 0]) == pytest.approx(expected, abs=1e-6)


def test_fss_matches_pysteps_on_the_same_fields():
    from pysteps.verification.spatialscores import fss

    rng = np.random.default_rng(3)
    from scipy.ndimage import gaussian_filter

    obs = gaussian_filter(rng.gamma(0.5, 4.0, (3, 64, 64)), (0, 2, 2)) * 3
    pred = np.roll(obs, (0, 2, 3), axis=(0, 1, 2)) * 0.8
    thresholds, scales = [0.5, 1.0, 2.0], [1, 2, 5, 10]
    sums = fss_sums(pred, obs, thresholds, scales).sum(axis=0)  # streamed over 3 frames
    ours = fss_from_sums(sums)
    for k, thr in enumerate(thresholds):
        for j, n in enumerate(scales):
            for t in range(3):  # and per frame
                one = fss_from_sums(fss_sums(pred[t], obs[t], [thr], [n]))[0, 0]
                assert one == pytest.approx(fss(pred[t], obs[t], thr, n), abs=1e-5)
            from pysteps.verification.spatialscores import fss_accum, fss_compute, fss_init

            acc = fss_init(thr, n)
            for t in range(3):
                fss_accum(acc, pred[t], obs[t])
            assert ours[k, j] == pytest.approx(fss_compute(acc), abs=1e-5)


def test_scales_in_km_become_whole_pixels():
    assert scales_to_pixels((10, 20, 40), 10.0) == (1, 2, 4)
    assert scales_to_pixels((10, 20, 40), 9.0) == (1, 2, 4)
    assert scales_to_pixels((5,), 12.0) == (1,)
    with pytest.raises(ValueError, match="pixel size must be positive"):
        scales_to_pixels((10,), 0.0)


# --------------------------------------------------------------------------- bootstrap
def test_block_length_counts_the_windows_sharing_a_frame():
    assert block_length(np.arange(0, 60, 3), 17) == 6  # ceil(17 / 3)
    assert block_length(np.arange(0, 60, 1), 17) == 17
    assert block_length(np.arange(0, 200, 20), 17) == 1  # no overlap: plain bootstrap
    assert block_length([0, 1, 2, 50], 5) == 3


def test_block_weights_keep_the_case_size_and_every_sequence_equally_likely():
    w = block_resample_weights(9, 4, 4000, np.random.default_rng(0))
    assert w.shape == (4000, 9)
    np.testing.assert_array_equal(w.sum(axis=1), 9.0)
    # circular blocks: each sequence is drawn once per resample on average, edges included
    np.testing.assert_allclose(w.mean(axis=0), 1.0, atol=0.06)


def _coverage(series_fn, n, block, level=0.9, reps=300, resamples=400, seed=11):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        x = series_fn(rng, n)
        w = block_resample_weights(n, block, resamples, rng)
        lo, hi = percentile_interval(w @ x / n, level)
        hits += lo <= 0.0 <= hi
    return hits / reps


def test_intervals_of_a_known_distribution_cover_its_mean_at_the_stated_rate():
    """iid normal sequences (mean 0): the 90 % interval of the mean covers 0 in 0.9 of
    300 simulated samples, within the binomial spread (sd 0.017) and the percentile
    bootstrap's small-sample undercoverage."""
    cov = _coverage(lambda rng, n: rng.normal(0.0, 1.0, n), n=40, block=1)
    assert 0.85 <= cov <= 0.95


def test_block_bootstrap_accounts_for_overlapping_windows():
    """Scores of windows that overlap (moving means of 6 frames, a window per frame) are
    not independent: the plain bootstrap's 90 % interval covers far too rarely (0.45 of
    300), the block bootstrap with the overlap as block length far more often (0.78;
    blocks of the overlap miss the covariance of neighbouring blocks, docs/verification.md)."""

    def windows(rng, n):
        frames = rng.normal(0.0, 1.0, n + 5)
        return np.convolve(frames, np.ones(6) / 6, mode="valid")

    plain = _coverage(windows, n=120, block=1)
    blocked = _coverage(windows, n=120, block=block_length(np.arange(120), 6))
    assert plain < 0.6
    assert 0.75 <= blocked <= 0.95


def test_verdict_follows_the_orientation_of_the_score():
    lo, hi = np.array([0.01, -0.02, -0.03]), np.array([0.04, 0.01, -0.01])
    assert list(verdict(lo, hi, True)) == ["ahead", "not distinguishable", "behind"]
    assert list(verdict(lo, hi, False)) == ["behind", "not distinguishable", "ahead"]


def test_ratio_score_of_a_resample_comes_from_its_summed_counts():
    """CSI of two sequences 1/1 and 1/4 pooled is 2/5, not the mean of ratios 0.625."""
    counts = np.array([[[[1, 0, 0, 10]]], [[[1, 3, 0, 10]]]], dtype=float)  # (n, L, K, 4)
    sums = np.zeros((2, 1, 9))
    sums[..., 0] = 1.0
    csi = scores_from_sums(counts.sum(axis=0), sums.sum(axis=0))["CSI"][1]
    assert float(csi[0]) == pytest.approx(0.4)
    weights = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    resampled = np.einsum("rn,nlkc->rlkc", weights, counts)
    per_r = scores_from_sums(resampled, np.einsum("rn,nlf->rlf", weights, sums))["CSI"][1]
    np.testing.assert_allclose(per_r[:, 0], [1.0, 0.25, 0.4])


# --------------------------------------------------------------------------- evaluation
def _sequences(store, names):  # noqa: F811
    ds = _dataset(store, list(DAYS[3:5]))
    preds = {n: get_baseline("persistence") for n in names}
    return evaluate_predictors(
        preds, ds, 4, progress=False, per_sequence=True, fss_scales_km=(2.0, 5.0), pixel_km=1.0
    )


def test_identical_predictors_give_a_zero_width_difference(store):  # noqa: F811
    res = _sequences(store, ["a", "b"])
    seq = res[["seq_counts", "seq_sums", "seq_fss"]]
    cases = ["x"] * seq.sizes["sequence"]
    unc = score_uncertainty(seq, cases, {"x": 3}, n_resamples=200, level=0.9)
    for name in ("CSI", "HSS", "FSS", "B-MSE", "SSIM"):
        d = unc[f"paired_diff_{name}"].sel(case="x", baseline="b")
        finite = np.isfinite(d.values)
        assert finite.any()
        np.testing.assert_array_equal(d.values[finite], 0.0)
        np.testing.assert_array_equal(unc[f"paired_diff_{name}_lower"].values[..., finite], 0.0)
        np.testing.assert_array_equal(unc[f"paired_diff_{name}_upper"].values[..., finite], 0.0)
        assert set(unc[f"paired_verdict_{name}"].values.ravel()) == {"not distinguishable"}


def test_point_scores_from_the_sequences_equal_the_streamed_ones(store):  # noqa: F811
    res = _sequences(store, ["persistence"])
    seq = res[["seq_counts", "seq_sums", "seq_fss"]]
    unc = score_uncertainty(seq, ["x"] * seq.sizes["sequence"], {"x": 1}, n_resamples=50)
    s = summarize(res)
    for name in ("CSI", "HSS", "B-MSE", "MSE", "SSIM", "PSNR"):
        np.testing.assert_allclose(
            unc[f"summary_{name}"].sel(case="x").values, s[name].values, rtol=1e-12
        )
    # the per-lead FSS is that of the summed sequences, and lies within its interval
    fss = res["FSS"].values
    assert np.all((unc["FSS_lower"].values <= fss + 1e-12) | np.isnan(fss))
    assert np.all((fss <= unc["FSS_upper"].values + 1e-12) | np.isnan(fss))


def test_evaluate_run_on_two_stores_writes_cases_pooled_and_paired(store, tmp_path):  # noqa: F811
    opts = EvaluateOptions(
        split="test",
        split_fractions=(0.0, 0.5, 0.5),
        in_frames=4,
        out_frames=6,
        stride=3,
        baselines=("persistence", "pysteps"),
        progress=False,
        bootstrap=100,
        fss_scales_km=(2.0, 4.0),
    )
    out = evaluate_run(None, [store, store], opts, out_dir=tmp_path / "ev")
    with xr.open_dataset(tmp_path / "ev" / "results.nc") as ds:
        ds = ds.load()
    assert list(ds["case"].values) == ["resampled", "resampled#2", "pooled"]
    assert list(ds["baseline"].values) == ["pysteps"]
    assert ds.attrs["confidence_level"] == 0.9 and ds.attrs["bootstrap_resamples"] == 100
    n = int(ds["n_sequences"].sel(case="resampled"))
    assert int(ds["n_sequences"].sel(case="pooled")) == 2 * n
    # the same store twice: each case and the pooled one have the same point scores
    for case in ("resampled#2", "pooled"):
        np.testing.assert_allclose(
            ds["summary_CSI"].sel(case=case).values, ds["summary_CSI"].sel(case="resampled").values
        )
    np.testing.assert_allclose(
        ds["summary_CSI"].sel(case="pooled").values, summarize(out.results)["CSI"].values
    )
    assert {"FSS", "FSS_lower", "summary_FSS_upper", "paired_diff_FSS"} <= set(ds.data_vars)
    assert ds["FSS"].dims == ("predictor", "lead_time", "threshold", "scale")
    md = (tmp_path / "ev" / "results.md").read_text()
    assert "Paired differences, persistence minus each baseline" in md
    assert "### resampled#2" in md and "FSS 0.5 mm/h 2 km" in md
    seq = xr.open_dataset(tmp_path / "ev" / "sequences.nc")
    assert seq.sizes["sequence"] == 2 * n
    seq.close()


def test_cli_scores_two_stores_with_a_chosen_level(store, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from flows.cli import app

    args = ["evaluate", "--baselines", "persistence,pysteps", "--data", str(store)]
    args += ["--data", str(store), "--split", "test", "--split-fractions", "0,0.5,0.5"]
    args += ["--in-frames", "4", "--out-frames", "6", "--stride", "3", "--bootstrap", "50"]
    args += ["--confidence", "0.8", "--fss-scales", "3", "--out", str(tmp_path / "ev")]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / "ev" / "results.nc") as ds:
        assert ds.attrs["confidence_level"] == 0.8 and ds.attrs["bootstrap_resamples"] == 50
        assert list(ds["scale"].values) == [3.0]
        assert ds.sizes["case"] == 3


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--confidence", "1.5", r"--confidence must lie in \(0, 1\), got 1.5"),
        ("--cases", "week", "--cases must be store or day, got 'week'"),
        ("--fss-scales", "10,-5", "--fss-scales must be positive km, got 10,-5"),
        ("--bootstrap", "-1", "--bootstrap must be >= 0, got -1"),
    ],
)
def test_cli_refuses_bad_verification_options(store, tmp_path, flag, value, message):  # noqa: F811
    import re

    from typer.testing import CliRunner

    from flows.cli import app

    args = ["evaluate", "--baselines", "persistence", "--data", str(store)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), flag, value])
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output


def test_a_store_without_a_window_is_named_and_left_out(store, tmp_path):  # noqa: F811
    import pandas as pd

    from pipeline.resample import resample_store
    from tests.nowcast.test_evaluate import SIZE, _cell
    from tests.pipeline.test_resample import make_source_store

    times = [pd.Timestamp("2015-07-01") + pd.Timedelta(minutes=6 * i) for i in range(5)]
    frames = np.stack([_cell(0.8 * i) for i in range(5)])
    src = make_source_store(tmp_path / "src", times, frames, np.ones((5, SIZE, SIZE), bool))
    short = tmp_path / "short.zarr"
    resample_store(src, short, size=SIZE, progress=False)
    opts = EvaluateOptions(
        split="test",
        split_fractions=(0.0, 0.0, 1.0),
        in_frames=4,
        out_frames=6,
        stride=6,
        baselines=("persistence",),
        progress=False,
        bootstrap=20,
    )
    out = evaluate_run(None, [short, store], opts, out_dir=tmp_path / "ev")
    assert out.results.attrs["skipped_stores"] == "short: no window of 10 frames in its test split"
    assert list(out.results["case"].values) == ["resampled"]
    assert "Stores left out: short: no window" in (tmp_path / "ev" / "results.md").read_text()
    with pytest.raises(ValueError, match="nothing to score: short: no window of 10 frames"):
        evaluate_run(None, [short], opts, out_dir=tmp_path / "ev2")


def test_cases_by_day_split_one_store_into_its_days(store, tmp_path):  # noqa: F811
    opts = EvaluateOptions(
        split="test",
        split_fractions=(0.0, 0.8, 0.2),
        in_frames=4,
        out_frames=6,
        stride=3,
        baselines=("persistence",),
        progress=False,
        bootstrap=20,
        cases="day",
        fss_scales_km=(),
    )
    out = evaluate_run(None, store, opts, out_dir=tmp_path / "ev")
    days = [f"resampled {d:%Y-%m-%d}" for d in DAYS[8:]]
    assert list(out.results["case"].values) == [*days, "pooled"]
    n = out.results["n_sequences"].values
    assert n[-1] == n[0] + n[1] == out.results.attrs["n_samples"]
    assert "FSS" not in out.results and "summary_FSS" not in out.results
