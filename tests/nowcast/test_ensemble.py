"""Ensembles: STEPS baseline (real pysteps) and members of our models; reproducible draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.baselines import get_baseline
from nowcast.configs import load_config
from nowcast.ensemble import EnsembleNowcaster, powerlaw_noise, predict_members
from nowcast.models import get_model
from pipeline.units import rainrate_to_normalized

H = 40
T_IN = torch.tensor([[-24.0, -18.0, -12.0, -6.0, 0.0]])
T_OUT = torch.tensor([[6.0, 12.0, 18.0]])


def _moving_cell(h: int = H, speed: float = 1.0) -> torch.Tensor:
    """``(1, 5, 1, h, h)`` p/255: a textured cell moving ``speed`` px per frame to the right."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :h]
    frames = []
    for k in range(5):
        f = 0.55 * np.exp(-((xx - h / 4 - speed * k) ** 2 + (yy - h / 2) ** 2) / (h * 2.0))
        f = f + 0.05 * rng.random((h, h))
        frames.append(np.where(f > 0.2, f, 0.0))
    return torch.tensor(np.stack(frames).astype(np.float32))[None, :, None]


def test_steps_members_are_seeded_independent_draws():
    x = _moving_cell()
    steps = get_baseline("steps", cadence_minutes=6, n_members=3, seed=1)
    y = steps(x, T_IN, T_OUT)
    assert tuple(y.shape) == (1, 3, 3, 1, H, H) and y.dtype == torch.float32
    assert steps.last_fallback is None
    assert torch.equal(y, steps(x, T_IN, T_OUT))  # same seed, same members
    assert not torch.equal(y, steps(x, T_IN, T_OUT, seed=2))
    assert float((y[:, 0] - y[:, 1]).abs().max()) > 0.01  # members differ
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_steps_on_a_frozen_field_falls_back_to_identical_members():
    f = _moving_cell(speed=0.0)[:, -1:]
    x = f.expand(-1, 5, -1, -1, -1).contiguous()
    steps = get_baseline("steps", cadence_minutes=6, n_members=2)
    y = steps(x, T_IN, T_OUT)
    assert steps.last_fallback.startswith("steps fell back to extrapolation: sample 0: frozen")
    assert torch.equal(y[:, 0], y[:, 1])
    np.testing.assert_allclose(y[0, 0, 0, 0].numpy(), x[0, -1, 0].numpy(), atol=1e-3)


def test_steps_without_rain_is_dry_and_refuses_off_grid_leads():
    steps = get_baseline("steps", cadence_minutes=6, n_members=2)
    y = steps(torch.zeros(1, 5, 1, H, H), T_IN, T_OUT)
    assert tuple(y.shape) == (1, 2, 3, 1, H, H) and float(y.abs().max()) == 0.0
    with pytest.raises(ValueError, match="whole multiples of 6"):
        steps(_moving_cell(), T_IN, torch.tensor([[3.0]]))


def test_powerlaw_noise_is_unit_variance_and_smoother_for_steeper_spectra():
    rng = np.random.default_rng(0)
    white = powerlaw_noise(rng, (4, 64, 64), 0.0)
    red = powerlaw_noise(rng, (4, 64, 64), 4.0)
    for f in (white, red):
        np.testing.assert_allclose(f.mean(axis=(-2, -1)), 0.0, atol=1e-5)
        np.testing.assert_allclose(f.std(axis=(-2, -1)), 1.0, atol=1e-5)

    def lag1(f):
        return float(np.mean(f[..., 1:] * f[..., :-1]))

    assert abs(lag1(white)) < 0.05 and lag1(red) > 0.9


def _model():
    cfg = load_config("small_lagrangian")
    return get_model("trajgru_ode", cfg).eval()


def test_unperturbed_ensemble_is_the_deterministic_forecast():
    x = _moving_cell(80)
    model = _model()
    ens = EnsembleNowcaster(
        model, n_members=2, motion_rel=0, motion_abs=0, noise_scale=0, dry_mmh=None
    )
    y = ens(x, T_IN, T_OUT)
    with torch.no_grad():
        det = model(x, T_IN, T_OUT)
    assert tuple(y.shape) == (1, 2, 3, 1, 80, 80)
    torch.testing.assert_close(y[:, 0], det.clamp(0, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, 1], det.clamp(0, 1), atol=1e-5, rtol=0)


