"""Networks behind the registry: call contract, times, gradients, overfitting, counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from nowcast.configs import ModelConfig, load_config
from nowcast.models import MODEL_NAMES, count_parameters, get_model

# one forecast per call; the ensemble by construction has tests/nowcast/test_shrvqvae.py
NETWORKS = tuple(n for n in MODEL_NAMES if n != "shrvqvae")
ODE_MODELS = ("trajgru_ode", "trajgru_attention_ode")
CONTINUOUS = ("vidode", "trajgru_attention", "trajgru_ode", "trajgru_attention_ode")
REGULAR_ONLY = ("convgru", "convlstm", "trajgru")

# 16 x 16 frames, levels at 8, 4, 2 pixels, 4 channels: fast on a CPU
TINY = ModelConfig(
    name="trajgru",
    image_size=16,
    in_frames=3,
    out_frames=2,
    cadence_minutes=6.0,
    channels=(4, 4, 4),
    down=((1, 4, 3, 2, 1), (4, 4, 3, 2, 1), (4, 4, 3, 2, 1)),
    up=((4, 4, 4, 2, 1, 0), (4, 4, 4, 2, 1, 0), (4, 4, 3, 2, 1, 1)),
    head_channels=4,
    links=(2, 2, 2),
    mda_window=3,
    ode_hidden=(4, 4, 4),
    ode_step_minutes=3.0,
    vidode_channels=(4, 4, 4),
    vidode_ode_hidden=4,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(old)


def _tiny(name: str, **kw) -> nn.Module:
    return get_model(name, dataclasses.replace(TINY, name=name), **kw)


def _batch(b: int = 2, t_in: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(b, t_in, 1, size, size)


def _times(values: list[float], b: int = 2) -> torch.Tensor:
    return torch.tensor([values] * b)


REG_IN = [-12.0, -6.0, 0.0]
REG_OUT = [6.0, 12.0]


def test_registry_lists_valid_names_on_unknown_name():
    with pytest.raises(
        ValueError, match="valid names: convgru, trajgru, vidode, trajgru_attention"
    ):
        get_model("unet", TINY)


def test_registry_is_case_insensitive_and_flags_continuous_time():
    flags = {name: get_model(name.upper(), TINY).continuous_time for name in MODEL_NAMES}
    assert flags == {name: name in CONTINUOUS for name in MODEL_NAMES}


@pytest.mark.parametrize("name", NETWORKS)
def test_output_shape_regular_times(name):
    model = _tiny(name)
    y = model(_batch(), _times(REG_IN), _times([6.0, 12.0, 18.0, 24.0]))
    assert y.shape == (2, 4, 1, 16, 16)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NETWORKS)
def test_output_shape_irregular_times(name):
    model = _tiny(name, ignore_irregular_times=True)
    t_in = torch.tensor([[-20.0, -7.0, 0.0], [-9.0, -3.0, 0.0]])
    t_out = torch.tensor([[4.0, 13.0, 40.0], [6.0, 7.5, 12.0]])
    y = model(_batch(), t_in, t_out)
    assert y.shape == (2, 3, 1, 16, 16)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", REGULAR_ONLY)
def test_regular_only_models_raise_on_irregular_inputs(name):
    model = _tiny(name)
    with pytest.raises(ValueError, match="needs regular times"):
        model(_batch(), _times([-18.0, -6.0, 0.0]), _times(REG_OUT))


@pytest.mark.parametrize("name", REGULAR_ONLY)
def test_regular_only_models_raise_on_irregular_targets(name):
    model = _tiny(name)
    with pytest.raises(ValueError, match="needs regular times"):
        model(_batch(), _times(REG_IN), _times([6.0, 18.0]))


@pytest.mark.parametrize("name", REGULAR_ONLY)
def test_regular_only_models_raise_on_a_cadence_mismatch(name):
    model = _tiny(name)
    with pytest.raises(ValueError, match="needs regular times"):
        model(_batch(), _times([-10.0, -5.0, 0.0]), _times([5.0, 10.0]))


@pytest.mark.parametrize("name", CONTINUOUS)
def test_continuous_models_use_the_real_input_gaps(name):
    model = _tiny(name).eval()
    x = _batch()
    with torch.no_grad():
        regular = model(x, _times(REG_IN), _times(REG_OUT))
        irregular = model(x, _times([-30.0, -3.0, 0.0]), _times(REG_OUT))
    assert (regular - irregular).abs().max() > 1e-6


@pytest.mark.parametrize("name", (*ODE_MODELS, "vidode"))
def test_ode_models_frames_do_not_depend_on_other_requested_times(name):
    model = _tiny(name).eval()
    with torch.no_grad():
        for cell in model.modules():
            if hasattr(cell, "flows") and isinstance(cell.flows, nn.Conv2d):
                cell.flows.weight.normal_(0.0, 0.1)  # make the warps matter
        x = _batch()
        two = model(x, _times(REG_IN), _times([6.0, 12.0]))
        three = model(x, _times(REG_IN), _times([6.0, 9.0, 12.0]))
        beyond = model(x, _times(REG_IN), _times([6.0, 12.0, 100.0]))
    torch.testing.assert_close(two[:, 0], three[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(two[:, 1], three[:, 2], rtol=0, atol=1e-6)
    torch.testing.assert_close(two, beyond[:, :2], rtol=0, atol=1e-6)
    # the frame between the leads is a frame of its own, not a copy of a neighbour
    assert (three[:, 1] - three[:, 0]).abs().max() > 1e-6
    assert (three[:, 1] - three[:, 2]).abs().max() > 1e-6


@pytest.mark.parametrize("name", ODE_MODELS)
def test_ode_models_accept_per_sample_times(name):
    model = _tiny(name).eval()
    x = _batch()
    with torch.no_grad():
        mixed = model(x, _times(REG_IN), torch.tensor([[6.0, 9.0], [3.0, 12.0]]))
        first = model(x, _times(REG_IN), _times([6.0, 9.0]))
        second = model(x, _times(REG_IN), _times([3.0, 12.0]))
    torch.testing.assert_close(mixed[0], first[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed[1], second[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NETWORKS)
def test_gradients_reach_every_parameter(name):
    model = _tiny(name)
    with torch.no_grad():  # zero-initialised flow convs would block the flow nets' gradients
        for cell in model.modules():
            if hasattr(cell, "flows") and isinstance(cell.flows, nn.Conv2d):
                cell.flows.weight.normal_(0.0, 0.1)
    t_out = _times([6.0, 12.0]) if name in REGULAR_ONLY else _times([4.0, 12.0])
    y = model(_batch(), _times(REG_IN), t_out)
    (y - 0.3).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.any()]
    assert missing == []
    assert zero == []


def _moving_square(b: int, t: int, size: int = 16) -> torch.Tensor:
    frames = torch.full((b, t, 1, size, size), 0.1)
    for i in range(t):
        frames[:, i, 0, 5:10, 1 + i : 6 + i] = 0.9
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_each_model_overfits_one_batch(name):
    model = _tiny(name)
    seq = _moving_square(2, 5)
    x, target = seq[:, :3], seq[:, 3:]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses: list[float] = []
    for _ in range(80):  # stops as soon as the loss has fallen tenfold
        opt.zero_grad()
        loss = (model(x, _times(REG_IN), _times(REG_OUT)) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 10:
            break
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-5:])


@pytest.mark.parametrize("name", NETWORKS)
def test_input_mask_zeroes_masked_pixels(name):
    model = _tiny(name).eval()
    x = _batch()
    mask = torch.ones_like(x)
    mask[:, :, :, :8] = 0.0
    with torch.no_grad():
        masked = model(x, _times(REG_IN), _times(REG_OUT), input_mask=mask)
        zeroed = model(x * mask, _times(REG_IN), _times(REG_OUT))
    torch.testing.assert_close(masked, zeroed)


def test_rejects_x_without_channel_axis():
    model = _tiny("trajgru")
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, T_in, 1, H, W\), got \(2, 3, 16, 16\)"
    ):
        model(torch.rand(2, 3, 16, 16), _times(REG_IN), _times(REG_OUT))


def test_rejects_frames_not_multiple_of_the_stride():
    model = _tiny("trajgru")
    with pytest.raises(
        ValueError,
        match=r"H, W = 12, 12 \(shape \(2, 3, 1, 12, 12\)\); expected positive multiples of 8",
    ):
        model(_batch(size=12), _times(REG_IN), _times(REG_OUT))


def test_rejects_t_in_of_the_wrong_shape():
    model = _tiny("trajgru_ode")
    with pytest.raises(
        ValueError, match=r"t_in must have shape \(B, T_in\) = \(2, 3\), got \(2, 2\)"
    ):
        model(_batch(), _times([-6.0, 0.0]), _times(REG_OUT))


def test_rejects_t_out_of_the_wrong_batch():
    model = _tiny("trajgru_attention")
    with pytest.raises(
        ValueError, match=r"t_out must have shape \(B, T_out\) with B = 2, got \(3, 2\)"
    ):
        model(_batch(), _times(REG_IN), _times(REG_OUT, b=3))


def test_rejects_mask_of_the_wrong_shape():
    model = _tiny("vidode")
    with pytest.raises(
        ValueError,
        match=r"input_mask must have the shape of x \(2, 3, 1, 16, 16\), got \(2, 3, 1, 8, 8\)",
    ):
        model(_batch(), _times(REG_IN), _times(REG_OUT), input_mask=torch.ones(2, 3, 1, 8, 8))


def test_rejects_targets_before_the_last_input():
    model = _tiny("trajgru_ode")
    with pytest.raises(ValueError, match="t_out must lie after the last input time"):
        model(_batch(), _times(REG_IN), _times([0.0, 6.0]))


def test_rejects_unsorted_times():
    model = _tiny("trajgru_ode")
    with pytest.raises(ValueError, match="t_out must increase strictly"):
        model(_batch(), _times(REG_IN), _times([12.0, 6.0]))


HKO7_THESIS = {
    "convgru": 4_367_553,
    "trajgru": 6_166_853,
    "trajgru_attention": 9_336_677,
    "trajgru_ode": 12_583_973,
    "trajgru_attention_ode": 11_181_413,
}


@pytest.mark.parametrize("name", ["convgru", "trajgru"])
def test_hko7_baseline_parameter_counts_are_exact(name):
    assert count_parameters(get_model(name, load_config("hko7"))) == HKO7_THESIS[name]


@pytest.mark.parametrize("name", ["trajgru_attention", "trajgru_ode", "trajgru_attention_ode"])
def test_hko7_proposed_parameter_counts_within_five_percent(name):
    n = count_parameters(get_model(name, load_config("hko7")))
    assert abs(n - HKO7_THESIS[name]) / HKO7_THESIS[name] < 0.05, n


def test_hko7_config_lists_the_thesis_counts():
    assert load_config("hko7").thesis_parameters == HKO7_THESIS


@pytest.mark.parametrize(("name", "thesis"), [("convgru", 3_695_553), ("trajgru", 4_859_181)])
def test_mnist_baselines_are_the_documented_4608_short_of_table_a1(name, thesis):
    assert count_parameters(get_model(name, load_config("mnist"))) == thesis - 4608


def test_configs_carry_the_thesis_training_settings():
    train = load_config("hko7").train
    assert train["lr"] == pytest.approx(1e-4)
    assert train["betas"] == [0.5, 0.999]
    assert (train["batch_size"], train["max_epochs"], train["iters_per_epoch"]) == (4, 25, 8000)
    assert train["early_stopping_patience"] == 2
    assert train["loss_weights"] == {"mse": 1.0, "mae": 1.0, "ssim": 0.05}


def test_small_config_models_run_at_its_size():
    cfg = load_config("small")
    model = get_model("trajgru_attention_ode", cfg)
    b, size = 1, cfg.image_size
    t_in = torch.arange(-(cfg.in_frames - 1), 1.0)[None] * cfg.cadence_minutes
    t_out = torch.arange(1, cfg.out_frames + 1.0)[None] * cfg.cadence_minutes
    with torch.no_grad():
        y = model(torch.rand(b, cfg.in_frames, 1, size, size), t_in, t_out)
    assert y.shape == (1, cfg.out_frames, 1, size, size)


def test_load_config_unknown_name_lists_shipped_configs():
    with pytest.raises(ValueError, match="not one of hko7, mnist, small"):
        load_config("kth")


def test_model_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown model setting\(s\) \['chanels'\]"):
        ModelConfig.from_dict({"name": "trajgru", "chanels": [1, 2, 3]})


def test_experiment_config_model_merges_overrides():
    cfg = load_config("hko7")
    assert cfg.model("trajgru_ode").ode_hidden == (192, 192, 256)
    assert cfg.model("trajgru_attention_ode").ode_hidden == (96, 96, 128)
    assert cfg.model("convgru").links == (11, 11, 11)


def test_cli_models_prints_counts_beside_the_thesis():
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["models", "--config", "hko7"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[2:]}
    assert lines["trajgru"] == ["6,166,853", "6,166,853", "+0.00%"]
    assert lines["trajgru_attention"] == ["8,961,861", "9,336,677", "-4.01%"]
    assert lines["vidode"][1:] == ["-", "-"]
    assert lines["convlstm"] == ["5,621,569", "-", "-"]


def test_inconsistent_channel_layout_is_refused():
    bad = dataclasses.replace(TINY, down=((1, 4, 3, 2, 1), (5, 4, 3, 2, 1), (4, 4, 3, 2, 1)))
    with pytest.raises(ValueError, match="down\\[1\\] takes 5 channels but level 1 has 4"):
        get_model("convgru", bad)


@pytest.mark.parametrize(
    "name",
    ("convgru", "convlstm", "trajgru", "trajgru_attention", "trajgru_ode", "trajgru_attention_ode"),
)
def test_untrained_residual_model_is_persistence(name):
    # residual=True: y = last input frame + head(...), the head zero-initialised
    model = get_model(name, dataclasses.replace(TINY, name=name, residual=True))
    x = _batch()
    y = model(x, _times(REG_IN), _times(REG_OUT))
    expected = x[:, -1:].expand(-1, len(REG_OUT), -1, -1, -1)
    assert torch.equal(y, expected)


def test_residual_model_learns_a_change_from_the_last_frame():
    # after one optimiser step the head is no longer zero, so the output moves off persistence
    model = get_model("trajgru", dataclasses.replace(TINY, residual=True))
    x = _batch()
    target = torch.zeros(2, 2, 1, 16, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = (model(x, _times(REG_IN), _times(REG_OUT)) - target).pow(2).mean()
    loss.backward()
    opt.step()
    y = model(x, _times(REG_IN), _times(REG_OUT))
    assert not torch.equal(y, x[:, -1:].expand(-1, 2, -1, -1, -1))
    assert (y - target).pow(2).mean() < loss


def test_residual_model_starts_from_the_last_observed_frame():
    # the last input frame is missing (mask 0): persistence of the frame before it
    model = get_model("trajgru_ode", dataclasses.replace(TINY, name="trajgru_ode", residual=True))
    x = _batch()
    mask = torch.ones_like(x)
    mask[:, -1] = 0
    y = model(x * mask, _times(REG_IN), _times(REG_OUT), input_mask=mask)
    assert torch.equal(y, x[:, 1:2].expand(-1, len(REG_OUT), -1, -1, -1))