def test_model_members_are_reproducible_independent_and_spread_grows_with_lead():
    x = _moving_cell(80)
    ens = EnsembleNowcaster(_model(), n_members=4, seed=3)
    t_out = torch.tensor([[6.0, 60.0]])
    y = ens(x, T_IN, t_out)
    assert torch.equal(y, ens(x, T_IN, t_out))
    assert torch.equal(y[:, :2], ens(x, T_IN, t_out, n_members=2))  # member m ignores N
    assert not torch.equal(y, ens(x, T_IN, t_out, seed=4))
    spread = y.std(dim=1).flatten(2).mean(-1)[0]  # per lead
    assert float(spread[0]) > 0 and float(spread[1]) > 2 * float(spread[0])
    dry = ens(torch.zeros(1, 5, 1, 80, 80), T_IN, t_out, input_mask=torch.ones(1, 5, 1, 80, 80))
    assert float(dry.abs().max()) == 0.0  # no rain, no noise


def test_members_are_dry_below_the_rain_threshold():
    x = _moving_cell(80)
    y = EnsembleNowcaster(_model(), n_members=2, seed=0)(x, T_IN, T_OUT)
    p01 = float(rainrate_to_normalized(0.1))
    weak = (y > 0) & (y < p01)
    assert not bool(weak.any()) and bool((y >= p01).any())


def test_predict_members_of_a_deterministic_predictor_is_one_member():
    pers = get_baseline("persistence")
    x = _moving_cell()
    y = predict_members(pers, x, T_IN, T_OUT, None, n_members=5)
    assert tuple(y.shape) == (1, 1, 3, 1, H, H)


def test_bad_member_count_is_refused():
    with pytest.raises(ValueError, match="n_members must be >= 1; got 0"):
        EnsembleNowcaster(get_baseline("persistence"), n_members=0)


def test_products_exceedance_probabilities_mean_and_percentiles(tmp_path):
    import xarray as xr

    from nowcast.ensemble import ensemble_products, products_dataset

    p2, p10 = (float(rainrate_to_normalized(r)) for r in (2.0, 10.0))
    values = [0.0, p2, p2 + 0.01, p10 + 0.01]  # members 0..3, the same at every pixel
    members = [torch.full((1, 2, 1, 3, 3), v) for v in values]
    prod = ensemble_products(
        iter(members), thresholds_mmh=(2.0, 10.0), percentiles=(0, 100), probability="fraction"
    )
    assert prod["n_members"] == 4
    np.testing.assert_allclose(prod["probability"][0, :, 0], 0.75)  # 3 of 4 >= 2 mm/h
    np.testing.assert_allclose(prod["probability"][0, :, 1], 0.25)
    np.testing.assert_allclose(prod["mean"], np.mean(values), rtol=1e-6)
    np.testing.assert_allclose(prod["percentile"][0, :, 1], values[-1], rtol=1e-6)
    ds = products_dataset(
        prod, [6.0, 12.0], (2.0, 10.0), (0, 100), members=torch.stack(members)[:, 0, :, 0].numpy()
    )
    assert ds["reflectivity"].dims == ("realization", "lead_time", "y", "x")
    assert ds["threshold"].attrs["standard_name"] == "rainfall_rate"
    ds.to_netcdf(tmp_path / "ens.nc")
    xr.testing.assert_identical(xr.open_dataset(tmp_path / "ens.nc").load(), ds)


def test_probability_maps_draw_certain_rain_dark_and_no_rain_white(tmp_path):
    from PIL import Image

    from nowcast.ensemble import ensemble_products, plot_probability_maps, products_dataset

    field = torch.zeros(1, 1, 1, 40, 40)
    field[..., :20] = 1.0  # left half: every member far above every threshold
    prod = ensemble_products(iter([field, field]), thresholds_mmh=(2.0,))
    ds = products_dataset(prod, [6.0], (2.0,))
    png = plot_probability_maps(ds, tmp_path / "p.png")
    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    # the map's row through its middle: dark on the left (P = 1), white on the right (P = 0)
    row = img[img.shape[0] // 2]
    dark = np.flatnonzero(row < 60)
    white = np.flatnonzero(row > 250)
    assert dark.size > 20 and white.size > 20 and dark.mean() < white[white > dark.min()].mean()
    with pytest.raises(ValueError, match=r"lead times \[30.0\] not in the products"):
        plot_probability_maps(ds, tmp_path / "q.png", lead_times=[30.0])


def test_wet_distribution_matching_takes_the_reference_values_rank_for_rank():
    from nowcast.ensemble import match_wet_distribution

    thr = 0.3
    ref_vals = torch.tensor([0.35, 0.5, 0.7, 0.9])  # the reference's wet values
    reference = torch.zeros(1, 4, 4)
    reference.view(-1)[[1, 6, 11, 14]] = ref_vals  # and 12 dry pixels
    field = torch.zeros(1, 1, 1, 4, 4)
    field.view(-1)[[3, 5, 8, 12]] = torch.tensor([0.8, 0.31, 0.95, 0.4])  # ranks 2, 0, 3, 1
    field.view(-1)[0] = 0.2  # a weak, dry pixel: left as it is
    out = match_wet_distribution(field, reference, thr, n_quantiles=4, min_pixels=2)
    expected = field.clone()
    expected.view(-1)[[3, 5, 8, 12]] = torch.tensor([0.7, 0.35, 0.9, 0.5])
    torch.testing.assert_close(out, expected)
    # a reference with too few wet pixels leaves the field alone
    torch.testing.assert_close(match_wet_distribution(field, reference, 0.8), field)
    with pytest.raises(ValueError, match="fields must be"):
        match_wet_distribution(field[0], reference, thr)


def test_matched_members_take_the_observed_intensities_and_zero_amplitude_repeats_them():
    x = _moving_cell(80)
    p01 = float(rainrate_to_normalized(0.1))
    last = x[0, -1, 0]
    obs = torch.sort(last[last >= p01]).values
    model = _model()
    ens = EnsembleNowcaster(model, n_members=3, seed=0)
    y = ens(x, T_IN, T_OUT)
    for m in range(3):
        wet = y[0, m, -1, 0][y[0, m, -1, 0] >= p01]
        assert wet.numel() > 20
        # every wet value lies in the observed range, spread over it (not a copy of one value)
        assert float(wet.min()) >= float(obs[0]) - 1e-6
        assert float(wet.max()) <= float(obs[-1]) + 1e-6
        np.testing.assert_allclose(float(wet.median()), float(obs.median()), atol=0.02)
    still = EnsembleNowcaster(model, n_members=3, motion_rel=0, motion_abs=0, noise_scale=0)
    z = still(x, T_IN, T_OUT)
    assert torch.equal(z[:, 0], z[:, 1]) and torch.equal(z[:, 0], z[:, 2])
    assert not torch.equal(y[:, 0], y[:, 1])


def test_cascade_noise_members_are_seeded_and_spread_more_at_longer_leads():
    x = _moving_cell(80)
    ens = EnsembleNowcaster(_model(), n_members=3, seed=5, noise="cascade", match=False)
    t_out = torch.tensor([[6.0, 60.0]])
    y = ens(x, T_IN, t_out)
    assert torch.equal(y, ens(x, T_IN, t_out))
    spread = y.std(dim=1).flatten(2).mean(-1)[0]
    assert float(spread[1]) > 2 * float(spread[0]) > 0
    with pytest.raises(
        ValueError, match=r"unknown noise 'pink'; expected one of \['walk', 'cascade'\]"
    ):
        EnsembleNowcaster(_model(), noise="pink")


def test_innovation_growth_is_one_for_a_persistent_trend_and_a_half_for_a_random_walk():
    rng = np.random.default_rng(0)
    base = 0.4 + 0.1 * rng.random((40, 40))
    trend = 0.02 * rng.random((40, 40))
    steady = np.stack([base + k * trend for k in range(5)])  # the same change every step
    walk = base + np.cumsum(0.01 * rng.standard_normal((5, 40, 40)), axis=0)
    ens = EnsembleNowcaster(get_baseline("persistence"), noise_growth=True)
    motion = torch.zeros(1, 2, 40, 40)
    for frames, expected, tol in ((steady, 1.0, 1e-4), (walk, 0.5, 0.06)):
        x = torch.tensor(frames, dtype=torch.float32)[None, :, None]
        sigma, h = ens._innovation(x, None, motion)
        assert sigma[0] > 0
        assert h[0] == pytest.approx(expected, abs=tol)


class _Still:
    """A predictor whose forecast is the last input frame at every lead (no motion)."""

    continuous_time = True
    model_name = "still"

    def __call__(self, x, t_in, t_out, input_mask=None):
        return x[:, -1:].expand(-1, t_out.shape[1], -1, -1, -1).clone()


def _noisy_rain(sigma: float = 0.01) -> torch.Tensor:
    """``(1, 5, 1, 40, 40)`` p/255: rain everywhere, a white change of std ``sigma`` a step."""
    rng = np.random.default_rng(3)
    base = 0.5 + 0.05 * rng.random((40, 40))
    frames = base + np.cumsum(sigma * rng.standard_normal((5, 40, 40)), axis=0)
    return torch.tensor(frames, dtype=torch.float32)[None, :, None]


def test_initial_noise_sets_the_spread_at_lead_one_and_zero_repeats_todays_members():
    x = _noisy_rain()
    leads = torch.tensor([[6.0, 24.0]])
    kw = dict(n_members=200, motion_rel=0.0, motion_abs=0.0, dry_mmh=None, match=False)
    plain = EnsembleNowcaster(_Still(), noise_init=0.0, **kw)(x, T_IN, leads)
    sigma_1 = EnsembleNowcaster(_Still())._innovation(x, None, torch.zeros(1, 2, 40, 40))[0][0]
    assert sigma_1 == pytest.approx(0.01, rel=0.05)  # the last step of the walk
    # zero amplitude: the member is the forecast plus the walk alone, drawn after dv
    for m in (0, 7):
        rng = np.random.default_rng(np.random.SeedSequence([0, m]))
        powerlaw_noise(rng, (1, 2, 40, 40), 4.0)  # the (zero) velocity perturbation
        walk = np.cumsum(powerlaw_noise(rng, (1, 4, 40, 40), 2.0), axis=1)[0, [0, 3]]
        init = powerlaw_noise(rng, (1, 1, 40, 40), 2.0)[0]  # drawn last, when asked for
        expected = x[0, -1, 0].numpy() + sigma_1 * walk
        np.testing.assert_allclose(plain[0, m, :, 0].numpy(), expected, atol=1e-5)
        one = EnsembleNowcaster(_Still(), noise_init=1.5, **kw)(x, T_IN, leads)[0, m, :, 0]
        np.testing.assert_allclose(one.numpy(), expected + 1.5 * sigma_1 * init, atol=1e-5)
    init = EnsembleNowcaster(_Still(), noise_init=2.0, **kw)(x, T_IN, leads)
    for members, a in ((plain, 0.0), (init, 2.0)):
        spread = (members - x[:, None, -1:]).std(dim=1).pow(2).mean((0, 2, 3, 4)).sqrt()
        # walk std sigma_1 sqrt(a^2 + t): at lead 1 step and 4 steps
        expected = sigma_1 * np.sqrt(a**2 + np.array([1.0, 4.0]))
        np.testing.assert_allclose(spread.numpy(), expected, rtol=0.03)


def test_initial_position_error_shifts_the_displacement_by_whole_steps():
    x = _moving_cell()
    kw = dict(n_members=3, noise_scale=0.0, motion_abs=0.5, dry_mmh=None, match=False)
    leads = torch.tensor([[6.0, 18.0]])
    plain = EnsembleNowcaster(_Still(), motion_init=0.0, **kw)(x, T_IN, leads)
    shifted = EnsembleNowcaster(_Still(), motion_init=2.0, **kw)(x, T_IN, leads)
    # a still forecast displaced by (1 + 2) dv at lead 1 is the plain one at lead 3
    torch.testing.assert_close(shifted[:, :, 0], plain[:, :, 1], rtol=0, atol=1e-6)
    assert float((shifted[:, :, 0] - plain[:, :, 0]).abs().max()) > 0.01
    assert torch.equal(EnsembleNowcaster(_Still(), **kw)(x, T_IN, leads), plain)  # default 0


def test_bad_initial_perturbations_are_refused():
    with pytest.raises(ValueError, match="noise_init must be >= 0; got -1"):
        EnsembleNowcaster(_Still(), noise_init=-1)
    with pytest.raises(ValueError, match="motion_init must be >= 0; got -0.5"):
        EnsembleNowcaster(_Still(), motion_init=-0.5)


def test_members_keep_the_deterministic_forecasts_rain_area():
    x = _moving_cell(80)
    model = _model()
    t_out = torch.tensor([[6.0, 60.0, 120.0]])
    with torch.no_grad():
        det = model(x, T_IN, t_out).clamp(0, 1)
    p_dry = float(rainrate_to_normalized(0.1))
    wet_det = (det >= p_dry).flatten(2).sum(-1)  # (1, T)
    kw = dict(n_members=3, seed=0, noise_scale=3.0, match=False)
    kept = EnsembleNowcaster(model, **kw)(x, T_IN, t_out)
    free = EnsembleNowcaster(model, wet_area=False, **kw)(x, T_IN, t_out)
    for m in range(3):
        assert torch.equal((kept[:, m] >= p_dry).flatten(2).sum(-1), wet_det)
    # without the correction the noise changes the members' rain area
    assert not torch.equal((free[:, 0] >= p_dry).flatten(2).sum(-1), wet_det)
